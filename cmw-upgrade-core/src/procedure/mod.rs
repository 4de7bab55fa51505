//! The whole upgrade on the new server as one resumable procedure.
//!
//! The steps follow the platform procedure's order. Each checks its preconditions, acts
//! through the [`Executor`], checks the result, and records what a later step
//! or a rollback needs in the run state, which is saved after every change:
//! a run killed at any point resumes at the first step not done, and that
//! step starts over (every step is written so that running it again is safe).
//!
//! The same code makes the plan: run on `Recording<DryRun<_>>` it changes
//! nothing and yields every command in order.

pub mod cleanup;
#[cfg(test)]
mod decisions;
pub mod dist;
#[cfg(test)]
mod memory;
mod servers;
pub mod state;
mod steps;
pub mod support;
pub mod two_servers;

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::exec::utc_rfc3339;
use crate::executor::{Executor, Operation, Recorded, Recording, ToolOutcome};
use crate::instance::InstanceName;
use crate::os::OsFamily;
use state::{RunState, StepRecord, StepStatus};
use steps::{Step, StepFn};

pub use state::{state_file, RunLock, STATE_ROOT};
pub use steps::rollback_command;

/// What a run is asked to do; kept in the state so a resumed run, `status`
/// and `rollback` use the same values. Paths are server paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradeSettings {
    /// The instance to create on this server.
    pub instance: InstanceName,
    /// This server's OS family.
    pub family: OsFamily,
    /// The old server's backup bundle (verified before use).
    pub bundle: String,
    /// The platform tarball, `X.X-release-ru-<version>.<os>.tar.gz`.
    pub distribution: String,
    /// The prerequisites tarball, `X.X-release-ru-<v>.prerequisites.<os>.tar.gz`.
    pub prerequisites: String,
    /// The instance's site port (`instance_create.sh -p`).
    pub port: u16,
    /// How long the data-structure upgrade may take.
    pub upgrade_timeout_seconds: u64,
    /// How long the site may take to answer after a start.
    pub health_timeout_seconds: u64,
    /// Apply the config migration's evident fixes instead of stopping.
    pub fix_config: bool,
}

impl UpgradeSettings {
    /// What makes `other` a different run, as `name: recorded → given`: the
    /// instance, family, bundle, tarballs and port. Time limits and
    /// `fix_config` are not among them: a resumed run may change them.
    pub fn differences(&self, other: &UpgradeSettings) -> Vec<String> {
        let mut differing = Vec::new();
        let mut compare = |name: &str, recorded: String, given: String| {
            if recorded != given {
                differing.push(format!("{name}: {recorded} recorded, {given} given"));
            }
        };
        compare(
            "instance",
            self.instance.to_string(),
            other.instance.to_string(),
        );
        compare(
            "family",
            self.family.as_str().into(),
            other.family.as_str().into(),
        );
        compare("bundle", self.bundle.clone(), other.bundle.clone());
        compare(
            "distribution",
            self.distribution.clone(),
            other.distribution.clone(),
        );
        compare(
            "prerequisites",
            self.prerequisites.clone(),
            other.prerequisites.clone(),
        );
        compare("port", self.port.to_string(), other.port.to_string());
        differing
    }

    fn upgrade_timeout(&self) -> Duration {
        Duration::from_secs(self.upgrade_timeout_seconds)
    }
    fn health_timeout(&self) -> Duration {
        Duration::from_secs(self.health_timeout_seconds)
    }
}

/// A step of the procedure: what it does, for plans, progress and help, and
/// the function that does it.
#[derive(Clone, Copy, Serialize)]
pub struct StepInfo {
    /// The step's name in the state and reports.
    pub name: &'static str,
    /// What it does, in a line.
    pub title: &'static str,
    /// What must hold before it runs.
    pub precondition: &'static str,
    /// How the tool knows it worked.
    pub check: &'static str,
    /// What a rollback does about it.
    pub undo: &'static str,
    /// Does it (checks first, acts through the executor, checks the result).
    #[serde(skip)]
    pub(crate) run: StepFn,
}

impl std::fmt::Debug for StepInfo {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StepInfo")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The steps in the order they run.
pub const STEPS: &[StepInfo] = &[
    StepInfo {
        name: "verify-bundle",
        title: "Verify the old server's backup bundle",
        precondition: "the bundle exists (cmw-upgrade backup on the old server)",
        check: "every file matches its BLAKE3 hash in the manifest",
        undo: "nothing: it only reads",
        run: |step| step.verify_bundle(),
    },
    StepInfo {
        name: "prerequisites",
        title: "Unpack the prerequisites, install librdkafka, check prerequisites_list.sh",
        precondition: "the prerequisites tarball exists",
        check: "every prerequisites_list.sh row is OK",
        undo: "nothing: newer libraries serve the old version too",
        run: |step| step.prerequisites(),
    },
    StepInfo {
        name: "install-version",
        title: "Unpack the platform and install the new version",
        precondition: "the platform tarball exists",
        check: "version_list.sh lists the new version",
        undo: "nothing: versions are installed side by side",
        run: |step| step.install_version(),
    },
    StepInfo {
        name: "create-instance",
        title: "Create the instance with a clean database (instance_create.sh)",
        precondition: "no instance of that name, or one of another version to replace",
        check: "no FAILED line after restarts; the services are active",
        undo: "a replaced version comes back (instance_delete.sh, instance_create.sh -v=<old>)",
        run: |step| step.create_instance(),
    },
    StepInfo {
        name: "migrate-config",
        title: "Carry the old config values over, nginx -t, reload, restart the services",
        precondition: "the bundle's config/ holds the old files",
        check: "the migration's checks pass, nginx -t passes, the services are active",
        undo: "the files' originals are kept beside them (*.cmw-upgrade.<stamp>.bak)",
        run: |step| step.migrate_config(),
    },
    StepInfo {
        name: "smoke-check",
        title: "Check the new instance: GET /api/health through the site, heartbeat logs",
        precondition: "the instance is running",
        check: "200, and no error record in heartbeat logs",
        undo: "nothing: it only reads",
        run: |step| step.smoke_check(),
    },
    StepInfo {
        name: "transfer-data",
        title: "Stop, move the clean database aside, restore the old one, start",
        precondition: "the bundle verified",
        check: "every restored file hashed against the manifest; the service is active",
        undo: "the database is restored from the bundle again",
        run: |step| step.transfer_data(),
    },
    StepInfo {
        name: "wait-upgrade",
        title: "Wait for the data-structure upgrade (UpgradeOntology.log, upgrade<date>.log)",
        precondition: "the instance runs on the old data",
        check: "both logs end with their completion records and hold no error",
        undo: "on failure: stop, keep the logs in the bundle, roll back",
        run: |step| step.wait_upgrade(),
    },
    StepInfo {
        name: "backup-upgraded",
        title: "Stop the instance and back up the upgraded database",
        precondition: "the upgrade succeeded",
        check: "the new bundle verifies",
        undo: "nothing: the bundle is kept",
        run: |step| step.backup_upgraded(),
    },
    StepInfo {
        name: "prune-caches",
        title: "Prune the old-format caches in a copy of that backup",
        precondition: "the upgraded bundle verified",
        check: "no old-format cache folder left in the copy",
        undo: "nothing: the copy is the tool's own",
        run: |step| step.prune_caches(),
    },
    StepInfo {
        name: "replace-database",
        title: "Replace the database with the pruned copy, chown, start",
        precondition: "the instance is stopped; the pruned copy is complete",
        check: "the service is active",
        undo: "the previous database is kept beside it (<db>.upgraded-<stamp>)",
        run: |step| step.replace_database(),
    },
    StepInfo {
        name: "final-check",
        title: "Final check: health, heartbeat logs, verdict, services",
        precondition: "the instance runs on the pruned database",
        check: "200, no heartbeat errors, the upgrade verdict still succeeded",
        undo: "nothing: it only reads",
        run: |step| step.final_check(),
    },
];

/// The names of [`STEPS`], in order.
pub fn step_names() -> Vec<&'static str> {
    STEPS.iter().map(|step| step.name).collect()
}

/// What the procedure tells its caller while it works.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step started (its running status is saved).
    StepStarted {
        /// 0-based position.
        index: usize,
        /// Steps in all.
        total: usize,
        /// The step's name.
        name: String,
        /// What it does.
        title: String,
        /// The server it runs on, in a run from a control point (`old`, `new`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
    },
    /// A step ended (its status is saved).
    StepFinished {
        /// The step's name.
        name: String,
        /// `done`, `failed` or `rolled_back`.
        status: StepStatus,
        /// How long it took.
        seconds: f64,
    },
    /// A step was already done in an earlier run.
    StepSkipped {
        /// The step's name.
        name: String,
    },
    /// Waiting for something (the upgrade, the site).
    Waiting {
        /// What is awaited.
        what: String,
        /// Seconds so far.
        elapsed: f64,
        /// Seconds allowed.
        limit: f64,
        /// What it looks like now (e.g. the verdict).
        detail: String,
    },
    /// The bundle on its way to the new server.
    Transfer {
        /// Bytes received and checked so far.
        bytes_done: u64,
        /// Bytes to send in all.
        bytes_total: u64,
        /// Files received so far.
        files_done: u64,
        /// Files to send in all.
        files_total: u64,
        /// Seconds since the transfer started.
        seconds: f64,
    },
    /// Something the admin should read.
    Note {
        /// The text.
        text: String,
    },
}

/// Where the procedure's events go.
pub type EventSink<'a> = &'a mut dyn FnMut(&Event);

/// The outcome of a whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// `upgraded` or `failed`.
    pub outcome: String,
    /// The instance.
    pub instance: String,
    /// Every step's record.
    pub steps: Vec<StepRecord>,
    /// What to do next.
    pub next: String,
    /// What a person must decide (the config migration's notes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to_do: Vec<crate::config::migrate::HandNote>,
}

fn now() -> String {
    utc_rfc3339(SystemTime::now())
}

/// Folds repeated polling (the same command again and again while waiting)
/// into one entry, so a step's transcript lists what it did, in order.
fn fold_repeats(operations: Vec<Recorded>) -> Vec<Recorded> {
    let mut folded: Vec<Recorded> = Vec::with_capacity(operations.len());
    for recorded in operations {
        if !folded.contains(&recorded) || !is_poll(&recorded.operation) {
            folded.push(recorded);
        }
    }
    folded
}

fn is_poll(operation: &Operation) -> bool {
    match operation {
        Operation::Run { command } => command.starts_with("systemctl is-active"),
        Operation::Tool { command } => {
            command.starts_with("cmw-upgrade logs verdict")
                || command.starts_with("cmw-upgrade check")
        }
        _ => false,
    }
}

/// Loads the state of `settings.instance` or starts a new one; a state made
/// with other settings is refused (finish or roll back that run first).
///
/// # Errors
/// [`Error::StateConflict`] for a state of a different run; what loading reports.
pub fn load_or_start(executor: &dyn Executor, settings: &UpgradeSettings) -> Result<RunState> {
    let Some(mut state) = RunState::load(executor, &settings.instance)? else {
        return Ok(fresh_state(settings));
    };
    // A run never started or fully rolled back leaves nothing to resume.
    let nothing_to_resume = state
        .steps
        .iter()
        .all(|step| matches!(step.status, StepStatus::Pending | StepStatus::RolledBack));
    if nothing_to_resume {
        return Ok(fresh_state(settings));
    }
    if let Some(saved) = &state.settings {
        let differing = saved.differences(settings);
        if !differing.is_empty() {
            return Err(Error::StateConflict {
                details: format!(
                    "a run of {} with other settings is in progress ({}); resume it with the \
                     same options, or undo it with: {}",
                    settings.instance,
                    differing.join("; "),
                    rollback_command(&settings.instance)
                ),
            });
        }
    }
    // The time limits and --fix-config may change between attempts: a wait
    // that timed out resumes with a longer limit.
    state.settings = Some(settings.clone());
    Ok(state)
}

/// What must hold before a new run records anything, so a typo is an error
/// (`check_failed`, nothing changed, nothing recorded) and the corrected
/// command just works: the tarballs' names read, are for this server's family,
/// and exist; the bundle exists and is a backup of this instance.
///
/// # Errors
/// [`Error::CheckFailed`] saying what is wrong; what reading the server reports.
pub fn preflight(exec: &dyn Executor, settings: &UpgradeSettings) -> Result<()> {
    preflight_tarballs(exec, settings)?;
    let manifest = steps::read_bundle_manifest(exec, settings)?;
    // An upgrade goes to a newer version than the bundle's data.
    let platform = dist::PlatformTarball::parse(&settings.distribution)?;
    if let Some(old) = manifest
        .get("platform_version")
        .and_then(serde_json::Value::as_str)
    {
        if dist::compare_versions(&platform.version, old).is_le() {
            return Err(steps::check_failed(
                "checking the versions",
                format!(
                    "{} installs {}, and the bundle's data is of {old}: an upgrade goes to a \
                     newer version; download the new release's tarballs",
                    settings.distribution, platform.version
                ),
            ));
        }
    }
    Ok(())
}

/// The tarballs' part of [`preflight`]: their names read, are for this
/// server's family, and they exist.
///
/// # Errors
/// [`Error::CheckFailed`] saying what is wrong; what reading the server reports.
pub(crate) fn preflight_tarballs(exec: &dyn Executor, settings: &UpgradeSettings) -> Result<()> {
    let refuse = steps::check_failed;
    let platform = dist::PlatformTarball::parse(&settings.distribution)?;
    let prerequisites = dist::PrerequisitesTarball::parse(&settings.prerequisites)?;
    if platform.release != prerequisites.release {
        return Err(refuse(
            "checking the tarballs",
            format!(
                "{} is of release {}, {} of release {}: take both from the same release",
                settings.distribution,
                platform.release,
                settings.prerequisites,
                prerequisites.release
            ),
        ));
    }
    for (path, os) in [
        (&settings.distribution, &platform.os),
        (&settings.prerequisites, &prerequisites.os),
    ] {
        // The tarball's OS is an os-release ID (astra, redos, altlinux, ...).
        if let Ok(info) = crate::os::detect_os_family(&format!("ID={os}\n")) {
            if info.family != settings.family {
                return Err(refuse(
                    "checking the tarballs",
                    format!(
                        "{path} is for {os} ({} family), this server is of the {} family; \
                         download the tarball for this OS",
                        info.family.as_str(),
                        settings.family.as_str()
                    ),
                ));
            }
        }
        if !exec.exists(path)? {
            return Err(refuse(
                "checking the tarballs",
                format!("{path} does not exist"),
            ));
        }
    }
    Ok(())
}

fn fresh_state(settings: &UpgradeSettings) -> RunState {
    let mut state = RunState::new(&settings.instance, &step_names());
    state.settings = Some(settings.clone());
    state
}

/// Runs (or resumes) the procedure. Every effect goes through `recorder`;
/// the state is saved through its inner executor, so it is not part of the
/// steps' transcripts.
///
/// # Errors
/// Only for failures to save the state or bad settings; a failed step is a
/// report with outcome `failed` (its error in its record).
pub fn run_upgrade<E: Executor>(
    recorder: &Recording<E>,
    settings: &UpgradeSettings,
    events: EventSink<'_>,
) -> Result<RunReport> {
    run_upgrade_with_cancel(recorder, settings, events, &Cancel::new())
}

/// [`run_upgrade`] that stops when `cancel` is set: before starting the next
/// step, or in a step's wait (the upgrade, the site), where stopping changes
/// nothing (that step is then pending again); a local executor made
/// [`with_cancel`](crate::executor::LocalExecutor::with_cancel) also stops its
/// backups and restores between files. The steps done stay done, so the same
/// settings resume the run.
///
/// # Errors
/// As [`run_upgrade`]; [`Error::Cancelled`] when it stopped on request.
pub fn run_upgrade_with_cancel<E: Executor>(
    recorder: &Recording<E>,
    settings: &UpgradeSettings,
    events: EventSink<'_>,
    cancel: &Cancel,
) -> Result<RunReport> {
    let store: &dyn Executor = recorder.inner();
    let mut state = load_or_start(store, settings)?;
    if state.servers.is_some() {
        return Err(two_servers::driven_elsewhere(&settings.instance));
    }
    if state.resume_index() == Some(0) && state.steps[0].status == StepStatus::Pending {
        // A new run: nothing is recorded before its inputs check out.
        preflight(store, settings)?;
    }
    let table = NewServerSteps {
        recorder,
        store,
        settings,
        server: None,
    };
    let failed = drive(
        store,
        &mut state,
        &settings.instance,
        &table,
        events,
        cancel,
    )?;
    Ok(run_report(settings, state, failed))
}

/// The report of a run that ended (failed or not).
fn run_report(settings: &UpgradeSettings, state: RunState, failed: bool) -> RunReport {
    let next = if failed {
        format!(
            "The old server was not changed by this run. Fix the cause and rerun the same command to resume, or undo with: {}. For the platform's support: cmw-upgrade report --instance {}",
            rollback_command(&settings.instance),
            settings.instance
        )
    } else {
        "The new server serves the upgraded instance. Switch DNS or the upstream proxy to it (lower the TTL first), then check it from several networks.".to_owned()
    };
    RunReport {
        outcome: if failed { "failed" } else { "upgraded" }.to_owned(),
        instance: settings.instance.to_string(),
        steps: state.steps,
        next,
        to_do: state.to_do,
    }
}

/// The steps a driver runs, by name: what each is called in progress lines,
/// and how it runs.
pub(crate) trait StepTable {
    /// The step's title and the server it runs on; `None` for a name this
    /// table does not know (a state written by another version).
    fn describe(&self, name: &str) -> Option<(String, Option<String>)>;

    /// Runs the step at `index` of `state`; returns how it ended and the
    /// operations it performed.
    fn run(
        &self,
        index: usize,
        state: &mut RunState,
        events: EventSink<'_>,
        cancel: &Cancel,
    ) -> (Result<()>, Vec<Recorded>);
}

/// The procedure's own steps ([`STEPS`]) on the new server.
pub(crate) struct NewServerSteps<'a, E: Executor> {
    /// Every effect on the new server goes here.
    pub recorder: &'a Recording<E>,
    /// Where the state is saved.
    pub store: &'a dyn Executor,
    pub settings: &'a UpgradeSettings,
    /// The label of the new server in a run from a control point.
    pub server: Option<String>,
}

impl<E: Executor> StepTable for NewServerSteps<'_, E> {
    fn describe(&self, name: &str) -> Option<(String, Option<String>)> {
        STEPS
            .iter()
            .find(|step| step.name == name)
            .map(|step| (step.title.to_owned(), self.server.clone()))
    }

    fn run(
        &self,
        index: usize,
        state: &mut RunState,
        events: EventSink<'_>,
        cancel: &Cancel,
    ) -> (Result<()>, Vec<Recorded>) {
        let name = state.steps[index].name.clone();
        let Some(info) = STEPS.iter().find(|step| step.name == name) else {
            return (Err(unknown_step(&name)), Vec::new());
        };
        self.recorder.take_operations();
        let outcome = (info.run)(&mut Step::new(
            self.recorder,
            self.store,
            self.settings,
            state,
            index,
            events,
            cancel,
        ));
        (outcome, fold_repeats(self.recorder.take_operations()))
    }
}

fn unknown_step(name: &str) -> Error {
    Error::StateConflict {
        details: format!(
            "the run state names an unknown step {name:?}: it was written by another version of \
             cmw-upgrade; finish or roll back that run with that version"
        ),
    }
}

/// Runs the steps of `state` that are not done, in order, saving the state
/// through `store` around each; stops at the first failure. Returns whether
/// a step failed.
fn drive(
    store: &dyn Executor,
    state: &mut RunState,
    instance: &InstanceName,
    table: &dyn StepTable,
    events: EventSink<'_>,
    cancel: &Cancel,
) -> Result<bool> {
    state.rollback = None;
    state.save(store)?;
    let total = state.steps.len();
    for index in 0..total {
        let name = state.steps[index].name.clone();
        if state.steps[index].status == StepStatus::Done {
            events(&Event::StepSkipped { name });
            continue;
        }
        let (title, server) = table.describe(&name).ok_or_else(|| unknown_step(&name))?;
        if cancel.is_cancelled() {
            // The state on disk already says where to resume: the steps done,
            // and this one still pending.
            return Err(Error::Cancelled {
                left: format!(
                    "the steps done stay done and {name} has not started; run again with \
                     the same settings to resume, or undo with: {}",
                    rollback_command(instance)
                ),
            });
        }
        {
            let record = &mut state.steps[index];
            record.status = StepStatus::Running;
            record.started = Some(now());
            record.finished = None;
            record.error = None;
            record.error_kind = None;
            record.commands.clear();
            record.server.clone_from(&server);
        }
        state.save(store)?;
        events(&Event::StepStarted {
            index,
            total,
            name: name.clone(),
            title,
            server,
        });
        let clock = Instant::now();
        let (outcome, commands) = table.run(index, state, &mut *events, cancel);
        let record = &mut state.steps[index];
        record.commands = commands;
        record.seconds = Some(clock.elapsed().as_secs_f64());
        record.finished = Some(now());
        let mut cancelled = None;
        let mut failed = false;
        match outcome {
            Ok(()) => record.status = StepStatus::Done,
            // Stopped on request in a wait: not a failure, and it starts over.
            Err(error @ Error::Cancelled { .. }) => {
                record.status = StepStatus::Pending;
                record.error = Some(crate::secrets::mask(&error.to_string()).into_owned());
                record.error_kind = Some(error.kind().as_str().to_owned());
                cancelled = Some(error);
            }
            Err(error) => {
                record.status = StepStatus::Failed;
                record.error = Some(crate::secrets::mask(&error.to_string()).into_owned());
                record.error_kind = Some(error.kind().as_str().to_owned());
                failed = true;
            }
        }
        let (status, seconds) = (record.status, record.seconds.unwrap_or_default());
        state.save(store)?;
        events(&Event::StepFinished {
            name,
            status,
            seconds,
        });
        if let Some(error) = cancelled {
            return Err(error);
        }
        if failed {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One step of a plan: what it does and the exact commands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedStep {
    /// The step's name.
    pub name: &'static str,
    /// What it does.
    pub title: &'static str,
    /// What must hold before it runs.
    pub precondition: &'static str,
    /// How the tool knows it worked.
    pub check: &'static str,
    /// What a rollback does about it.
    pub undo: &'static str,
    /// The commands and file operations, in order.
    pub commands: Vec<String>,
    /// What its read-only actions found and what its previews would change
    /// (the config migration's directives, under their new names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<ToolOutcome>,
    /// Why it could not be planned in full now (a file not there yet).
    pub note: Option<String>,
    /// The server it runs on, in a run from a control point (`old`, `new`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// Plans the run: every step and its commands, changing nothing. `executor`
/// must be a dry run (reads pass through, effects are dropped).
///
/// # Errors
/// [`Error::Internal`] when `executor` is not a dry run.
pub fn plan_upgrade<E: Executor>(
    recorder: &Recording<E>,
    settings: &UpgradeSettings,
) -> Result<Vec<PlannedStep>> {
    if !recorder.is_dry_run() {
        return Err(Error::Internal {
            details: "a plan must run on a dry-run executor".to_owned(),
        });
    }
    preflight(recorder, settings)?;
    Ok(plan_steps(recorder, settings))
}

/// Every step of [`STEPS`] planned on a dry-run `recorder`; a step that
/// cannot be planned in full (a file not there yet) says why in its note.
pub(crate) fn plan_steps<E: Executor>(
    recorder: &Recording<E>,
    settings: &UpgradeSettings,
) -> Vec<PlannedStep> {
    let mut state = fresh_state(settings);
    let mut planned = Vec::new();
    let never = Cancel::new();
    recorder.take_findings();
    let mut ignore = |_: &Event| {};
    for (index, info) in STEPS.iter().enumerate() {
        recorder.take_operations();
        let outcome = (info.run)(&mut Step::new(
            recorder,
            recorder.inner(),
            settings,
            &mut state,
            index,
            &mut ignore,
            &never,
        ));
        planned.push(PlannedStep {
            name: info.name,
            title: info.title,
            precondition: info.precondition,
            check: info.check,
            undo: info.undo,
            commands: recorder
                .take_operations()
                .iter()
                .map(|recorded| recorded.operation.display())
                .collect(),
            findings: recorder.take_findings(),
            note: outcome.err().map(|error| error.to_string()),
            server: None,
        });
    }
    planned
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackReport {
    /// The instance.
    pub instance: String,
    /// The rollback's own record (commands, time, error).
    pub rollback: StepRecord,
    /// Every step's record after the rollback.
    pub steps: Vec<StepRecord>,
    /// What the admin should know now.
    pub next: String,
}

/// Undoes a run per the platform procedure's "problems" section: stop the new instance,
/// keep its logs in the bundle, restore the database from the bundle, and
/// bring a replaced version back (`instance_delete.sh`, `instance_create.sh
/// -v=<old>`). Nothing is deleted: every database it replaces is moved aside.
///
/// # Errors
/// [`Error::StateConflict`] when there is no run to roll back; a failing
/// command (the rollback can be run again).
pub fn rollback_upgrade<E: Executor>(
    recorder: &Recording<E>,
    instance: &InstanceName,
    events: EventSink<'_>,
) -> Result<RollbackReport> {
    let store: &dyn Executor = recorder.inner();
    if RunState::load(store, instance)?.is_some_and(|state| state.servers.is_some()) {
        return Err(two_servers::driven_elsewhere(instance));
    }
    rollback_upgrade_on(recorder, store, instance, None, events)
}

/// [`rollback_upgrade`] with the state kept through `store` (a control
/// point's) while the rollback acts through `recorder` (on the new server,
/// labelled `server` in the progress).
pub(crate) fn rollback_upgrade_on<E: Executor>(
    recorder: &Recording<E>,
    store: &dyn Executor,
    instance: &InstanceName,
    server: Option<String>,
    events: EventSink<'_>,
) -> Result<RollbackReport> {
    let Some(mut state) = RunState::load(store, instance)? else {
        return Err(Error::StateConflict {
            details: format!("no run of {instance} is recorded on this server; nothing to undo"),
        });
    };
    let Some(settings) = state.settings.clone() else {
        return Err(Error::StateConflict {
            details: "the run state has no settings (written by an older version); roll it back \
                      with that version, or move the state file away"
                .to_owned(),
        });
    };
    let clock = Instant::now();
    let started = now();
    recorder.take_operations();
    events(&Event::StepStarted {
        index: 0,
        total: 1,
        name: "rollback".to_owned(),
        title:
            "Roll back: stop, keep the logs, restore the old database, bring the old version back"
                .to_owned(),
        server: server.clone(),
    });
    let outcome = steps::rollback(recorder, &settings, &mut state, events);
    let mut record = StepRecord {
        name: "rollback".to_owned(),
        status: StepStatus::Done,
        started: Some(started),
        finished: Some(now()),
        seconds: Some(clock.elapsed().as_secs_f64()),
        artifacts: Default::default(),
        commands: recorder.take_operations(),
        error: None,
        error_kind: None,
        server,
    };
    let next = match &outcome {
        Ok(next) => {
            for step in &mut state.steps {
                if step.status != StepStatus::Pending {
                    step.status = StepStatus::RolledBack;
                }
            }
            next.clone()
        }
        Err(error) => {
            record.status = StepStatus::Failed;
            record.error = Some(crate::secrets::mask(&error.to_string()).into_owned());
            record.error_kind = Some(error.kind().as_str().to_owned());
            format!(
                "The rollback stopped: {error}. Fix it and run it again: {}",
                rollback_command(instance)
            )
        }
    };
    state.rollback = Some(record.clone());
    state.save(store)?;
    events(&Event::StepFinished {
        name: "rollback".to_owned(),
        status: record.status,
        seconds: record.seconds.unwrap_or_default(),
    });
    outcome?;
    Ok(RollbackReport {
        instance: instance.to_string(),
        rollback: record,
        steps: state.steps,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::executor::LocalExecutor;

    fn settings() -> UpgradeSettings {
        UpgradeSettings {
            instance: InstanceName::new("prod").unwrap(),
            family: OsFamily::Deb,
            bundle: "/backup/prod".to_owned(),
            distribution: "/tmp/5.0-release-ru-5.0.1234.0.astra.tar.gz".to_owned(),
            prerequisites: "/tmp/5.0-release-ru-5.0.1234.0.prerequisites.astra.tar.gz".to_owned(),
            port: 80,
            upgrade_timeout_seconds: 60,
            health_timeout_seconds: 60,
            fix_config: false,
        }
    }

    #[test]
    fn a_cancelled_run_stops_before_the_next_step_and_stays_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalExecutor::new(dir.path());
        let settings = settings();
        let mut earlier = fresh_state(&settings);
        earlier.steps[0].status = StepStatus::Done;
        earlier.save(&local).unwrap();

        let cancel = Cancel::new();
        let mut seen = Vec::new();
        // The stop request comes while the run is under way (here: as the
        // done first step is skipped), as Ctrl-C would.
        let error = run_upgrade_with_cancel(
            &Recording::new(&local),
            &settings,
            &mut |event| {
                seen.push(event.clone());
                cancel.cancel();
            },
            &cancel,
        )
        .unwrap_err();

        assert_eq!(error.kind(), ErrorKind::Cancelled);
        let message = error.to_string();
        assert!(
            message.contains("prerequisites has not started")
                && message.contains("cmw-upgrade rollback --instance prod"),
            "{message}"
        );
        assert_eq!(
            seen,
            [Event::StepSkipped {
                name: STEPS[0].name.to_owned()
            }],
            "no step started after the request"
        );
        let state = RunState::load(&local, &settings.instance).unwrap().unwrap();
        assert_eq!(state.steps[0].status, StepStatus::Done);
        assert!(state.steps[1..]
            .iter()
            .all(|step| step.status == StepStatus::Pending));
        assert_eq!(
            load_or_start(&local, &settings).unwrap().steps[0].status,
            StepStatus::Done,
            "the same settings resume the run"
        );
    }
}
