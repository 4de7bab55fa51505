//! Writing a bundle so that an unfinished one never looks finished.
//!
//! Everything goes into `DIR.partial/` (mode `0700`), marked as the tool's own
//! by a marker file so a rerun may replace it; only after the manifest is
//! written, every file re-hashed against it and the file system flushed is the
//! folder renamed to `DIR`. Dropping an unfinished [`PartialBundle`] removes it.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::manifest::{Manifest, MANIFEST_FILE};
use super::tree::{create_private_file, remove_own_tree};
use super::verify::verify_entries;
use super::Progress;
use crate::error::{Error, Result};

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
#[derive(Debug)]
pub struct StagingFolder {
    path: PathBuf,
    done: bool,
}

impl StagingFolder {
    /// Creates `path` (mode `0700`) with the marker, replacing a leftover of this tool's.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when `path` exists and is not this tool's;
    /// [`Error::Io`] when it cannot be created.
    pub fn claim(path: &Path) -> Result<StagingFolder> {
        if let Ok(metadata) = fs::symlink_metadata(path) {
            let ours = !metadata.is_symlink()
                && (path.join(PARTIAL_MARKER).is_file()
                    || fs::read_dir(path).is_ok_and(|mut listing| listing.next().is_none()));
            if !ours {
                return Err(Error::AlreadyExists {
                    path: path.to_path_buf(),
                    hint: "it is not unfinished work of cmw-upgrade, so it is left alone; move it away",
                });
            }
            remove_own_tree(path)?;
        }
        DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|error| Error::io("create the folder", path, error))?;
        let staging = StagingFolder {
            path: path.to_path_buf(),
            done: false,
        };
        let marker = path.join(PARTIAL_MARKER);
        File::create(&marker).map_err(|error| Error::io("create", &marker, error))?;
        Ok(staging)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the folder now (its content has been moved out).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be removed.
    pub fn discard(mut self) -> Result<()> {
        self.done = true;
        remove_own_tree(&self.path)
    }

    /// Renames the folder to `final_path`, without the marker, and flushes the
    /// parent folder so the new name survives a crash.
    fn rename_to(mut self, final_path: &Path) -> Result<()> {
        let marker = self.path.join(PARTIAL_MARKER);
        fs::remove_file(&marker).map_err(|error| Error::io("remove", &marker, error))?;
        fs::rename(&self.path, final_path)
            .map_err(|error| Error::io("rename the finished folder to", final_path, error))?;
        self.done = true;
        if let Some(parent) = final_path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            File::open(parent)
                .and_then(|handle| handle.sync_all())
                .map_err(|error| Error::io("flush", parent, error))?;
        }
        Ok(())
    }
}

impl Drop for StagingFolder {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: a leftover is replaced by the next run.
            let _ = remove_own_tree(&self.path);
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
        let mut file = create_private_file(&path)?;
        file.write_all(&json)
            .map_err(|error| Error::io("write", &path, error))?;
        // The flush to disk and the re-hash (from the page cache) run side by
        // side; the bundle gets its final name only when both are done.
        let (flushed, verified) = std::thread::scope(|scope| {
            let flush = scope.spawn(|| {
                let handle =
                    File::open(&partial).map_err(|error| Error::io("open", &partial, error))?;
                rustix::fs::syncfs(&handle)
                    .map_err(|error| Error::io("flush", &partial, error.into()))
            });
            let verified = verify_entries(&partial, manifest, progress);
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
