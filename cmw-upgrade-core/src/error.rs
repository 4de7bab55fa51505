//! The one error type of the core.
//!
//! Every message says what failed, where, and what the admin can do about it,
//! because these messages end up verbatim on an admin's terminal at 3 a.m.

use std::io;
use std::path::{Path, PathBuf};

/// Result alias used across the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `/etc/os-release` names a distribution none of the families covers.
    #[error(
        "cannot tell the OS family: {found}; supported are Astra Linux, Ubuntu, Debian (deb), \
         RED OS, Rocky and other RHEL-likes (rpm), Alt Server (alt); if this distribution is \
         compatible with one of them, name that family explicitly (--family deb|rpm|alt)"
    )]
    UnknownOsFamily {
        /// What the file said (`ID=... ID_LIKE=...`), or why nothing was found.
        found: String,
    },

    /// An instance name that could break out of a path or a command line.
    #[error(
        "invalid instance name {name:?}: {reason}; use 1-64 ASCII letters, digits, '_' or '-', \
         not starting with '-'"
    )]
    InvalidInstanceName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A path (usually read from a config file) that would leave the target root.
    #[error("path {path:?} from {origin} {reason}; fix the value or pick another --root")]
    PathOutsideRoot {
        /// The path as written.
        path: String,
        /// Where the path came from (a directive and file, or "default").
        origin: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A file or folder could not be read, listed or changed.
    #[error("cannot {action} {path}: {source}", path = .path.display())]
    Io {
        /// What the tool was doing ("read", "list", "remove", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A config file that does not parse.
    #[error("{path}{line}: {message}", path = .path.display(), line = .line.map(|l| format!(":{l}")).unwrap_or_default())]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// 1-based line, when the parser knows it.
        line: Option<usize>,
        /// What the parser said.
        message: String,
    },

    /// `prune-caches` was pointed at a folder without Ignite node folders.
    #[error(
        "no Ignite node folder (a folder holding cacheGroup-* entries) under {target}; \
         point at the instance's Database folder or an unpacked backup of it",
        target = .target.display()
    )]
    NoIgniteNodeFolder {
        /// The folder that was searched.
        target: PathBuf,
    },

    /// A check before writing failed; nothing was written.
    #[error("{what} failed: {details}; nothing was written")]
    CheckFailed {
        /// What was checked.
        what: String,
        /// What the check said.
        details: String,
    },

    /// A step of the upgrade failed after it changed something; the run state
    /// says what, and the message says how to resume or undo.
    #[error("step {step} of {instance} failed: {details}")]
    StepFailed {
        /// The instance.
        instance: String,
        /// The step's name.
        step: String,
        /// What went wrong and what to do (resume, or the rollback command).
        details: String,
    },

    /// The recorded run state does not allow this (another run's settings, no run to undo).
    #[error("{details}")]
    StateConflict {
        /// What is recorded and what to do about it.
        details: String,
    },

    /// No os-release file under the root.
    #[error(
        "cannot read the OS release file: tried {tried}; pass --os-release FILE or --family deb|rpm|alt",
        tried = .tried.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(" and ")
    )]
    NoOsRelease {
        /// The paths tried.
        tried: Vec<PathBuf>,
    },

    /// A data folder (from a config, a bundle or a link) that is a system
    /// folder or directly in one; nothing was changed.
    #[error(
        "{origin} names {path}, which is a system folder or directly inside one; the tool never \
         moves, replaces or gives away such a folder: give the instance a folder of its own \
         (e.g. /var/lib/comindware/<instance>/Database, or /data/<instance>/Database)"
    )]
    SystemFolder {
        /// The path as written.
        path: String,
        /// Where it came from (a directive and file, a link).
        origin: String,
    },

    /// A request to the agent that does not fit the protocol.
    #[error("bad request: {details}")]
    BadRequest {
        /// What is wrong with it.
        details: String,
    },

    /// An error on another server, its kind kept across the wire.
    #[error("on {server}: {message}")]
    Remote {
        /// The server (as given to the executor).
        server: String,
        /// The kind the other side reported.
        kind: ErrorKind,
        /// The other side's message.
        message: String,
    },

    /// Something that should not happen: a bug, or two sides of different versions.
    #[error("internal error: {details}; please report it")]
    Internal {
        /// What happened.
        details: String,
    },

    /// A folder was expected.
    #[error("{path} is not a folder; {hint}", path = .path.display())]
    NotAFolder {
        /// The path.
        path: PathBuf,
        /// What to pass instead.
        hint: &'static str,
    },

    /// The destination has too little free space for a backup; nothing was written.
    #[error(
        "not enough free space at {path}: {needed_text} needed ({data_text} of data plus a \
         margin for file-system overhead), {available_text} available; free space there or \
         pick another destination (--no-space-check skips this, e.g. on compressing file systems)",
        path = .path.display(),
        needed_text = crate::units::human_bytes(*.needed),
        data_text = crate::units::human_bytes(*.data),
        available_text = crate::units::human_bytes(*.available)
    )]
    NotEnoughSpace {
        /// The folder whose file system was checked.
        path: PathBuf,
        /// Bytes the copy needs, margin included.
        needed: u64,
        /// Bytes of file data to copy.
        data: u64,
        /// Bytes available to the tool.
        available: u64,
    },

    /// Something is in the way that the tool will not overwrite or remove.
    #[error("{path} already exists; {hint}", path = .path.display())]
    AlreadyExists {
        /// The path in the way.
        path: PathBuf,
        /// What to do.
        hint: &'static str,
    },

    /// Another run holds the instance's lock: retry when it is done.
    #[error("{path} is locked by another cmw-upgrade run ({holder}); wait for it to finish, or see `cmw-upgrade status`", path = .path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it (`process 1234`).
        holder: String,
    },

    /// A bundle whose files do not match its manifest.
    #[error("the bundle {bundle} is damaged: {details}; make a new backup or use another copy", bundle = .bundle.display())]
    BundleDamaged {
        /// The bundle folder.
        bundle: PathBuf,
        /// What does not match.
        details: String,
    },

    /// A user or group name that the server does not know.
    #[error("{kind} {name:?} is not in {file}; create it or fix the service unit's User=/Group=", file = .file.display())]
    UnknownAccount {
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
        /// The account database read.
        file: PathBuf,
    },

    /// A source file changed under the tool while it was being copied.
    #[error(
        "{path} changed during the copy: {details}; the running instance writes there: rerun, \
         or stop the instance (or use --method snapshot) for a stable source",
        path = .path.display()
    )]
    SourceChanged {
        /// The file.
        path: PathBuf,
        /// What happened to it.
        details: String,
    },

    /// An external command failed.
    #[error("`{command}` failed ({status}): {output}; {hint}")]
    CommandFailed {
        /// The command line, for the admin to rerun by hand.
        command: String,
        /// `exit code N` or `killed by a signal`, or why it did not start.
        status: String,
        /// The end of its output.
        output: String,
        /// What to do.
        hint: String,
    },

    /// A value given by the admin that names nothing there (a backend, a
    /// server); the message names what exists.
    #[error("{details}")]
    BadInput {
        /// What was given, what exists, and what to pass instead.
        details: String,
    },

    /// A server did not accept who the tool says it is (a DNS update whose
    /// TSIG key is wrong, unknown, or not allowed to change the zone).
    #[error("authentication failed at {server}: {details}")]
    AuthenticationFailed {
        /// The server (`address:port`).
        server: String,
        /// What it said, and what to check.
        details: String,
    },

    /// The work was asked to stop (Ctrl-C) and stopped at a safe point.
    #[error("stopped on request at a safe point; nothing was left half-done: {left}")]
    Cancelled {
        /// What the stop leaves behind, and how to go on from there.
        left: String,
    },
}

/// The kind of an [`Error`], for mapping to exit codes and Python exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::UnknownOsFamily`].
    UnknownOsFamily,
    /// [`Error::InvalidInstanceName`].
    InvalidInstanceName,
    /// [`Error::PathOutsideRoot`].
    PathOutsideRoot,
    /// [`Error::Io`].
    Io,
    /// [`Error::ConfigParse`].
    ConfigParse,
    /// [`Error::NoIgniteNodeFolder`].
    NoIgniteNodeFolder,
    /// [`Error::NotAFolder`].
    NotAFolder,
    /// [`Error::CheckFailed`].
    CheckFailed,
    /// [`Error::StepFailed`].
    StepFailed,
    /// [`Error::StateConflict`].
    StateConflict,
    /// [`Error::NoOsRelease`].
    NoOsRelease,
    /// [`Error::BadRequest`].
    BadRequest,
    /// [`Error::SystemFolder`].
    SystemFolder,
    /// [`Error::Internal`].
    Internal,
    /// [`Error::NotEnoughSpace`].
    NotEnoughSpace,
    /// [`Error::AlreadyExists`].
    AlreadyExists,
    /// [`Error::Locked`].
    Locked,
    /// [`Error::BundleDamaged`].
    BundleDamaged,
    /// [`Error::UnknownAccount`].
    UnknownAccount,
    /// [`Error::SourceChanged`].
    SourceChanged,
    /// [`Error::CommandFailed`].
    CommandFailed,
    /// [`Error::Cancelled`].
    Cancelled,
    /// [`Error::BadInput`].
    BadInput,
    /// [`Error::AuthenticationFailed`].
    AuthenticationFailed,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnknownOsFamily { .. } => ErrorKind::UnknownOsFamily,
            Error::InvalidInstanceName { .. } => ErrorKind::InvalidInstanceName,
            Error::PathOutsideRoot { .. } => ErrorKind::PathOutsideRoot,
            Error::Io { .. } => ErrorKind::Io,
            Error::ConfigParse { .. } => ErrorKind::ConfigParse,
            Error::NoIgniteNodeFolder { .. } => ErrorKind::NoIgniteNodeFolder,
            Error::NotAFolder { .. } => ErrorKind::NotAFolder,
            Error::CheckFailed { .. } => ErrorKind::CheckFailed,
            Error::StepFailed { .. } => ErrorKind::StepFailed,
            Error::StateConflict { .. } => ErrorKind::StateConflict,
            Error::NoOsRelease { .. } => ErrorKind::NoOsRelease,
            Error::BadRequest { .. } => ErrorKind::BadRequest,
            Error::SystemFolder { .. } => ErrorKind::SystemFolder,
            Error::Remote { kind, .. } => *kind,
            Error::Internal { .. } => ErrorKind::Internal,
            Error::NotEnoughSpace { .. } => ErrorKind::NotEnoughSpace,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::BundleDamaged { .. } => ErrorKind::BundleDamaged,
            Error::UnknownAccount { .. } => ErrorKind::UnknownAccount,
            Error::SourceChanged { .. } => ErrorKind::SourceChanged,
            Error::CommandFailed { .. } => ErrorKind::CommandFailed,
            Error::Cancelled { .. } => ErrorKind::Cancelled,
            Error::BadInput { .. } => ErrorKind::BadInput,
            Error::AuthenticationFailed { .. } => ErrorKind::AuthenticationFailed,
        }
    }

    /// The file or folder the error is about, where it names one (for
    /// callers that act on it: the Python module's `.path`, `.filename`).
    pub fn path(&self) -> Option<String> {
        let path = match self {
            Error::PathOutsideRoot { path, .. } | Error::SystemFolder { path, .. } => {
                return Some(path.clone())
            }
            Error::Io { path, .. }
            | Error::ConfigParse { path, .. }
            | Error::NotAFolder { path, .. }
            | Error::NotEnoughSpace { path, .. }
            | Error::AlreadyExists { path, .. }
            | Error::Locked { path, .. }
            | Error::SourceChanged { path, .. } => path,
            Error::NoIgniteNodeFolder { target, .. } => target,
            Error::BundleDamaged { bundle, .. } => bundle,
            Error::UnknownAccount { file, .. } => file,
            _ => return None,
        };
        Some(path.display().to_string())
    }

    /// The operating system's error number behind the error, where there is
    /// one: the I/O error's own, or the one its kind stands for (a path in
    /// the way is EEXIST, a full disk ENOSPC, a file where a folder was
    /// expected ENOTDIR).
    pub fn os_error_number(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error().or(match source.kind() {
                io::ErrorKind::NotFound => Some(libc::ENOENT),
                io::ErrorKind::PermissionDenied => Some(libc::EACCES),
                io::ErrorKind::AlreadyExists => Some(libc::EEXIST),
                _ => None,
            }),
            Error::AlreadyExists { .. } => Some(libc::EEXIST),
            Error::NotEnoughSpace { .. } => Some(libc::ENOSPC),
            Error::NotAFolder { .. } => Some(libc::ENOTDIR),
            _ => None,
        }
    }

    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

impl ErrorKind {
    /// Every kind, for name look-ups and tests.
    pub const ALL: [ErrorKind; 24] = [
        ErrorKind::UnknownOsFamily,
        ErrorKind::InvalidInstanceName,
        ErrorKind::PathOutsideRoot,
        ErrorKind::Io,
        ErrorKind::ConfigParse,
        ErrorKind::NoIgniteNodeFolder,
        ErrorKind::NotAFolder,
        ErrorKind::CheckFailed,
        ErrorKind::StepFailed,
        ErrorKind::StateConflict,
        ErrorKind::NoOsRelease,
        ErrorKind::BadRequest,
        ErrorKind::SystemFolder,
        ErrorKind::Internal,
        ErrorKind::NotEnoughSpace,
        ErrorKind::AlreadyExists,
        ErrorKind::Locked,
        ErrorKind::BundleDamaged,
        ErrorKind::UnknownAccount,
        ErrorKind::SourceChanged,
        ErrorKind::CommandFailed,
        ErrorKind::Cancelled,
        ErrorKind::BadInput,
        ErrorKind::AuthenticationFailed,
    ];

    /// The kind called `name` ([`ErrorKind::as_str`]), e.g. from another server's answer.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// A stable snake_case name, used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UnknownOsFamily => "unknown_os_family",
            ErrorKind::InvalidInstanceName => "invalid_instance_name",
            ErrorKind::PathOutsideRoot => "path_outside_root",
            ErrorKind::Io => "io",
            ErrorKind::ConfigParse => "config_parse",
            ErrorKind::NoIgniteNodeFolder => "no_ignite_node_folder",
            ErrorKind::NotAFolder => "not_a_folder",
            ErrorKind::CheckFailed => "check_failed",
            ErrorKind::StepFailed => "step_failed",
            ErrorKind::StateConflict => "state_conflict",
            ErrorKind::NoOsRelease => "no_os_release",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::SystemFolder => "system_folder",
            ErrorKind::Internal => "internal",
            ErrorKind::NotEnoughSpace => "not_enough_space",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Locked => "locked",
            ErrorKind::BundleDamaged => "bundle_damaged",
            ErrorKind::UnknownAccount => "unknown_account",
            ErrorKind::SourceChanged => "source_changed",
            ErrorKind::CommandFailed => "command_failed",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::BadInput => "bad_input",
            ErrorKind::AuthenticationFailed => "authentication_failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_name_that_reads_back() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(ErrorKind::from_name("validation_failed"), None);
    }
}
