//! An [`Executor`] for another server: `cmw-upgrade agent` there, reached
//! through the system's OpenSSH client.
//!
//! One master connection is opened per executor (`ControlMaster`); the agent
//! runs as one session over it for the executor's whole life, and every
//! command, file operation and tool action is one request line to it
//! ([`protocol`](super::protocol)), so errors come back with their kind and a
//! step with dozens of operations authenticates once. Host keys are checked
//! (`BatchMode`, no prompts).
//!
//! The remote side runs the agent's command line through the login shell,
//! which is how ssh works; that line is built only from [`shell_quote`]d argv
//! elements. Nothing else is ever given to a shell there: requests are data.

// Only the ssh control socket's private folder on this machine.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;

use super::agent::AgentExecutor;
use super::protocol::{ToolAction, ToolOutcome};
use super::{shell_quote, CommandSpec, Executor, LocalExecutor, LockGuard};
use crate::error::{Error, Result};
use crate::exec::CommandOutput;
use crate::server::{DirEntry, ServerRead};

/// How to reach the other server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// `user@host` (or a `Host` alias from the ssh config).
    pub destination: String,
    /// The ssh port.
    pub port: u16,
    /// A private key to use instead of the agent's and the defaults.
    pub identity_file: Option<PathBuf>,
    /// A known-hosts file to check the host key against, instead of the user's.
    pub known_hosts_file: Option<PathBuf>,
    /// The agent's command line on the other server ([`SshTarget::DEFAULT_AGENT`]
    /// by default; a full path, or `--root DIR` for a mounted tree).
    pub agent: Vec<String>,
}

impl SshTarget {
    /// `cmw-upgrade agent`, found on the other server's PATH.
    pub const DEFAULT_AGENT: [&'static str; 2] = ["cmw-upgrade", "agent"];

    /// A target on the default port with the user's keys and known hosts.
    pub fn new(destination: impl Into<String>) -> SshTarget {
        SshTarget {
            destination: destination.into(),
            port: 22,
            identity_file: None,
            known_hosts_file: None,
            agent: SshTarget::DEFAULT_AGENT.map(String::from).to_vec(),
        }
    }
}

/// Runs commands, file operations and tool actions on another server, through
/// its agent over ssh.
#[derive(Debug)]
pub struct SshExecutor {
    // Dropped first: the agent's session ends before its master connection.
    agent: AgentExecutor,
    master: SshMaster,
}

/// The master connection; closed when dropped.
#[derive(Debug)]
struct SshMaster {
    target: SshTarget,
    control_dir: PathBuf,
    local: LocalExecutor,
}

impl SshExecutor {
    /// Opens the master connection to `target` and starts its agent there.
    ///
    /// # Errors
    /// [`Error::CommandFailed`] when ssh cannot connect or authenticate (the
    /// message has ssh's own words) or the agent does not answer (not
    /// installed there); [`Error::CheckFailed`] for a bad destination or an
    /// agent of another protocol version; [`Error::Io`] for the control folder.
    pub fn connect(target: SshTarget) -> Result<SshExecutor> {
        if target.destination.starts_with('-') || target.destination.contains(char::is_whitespace) {
            return Err(Error::CheckFailed {
                what: "checking the ssh destination".to_owned(),
                details: format!("{:?} is not a user@host", target.destination),
            });
        }
        if target.agent.is_empty() {
            return Err(Error::CheckFailed {
                what: "checking the agent's command".to_owned(),
                details: "it is empty".to_owned(),
            });
        }
        // A private folder for the control socket (its path must stay short).
        let control_dir = crate::paths::private_temp_dir("cmw-upgrade-ssh")?;
        let executor = SshMaster {
            target,
            control_dir,
            local: LocalExecutor::new("/"),
        };
        let mut argv = executor.base_argv();
        argv.extend(
            [
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPersist=yes",
                "-N",
                "-f",
            ]
            .map(String::from),
        );
        argv.push(executor.target.destination.clone());
        let spec = CommandSpec {
            argv,
            timeout: Some(std::time::Duration::from_secs(60)),
            ..CommandSpec::default()
        };
        let output = executor.local.execute(&spec)?;
        if !output.success() {
            return Err(Error::CommandFailed {
                command: spec.display(),
                status: format!("exit code {:?}", output.code),
                output: output.stderr.trim().to_owned(),
                hint: "check the address, the port, the key and the host key (known_hosts)"
                    .to_owned(),
            });
        }
        let mut argv = executor.base_argv();
        argv.extend(["-o", "ControlMaster=no"].map(String::from));
        argv.push(executor.target.destination.clone());
        argv.push("--".to_owned());
        argv.push(
            executor
                .target
                .agent
                .iter()
                .map(|arg| shell_quote(arg))
                .collect::<Vec<_>>()
                .join(" "),
        );
        let agent = AgentExecutor::spawn(&argv, executor.target.destination.clone())?;
        Ok(SshExecutor {
            agent,
            master: executor,
        })
    }

    /// The master connection's control socket.
    pub fn control_path(&self) -> PathBuf {
        self.master.control_path()
    }

    /// The agent's tool version on the other server.
    pub fn agent_version(&self) -> &str {
        self.agent.agent_version()
    }
}

impl SshMaster {
    fn control_path(&self) -> PathBuf {
        self.control_dir.join("master")
    }

    fn base_argv(&self) -> Vec<String> {
        let mut argv: Vec<String> = ["ssh", "-p", &self.target.port.to_string()]
            .map(String::from)
            .to_vec();
        let mut option = |text: String| {
            argv.push("-o".to_owned());
            argv.push(text);
        };
        option("BatchMode=yes".to_owned());
        // A dead network ends ssh (and so the agent's session) instead of hanging a run.
        option("ServerAliveInterval=15".to_owned());
        option("ServerAliveCountMax=4".to_owned());
        option("StrictHostKeyChecking=yes".to_owned());
        option(format!("ControlPath={}", self.control_path().display()));
        if let Some(known_hosts) = &self.target.known_hosts_file {
            option(format!("UserKnownHostsFile={}", known_hosts.display()));
        }
        if let Some(identity) = &self.target.identity_file {
            option("IdentitiesOnly=yes".to_owned());
            argv.push("-i".to_owned());
            argv.push(identity.display().to_string());
        }
        argv
    }
}

impl ServerRead for SshExecutor {
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.agent.read_file(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        self.agent.exists(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        self.agent.list_dir(path)
    }
    fn read_link(&self, path: &str) -> Result<Option<String>> {
        self.agent.read_link(path)
    }
}

impl Executor for SshExecutor {
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput> {
        self.agent.execute(command)
    }
    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()> {
        self.agent.write_file(path, content, mode)
    }
    fn create_dir_all(&self, path: &str) -> Result<()> {
        self.agent.create_dir_all(path)
    }
    fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.agent.copy(from, to)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.agent.rename(from, to)
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.agent.remove(path)
    }
    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        self.agent.chown_tree(path, uid, gid)
    }
    fn lock(&self, path: &str) -> Result<LockGuard<'_>> {
        self.agent.lock(path)
    }
    fn tool(&self, action: &ToolAction) -> Result<ToolOutcome> {
        self.agent.tool(action)
    }
}

impl Drop for SshMaster {
    fn drop(&mut self) {
        let mut argv = self.base_argv();
        argv.extend(["-O", "exit"].map(String::from));
        argv.push(self.target.destination.clone());
        let _ = self.local.execute(&CommandSpec {
            argv,
            timeout: Some(std::time::Duration::from_secs(10)),
            ..CommandSpec::default()
        });
        let _ = std::fs::remove_dir_all(&self.control_dir);
    }
}
