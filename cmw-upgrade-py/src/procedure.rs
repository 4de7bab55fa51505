//! The upgrade procedure: its plan, and the run (long: through [`run_long_call`]).

use std::path::PathBuf;

use cmw_upgrade_core as core;
use pyo3::prelude::*;

use crate::convert::to_python;
use crate::detect::{family_of_root, parse_instance};
use crate::errors::core_error;
use crate::long_call::{run_long_call, Feed};

/// The settings of a plan or run, from Python's arguments.
#[allow(clippy::too_many_arguments)]
fn upgrade_settings(
    instance: &str,
    bundle: String,
    distribution: String,
    prerequisites: String,
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
        bundle,
        distribution,
        prerequisites,
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
#[pyo3(signature = (instance, bundle, distribution, prerequisites, root = "/".into(), port = 80, family = None, upgrade_timeout = 7200.0, health_timeout = 300.0, fix_config = false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan<'py>(
    py: Python<'py>,
    instance: &str,
    bundle: String,
    distribution: String,
    prerequisites: String,
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
    let steps = py
        .detach(|| {
            let recorder = Recording::new(DryRun::new(LocalExecutor::new(&root)));
            core::procedure::plan_upgrade(&recorder, &settings)
        })
        .map_err(core_error)?;
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
#[pyo3(signature = (instance, bundle, distribution, prerequisites, root = "/".into(), port = 80, family = None, upgrade_timeout = 7200.0, health_timeout = 300.0, fix_config = false, progress = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<'py>(
    py: Python<'py>,
    instance: &str,
    bundle: String,
    distribution: String,
    prerequisites: String,
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
