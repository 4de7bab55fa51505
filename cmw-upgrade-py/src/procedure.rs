//! The upgrade procedure: its plan, and the run (long: through [`run_long_call`]).

use std::path::PathBuf;

use cmw_upgrade_core as core;
use pyo3::prelude::*;

use crate::convert::{server_path_text, to_python};
use crate::detect::{family_of_root, parse_instance};
use crate::errors::core_error;
use crate::long_call::{run_long_call, Feed};

/// The settings of a plan or run, from Python's arguments.
#[allow(clippy::too_many_arguments)]
fn upgrade_settings(
    instance: &str,
    bundle: PathBuf,
    distribution: PathBuf,
    prerequisites: PathBuf,
    root: &std::path::Path,
    port: u16,
    family: Option<&str>,
    upgrade_timeout: f64,
    health_timeout: f64,
    fix_config: bool,
) -> PyResult<core::procedure::UpgradeSettings> {
    Ok(core::procedure::UpgradeSettings {
        instance: parse_instance(instance)?,
        family: family_of_root(root, family)?,
        bundle: server_path_text("bundle", bundle)?,
        distribution: server_path_text("distribution", distribution)?,
        prerequisites: server_path_text("prerequisites", prerequisites)?,
        port,
        upgrade_timeout_seconds: upgrade_timeout.max(1.0).ceil() as u64,
        health_timeout_seconds: health_timeout.max(1.0).ceil() as u64,
        fix_config,
    })
}

/// Plans the upgrade on the (new) server under `root`, changing nothing.
///
/// Returns a list of steps, each a dict: name, title, precondition, check, undo,
/// commands (the exact commands and file operations, in order), note (why it
/// could not be planned in full now, or None). Same as `cmw-upgrade plan --json`'s steps.
#[pyfunction]
#[pyo3(signature = (instance, bundle, distribution, prerequisites, root = "/".into(), port = 80, family = None, upgrade_timeout = 7200.0, health_timeout = 300.0, fix_config = false), text_signature = "(instance, bundle, distribution, prerequisites, root = '/', port = 80, family = None, upgrade_timeout = 7200.0, health_timeout = 300.0, fix_config = False)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan<'py>(
    py: Python<'py>,
    instance: &str,
    bundle: PathBuf,
    distribution: PathBuf,
    prerequisites: PathBuf,
    root: PathBuf,
    port: u16,
    family: Option<&str>,
    upgrade_timeout: f64,
    health_timeout: f64,
    fix_config: bool,
) -> PyResult<Bound<'py, PyAny>> {
    use core::executor::{DryRun, LocalExecutor, Recording};
    let settings = upgrade_settings(
        instance,
        bundle,
        distribution,
        prerequisites,
        &root,
        port,
        family,
        upgrade_timeout,
        health_timeout,
        fix_config,
    )?;
    // A plan changes nothing (a dry run), so Ctrl-C may end the call at once.
    let steps = crate::long_call::run_read_only_call(py, move || {
        let recorder = Recording::new(DryRun::new(LocalExecutor::new(&root)));
        core::procedure::plan_upgrade(&recorder, &settings)
    })?;
    to_python(py, &steps)
}

/// Runs (or resumes) the upgrade on the (new) server under `root`.
///
/// Same as `cmw-upgrade run --json`: returns {"outcome": "upgraded"|"failed",
/// "instance", "steps": [...], "next"}; a failed step is in the report, not an
/// exception. `progress` is an optional callable taking each event as a dict
/// ({"event": "step_started"|"step_finished"|"step_skipped"|"waiting"|"note", ...}),
/// called from the calling thread while the run works with the interpreter released.
/// Raises LockedError when another run holds the instance's lock. Ctrl-C
/// (or an exception from `progress`) stops the run before its next step; the
/// steps done stay done, so the same call resumes it.
#[pyfunction]
#[pyo3(signature = (instance, bundle, distribution, prerequisites, root = "/".into(), port = 80, family = None, upgrade_timeout = 7200.0, health_timeout = 300.0, fix_config = false, progress = None), text_signature = "(instance, bundle, distribution, prerequisites, root = '/', port = 80, family = None, upgrade_timeout = 7200.0, health_timeout = 300.0, fix_config = False, progress = None)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<'py>(
    py: Python<'py>,
    instance: &str,
    bundle: PathBuf,
    distribution: PathBuf,
    prerequisites: PathBuf,
    root: PathBuf,
    port: u16,
    family: Option<&str>,
    upgrade_timeout: f64,
    health_timeout: f64,
    fix_config: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    use core::executor::{LocalExecutor, Recording};
    let settings = upgrade_settings(
        instance,
        bundle,
        distribution,
        prerequisites,
        &root,
        port,
        family,
        upgrade_timeout,
        health_timeout,
        fix_config,
    )?;
    let report = run_long_call(py, progress, Feed::Events, move |worker| {
        // Ctrl-C also stops a backup or restore inside a step between files.
        let local = LocalExecutor::new(&root).with_cancel(worker.cancel.clone());
        // A typo changes nothing, not even the lock file (as the CLI's run).
        if core::procedure::state::RunState::load(&local, &settings.instance)?.is_none() {
            core::procedure::preflight(&local, &settings)?;
        }
        let _lock = core::procedure::RunLock::acquire(&local, &settings.instance)?;
        let recorder = Recording::new(&local);
        core::procedure::run_upgrade_with_cancel(
            &recorder,
            &settings,
            &mut |event| worker.send(event),
            worker.cancel,
        )
    })?;
    to_python(py, &report)
}

/// One server of `upgrade`, with the options both share.
fn server_spec(
    argument: &str,
    text: &str,
    root: Option<String>,
    shared: &SshShared,
) -> core::Result<core::procedure::two_servers::ServerSpec> {
    let mut spec = core::procedure::two_servers::ServerSpec::parse(text).map_err(|error| {
        core::Error::BadRequest {
            details: format!("{argument}: {error}"),
        }
    })?;
    spec.identity_file = shared.identity_file.clone();
    spec.known_hosts_file = shared.known_hosts.clone();
    spec.program = shared.program.clone();
    spec.root = root;
    // This process is Python, not the cmw-upgrade binary: it has nothing to
    // copy there, so a missing or older agent is an error saying so.
    spec.provision = false;
    Ok(spec)
}

/// What reaching both servers shares.
struct SshShared {
    identity_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    program: String,
}

/// `route=` as the CLI's `--route` reads it.
fn route_of(text: &str) -> core::Result<core::executor::transfer::Route> {
    use core::executor::transfer::Route;
    match text {
        "auto" => Ok(Route::Auto),
        "direct" => Ok(Route::Direct),
        "through-here" | "through_here" => Ok(Route::ThroughHere),
        other => Err(core::Error::BadInput {
            details: format!("route={other:?}: give \"auto\", \"direct\" or \"through-here\""),
        }),
    }
}

/// `method=` as the CLI's `--method` reads it.
fn method_of(text: Option<&str>) -> core::Result<Option<core::backup::manifest::BackupMethod>> {
    use core::backup::manifest::BackupMethod;
    match text {
        None => Ok(None),
        Some("copy") => Ok(Some(BackupMethod::Copy)),
        Some("snapshot") => Ok(Some(BackupMethod::Snapshot)),
        Some(other) => Err(core::Error::BadInput {
            details: format!(
                "method={other:?}: give \"copy\", \"snapshot\", or None (a snapshot if the \
                 instance runs, else a copy)"
            ),
        }),
    }
}

/// Reaches a server, saying which on failure (as the CLI's `upgrade`).
fn connect(
    label: &str,
    spec: &core::procedure::two_servers::ServerSpec,
) -> core::Result<core::procedure::two_servers::Server> {
    core::procedure::two_servers::Server::connect(spec).map_err(|error| core::Error::CheckFailed {
        what: format!(
            "reaching the {label} server {} (nothing was changed or recorded)",
            spec.display()
        ),
        details: error.to_string(),
    })
}

/// The whole upgrade from this machine as the control point, as
/// `cmw-upgrade upgrade --old … --new …`: the old server backs up, the bundle
/// goes to the new server, the new server runs the steps, the old server's
/// drift is checked; the run state is kept here, under `state_root`.
///
/// `plan=True` returns the plan as a dict (instance, old, new, preflight,
/// steps: each with its server and commands) and changes nothing. Otherwise
/// returns the report as a dict (outcome, instance, steps with their server,
/// next, servers, preflight, drift), a failed step in it rather than raised.
/// `progress` gets the same event dicts as `run`'s, plus "transfer" events
/// (bytes_done, bytes_total, files_done, files_total, seconds) while the
/// bundle travels. Ctrl-C stops the run before its next step (a transfer at
/// its next safe point); the same call resumes it.
#[pyfunction]
#[pyo3(signature = (old, new, instance, distribution, prerequisites, port = 80, bundle_dir = "/var/lib/cmw-upgrade/bundles".into(), route = "auto", method = None, accept_crash_consistent = false, identity_file = None, known_hosts = None, remote_cmw_upgrade = "cmw-upgrade".into(), state_root = "/".into(), plan = false, progress = None, upgrade_timeout = 7200.0, health_timeout = 300.0, fix_config = false, direct_ssh_options = Vec::new(), old_root = None, new_root = None), text_signature = "(old, new, instance, distribution, prerequisites, port = 80, bundle_dir = '/var/lib/cmw-upgrade/bundles', route = 'auto', method = None, accept_crash_consistent = False, identity_file = None, known_hosts = None, remote_cmw_upgrade = 'cmw-upgrade', state_root = '/', plan = False, progress = None, upgrade_timeout = 7200.0, health_timeout = 300.0, fix_config = False, direct_ssh_options = [], old_root = None, new_root = None)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn upgrade<'py>(
    py: Python<'py>,
    old: &str,
    new: &str,
    instance: &str,
    distribution: PathBuf,
    prerequisites: PathBuf,
    port: u16,
    bundle_dir: PathBuf,
    route: &str,
    method: Option<&str>,
    accept_crash_consistent: bool,
    identity_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    remote_cmw_upgrade: PathBuf,
    state_root: PathBuf,
    plan: bool,
    progress: Option<Py<PyAny>>,
    upgrade_timeout: f64,
    health_timeout: f64,
    fix_config: bool,
    direct_ssh_options: Vec<String>,
    old_root: Option<PathBuf>,
    new_root: Option<PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    use core::procedure::two_servers::{
        plan_two_servers, prepare_two_servers, run_two_servers, Server, TwoServerRun,
        TwoServerSettings,
    };
    for option in &direct_ssh_options {
        if !option.contains('=') || option.starts_with('-') {
            return Err(core_error(core::Error::BadRequest {
                details: format!(
                    "direct_ssh_options: {option:?} is not KEY=VALUE (e.g. IdentityFile=/root/.ssh/upgrade)"
                ),
            }));
        }
    }
    let shared = SshShared {
        identity_file,
        known_hosts,
        program: server_path_text("remote_cmw_upgrade", remote_cmw_upgrade)?,
    };
    let old_root = old_root
        .map(|root| server_path_text("old_root", root))
        .transpose()?;
    let new_root = new_root
        .map(|root| server_path_text("new_root", root))
        .transpose()?;
    let two = TwoServerSettings {
        old: server_spec("old", old, old_root, &shared).map_err(core_error)?,
        new: server_spec("new", new, new_root, &shared).map_err(core_error)?,
        bundle_dir: server_path_text("bundle_dir", bundle_dir)?,
        backup_method: method_of(method).map_err(core_error)?,
        accept_crash_consistent,
        route: route_of(route).map_err(core_error)?,
        direct_ssh_options,
    };
    let settings = core::procedure::UpgradeSettings {
        instance: parse_instance(instance)?,
        // The new server's preflight detects it.
        family: core::OsFamily::Deb,
        bundle: String::new(),
        distribution: server_path_text("distribution", distribution)?,
        prerequisites: server_path_text("prerequisites", prerequisites)?,
        port,
        upgrade_timeout_seconds: upgrade_timeout.max(1.0).ceil() as u64,
        health_timeout_seconds: health_timeout.max(1.0).ceil() as u64,
        fix_config,
    };
    let result = run_long_call(py, progress, Feed::Events, move |worker| {
        let reach = |label: &str, spec| -> core::Result<Server> {
            let server = connect(label, spec)?;
            if let Server::Ssh(ssh) = &server {
                if let Some(provisioned) = ssh.provisioned() {
                    worker.send(&core::procedure::Event::Note {
                        text: format!("[{label}] {}", provisioned.note()),
                    });
                }
            }
            Ok(server)
        };
        let old = reach("old", &two.old)?;
        let new = reach("new", &two.new)?;
        if plan {
            let plan = plan_two_servers(&old, &new, &two, &settings)?;
            return to_json(&plan);
        }
        // Ctrl-C also stops a copy on this machine between files.
        let store =
            core::executor::LocalExecutor::new(&state_root).with_cancel(worker.cancel.clone());
        let servers = TwoServerRun {
            old: &old,
            new: &new,
            store: &store,
        };
        let prepared = prepare_two_servers(&servers, &two, &settings)?;
        // Locks only once the preflight passed: a typo leaves no file behind.
        let _here = core::procedure::RunLock::acquire(&store, &settings.instance)?;
        // The new server's own lock, unless it is this control point's own
        // tree (whose lock is held already), as the CLI's `upgrade`.
        let same_tree = two.new.is_local()
            && std::path::Path::new(two.new.root.as_deref().unwrap_or("/")) == state_root;
        let _there = if same_tree {
            None
        } else {
            Some(core::procedure::RunLock::acquire(
                new.executor(),
                &settings.instance,
            )?)
        };
        let report = run_two_servers(
            &servers,
            prepared,
            &two,
            &settings,
            &mut |event| worker.send(event),
            worker.cancel,
        )?;
        to_json(&report)
    })?;
    to_python(py, &result)
}

/// A report as plain data, to hand over from the worker thread.
fn to_json(value: &impl serde::Serialize) -> core::Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|error| core::Error::Internal {
        details: format!("a report does not serialize: {error}"),
    })
}
