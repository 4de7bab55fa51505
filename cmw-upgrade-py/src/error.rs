//! Core errors as Python exceptions, through one conversion helper.
//!
//! Every exception derives from `CmwUpgradeError`, and is named after the core's
//! error kind, so `except cmw_upgrade.CmwUpgradeError` catches all of them and a
//! caller can still tell a wrong folder from a wrong name.

use cmw_upgrade_core::{Error, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    cmw_upgrade,
    CmwUpgradeError,
    PyException,
    "Base of every cmw_upgrade error."
);
create_exception!(
    cmw_upgrade,
    UnknownOsFamilyError,
    CmwUpgradeError,
    "os-release names no supported distribution."
);
create_exception!(
    cmw_upgrade,
    InvalidInstanceNameError,
    CmwUpgradeError,
    "An instance name that is not safe in paths and commands."
);
create_exception!(
    cmw_upgrade,
    PathOutsideRootError,
    CmwUpgradeError,
    "A configured path that would leave the target root."
);
create_exception!(
    cmw_upgrade,
    FileAccessError,
    CmwUpgradeError,
    "A file or folder could not be read, listed or changed."
);
create_exception!(
    cmw_upgrade,
    ConfigParseError,
    CmwUpgradeError,
    "A config file that does not parse."
);
create_exception!(
    cmw_upgrade,
    NoIgniteNodeFolderError,
    CmwUpgradeError,
    "A folder without Ignite node folders was given for pruning."
);
create_exception!(
    cmw_upgrade,
    NotAFolderError,
    CmwUpgradeError,
    "A folder was expected."
);

create_exception!(
    cmw_upgrade,
    ValidationFailedError,
    CmwUpgradeError,
    "A check before writing failed (e.g. nginx -t); nothing was written."
);

create_exception!(
    cmw_upgrade,
    NotEnoughSpaceError,
    CmwUpgradeError,
    "The destination has too little free space; nothing was written."
);

create_exception!(
    cmw_upgrade,
    AlreadyExistsError,
    CmwUpgradeError,
    "Something is in the way that the tool will not overwrite."
);

create_exception!(
    cmw_upgrade,
    BundleDamagedError,
    CmwUpgradeError,
    "A bundle does not match its manifest."
);

create_exception!(
    cmw_upgrade,
    UnknownAccountError,
    CmwUpgradeError,
    "A user or group is not in the server's account files."
);

create_exception!(
    cmw_upgrade,
    SourceChangedError,
    CmwUpgradeError,
    "A source file changed while it was being copied."
);

create_exception!(
    cmw_upgrade,
    CommandFailedError,
    CmwUpgradeError,
    "An external command failed."
);

/// Converts a core error into the matching Python exception, message unchanged.
pub fn core_error(error: Error) -> PyErr {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::UnknownOsFamily => UnknownOsFamilyError::new_err(message),
        ErrorKind::InvalidInstanceName => InvalidInstanceNameError::new_err(message),
        ErrorKind::PathOutsideRoot => PathOutsideRootError::new_err(message),
        ErrorKind::Io => FileAccessError::new_err(message),
        ErrorKind::ConfigParse => ConfigParseError::new_err(message),
        ErrorKind::NoIgniteNodeFolder => NoIgniteNodeFolderError::new_err(message),
        ErrorKind::NotAFolder => NotAFolderError::new_err(message),
        ErrorKind::ValidationFailed => ValidationFailedError::new_err(message),
        ErrorKind::NotEnoughSpace => NotEnoughSpaceError::new_err(message),
        ErrorKind::AlreadyExists => AlreadyExistsError::new_err(message),
        ErrorKind::BundleDamaged => BundleDamagedError::new_err(message),
        ErrorKind::UnknownAccount => UnknownAccountError::new_err(message),
        ErrorKind::SourceChanged => SourceChangedError::new_err(message),
        ErrorKind::CommandFailed => CommandFailedError::new_err(message),
        _ => CmwUpgradeError::new_err(message),
    }
}

/// Adds the exception classes to the module.
pub fn register_exceptions(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("CmwUpgradeError", py.get_type::<CmwUpgradeError>())?;
    module.add(
        "UnknownOsFamilyError",
        py.get_type::<UnknownOsFamilyError>(),
    )?;
    module.add(
        "InvalidInstanceNameError",
        py.get_type::<InvalidInstanceNameError>(),
    )?;
    module.add(
        "PathOutsideRootError",
        py.get_type::<PathOutsideRootError>(),
    )?;
    module.add("FileAccessError", py.get_type::<FileAccessError>())?;
    module.add("ConfigParseError", py.get_type::<ConfigParseError>())?;
    module.add(
        "NoIgniteNodeFolderError",
        py.get_type::<NoIgniteNodeFolderError>(),
    )?;
    module.add("NotAFolderError", py.get_type::<NotAFolderError>())?;
    module.add(
        "ValidationFailedError",
        py.get_type::<ValidationFailedError>(),
    )?;
    module.add("NotEnoughSpaceError", py.get_type::<NotEnoughSpaceError>())?;
    module.add("AlreadyExistsError", py.get_type::<AlreadyExistsError>())?;
    module.add("BundleDamagedError", py.get_type::<BundleDamagedError>())?;
    module.add("UnknownAccountError", py.get_type::<UnknownAccountError>())?;
    module.add("SourceChangedError", py.get_type::<SourceChangedError>())?;
    module.add("CommandFailedError", py.get_type::<CommandFailedError>())?;
    Ok(())
}
