//! Removing the old-format Ignite caches after the data-structure upgrade.
//!
//! The procedure: in each Ignite node folder (a folder that directly holds
//! `cacheGroup-*` entries) of the upgraded database or its unpacked backup,
//! remove the entries matching [`CACHE_ENTRY_PATTERNS`]. [`plan_prune`] finds
//! them and counts their bytes without changing anything (that is `--check`);
//! [`apply_prune`] removes exactly what the plan lists.
//!
//! Safety rules: symlinks are never followed below the target (a link is removed
//! as a link), nothing outside the target is touched, node folders inside a
//! `snapshots/` folder are backups and are left alone, and a target without any
//! node folder is an error because it is almost surely the wrong folder.

// Pruning removes cache folders of a database copy on the server it runs on (or its agent), never following links.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use glob::{MatchOptions, Pattern};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The entries removed from each node folder, as the procedure lists them.
pub const CACHE_ENTRY_PATTERNS: [&str; 8] = [
    "cacheGroup-*-TableIdentity",
    "cacheGroup-*-TableIdentityReplicated",
    "cacheGroup-*Value",
    "cacheGroup-*ValueReplicated",
    "cache-ignite-sys-cache",
    "cp",
    "metastorage",
    "cacheGroup-Keys",
];

/// Folders whose node folders are backups, never pruned.
pub const SNAPSHOT_FOLDER_NAME: &str = "snapshots";

const NODE_FOLDER_MARKER: &str = "cacheGroup-";

fn compiled_patterns() -> &'static [Pattern] {
    static PATTERNS: OnceLock<Vec<Pattern>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        CACHE_ENTRY_PATTERNS
            .iter()
            .map(|pattern| Pattern::new(pattern).expect("the built-in patterns are valid"))
            .collect()
    })
}

/// Whether an entry name in a node folder is one of the caches to remove.
///
/// `*` matches within the name only; a name holding `/` never matches.
pub fn is_cache_entry(name: &str) -> bool {
    let options = MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    !name.contains('/')
        && compiled_patterns()
            .iter()
            .any(|pattern| pattern.matches_with(name, options))
}

/// Whether a folder with these entry names is an Ignite node folder.
pub fn is_node_folder<'a>(entry_names: impl IntoIterator<Item = &'a str>) -> bool {
    entry_names
        .into_iter()
        .any(|name| name.starts_with(NODE_FOLDER_MARKER))
}

/// What kind of filesystem entry a planned removal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A folder, removed with everything in it.
    Folder,
    /// A regular file (or anything that is neither folder nor link).
    File,
    /// A symbolic link, removed as a link; its target is not touched.
    Symlink,
}

/// One entry the plan removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneEntry {
    /// Path relative to the target.
    pub path: PathBuf,
    /// What it is.
    pub kind: EntryKind,
    /// Bytes of the regular files in it.
    pub bytes: u64,
    /// Number of filesystem entries in it, itself included.
    pub entries: u64,
}

/// What pruning a target would remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrunePlan {
    /// The target folder as given.
    pub target: PathBuf,
    /// Node folders found, relative to the target, sorted.
    pub node_folders: Vec<PathBuf>,
    /// Entries to remove, sorted by path.
    pub entries: Vec<PruneEntry>,
    /// Total bytes of regular files the entries hold.
    pub bytes: u64,
}

/// What pruning did (or, in check mode, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Paths removed, relative to the target, sorted.
    pub removed: Vec<String>,
    /// Bytes of regular files freed.
    pub bytes_freed: u64,
    /// True when nothing was removed because this was a check.
    pub check: bool,
    /// Node folders found, relative to the target, sorted.
    pub node_folders: Vec<String>,
}

/// Finds what pruning `target` would remove. Reads only.
///
/// # Errors
/// [`Error::NotAFolder`] when the target is not a folder, [`Error::NoIgniteNodeFolder`]
/// when it holds no node folder, [`Error::Io`] when a folder cannot be listed.
pub fn plan_prune(target: &Path) -> Result<PrunePlan> {
    // The target itself may be a link (e.g. /var/lib/comindware/<i> on another disk):
    // the admin named it, so it is followed. Nothing below it is.
    let metadata = fs::metadata(target).map_err(|error| Error::io("open", target, error))?;
    if !metadata.is_dir() {
        return Err(Error::NotAFolder {
            path: target.to_path_buf(),
            hint: "pass the Database folder or the unpacked backup folder",
        });
    }
    let mut node_folders = Vec::new();
    let mut selected: Vec<(PathBuf, EntryKind)> = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let folder = target.join(&relative);
        let mut children = Vec::new();
        for entry in fs::read_dir(&folder).map_err(|error| Error::io("list", &folder, error))? {
            let entry = entry.map_err(|error| Error::io("list", &folder, error))?;
            let kind = entry
                .file_type()
                .map_err(|error| Error::io("inspect", entry.path(), error))?;
            let kind = if kind.is_symlink() {
                EntryKind::Symlink
            } else if kind.is_dir() {
                EntryKind::Folder
            } else {
                EntryKind::File
            };
            children.push((entry.file_name().to_string_lossy().into_owned(), kind));
        }
        let is_node = is_node_folder(children.iter().map(|(name, _)| name.as_str()));
        if is_node {
            node_folders.push(relative.clone());
        }
        for (name, kind) in children {
            if is_node && is_cache_entry(&name) {
                selected.push((relative.join(&name), kind));
                continue;
            }
            let descend = kind == EntryKind::Folder
                && name != SNAPSHOT_FOLDER_NAME
                // A node folder's cache partitions never hold node folders themselves.
                && !(is_node && (name.starts_with(NODE_FOLDER_MARKER) || name.starts_with("cache-")));
            if descend {
                pending.push(relative.join(&name));
            }
        }
    }
    if node_folders.is_empty() {
        return Err(Error::NoIgniteNodeFolder {
            target: target.to_path_buf(),
        });
    }
    node_folders.sort();
    let mut entries = crate::parallel::parallel_map(&selected, |(relative, kind)| {
        let (bytes, entries) = measure(&target.join(relative), *kind)?;
        Ok(PruneEntry {
            path: relative.clone(),
            kind: *kind,
            bytes,
            entries,
        })
    })?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let bytes = entries.iter().map(|entry| entry.bytes).sum();
    Ok(PrunePlan {
        target: target.to_path_buf(),
        node_folders,
        entries,
        bytes,
    })
}

/// Bytes of regular files and number of entries under `path`, links not followed.
fn measure(path: &Path, kind: EntryKind) -> Result<(u64, u64)> {
    match kind {
        EntryKind::Symlink => Ok((0, 1)),
        EntryKind::File => {
            let metadata =
                fs::symlink_metadata(path).map_err(|error| Error::io("inspect", path, error))?;
            Ok((
                if metadata.is_file() {
                    metadata.len()
                } else {
                    0
                },
                1,
            ))
        }
        EntryKind::Folder => {
            let (mut bytes, mut entries) = (0, 1);
            let mut pending = vec![path.to_path_buf()];
            while let Some(folder) = pending.pop() {
                for entry in
                    fs::read_dir(&folder).map_err(|error| Error::io("list", &folder, error))?
                {
                    let entry = entry.map_err(|error| Error::io("list", &folder, error))?;
                    let file_type = entry
                        .file_type()
                        .map_err(|error| Error::io("inspect", entry.path(), error))?;
                    entries += 1;
                    if file_type.is_dir() {
                        pending.push(entry.path());
                    } else if file_type.is_file() {
                        // DirEntry::metadata does not follow links.
                        let metadata = entry
                            .metadata()
                            .map_err(|error| Error::io("inspect", entry.path(), error))?;
                        bytes += metadata.len();
                    }
                }
            }
            Ok((bytes, entries))
        }
    }
}

/// Removes what the plan lists. Entries already gone are skipped; a folder that
/// became a link since planning is removed as a link.
///
/// # Errors
/// [`Error::Io`] naming the entry that could not be removed; entries removed before
/// it stay removed (they are caches the platform rebuilds).
pub fn apply_prune(plan: &PrunePlan) -> Result<PruneReport> {
    let outcomes = crate::parallel::parallel_map(&plan.entries, |entry| {
        let path = plan.target.join(&entry.path);
        let metadata = match fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::io("inspect", &path, error)),
        };
        // std's remove_dir_all never follows links and is safe against a folder being
        // swapped for a link while it runs; remove_file on a link removes the link.
        let removal = if metadata.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removal.map_err(|error| Error::io("remove", &path, error))?;
        Ok(Some(entry.clone()))
    })?;
    let removed: Vec<PruneEntry> = outcomes.into_iter().flatten().collect();
    Ok(PruneReport {
        removed: removed
            .iter()
            .map(|entry| entry.path.to_string_lossy().into_owned())
            .collect(),
        bytes_freed: removed.iter().map(|entry| entry.bytes).sum(),
        check: false,
        node_folders: node_folder_names(plan),
    })
}

fn node_folder_names(plan: &PrunePlan) -> Vec<String> {
    plan.node_folders
        .iter()
        .map(|folder| {
            let text = folder.to_string_lossy();
            if text.is_empty() {
                ".".to_owned()
            } else {
                text.into_owned()
            }
        })
        .collect()
}

impl PrunePlan {
    /// The report this plan would give, for check mode.
    pub fn as_check_report(&self) -> PruneReport {
        PruneReport {
            removed: self
                .entries
                .iter()
                .map(|entry| entry.path.to_string_lossy().into_owned())
                .collect(),
            bytes_freed: self.bytes,
            check: true,
            node_folders: node_folder_names(self),
        }
    }
}

/// Plans and, unless `check`, applies pruning of `target`.
///
/// # Errors
/// As [`plan_prune`] and [`apply_prune`].
pub fn prune_caches(target: &Path, check: bool) -> Result<PruneReport> {
    let plan = plan_prune(target)?;
    if check {
        Ok(plan.as_check_report())
    } else {
        apply_prune(&plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_eight_patterns_select_what_the_procedure_removes() {
        for name in [
            "cacheGroup-Account-TableIdentity",
            "cacheGroup-Account-TableIdentityReplicated",
            "cacheGroup-AttributeValue",
            "cacheGroup-AttributeValueReplicated",
            "cacheGroup-Value",
            "cache-ignite-sys-cache",
            "cp",
            "metastorage",
            "cacheGroup-Keys",
        ] {
            assert!(is_cache_entry(name), "{name}");
        }
        for name in [
            "cacheGroup-Account",
            "cacheGroup-Keys2",
            "cacheGroup-ValueX",
            "cache-ignite-sys-cache2",
            "cp2",
            "wal",
            "maintenance_lock",
            "cacheGroup-A/B-TableIdentity",
            "lock",
            "CP",
        ] {
            assert!(!is_cache_entry(name), "{name}");
        }
    }

    #[test]
    fn node_folders_are_told_by_their_cache_groups() {
        assert!(is_node_folder(["cp", "cacheGroup-Keys"]));
        assert!(!is_node_folder(["cp", "metastorage", "wal"]));
    }

    proptest! {
        /// `*` never crosses `/`: no name with a separator is ever selected.
        #[test]
        fn star_never_crosses_a_separator(prefix in "[A-Za-z-]{0,8}", suffix in "[A-Za-z-]{0,8}") {
            let name = format!("cacheGroup-{prefix}/{suffix}Value");
            prop_assert!(!is_cache_entry(&name));
        }

        /// Every name ending in Value after the cacheGroup- prefix is selected.
        #[test]
        fn value_groups_are_selected(middle in "[A-Za-z0-9_-]{0,16}") {
            let value_name = format!("cacheGroup-{middle}Value");
            let replicated_name = format!("cacheGroup-{middle}ValueReplicated");
            prop_assert!(is_cache_entry(&value_name));
            prop_assert!(is_cache_entry(&replicated_name));
        }
    }
}
