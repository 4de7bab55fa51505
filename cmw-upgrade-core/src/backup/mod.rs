//! Backup bundles: the database and config files with a BLAKE3 manifest.
//!
//! A bundle is one folder:
//!
//! ```text
//! DIR/manifest.json      format, tool, instance, host, family, version, method,
//!                        times, and every entry with size, mode, owner, mtime, BLAKE3
//! DIR/database/          the database folder (db.workDir), modes and owners kept
//! DIR/streams/           uploaded files (--with-streams)
//! DIR/config/<abs path>  the platform procedure's config files and the systemd units, 0600
//! ```
//!
//! [`backup`] writes one ([`bundle`] makes sure an unfinished one never looks
//! finished), [`verify_bundle`] re-hashes one, [`bundle_drift`] lists what a
//! live database changed since, [`restore`] puts the database back, and
//! [`import_cdbbz`] turns a platform `.cdbbz` backup into a bundle.

// Bundles are the effect layer: a one-pass copy, hash and restore of whole trees on the server the tool runs on (or its agent).
#![allow(clippy::disallowed_methods)]

pub mod bundle;
mod import;
pub mod manifest;
mod restore;
pub mod transfer;
mod tree;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

pub use bundle::{check_free_space, partial_path, space_needed, PartialBundle, StagingFolder};
pub use import::import_cdbbz;
pub use manifest::{
    BackupMethod, BundleSources, EntryKind, Manifest, ManifestEntry, MANIFEST_FILE,
};
pub use restore::{restore, RestoreOptions, RestoreReport, RestoredPart};
pub use verify::{bundle_drift, verify_bundle, DriftReport, VerifyReport};

use crate::cancel::Cancel;
use crate::directives::Directives;
use crate::disk::read_optional;
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::exec::{utc_rfc3339, utc_stamp, CommandRunner};
use crate::instance::InstanceName;
use crate::layout::InstanceLayout;
use crate::os::OsFamily;
use crate::paths::under_root;
use tree::{copy_plan, CopyPlan, Destination, Treatment};

/// What a long operation is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Listing what to copy.
    Scanning,
    /// Waiting for the Ignite snapshot command.
    Snapshot,
    /// Copying and hashing.
    Copying,
    /// Re-hashing against the manifest.
    Verifying,
    /// Flushing the file system before the final rename.
    Flushing,
}

const PHASES: [Phase; 5] = [
    Phase::Scanning,
    Phase::Snapshot,
    Phase::Copying,
    Phase::Verifying,
    Phase::Flushing,
];

impl Phase {
    /// The phase in words, for progress lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Scanning => "scanning",
            Phase::Snapshot => "snapshot",
            Phase::Copying => "copying",
            Phase::Verifying => "verifying",
            Phase::Flushing => "flushing",
        }
    }
}

/// Counters a long operation updates as it goes; another thread may read them
/// (a progress bar, a Python callback) without slowing the work down. It also
/// carries the operation's stop request, checked between files and buffers.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    total_bytes: AtomicU64,
    total_files: AtomicU64,
    done_bytes: AtomicU64,
    done_files: AtomicU64,
    cancel: Cancel,
}

/// A reading of [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProgressSnapshot {
    /// What is being done.
    pub phase: Phase,
    /// Bytes this phase handles in all.
    pub total_bytes: u64,
    /// Files this phase handles in all.
    pub total_files: u64,
    /// Bytes done so far in this phase.
    pub done_bytes: u64,
    /// Files done so far in this phase.
    pub done_files: u64,
}

/// What a stopped file operation leaves: every writer here works in a folder of
/// its own (`DIR.partial`, a restore's staging folder) that is removed when it
/// stops early, and reads change nothing.
const CANCELLED_FILE_WORK: &str =
    "what was being written was removed, and what was read is untouched";

/// The error of a file operation stopped on request.
pub(crate) fn cancelled() -> Error {
    Error::Cancelled {
        left: CANCELLED_FILE_WORK.to_owned(),
    }
}

impl Progress {
    /// Counters whose operation stops at its next safe point once `cancel` is set.
    pub fn with_cancel(cancel: Cancel) -> Self {
        Progress {
            cancel,
            ..Progress::default()
        }
    }

    /// Whether the operation was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// [`Error::Cancelled`] once the operation was asked to stop; called at
    /// safe points, where returning leaves nothing half-done.
    ///
    /// # Errors
    /// [`Error::Cancelled`].
    pub fn check_cancelled(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(cancelled());
        }
        Ok(())
    }

    /// Starts a phase with its totals; the done counters restart at zero.
    pub fn start(&self, phase: Phase, total_bytes: u64, total_files: u64) {
        let index = PHASES.iter().position(|known| *known == phase).unwrap_or(0);
        self.done_bytes.store(0, Ordering::Relaxed);
        self.done_files.store(0, Ordering::Relaxed);
        self.total_bytes.store(total_bytes, Ordering::Relaxed);
        self.total_files.store(total_files, Ordering::Relaxed);
        self.phase.store(index as u8, Ordering::Relaxed);
    }

    /// Counts bytes done.
    pub fn add_bytes(&self, bytes: u64) {
        self.done_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one file done.
    pub fn add_file(&self) {
        self.done_files.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            phase: PHASES[usize::from(self.phase.load(Ordering::Relaxed)).min(PHASES.len() - 1)],
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            total_files: self.total_files.load(Ordering::Relaxed),
            done_bytes: self.done_bytes.load(Ordering::Relaxed),
            done_files: self.done_files.load(Ordering::Relaxed),
        }
    }
}

/// What `backup` is asked to do.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The target root of the source server (`/` on a live server).
    pub root: PathBuf,
    /// The instance to back up.
    pub instance: InstanceName,
    /// The server's OS family (decides the nginx site path).
    pub family: OsFamily,
    /// The bundle folder to create; must not exist, its parent must.
    pub destination: PathBuf,
    /// Plain copy, or an Ignite snapshot first.
    pub method: BackupMethod,
    /// Also copy the uploaded files.
    pub with_streams: bool,
    /// Ignite's `control.sh` (a server path); found under the www folder when `None`.
    pub control_script: Option<PathBuf>,
    /// Refuse to start when the destination has too little free space.
    pub check_space: bool,
}

/// Whether the instance's service runs, as far as could be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// `systemctl is-active` says active.
    Running,
    /// It says inactive (or failed).
    Stopped,
    /// It could not be asked (no systemd here, a mounted copy).
    Unknown,
}

/// What a backup whose method was chosen for the admin says when systemd
/// could not be asked whether the instance runs ([`ServiceState::Unknown`]).
pub fn unknown_service_warning(instance: &InstanceName) -> String {
    format!(
        "could not ask systemd whether comindware{instance} runs, so the database was copied \
         (crash-consistent if it does); pass --method snapshot for a running instance"
    )
}

/// The method a backup uses: the one asked for, or — when none is — a
/// snapshot of a running instance (consistent) and a copy of a stopped one.
/// A file copy of a running instance is only crash-consistent: it is refused
/// unless the admin accepts that in so many words.
///
/// # Errors
/// [`Error::CheckFailed`] for a copy of a running instance without
/// `accept_crash_consistent`.
pub fn choose_method(
    requested: Option<BackupMethod>,
    service: ServiceState,
    accept_crash_consistent: bool,
) -> Result<BackupMethod> {
    match (requested, service) {
        (None, ServiceState::Running) => Ok(BackupMethod::Snapshot),
        (None, _) => Ok(BackupMethod::Copy),
        (Some(BackupMethod::Copy), ServiceState::Running) if !accept_crash_consistent => {
            Err(Error::CheckFailed {
                what: "a file copy of a running instance".to_owned(),
                details: "the instance runs, so a copy of its database files is only \
                          crash-consistent (like restarting after a power cut); take an Ignite \
                          snapshot instead (--method snapshot, the default for a running \
                          instance), stop the instance first, or pass --accept-crash-consistent"
                    .to_owned(),
            })
        }
        (Some(method), _) => Ok(method),
    }
}

/// What a finished backup or import wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReport {
    /// The finished bundle folder.
    pub bundle: PathBuf,
    /// How the database was taken.
    pub method: BackupMethod,
    /// What that means for consistency.
    pub consistency: String,
    /// The Ignite snapshot's name, with the snapshot method.
    pub snapshot: Option<String>,
    /// Files copied.
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Things the admin should know (missing optional files, not running as root).
    pub warnings: Vec<String>,
}

/// `path` (under `root`) as the server sees it, `/`-separated, without the leading `/`.
fn server_relative(root: &Path, path: &Path) -> Result<String> {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let text = relative.to_str().ok_or_else(|| Error::CheckFailed {
        what: "reading file names".to_owned(),
        details: format!("{} is not valid UTF-8", path.display()),
    })?;
    Ok(text.trim_start_matches('/').to_owned())
}

/// Ignite's `control.sh` for the snapshot: the given server path, or the first
/// one found under the instance's www folder.
fn find_control_script(layout: &InstanceLayout, given: Option<&Path>) -> Result<PathBuf> {
    let script = locate_control_script(layout, given)?;
    trusted_as_root(&script, &layout.root)?;
    Ok(script)
}

/// Refuses to run `script` as root unless only root could have written it:
/// a regular file (not a link) owned by root and writable by no one else, in
/// folders (up to the server's root) owned by root and writable by no one
/// else. `/var/www/<i>` is partly the service account's: a `control.sh` it
/// planted there must not become root's command.
fn trusted_as_root(script: &Path, root: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |path: &Path, why: String| {
        Error::CheckFailed {
        what: format!("checking {} before running it as root", script.display()),
        details: format!(
            "{} {why}; only a file root alone can change is run: fix its owner and mode \
             (chown root:root, chmod go-w), pass another with --control-script, or use --method copy",
            path.display()
        ),
    }
    };
    let unsafe_mode = |mode: u32| mode & 0o022 != 0;
    let script_metadata =
        std::fs::symlink_metadata(script).map_err(|error| Error::io("inspect", script, error))?;
    if !script_metadata.file_type().is_file() {
        return Err(refuse(script, "is not a regular file".to_owned()));
    }
    if script_metadata.uid() != 0 || unsafe_mode(script_metadata.mode()) {
        return Err(refuse(
            script,
            format!(
                "is owned by uid {} with mode {:04o}",
                script_metadata.uid(),
                script_metadata.mode() & 0o7777
            ),
        ));
    }
    for folder in script.ancestors().skip(1) {
        let metadata =
            std::fs::metadata(folder).map_err(|error| Error::io("inspect", folder, error))?;
        if metadata.uid() != 0 || unsafe_mode(metadata.mode()) {
            return Err(refuse(
                folder,
                format!(
                    "(a folder above it) is owned by uid {} with mode {:04o}",
                    metadata.uid(),
                    metadata.mode() & 0o7777
                ),
            ));
        }
        if folder == root {
            break;
        }
    }
    Ok(())
}

fn locate_control_script(layout: &InstanceLayout, given: Option<&Path>) -> Result<PathBuf> {
    if let Some(given) = given {
        let text = given.to_string_lossy();
        return under_root(&layout.root, &text, "--control-script");
    }
    let mut pending = vec![(layout.www.clone(), 0)];
    while let Some((folder, depth)) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut children: Vec<_> = listing.flatten().collect();
        children.sort_by_key(|item| item.file_name());
        for item in children {
            let kind = item.file_type().ok();
            if item.file_name() == "control.sh" && kind.is_some_and(|kind| kind.is_file()) {
                return Ok(item.path());
            }
            if depth < 4 && kind.is_some_and(|kind| kind.is_dir()) {
                pending.push((item.path(), depth + 1));
            }
        }
    }
    Err(Error::CheckFailed {
        what: "finding Ignite's control.sh for the snapshot".to_owned(),
        details: format!(
            "no control.sh under {}; pass --control-script PATH, or use --method copy",
            layout.www.display()
        ),
    })
}

/// Runs `control.sh --snapshot create <name>` and checks the snapshot folder appeared.
fn take_snapshot(
    layout: &InstanceLayout,
    control_script: Option<&Path>,
    runner: &dyn CommandRunner,
    name: &str,
) -> Result<()> {
    let script = find_control_script(layout, control_script)?;
    let argv = vec![
        script.to_string_lossy().into_owned(),
        "--snapshot".to_owned(),
        "create".to_owned(),
        name.to_owned(),
    ];
    let command = argv.join(" ");
    let output = runner.run(&argv).map_err(|error| match error {
        Error::CommandFailed { status, output, .. } => Error::CommandFailed {
            command: command.clone(),
            status,
            output,
            hint: "check the path and that it is executable, or use --method copy".to_owned(),
        },
        other => other,
    })?;
    if !output.success() {
        let text = format!("{}{}", output.stdout, output.stderr);
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        return Err(Error::CommandFailed {
            command,
            status: output.code.map_or("killed by a signal".to_owned(), |code| {
                format!("exit code {code}")
            }),
            output: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            hint: "is the instance running and the cluster active? nothing was written".to_owned(),
        });
    }
    let folder = layout.database.path.join("snapshots").join(name);
    if !folder.is_dir() {
        return Err(Error::CommandFailed {
            command,
            status: "exit code 0".to_owned(),
            output: format!("but {} does not exist", folder.display()),
            hint: "the snapshot may be going to another folder (snapshotPath in Ignite.config); \
                   use --method copy with the instance stopped"
                .to_owned(),
        });
    }
    Ok(())
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Backs up an instance into a new bundle folder.
///
/// # Errors
/// [`Error::AlreadyExists`] for an existing destination, [`Error::NotEnoughSpace`],
/// [`Error::SourceChanged`], [`Error::CommandFailed`] (snapshot), [`Error::Io`]
/// naming the path, [`Error::Cancelled`] when the progress's stop request is
/// set; the partial bundle is then removed and the source untouched.
pub fn backup(
    options: &BackupOptions,
    runner: &dyn CommandRunner,
    progress: &Progress,
) -> Result<BackupReport> {
    let clock = Instant::now();
    let started = SystemTime::now();
    progress.start(Phase::Scanning, 0, 0);
    let layout = Disk::new(&options.root).layout(&options.instance, options.family)?;
    let parent = bundle::check_destination(&options.destination)?;
    // Followed through its links, inside the root (a mounted copy's absolute
    // links lead into the copy, not to this machine's folders).
    let disk = Disk::new(&options.root);
    let database = disk
        .canonical(&layout.database.path)
        .map_err(|error| match error {
            Error::Io { source, .. } => Error::io(
                "find the database folder (db.workDir, following its symlinks)",
                &layout.database.path,
                source,
            ),
            other => other,
        })?;
    let streams = if options.with_streams {
        Some(
            disk.canonical(&layout.streams.path)
                .map_err(|error| match error {
                    Error::Io { source, .. } => Error::io(
                        "find the uploaded-files folder",
                        &layout.streams.path,
                        source,
                    ),
                    other => other,
                })?,
        )
    } else {
        None
    };
    let parent_resolved =
        std::fs::canonicalize(&parent).map_err(|error| Error::io("resolve", &parent, error))?;
    if let Some(source) = std::iter::once(&database)
        .chain(&streams)
        .find(|source| parent_resolved.starts_with(source))
    {
        return Err(Error::CheckFailed {
            what: "choosing the destination".to_owned(),
            details: format!(
                "{} is inside {}, which is being copied; put the bundle elsewhere",
                options.destination.display(),
                source.display()
            ),
        });
    }

    let snapshot = if options.method == BackupMethod::Snapshot {
        progress.start(Phase::Snapshot, 0, 0);
        let name = format!("cmw_upgrade_{}", utc_stamp(started));
        take_snapshot(&layout, options.control_script.as_deref(), runner, &name)?;
        Some(name)
    } else {
        None
    };

    progress.start(Phase::Scanning, 0, 0);
    let mut plan = CopyPlan::default();
    plan.add_tree(&database, "database", Treatment::Keep)?;
    if let Some(streams) = &streams {
        plan.add_tree(streams, "streams", Treatment::Keep)?;
    }
    let mut config_files: Vec<&Path> = layout
        .www_config_files
        .iter()
        .map(PathBuf::as_path)
        .collect();
    config_files.extend([
        layout.agent_config.as_path(),
        layout.nginx_site.as_path(),
        layout.env_file.as_path(),
        layout.instance_config.as_path(),
    ]);
    config_files.extend(layout.units.iter().map(|unit| unit.path.as_path()));
    for file in config_files {
        let path = format!("config/{}", server_relative(&layout.root, file)?);
        plan.add_file(file, &path, Treatment::Private)?;
    }
    plan.finish();
    let mut warnings = std::mem::take(&mut plan.warnings);
    if !rustix::process::geteuid().is_root() {
        warnings.push(
            "not running as root: the copies are owned by this user; the original owners are \
             in the manifest, and restore gives the database to the data owner"
                .to_owned(),
        );
    }

    // The last point where stopping costs nothing: no byte is written yet.
    progress.check_cancelled()?;
    let partial = PartialBundle::create(&options.destination)?;
    if options.check_space {
        check_free_space(partial.path(), plan.data_bytes(), plan.entries.len() as u64)?;
    }
    let destination = Destination {
        path: partial.path(),
        handle: partial.handle(),
    };
    let copied = copy_plan(&plan, destination, progress)?;
    let files = copied.entries;
    let mut consistency = options.method.consistency().to_owned();
    if !copied.torn.is_empty() {
        // Said in the manifest too: the bundle verifies, but these files may
        // hold bytes from before and after a write that never were on disk together.
        consistency.push_str(&format!(
            "; not consistent for {} file(s) that kept changing while they were copied: {}",
            copied.torn.len(),
            copied.torn.join(", ")
        ));
        warnings.push(format!(
            "{} file(s) kept changing while they were copied ({} tries each): {}; their copies may mix \
             old and new bytes: stop the instance, or use --method snapshot",
            copied.torn.len(),
            tree::COPY_ATTEMPTS,
            copied.torn.join(", ")
        ));
    }
    let platform_version = read_optional(&layout.instance_config)?
        .and_then(|text| Directives::parse(&text, &layout.instance_config).ok())
        .and_then(|directives| directives.get("version"));
    let manifest = Manifest {
        format: manifest::FORMAT_VERSION,
        tool_version: crate::VERSION.to_owned(),
        instance: Some(options.instance.to_string()),
        host: host_name(),
        os_family: Some(options.family.as_str().to_owned()),
        platform_version,
        method: options.method,
        consistency,
        snapshot: snapshot.clone(),
        sources: BundleSources {
            root: options.root.to_string_lossy().into_owned(),
            database: database.to_string_lossy().into_owned(),
            streams: streams
                .as_ref()
                .map(|streams| streams.to_string_lossy().into_owned()),
        },
        started: utc_rfc3339(started),
        finished: utc_rfc3339(SystemTime::now()),
        files,
    };
    let bundle = partial.finish(&manifest, progress)?;
    Ok(BackupReport {
        bundle,
        method: options.method,
        consistency: manifest.consistency.clone(),
        snapshot,
        files: manifest
            .files
            .iter()
            .filter(|entry| entry.kind == EntryKind::File)
            .count() as u64,
        bytes: manifest.total_bytes(),
        seconds: clock.elapsed().as_secs_f64(),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::LocalExecutor;

    #[test]
    fn a_running_instance_gets_a_snapshot_and_a_copy_of_it_must_be_accepted() {
        use ServiceState::*;
        assert_eq!(
            choose_method(None, Running, false).unwrap(),
            BackupMethod::Snapshot
        );
        assert_eq!(
            choose_method(None, Stopped, false).unwrap(),
            BackupMethod::Copy
        );
        assert_eq!(
            choose_method(None, Unknown, false).unwrap(),
            BackupMethod::Copy
        );
        let refused = choose_method(Some(BackupMethod::Copy), Running, false).unwrap_err();
        assert!(
            refused.to_string().contains("--accept-crash-consistent"),
            "{refused}"
        );
        assert_eq!(
            choose_method(Some(BackupMethod::Copy), Running, true).unwrap(),
            BackupMethod::Copy
        );
        for service in [Running, Stopped, Unknown] {
            assert_eq!(
                choose_method(Some(BackupMethod::Snapshot), service, false).unwrap(),
                BackupMethod::Snapshot
            );
            assert_eq!(
                choose_method(Some(BackupMethod::Copy), Stopped, false).unwrap(),
                BackupMethod::Copy
            );
        }
    }

    /// A server under `root` whose instance `prod` has the default layout, a
    /// database of `files` files of `bytes` each, and a data owner that is
    /// the tool's own user (so a restore may give files to it without root).
    fn server(root: &Path, files: usize, bytes: usize) -> PathBuf {
        let database = root.join("var/lib/comindware/prod/Database");
        std::fs::create_dir_all(database.join("db")).unwrap();
        for index in 0..files {
            std::fs::write(
                database.join(format!("db/part-{index}.bin")),
                vec![index as u8; bytes],
            )
            .unwrap();
        }
        let (uid, gid) = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            format!("www-data:x:{uid}:{gid}::/var/www:/bin/false\n"),
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), format!("www-data:x:{gid}:\n")).unwrap();
        database
    }

    fn backup_options(root: &Path, destination: &Path) -> BackupOptions {
        BackupOptions {
            root: root.to_path_buf(),
            instance: InstanceName::new("prod").unwrap(),
            family: OsFamily::Deb,
            destination: destination.to_path_buf(),
            method: BackupMethod::Copy,
            with_streams: false,
            control_script: None,
            check_space: false,
        }
    }

    fn assert_cancelled(result: Result<impl std::fmt::Debug>) {
        match result {
            Err(error @ Error::Cancelled { .. }) => assert!(
                error.to_string().contains("nothing was left half-done"),
                "{error}"
            ),
            other => panic!("expected Cancelled, got {other:?}"),
        }
    }

    #[test]
    fn a_backup_cancelled_while_copying_leaves_no_bundle_and_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("server");
        server(&root, 48, 1 << 20);
        let destination = dir.path().join("bundle");
        let progress = Progress::with_cancel(Cancel::new());
        let result = std::thread::scope(|scope| {
            // Ctrl-C as it comes in practice: from another thread, mid-copy.
            scope.spawn(|| {
                while progress.snapshot().phase != Phase::Copying
                    || progress.snapshot().done_bytes == 0
                {
                    std::thread::yield_now();
                }
                progress.cancel.cancel();
            });
            backup(
                &backup_options(&root, &destination),
                &LocalExecutor::new("/"),
                &progress,
            )
        });
        assert_cancelled(result);
        assert!(progress.snapshot().done_files < 48, "it stopped early");
        assert!(!destination.exists());
        assert!(!partial_path(&destination).exists());
    }

    #[test]
    fn a_backup_cancelled_before_it_copies_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("server");
        server(&root, 2, 10);
        let destination = dir.path().join("bundle");
        let cancel = Cancel::new();
        cancel.cancel();
        let result = backup(
            &backup_options(&root, &destination),
            &LocalExecutor::new("/"),
            &Progress::with_cancel(cancel),
        );
        assert_cancelled(result);
        assert!(!destination.exists());
        assert!(!partial_path(&destination).exists());
    }

    #[test]
    fn cancelled_verify_and_restore_stop_and_leave_the_target_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("server");
        let database = server(&root, 3, 1000);
        let bundle = dir.path().join("bundle");
        backup(
            &backup_options(&root, &bundle),
            &LocalExecutor::new("/"),
            &Progress::default(),
        )
        .unwrap();
        let cancelled = || {
            let cancel = Cancel::new();
            cancel.cancel();
            Progress::with_cancel(cancel)
        };
        assert_cancelled(verify_bundle(&bundle, &cancelled()));
        assert_cancelled(bundle_drift(&bundle, &database, true, &cancelled()));

        std::fs::write(database.join("db/part-0.bin"), "live data").unwrap();
        let options = RestoreOptions {
            bundle: bundle.clone(),
            root: root.clone(),
            instance: InstanceName::new("prod").unwrap(),
            family: OsFamily::Deb,
            replace: true,
        };
        assert_cancelled(restore(&options, &cancelled()));
        assert_eq!(
            std::fs::read_to_string(database.join("db/part-0.bin")).unwrap(),
            "live data",
            "the target is untouched"
        );
        let mut beside: Vec<String> = std::fs::read_dir(database.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        beside.sort();
        assert_eq!(
            beside,
            ["Database"],
            "no staging folder, nothing moved aside"
        );
        // Not cancelled, the same restore goes through.
        let report = restore(&options, &Progress::default()).unwrap();
        assert!(report.parts[0].moved_aside.is_some());
    }
}
