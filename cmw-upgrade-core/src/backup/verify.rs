//! Checking a bundle against its manifest, and a live database against a bundle.

use std::collections::{HashMap, HashSet};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::{EntryKind, Manifest, ManifestEntry, KEPT_LOGS_FOLDER, MANIFEST_FILE};
use super::tree::{hash_files, list_tree, list_tree_at, Hashed, ListedEntry, ListedTree};
use super::{Phase, Progress};
use crate::error::{Error, Result};

/// What `backup verify` found; paths are relative to the bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Whether everything matched.
    pub ok: bool,
    /// In the manifest, not in the bundle.
    pub missing: Vec<String>,
    /// Different size, hash, kind or link target (`changed_files`: every
    /// JSON report's `changed` says whether the call changed the server).
    #[serde(rename = "changed_files")]
    pub changed: Vec<String>,
    /// In the bundle, not in the manifest.
    pub extra: Vec<String>,
}

/// Re-hashes every file of the bundle in `bundle` and compares it with the manifest.
///
/// # Errors
/// [`Error::Io`] or [`Error::BundleDamaged`] when the manifest cannot be read;
/// [`Error::Cancelled`] when the progress's stop request is set; damaged files
/// are reported, not errors.
pub fn verify_bundle(bundle: &Path, progress: &Progress) -> Result<VerifyReport> {
    let manifest = Manifest::read(bundle)?;
    verify_entries(bundle, &manifest, progress)
}

/// Whether `path` (relative to the bundle) is in the folder where a failed
/// upgrade's logs are kept: added after the backup, not part of it.
fn is_kept_logs(path: &str) -> bool {
    path == KEPT_LOGS_FOLDER || path.starts_with(&format!("{KEPT_LOGS_FOLDER}/"))
}

/// Compares the files under `bundle` with `manifest`.
///
/// # Errors
/// [`Error::Io`] when a folder of the bundle cannot be listed;
/// [`Error::Cancelled`] when the progress's stop request is set.
pub fn verify_entries(
    bundle: &Path,
    manifest: &Manifest,
    progress: &Progress,
) -> Result<VerifyReport> {
    compare_with_manifest(&list_tree(bundle)?, manifest, progress)
}

/// Like [`verify_entries`], for the bundle folder already open as `handle`
/// (one being written, whose name is not looked up again).
///
/// # Errors
/// As [`verify_entries`].
pub(crate) fn verify_entries_at(
    handle: BorrowedFd<'_>,
    bundle: &Path,
    manifest: &Manifest,
    progress: &Progress,
) -> Result<VerifyReport> {
    let handle = handle
        .try_clone_to_owned()
        .map_err(|error| Error::io("open", bundle, error))?;
    compare_with_manifest(&list_tree_at(handle, bundle)?, manifest, progress)
}

fn compare_with_manifest(
    listed: &ListedTree,
    manifest: &Manifest,
    progress: &Progress,
) -> Result<VerifyReport> {
    let present: HashMap<&str, &ListedEntry> = listed
        .entries
        .iter()
        .map(|(path, entry)| (path.as_str(), entry))
        .collect();
    let mut report = VerifyReport::default();
    let mut to_hash: Vec<&ManifestEntry> = Vec::new();
    for entry in &manifest.files {
        let Some(found) = present.get(entry.path.as_str()) else {
            report.missing.push(entry.path.clone());
            continue;
        };
        let same_kind = match entry.kind {
            EntryKind::File => found.stat.is_file(),
            EntryKind::Dir => found.stat.is_dir(),
            EntryKind::Symlink => found.stat.is_symlink(),
        };
        if !same_kind {
            report.changed.push(entry.path.clone());
            continue;
        }
        match entry.kind {
            EntryKind::File if found.stat.size != entry.size => {
                report.changed.push(entry.path.clone())
            }
            EntryKind::File => to_hash.push(entry),
            EntryKind::Symlink => {
                if found.target.as_deref() != entry.target.as_deref().map(Path::new) {
                    report.changed.push(entry.path.clone());
                }
            }
            EntryKind::Dir => {}
        }
    }
    let listed_in_manifest: HashSet<&str> = manifest
        .files
        .iter()
        .map(|entry| entry.path.as_str())
        .collect();
    report.extra = present
        .keys()
        .filter(|path| {
            **path != MANIFEST_FILE && !is_kept_logs(path) && !listed_in_manifest.contains(*path)
        })
        .map(|path| (*path).to_owned())
        .collect();
    progress.start(
        Phase::Verifying,
        to_hash.iter().map(|entry| entry.size).sum(),
        to_hash.len() as u64,
    );
    let paths: Vec<&str> = to_hash.iter().map(|entry| entry.path.as_str()).collect();
    let hashed = hash_files(listed, &paths, progress);
    progress.check_cancelled()?;
    for (entry, hashed) in to_hash.iter().zip(hashed) {
        match hashed? {
            Hashed::File { size, blake3 }
                if size == entry.size && Some(&blake3) == entry.blake3.as_ref() => {}
            Hashed::File { .. } | Hashed::NotAFile => report.changed.push(entry.path.clone()),
            Hashed::Missing => report.missing.push(entry.path.clone()),
        }
    }
    for list in [&mut report.missing, &mut report.changed, &mut report.extra] {
        list.sort();
    }
    report.ok = report.missing.is_empty() && report.changed.is_empty() && report.extra.is_empty();
    Ok(report)
}

/// What changed in a live database since its backup; paths are relative to the
/// database folder. Files and links are compared; folders show through them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftReport {
    /// The live database folder compared.
    pub database: PathBuf,
    /// Whether `--deep` re-hashed files whose size and time matched.
    pub deep: bool,
    /// Different size or time (or, with `deep`, content) or link target
    /// (`changed_files`, as in [`VerifyReport`]).
    #[serde(rename = "changed_files")]
    pub changed: Vec<String>,
    /// In the live database, not in the bundle: data the new instance will not have.
    pub added: Vec<String>,
    /// In the bundle, gone from the live database.
    pub removed: Vec<String>,
}

/// Compares the live database folder `database` with the bundle's manifest:
/// size and modification time, and with `deep` the content hash.
///
/// # Errors
/// [`Error::Io`] or [`Error::BundleDamaged`] when the manifest cannot be read,
/// or the database folder cannot be resolved or listed; [`Error::Cancelled`]
/// when the progress's stop request is set.
pub fn bundle_drift(
    bundle: &Path,
    database: &Path,
    deep: bool,
    progress: &Progress,
) -> Result<DriftReport> {
    let manifest = Manifest::read(bundle)?;
    let resolved = std::fs::canonicalize(database)
        .map_err(|error| Error::io("resolve the database folder", database, error))?;
    let listed = list_tree(&resolved)?;
    let live: HashMap<&str, &ListedEntry> = listed
        .entries
        .iter()
        .filter(|(_, entry)| !entry.stat.is_dir())
        .map(|(path, entry)| (path.as_str(), entry))
        .collect();
    let mut report = DriftReport {
        database: database.to_path_buf(),
        deep,
        ..DriftReport::default()
    };
    let mut backed_up = HashSet::new();
    let mut to_hash = Vec::new();
    for (relative, entry) in manifest.entries_under("database") {
        if entry.kind == EntryKind::Dir {
            continue;
        }
        backed_up.insert(relative);
        let Some(found) = live.get(relative) else {
            report.removed.push(relative.to_owned());
            continue;
        };
        let changed = match entry.kind {
            EntryKind::File => {
                !found.stat.is_file()
                    || found.stat.size != entry.size
                    || found.stat.mtime != entry.mtime
                    || found.stat.mtime_nsec != entry.mtime_nsec
            }
            EntryKind::Symlink => found.target.as_deref() != entry.target.as_deref().map(Path::new),
            EntryKind::Dir => false,
        };
        if changed {
            report.changed.push(relative.to_owned());
        } else if deep && entry.kind == EntryKind::File {
            to_hash.push((relative, entry));
        }
    }
    report.added = live
        .keys()
        .filter(|path| !backed_up.contains(**path))
        .map(|path| (*path).to_owned())
        .collect();
    progress.start(
        Phase::Verifying,
        to_hash.iter().map(|(_, entry)| entry.size).sum(),
        to_hash.len() as u64,
    );
    let paths: Vec<&str> = to_hash.iter().map(|(relative, _)| *relative).collect();
    let hashed = hash_files(&listed, &paths, progress);
    progress.check_cancelled()?;
    for ((relative, entry), hashed) in to_hash.iter().zip(hashed) {
        match hashed? {
            Hashed::File { blake3, .. } if Some(&blake3) == entry.blake3.as_ref() => {}
            Hashed::File { .. } | Hashed::NotAFile => report.changed.push((*relative).to_owned()),
            Hashed::Missing => report.removed.push((*relative).to_owned()),
        }
    }
    for list in [&mut report.changed, &mut report.added, &mut report.removed] {
        list.sort();
    }
    Ok(report)
}
