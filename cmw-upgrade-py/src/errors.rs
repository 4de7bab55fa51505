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
/// One table for every exception: its class, the kind it stands for, its
/// docstring. The conversion and the registration both read it, so a new
/// kind cannot get a class without being mapped (or the reverse).
macro_rules! exceptions {
    ($($class:ident = $kind:ident: $doc:literal;)*) => {
        $(create_exception!(cmw_upgrade, $class, CmwUpgradeError, $doc);)*

        /// Converts a core error into the matching Python exception, secrets masked.
        pub fn core_error(error: Error) -> PyErr {
            let message = cmw_upgrade_core::secrets::mask(&error.to_string()).into_owned();
            match error.kind() {
                $(ErrorKind::$kind => $class::new_err(message),)*
                _ => CmwUpgradeError::new_err(message),
            }
        }

        /// Adds the exception classes to the module.
        pub fn register_exceptions(module: &Bound<'_, PyModule>) -> PyResult<()> {
            let py = module.py();
            module.add("CmwUpgradeError", py.get_type::<CmwUpgradeError>())?;
            $(module.add(stringify!($class), py.get_type::<$class>())?;)*
            Ok(())
        }
    };
}

exceptions! {
    UnknownOsFamilyError = UnknownOsFamily: "os-release names no supported distribution.";
    InvalidInstanceNameError = InvalidInstanceName: "An instance name that is not safe in paths and commands.";
    PathOutsideRootError = PathOutsideRoot: "A configured path that would leave the target root.";
    FileAccessError = Io: "A file or folder could not be read, listed or changed.";
    ConfigParseError = ConfigParse: "A config file that does not parse.";
    NoIgniteNodeFolderError = NoIgniteNodeFolder: "A folder without Ignite node folders was given for pruning.";
    NotAFolderError = NotAFolder: "A folder was expected.";
    CheckFailedError = CheckFailed: "A check before writing failed (e.g. nginx -t); nothing was written.";
    StepFailedError = StepFailed: "An upgrade step failed after it changed something; resume or roll back.";
    StateConflictError = StateConflict: "The recorded run state does not allow this (another run's settings, no run to undo).";
    NoOsReleaseError = NoOsRelease: "No os-release file under the root; name the family.";
    BadRequestError = BadRequest: "A request to the agent that does not fit the protocol.";
    SystemFolderError = SystemFolder: "A data folder that is a system folder or directly inside one; nothing was changed.";
    InternalError = Internal: "A bug, or two sides running different versions.";
    NotEnoughSpaceError = NotEnoughSpace: "The destination has too little free space; nothing was written.";
    AlreadyExistsError = AlreadyExists: "Something is in the way that the tool will not overwrite.";
    LockedError = Locked: "Another run holds the instance's lock; retry when it is done.";
    BundleDamagedError = BundleDamaged: "A bundle does not match its manifest.";
    UnknownAccountError = UnknownAccount: "A user or group is not in the server's account files.";
    SourceChangedError = SourceChanged: "A source file changed while it was being copied.";
    CommandFailedError = CommandFailed: "An external command failed.";
    CancelledError = Cancelled: "The work stopped on request at a safe point; nothing was left half-done.";
    BadInputError = BadInput: "A value that names nothing there (a backend, a server); the message names what exists.";
    AuthenticationFailedError = AuthenticationFailed: "Authentication failed at a server (a DNS update's TSIG key is wrong, unknown or not allowed).";
}
