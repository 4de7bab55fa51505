//! Writing files so that a crash never leaves a half-written one.
//!
//! A temp file in the same folder gets the content, is flushed to disk, takes
//! the original's mode and owner, and is renamed over the target; the folder is
//! flushed too. A reader sees either the old file or the new one.

// Atomic writes are the effect layer: the one place files are replaced.
#![allow(clippy::disallowed_methods)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The mode and owner a written file should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileAttributes {
    /// Permission bits.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
}

impl FileAttributes {
    /// The attributes of an existing file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be inspected.
    pub fn of(path: &Path) -> Result<Self> {
        let metadata = fs::metadata(path).map_err(|error| Error::io("inspect", path, error))?;
        Ok(FileAttributes {
            mode: metadata.mode() & 0o7777,
            uid: metadata.uid(),
            gid: metadata.gid(),
        })
    }
}

fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.cmw-upgrade.{}.tmp", std::process::id()))
}

/// Writes `content` to `target` atomically with the given mode and owner.
///
/// # Errors
/// [`Error::Io`] naming the path that failed; the target is then unchanged.
pub fn write_atomic(target: &Path, content: &[u8], attributes: FileAttributes) -> Result<()> {
    let temp = temp_path(target);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|error| Error::io("create", &temp, error))?;
        file.write_all(content)
            .map_err(|error| Error::io("write", &temp, error))?;
        // Owner first: chown clears set-id bits, which the mode then restores.
        if let Err(error) =
            std::os::unix::fs::fchown(&file, Some(attributes.uid), Some(attributes.gid))
        {
            let metadata = file
                .metadata()
                .map_err(|error| Error::io("inspect", &temp, error))?;
            // Only root may give files away; a file we already own the same way is fine.
            if metadata.uid() != attributes.uid || metadata.gid() != attributes.gid {
                return Err(Error::io("change the owner of", &temp, error));
            }
        }
        file.set_permissions(fs::Permissions::from_mode(attributes.mode))
            .map_err(|error| Error::io("set the mode of", &temp, error))?;
        file.sync_all()
            .map_err(|error| Error::io("flush", &temp, error))?;
        fs::rename(&temp, target).map_err(|error| Error::io("replace", target, error))?;
        if let Some(folder) = target.parent() {
            let folder = if folder.as_os_str().is_empty() {
                Path::new(".")
            } else {
                folder
            };
            File::open(folder)
                .and_then(|handle| handle.sync_all())
                .map_err(|error| Error::io("flush", folder, error))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Copies `original` to `backup` (which must not exist yet), keeping mode and owner.
///
/// # Errors
/// [`Error::Io`] when the copy cannot be made; nothing else is then changed.
pub fn backup_copy(original: &Path, backup: &Path) -> Result<()> {
    if backup.exists() {
        return Err(Error::io(
            "create the backup",
            backup,
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it already exists"),
        ));
    }
    let content = fs::read(original).map_err(|error| Error::io("read", original, error))?;
    write_atomic(backup, &content, FileAttributes::of(original)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_keep_mode_and_leave_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.yml");
        fs::write(&target, "old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
        let attributes = FileAttributes::of(&target).unwrap();
        backup_copy(&target, &dir.path().join("a.yml.bak")).unwrap();
        write_atomic(&target, b"new", attributes).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(
            fs::read_to_string(dir.path().join("a.yml.bak")).unwrap(),
            "old"
        );
        assert_eq!(FileAttributes::of(&target).unwrap().mode, 0o640);
        assert_eq!(
            FileAttributes::of(&dir.path().join("a.yml.bak"))
                .unwrap()
                .mode,
            0o640
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file is left"
        );
        assert!(
            backup_copy(&target, &dir.path().join("a.yml.bak")).is_err(),
            "a backup is never overwritten"
        );
    }

    #[test]
    fn a_failed_write_leaves_the_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder/a.yml");
        let attributes = FileAttributes {
            mode: 0o600,
            uid: 0,
            gid: 0,
        };
        assert!(write_atomic(&missing, b"x", attributes).is_err());
        assert!(!missing.exists());
    }
}
