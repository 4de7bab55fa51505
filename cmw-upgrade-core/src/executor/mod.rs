//! Every effect on a server goes through an [`Executor`], so one procedure
//! runs for real, over ssh, as a dry run, or against a test tree.
//!
//! - [`LocalExecutor`] does the real thing on this machine; file paths are server
//!   paths (`/var/lib/...`) placed under its root, and may not contain `..`.
//! - [`AgentExecutor`] does the same on another server through `cmw-upgrade
//!   agent` there, one JSON line per call ([`protocol`]); [`SshExecutor`]
//!   starts that agent over one OpenSSH master connection.
//! - [`DryRun`] reads through its inner executor but changes nothing: commands
//!   "succeed" with empty output, writes are dropped; the tool's read-only
//!   actions run for real, and a config migration runs in check mode, so a
//!   plan shows what they find.
//! - [`Recording`] forwards to its inner executor and keeps every effect, in
//!   order, as an [`Operation`]: `Recording<DryRun<LocalExecutor>>` is a plan,
//!   `Recording<LocalExecutor>` a transcript.
//!
//! The layer sits above the domain modules and the effect helpers (backup,
//! atomic writes) and below the procedure: nothing here imports the procedure.
//! Commands are argv vectors; nothing is ever handed to a shell.

pub mod agent;
mod dry_run;
mod local;
pub mod preflight;
pub mod protocol;
pub mod provision;
mod recording;
mod ssh;
mod tools;
pub mod transfer;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::exec::{CommandOutput, CommandRunner};
use crate::secrets::is_secret_key;
pub use crate::server::{DirEntry, NodeKind, ServerRead};

pub use agent::AgentExecutor;
pub use dry_run::DryRun;
pub use local::LocalExecutor;
pub use protocol::{ToolAction, ToolOutcome};
pub use recording::Recording;
pub use ssh::{SshExecutor, SshTarget};

/// A command to run: argv, environment, working folder, time limit, input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Variables added to the inherited environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working folder (a server path), or the executor's default.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Kill the command after this long.
    #[serde(default, with = "protocol::millis")]
    pub timeout: Option<Duration>,
    /// Bytes fed to its standard input (none: stdin is empty).
    #[serde(default, with = "protocol::base64_opt")]
    pub stdin: Option<Vec<u8>>,
    /// Indexes of `argv` elements that are server paths: a local executor
    /// places them under its root (and refuses `..`), like every file path.
    #[serde(default)]
    pub path_args: Vec<usize>,
    /// It only looks (`nginx -t`, `systemctl is-active`): a dry run runs it
    /// for real, so a plan meets the same failures as the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

impl CommandSpec {
    /// A command from its argv.
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        CommandSpec {
            argv: argv.into_iter().map(Into::into).collect(),
            ..CommandSpec::default()
        }
    }

    /// The same command with a working folder.
    #[must_use]
    pub fn in_folder(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// The same command with a time limit.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The same command with one more argument that is a server path.
    #[must_use]
    pub fn path_arg(mut self, path: impl Into<String>) -> Self {
        self.path_args.push(self.argv.len());
        self.argv.push(path.into());
        self
    }

    /// The same command with more plain arguments.
    #[must_use]
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// The same command, marked as one that only looks (a dry run runs it).
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The same command with one more environment variable.
    #[must_use]
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The command as an admin would type it: `KEY=value cmd 'arg with space'`,
    /// secret variables shown as `***`. For display only; never executed.
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = self
            .env
            .iter()
            .map(|(key, value)| {
                if is_secret_key(key) {
                    format!("{key}=***")
                } else {
                    format!("{key}={}", shell_quote(value))
                }
            })
            .collect();
        parts.extend(self.argv.iter().map(|arg| shell_quote(arg)));
        let command = parts.join(" ");
        match &self.cwd {
            Some(cwd) => format!("(cd {} && {command})", shell_quote(cwd)),
            None => command,
        }
    }
}

/// Quotes `text` for display the way a POSIX shell would read it back.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&byte));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// One effect, as a dry run plans it and a transcript records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// A command ran.
    Run {
        /// As an admin would type it (secrets masked).
        command: String,
    },
    /// A file was written atomically.
    WriteFile {
        /// Server path.
        path: String,
        /// Bytes written.
        bytes: u64,
        /// Permission bits.
        mode: u32,
    },
    /// A folder (and its parents) was created.
    CreateDir {
        /// Server path.
        path: String,
    },
    /// A file or tree was copied, attributes kept.
    Copy {
        /// Server path.
        from: String,
        /// Server path.
        to: String,
    },
    /// A file, link or tree was renamed.
    Rename {
        /// Server path.
        from: String,
        /// Server path.
        to: String,
    },
    /// A file, link or tree was removed (links not followed).
    Remove {
        /// Server path.
        path: String,
    },
    /// One of the tool's own actions (backup, restore, prune, checks), shown
    /// as the `cmw-upgrade` command that does the same by hand.
    Tool {
        /// The equivalent command line.
        command: String,
    },
    /// A tree was given to an owner (`chown -R`, links not followed).
    ChownTree {
        /// Server path.
        path: String,
        /// Owner user id.
        uid: u32,
        /// Owner group id.
        gid: u32,
    },
}

/// How a recorded operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum OpOutcome {
    /// It worked (a command exited 0).
    Ok,
    /// A command ran and exited non-zero, or was killed (`code` is then `None`).
    Exited {
        /// The exit code.
        code: Option<i32>,
    },
    /// It failed before finishing (did not start, timed out, refused, I/O).
    Failed {
        /// The error's kind (`command_failed`, `io`, ...).
        kind: String,
    },
}

/// An operation in a transcript, with how it ended (`None` in a plan, or when
/// the process died before it returned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// What was done.
    #[serde(flatten)]
    pub operation: Operation,
    /// How it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OpOutcome>,
}

impl Recorded {
    /// The operation as a transcript line: its command, and how it ended when
    /// that was not plain success.
    pub fn display(&self) -> String {
        let line = self.operation.display();
        match &self.outcome {
            Some(OpOutcome::Exited { code: Some(code) }) => format!("{line}  # exit {code}"),
            Some(OpOutcome::Exited { code: None }) => format!("{line}  # killed"),
            Some(OpOutcome::Failed { kind }) => format!("{line}  # failed: {kind}"),
            Some(OpOutcome::Ok) | None => line,
        }
    }
}

impl Operation {
    /// The operation as a line of a plan: the command, or its shell equivalent.
    pub fn display(&self) -> String {
        match self {
            Operation::Run { command } | Operation::Tool { command } => command.clone(),
            Operation::WriteFile { path, bytes, mode } => {
                format!(
                    "write {} ({bytes} bytes, mode {mode:04o})",
                    shell_quote(path)
                )
            }
            Operation::CreateDir { path } => format!("mkdir -p {}", shell_quote(path)),
            Operation::Copy { from, to } => {
                format!("cp -a {} {}", shell_quote(from), shell_quote(to))
            }
            Operation::Rename { from, to } => {
                format!("mv {} {}", shell_quote(from), shell_quote(to))
            }
            Operation::Remove { path } => format!("rm -rf {}", shell_quote(path)),
            Operation::ChownTree { path, uid, gid } => {
                format!("chown -R -h {uid}:{gid} {}", shell_quote(path))
            }
        }
    }
}

/// A held lock; released when dropped, and by the kernel when its holder
/// dies (a `kill -9` never leaves a stale lock).
pub struct LockGuard<'a> {
    release: Option<Box<dyn FnOnce() + Send + 'a>>,
}

impl<'a> LockGuard<'a> {
    /// A guard that runs `release` when dropped.
    pub fn new(release: impl FnOnce() + Send + 'a) -> Self {
        LockGuard {
            release: Some(Box::new(release)),
        }
    }

    /// A guard that holds nothing (a dry run's).
    pub fn none() -> Self {
        LockGuard { release: None }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LockGuard")
            .field("held", &self.release.is_some())
            .finish()
    }
}

/// Runs commands and touches files on one server; reads through its
/// [`ServerRead`] half. Paths are server paths.
pub trait Executor: ServerRead + Send + Sync {
    /// Runs a command and waits for it (up to its time limit).
    ///
    /// # Errors
    /// [`crate::Error::CommandFailed`] when it cannot start or times out; a non-zero
    /// exit is not an error here: it is in the output.
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput>;

    /// Writes a file atomically (temp file and rename) with this mode.
    ///
    /// # Errors
    /// [`crate::Error::PathOutsideRoot`]; [`crate::Error::Io`] (the old file is then unchanged).
    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()>;

    /// Creates a folder and its parents.
    ///
    /// # Errors
    /// [`crate::Error::PathOutsideRoot`]; [`crate::Error::Io`].
    fn create_dir_all(&self, path: &str) -> Result<()>;

    /// Copies a file or a whole tree, keeping modes, times and links; `to` must not exist.
    ///
    /// # Errors
    /// [`crate::Error::PathOutsideRoot`]; [`crate::Error::Io`] or [`crate::Error::CommandFailed`].
    fn copy(&self, from: &str, to: &str) -> Result<()>;

    /// Renames a file, link or folder.
    ///
    /// # Errors
    /// [`crate::Error::PathOutsideRoot`]; [`crate::Error::Io`].
    fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Removes a file, link or tree; links are removed, never followed.
    /// Nothing there is not an error.
    ///
    /// # Errors
    /// [`crate::Error::PathOutsideRoot`]; [`crate::Error::Io`].
    fn remove(&self, path: &str) -> Result<()>;

    /// Gives a tree to an owner, links included as links.
    ///
    /// # Errors
    /// [`crate::Error::PathOutsideRoot`]; [`crate::Error::Io`].
    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()>;

    /// Takes an exclusive lock on the file at `path` (made 0600 if missing)
    /// without waiting, and writes the holder's pid into it.
    ///
    /// # Errors
    /// [`crate::Error::Locked`] naming the holder's pid when another process
    /// holds it; [`crate::Error::Io`] when the file cannot be made.
    fn lock(&self, path: &str) -> Result<LockGuard<'_>>;

    /// Runs one of the tool's own actions on this server and returns its report;
    /// a dry run returns [`ToolOutcome::NotRun`].
    ///
    /// # Errors
    /// Whatever the action reports, with its kind (also across the wire).
    fn tool(&self, action: &ToolAction) -> Result<ToolOutcome>;

    /// Whether this executor only pretends (a dry run): steps then plan with
    /// placeholders where a real run would read what an earlier command made.
    fn is_dry_run(&self) -> bool {
        false
    }
}

// A borrowed executor is an executor, so wrappers can borrow (`Recording::new(&ssh)`).
impl<E: Executor + ?Sized> Executor for &E {
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput> {
        (**self).execute(command)
    }
    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()> {
        (**self).write_file(path, content, mode)
    }
    fn create_dir_all(&self, path: &str) -> Result<()> {
        (**self).create_dir_all(path)
    }
    fn copy(&self, from: &str, to: &str) -> Result<()> {
        (**self).copy(from, to)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        (**self).rename(from, to)
    }
    fn remove(&self, path: &str) -> Result<()> {
        (**self).remove(path)
    }
    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        (**self).chown_tree(path, uid, gid)
    }
    fn lock(&self, path: &str) -> Result<LockGuard<'_>> {
        (**self).lock(path)
    }
    fn tool(&self, action: &ToolAction) -> Result<ToolOutcome> {
        (**self).tool(action)
    }
    fn is_dry_run(&self) -> bool {
        (**self).is_dry_run()
    }
}

// Code written against `CommandRunner` (the config migration's `nginx -t`,
// the backup's snapshot) runs through any executor.
impl<E: Executor + ?Sized> CommandRunner for E {
    fn run(&self, argv: &[String]) -> Result<CommandOutput> {
        Executor::execute(self, &CommandSpec::new(argv.iter().cloned()))
    }
}

/// Whether the instance's service runs, from `systemctl is-active
/// comindware<i>` through `runner` (0 active; 3 inactive; 4 no such unit);
/// anything else, or no systemctl, is unknown.
pub fn service_state(
    runner: &dyn Executor,
    instance: &crate::instance::InstanceName,
) -> crate::backup::ServiceState {
    use crate::backup::ServiceState;
    let spec = CommandSpec::new(["systemctl", "is-active", &format!("comindware{instance}")])
        .with_timeout(std::time::Duration::from_secs(30))
        .read_only();
    match runner.execute(&spec).map(|output| output.code) {
        Ok(Some(0)) => ServiceState::Running,
        Ok(Some(3 | 4)) => ServiceState::Stopped,
        _ => ServiceState::Unknown,
    }
}

pub use crate::paths::place_under_root;

#[cfg(test)]
mod tests;
