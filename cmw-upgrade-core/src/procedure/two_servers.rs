//! The whole upgrade driven from one control point (an admin's workstation,
//! a jump host, or one of the two servers): the old server backs up, the
//! bundle moves to the new server, the new server runs the procedure's steps,
//! and the old server's live database is compared with the bundle at the end.
//!
//! Both servers are reached the same way: through an [`Executor`] (the ssh
//! executor and the agent there, or this machine). The run state lives on
//! the control point and names the server of every step, so a rerun after a
//! `kill -9` of the control point or a dropped connection reconnects and
//! continues at the first step not done, and `rollback` undoes the new
//! server's part from here. The old server is only read, apart from the
//! bundle it writes: it keeps serving throughout.
//!
//! Nothing is changed and nothing is recorded until both servers pass their
//! preflight (reachable, agent, root, family, the instance, free space, the
//! tarballs): a typo is an error, not a run to roll back.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::state::{RunState, StepStatus, STATE_ROOT};
use super::steps::rollback_command;
use super::{
    drive, fold_repeats, plan_steps, preflight_tarballs, rollback_upgrade_on, run_report,
    step_names, Event, EventSink, NewServerSteps, PlannedStep, RollbackReport, RunReport,
    StepTable, UpgradeSettings,
};
use crate::backup::manifest::BackupMethod;
use crate::backup::{choose_method, DriftReport, ServiceState};
use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::exec::utc_stamp;
use crate::executor::preflight::{
    preflight, size_of as size_on, PreflightCheck, PreflightReport, PreflightRequest,
};
use crate::executor::transfer::{
    transfer_bundle, BundleEnd, DirectSsh, Route, TransferProgress, TransferRequest,
};
use crate::executor::{
    CommandSpec, Executor, LocalExecutor, OpOutcome, Operation, Recorded, Recording, SshExecutor,
    SshTarget, ToolAction,
};
use crate::instance::InstanceName;
use crate::os::OsFamily;
use crate::server::ServerRead;

pub use super::servers::{RecordedServers, ServerSpec, TwoServerSettings};

/// The step that backs up the old server.
pub const BACKUP_OLD: &str = "backup-old";
/// The step that brings the bundle to the new server.
pub const TRANSFER_BUNDLE: &str = "transfer-bundle";
/// The step that compares the old server's live database with the bundle.
pub const DRIFT_OLD: &str = "drift-old";

/// The label of the old server in progress lines, plans and the state.
pub const OLD: &str = "old";
/// The label of the new server.
pub const NEW: &str = "new";
/// The label of a step that moves data from the old server to the new one.
pub const OLD_TO_NEW: &str = "old->new";

/// A server reached: this machine, or another through ssh and its agent.
#[derive(Debug)]
pub enum Server {
    /// This machine (`local`).
    Local(LocalExecutor),
    /// Another server.
    Ssh(Box<SshExecutor>),
}

impl Server {
    /// Reaches the server `spec` names: a local executor under its root (or
    /// `/`), or an ssh connection with the agent started there (copied there
    /// first when missing or older).
    ///
    /// # Errors
    /// What [`SshExecutor::connect`] reports: ssh's own words for a refused
    /// connection, a host key that does not match, an agent that does not fit.
    pub fn connect(spec: &ServerSpec) -> Result<Server> {
        if spec.is_local() {
            return Ok(Server::Local(LocalExecutor::new(
                spec.root.as_deref().unwrap_or("/"),
            )));
        }
        let mut agent = vec![spec.program.clone()];
        if let Some(root) = &spec.root {
            agent.extend(["--root".to_owned(), root.clone()]);
        }
        agent.push("agent".to_owned());
        let mut target = SshTarget {
            port: spec.port,
            identity_file: spec.identity_file.clone(),
            known_hosts_file: spec.known_hosts_file.clone(),
            agent,
            provision: spec.provision,
            ..SshTarget::new(spec.destination.clone())
        };
        if let Some(folder) = &spec.provision_dir {
            target.provision_dir.clone_from(folder);
        }
        Ok(Server::Ssh(Box::new(SshExecutor::connect(target)?)))
    }

    /// Its executor.
    pub fn executor(&self) -> &dyn Executor {
        match self {
            Server::Local(local) => local,
            Server::Ssh(ssh) => ssh.as_ref(),
        }
    }

    /// The bundle folder `dir` there, as one end of a transfer.
    fn bundle_end(&self, dir: &str) -> BundleEnd<'_> {
        match self {
            Server::Local(local) => BundleEnd::Local {
                root: local.root().to_path_buf(),
                dir: dir.to_owned(),
            },
            Server::Ssh(ssh) => BundleEnd::Remote {
                ssh: ssh.as_ref(),
                dir: dir.to_owned(),
            },
        }
    }

    /// A read-only look at it (the agent's version and any copy made to reach it too).
    fn preflight(&self, spec: &ServerSpec, request: &PreflightRequest) -> PreflightReport {
        match self {
            Server::Local(local) => preflight(local, &spec.display(), request),
            Server::Ssh(ssh) => ssh.preflight(request),
        }
    }
}

/// The error for a run that a control point drives, met by a command run on
/// the new server itself.
pub(crate) fn driven_elsewhere(instance: &InstanceName) -> Error {
    Error::StateConflict {
        details: format!(
            "the run of {instance} recorded here is driven from a control point (cmw-upgrade \
             upgrade --old … --new …): resume, check or undo it there, with `cmw-upgrade \
             upgrade`, `status` and `rollback`"
        ),
    }
}

/// The step names of a run from a control point, in order.
pub fn two_server_step_names() -> Vec<&'static str> {
    let mut names = vec![BACKUP_OLD, TRANSFER_BUNDLE];
    names.extend(step_names());
    names.push(DRIFT_OLD);
    names
}

/// What the preflight found on both servers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TwoServerPreflight {
    /// The old server.
    pub old: PreflightReport,
    /// The new server.
    pub new: PreflightReport,
    /// The size of the old instance's database, in bytes (what the bundle holds).
    pub database_bytes: u64,
}

impl TwoServerPreflight {
    /// Whether every check on both sides passed.
    pub fn ok(&self) -> bool {
        self.old.ok() && self.new.ok()
    }

    /// The failed checks as one error, each with its server and its fix.
    fn refusal(&self) -> Option<Error> {
        let failed: Vec<String> = [(OLD, &self.old), (NEW, &self.new)]
            .iter()
            .flat_map(|(label, report)| {
                report.failed().map(move |check| {
                    format!(
                        "[{label}] {}: {}{}",
                        check.name,
                        check.detail,
                        check
                            .fix
                            .as_deref()
                            .map(|fix| format!(" ({fix})"))
                            .unwrap_or_default()
                    )
                })
            })
            .collect();
        (!failed.is_empty()).then(|| Error::CheckFailed {
            what: "the preflight of both servers (nothing was changed or recorded)".to_owned(),
            details: failed.join("; "),
        })
    }
}

/// Whether two executors reach the same machine, by its `/etc/machine-id`
/// (names cannot tell: an address, a host name and an ssh alias may all be
/// one machine). Unknown (no machine-id on either) is not the same.
pub fn same_machine(a: &dyn Executor, b: &dyn Executor) -> bool {
    let id = |exec: &dyn Executor| {
        exec.read_file("/etc/machine-id")
            .ok()
            .flatten()
            .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
            .filter(|id| !id.is_empty())
    };
    matches!((id(a), id(b)), (Some(a), Some(b)) if a == b)
}

/// Adds a `free_space` check per file system of `report`: the sum of what
/// the run will put on it, against what is free there.
fn check_space(report: &mut PreflightReport, needs: &[(&str, u64, String)]) {
    let mut by_mount: Vec<(String, u64, u64, Vec<String>)> = Vec::new();
    for (folder, bytes, what) in needs {
        let Some(space) = report
            .free_space
            .iter()
            .find(|space| space.folder == *folder)
        else {
            continue;
        };
        let line = format!("{what} {} MiB in {folder}", bytes / (1 << 20));
        match by_mount.iter_mut().find(|entry| entry.0 == space.mount) {
            Some(entry) => {
                entry.1 = entry.1.saturating_add(*bytes);
                entry.3.push(line);
            }
            None => by_mount.push((
                space.mount.clone(),
                *bytes,
                space.available_bytes,
                vec![line],
            )),
        }
    }
    for (mount, needed, available, parts) in by_mount {
        let ok = available >= needed;
        report.checks.push(PreflightCheck {
            name: "space".to_owned(),
            ok,
            detail: format!(
                "{mount}: {} MiB needed ({}), {} MiB free",
                needed / (1 << 20),
                parts.join(" + "),
                available / (1 << 20)
            ),
            fix: (!ok).then(|| {
                "free space there, or choose another --bundle-dir on a bigger file system"
                    .to_owned()
            }),
        });
    }
}

/// Whether the distribution installs a newer version than the old instance runs.
fn version_check(distribution: &str, old_version: &str) -> PreflightCheck {
    let new_version = super::dist::PlatformTarball::parse(distribution)
        .map(|tarball| tarball.version)
        .unwrap_or_default();
    let ok = super::dist::compare_versions(&new_version, old_version).is_gt();
    PreflightCheck {
        name: "versions".to_owned(),
        ok,
        detail: format!(
            "the old instance runs {old_version}; the distribution installs {new_version}"
        ),
        fix: (!ok).then(|| {
            "an upgrade goes to a newer version: download the new release's tarballs".to_owned()
        }),
    }
}

/// Whether the prerequisites tarball holds the packages the steps install
/// (librdkafka for the family's package tool), so the package tool has no
/// reason to reach a repository: servers are often without internet.
fn offline_check(exec: &dyn Executor, settings: &UpgradeSettings) -> PreflightCheck {
    let fail = |detail: String| PreflightCheck {
        name: "offline".to_owned(),
        ok: false,
        detail,
        fix: Some(
            "use the prerequisites tarball for the new server's OS from the platform's \
             distribution (it carries the packages)"
                .to_owned(),
        ),
    };
    let Ok(tarball) = super::dist::PrerequisitesTarball::parse(&settings.prerequisites) else {
        return fail(format!(
            "{} is not named as a prerequisites tarball",
            settings.prerequisites
        ));
    };
    let command = CommandSpec::new(["tar", "-tzf"])
        .path_arg(settings.prerequisites.clone())
        .with_timeout(Duration::from_secs(600))
        .read_only();
    let listing = match exec.execute(&command) {
        Ok(output) if output.success() => output.stdout,
        Ok(output) => {
            return fail(format!(
                "`tar -tzf` cannot list it: {}",
                output.stderr.trim()
            ))
        }
        Err(error) => return fail(error.to_string()),
    };
    let folder = tarball.librdkafka_dir("");
    let folder = folder.trim_start_matches('/');
    let extension = format!(".{}", settings.family.package_extension());
    let packages: Vec<&str> = listing
        .lines()
        .map(|line| line.trim_start_matches("./"))
        .filter(|line| line.starts_with(folder) && line.ends_with(&extension))
        .collect();
    if packages.is_empty() {
        return fail(format!(
            "{} holds no *{extension} under {folder}/: the package tool would look for \
             librdkafka in a repository",
            settings.prerequisites
        ));
    }
    PreflightCheck {
        name: "offline".to_owned(),
        ok: true,
        detail: format!(
            "the prerequisites tarball carries {} package(s) for the package tool; nothing is \
             downloaded",
            packages.len()
        ),
        fix: None,
    }
}

/// Looks at both servers, changing nothing: the agent, root, family, the
/// instance on the old server, the tarballs on the new one (their names
/// match its family and they exist), and the free space each side needs for
/// what it will hold. Returns the reports and the new server's settings
/// (its family filled in).
///
/// # Errors
/// [`Error::CheckFailed`] listing every failed check with its server and fix.
pub fn preflight_both(
    old: &Server,
    new: &Server,
    two: &TwoServerSettings,
    settings: &UpgradeSettings,
) -> Result<(TwoServerPreflight, UpgradeSettings, OsFamily)> {
    let instance = &settings.instance;
    let mut old_report = old.preflight(
        &two.old,
        &PreflightRequest {
            folders: vec![two.bundle_dir.clone()],
            min_free_bytes: None,
            instance: Some(instance.clone()),
        },
    );
    let mut database_bytes = 0;
    if let Some(family) = old_report.family {
        if old_report.instance_exists == Some(true) {
            let detected = old.executor().tool(&ToolAction::Detect {
                instance: Some(instance.clone()),
                family: Some(family),
            });
            let database = detected.and_then(|outcome| outcome.detect()).map(|found| {
                found.and_then(|found| found.layout).map(|layout| {
                    // Detection reports paths under the agent's root; commands
                    // take server paths.
                    let relative = layout
                        .database
                        .path
                        .strip_prefix(&layout.root)
                        .unwrap_or(&layout.database.path);
                    format!("/{}", relative.to_string_lossy().trim_start_matches('/'))
                })
            });
            match database {
                Ok(Some(database)) => match size_on(old.executor(), &database) {
                    Some(bytes) => database_bytes = bytes,
                    None => old_report.checks.push(PreflightCheck {
                        name: "database".to_owned(),
                        ok: false,
                        detail: format!("`du -skH {database}` did not answer"),
                        fix: Some("check that the database folder is readable".to_owned()),
                    }),
                },
                Ok(None) => {}
                Err(error) => old_report.checks.push(PreflightCheck {
                    name: "database".to_owned(),
                    ok: false,
                    detail: error.to_string(),
                    fix: Some("check the instance's config (its databasePath)".to_owned()),
                }),
            }
        }
    }
    // The version the old instance runs, from its config there.
    let old_version = old
        .executor()
        .read_file(&format!(
            "{}/{instance}.yml",
            crate::layout::INSTANCE_CONFIG_DIR
        ))
        .ok()
        .flatten()
        .and_then(|bytes| crate::layout::config_version(&String::from_utf8_lossy(&bytes)));
    // The bundle: the database and a little for configs and logs.
    let bundle_bytes = database_bytes.saturating_add(database_bytes / 10);
    check_space(
        &mut old_report,
        &[(&two.bundle_dir, bundle_bytes, "the bundle".to_owned())],
    );

    let data_dir = "/var/lib/comindware";
    let mut new_report = new.preflight(
        &two.new,
        &PreflightRequest {
            folders: vec![
                two.bundle_dir.clone(),
                STATE_ROOT.to_owned(),
                data_dir.to_owned(),
            ],
            min_free_bytes: None,
            instance: None,
        },
    );
    let mut settings = settings.clone();
    if let Some(family) = new_report.family {
        settings.family = family;
        // Both tarballs' size, read once: shown, and (unpacked) needed on disk.
        let sizes: u64 = [&settings.distribution, &settings.prerequisites]
            .iter()
            .filter_map(|path| size_on(new.executor(), path))
            .sum();
        let tarballs = match preflight_tarballs(new.executor(), &settings) {
            Ok(()) => PreflightCheck {
                name: "tarballs".to_owned(),
                ok: true,
                detail: format!(
                    "{} and {} are there, for the {family} family ({} MiB)",
                    settings.distribution,
                    settings.prerequisites,
                    sizes / (1 << 20)
                ),
                fix: None,
            },
            Err(error) => PreflightCheck {
                name: "tarballs".to_owned(),
                ok: false,
                detail: error.to_string(),
                fix: Some(
                    "copy the platform's tarballs for the new server's OS there and give their \
                     paths there"
                        .to_owned(),
                ),
            },
        };
        let unpacked = sizes.saturating_mul(3);
        let tarballs_ok = tarballs.ok;
        new_report.checks.push(tarballs);
        if let (true, Some(old_version)) = (tarballs_ok, &old_version) {
            new_report
                .checks
                .push(version_check(&settings.distribution, old_version));
        }
        if tarballs_ok {
            new_report
                .checks
                .push(offline_check(new.executor(), &settings));
        }
        check_space(
            &mut new_report,
            &[
                (&two.bundle_dir, bundle_bytes, "the bundle".to_owned()),
                (
                    STATE_ROOT,
                    unpacked.saturating_add(database_bytes),
                    "the unpacked tarballs and the upgraded backup".to_owned(),
                ),
                (
                    data_dir,
                    database_bytes.saturating_mul(2),
                    "the live database and its pruned copy".to_owned(),
                ),
            ],
        );
    }
    if same_machine(old.executor(), new.executor()) {
        new_report.checks.push(PreflightCheck {
            name: "servers".to_owned(),
            ok: false,
            detail: format!(
                "{} and {} are the same machine (the same /etc/machine-id): the new server \
                 would be the old one",
                two.old.display(),
                two.new.display()
            ),
            fix: Some("name the second server with --new".to_owned()),
        });
    } else if two.old.same_server(&two.new) {
        new_report.checks.push(PreflightCheck {
            name: "servers".to_owned(),
            ok: false,
            detail: format!("--old and --new both name {}", two.new.display()),
            fix: Some("the new version goes on a second server: name it with --new".to_owned()),
        });
    }
    let old_family = old_report.family;
    let report = TwoServerPreflight {
        old: old_report,
        new: new_report,
        database_bytes,
    };
    if let Some(refusal) = report.refusal() {
        return Err(refusal);
    }
    let old_family = old_family.ok_or_else(|| Error::Internal {
        details: "the old server's preflight passed without a family".to_owned(),
    })?;
    Ok((report, settings, old_family))
}

/// The outcome of a run from a control point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TwoServerReport {
    /// The new server's part, as a local run reports it (every step, with
    /// its server).
    #[serde(flatten)]
    pub run: RunReport,
    /// The two servers and how the bundle travelled.
    pub servers: RecordedServers,
    /// The preflight of a new run (`None` when a run resumed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<TwoServerPreflight>,
    /// What was written on the old server after the backup, when the
    /// comparison ran in this call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReport>,
}

/// What the run from a control point needs to act: the two servers reached,
/// where the state is kept, and what was asked.
pub struct TwoServerRun<'a> {
    /// The old server.
    pub old: &'a Server,
    /// The new server.
    pub new: &'a Server,
    /// Where the run state is kept (the control point's executor).
    pub store: &'a dyn Executor,
}

/// The steps of a run from a control point: the old server's backup, the
/// transfer, the procedure's steps on the new server, the drift check.
struct TwoServerSteps<'a> {
    old: Recording<&'a dyn Executor>,
    servers: &'a TwoServerRun<'a>,
    recorded: &'a RecordedServers,
    settings: &'a UpgradeSettings,
    new_steps: NewServerSteps<'a, &'a dyn Executor>,
    drift: std::cell::RefCell<Option<DriftReport>>,
}

impl StepTable for TwoServerSteps<'_> {
    fn describe(&self, name: &str) -> Option<(String, Option<String>)> {
        let (title, server) = match name {
            BACKUP_OLD => (
                "On the old server: back up the database and configs (it keeps serving)",
                OLD,
            ),
            TRANSFER_BUNDLE => (
                "Bring the bundle to the new server, every file checked on arrival",
                OLD_TO_NEW,
            ),
            DRIFT_OLD => (
                "On the old server: what was written after the backup (backup drift)",
                OLD,
            ),
            other => return self.new_steps.describe(other),
        };
        Some((title.to_owned(), Some(server.to_owned())))
    }

    fn run(
        &self,
        index: usize,
        state: &mut RunState,
        events: EventSink<'_>,
        cancel: &Cancel,
    ) -> (Result<()>, Vec<Recorded>) {
        let name = state.steps[index].name.clone();
        self.old.take_operations();
        match name.as_str() {
            BACKUP_OLD => {
                let outcome = self.backup_old(state, index, events);
                (outcome, self.old.take_operations())
            }
            TRANSFER_BUNDLE => self.transfer(state, index, events, cancel),
            DRIFT_OLD => {
                let outcome = self.drift_old(state, index, events);
                (outcome, fold_repeats(self.old.take_operations()))
            }
            _ => self.new_steps.run(index, state, events, cancel),
        }
    }
}

impl TwoServerSteps<'_> {
    fn remember(&self, state: &mut RunState, index: usize, key: &str, value: String) -> Result<()> {
        state.steps[index].artifacts.insert(key.to_owned(), value);
        state.save(self.servers.store)
    }

    /// The old server's backup into the run's bundle folder there.
    fn backup_old(&self, state: &mut RunState, index: usize, events: EventSink<'_>) -> Result<()> {
        let old = &self.old;
        let bundle = &self.settings.bundle;
        let instance = &self.settings.instance;
        if old.exists(&format!("{bundle}/manifest.json"))? {
            events(&Event::Note {
                text: format!("the bundle {bundle} on the old server is complete already"),
            });
            return Ok(());
        }
        // An interrupted backup left `<bundle>.partial`, which the backup
        // replaces itself; the bundle folder exists only once complete.
        old.create_dir_all(&self.recorded.settings.bundle_dir)?;
        let unit = format!("comindware{instance}");
        let service = match old.execute(
            &CommandSpec::new(["systemctl", "is-active", unit.as_str()])
                .with_timeout(Duration::from_secs(60))
                .read_only(),
        ) {
            Ok(output) if output.code == Some(0) => ServiceState::Running,
            Ok(output) if matches!(output.code, Some(3 | 4)) => ServiceState::Stopped,
            _ => ServiceState::Unknown,
        };
        let method = choose_method(
            self.recorded.settings.backup_method,
            service,
            self.recorded.settings.accept_crash_consistent,
        )?;
        let report = old
            .tool(&ToolAction::Backup {
                instance: instance.clone(),
                family: self.recorded.old_family,
                dest: bundle.clone(),
                method,
            })?
            .backup()?;
        if let Some(report) = report {
            let consistency = match (method, service) {
                (BackupMethod::Copy, ServiceState::Stopped) => {
                    "consistent: a copy of a stopped instance".to_owned()
                }
                _ => report.consistency.clone(),
            };
            events(&Event::Note {
                text: format!(
                    "the bundle: {} files, {} MiB; {consistency}",
                    report.files,
                    report.bytes / (1 << 20),
                ),
            });
            self.remember(state, index, "old_bundle", bundle.clone())?;
            self.remember(state, index, "consistency", consistency)?;
        }
        Ok(())
    }

    /// The bundle from the old server to the new one: used in place when the
    /// new server already sees the same bundle (shared storage), else sent.
    fn transfer(
        &self,
        state: &mut RunState,
        index: usize,
        events: EventSink<'_>,
        cancel: &Cancel,
    ) -> (Result<()>, Vec<Recorded>) {
        let command = transfer_command(&self.recorded.settings, &self.settings.bundle);
        let outcome = self.transfer_inner(state, index, events, cancel);
        let recorded = Recorded {
            operation: Operation::Tool { command },
            outcome: Some(match &outcome {
                Ok(()) => OpOutcome::Ok,
                Err(error) => OpOutcome::Failed {
                    kind: error.kind().as_str().to_owned(),
                },
            }),
        };
        (outcome, vec![recorded])
    }

    fn transfer_inner(
        &self,
        state: &mut RunState,
        index: usize,
        events: EventSink<'_>,
        cancel: &Cancel,
    ) -> Result<()> {
        let bundle = &self.settings.bundle;
        let manifest = format!("{bundle}/manifest.json");
        let old_manifest = self
            .servers
            .old
            .executor()
            .read_file(&manifest)?
            .ok_or_else(|| Error::CheckFailed {
                what: "finding the bundle on the old server".to_owned(),
                details: format!(
                    "{manifest} is missing there; the backup step made it: rerun to make it again"
                ),
            })?;
        let old_hash = blake3::hash(&old_manifest).to_hex().to_string();
        if let Some(there) = self.servers.new.executor().read_file(&manifest)? {
            if blake3::hash(&there).to_hex().as_str() == old_hash {
                events(&Event::Note {
                    text: format!(
                        "the new server already sees the same bundle at {bundle} (the same \
                         manifest, BLAKE3 {}…): used in place",
                        &old_hash[..16]
                    ),
                });
                self.remember(state, index, "route", "in_place".to_owned())?;
                return Ok(());
            }
        }
        // The receiver makes the bundle folder, not its parents.
        self.servers
            .new
            .executor()
            .create_dir_all(&self.recorded.settings.bundle_dir)?;
        let request = TransferRequest {
            from: self.servers.old.bundle_end(bundle),
            to: self.servers.new.bundle_end(bundle),
            route: self.recorded.settings.route,
            direct: (!self.recorded.settings.new.is_local()).then(|| DirectSsh {
                destination: self.recorded.settings.new.destination.clone(),
                port: self.recorded.settings.new.port,
                options: self.recorded.settings.direct_ssh_options.clone(),
            }),
        };
        let report = transfer_bundle(
            &request,
            &mut |progress: &TransferProgress| {
                events(&Event::Transfer {
                    bytes_done: progress.bytes_done,
                    bytes_total: progress.bytes_total,
                    files_done: progress.files_done,
                    files_total: progress.files_total,
                    seconds: progress.seconds,
                });
            },
            cancel,
        )?;
        // The direct route reaches the new server by the old one's ssh, which
        // may name another machine: the bundle must be where this run looks.
        let arrived = self
            .servers
            .new
            .executor()
            .read_file(&manifest)?
            .map(|bytes| blake3::hash(&bytes).to_hex().to_string());
        if arrived.as_deref() != Some(old_hash.as_str()) {
            return Err(Error::CheckFailed {
                what: format!("finding the sent bundle on the new server ({manifest})"),
                details: format!(
                    "it is {} there after the transfer ({}): the old server's ssh reached \
                     another machine by that name; rerun with --route through-here, or give \
                     --direct-ssh-option HostName=<the new server's address>",
                    if arrived.is_some() {
                        "another"
                    } else {
                        "missing"
                    },
                    report.route_reason
                ),
            });
        }
        if report.manifest_blake3 != old_hash {
            return Err(Error::SourceChanged {
                path: PathBuf::from(&manifest),
                details: "the bundle's manifest changed on the old server during the transfer; \
                          rerun: the transfer resumes and checks every file again"
                    .to_owned(),
            });
        }
        events(&Event::Note {
            text: format!(
                "sent {} of {} files ({} MiB) in {:.1}s, {}: {}",
                report.sent_files,
                report.files,
                report.sent_bytes / (1 << 20),
                report.seconds,
                report.route_taken.as_str(),
                report.route_reason
            ),
        });
        self.remember(
            state,
            index,
            "route",
            report.route_taken.as_str().to_owned(),
        )?;
        self.remember(state, index, "route_reason", report.route_reason)
    }

    /// The old server's live database against the bundle: what the new
    /// server will not have.
    fn drift_old(&self, state: &mut RunState, index: usize, events: EventSink<'_>) -> Result<()> {
        let report = self
            .old
            .tool(&ToolAction::Drift {
                bundle: self.settings.bundle.clone(),
                instance: self.settings.instance.clone(),
                family: self.recorded.old_family,
                deep: false,
            })?
            .drift()?;
        let Some(report) = report else {
            return Ok(());
        };
        let summary = drift_summary(&report);
        events(&Event::Note {
            text: summary.clone(),
        });
        self.remember(state, index, "drift", summary)?;
        *self.drift.borrow_mut() = Some(report);
        Ok(())
    }
}

/// One line on what the old server wrote after the backup.
pub fn drift_summary(report: &DriftReport) -> String {
    let (changed, added, removed) = (
        report.changed.len(),
        report.added.len(),
        report.removed.len(),
    );
    if changed + added + removed == 0 {
        "the old server's database is as in the bundle: nothing was written after the backup"
            .to_owned()
    } else {
        format!(
            "the old server's database took writes after the backup: {changed} files changed, \
             {added} added, {removed} removed; the new server does not have them (the cut-over \
             must account for them)"
        )
    }
}

/// The transfer step as the command that does the same by hand (used in
/// place instead when the new server already sees the same bundle).
fn transfer_command(two: &TwoServerSettings, bundle: &str) -> String {
    let quote = crate::executor::shell_quote;
    let route = match two.route {
        Route::Auto => "auto",
        Route::Direct => "direct",
        Route::ThroughHere => "through-here",
    };
    let mut command = format!(
        "cmw-upgrade bundle transfer --from {} --to {} --route {route}",
        quote(&format!("{}:{bundle}", transfer_side(&two.old))),
        quote(&format!("{}:{bundle}", transfer_side(&two.new))),
    );
    for option in &two.direct_ssh_options {
        command.push_str(&format!(" --direct-ssh-option {}", quote(option)));
    }
    command
}

/// A server as `bundle transfer` names it.
fn transfer_side(spec: &ServerSpec) -> String {
    if spec.is_local() {
        "local".to_owned()
    } else {
        format!("{}:{}", spec.destination, spec.port)
    }
}

/// The bundle folder of a new run.
fn bundle_of(two: &TwoServerSettings, instance: &InstanceName) -> String {
    format!(
        "{}/{instance}-{}",
        two.bundle_dir.trim_end_matches('/'),
        utc_stamp(std::time::SystemTime::now())
    )
}

/// The recorded run of `settings.instance` this call resumes, or `None` to
/// start a new one; a run with other settings or servers is refused.
fn resumable(
    store: &dyn Executor,
    two: &TwoServerSettings,
    settings: &UpgradeSettings,
) -> Result<Option<RunState>> {
    let Some(state) = RunState::load(store, &settings.instance)? else {
        return Ok(None);
    };
    let nothing_to_resume = state
        .steps
        .iter()
        .all(|step| matches!(step.status, StepStatus::Pending | StepStatus::RolledBack));
    if nothing_to_resume {
        return Ok(None);
    }
    let Some(recorded) = &state.servers else {
        return Err(Error::StateConflict {
            details: format!(
                "a run of {} made on this machine without --old/--new is recorded here; finish \
                 it with `cmw-upgrade run`, or undo it with: {}",
                settings.instance,
                rollback_command(&settings.instance)
            ),
        });
    };
    let mut differing = Vec::new();
    for (label, was, now) in [
        (OLD, &recorded.settings.old, &two.old),
        (NEW, &recorded.settings.new, &two.new),
    ] {
        if !was.same_server(now) {
            differing.push(format!(
                "{label}: {} recorded, {} given",
                was.display(),
                now.display()
            ));
        }
    }
    if recorded.settings.bundle_dir != two.bundle_dir {
        differing.push(format!(
            "bundle dir: {} recorded, {} given",
            recorded.settings.bundle_dir, two.bundle_dir
        ));
    }
    if let Some(saved) = &state.settings {
        // The bundle's name was made when the run started; the rest must match.
        let mut given = settings.clone();
        given.bundle = saved.bundle.clone();
        given.family = saved.family;
        differing.extend(saved.differences(&given));
    }
    if !differing.is_empty() {
        return Err(Error::StateConflict {
            details: format!(
                "a run of {} with other settings is in progress ({}); resume it with the same \
                 options, or undo it with: {}",
                settings.instance,
                differing.join("; "),
                rollback_command(&settings.instance)
            ),
        });
    }
    Ok(Some(state))
}

/// A run ready to start or resume: its state (not saved yet for a new
/// run) and, for a new run, what the preflight found.
#[derive(Debug)]
pub struct PreparedRun {
    state: RunState,
    /// The preflight of a new run; `None` when a recorded run resumes.
    pub preflight: Option<TwoServerPreflight>,
}

impl PreparedRun {
    /// Whether a recorded run resumes (its steps done stay done).
    pub fn resumes(&self) -> bool {
        self.preflight.is_none()
    }
}

/// Reads the recorded run to resume, or runs the preflight of both servers
/// for a new one. Changes nothing and records nothing, so a caller may take
/// its locks only once this passed.
///
/// # Errors
/// The preflight's [`Error::CheckFailed`]; a run recorded with other
/// settings or servers ([`Error::StateConflict`]).
pub fn prepare_two_servers(
    servers: &TwoServerRun<'_>,
    two: &TwoServerSettings,
    given: &UpgradeSettings,
) -> Result<PreparedRun> {
    if let Some(state) = resumable(servers.store, two, given)? {
        return Ok(PreparedRun {
            state,
            preflight: None,
        });
    }
    let (report, mut settings, old_family) = preflight_both(servers.old, servers.new, two, given)?;
    settings.bundle = bundle_of(two, &settings.instance);
    let mut state = RunState::new(&settings.instance, &two_server_step_names());
    state.settings = Some(settings);
    state.servers = Some(RecordedServers {
        settings: two.clone(),
        old_family,
    });
    Ok(PreparedRun {
        state,
        preflight: Some(report),
    })
}

/// Runs (or resumes) the whole upgrade from the control point: every step
/// not done, each on its server, with the state saved through
/// `servers.store` around each. Take the control point's lock between
/// [`prepare_two_servers`] and this.
///
/// # Errors
/// [`Error::StateConflict`] when another run was recorded since the
/// preparation; failures to save the state. A failed step is a report with
/// outcome `failed`.
pub fn run_two_servers(
    servers: &TwoServerRun<'_>,
    prepared: PreparedRun,
    two: &TwoServerSettings,
    given: &UpgradeSettings,
    events: EventSink<'_>,
    cancel: &Cancel,
) -> Result<TwoServerReport> {
    let PreparedRun {
        mut state,
        preflight,
    } = prepared;
    // The caller took the locks after the preparation: what is recorded now
    // must be what was prepared from (no other run slipped in between).
    let now = RunState::load(servers.store, &given.instance)?;
    let unchanged = match (&preflight, &now) {
        // Prepared as new: nothing to resume may have been recorded since.
        (Some(_), Some(now)) => now
            .steps
            .iter()
            .all(|step| matches!(step.status, StepStatus::Pending | StepStatus::RolledBack)),
        (Some(_), None) => true,
        (None, now) => now.as_ref() == Some(&state),
    };
    if !unchanged {
        return Err(Error::StateConflict {
            details: format!(
                "the run of {} recorded here changed while this one prepared (another run?); \
                 see `cmw-upgrade status --instance {}`, then run again",
                given.instance, given.instance
            ),
        });
    }
    let (Some(mut settings), Some(mut recorded)) = (state.settings.clone(), state.servers.clone())
    else {
        return Err(Error::StateConflict {
            details: "the run state has no settings or servers (written by another version); \
                      finish it with that version, or move the state file away"
                .to_owned(),
        });
    };
    // Time limits and --fix-config may change between attempts.
    settings.upgrade_timeout_seconds = given.upgrade_timeout_seconds;
    settings.health_timeout_seconds = given.health_timeout_seconds;
    settings.fix_config = given.fix_config;
    state.settings = Some(settings.clone());
    // So are how the bundle travels and what a backup may accept: the errors
    // that stop a run name these options as the way on.
    recorded.settings.route = two.route;
    recorded.settings.direct_ssh_options = two.direct_ssh_options.clone();
    recorded.settings.backup_method = two.backup_method;
    recorded.settings.accept_crash_consistent = two.accept_crash_consistent;
    state.servers = Some(recorded.clone());
    let new_recorder = Recording::new(servers.new.executor());
    let table = TwoServerSteps {
        old: Recording::new(servers.old.executor()),
        servers,
        recorded: &recorded,
        settings: &settings,
        new_steps: NewServerSteps {
            recorder: &new_recorder,
            store: servers.store,
            settings: &settings,
            server: Some(NEW.to_owned()),
        },
        drift: std::cell::RefCell::new(None),
    };
    let failed = drive(
        servers.store,
        &mut state,
        &settings.instance,
        &table,
        events,
        cancel,
    )?;
    let drift = table.drift.into_inner();
    let mut run = run_report(&settings, state, failed);
    if !failed {
        run.next = format!(
            "The new server ({}) serves the upgraded instance; the old one ({}) was only read \
             (its bundle aside). Switch DNS or the upstream proxy to the new server (lower the \
             TTL first), then check it from several networks.",
            recorded.settings.new.display(),
            recorded.settings.old.display()
        );
    }
    Ok(TwoServerReport {
        run,
        servers: recorded,
        preflight,
        drift,
    })
}

/// Undoes the new server's part of a run from a control point (the old
/// server was only read), reconnecting to the server recorded in the state.
///
/// # Errors
/// [`Error::StateConflict`] when no such run is recorded; what connecting
/// or the rollback reports.
pub fn rollback_two_servers(
    store: &dyn Executor,
    new: &Server,
    instance: &InstanceName,
    events: EventSink<'_>,
) -> Result<RollbackReport> {
    let recorder = Recording::new(new.executor());
    rollback_upgrade_on(&recorder, store, instance, Some(NEW.to_owned()), events)
}

/// The servers a recorded run from a control point names; `None` for a
/// run on one server.
///
/// # Errors
/// What loading the state reports.
pub fn recorded_servers(
    store: &dyn Executor,
    instance: &InstanceName,
) -> Result<Option<RecordedServers>> {
    Ok(RunState::load(store, instance)?.and_then(|state| state.servers))
}

/// A plan of the whole run from the control point: the preflight of both
/// servers, then every step with its server and commands. Changes nothing
/// on either server (a missing agent is still copied there, and said so).
///
/// # Errors
/// The preflight's [`Error::CheckFailed`].
pub fn plan_two_servers(
    old: &Server,
    new: &Server,
    two: &TwoServerSettings,
    settings: &UpgradeSettings,
) -> Result<TwoServerPlan> {
    let (preflight, mut settings, old_family) = preflight_both(old, new, two, settings)?;
    settings.bundle = format!(
        "{}/{}-<stamp>",
        two.bundle_dir.trim_end_matches('/'),
        settings.instance
    );
    let quote = crate::executor::shell_quote;
    let method = match two.backup_method {
        Some(BackupMethod::Copy) if two.accept_crash_consistent => {
            "--method copy --accept-crash-consistent".to_owned()
        }
        Some(BackupMethod::Copy) => "--method copy".to_owned(),
        Some(_) => "--method snapshot".to_owned(),
        None => "(a snapshot if the instance runs, else a copy)".to_owned(),
    };
    let mut steps = vec![PlannedStep {
        name: BACKUP_OLD,
        title: "On the old server: back up the database and configs (it keeps serving)",
        precondition: "the instance exists there",
        check: "the backup's own checks; every file hashed into the manifest",
        undo: "nothing: the old server keeps serving; the bundle stays",
        commands: vec![format!(
            "cmw-upgrade backup --instance {} --dest {} {method} --family {old_family}",
            settings.instance,
            quote(&settings.bundle)
        )],
        findings: Vec::new(),
        note: None,
        server: Some(OLD.to_owned()),
    }];
    steps.push(PlannedStep {
        name: TRANSFER_BUNDLE,
        title: "Bring the bundle to the new server, every file checked on arrival",
        precondition: "the bundle is complete on the old server",
        check: "every file's BLAKE3 against the manifest on arrival; the manifest last",
        undo: "nothing: the copy stays (a rerun sends only what is missing)",
        commands: vec![transfer_command(two, &settings.bundle)],
        findings: Vec::new(),
        note: None,
        server: Some(OLD_TO_NEW.to_owned()),
    });
    let recorder = Recording::new(crate::executor::DryRun::new(new.executor()));
    for mut step in plan_steps(&recorder, &settings) {
        step.server = Some(NEW.to_owned());
        // The bundle is not on the new server before the run makes and brings it.
        if step
            .note
            .as_deref()
            .is_some_and(|note| note.contains(&settings.bundle))
        {
            step.note = Some(format!(
                "reads the bundle, which {BACKUP_OLD} makes and {TRANSFER_BUNDLE} brings to \
                 {}: the run plans it in full then",
                settings.bundle
            ));
        }
        steps.push(step);
    }
    steps.push(PlannedStep {
        name: DRIFT_OLD,
        title: "On the old server: what was written after the backup (backup drift)",
        precondition: "the bundle exists there",
        check: "reports; does not fail the run",
        undo: "nothing: it only reads",
        commands: vec![format!(
            "cmw-upgrade backup drift {} --instance {} --family {old_family}",
            quote(&settings.bundle),
            settings.instance
        )],
        findings: Vec::new(),
        note: None,
        server: Some(OLD.to_owned()),
    });
    Ok(TwoServerPlan {
        instance: settings.instance.to_string(),
        old: two.old.clone(),
        new: two.new.clone(),
        preflight,
        steps,
    })
}

/// A plan of a run from a control point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TwoServerPlan {
    /// The instance.
    pub instance: String,
    /// The old server.
    pub old: ServerSpec,
    /// The new server.
    pub new: ServerSpec,
    /// What the preflight found on each.
    pub preflight: TwoServerPreflight,
    /// Every step, with its server, in order.
    pub steps: Vec<PlannedStep>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::preflight::FreeSpace;

    #[test]
    fn servers_are_read_as_ssh_reads_them() {
        let spec = ServerSpec::parse("admin@10.0.0.5:2222").unwrap();
        assert_eq!(
            (spec.destination.as_str(), spec.port),
            ("admin@10.0.0.5", 2222)
        );
        let spec = ServerSpec::parse("old-server").unwrap();
        assert_eq!((spec.destination.as_str(), spec.port), ("old-server", 22));
        let spec = ServerSpec::parse("root@[fe80::1]:22").unwrap();
        assert_eq!(spec.destination, "root@fe80::1");
        let spec = ServerSpec::parse("[::1]").unwrap();
        assert_eq!((spec.destination.as_str(), spec.port), ("::1", 22));
        assert!(ServerSpec::parse("local").unwrap().is_local());
        assert!(ServerSpec::parse("localhost").unwrap().is_local());
        assert_eq!(
            ServerSpec::parse("local").unwrap().display(),
            "this machine"
        );
        for bad in [
            "",
            "-oProxyCommand=x",
            "host name",
            "@host",
            "user@",
            "host:0",
            "host:65536",
            "host:ssh",
            "[::1",
            "[::1]x",
        ] {
            let error = ServerSpec::parse(bad).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::BadRequest, "{bad:?}");
            assert!(error.to_string().contains("[user@]host[:port]"), "{error}");
        }
    }

    #[test]
    fn space_is_summed_per_file_system() {
        let mut report = preflight(
            &crate::executor::DryRun::new(LocalExecutor::new("/nonexistent-root")),
            "test",
            &PreflightRequest::default(),
        );
        report.checks.clear();
        report.free_space = vec![
            FreeSpace {
                folder: "/a".into(),
                measured: "/a".into(),
                available_bytes: 10 << 20,
                mount: "/".into(),
            },
            FreeSpace {
                folder: "/b".into(),
                measured: "/b".into(),
                available_bytes: 10 << 20,
                mount: "/".into(),
            },
            FreeSpace {
                folder: "/c".into(),
                measured: "/c".into(),
                available_bytes: 100 << 20,
                mount: "/data".into(),
            },
        ];
        check_space(
            &mut report,
            &[
                ("/a", 6 << 20, "one".into()),
                ("/b", 6 << 20, "two".into()),
                ("/c", 6 << 20, "three".into()),
            ],
        );
        assert_eq!(report.checks.len(), 2);
        let root = &report.checks[0];
        assert!(!root.ok, "6 + 6 MiB do not fit in 10 on one file system");
        assert_eq!(
            root.detail,
            "/: 12 MiB needed (one 6 MiB in /a + two 6 MiB in /b), 10 MiB free"
        );
        assert!(root.fix.is_some());
        assert!(report.checks[1].ok);
    }

    #[test]
    fn drift_is_summed_up_in_a_line() {
        let mut report = DriftReport {
            database: PathBuf::from("/var/lib/comindware/prod/Database"),
            deep: false,
            changed: Vec::new(),
            added: Vec::new(),
            removed: Vec::new(),
        };
        assert!(drift_summary(&report).contains("nothing was written after the backup"));
        report.changed.push("db/node/part-1.bin".into());
        report.added.push("db/node/part-2.bin".into());
        let line = drift_summary(&report);
        assert!(
            line.contains("1 files changed, 1 added, 0 removed"),
            "{line}"
        );
    }

    #[test]
    fn step_names_put_the_old_servers_steps_around_the_new_ones() {
        let names = two_server_step_names();
        assert_eq!(names[..2], [BACKUP_OLD, TRANSFER_BUNDLE]);
        assert_eq!(names.last(), Some(&DRIFT_OLD));
        assert_eq!(names.len(), step_names().len() + 3);
    }
}
