//! Writing a bundle so that an unfinished one never looks finished.
//!
//! Everything goes into `DIR.partial/` (mode `0700`), marked as the tool's own
//! by a marker file so a rerun may replace it; only after the manifest is
//! written, every file re-hashed against it and the file system flushed is the
//! folder renamed to `DIR`. Dropping an unfinished [`PartialBundle`] removes it.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use rustix::io::Errno;

use super::manifest::{Manifest, MANIFEST_FILE};
use super::verify::verify_entries_at;
use super::Progress;
use crate::error::{Error, Result};
use crate::fd_walk::{self, Identity};

/// The marker that says a `.partial` folder is this tool's unfinished work.
const PARTIAL_MARKER: &str = ".cmw-upgrade-partial";

/// Free space kept on top of the data: file-system blocks and folders, plus
/// room for the manifest and for the system to keep running.
const MARGIN_FIXED_BYTES: u64 = 16 << 20;
/// Extra share of the data kept free (1/50 = 2 %).
const MARGIN_DIVISOR: u64 = 50;

/// Bytes a copy of `data_bytes` in `entries` files and folders needs, margin included.
pub fn space_needed(data_bytes: u64, entries: u64, block_size: u64) -> u64 {
    let block_size = block_size.max(512);
    // Each entry may waste up to one block at its end, and folders take a block.
    data_bytes + entries * block_size + data_bytes / MARGIN_DIVISOR + MARGIN_FIXED_BYTES
}

/// Refuses, with the numbers, when the file system holding `folder` has less
/// room than the copy needs.
///
/// # Errors
/// [`Error::NotEnoughSpace`]; [`Error::Io`] when the file system cannot be asked.
pub fn check_free_space(folder: &Path, data_bytes: u64, entries: u64) -> Result<()> {
    let stats = rustix::fs::statvfs(folder)
        .map_err(|error| Error::io("check the free space of", folder, error.into()))?;
    let block_size = stats.f_frsize.max(1);
    let available = stats.f_bavail.saturating_mul(block_size);
    let needed = space_needed(data_bytes, entries, block_size);
    if available < needed || (stats.f_files > 0 && stats.f_favail < entries) {
        return Err(Error::NotEnoughSpace {
            path: folder.to_path_buf(),
            needed,
            data: data_bytes,
            available,
        });
    }
    Ok(())
}

/// `DIR.partial` for a bundle `DIR`.
pub fn partial_path(bundle: &Path) -> PathBuf {
    let mut name = bundle.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    bundle.with_file_name(name)
}

/// Refuses a destination that exists, and returns its (existing) parent folder.
///
/// # Errors
/// [`Error::AlreadyExists`] for an existing bundle; [`Error::Io`] when the
/// parent is missing.
pub fn check_destination(bundle: &Path) -> Result<PathBuf> {
    if fs::symlink_metadata(bundle).is_ok() {
        return Err(Error::AlreadyExists {
            path: bundle.to_path_buf(),
            hint: "a bundle is never overwritten; pick another --dest or move the old one away",
        });
    }
    let parent = match bundle.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::io(
            "find the folder that should hold the bundle",
            &parent,
            io::Error::new(io::ErrorKind::NotFound, "create it first"),
        ));
    }
    Ok(parent)
}

/// A folder the tool fills before giving it its final name, marked as the
/// tool's own; dropped unfinished, it is removed.
///
/// Its name may sit in a folder another account writes (a restore stages
/// beside the target, in the instance's folder), so that account could swap
/// it for a link or another folder at any time. The folder is therefore held
/// open from the moment it is created, everything is written through that
/// handle, and its name is looked up only in its parent's handle, compared
/// with the folder created before it is removed or renamed.
#[derive(Debug)]
pub struct StagingFolder {
    path: PathBuf,
    /// The folder holding it.
    parent: OwnedFd,
    /// Its name there.
    name: OsString,
    /// The folder itself.
    handle: OwnedFd,
    identity: Identity,
    done: bool,
}

fn parent_folder(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

impl StagingFolder {
    /// Creates `path` (mode `0700`) with the marker, replacing a leftover of this tool's.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when `path` exists and is not this tool's, or
    /// something else took its place as it was created; [`Error::Io`] when it
    /// cannot be created.
    pub fn claim(path: &Path) -> Result<StagingFolder> {
        let name = path
            .file_name()
            .ok_or_else(|| {
                Error::io(
                    "create the folder",
                    path,
                    io::Error::other("the path names no folder"),
                )
            })?
            .to_owned();
        let parent_path = parent_folder(path);
        let parent = fd_walk::open_folder_following(parent_path)
            .map_err(|error| Error::io("open", parent_path, error.into()))?;
        match fd_walk::open_child_folder(parent.as_fd(), name.as_os_str()) {
            Ok(Some(existing)) => {
                let ours = fd_walk::stat_child(existing.as_fd(), PARTIAL_MARKER)
                    .is_ok_and(|marker| marker.is_file())
                    || fd_walk::child_names(existing.as_fd()).is_ok_and(|names| names.is_empty());
                if !ours {
                    return Err(not_ours(path));
                }
                // A leftover, or the folder another run is writing right now:
                // that run holds its lock, and its work is not removed.
                if let Err(error) =
                    rustix::fs::flock(&existing, FlockOperation::NonBlockingLockExclusive)
                {
                    if error == Errno::WOULDBLOCK {
                        return Err(Error::AlreadyExists {
                            path: path.to_path_buf(),
                            hint: "another cmw-upgrade is writing there now (a second backup or \
                                   restore to the same place); wait for it, or pick another place",
                        });
                    }
                    return Err(Error::io("lock", path, error.into()));
                }
                let identity = fd_walk::stat_handle(&existing)
                    .map_err(|error| Error::io("inspect", path, error.into()))?
                    .identity;
                fd_walk::remove_entry(parent.as_fd(), &name, path, true, Some(identity))?;
            }
            // A file or a link: not a leftover of this tool's.
            Ok(None) => return Err(not_ours(path)),
            Err(Errno::NOENT) => {}
            Err(error) => return Err(Error::io("open", path, error.into())),
        }
        rustix::fs::mkdirat(
            &parent,
            name.as_os_str(),
            rustix::fs::Mode::from_raw_mode(0o700),
        )
        .map_err(|error| Error::io("create the folder", path, error.into()))?;
        let taken = || Error::AlreadyExists {
            path: path.to_path_buf(),
            hint: "something else took its place as it was created; nothing was written into it",
        };
        let handle = match fd_walk::open_child_folder(parent.as_fd(), name.as_os_str()) {
            Ok(Some(handle)) => handle,
            Ok(None) | Err(Errno::NOENT) => return Err(taken()),
            Err(error) => return Err(Error::io("open", path, error.into())),
        };
        let created = fd_walk::stat_handle(&handle)
            .map_err(|error| Error::io("inspect", path, error.into()))?;
        // Another account can only put a folder of its own there, or one that
        // is not empty.
        let fresh = created.uid == rustix::process::geteuid().as_raw()
            && fd_walk::child_names(handle.as_fd()).is_ok_and(|names| names.is_empty());
        if !fresh {
            return Err(taken());
        }
        // Held as long as the handle: a second run to the same place sees it.
        match rustix::fs::flock(&handle, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => return Err(taken()),
            Err(error) => return Err(Error::io("lock", path, error.into())),
        }
        let staging = StagingFolder {
            path: path.to_path_buf(),
            parent,
            name,
            handle,
            identity: created.identity,
            done: false,
        };
        fd_walk::create_child_file(staging.handle.as_fd(), PARTIAL_MARKER, 0o600)
            .map_err(|error| Error::io("create", path.join(PARTIAL_MARKER), error.into()))?;
        Ok(staging)
    }

    /// The folder's path, for messages and for what only reads it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder itself, to write into.
    pub(crate) fn handle(&self) -> BorrowedFd<'_> {
        self.handle.as_fd()
    }

    /// Removes the folder now (its content has been moved out).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be removed; [`Error::SourceChanged`] when
    /// something else is at its name now (left alone).
    pub fn discard(mut self) -> Result<()> {
        self.done = true;
        self.remove()
    }

    fn remove(&self) -> Result<()> {
        fd_walk::remove_entry(
            self.parent.as_fd(),
            &self.name,
            &self.path,
            true,
            Some(self.identity),
        )
        .map(drop)
    }

    /// Renames the folder to `final_path` (in the same folder), without the
    /// marker, and flushes the parent folder so the new name survives a crash.
    fn rename_to(mut self, final_path: &Path) -> Result<()> {
        let marker = self.path.join(PARTIAL_MARKER);
        rustix::fs::unlinkat(&self.handle, PARTIAL_MARKER, rustix::fs::AtFlags::empty())
            .map_err(|error| Error::io("remove", &marker, error.into()))?;
        let final_name = final_path.file_name().unwrap_or_default();
        if parent_folder(final_path) != parent_folder(&self.path) || final_name.is_empty() {
            return Err(Error::Internal {
                details: format!(
                    "{} is not beside {}",
                    final_path.display(),
                    self.path.display()
                ),
            });
        }
        let at_name = fd_walk::stat_child(self.parent.as_fd(), self.name.as_os_str())
            .map_err(|error| Error::io("inspect", &self.path, error.into()))?;
        if at_name.identity != self.identity {
            return Err(Error::SourceChanged {
                path: self.path.clone(),
                details: "another folder took its place; it is not given the final name".to_owned(),
            });
        }
        rustix::fs::renameat(
            &self.parent,
            self.name.as_os_str(),
            &self.parent,
            final_name,
        )
        .map_err(|error| Error::io("rename the finished folder to", final_path, error.into()))?;
        self.done = true;
        rustix::fs::fsync(&self.parent)
            .map_err(|error| Error::io("flush", parent_folder(final_path), error.into()))
    }
}

fn not_ours(path: &Path) -> Error {
    Error::AlreadyExists {
        path: path.to_path_buf(),
        hint: "it is not unfinished work of cmw-upgrade, so it is left alone; move it away",
    }
}

impl Drop for StagingFolder {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: a leftover is replaced by the next run.
            let _ = self.remove();
        }
    }
}

/// A bundle being written, in `DIR.partial`.
#[derive(Debug)]
pub struct PartialBundle {
    bundle: PathBuf,
    staging: StagingFolder,
}

impl PartialBundle {
    /// Creates `DIR.partial` (mode `0700`), replacing a leftover one of this tool's.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when `DIR` exists, or `DIR.partial` exists and is
    /// not this tool's; [`Error::Io`] when it cannot be created.
    pub fn create(bundle: &Path) -> Result<PartialBundle> {
        check_destination(bundle)?;
        Ok(PartialBundle {
            bundle: bundle.to_path_buf(),
            staging: StagingFolder::claim(&partial_path(bundle))?,
        })
    }

    /// The folder to write into.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// The folder to write into, held open (see [`StagingFolder`]).
    pub(crate) fn handle(&self) -> BorrowedFd<'_> {
        self.staging.handle()
    }

    /// Writes the manifest, re-hashes every file against it, flushes the file
    /// system, and renames the folder to its final name.
    ///
    /// # Errors
    /// [`Error::BundleDamaged`] when a file does not match; [`Error::Io`]. The
    /// partial folder is then removed.
    pub fn finish(self, manifest: &Manifest, progress: &Progress) -> Result<PathBuf> {
        let partial = self.staging.path().to_path_buf();
        let path = partial.join(MANIFEST_FILE);
        let mut json = serde_json::to_vec_pretty(manifest).map_err(|error| {
            Error::io(
                "write the manifest",
                &path,
                io::Error::other(error.to_string()),
            )
        })?;
        json.push(b'\n');
        let mut file = fd_walk::create_child_file(self.staging.handle(), MANIFEST_FILE, 0o600)
            .map_err(|error| Error::io("create", &path, error.into()))?;
        file.write_all(&json)
            .map_err(|error| Error::io("write", &path, error))?;
        // The flush to disk and the re-hash (from the page cache) run side by
        // side; the bundle gets its final name only when both are done.
        let (flushed, verified) = std::thread::scope(|scope| {
            let flush = scope.spawn(|| {
                rustix::fs::syncfs(self.staging.handle())
                    .map_err(|error| Error::io("flush", &partial, error.into()))
            });
            let verified = verify_entries_at(self.staging.handle(), &partial, manifest, progress);
            progress.start(super::Phase::Flushing, 0, 0);
            (
                flush.join().expect("the flush thread does not panic"),
                verified,
            )
        });
        let mut report = verified?;
        flushed?;
        report.extra.retain(|extra| extra != PARTIAL_MARKER);
        if !report.missing.is_empty() || !report.changed.is_empty() || !report.extra.is_empty() {
            return Err(Error::BundleDamaged {
                bundle: partial,
                details: format!(
                    "right after writing, {} file(s) missing, {} changed, {} unexpected (first: {}); check the disk",
                    report.missing.len(),
                    report.changed.len(),
                    report.extra.len(),
                    report
                        .missing
                        .iter()
                        .chain(&report.changed)
                        .chain(&report.extra)
                        .next()
                        .map_or("", String::as_str)
                ),
            });
        }
        self.staging.rename_to(&self.bundle)?;
        Ok(self.bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_covers_blocks_and_a_share_of_the_data() {
        assert_eq!(space_needed(0, 0, 4096), 16 << 20);
        assert_eq!(
            space_needed(1000 << 20, 2500, 4096),
            (1000 << 20) + 2500 * 4096 + (20 << 20) + (16 << 20)
        );
    }

    #[test]
    fn foreign_partial_folders_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("prod");
        let partial = partial_path(&bundle);
        assert_eq!(partial, dir.path().join("prod.partial"));
        fs::create_dir(&partial).unwrap();
        fs::write(partial.join("precious"), "data").unwrap();
        assert!(matches!(
            PartialBundle::create(&bundle),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(partial.join("precious").exists());
        fs::remove_file(partial.join("precious")).unwrap();
        fs::write(partial.join(PARTIAL_MARKER), "").unwrap();
        fs::write(partial.join("half-copied"), "x").unwrap();
        let writer = PartialBundle::create(&bundle).unwrap();
        assert!(
            !partial.join("half-copied").exists(),
            "our own leftover is replaced"
        );
        drop(writer);
        assert!(
            !partial.exists(),
            "an unfinished bundle is removed when dropped"
        );
        fs::create_dir(&bundle).unwrap();
        assert!(matches!(
            PartialBundle::create(&bundle),
            Err(Error::AlreadyExists { .. })
        ));
    }
}
