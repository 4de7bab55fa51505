//! Detection: the OS family, instance names, and the layout of an instance.

use std::path::{Path, PathBuf};

use cmw_upgrade_core as core;
use pyo3::prelude::*;

use crate::convert::{path_text, to_python};
use crate::errors::core_error;

/// A family named by the caller (`"deb"`, `"rpm"`, `"alt"`); BadInputError
/// (a ValueError) otherwise.
fn parse_family(family: &str) -> PyResult<core::OsFamily> {
    family.parse().map_err(crate::errors::bad_choice)
}

/// The family to use for the server under `root`: the given one, or its os-release's.
pub(crate) fn family_of_root(root: &Path, family: Option<&str>) -> PyResult<core::OsFamily> {
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

/// A checked instance name; InvalidInstanceNameError saying why not.
pub(crate) fn parse_instance(name: &str) -> PyResult<core::InstanceName> {
    core::InstanceName::new(name).map_err(core_error)
}

/// A user and group pair, as `chown` takes it.
#[pyclass(module = "cmw_upgrade", name = "Owner", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct PyOwner {
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
pub(crate) struct PyOsInfo {
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
pub(crate) fn detect_os_family(text: &str) -> PyResult<PyOsInfo> {
    core::detect_os_family(text)
        .map(|inner| PyOsInfo { inner })
        .map_err(core_error)
}

/// Checks an instance name and returns it; raises `InvalidInstanceNameError` saying why not.
#[pyfunction]
pub(crate) fn validate_instance_name(name: &str) -> PyResult<String> {
    Ok(parse_instance(name)?.to_string())
}

/// Every path of one instance on one server.
///
/// `InstanceLayout("prod", root="/", family=None)` reads the instance config,
/// adapterhost.yml and the systemd unit under `root`; without `family` it is
/// detected from `<root>/etc/os-release`.
#[pyclass(module = "cmw_upgrade", name = "InstanceLayout", frozen)]
pub(crate) struct PyInstanceLayout {
    inner: core::InstanceLayout,
}

#[pymethods]
impl PyInstanceLayout {
    #[new]
    #[pyo3(signature = (instance, root = "/".into(), family = None), text_signature = "(instance, root = '/', family = None)")]
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
