//! Python bindings of cmw-upgrade: the module `cmw_upgrade`.
//!
//! Thin on purpose: each function converts arguments, calls the core, and wraps
//! the result in a small frozen class; every decision lives in `cmw-upgrade-core`.
//! Errors become a `CmwUpgradeError` subclass named after the core's error kind.

mod convert;
mod error;

use std::path::PathBuf;

use cmw_upgrade_core as core;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use convert::to_python;
use error::{core_error, register_exceptions};

fn path_text(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

fn parse_family(family: &str) -> PyResult<core::OsFamily> {
    family
        .parse()
        .map_err(pyo3::exceptions::PyValueError::new_err)
}

/// The family to use for the server under `root`: the given one, or its os-release's.
fn family_of_root(root: &std::path::Path, family: Option<&str>) -> PyResult<core::OsFamily> {
    if let Some(family) = family {
        return parse_family(family);
    }
    match core::os::detect_os_family_from(&core::disk::Disk::new(root)).map_err(core_error)? {
        Some(os) => Ok(os.family),
        None => Err(core_error(core::Error::io(
            "read",
            root.join("etc/os-release"),
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no os-release file; pass family=",
            ),
        ))),
    }
}

fn parse_instance(name: &str) -> PyResult<core::InstanceName> {
    core::InstanceName::new(name).map_err(core_error)
}

/// A user and group pair, as `chown` takes it.
#[pyclass(module = "cmw_upgrade", name = "Owner", frozen, get_all)]
#[derive(Clone)]
struct PyOwner {
    /// User name.
    user: String,
    /// Group name.
    group: String,
}

impl From<&core::Owner> for PyOwner {
    fn from(owner: &core::Owner) -> Self {
        PyOwner {
            user: owner.user.clone(),
            group: owner.group.clone(),
        }
    }
}

#[pymethods]
impl PyOwner {
    fn __repr__(&self) -> String {
        format!("Owner(user={:?}, group={:?})", self.user, self.group)
    }

    fn __str__(&self) -> String {
        format!("{}:{}", self.user, self.group)
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.user == other.user && self.group == other.group
    }
}

/// What `detect_os_family` found: the family and what differs by family.
#[pyclass(module = "cmw_upgrade", name = "OsInfo", frozen)]
struct PyOsInfo {
    inner: core::OsInfo,
}

#[pymethods]
impl PyOsInfo {
    /// `"deb"`, `"rpm"` or `"alt"`.
    #[getter]
    fn family(&self) -> &'static str {
        self.inner.family.as_str()
    }

    /// The distribution id (`ID` in os-release), e.g. `"astra"`.
    #[getter]
    fn distro(&self) -> &str {
        &self.inner.distro
    }

    /// `PRETTY_NAME`, if given.
    #[getter]
    fn pretty_name(&self) -> Option<&str> {
        self.inner.pretty_name.as_deref()
    }

    /// `VERSION_ID`, if given.
    #[getter]
    fn version_id(&self) -> Option<&str> {
        self.inner.version_id.as_deref()
    }

    /// The web server's user and group (the default owner of instance data).
    #[getter]
    fn web_owner(&self) -> PyOwner {
        PyOwner::from(&self.inner.family.web_owner())
    }

    /// The instance's nginx site file on this family.
    fn nginx_site_path(&self, instance: &str) -> PyResult<String> {
        Ok(path_text(
            &self
                .inner
                .family
                .nginx_site_path(&parse_instance(instance)?),
        ))
    }

    /// The argv that installs local package files on this family.
    fn package_install_argv(&self, files: Vec<String>) -> Vec<String> {
        self.inner.family.local_package_install_argv(&files)
    }

    fn __repr__(&self) -> String {
        format!(
            "OsInfo(family={:?}, distro={:?})",
            self.inner.family.as_str(),
            self.inner.distro
        )
    }
}

/// Tells the OS family from the text of `/etc/os-release`.
///
/// Raises `UnknownOsFamilyError` when the text names no known distribution.
#[pyfunction]
fn detect_os_family(text: &str) -> PyResult<PyOsInfo> {
    core::detect_os_family(text)
        .map(|inner| PyOsInfo { inner })
        .map_err(core_error)
}

/// Checks an instance name and returns it; raises `InvalidInstanceNameError` saying why not.
#[pyfunction]
fn validate_instance_name(name: &str) -> PyResult<String> {
    Ok(parse_instance(name)?.to_string())
}

/// Every path of one instance on one server.
///
/// `InstanceLayout("prod", root="/", family=None)` reads the instance config,
/// adapterhost.yml and the systemd unit under `root`; without `family` it is
/// detected from `<root>/etc/os-release`.
#[pyclass(module = "cmw_upgrade", name = "InstanceLayout", frozen)]
struct PyInstanceLayout {
    inner: core::InstanceLayout,
}

#[pymethods]
impl PyInstanceLayout {
    #[new]
    #[pyo3(signature = (instance, root = "/".into(), family = None))]
    fn new(py: Python<'_>, instance: &str, root: PathBuf, family: Option<&str>) -> PyResult<Self> {
        let instance = parse_instance(instance)?;
        let family = family_of_root(&root, family)?;
        let inner = py
            .detach(|| core::disk::Disk::new(&root).layout(&instance, family))
            .map_err(core_error)?;
        Ok(PyInstanceLayout { inner })
    }

    /// The target root.
    #[getter]
    fn root(&self) -> String {
        path_text(&self.inner.root)
    }
    /// The instance name.
    #[getter]
    fn instance(&self) -> &str {
        self.inner.instance.as_str()
    }
    /// `"deb"`, `"rpm"` or `"alt"`.
    #[getter]
    fn family(&self) -> &'static str {
        self.inner.family.as_str()
    }
    /// The instance config file.
    #[getter]
    fn instance_config(&self) -> String {
        path_text(&self.inner.instance_config)
    }
    /// `/var/lib/comindware/<i>` under the root.
    #[getter]
    fn data_root(&self) -> String {
        path_text(&self.inner.data_root)
    }
    /// The database folder (`db.workDir`).
    #[getter]
    fn database(&self) -> String {
        path_text(&self.inner.database.path)
    }
    /// Uploaded files (`userStorage.localDisk.path`).
    #[getter]
    fn streams(&self) -> String {
        path_text(&self.inner.streams.path)
    }
    /// Binaries and service configs.
    #[getter]
    fn www(&self) -> String {
        path_text(&self.inner.www)
    }
    /// Config files in the www folder.
    #[getter]
    fn www_config_files(&self) -> Vec<String> {
        self.inner
            .www_config_files
            .iter()
            .map(|p| path_text(p))
            .collect()
    }
    /// The nginx site file.
    #[getter]
    fn nginx_site(&self) -> String {
        path_text(&self.inner.nginx_site)
    }
    /// The env file.
    #[getter]
    fn env_file(&self) -> String {
        path_text(&self.inner.env_file)
    }
    /// The log folder.
    #[getter]
    fn log_dir(&self) -> String {
        path_text(&self.inner.log_dir.path)
    }
    /// The systemd unit names.
    #[getter]
    fn units(&self) -> Vec<String> {
        self.inner
            .units
            .iter()
            .map(|unit| unit.name.clone())
            .collect()
    }
    /// Who owns the instance's data.
    #[getter]
    fn data_owner(&self) -> PyOwner {
        PyOwner::from(&self.inner.data_owner)
    }
    /// Every field, with where each data path came from, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "InstanceLayout(instance={:?}, family={:?}, database={:?})",
            self.inner.instance.as_str(),
            self.inner.family.as_str(),
            path_text(&self.inner.database.path)
        )
    }
}

/// What pruning did, or would do with `check=True`.
#[pyclass(module = "cmw_upgrade", name = "PruneReport", frozen, get_all)]
struct PyPruneReport {
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
#[pyo3(signature = (path, check = true))]
fn prune_caches(py: Python<'_>, path: PathBuf, check: bool) -> PyResult<PyPruneReport> {
    let report = py
        .detach(|| core::prune_caches(&path, check))
        .map_err(core_error)?;
    Ok(PyPruneReport {
        removed: report.removed,
        bytes_freed: report.bytes_freed,
        check: report.check,
        node_folders: report.node_folders,
    })
}

/// One error record found in an upgrade log.
#[pyclass(module = "cmw_upgrade", name = "LogError", frozen, get_all)]
struct PyLogError {
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
struct PyUpgradeVerdict {
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
fn upgrade_verdict(py: Python<'_>, log_dir: PathBuf) -> PyResult<PyUpgradeVerdict> {
    let inner = py
        .detach(|| core::upgrade_verdict(&log_dir))
        .map_err(core_error)?;
    Ok(PyUpgradeVerdict { inner })
}

/// Watches a log folder; each `poll()` reads only what was appended since the last.
#[pyclass(module = "cmw_upgrade", name = "LogWatcher")]
struct PyLogWatcher {
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
struct PyInstanceCreateReport {
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
fn parse_instance_create_output(
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
fn parse_version_list(text: &str) -> Vec<String> {
    core::script_output::parse_version_list(text)
}

/// Parses `prerequisites_list.sh`'s table into dicts: status, software, version, ok.
#[pyfunction]
fn parse_prerequisites_list<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    to_python(py, &core::script_output::parse_prerequisites_list(text))
}

/// Carries the old instance's config values into the new instance's files.
///
/// `from_dir` holds the old server's files at their absolute paths; the new files
/// are under `root`. With `check=True` (the default) nothing is written. Returns
/// the report as a dict, the same as `cmw-upgrade config migrate --json`:
/// changes, warnings, errors, folders_to_create, files, written, check. When the
/// report has errors, nothing is written.
#[pyfunction]
#[pyo3(signature = (from_dir, instance, root = "/".into(), check = true, fix = false, take = None, family = None))]
#[allow(clippy::too_many_arguments)]
fn migrate_config<'py>(
    py: Python<'py>,
    from_dir: PathBuf,
    instance: &str,
    root: PathBuf,
    check: bool,
    fix: bool,
    take: Option<Vec<String>>,
    family: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    use core::config::migrate::{apply_migration, plan_migration, MigrateOptions};
    let instance = parse_instance(instance)?;
    let family = family_of_root(&root, family)?;
    let stamp = core::exec::utc_stamp(std::time::SystemTime::now());
    let options = MigrateOptions {
        take: take.unwrap_or_default(),
        fix,
        stamp: stamp.clone(),
    };
    let report = py
        .detach(|| -> core::Result<_> {
            let mut plan = plan_migration(&from_dir, &root, &instance, family, &options)?;
            plan.report.check = check;
            if !check && plan.report.errors.is_empty() {
                plan.report.written =
                    apply_migration(&plan, &core::executor::LocalExecutor::new("/"), &stamp)?;
            }
            Ok(plan.report)
        })
        .map_err(core_error)?;
    to_python(py, &report)
}

/// Runs `work` with the interpreter released; when `callback` is given, calls it
/// about five times a second with the progress as a dict (phase, total_bytes,
/// total_files, done_bytes, done_files), from the calling thread.
fn run_with_progress<T: Send>(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
    work: impl FnOnce(&core::backup::Progress) -> core::Result<T> + Send,
) -> PyResult<T> {
    let progress = core::backup::Progress::default();
    let Some(callback) = callback else {
        return py.detach(|| work(&progress)).map_err(core_error);
    };
    let mut callback_error = None;
    let result = py.detach(|| {
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| work(&progress));
            let report = |callback_error: &mut Option<PyErr>| {
                Python::attach(|py| {
                    let called = to_python(py, &progress.snapshot())
                        .and_then(|snapshot| callback.call1(py, (snapshot,)));
                    if let Err(error) = called {
                        callback_error.get_or_insert(error);
                    }
                });
            };
            while !worker.is_finished() {
                if callback_error.is_none() {
                    report(&mut callback_error);
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            if callback_error.is_none() {
                report(&mut callback_error);
            }
            worker.join().expect("the worker does not panic")
        })
    });
    let value = result.map_err(core_error)?;
    // The work cannot be interrupted halfway, so a failing callback is reported after it.
    match callback_error {
        Some(error) => Err(error),
        None => Ok(value),
    }
}

/// Backs up an instance into a new bundle folder `dest`.
///
/// Same as `cmw-upgrade backup --json`: returns bundle, method, consistency,
/// snapshot, files, bytes, seconds, warnings. `method` is "copy" or "snapshot";
/// `progress` is an optional callable taking a dict.
#[pyfunction]
#[pyo3(signature = (instance, dest, root = "/".into(), method = "copy", with_streams = false, family = None, control_script = None, check_space = true, progress = None))]
#[allow(clippy::too_many_arguments)]
fn backup<'py>(
    py: Python<'py>,
    instance: &str,
    dest: PathBuf,
    root: PathBuf,
    method: &str,
    with_streams: bool,
    family: Option<&str>,
    control_script: Option<PathBuf>,
    check_space: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let method = match method {
        "copy" => core::backup::BackupMethod::Copy,
        "snapshot" => core::backup::BackupMethod::Snapshot,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown method {other:?}: use \"copy\" or \"snapshot\""
            )))
        }
    };
    let options = core::backup::BackupOptions {
        family: family_of_root(&root, family)?,
        instance: parse_instance(instance)?,
        root,
        destination: dest,
        method,
        with_streams,
        control_script,
        check_space,
    };
    let report = run_with_progress(py, progress, |progress| {
        core::backup::backup(&options, &core::executor::LocalExecutor::new("/"), progress)
    })?;
    to_python(py, &report)
}

/// Re-hashes every file of a bundle against its manifest.
///
/// Returns {"ok", "missing", "changed", "extra"}, paths relative to the bundle, as
/// `cmw-upgrade backup verify --json`.
#[pyfunction]
#[pyo3(signature = (path, progress = None))]
fn verify_bundle<'py>(
    py: Python<'py>,
    path: PathBuf,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let report = run_with_progress(py, progress, |progress| {
        core::backup::verify_bundle(&path, progress)
    })?;
    to_python(py, &report)
}

/// Lists what the instance's live database changed since the bundle was made.
///
/// Returns {"database", "deep", "changed", "added", "removed"}, paths relative to
/// the database folder, as `cmw-upgrade backup drift --json`.
#[pyfunction]
#[pyo3(signature = (path, instance, root = "/".into(), deep = false, family = None))]
fn bundle_drift<'py>(
    py: Python<'py>,
    path: PathBuf,
    instance: &str,
    root: PathBuf,
    deep: bool,
    family: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let instance = parse_instance(instance)?;
    let family = family_of_root(&root, family)?;
    let report = run_with_progress(py, None, |progress| {
        let layout = core::disk::Disk::new(&root).layout(&instance, family)?;
        core::backup::bundle_drift(&path, &layout.database.path, deep, progress)
    })?;
    to_python(py, &report)
}

/// Puts a bundle's database (and streams) into the instance, owned by its data owner.
///
/// Returns the report of `cmw-upgrade restore --json`. A non-empty database folder
/// is refused unless `replace=True`, which moves its content aside.
#[pyfunction]
#[pyo3(signature = (path, instance, root = "/".into(), replace = false, family = None))]
fn restore_bundle<'py>(
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
        bundle: path,
        root,
        replace,
    };
    let report = run_with_progress(py, None, |progress| {
        core::backup::restore(&options, progress)
    })?;
    to_python(py, &report)
}

/// Turns a platform backup (`.cdbbz`) into a bundle folder `dest`.
#[pyfunction]
#[pyo3(signature = (file, dest, instance = None, check_space = true))]
fn import_cdbbz<'py>(
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
    let report = run_with_progress(py, None, |progress| {
        core::backup::import_cdbbz(&file, &dest, instance.as_deref(), check_space, progress)
    })?;
    to_python(py, &report)
}

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
fn plan<'py>(
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
/// Raises AlreadyExistsError when another run holds the instance's lock.
#[pyfunction]
#[pyo3(signature = (instance, bundle, distribution, prerequisites, root = "/".into(), port = 80, family = None, upgrade_timeout = 7200.0, health_timeout = 300.0, fix_config = false, progress = None))]
#[allow(clippy::too_many_arguments)]
fn run<'py>(
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
    let (sender, events) = std::sync::mpsc::channel::<core::procedure::Event>();
    let (result, callback_error) = py.detach(move || {
        let mut callback_error: Option<PyErr> = None;
        let result = std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                let local = LocalExecutor::new(&root);
                let _lock = core::procedure::RunLock::acquire(&local, &settings.instance)?;
                let recorder = Recording::new(&local);
                core::procedure::run_upgrade(&recorder, &settings, &mut |event| {
                    let _ = sender.send(event.clone());
                })
            });
            // Events are handed to Python on this thread, as they come.
            loop {
                match events.recv_timeout(std::time::Duration::from_millis(100)) {
                    Ok(event) => {
                        if let (Some(callback), None) = (&progress, &callback_error) {
                            Python::attach(|py| {
                                let called = to_python(py, &event)
                                    .and_then(|event| callback.call1(py, (event,)));
                                if let Err(error) = called {
                                    callback_error = Some(error);
                                }
                            });
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            worker.join().expect("the run does not panic")
        });
        (result, callback_error)
    });
    let report = result.map_err(core_error)?;
    if let Some(error) = callback_error {
        return Err(error);
    }
    to_python(py, &report)
}

/// The Python module `cmw_upgrade`.
#[pymodule]
fn cmw_upgrade(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", core::VERSION)?;
    register_exceptions(module)?;
    module.add_class::<PyOwner>()?;
    module.add_class::<PyOsInfo>()?;
    module.add_class::<PyInstanceLayout>()?;
    module.add_class::<PyPruneReport>()?;
    module.add_class::<PyLogError>()?;
    module.add_class::<PyUpgradeVerdict>()?;
    module.add_class::<PyLogWatcher>()?;
    module.add_class::<PyInstanceCreateReport>()?;
    module.add_function(wrap_pyfunction!(detect_os_family, module)?)?;
    module.add_function(wrap_pyfunction!(validate_instance_name, module)?)?;
    module.add_function(wrap_pyfunction!(prune_caches, module)?)?;
    module.add_function(wrap_pyfunction!(upgrade_verdict, module)?)?;
    module.add_function(wrap_pyfunction!(parse_instance_create_output, module)?)?;
    module.add_function(wrap_pyfunction!(parse_version_list, module)?)?;
    module.add_function(wrap_pyfunction!(migrate_config, module)?)?;
    module.add_function(wrap_pyfunction!(parse_prerequisites_list, module)?)?;
    module.add_function(wrap_pyfunction!(backup, module)?)?;
    module.add_function(wrap_pyfunction!(verify_bundle, module)?)?;
    module.add_function(wrap_pyfunction!(bundle_drift, module)?)?;
    module.add_function(wrap_pyfunction!(restore_bundle, module)?)?;
    module.add_function(wrap_pyfunction!(import_cdbbz, module)?)?;
    module.add_function(wrap_pyfunction!(plan, module)?)?;
    module.add_function(wrap_pyfunction!(run, module)?)?;
    // Families, for callers that want to iterate them.
    let families = PyDict::new(module.py());
    for family in core::OsFamily::ALL {
        families.set_item(family.as_str(), family.nginx_site_dir())?;
    }
    module.add("NGINX_SITE_DIRS", families)?;
    Ok(())
}
