//! Checking a bundle against its manifest, and a live database against a bundle.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::{EntryKind, Manifest, ManifestEntry, KEPT_LOGS_FOLDER, MANIFEST_FILE};
use super::tree::{hash_files, list_tree};
use super::{Phase, Progress};
use crate::error::{Error, Result};

/// What `backup verify` found; paths are relative to the bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Whether everything matched.
    pub ok: bool,
    /// In the manifest, not in the bundle.
    pub missing: Vec<String>,
    /// Different size, hash, kind or link target.
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
    let present: HashMap<String, fs::Metadata> = list_tree(bundle)?.into_iter().collect();
    let mut report = VerifyReport::default();
    let mut to_hash: Vec<&ManifestEntry> = Vec::new();
    for entry in &manifest.files {
        let Some(metadata) = present.get(&entry.path) else {
            report.missing.push(entry.path.clone());
            continue;
        };
        let file_type = metadata.file_type();
        let same_kind = match entry.kind {
            EntryKind::File => file_type.is_file(),
            EntryKind::Dir => file_type.is_dir(),
            EntryKind::Symlink => file_type.is_symlink(),
        };
        if !same_kind {
            report.changed.push(entry.path.clone());
            continue;
        }
        match entry.kind {
            EntryKind::File if metadata.len() != entry.size => {
                report.changed.push(entry.path.clone())
            }
            EntryKind::File => to_hash.push(entry),
            EntryKind::Symlink => {
                let target = fs::read_link(bundle.join(&entry.path)).ok();
                if target.as_deref() != entry.target.as_deref().map(Path::new) {
                    report.changed.push(entry.path.clone());
                }
            }
            EntryKind::Dir => {}
        }
    }
    let listed: HashSet<&str> = manifest
        .files
        .iter()
        .map(|entry| entry.path.as_str())
        .collect();
    report.extra = present
        .keys()
        .filter(|path| {
            path.as_str() != MANIFEST_FILE && !is_kept_logs(path) && !listed.contains(path.as_str())
        })
        .cloned()
        .collect();
    progress.start(
        Phase::Verifying,
        to_hash.iter().map(|entry| entry.size).sum(),
        to_hash.len() as u64,
    );
    let paths: Vec<PathBuf> = to_hash
        .iter()
        .map(|entry| bundle.join(&entry.path))
        .collect();
    let hashed = hash_files(&paths, progress);
    progress.check_cancelled()?;
    for (entry, hashed) in to_hash.iter().zip(hashed) {
        match hashed {
            Ok((size, hash)) if size == entry.size && Some(&hash) == entry.blake3.as_ref() => {}
            Ok(_) => report.changed.push(entry.path.clone()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                report.missing.push(entry.path.clone());
            }
            Err(error) => return Err(Error::io("read", bundle.join(&entry.path), error)),
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
    /// Different size or time (or, with `deep`, content) or link target.
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
    let resolved = fs::canonicalize(database)
        .map_err(|error| Error::io("resolve the database folder", database, error))?;
    let live: HashMap<String, fs::Metadata> = list_tree(&resolved)?
        .into_iter()
        .filter(|(_, metadata)| !metadata.is_dir())
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
        let Some(metadata) = live.get(relative) else {
            report.removed.push(relative.to_owned());
            continue;
        };
        let changed = match entry.kind {
            EntryKind::File => {
                !metadata.is_file()
                    || metadata.len() != entry.size
                    || metadata.mtime() != entry.mtime
                    || metadata.mtime_nsec() as u32 != entry.mtime_nsec
            }
            EntryKind::Symlink => {
                fs::read_link(resolved.join(relative)).ok().as_deref()
                    != entry.target.as_deref().map(Path::new)
            }
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
        .filter(|path| !backed_up.contains(path.as_str()))
        .cloned()
        .collect();
    progress.start(
        Phase::Verifying,
        to_hash.iter().map(|(_, entry)| entry.size).sum(),
        to_hash.len() as u64,
    );
    let paths: Vec<PathBuf> = to_hash
        .iter()
        .map(|(relative, _)| resolved.join(relative))
        .collect();
    let hashed = hash_files(&paths, progress);
    progress.check_cancelled()?;
    for ((relative, entry), hashed) in to_hash.iter().zip(hashed) {
        match hashed {
            Ok((_, hash)) if Some(&hash) == entry.blake3.as_ref() => {}
            Ok(_) => report.changed.push((*relative).to_owned()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                report.removed.push((*relative).to_owned());
            }
            Err(error) => return Err(Error::io("read", resolved.join(relative), error)),
        }
    }
    for list in [&mut report.changed, &mut report.added, &mut report.removed] {
        list.sort();
    }
    Ok(report)
}
