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
//!
//! The database belongs to the platform's service account, which can write in
//! it while this runs as root and could swap a node folder for a link to a
//! folder of root's between planning and removing. So the target is listed and
//! pruned through folder handles (see `fd_walk`): the plan records the device
//! and inode of every folder it listed, removal opens each node folder again
//! from the target one level at a time and refuses one that is not the folder
//! planned, and what it removes is removed by name in that folder's handle.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use glob::{MatchOptions, Pattern};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fd_walk::{self, EntryStat, Identity};

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
    /// Device and inode of the target (at the empty path) and of every folder
    /// listed below it, so removal opens exactly the folders planned.
    #[serde(skip)]
    folders: BTreeMap<PathBuf, Identity>,
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

/// A folder swapped under pruning, as the error prune reports: the copy's
/// advice of [`Error::SourceChanged`] does not fit here.
fn swapped_under_prune(error: Error) -> Error {
    match error {
        Error::SourceChanged { path, details } => Error::io(
            "prune",
            path,
            io::Error::other(format!(
                "{details}; nothing is removed through it: something writes in the \
                 database, stop the instance and check who"
            )),
        ),
        other => other,
    }
}

/// Finds what pruning `target` would remove. Reads only.
///
/// # Errors
/// [`Error::NotAFolder`] when the target is not a folder, [`Error::NoIgniteNodeFolder`]
/// when it holds no node folder, [`Error::Io`] when a folder cannot be listed
/// or is swapped while it is listed.
pub fn plan_prune(target: &Path) -> Result<PrunePlan> {
    // The target itself may be a link (e.g. /var/lib/comindware/<i> on another disk):
    // the admin named it, so it is followed. Nothing below it is.
    let handle = match fd_walk::open_folder_following(target) {
        Ok(handle) => handle,
        Err(Errno::NOTDIR) => {
            return Err(Error::NotAFolder {
                path: target.to_path_buf(),
                hint: "pass the Database folder or the unpacked backup folder",
            })
        }
        Err(error) => return Err(Error::io("open", target, error.into())),
    };
    let top = fd_walk::stat_handle(&handle)
        .map_err(|error| Error::io("inspect", target, error.into()))?;
    let mut folders = BTreeMap::from([(PathBuf::new(), top.identity)]);
    let mut node_folders = Vec::new();
    let mut selected: Vec<(PathBuf, EntryKind, EntryStat)> = Vec::new();
    fd_walk::walk_tree(handle.as_fd(), target, |visit| {
        let names: Vec<String> = visit
            .children
            .iter()
            .map(|child| fd_walk::name_of(&child.name).to_string_lossy().into_owned())
            .collect();
        let is_node = is_node_folder(names.iter().map(String::as_str));
        if is_node {
            node_folders.push(visit.relative.to_path_buf());
        }
        let mut descend = Vec::new();
        for (index, (child, name)) in visit.children.iter().zip(&names).enumerate() {
            let relative = visit.relative.join(fd_walk::name_of(&child.name));
            let kind = if child.stat.is_symlink() {
                EntryKind::Symlink
            } else if child.stat.is_dir() {
                EntryKind::Folder
            } else {
                EntryKind::File
            };
            if is_node && is_cache_entry(name) {
                selected.push((relative, kind, child.stat));
                continue;
            }
            let walk_into = kind == EntryKind::Folder
                && name != SNAPSHOT_FOLDER_NAME
                // A node folder's cache partitions never hold node folders themselves.
                && !(is_node && (name.starts_with(NODE_FOLDER_MARKER) || name.starts_with("cache-")));
            if walk_into {
                descend.push(index);
                folders.insert(relative, child.stat.identity);
            }
        }
        Ok(descend)
    })
    .map_err(swapped_under_prune)?;
    if node_folders.is_empty() {
        return Err(Error::NoIgniteNodeFolder {
            target: target.to_path_buf(),
        });
    }
    node_folders.sort();
    let mut entries = crate::parallel::parallel_map(&selected, |(relative, kind, stat)| {
        let (bytes, entries) = measure(&handle, target, &folders, relative, *kind, stat)
            .map_err(swapped_under_prune)?;
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
        folders,
    })
}

/// Bytes of regular files and number of entries in the selected entry at
/// `relative` (listed as `stat`), links not followed. A folder is opened
/// through the handles of the folders listed above it, and walked by handles.
fn measure(
    top: &std::os::fd::OwnedFd,
    target: &Path,
    folders: &BTreeMap<PathBuf, Identity>,
    relative: &Path,
    kind: EntryKind,
    stat: &EntryStat,
) -> Result<(u64, u64)> {
    match kind {
        EntryKind::Symlink => Ok((0, 1)),
        EntryKind::File => Ok((if stat.is_file() { stat.size } else { 0 }, 1)),
        EntryKind::Folder => {
            let path = target.join(relative);
            let gone = || Error::SourceChanged {
                path: path.clone(),
                details: "it vanished".to_owned(),
            };
            let parent = relative.parent().unwrap_or(Path::new(""));
            let name = relative.file_name().unwrap_or_default();
            let node = fd_walk::open_folder_below(top.as_fd(), target, parent, |walked| {
                folders.get(walked).copied()
            })?
            .ok_or_else(gone)?;
            let folder = fd_walk::open_listed_folder(node.as_fd(), name, stat.identity, &path)?
                .ok_or_else(gone)?;
            let (mut bytes, mut entries) = (0, 1);
            fd_walk::walk_tree(folder.as_fd(), &path, |visit| {
                let mut descend = Vec::new();
                for (index, child) in visit.children.iter().enumerate() {
                    entries += 1;
                    if child.stat.is_dir() {
                        descend.push(index);
                    } else if child.stat.is_file() {
                        bytes += child.stat.size;
                    }
                }
                Ok(descend)
            })?;
            Ok((bytes, entries))
        }
    }
}

/// Removes what the plan lists. Entries already gone are skipped; a folder that
/// became a link since planning is removed as a link. Each entry is removed by
/// name in its node folder's handle, that folder opened again from the target
/// and checked to be the one planned; a folder is emptied through handles.
///
/// # Errors
/// [`Error::Io`] naming the entry that could not be removed, or the folder
/// that is not the one planned (nothing is removed through it); entries
/// removed before stay removed (they are caches the platform rebuilds).
pub fn apply_prune(plan: &PrunePlan) -> Result<PruneReport> {
    apply_prune_until(plan, &crate::Cancel::new())
}

/// [`apply_prune`] that stops before the next cache entry once `cancel` is
/// set (Ctrl-C in the Python module): the entries removed so far are caches
/// the platform rebuilds, the data is untouched, and a rerun removes the rest.
///
/// # Errors
/// As [`apply_prune`], and [`Error::Cancelled`] when stopped.
pub fn apply_prune_until(plan: &PrunePlan, cancel: &crate::Cancel) -> Result<PruneReport> {
    let target = &plan.target;
    let handle = fd_walk::open_folder_following(target)
        .map_err(|error| Error::io("open", target, error.into()))?;
    let found = fd_walk::stat_handle(&handle)
        .map_err(|error| Error::io("inspect", target, error.into()))?;
    if plan.folders.get(Path::new("")) != Some(&found.identity) {
        return Err(swapped_under_prune(Error::SourceChanged {
            path: target.clone(),
            details: "it is another folder than the one planned".to_owned(),
        }));
    }
    let outcomes = crate::parallel::parallel_map(&plan.entries, |entry| {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled {
                left: format!(
                    "pruning of {} stopped between cache folders; the data is untouched, \
                     run it again to remove the rest",
                    target.display()
                ),
            });
        }
        let path = target.join(&entry.path);
        let parent = entry.path.parent().unwrap_or(Path::new(""));
        let Some(name) = entry.path.file_name() else {
            return Ok(None);
        };
        let Some(node) = fd_walk::open_folder_below(handle.as_fd(), target, parent, |walked| {
            plan.folders.get(walked).copied()
        })
        .map_err(swapped_under_prune)?
        else {
            // Its node folder is gone, and the entry with it.
            return Ok(None);
        };
        // Whatever is at that name in the node folder planned is in the tree:
        // removed as what it is now, a link as a link.
        let removed = fd_walk::remove_entry(node.as_fd(), name, &path, false, None)?;
        Ok(removed.then(|| entry.clone()))
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
    fn a_node_folder_swapped_for_a_link_after_planning_is_refused() {
        use std::fs;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("Database");
        let node = target.join("db/node00");
        fs::create_dir_all(node.join("cacheGroup-Account")).unwrap();
        fs::create_dir_all(node.join("cp")).unwrap();
        fs::write(node.join("cp/a.bin"), "cache").unwrap();
        // Root's folder that looks like a node folder, caches and all.
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("cacheGroup-Precious")).unwrap();
        fs::create_dir_all(outside.join("cp")).unwrap();
        fs::write(outside.join("cp/keep.bin"), "root's").unwrap();
        let plan = plan_prune(&target).unwrap();
        assert_eq!(plan.entries.len(), 1);
        fs::rename(&node, target.join("db/node00-moved")).unwrap();
        std::os::unix::fs::symlink(&outside, &node).unwrap();
        let error = apply_prune(&plan).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("db/node00") && message.contains("nothing is removed through it"),
            "{message}"
        );
        assert_eq!(fs::read(outside.join("cp/keep.bin")).unwrap(), b"root's");
        assert!(target.join("db/node00-moved/cp/a.bin").exists());
    }

    #[test]
    fn a_stopped_prune_removes_nothing_more_and_a_rerun_finishes() {
        use std::fs;
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("Database/db/node00");
        fs::create_dir_all(node.join("cacheGroup-Account")).unwrap();
        fs::write(node.join("cacheGroup-Account/part-0.bin"), "data").unwrap();
        for cache in ["cp", "metastorage", "cacheGroup-AttributeValue"] {
            fs::create_dir_all(node.join(cache)).unwrap();
            fs::write(node.join(cache).join("x.bin"), "cache").unwrap();
        }
        let target = dir.path().join("Database");
        let plan = plan_prune(&target).unwrap();
        assert_eq!(plan.entries.len(), 3);
        let stop = crate::Cancel::new();
        stop.cancel();
        let error = apply_prune_until(&plan, &stop).unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Cancelled, "{error}");
        assert!(error.to_string().contains("run it again"), "{error}");
        // Asked to stop before the first entry: everything is still there.
        for cache in ["cp", "metastorage", "cacheGroup-AttributeValue"] {
            assert!(node.join(cache).join("x.bin").exists(), "{cache}");
        }
        let report =
            apply_prune_until(&plan_prune(&target).unwrap(), &crate::Cancel::new()).unwrap();
        assert_eq!(report.removed.len(), 3);
        assert!(
            node.join("cacheGroup-Account/part-0.bin").exists(),
            "the data stays"
        );
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
