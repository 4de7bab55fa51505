//! Core errors as Python exceptions, through one conversion helper.
//!
//! Every exception derives from `CmwUpgradeError`, and is named after the core's
//! error kind, so `except cmw_upgrade.CmwUpgradeError` catches all of them and a
//! caller can still tell a wrong folder from a wrong name. Each also derives
//! from the built-in exception a Python caller already catches for that kind
//! of trouble: a value that is wrong is a `ValueError`, a file that cannot be
//! read or is in the way an `OSError` (with `.errno` and `.filename`). Every
//! instance has `.kind` (the core's kind, as the CLI's JSON names it) and
//! `.path` (the file or folder it is about, or None).
//!
//! A class with two bases cannot be made by `create_exception!`, so the
//! classes are made at import with Python's `type()`, from one table.

use cmw_upgrade_core::{Error, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

create_exception!(
    cmw_upgrade,
    CmwUpgradeError,
    PyException,
    "Base of every cmw_upgrade error."
);

/// The built-in exception a class derives from besides `CmwUpgradeError`.
#[derive(Clone, Copy)]
enum Also {
    /// Only `CmwUpgradeError`.
    Nothing,
    /// A wrong value: `except ValueError` catches it.
    Value,
    /// A file that cannot be read or is in the way: `except OSError` catches
    /// it, with `.errno` and `.filename`.
    Os,
}

/// Every exception: its class name, the kind it stands for, what else it is,
/// its docstring. The conversion and the registration both read it, so a new
/// kind cannot get a class without being mapped (or the reverse).
const CLASSES: &[(&str, ErrorKind, Also, &str)] = &[
    ("UnknownOsFamilyError", ErrorKind::UnknownOsFamily, Also::Value, "os-release names no supported distribution, or a family name that is not deb, rpm or alt."),
    ("InvalidInstanceNameError", ErrorKind::InvalidInstanceName, Also::Value, "An instance name that is not safe in paths and commands."),
    ("PathOutsideRootError", ErrorKind::PathOutsideRoot, Also::Value, "A path that would leave the target root (from a config, or not absolute under a root)."),
    ("FileAccessError", ErrorKind::Io, Also::Os, "A file or folder could not be read, listed or changed."),
    ("ConfigParseError", ErrorKind::ConfigParse, Also::Value, "A config file that does not parse."),
    ("NoIgniteNodeFolderError", ErrorKind::NoIgniteNodeFolder, Also::Value, "A folder without Ignite node folders was given for pruning."),
    ("NotAFolderError", ErrorKind::NotAFolder, Also::Os, "A folder was expected."),
    ("CheckFailedError", ErrorKind::CheckFailed, Also::Nothing, "A check before writing failed (e.g. nginx -t); nothing was written."),
    ("StepFailedError", ErrorKind::StepFailed, Also::Nothing, "An upgrade step failed after it changed something; resume or roll back."),
    ("StateConflictError", ErrorKind::StateConflict, Also::Nothing, "The recorded run state does not allow this (another run's settings, no run to undo)."),
    ("NoOsReleaseError", ErrorKind::NoOsRelease, Also::Nothing, "No os-release file under the root; name the family."),
    ("BadRequestError", ErrorKind::BadRequest, Also::Value, "A malformed argument, or a request to the agent that does not fit the protocol."),
    ("SystemFolderError", ErrorKind::SystemFolder, Also::Value, "A data folder that is a system folder or directly inside one; nothing was changed."),
    ("InternalError", ErrorKind::Internal, Also::Nothing, "A bug, or two sides running different versions."),
    ("NotEnoughSpaceError", ErrorKind::NotEnoughSpace, Also::Os, "The destination has too little free space; nothing was written."),
    ("AlreadyExistsError", ErrorKind::AlreadyExists, Also::Os, "Something is in the way that the tool will not overwrite."),
    ("LockedError", ErrorKind::Locked, Also::Nothing, "Another run holds the instance's lock; retry when it is done."),
    ("BundleDamagedError", ErrorKind::BundleDamaged, Also::Nothing, "A bundle does not match its manifest."),
    ("UnknownAccountError", ErrorKind::UnknownAccount, Also::Nothing, "A user or group is not in the server's account files."),
    ("SourceChangedError", ErrorKind::SourceChanged, Also::Nothing, "A source file changed while it was being copied."),
    ("CommandFailedError", ErrorKind::CommandFailed, Also::Nothing, "An external command failed."),
    ("CancelledError", ErrorKind::Cancelled, Also::Nothing, "The work stopped on request at a safe point; nothing was left half-done."),
    ("BadInputError", ErrorKind::BadInput, Also::Value, "A value that names nothing there (a backend, a server, a method); the message names what exists."),
    ("AuthenticationFailedError", ErrorKind::AuthenticationFailed, Also::Nothing, "Authentication failed at a server (a DNS update's TSIG key is wrong, unknown or not allowed)."),
];

/// The classes made at import, in the order of [`CLASSES`].
static CLASS_OBJECTS: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

/// Makes the classes and adds them (and `CmwUpgradeError`) to the module.
pub fn register_exceptions(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let base = py.get_type::<CmwUpgradeError>();
    module.add("CmwUpgradeError", &base)?;
    let make_type = py.import("builtins")?.getattr("type")?;
    // OSError's own __str__ would print "[Errno 13] None: 'path'" once .errno
    // and .filename are set; the message the tool wrote is the one to show.
    let plain_str = py
        .import("builtins")?
        .getattr("BaseException")?
        .getattr("__str__")?;
    let mut made = Vec::with_capacity(CLASSES.len());
    for (name, _kind, also, doc) in CLASSES {
        let bases = match also {
            Also::Nothing => PyTuple::new(py, [base.as_any()])?,
            Also::Value => {
                PyTuple::new(py, [base.as_any(), py.get_type::<PyValueError>().as_any()])?
            }
            Also::Os => PyTuple::new(py, [base.as_any(), py.get_type::<PyOSError>().as_any()])?,
        };
        let namespace = PyDict::new(py);
        namespace.set_item("__doc__", *doc)?;
        namespace.set_item("__module__", "cmw_upgrade")?;
        namespace.set_item("__qualname__", *name)?;
        if matches!(also, Also::Os) {
            namespace.set_item("__str__", &plain_str)?;
        }
        let class = make_type.call1((*name, bases, namespace))?;
        module.add(*name, &class)?;
        made.push(class.cast_into::<PyType>()?.unbind());
    }
    CLASS_OBJECTS
        .set(py, made)
        .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("cmw_upgrade initialised twice"))?;
    Ok(())
}

/// Converts a core error into the matching Python exception, secrets masked,
/// with `.kind`, `.path` and (for the `OSError` ones) `.errno`, `.filename`,
/// `.strerror`.
pub fn core_error(error: Error) -> PyErr {
    let message = cmw_upgrade_core::secrets::mask(&error.to_string()).into_owned();
    Python::attach(|py| build(py, &error, &message).unwrap_or_else(|failure| failure))
}

fn build(py: Python<'_>, error: &Error, message: &str) -> Result<PyErr, PyErr> {
    let kind = error.kind();
    let found = CLASSES
        .iter()
        .position(|(_, class_kind, _, _)| *class_kind == kind)
        .and_then(|index| Some((CLASS_OBJECTS.get(py)?.get(index)?, CLASSES[index].2)));
    let value = match found {
        Some((class, _)) => class.bind(py).call1((message,))?,
        None => py.get_type::<CmwUpgradeError>().call1((message,))?,
    };
    value.setattr("kind", kind.as_str())?;
    let path = error
        .path()
        .map(|path| cmw_upgrade_core::secrets::mask(&path).into_owned());
    value.setattr("path", path.as_deref())?;
    if let Some((_, Also::Os)) = found {
        let number = error.os_error_number();
        value.setattr("errno", number)?;
        value.setattr(
            "strerror",
            number.map(|number| {
                // "Permission denied (os error 13)" → "Permission denied", as os.strerror says it.
                let text = std::io::Error::from_raw_os_error(number).to_string();
                match text.rfind(" (os error ") {
                    Some(end) => text[..end].to_owned(),
                    None => text,
                }
            }),
        )?;
        value.setattr("filename", path.as_deref())?;
    }
    Ok(PyErr::from_value(value))
}

/// A value that is not one of the choices an argument takes (a method, a
/// route, a family): `BadInputError`, which is also a `ValueError`.
pub fn bad_choice(details: String) -> PyErr {
    core_error(Error::BadInput { details })
}
