//! `manifest.json`: what a bundle holds, file by file, with BLAKE3 hashes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest's file name at the top of a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The bundle folder where a failed upgrade's logs are kept for support.
/// `verify` does not count it as extra: it is added after the backup.
pub const KEPT_LOGS_FOLDER: &str = "upgrade-logs";

/// The manifest format this tool writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What a manifest entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file, with size and hash.
    File,
    /// A folder.
    Dir,
    /// A symbolic link, stored as a link (never followed).
    Symlink,
}

/// One file, folder or link in a bundle. Mode, owner and times are the
/// source's, so a restore can give them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the bundle, `/`-separated (`database/db/...`).
    pub path: String,
    /// File, folder or link.
    pub kind: EntryKind,
    /// Bytes (files only; 0 otherwise).
    #[serde(default)]
    pub size: u64,
    /// Permission bits of the source.
    pub mode: u32,
    /// Modification time of the source, whole seconds since 1970.
    pub mtime: i64,
    /// The nanoseconds of the modification time.
    #[serde(default)]
    pub mtime_nsec: u32,
    /// Owner user id of the source.
    pub uid: u32,
    /// Owner group id of the source.
    pub gid: u32,
    /// BLAKE3 of the content, hex (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Where a link points, as stored in the link (links only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// How a bundle's database was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupMethod {
    /// A file copy of the database folder, possibly while the instance runs.
    Copy,
    /// An Ignite snapshot made first, then the folder copied with it.
    Snapshot,
    /// Converted from the platform's own `.cdbbz` backup.
    Import,
}

impl BackupMethod {
    /// What the admin must know about the consistency of such a bundle.
    pub fn consistency(self) -> &'static str {
        match self {
            BackupMethod::Copy => {
                "crash-consistent only: the database was copied file by file, and a running \
                 instance may have written during the copy; restoring it is like restarting \
                 after a power cut. Stop the instance first, or use --method snapshot, for a \
                 consistent copy"
            }
            BackupMethod::Snapshot => {
                "consistent in the Ignite snapshot stored with it (database/snapshots/<name>); \
                 the rest of the database folder is a crash-consistent copy"
            }
            BackupMethod::Import => "as consistent as the platform's own backup it came from",
        }
    }
}

/// Where the bundle's parts were copied from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSources {
    /// The target root of the source server (`/` on a live server).
    pub root: String,
    /// The database folder (after following symlinks), or the imported file.
    pub database: String,
    /// The uploaded-files folder, with `--with-streams`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<String>,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// Version of cmw-upgrade that wrote it.
    pub tool_version: String,
    /// The instance, when known.
    pub instance: Option<String>,
    /// Host name of the machine that wrote the bundle.
    pub host: String,
    /// OS family of the source server (`deb`, `rpm`, `alt`), when known.
    pub os_family: Option<String>,
    /// The platform version from the instance config (`version`), when set.
    pub platform_version: Option<String>,
    /// How the database was taken.
    pub method: BackupMethod,
    /// What that means for consistency, in words.
    pub consistency: String,
    /// The Ignite snapshot's name, with `--method snapshot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Where the parts came from.
    pub sources: BundleSources,
    /// When the backup started, RFC 3339 UTC.
    pub started: String,
    /// When the copy finished, RFC 3339 UTC.
    pub finished: String,
    /// Every folder, file and link in the bundle but the manifest, sorted by path.
    pub files: Vec<ManifestEntry>,
}

impl Manifest {
    /// Reads and checks the manifest of the bundle in `bundle`.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; [`Error::BundleDamaged`] when it
    /// does not parse, has an unknown format, or names unsafe paths.
    pub fn read(bundle: &Path) -> Result<Manifest> {
        let path = bundle.join(MANIFEST_FILE);
        let mut bytes = Vec::new();
        crate::disk::open_regular(&path)
            .and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut bytes))
            .map_err(|error| Error::io("read the bundle manifest", &path, error))?;
        let damaged = |details: String| Error::BundleDamaged {
            bundle: bundle.to_path_buf(),
            details,
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|error| damaged(format!("{MANIFEST_FILE} does not parse: {error}")))?;
        if manifest.format != FORMAT_VERSION {
            return Err(damaged(format!(
                "{MANIFEST_FILE} has format {}, this tool reads format {FORMAT_VERSION}; use a matching cmw-upgrade",
                manifest.format
            )));
        }
        if let Some(entry) = manifest
            .files
            .iter()
            .find(|entry| !is_safe_relative(&entry.path))
        {
            return Err(damaged(format!(
                "{MANIFEST_FILE} names the unsafe path {:?}",
                entry.path
            )));
        }
        Ok(manifest)
    }

    /// The entries under `prefix/` (e.g. `database`), with paths relative to it;
    /// the `prefix` folder itself comes out as `""`.
    pub fn entries_under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a ManifestEntry)> + 'a {
        self.files.iter().filter_map(move |entry| {
            if entry.path == prefix {
                return Some(("", entry));
            }
            entry
                .path
                .strip_prefix(prefix)?
                .strip_prefix('/')
                .map(|relative| (relative, entry))
        })
    }

    /// Bytes of all files in the bundle.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|entry| entry.size).sum()
    }
}

/// Whether a bundle-relative path stays inside the bundle: relative, no `..`,
/// no empty or `.` parts.
pub fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(is_safe_relative("database/db/node/part-1.bin"));
        for path in [
            "",
            "/etc/passwd",
            "database/../../etc",
            "a//b",
            "./a",
            "a/.",
        ] {
            assert!(!is_safe_relative(path), "{path}");
        }
    }
}
