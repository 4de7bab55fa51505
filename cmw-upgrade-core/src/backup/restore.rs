//! Putting a bundle's database (and uploaded files) back into an instance.
//!
//! Each part is copied to a staging folder beside its target first and checked
//! against the manifest on the way; only when every part is staged is each
//! target's old content moved aside (never deleted) and its staging folder
//! renamed into place. A damaged part or a stop request therefore leaves every
//! target as it was. A crash leaves either the old target, or the old content
//! aside and the staging folder, which a rerun replaces.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bundle::StagingFolder;
use super::manifest::{EntryKind, Manifest, ManifestEntry};
use super::tree::{copy_plan, CopyPlan, Destination, Treatment};
use super::Progress;
use crate::accounts::resolve_owner;
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::exec::utc_stamp;
use crate::instance::InstanceName;
use crate::os::OsFamily;

/// What `restore` is asked to do.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The bundle folder.
    pub bundle: PathBuf,
    /// The target root of the server to restore on (`/` on a live server).
    pub root: PathBuf,
    /// The instance whose database is replaced.
    pub instance: InstanceName,
    /// The server's OS family (decides the fallback data owner).
    pub family: OsFamily,
    /// Move a non-empty target's content aside instead of refusing.
    pub replace: bool,
}

/// One restored folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredPart {
    /// `database` or `streams`.
    pub part: String,
    /// The instance's folder that now holds it.
    pub target: PathBuf,
    /// Where its previous content went, when there was any.
    pub moved_aside: Option<PathBuf>,
    /// Files restored.
    pub files: u64,
    /// Bytes restored.
    pub bytes: u64,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The bundle restored from.
    pub bundle: PathBuf,
    /// The owner given to everything restored, `user:group`.
    pub owner: String,
    /// The numeric ids of that owner on the server.
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// The restored folders.
    pub parts: Vec<RestoredPart>,
}

/// Restores the bundle's `database/` (and `streams/`, when it has them) into the
/// instance's folders, owned by the instance's data owner.
///
/// # Errors
/// [`Error::AlreadyExists`] for a non-empty target without `replace`;
/// [`Error::BundleDamaged`] when the bundle does not match its manifest, and
/// [`Error::Cancelled`] when the progress's stop request is set while copying
/// (the targets are then untouched); [`Error::UnknownAccount`]; [`Error::Io`].
pub fn restore(options: &RestoreOptions, progress: &Progress) -> Result<RestoreReport> {
    let manifest = Manifest::read(&options.bundle)?;
    let layout = Disk::new(&options.root).layout(&options.instance, options.family)?;
    let (uid, gid) = resolve_owner(&Disk::new(&options.root), &layout.data_owner)?;
    let mut parts = vec![("database", layout.database.path.clone())];
    if manifest.entries_under("streams").next().is_some() {
        parts.push(("streams", layout.streams.path.clone()));
    }
    if manifest.entries_under("database").next().is_none() {
        return Err(Error::BundleDamaged {
            bundle: options.bundle.clone(),
            details: "its manifest lists no database/ folder".to_owned(),
        });
    }
    // Every target is checked before any is touched.
    let mut targets = Vec::new();
    for (part, target) in &parts {
        let resolved = resolve_target(&options.root, target, options.replace)?;
        if *part == "database" {
            refuse_foreign_folder(&resolved)?;
        }
        targets.push((*part, resolved));
    }
    // Every part is copied and checked before any target is touched.
    let mut staged = Vec::new();
    for (part, target) in targets {
        staged.push(stage_part(
            &options.bundle,
            &manifest,
            part,
            target,
            (uid, gid),
            progress,
        )?);
    }
    // The last safe point: from here on the targets change, and the renames are quick.
    progress.check_cancelled()?;
    let stamp = utc_stamp(std::time::SystemTime::now());
    // A target inside another one (streams configured inside the database
    // folder) has its staging folder inside that target's old content, so the
    // deeper target is placed before that content is moved aside.
    let mut staged: Vec<(usize, StagedPart)> = staged.into_iter().enumerate().collect();
    staged.sort_by_key(|(_, part)| std::cmp::Reverse(part.target.components().count()));
    let mut restored = Vec::new();
    for (index, part) in staged {
        restored.push((index, place_part(part, &stamp)?));
    }
    restored.sort_by_key(|(index, _)| *index);
    let restored = restored.into_iter().map(|(_, part)| part).collect();
    Ok(RestoreReport {
        bundle: options.bundle.clone(),
        owner: layout.data_owner.to_string(),
        uid,
        gid,
        parts: restored,
    })
}

/// Refuses to move aside a non-empty database target that is not an Ignite
/// database (no `db/`, no node folder): a wrong path (a home folder, a web
/// root) must stop the restore, even with `--replace`, not be replaced.
fn refuse_foreign_folder(target: &Path) -> Result<()> {
    let Ok(listing) = fs::read_dir(target) else {
        return Ok(());
    };
    let entries: Vec<fs::DirEntry> = listing.flatten().collect();
    if entries.is_empty() {
        return Ok(());
    }
    let is_folder = |entry: &fs::DirEntry| entry.file_type().is_ok_and(|kind| kind.is_dir());
    let holds_db = entries
        .iter()
        .any(|entry| entry.file_name() == "db" && is_folder(entry));
    let holds_node_folder = entries
        .iter()
        .filter(|entry| is_folder(entry))
        .any(|entry| {
            fs::read_dir(entry.path()).is_ok_and(|children| {
                children.flatten().any(|child| {
                    child
                        .file_name()
                        .to_string_lossy()
                        .starts_with("cacheGroup-")
                })
            })
        });
    if holds_db || holds_node_folder {
        return Ok(());
    }
    Err(Error::CheckFailed {
        what: format!("checking {} before replacing it", target.display()),
        details: "it is not empty and is not an Ignite database (no db/ folder, no node folder \
                  holding cacheGroup-*); check db.workDir in the instance config: the tool \
                  replaces only a database"
            .to_owned(),
    })
}

/// Where a target folder really is (following a symlink to another disk), after
/// checking it may be replaced.
fn resolve_target(root: &Path, target: &Path, replace: bool) -> Result<PathBuf> {
    // Inside the root: a mounted copy's absolute links lead into the copy.
    let resolved = match crate::disk::canonical_in_root(root, target) {
        Ok(resolved) => resolved,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if fs::symlink_metadata(target).is_ok() {
                return Err(Error::io("follow the link", target, error));
            }
            target.to_path_buf()
        }
        Err(error) => return Err(Error::io("resolve", target, error)),
    };
    match fs::read_dir(&resolved) {
        Ok(mut listing) => {
            if listing.next().is_some() && !replace {
                return Err(Error::AlreadyExists {
                    path: resolved,
                    hint: "it is not empty; --replace moves its content aside (nothing is deleted)",
                });
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(Error::io("list", &resolved, error)),
    }
    let parent = resolved.parent().unwrap_or(Path::new("/"));
    if !parent.is_dir() {
        return Err(Error::NotAFolder {
            path: parent.to_path_buf(),
            hint: "the folder that holds the instance's data must exist; is the instance created?",
        });
    }
    Ok(resolved)
}

/// A part copied and checked in its staging folder, its target not touched yet;
/// dropped unplaced, the staging folder is removed.
struct StagedPart {
    /// `database` or `streams`.
    part: &'static str,
    /// The instance's folder it goes to.
    target: PathBuf,
    /// The staging folder beside the target, holding `part/`.
    staging: StagingFolder,
    /// Files copied.
    files: u64,
    /// Bytes copied.
    bytes: u64,
}

fn target_parent_and_name(target: &Path) -> (&Path, String) {
    let parent = target.parent().unwrap_or(Path::new("/"));
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    (parent, name)
}

/// Copies the bundle's `part` into a staging folder beside `target`, owned by
/// `owner`, and checks the copy against the manifest.
fn stage_part(
    bundle: &Path,
    manifest: &Manifest,
    part: &'static str,
    target: PathBuf,
    owner: (u32, u32),
    progress: &Progress,
) -> Result<StagedPart> {
    let (parent, name) = target_parent_and_name(&target);
    let mut plan = CopyPlan::default();
    plan.add_tree(&bundle.join(part), part, Treatment::Owner(owner.0, owner.1))?;
    plan.finish();
    // The copy sits beside the old content until the swap: both must fit.
    super::bundle::check_free_space(parent, plan.data_bytes(), plan.file_count())?;
    let staging = StagingFolder::claim(&parent.join(format!(".{name}.cmw-upgrade-restore")))?;
    // The staging folder sits beside the target, in a folder the data owner
    // may write: it is written through its handle, never by its path.
    let destination = Destination {
        path: staging.path(),
        handle: staging.handle(),
    };
    // A bundle does not change while it is read: nothing to tear.
    let copied = copy_plan(&plan, destination, progress)?.entries;
    check_against_manifest(bundle, manifest, part, &copied)?;
    Ok(StagedPart {
        part,
        target,
        staging,
        files: plan.file_count(),
        bytes: plan.data_bytes(),
    })
}

/// Moves the target's old content aside and the staged copy into its place.
fn place_part(staged: StagedPart, stamp: &str) -> Result<RestoredPart> {
    let StagedPart {
        part,
        target,
        staging,
        files,
        bytes,
    } = staged;
    let target = target.as_path();
    let (parent, name) = target_parent_and_name(target);
    let target_has_content = match fs::read_dir(target) {
        Ok(mut listing) => Some(listing.next().is_some()),
        Err(_) => None,
    };
    let moved_aside = match target_has_content {
        Some(true) => {
            let aside = parent.join(format!("{name}.before-restore-{stamp}"));
            fs::rename(target, &aside)
                .map_err(|error| Error::io("move the old content aside to", &aside, error))?;
            Some(aside)
        }
        Some(false) => {
            fs::remove_dir(target)
                .map_err(|error| Error::io("replace the empty folder", target, error))?;
            None
        }
        None => None,
    };
    // Out of the staging folder's handle: a swap of its name since it was
    // filled cannot put anything else in the target's place.
    rustix::fs::renameat(staging.handle(), part, rustix::fs::CWD, target)
        .map_err(|error| Error::io("move the restored copy into", target, error.into()))?;
    staging.discard()?;
    fs::File::open(parent)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| Error::io("flush", parent, error))?;
    Ok(RestoredPart {
        part: part.to_owned(),
        target: target.to_path_buf(),
        moved_aside,
        files,
        bytes,
    })
}

/// The copy of `part` must hold exactly what the manifest lists, with the same hashes.
fn check_against_manifest(
    bundle: &Path,
    manifest: &Manifest,
    part: &str,
    copied: &[ManifestEntry],
) -> Result<()> {
    let expected: HashMap<&str, &ManifestEntry> = manifest
        .entries_under(part)
        .map(|(_, entry)| (entry.path.as_str(), entry))
        .collect();
    let mut problems = Vec::new();
    for entry in copied {
        match expected.get(entry.path.as_str()) {
            None => problems.push(format!("{} is not in the manifest", entry.path)),
            Some(listed) => {
                let same = listed.kind == entry.kind
                    && match entry.kind {
                        EntryKind::File => {
                            listed.size == entry.size && listed.blake3 == entry.blake3
                        }
                        EntryKind::Symlink => listed.target == entry.target,
                        EntryKind::Dir => true,
                    };
                if !same {
                    problems.push(format!("{} differs from the manifest", entry.path));
                }
            }
        }
    }
    let copied_paths: std::collections::HashSet<&str> =
        copied.iter().map(|entry| entry.path.as_str()).collect();
    problems.extend(
        expected
            .keys()
            .filter(|path| !copied_paths.contains(*path))
            .map(|path| format!("{path} is missing")),
    );
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    Err(Error::BundleDamaged {
        bundle: bundle.to_path_buf(),
        details: format!(
            "{} problem(s), first: {}; nothing was restored",
            problems.len(),
            problems[0]
        ),
    })
}
