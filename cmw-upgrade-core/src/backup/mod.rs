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

use crate::directives::Directives;
use crate::disk::read_optional;
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::exec::{utc_rfc3339, utc_stamp, CommandRunner};
use crate::instance::InstanceName;
use crate::layout::InstanceLayout;
use crate::os::OsFamily;
use crate::paths::under_root;
use tree::{copy_plan, CopyPlan, Treatment};

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
/// (a progress bar, a Python callback) without slowing the work down.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    total_bytes: AtomicU64,
    total_files: AtomicU64,
    done_bytes: AtomicU64,
    done_files: AtomicU64,
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

impl Progress {
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
/// naming the path; the partial bundle is then removed and the source untouched.
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
    let database = std::fs::canonicalize(&layout.database.path).map_err(|error| {
        Error::io(
            "find the database folder (db.workDir, following its symlinks)",
            &layout.database.path,
            error,
        )
    })?;
    let streams = if options.with_streams {
        Some(
            std::fs::canonicalize(&layout.streams.path).map_err(|error| {
                Error::io(
                    "find the uploaded-files folder",
                    &layout.streams.path,
                    error,
                )
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

    let partial = PartialBundle::create(&options.destination)?;
    if options.check_space {
        check_free_space(partial.path(), plan.data_bytes(), plan.entries.len() as u64)?;
    }
    let files = copy_plan(&plan, partial.path(), progress)?;
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
        consistency: options.method.consistency().to_owned(),
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
