//! Where a run is and undoing it, the instances on a server, and the smoke
//! check: `status`, `rollback`, `instances`, `check` (the CLI's commands of
//! those names, the same JSON as dicts).

use std::path::PathBuf;

use cmw_upgrade_core as core;
use core::procedure::state::{RunState, StepStatus};
use pyo3::prelude::*;

use crate::convert::to_python;
use crate::detect::parse_instance;
use crate::errors::core_error;
use crate::long_call::{run_long_call, Feed};

/// The recorded run of `instance` on the server under `root`, as
/// `cmw-upgrade status --json`: the state ({"instance", "steps", "settings",
/// "to_do", ...}) with "recorded": True, or {"recorded": False, "instance"}
/// when no run is recorded (not an error: nothing has started).
#[pyfunction]
#[pyo3(signature = (instance, root = "/".into()), text_signature = "(instance, root = '/')")]
pub(crate) fn status<'py>(
    py: Python<'py>,
    instance: &str,
    root: PathBuf,
) -> PyResult<Bound<'py, PyAny>> {
    let instance = parse_instance(instance)?;
    let local = core::executor::LocalExecutor::new(&root);
    let state = RunState::load(&local, &instance).map_err(core_error)?;
    let document = match state {
        Some(state) => {
            let mut value = serde_json::to_value(&state).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("recorded".to_owned(), true.into());
            }
            value
        }
        None => serde_json::json!({ "recorded": false, "instance": instance }),
    };
    to_python(py, &document)
}

/// Undoes the run of `instance` on the server under `root`, as `cmw-upgrade
/// rollback --yes --json`: stops the new instance, keeps its logs, restores
/// the bundle's database, brings a replaced version back. A run whose steps
/// are all done may already have traffic on it: refused (StateConflictError)
/// unless `force=True`. `progress` gets each event as a dict. Raises
/// LockedError when another run holds the lock.
#[pyfunction]
#[pyo3(signature = (instance, root = "/".into(), *, force = false, progress = None), text_signature = "(instance, root = '/', *, force = False, progress = None)")]
pub(crate) fn rollback<'py>(
    py: Python<'py>,
    instance: &str,
    root: PathBuf,
    force: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let instance = parse_instance(instance)?;
    let report = run_long_call(py, progress, Feed::Events, move |worker| {
        let local = core::executor::LocalExecutor::new(&root).with_cancel(worker.cancel.clone());
        if let Some(state) = RunState::load(&local, &instance)? {
            let finished = state
                .steps
                .iter()
                .all(|step| step.status == StepStatus::Done);
            if finished && !force {
                return Err(core::Error::StateConflict {
                    details: "every step of the run is done: traffic may already be on this \
                              instance; switch it back first, then pass force=True"
                        .to_owned(),
                });
            }
        }
        let _lock = core::procedure::RunLock::acquire(&local, &instance)?;
        let recorder = core::executor::Recording::new(&local);
        core::procedure::rollback_upgrade(&recorder, &instance, &mut |event| worker.send(event))
    })?;
    to_python(py, &report)
}

/// The instances configured on the server under `root`: a list of
/// {"name", "version"} (as `cmw-upgrade instances --json`, without the
/// service state, which needs systemd).
#[pyfunction]
#[pyo3(signature = (root = "/".into()), text_signature = "(root = '/')")]
pub(crate) fn instances<'py>(py: Python<'py>, root: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let disk = core::disk::Disk::new(&root);
    let found = core::layout::configured_instances(&disk).map_err(core_error)?;
    to_python(py, &found)
}

/// The smoke check of `instance` under `root`: GET `url` (http:// only) and
/// its heartbeat logs, as `cmw-upgrade check --json`: {"url", "status",
/// "unreachable", "heartbeat_errors", "heartbeat_logs", "log_dir", "ok"}.
/// An unsupported URL raises BadRequestError.
#[pyfunction]
#[pyo3(signature = (instance, url, root = "/".into()), text_signature = "(instance, url, root = '/')")]
pub(crate) fn check<'py>(
    py: Python<'py>,
    instance: &str,
    url: &str,
    root: PathBuf,
) -> PyResult<Bound<'py, PyAny>> {
    let instance = parse_instance(instance)?;
    let url = url.to_owned();
    let report = crate::long_call::run_read_only_call(py, move || {
        core::health::smoke_check(&root, &instance, &url)
    })?;
    to_python(py, &report)
}
