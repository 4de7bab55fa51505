//! The cut-over: traffic moves from the old server to the new one, with
//! zero failed requests, and back.
//!
//! Today one method exists, [`haproxy`]'s runtime API: the new server is set
//! `ready` and must be UP, then the old one `drain`s (no new traffic; open
//! requests finish), and goes to `maint` when its sessions are done or the
//! drain window is over. Measured on loopback, this order lost no request
//! in 30 switches under keep-alive, close, POST and slow load.
//!
//! Every change is data first ([`Step`]): [`plan`] lists the steps an
//! [`apply`] or [`revert`] would run, from the proxy's current state, and
//! changes nothing. Before the first change, the servers' states (and the
//! config's `disabled` flags) are saved in `/var/lib/cmw-upgrade/<instance>/cutover.json`
//! through the executor, so [`revert`] restores exactly that, also after a
//! crash. With a config file, the switch is also written into it
//! ([`haproxy_config`]), so a reload or restart keeps it.
//!
//! The [`dns`] method moves the name clients use instead: signed RFC 2136
//! updates to the zone's primary, the TTL lowered beforehand and restored after.
//!
//! The [`nginx`] method rewrites the proxy's site: made resolver-driven once
//! (then the switch is a DNS change, no reload), or the address swapped and
//! nginx reloaded (keep-alive clients may see resets).
//!
//! Sits above the executor; knows nothing of the upgrade procedure.

pub mod before_switch;
pub mod dns;
pub mod dns_key;
pub mod dns_wire;
pub mod haproxy;
pub mod haproxy_config;
pub mod haproxy_prepare;
pub mod haproxy_state;
pub mod nginx;
pub mod nginx_site;
pub mod old_site;
pub mod probe;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::executor::{shell_quote, CommandSpec, Executor, LockGuard, ToolAction};
use crate::instance::InstanceName;
use haproxy::{AdminState, Runtime, ServerState};

/// Where the proxy is and which servers switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaproxyTarget {
    /// Server path of the admin socket.
    pub socket: String,
    /// The backend holding both servers.
    pub backend: String,
    /// The server traffic leaves.
    pub old_server: String,
    /// The server traffic goes to.
    pub new_server: String,
    /// The config file to keep in step (server path), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

/// What a cut-over needs.
#[derive(Debug, Clone)]
pub struct CutoverOptions {
    /// The instance (names the saved state's folder).
    pub instance: InstanceName,
    /// The proxy and servers.
    pub target: HaproxyTarget,
    /// The longest a draining server keeps its open sessions before `maint`.
    pub drain: Duration,
    /// The longest a server set `ready` may take to be UP (health checks).
    pub up_limit: Duration,
    /// A stamp for file names (`20261128T113000Z`).
    pub stamp: String,
}

/// The saved state's server path for an instance.
pub fn saved_state_path(instance: &InstanceName) -> String {
    format!("/var/lib/cmw-upgrade/{}/cutover.json", instance.as_str())
}

/// What was there before the first change: what [`revert`] restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// The format of this file.
    pub format: u32,
    /// `haproxy`.
    pub method: String,
    /// When it was saved (UTC stamp).
    pub saved_at: String,
    /// The proxy and servers.
    pub target: HaproxyTarget,
    /// The old and new servers as they were.
    pub servers: Vec<ServerState>,
    /// The config's `disabled` flags of the two servers as they were, when a config is kept in step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config_disabled: BTreeMap<String, bool>,
}

const SAVED_FORMAT: u32 = 1;

/// One change (or check) of a cut-over, in the order it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// A TCP connection from the proxy's host to a server's address.
    CheckReachable {
        /// The server.
        server: String,
        /// Host and port.
        host: String,
        /// The port.
        port: u16,
    },
    /// The config as it would be written must pass `haproxy -c`: checked
    /// before the first change, so a config problem never stops a switch half-way.
    CheckConfig {
        /// Server path.
        path: String,
        /// Each server's flag.
        disabled: BTreeMap<String, bool>,
    },
    /// Save the state before any change.
    SaveState {
        /// Server path.
        path: String,
    },
    /// `set server be/srv state ...`.
    SetState {
        /// The server.
        server: String,
        /// The state.
        state: AdminState,
        /// The runtime API command.
        command: String,
    },
    /// Wait until the server is UP and ready.
    WaitUp {
        /// The server.
        server: String,
    },
    /// Wait until the draining servers have no session, at most the window.
    Drain {
        /// The servers.
        servers: Vec<String>,
        /// The window, in seconds.
        seconds: u64,
    },
    /// Write the servers' `disabled` flags into the config (checked with `haproxy -c`).
    PersistConfig {
        /// Server path.
        path: String,
        /// Each server's flag.
        disabled: BTreeMap<String, bool>,
    },
    /// Write `show servers state` into the config's server-state file ([`haproxy_state`]).
    WriteServerState {
        /// Server path.
        path: String,
    },
}

impl Step {
    /// The step as a plan line.
    pub fn display(&self, socket: &str) -> String {
        match self {
            Step::CheckReachable { server, host, port } => {
                format!("check {server} ({host}:{port}) takes TCP connections from the proxy's host")
            }
            Step::CheckConfig { path, .. } => format!(
                "check that {path} with the new flags passes `haproxy -c` (in a temporary copy beside it)"
            ),
            Step::SaveState { path } => format!("save the servers' state to {path}"),
            Step::SetState { command, .. } => {
                format!("echo {} | socat stdio {}", shell_quote(command), shell_quote(socket))
            }
            Step::WaitUp { server } => format!("wait until {server} is UP and ready"),
            Step::Drain { servers, seconds } => format!(
                "wait until {} has no session (at most {seconds}s)",
                servers.join(", ")
            ),
            Step::PersistConfig { path, disabled } => format!(
                "write {path}: {}; `haproxy -c` first, original kept as {path}.cmw-upgrade.<time>.bak",
                disabled
                    .iter()
                    .map(|(server, &off)| format!(
                        "server {server} {}",
                        if off { "disabled" } else { "enabled" }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::WriteServerState { path } => format!(
                "write `show servers state` to {path} (the config's server-state file), so a \
                 reload starts the servers as they are now"
            ),
        }
    }
}

/// How a step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step.
    #[serde(flatten)]
    pub step: Step,
    /// The step as a plan line.
    pub display: String,
    /// `planned`, `done` or `unchanged` (already so).
    pub outcome: String,
    /// What it found (sessions left, the backup's path, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One check of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// What is checked.
    pub check: String,
    /// Whether it holds.
    pub ok: bool,
    /// What was found.
    pub found: String,
}

/// What a cut-over command did (or would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoverReport {
    /// `plan`, `apply`, `verify` or `revert`.
    pub action: String,
    /// `haproxy`.
    pub method: String,
    /// Whether everything holds (verify) or went through.
    pub ok: bool,
    /// Whether anything was changed.
    pub changed: bool,
    /// The proxy and servers.
    pub target: HaproxyTarget,
    /// The saved state's server path.
    pub saved_state: String,
    /// The two servers before.
    pub before: Vec<ServerState>,
    /// The two servers after (a plan: as now).
    pub after: Vec<ServerState>,
    /// The steps, in order.
    pub steps: Vec<StepReport>,
    /// The checks (verify).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
}

/// The rows of the two servers, or an error naming the servers there.
///
/// # Errors
/// [`Error::BadInput`] when a name is not a server of the backend, or both are the same.
pub fn pick_servers<'a>(
    rows: &'a [ServerState],
    target: &HaproxyTarget,
) -> Result<(&'a ServerState, &'a ServerState)> {
    if target.old_server == target.new_server {
        return Err(Error::BadInput {
            details: format!(
                "--old-server and --new-server both name {:?}; name the server traffic leaves and the one it goes to",
                target.old_server
            ),
        });
    }
    let find = |name: &str, option: &str| {
        rows.iter()
            .find(|row| row.name == name)
            .ok_or_else(|| Error::BadInput {
                details: format!(
                    "backend {} has no server {name:?}; its servers: {}; pass one of them as \
                 {option}, or add it with `cmw-upgrade cutover prepare --method haproxy \
                 --haproxy-config PATH --{} HOST:PORT ...` (disabled, one reload)",
                    target.backend,
                    if rows.is_empty() {
                        "none".to_owned()
                    } else {
                        rows.iter()
                            .map(|row| row.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    if option == "--old-server" {
                        "old"
                    } else {
                        "new"
                    }
                ),
            })
    };
    Ok((
        find(&target.old_server, "--old-server")?,
        find(&target.new_server, "--new-server")?,
    ))
}

/// The state changes that bring each server to its wanted state with no
/// failed request: servers that must serve are set ready and must be UP
/// first; then the others drain together (one window), and those meant for
/// maintenance go there last. Pure.
pub fn plan_moves(
    rows: &[ServerState],
    backend: &str,
    wanted: &[(String, AdminState)],
    drain: Duration,
) -> Vec<Step> {
    let current = |name: &str| {
        rows.iter()
            .find(|row| row.name == name)
            .map(|row| row.admin)
    };
    let mut steps = Vec::new();
    for (server, state) in wanted
        .iter()
        .filter(|(_, state)| *state == AdminState::Ready)
    {
        if current(server) != Some(AdminState::Ready) {
            steps.push(set_step(backend, server, *state));
        }
        steps.push(Step::WaitUp {
            server: server.clone(),
        });
    }
    let leaving: Vec<&(String, AdminState)> = wanted
        .iter()
        .filter(|(server, state)| *state != AdminState::Ready && current(server) != Some(*state))
        .collect();
    for (server, _) in &leaving {
        if current(server) == Some(AdminState::Ready) {
            steps.push(set_step(backend, server, AdminState::Drain));
        }
    }
    let draining: Vec<String> = leaving
        .iter()
        .filter(|(server, _)| current(server) != Some(AdminState::Maint))
        .map(|(server, _)| server.clone())
        .collect();
    if !draining.is_empty() {
        steps.push(Step::Drain {
            servers: draining,
            seconds: drain.as_secs(),
        });
    }
    for (server, state) in &leaving {
        if *state == AdminState::Maint {
            steps.push(set_step(backend, server, AdminState::Maint));
        }
    }
    steps
}

fn set_step(backend: &str, server: &str, state: AdminState) -> Step {
    Step::SetState {
        server: server.to_owned(),
        state,
        command: haproxy::set_state_command(backend, server, state),
    }
}

/// The steps of an apply from the proxy's current rows. Pure.
///
/// # Errors
/// [`Error::BadInput`] for a server the backend does not have.
pub fn plan_apply(
    rows: &[ServerState],
    options: &CutoverOptions,
    save_state: bool,
) -> Result<Vec<Step>> {
    let target = &options.target;
    let (_, new) = pick_servers(rows, target)?;
    let mut steps = Vec::new();
    if let Some(port) = new.port {
        steps.push(Step::CheckReachable {
            server: new.name.clone(),
            host: new.address.clone(),
            port,
        });
    }
    let disabled = BTreeMap::from([
        (target.new_server.clone(), false),
        (target.old_server.clone(), true),
    ]);
    if let Some(config) = &target.config {
        steps.push(Step::CheckConfig {
            path: config.clone(),
            disabled: disabled.clone(),
        });
    }
    if save_state {
        steps.push(Step::SaveState {
            path: saved_state_path(&options.instance),
        });
    }
    let wanted = [
        (target.new_server.clone(), AdminState::Ready),
        (target.old_server.clone(), AdminState::Maint),
    ];
    steps.extend(plan_moves(rows, &target.backend, &wanted, options.drain));
    if let Some(config) = &target.config {
        steps.push(Step::PersistConfig {
            path: config.clone(),
            disabled,
        });
    }
    Ok(steps)
}

/// The steps of a revert to `saved` from the proxy's current rows. Pure.
///
/// # Errors
/// [`Error::BadInput`] for a saved server the backend no longer has.
pub fn plan_revert(rows: &[ServerState], saved: &SavedState, drain: Duration) -> Result<Vec<Step>> {
    let target = &saved.target;
    pick_servers(rows, target)?;
    let was = |name: &str| {
        saved
            .servers
            .iter()
            .find(|row| row.name == name)
            .map(|row| row.admin)
            .ok_or_else(|| Error::StateConflict {
                details: format!(
                    "the saved cut-over state has no server {name:?}; it is damaged: set the \
                     servers by hand (`set server {}/<name> state ready|maint`)",
                    target.backend
                ),
            })
    };
    let wanted = [
        (target.old_server.clone(), was(&target.old_server)?),
        (target.new_server.clone(), was(&target.new_server)?),
    ];
    let mut steps = Vec::new();
    let config = target
        .config
        .as_ref()
        .filter(|_| !saved.config_disabled.is_empty());
    if let Some(config) = config {
        steps.push(Step::CheckConfig {
            path: config.clone(),
            disabled: saved.config_disabled.clone(),
        });
    }
    steps.extend(plan_moves(rows, &target.backend, &wanted, drain));
    if let Some(config) = config {
        steps.push(Step::PersistConfig {
            path: config.clone(),
            disabled: saved.config_disabled.clone(),
        });
    }
    Ok(steps)
}

/// Reads a method's saved state at `path`; `None` when there is none.
/// `what` names it and `by_hand` says what to do when it does not read.
///
/// # Errors
/// [`Error::StateConflict`] when it does not read.
pub(crate) fn read_saved<T: serde::de::DeserializeOwned>(
    executor: &dyn Executor,
    path: &str,
    what: &str,
    by_hand: &str,
) -> Result<Option<T>> {
    let Some(bytes) = executor.read_file(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| Error::StateConflict {
            details: format!(
                "{path} does not read as a saved {what} state ({error}); move it aside and \
                 {by_hand}"
            ),
        })
}

/// Writes a method's saved state at `path` (0600, atomically, its folder
/// made first), through the executor.
///
/// # Errors
/// What writing reports.
pub(crate) fn write_saved<T: Serialize>(
    executor: &dyn Executor,
    path: &str,
    saved: &T,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(saved).map_err(|error| Error::Internal {
        details: format!("the saved state does not serialize: {error}"),
    })?;
    let folder = path.rsplit_once('/').map_or("/", |(folder, _)| folder);
    executor.create_dir_all(folder)?;
    executor.write_file(path, &json, 0o600)
}

/// Reads the saved state; `None` when there is none.
///
/// # Errors
/// [`Error::StateConflict`] when it does not read.
pub fn read_saved_state(
    executor: &dyn Executor,
    instance: &InstanceName,
) -> Result<Option<SavedState>> {
    read_saved(
        executor,
        &saved_state_path(instance),
        "cut-over",
        "set the servers by hand with the runtime API",
    )
}

fn two_rows(rows: &[ServerState], target: &HaproxyTarget) -> Vec<ServerState> {
    rows.iter()
        .filter(|row| row.name == target.old_server || row.name == target.new_server)
        .cloned()
        .collect()
}

fn report(action: &str, options: &CutoverOptions, before: Vec<ServerState>) -> CutoverReport {
    CutoverReport {
        action: action.to_owned(),
        method: "haproxy".to_owned(),
        ok: true,
        changed: false,
        target: options.target.clone(),
        saved_state: saved_state_path(&options.instance),
        after: before.clone(),
        before,
        steps: Vec::new(),
        checks: Vec::new(),
    }
}

/// The steps an apply would run now; changes nothing.
///
/// # Errors
/// [`Error::BadInput`] for a backend or server that is not there;
/// [`Error::CommandFailed`] when the socket does not answer.
pub fn plan(executor: &dyn Executor, options: &CutoverOptions) -> Result<CutoverReport> {
    let runtime = Runtime::new(executor, options.target.socket.clone());
    let rows = runtime.servers_state(&options.target.backend)?;
    let saved = read_saved_state(executor, &options.instance)?;
    let mut steps = plan_apply(&rows, options, saved.is_none())?;
    steps.extend(haproxy_state::state_step(executor, &options.target)?);
    let mut report = report("plan", options, two_rows(&rows, &options.target));
    report.steps = steps
        .into_iter()
        .map(|step| StepReport {
            display: step.display(&options.target.socket),
            step,
            outcome: "planned".to_owned(),
            detail: None,
        })
        .collect();
    Ok(report)
}

/// Switches traffic to the new server (see the module's documentation).
///
/// # Errors
/// [`Error::BadInput`] for names that are not there; [`Error::CheckFailed`]
/// when the new server is not reachable (nothing changed);
/// [`Error::StateConflict`] when a saved state is for other servers;
/// [`Error::StepFailed`] when a step fails after a change (the message says what serves).
pub fn apply(executor: &dyn Executor, options: &CutoverOptions) -> Result<CutoverReport> {
    let _lock = lock(executor, &options.instance)?;
    let runtime = Runtime::new(executor, options.target.socket.clone());
    let rows = runtime.servers_state(&options.target.backend)?;
    let saved = read_saved_state(executor, &options.instance)?;
    if let Some(saved) = &saved {
        if !same_servers(&saved.target, &options.target) {
            return Err(Error::StateConflict {
                details: format!(
                    "{} holds a cut-over of backend {} ({} -> {}) not yet reverted; revert it \
                     first (`cmw-upgrade cutover revert --instance {} ...` with its names)",
                    saved_state_path(&options.instance),
                    saved.target.backend,
                    saved.target.old_server,
                    saved.target.new_server,
                    options.instance.as_str()
                ),
            });
        }
    }
    let mut steps = plan_apply(&rows, options, saved.is_none())?;
    steps.extend(haproxy_state::state_step(executor, &options.target)?);
    let mut report = report("apply", options, two_rows(&rows, &options.target));
    run_steps(executor, &runtime, options, &rows, steps, &mut report)?;
    report.after = two_rows(
        &runtime.servers_state(&options.target.backend)?,
        &options.target,
    );
    Ok(report)
}

/// Brings back what was saved before the apply, in the same zero-error order.
///
/// # Errors
/// [`Error::StateConflict`] when there is no saved state or it is for other
/// servers; as [`apply`] otherwise.
pub fn revert(executor: &dyn Executor, options: &CutoverOptions) -> Result<CutoverReport> {
    let _lock = lock(executor, &options.instance)?;
    let path = saved_state_path(&options.instance);
    let saved =
        read_saved_state(executor, &options.instance)?.ok_or_else(|| Error::StateConflict {
            details: format!(
            "no saved cut-over state at {path}: nothing was applied for {} (or it was reverted \
             already); `cmw-upgrade cutover plan` shows the servers now",
            options.instance.as_str()
        ),
        })?;
    if !same_servers(&saved.target, &options.target) {
        return Err(Error::StateConflict {
            details: format!(
                "{path} saved a cut-over of backend {} ({} -> {}); revert with those names",
                saved.target.backend, saved.target.old_server, saved.target.new_server
            ),
        });
    }
    let runtime = Runtime::new(executor, options.target.socket.clone());
    let rows = runtime.servers_state(&options.target.backend)?;
    let mut saved_target = saved.clone();
    // The config given now wins: it is where the admin keeps it today.
    saved_target.target.config = options
        .target
        .config
        .clone()
        .or(saved.target.config.clone());
    let mut steps = plan_revert(&rows, &saved_target, options.drain)?;
    steps.extend(haproxy_state::state_step(executor, &saved_target.target)?);
    let mut report = report("revert", options, two_rows(&rows, &options.target));
    run_steps(executor, &runtime, options, &rows, steps, &mut report)?;
    // Done: the saved state is kept beside, no longer in the way of the next apply.
    let kept = format!(
        "/var/lib/cmw-upgrade/{}/cutover.reverted.{}.json",
        options.instance.as_str(),
        options.stamp
    );
    executor.rename(&path, &kept)?;
    report.changed = true;
    report.after = two_rows(
        &runtime.servers_state(&options.target.backend)?,
        &options.target,
    );
    Ok(report)
}

/// Whether the new server serves alone: UP and ready, the old one in
/// maintenance with no session left (and the config in step, when given).
///
/// # Errors
/// As [`plan`].
pub fn verify(executor: &dyn Executor, options: &CutoverOptions) -> Result<CutoverReport> {
    let target = &options.target;
    let runtime = Runtime::new(executor, target.socket.clone());
    let rows = runtime.servers_state(&target.backend)?;
    let (old, new) = pick_servers(&rows, target)?;
    let sessions = runtime.current_sessions(&target.backend)?;
    let old_sessions = sessions.get(&old.name).copied().unwrap_or(0);
    let mut checks = vec![
        CheckResult {
            check: format!("{} is UP and ready", new.name),
            ok: new.serves(),
            found: format!("{:?}, {}", new.operational, new.admin).to_lowercase(),
        },
        CheckResult {
            check: format!("{} is in maintenance", old.name),
            ok: old.admin == AdminState::Maint,
            found: old.admin.to_string(),
        },
        CheckResult {
            check: format!("{} has no session", old.name),
            ok: old_sessions == 0,
            found: format!("{old_sessions} current sessions"),
        },
    ];
    if let Some(config) = &target.config {
        let flags = config_flags(executor, config, &target.backend)?;
        let in_step = flags.get(&new.name) == Some(&false) && flags.get(&old.name) == Some(&true);
        checks.push(CheckResult {
            check: format!(
                "{config} starts {} enabled and {} disabled",
                new.name, old.name
            ),
            ok: in_step,
            found: flags
                .iter()
                .map(|(server, &off)| {
                    format!("{server} {}", if off { "disabled" } else { "enabled" })
                })
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut report = report("verify", options, two_rows(&rows, target));
    report.ok = checks.iter().all(|check| check.ok);
    report.checks = checks;
    Ok(report)
}

/// One apply or revert at a time per instance: two admins switching the
/// same backend would each save the other's half-done state.
fn lock<'a>(executor: &'a dyn Executor, instance: &InstanceName) -> Result<LockGuard<'a>> {
    let folder = format!("/var/lib/cmw-upgrade/{}", instance.as_str());
    executor.create_dir_all(&folder)?;
    executor.lock(&format!("{folder}/cutover.lock"))
}

fn same_servers(saved: &HaproxyTarget, now: &HaproxyTarget) -> bool {
    saved.backend == now.backend
        && saved.old_server == now.old_server
        && saved.new_server == now.new_server
}

fn config_flags(
    executor: &dyn Executor,
    config: &str,
    backend: &str,
) -> Result<BTreeMap<String, bool>> {
    let text = read_config(executor, config)?;
    haproxy_config::disabled_flags(&text, backend).map_err(|details| Error::BadInput {
        details: format!("{config}: {details}"),
    })
}

fn read_config(executor: &dyn Executor, config: &str) -> Result<Vec<u8>> {
    executor.read_file(config)?.ok_or_else(|| Error::BadInput {
        details: format!("there is no HAProxy config at {config}; pass the file haproxy loads as --haproxy-config"),
    })
}

/// How often the proxy is asked while waiting.
const POLL: Duration = Duration::from_millis(200);

fn run_steps(
    executor: &dyn Executor,
    runtime: &Runtime<'_, dyn Executor + '_>,
    options: &CutoverOptions,
    rows: &[ServerState],
    steps: Vec<Step>,
    report: &mut CutoverReport,
) -> Result<()> {
    let dry = executor.is_dry_run();
    for step in steps {
        let display = step.display(runtime.socket());
        let detail = run_step(executor, runtime, options, rows, &step, dry).map_err(|error| {
            // Before the first change the error is the whole story: nothing to undo.
            if !report.changed {
                return error;
            }
            let done: Vec<String> = report
                .steps
                .iter()
                .map(|step| step.display.clone())
                .collect();
            Error::StepFailed {
                instance: options.instance.as_str().to_owned(),
                step: display.clone(),
                details: format!(
                    "{error}; done before it: [{}]; rerun the same command once fixed, or \
                     `cmw-upgrade cutover revert` to go back to the saved state",
                    done.join("; ")
                ),
            }
        })?;
        let changed = matches!(
            step,
            Step::SetState { .. } | Step::SaveState { .. } | Step::WriteServerState { .. }
        ) || (matches!(step, Step::PersistConfig { .. })
            && detail.as_deref() != Some(UNCHANGED));
        report.changed |= changed && !dry;
        report.steps.push(StepReport {
            display,
            outcome: if dry {
                "planned"
            } else if detail.as_deref() == Some(UNCHANGED) {
                "unchanged"
            } else {
                "done"
            }
            .to_owned(),
            step,
            detail,
        });
    }
    Ok(())
}

const UNCHANGED: &str = "already so";

fn run_step(
    executor: &dyn Executor,
    runtime: &Runtime<'_, dyn Executor + '_>,
    options: &CutoverOptions,
    rows: &[ServerState],
    step: &Step,
    dry: bool,
) -> Result<Option<String>> {
    let target = &options.target;
    match step {
        Step::CheckReachable { host, port, .. } => {
            let address = executor
                .tool(&ToolAction::TcpConnect {
                    host: host.clone(),
                    port: *port,
                })?
                .reachable()?;
            Ok(address.map(|address| format!("connected to {address}")))
        }
        Step::SaveState { path } => {
            let config_disabled = match &target.config {
                Some(config) => {
                    let flags = config_flags(executor, config, &target.backend)?;
                    flags
                        .into_iter()
                        .filter(|(server, _)| {
                            *server == target.old_server || *server == target.new_server
                        })
                        .collect()
                }
                None => BTreeMap::new(),
            };
            let saved = SavedState {
                format: SAVED_FORMAT,
                method: "haproxy".to_owned(),
                saved_at: options.stamp.clone(),
                target: target.clone(),
                servers: two_rows(rows, target),
                config_disabled,
            };
            write_saved(executor, path, &saved)?;
            Ok(None)
        }
        Step::SetState { server, state, .. } => {
            runtime.set_state(&target.backend, server, *state)?;
            Ok(None)
        }
        Step::WaitUp { server } => {
            if dry {
                return Ok(None);
            }
            let started = Instant::now();
            loop {
                let rows = runtime.servers_state(&target.backend)?;
                let row = rows.iter().find(|row| &row.name == server);
                if row.is_some_and(ServerState::serves) {
                    return Ok(Some(format!(
                        "UP after {} ms",
                        started.elapsed().as_millis()
                    )));
                }
                if started.elapsed() >= options.up_limit {
                    return Err(Error::CheckFailed {
                        what: format!("waiting for {server} to be UP"),
                        details: format!(
                            "after {}s it is {}; HAProxy's health check does not pass: see `show \
                             servers state {}` and the new server's site",
                            options.up_limit.as_secs(),
                            row.map_or("gone".to_owned(), |row| format!(
                                "{:?}, {}",
                                row.operational, row.admin
                            )
                            .to_lowercase()),
                            target.backend
                        ),
                    });
                }
                std::thread::sleep(POLL);
            }
        }
        Step::Drain { servers, .. } => {
            if dry {
                return Ok(None);
            }
            let started = Instant::now();
            // Two quiet polls in a row: one zero can fall between two requests
            // of a session that is still being moved.
            let mut quiet = 0;
            loop {
                let sessions = runtime.current_sessions(&target.backend)?;
                let open: u64 = servers
                    .iter()
                    .filter_map(|server| sessions.get(server))
                    .sum();
                quiet = if open == 0 { quiet + 1 } else { 0 };
                if quiet >= 2 {
                    return Ok(Some(format!(
                        "no session after {} ms",
                        started.elapsed().as_millis()
                    )));
                }
                if started.elapsed() >= options.drain {
                    return Ok(Some(format!(
                        "{open} sessions still open when the {}s window ended; maintenance lets them finish",
                        options.drain.as_secs()
                    )));
                }
                std::thread::sleep(POLL);
            }
        }
        Step::CheckConfig { path, disabled } => Ok(
            match checked_candidate(executor, options, path, disabled, false)? {
                Some(_) => Some("haproxy -c passes".to_owned()),
                None => Some(UNCHANGED.to_owned()),
            },
        ),
        Step::PersistConfig { path, disabled } => persist_config(executor, options, path, disabled),
        Step::WriteServerState { .. } => {
            haproxy_state::write_state(executor, runtime.socket(), target).map(|_| None)
        }
    }
}

/// Writes the flags into the config: candidate beside it, `haproxy -c`,
/// backup, atomic rename. Returns [`UNCHANGED`] when the flags are already so.
fn persist_config(
    executor: &dyn Executor,
    options: &CutoverOptions,
    path: &str,
    disabled: &BTreeMap<String, bool>,
) -> Result<Option<String>> {
    let Some(candidate_path) = checked_candidate(executor, options, path, disabled, true)? else {
        return Ok(Some(UNCHANGED.to_owned()));
    };
    let backup = format!("{path}.cmw-upgrade.{}.bak", options.stamp);
    if !executor.exists(&backup)? {
        executor.copy(path, &backup)?;
    }
    executor.rename(&candidate_path, path)?;
    Ok(Some(format!("original kept as {backup}")))
}

/// Writes the config with the flags as wanted beside it (same folder, same
/// mode; a name HAProxy never loads from a folder, which takes `*.cfg`) and
/// checks it with `haproxy -c`; keeps it when `keep`, for the rename.
/// `None` when the flags are already so.
fn checked_candidate(
    executor: &dyn Executor,
    options: &CutoverOptions,
    path: &str,
    disabled: &BTreeMap<String, bool>,
    keep: bool,
) -> Result<Option<String>> {
    let text = read_config(executor, path)?;
    let candidate = haproxy_config::set_disabled_flags(&text, &options.target.backend, disabled)
        .map_err(|details| Error::BadInput {
            details: format!("{path}: {details}"),
        })?;
    if candidate == text {
        return Ok(None);
    }
    let mode = file_mode(executor, path)?;
    let candidate_path = format!("{path}.cmw-upgrade.{}.candidate", options.stamp);
    executor.write_file(&candidate_path, &candidate, mode)?;
    let check = CommandSpec::new(["haproxy", "-c", "-f"])
        .path_arg(candidate_path.clone())
        .with_timeout(Duration::from_secs(60));
    let result = executor.execute(&check);
    let passed = matches!(&result, Ok(output) if output.code == Some(0));
    if !passed || !keep {
        let _ = executor.remove(&candidate_path);
    }
    let output = result?;
    if !passed {
        return Err(Error::CheckFailed {
            what: format!("`{}`", check.display()),
            details: format!(
                "{}{}; {path} was left as it is: fix what HAProxy refuses there, then rerun",
                output.stdout.trim(),
                output.stderr.trim()
            ),
        });
    }
    Ok(Some(candidate_path))
}

/// The permission bits of a file (`stat -c %a`, run on the server: the
/// rewritten config keeps them).
pub(crate) fn file_mode(executor: &dyn Executor, path: &str) -> Result<u32> {
    let command = CommandSpec::new(["stat", "-L", "-c", "%a"])
        .path_arg(path)
        .read_only();
    let output = executor.execute(&command)?;
    if executor.is_dry_run() && output.stdout.trim().is_empty() {
        return Ok(0o644);
    }
    u32::from_str_radix(output.stdout.trim(), 8).map_err(|_| Error::CommandFailed {
        command: command.display(),
        status: format!("{:?}", output.code),
        output: format!("{}{}", output.stdout, output.stderr),
        hint: "the file's mode could not be read; check that the config file exists".to_owned(),
    })
}

#[cfg(test)]
mod tests;
