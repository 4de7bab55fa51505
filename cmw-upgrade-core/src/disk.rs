//! This machine's disk under a root, read as a server: the reading half of
//! [`LocalExecutor`](crate::executor::LocalExecutor), and what the effect
//! helpers (backup, restore, the migration) read the server they run on with.

// The disk reader is the effect layer's reading half.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::instance::InstanceName;
use crate::layout::{read_log_dir, InstanceLayout, LayoutPath};
use crate::os::OsFamily;
use crate::paths::place_under_root;
use crate::server::{DirEntry, NodeKind, ServerRead};

/// The server under `root` (`/` on a live server).
#[derive(Debug, Clone)]
pub struct Disk {
    root: PathBuf,
}

impl Disk {
    /// The server under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Disk { root: root.into() }
    }

    /// The root every server path is placed under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A server path placed under the root: absolute, no `..`, no NUL.
    ///
    /// # Errors
    /// [`Error::PathOutsideRoot`].
    pub fn place(&self, path: &str) -> Result<PathBuf> {
        place_under_root(&self.root, path)
    }
}

fn missing(error: &std::io::Error) -> bool {
    // A file below something that is not a folder is not there either.
    matches!(error.kind(), IoKind::NotFound | IoKind::NotADirectory)
}

impl ServerRead for Disk {
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let placed = self.place(path)?;
        match fs::read(&placed) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if missing(&error) => Ok(None),
            Err(error) => Err(Error::io("read", placed, error)),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(fs::symlink_metadata(self.place(path)?).is_ok())
    }

    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        let placed = self.place(path)?;
        let listing = match fs::read_dir(&placed) {
            Ok(listing) => listing,
            Err(error) if missing(&error) => return Ok(Vec::new()),
            Err(error) => return Err(Error::io("list", placed, error)),
        };
        let mut entries = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|error| Error::io("list", &placed, error))?;
            let link = entry.file_type().is_ok_and(|kind| kind.is_symlink());
            let kind = match fs::metadata(entry.path()) {
                Ok(metadata) if metadata.is_file() => NodeKind::File,
                Ok(metadata) if metadata.is_dir() => NodeKind::Folder,
                _ => NodeKind::Other,
            };
            entries.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind,
                link,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn read_link(&self, path: &str) -> Result<Option<String>> {
        let placed = self.place(path)?;
        match fs::read_link(&placed) {
            Ok(target) => Ok(Some(target.to_string_lossy().into_owned())),
            Err(error) if missing(&error) || error.kind() == IoKind::InvalidInput => Ok(None),
            Err(error) => Err(Error::io("read the link", placed, error)),
        }
    }
}

impl Disk {
    /// Takes an exclusive `flock` on the file at `path` (made 0600, with its
    /// folder, when missing) without waiting, and writes this process's pid
    /// into it. Held as long as the returned file is open; the kernel drops it
    /// when the process dies.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] naming the holder's pid; [`Error::Io`].
    pub fn lock_file(&self, path: &str) -> Result<fs::File> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;

        let placed = self.place(path)?;
        if let Some(folder) = placed.parent() {
            fs::create_dir_all(folder)
                .map_err(|error| Error::io("create the folder", folder, error))?;
        }
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&placed)
            .map_err(|error| Error::io("open the lock file", &placed, error))?;
        if let Err(error) =
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            if error != rustix::io::Errno::WOULDBLOCK {
                return Err(Error::io("lock", &placed, error.into()));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(Error::AlreadyExists {
                path: PathBuf::from(format!(
                    "{} (held by process {})",
                    placed.display(),
                    holder.trim()
                )),
                hint: "another cmw-upgrade run is working on this instance; wait for it, or see `cmw-upgrade status`",
            });
        }
        // Holding the lock: say who holds it, for the message above.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(file)
    }
}

impl Disk {
    /// Every path of `instance` on this disk, read from its config files.
    ///
    /// # Errors
    /// As [`InstanceLayout::read`].
    pub fn layout(&self, instance: &InstanceName, family: OsFamily) -> Result<InstanceLayout> {
        InstanceLayout::read(self, &self.root, instance, family)
    }

    /// The log folder of `instance` on this disk.
    ///
    /// # Errors
    /// As [`read_log_dir`].
    pub fn log_dir(&self, instance: &InstanceName) -> Result<LayoutPath> {
        read_log_dir(self, &self.root, instance)
    }
}

/// Reads a file to a string, mapping "not found" to `None` and everything else to [`Error::Io`].
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(error) if error.kind() == IoKind::NotFound => Ok(None),
        Err(error) if error.kind() == IoKind::NotADirectory => Ok(None),
        Err(error) => Err(Error::io("read", path, error)),
    }
}
