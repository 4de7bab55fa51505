//! Backup bundles (make, verify, drift, restore, import) and cache pruning.
//! The bundle calls are long: they run through [`run_long_call`].

use std::path::PathBuf;

use cmw_upgrade_core as core;
use pyo3::prelude::*;

use crate::convert::{to_python, under_root_arg};
use crate::detect::{family_of_root, parse_instance};
use crate::long_call::{run_long_call, Feed};

/// What pruning did, or would do with `check=True`.
#[pyclass(module = "cmw_upgrade", name = "PruneReport", frozen, get_all)]
pub(crate) struct PyPruneReport {
    /// Paths removed (or to remove), relative to the target, sorted.
    removed: Vec<String>,
    /// Bytes of regular files freed (or to free).
    bytes_freed: u64,
    /// True when nothing was removed.
    check: bool,
    /// Ignite node folders found, relative to the target.
    node_folders: Vec<String>,
}

#[pymethods]
impl PyPruneReport {
    fn __repr__(&self) -> String {
        format!(
            "PruneReport(check={}, removed={} entries, bytes_freed={})",
            if self.check { "True" } else { "False" },
            self.removed.len(),
            self.bytes_freed
        )
    }
}

/// Removes the old-format Ignite caches under `path` (the Database folder or an
/// unpacked backup). With `check=True` (the default) nothing is removed.
#[pyfunction]
#[pyo3(signature = (path, *, check = true))]
pub(crate) fn prune_caches(py: Python<'_>, path: PathBuf, check: bool) -> PyResult<PyPruneReport> {
    // Ctrl-C stops the removal between cache folders (see `apply_prune_until`).
    let report = run_long_call(py, None, Feed::Counters, |worker| {
        let plan = core::prune::plan_prune(&path)?;
        if check {
            Ok(plan.as_check_report())
        } else {
            core::prune::apply_prune_until(&plan, worker.cancel)
        }
    })?;
    Ok(PyPruneReport {
        removed: report.removed,
        bytes_freed: report.bytes_freed,
        check: report.check,
        node_folders: report.node_folders,
    })
}

/// Backs up an instance into a new bundle folder `dest`.
///
/// Same as `cmw-upgrade backup --json`: returns bundle, method, consistency,
/// snapshot, files, bytes, seconds, warnings. `method` is "copy" or "snapshot";
/// `progress` is an optional callable taking a dict. Ctrl-C (or an exception
/// from `progress`) stops the copy at the next file or buffer; the partial
/// bundle is removed, then the exception is raised.
#[pyfunction]
#[pyo3(signature = (instance, dest, root = "/".into(), method = None, with_streams = false, family = None, control_script = None, check_space = true, progress = None, *, accept_crash_consistent = false), text_signature = "(instance, dest, root = '/', method = None, with_streams = False, family = None, control_script = None, check_space = True, progress = None, *, accept_crash_consistent = False)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn backup<'py>(
    py: Python<'py>,
    instance: &str,
    dest: PathBuf,
    root: PathBuf,
    method: Option<&str>,
    with_streams: bool,
    family: Option<&str>,
    control_script: Option<PathBuf>,
    check_space: bool,
    progress: Option<Py<PyAny>>,
    accept_crash_consistent: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let requested = match method {
        None => None,
        Some("copy") => Some(core::backup::BackupMethod::Copy),
        Some("snapshot") => Some(core::backup::BackupMethod::Snapshot),
        Some(other) => {
            return Err(crate::errors::bad_choice(format!(
                "unknown method {other:?}: use \"copy\", \"snapshot\" or None (a snapshot \
                 if the instance runs, else a copy)"
            )))
        }
    };
    let instance = parse_instance(instance)?;
    let family = family_of_root(&root, family)?;
    let destination = under_root_arg(&root, &dest, "dest")?;
    let report = run_long_call(py, progress, Feed::Counters, |worker| {
        let runner = core::executor::LocalExecutor::new("/");
        // As the CLI: a snapshot of a running instance unless a copy is asked
        // for, and a copy of a running one only with accept_crash_consistent
        // (asking systemd may take a while: the interpreter is released).
        let service = core::executor::service_state(&runner, &instance);
        let method = core::backup::choose_method(requested, service, accept_crash_consistent)?;
        let options = core::backup::BackupOptions {
            family,
            instance,
            destination,
            root,
            method,
            with_streams,
            control_script,
            check_space,
        };
        let mut report = core::backup::backup(&options, &runner, worker.progress)?;
        if requested.is_none() && service == core::backup::ServiceState::Unknown {
            report
                .warnings
                .push(core::backup::unknown_service_warning(&options.instance));
        }
        Ok(report)
    })?;
    to_python(py, &report)
}

/// Re-hashes every file of a bundle against its manifest.
///
/// Returns {"ok", "missing", "changed", "extra"}, paths relative to the bundle, as
/// `cmw-upgrade backup verify --json`.
#[pyfunction]
#[pyo3(signature = (path, progress = None))]
pub(crate) fn verify_bundle<'py>(
    py: Python<'py>,
    path: PathBuf,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let report = run_long_call(py, progress, Feed::Counters, |worker| {
        core::backup::verify_bundle(&path, worker.progress)
    })?;
    to_python(py, &report)
}

/// Lists what the instance's live database changed since the bundle was made.
///
/// Returns {"database", "deep", "changed", "added", "removed"}, paths relative to
/// the database folder, as `cmw-upgrade backup drift --json`.
#[pyfunction]
#[pyo3(signature = (path, instance, root = "/".into(), deep = false, family = None), text_signature = "(path, instance, root = '/', deep = False, family = None)")]
pub(crate) fn bundle_drift<'py>(
    py: Python<'py>,
    path: PathBuf,
    instance: &str,
    root: PathBuf,
    deep: bool,
    family: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let instance = parse_instance(instance)?;
    let family = family_of_root(&root, family)?;
    let path = under_root_arg(&root, &path, "path")?;
    let report = run_long_call(py, None, Feed::Counters, |worker| {
        let disk = core::disk::Disk::new(&root);
        let layout = disk.layout(&instance, family)?;
        let database = disk.canonical(&layout.database.path)?;
        core::backup::bundle_drift(&path, &database, deep, worker.progress)
    })?;
    to_python(py, &report)
}

/// Puts a bundle's database (and streams) into the instance, owned by its data owner.
///
/// Returns the report of `cmw-upgrade restore --json`. A non-empty database folder
/// is refused unless `replace=True`, which moves its content aside.
#[pyfunction]
#[pyo3(signature = (path, instance, root = "/".into(), replace = false, family = None), text_signature = "(path, instance, root = '/', replace = False, family = None)")]
pub(crate) fn restore_bundle<'py>(
    py: Python<'py>,
    path: PathBuf,
    instance: &str,
    root: PathBuf,
    replace: bool,
    family: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let options = core::backup::RestoreOptions {
        family: family_of_root(&root, family)?,
        instance: parse_instance(instance)?,
        bundle: under_root_arg(&root, &path, "path")?,
        root,
        replace,
    };
    let report = run_long_call(py, None, Feed::Counters, |worker| {
        core::backup::restore(&options, worker.progress)
    })?;
    to_python(py, &report)
}

/// Turns a platform backup (`.cdbbz`) into a bundle folder `dest`.
#[pyfunction]
#[pyo3(signature = (file, dest, instance = None, check_space = true))]
pub(crate) fn import_cdbbz<'py>(
    py: Python<'py>,
    file: PathBuf,
    dest: PathBuf,
    instance: Option<&str>,
    check_space: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let instance = instance
        .map(parse_instance)
        .transpose()?
        .map(|name| name.to_string());
    let report = run_long_call(py, None, Feed::Counters, |worker| {
        core::backup::import_cdbbz(
            &file,
            &dest,
            instance.as_deref(),
            check_space,
            worker.progress,
        )
    })?;
    to_python(py, &report)
}
