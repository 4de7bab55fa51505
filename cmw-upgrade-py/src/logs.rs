//! Logs and script output: the upgrade verdict, the log watcher, and the
//! parsers of what the distribution's scripts print.

use std::path::PathBuf;

use cmw_upgrade_core as core;
use pyo3::prelude::*;

use crate::convert::{path_text, to_python};
use crate::detect::parse_instance;
use crate::errors::core_error;

/// One error record found in an upgrade log.
#[pyclass(module = "cmw_upgrade", name = "LogError", frozen, get_all)]
pub(crate) struct PyLogError {
    /// The log file's name.
    file: String,
    /// 1-based line where the record starts.
    line: u64,
    /// The level as written.
    level: String,
    /// `"level"` or `"keyword"`.
    reason: &'static str,
    /// The first line of the message.
    message: String,
}

#[pymethods]
impl PyLogError {
    fn __repr__(&self) -> String {
        format!(
            "LogError({}:{} {} [{}] {:?})",
            self.file, self.line, self.level, self.reason, self.message
        )
    }
}

/// The verdict over a log folder, with the evidence.
#[pyclass(module = "cmw_upgrade", name = "UpgradeVerdict", frozen)]
pub(crate) struct PyUpgradeVerdict {
    inner: core::UpgradeVerdict,
}

#[pymethods]
impl PyUpgradeVerdict {
    /// `"succeeded"`, `"failed"`, `"in_progress"` or `"not_started"`.
    #[getter]
    fn verdict(&self) -> &'static str {
        self.inner.verdict.as_str()
    }
    /// Whether the upgrade succeeded.
    #[getter]
    fn succeeded(&self) -> bool {
        self.inner.verdict == core::Verdict::Succeeded
    }
    /// Whether waiting longer cannot change the verdict.
    #[getter]
    fn is_final(&self) -> bool {
        self.inner.verdict.is_final()
    }
    /// The log folder read.
    #[getter]
    fn log_dir(&self) -> String {
        path_text(&self.inner.log_dir)
    }
    /// Error records found (at most 1000 per file).
    #[getter]
    fn errors(&self) -> Vec<PyLogError> {
        self.inner
            .errors
            .iter()
            .map(|error| PyLogError {
                file: error.file.clone(),
                line: error.line,
                level: error.level.clone(),
                reason: error.reason.as_str(),
                message: error.message.clone(),
            })
            .collect()
    }
    /// Error records found in all.
    #[getter]
    fn errors_total(&self) -> u64 {
        self.inner.errors_total
    }
    /// Everything, as plain Python data (the CLI's JSON shape).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "UpgradeVerdict(verdict={:?}, errors={})",
            self.inner.verdict.as_str(),
            self.inner.errors_total
        )
    }
}

/// Whether the data-structure upgrade succeeded, from the logs in `log_dir`.
#[pyfunction]
pub(crate) fn upgrade_verdict(py: Python<'_>, log_dir: PathBuf) -> PyResult<PyUpgradeVerdict> {
    let inner = crate::long_call::run_read_only_call(py, move || core::upgrade_verdict(&log_dir))?;
    Ok(PyUpgradeVerdict { inner })
}

/// Watches a log folder; each `poll()` reads only what was appended since the last.
#[pyclass(module = "cmw_upgrade", name = "LogWatcher")]
pub(crate) struct PyLogWatcher {
    inner: core::LogWatcher,
}

#[pymethods]
impl PyLogWatcher {
    #[new]
    fn new(log_dir: PathBuf) -> Self {
        PyLogWatcher {
            inner: core::LogWatcher::new(log_dir),
        }
    }

    /// Reads what was appended and returns the verdict now.
    fn poll(&mut self, py: Python<'_>) -> PyResult<PyUpgradeVerdict> {
        let inner = py.detach(|| self.inner.poll()).map_err(core_error)?;
        Ok(PyUpgradeVerdict { inner })
    }

    fn __repr__(&self) -> String {
        format!("LogWatcher({:?})", path_text(self.inner.log_dir()))
    }
}

/// What `instance_create.sh` reported.
#[pyclass(module = "cmw_upgrade", name = "InstanceCreateReport", frozen)]
pub(crate) struct PyInstanceCreateReport {
    inner: core::InstanceCreateReport,
    instance: Option<core::InstanceName>,
}

#[pymethods]
impl PyInstanceCreateReport {
    /// Every OK/FAILED line as a dict: line, status, text, service.
    #[getter]
    fn components<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.inner.components)
    }
    /// The `[Done] ...` lines.
    #[getter]
    fn done(&self) -> Vec<String> {
        self.inner.done.clone()
    }
    /// `"OK"`, `"FAILED"`, or None when the output has no final status line.
    #[getter]
    fn final_status(&self) -> Option<&'static str> {
        self.inner.final_status.map(|status| match status {
            core::script_output::ComponentStatus::Ok => "OK",
            core::script_output::ComponentStatus::Failed => "FAILED",
        })
    }
    /// Whether the script ended with `OK Final status.` and nothing FAILED.
    #[getter]
    fn succeeded(&self) -> bool {
        self.inner.succeeded()
    }
    /// Services whose lines FAILED: `"instance"`, `"api_gateway"`, `"adapter_host"`, `"nginx"`, ...
    #[getter]
    fn services_to_restart(&self) -> Vec<String> {
        self.inner
            .services_to_restart()
            .iter()
            .map(|service| {
                serde_json::to_value(service)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect()
    }
    /// The systemd units to restart (needs the instance name given to the parser).
    #[getter]
    fn units_to_restart(&self) -> PyResult<Vec<String>> {
        match &self.instance {
            Some(instance) => Ok(self.inner.units_to_restart(instance)),
            None => Err(pyo3::exceptions::PyValueError::new_err(
                "units_to_restart needs the instance name: parse_instance_create_output(text, instance=\"...\")",
            )),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "InstanceCreateReport(succeeded={}, components={}, failed={})",
            if self.inner.succeeded() {
                "True"
            } else {
                "False"
            },
            self.inner.components.len(),
            self.inner.failed().count()
        )
    }
}

/// Parses `instance_create.sh` output; give `instance` to get `units_to_restart`.
#[pyfunction]
#[pyo3(signature = (text, instance = None))]
pub(crate) fn parse_instance_create_output(
    text: &str,
    instance: Option<&str>,
) -> PyResult<PyInstanceCreateReport> {
    let instance = instance.map(parse_instance).transpose()?;
    Ok(PyInstanceCreateReport {
        inner: core::parse_instance_create_output(text),
        instance,
    })
}

/// Parses `version_list.sh` output into installed versions.
#[pyfunction]
pub(crate) fn parse_version_list(text: &str) -> Vec<String> {
    core::script_output::parse_version_list(text)
}

/// Parses `prerequisites_list.sh`'s table into dicts: status, software, version, ok.
#[pyfunction]
pub(crate) fn parse_prerequisites_list<'py>(
    py: Python<'py>,
    text: &str,
) -> PyResult<Bound<'py, PyAny>> {
    to_python(py, &core::script_output::parse_prerequisites_list(text))
}
