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
//! When the agent there is missing, speaks another protocol or is older than
//! this binary, this binary is copied there first ([`provision`](super::provision):
//! into `/var/lib/cmw-upgrade/bin`, checksum checked, moved into place) and
//! the agent started from the copy; [`SshTarget::provision`] turns that off.
//!
//! The remote side runs the agent's command line through the login shell,
//! which is how ssh works; that line is built only from [`shell_quote`]d argv
//! elements. Nothing else is ever given to a shell there: requests are data.

// Only the ssh control socket's private folder on this machine.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::time::Duration;

use super::agent::AgentExecutor;
use super::protocol::{ToolAction, ToolOutcome, PROTOCOL_VERSION};
use super::provision::{is_older, provision, Provisioned, RemoteCommands, DEFAULT_BIN_DIR};
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
    /// by default; a full path, or `--root DIR` for a mounted tree). Its first
    /// element is the program: a copied binary takes its place, the rest is kept.
    pub agent: Vec<String>,
    /// Copy this binary there when the agent is missing, speaks another
    /// protocol or is older (true by default).
    pub provision: bool,
    /// The folder of the copy there ([`DEFAULT_BIN_DIR`] by default): the
    /// ssh user's alone, on a path no other account can change.
    pub provision_dir: String,
    /// The binary to copy (this one, `current_exe`, by default): it must be a
    /// `cmw-upgrade` of this version that runs there (the shipped one is static).
    pub local_binary: Option<PathBuf>,
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
            provision: true,
            provision_dir: DEFAULT_BIN_DIR.to_owned(),
            local_binary: None,
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
    provisioned: Option<Provisioned>,
    /// The agent's command line as it was started there (the copy's path
    /// first when provisioned): the tool's other commands run the same way.
    agent_argv: Vec<String>,
}

/// The master connection; closed when dropped.
#[derive(Debug)]
struct SshMaster {
    target: SshTarget,
    control_dir: PathBuf,
    local: LocalExecutor,
}

impl SshExecutor {
    /// Opens the master connection to `target` and starts its agent there,
    /// copying this binary there first when the agent is missing, speaks
    /// another protocol or is older (unless [`SshTarget::provision`] is off).
    ///
    /// # Errors
    /// [`Error::CommandFailed`] when ssh cannot connect or authenticate (the
    /// message has ssh's own words) or the agent does not answer (not
    /// installed there, and not provisioned); [`Error::CheckFailed`] for a bad
    /// destination, a host key that does not match (nothing is sent), an
    /// agent of another protocol (or an older one) that is not replaced: both
    /// versions are named, with why the copy failed,
    /// an unsafe folder for the copy or a copy whose checksum differs;
    /// [`Error::Io`] for the control folder or reading this binary.
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
        // The agent's session holds the master open while the executor lives;
        // when this process dies (kill -9 of a control point), the master
        // follows its last session within half a minute instead of lingering.
        argv.extend(
            [
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPersist=30",
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
        if !output.success() && output.stderr.contains("Host key verification failed") {
            return Err(Error::CheckFailed {
                what: format!(
                    "checking the host key of {} (port {})",
                    executor.target.destination, executor.target.port
                ),
                details: format!(
                    "it does not match the known_hosts{} ({}): compare the server's key \
                     fingerprint (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there) with \
                     the expected one, then fix known_hosts; nothing was sent",
                    executor
                        .target
                        .known_hosts_file
                        .as_ref()
                        .map(|path| format!(" file {}", path.display()))
                        .unwrap_or_default(),
                    output.stderr.trim()
                ),
            });
        }
        if !output.success() {
            return Err(Error::CommandFailed {
                command: spec.display(),
                status: format!("exit code {:?}", output.code),
                output: output.stderr.trim().to_owned(),
                hint: "check the address, the port, the key and the host key (known_hosts)"
                    .to_owned(),
            });
        }
        let label = executor.target.destination.clone();
        let agent_argv = executor.target.agent.clone();
        let first = AgentExecutor::spawn(&executor.remote_argv(&agent_argv), &label);
        let why = match first {
            Ok(agent)
                if !executor.target.provision
                    || !is_older(agent.agent_version(), crate::VERSION) =>
            {
                return Ok(SshExecutor {
                    agent,
                    master: executor,
                    provisioned: None,
                    agent_argv,
                })
            }
            Ok(agent) => Replace::Older(agent.agent_version().to_owned()),
            Err(error) => match Replace::from_error(error) {
                Ok(why) if executor.target.provision => why,
                Ok(why) => return Err(why.incompatible(&label, None)),
                Err(error) => return Err(error),
            },
        };
        let provisioned = match provision(
            &executor,
            &executor.target.provision_dir,
            executor.target.local_binary.as_deref(),
        ) {
            Ok(provisioned) => provisioned,
            Err(error) => return Err(why.incompatible(&label, Some(error))),
        };
        let mut argv = executor.target.agent.clone();
        argv[0] = provisioned.path.clone();
        let agent = AgentExecutor::spawn(&executor.remote_argv(&argv), &label)?;
        Ok(SshExecutor {
            agent,
            master: executor,
            provisioned: Some(provisioned),
            agent_argv: argv,
        })
    }

    /// What was copied to the other server when it connected, if anything
    /// ([`Provisioned::note`] is a line for the admin).
    pub fn provisioned(&self) -> Option<&Provisioned> {
        self.provisioned.as_ref()
    }

    /// The protocol the agent there speaks (this binary's: another is refused).
    pub fn agent_protocol(&self) -> u32 {
        PROTOCOL_VERSION
    }

    /// The server, as given to ssh.
    pub fn destination(&self) -> &str {
        &self.master.target.destination
    }

    /// The ssh port of the server.
    pub fn port(&self) -> u16 {
        self.master.target.port
    }

    /// The master connection's control socket.
    pub fn control_path(&self) -> PathBuf {
        self.master.control_path()
    }

    /// A command running `argv` on the other server as one more session over
    /// the master connection (no new authentication), for work that streams
    /// through its stdin and stdout (a bundle transfer) instead of one agent
    /// request. `argv` is shell-quoted element by element for the login shell
    /// there, as the agent's own command line is; stdio is the caller's to set.
    ///
    /// The ssh process dies with the thread that starts it: a transfer's two
    /// sessions feed each other through a pipe that does not pass through this
    /// process, so without that, a killed control point would leave them
    /// running (and racing its rerun).
    pub fn command(&self, argv: &[String]) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let argv = self.master.remote_argv(argv);
        let mut command = std::process::Command::new(&argv[0]);
        command.args(&argv[1..]);
        // The starter's pid, to tell in the child whether it died before the
        // signal was asked for (then the child must not run on).
        let starter = rustix::process::getpid();
        // SAFETY: the closure runs in the child between fork and exec, and
        // only makes prctl(2) and getppid(2) calls, which are
        // async-signal-safe; it allocates nothing and touches no lock.
        unsafe {
            command.pre_exec(move || {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)?;
                if rustix::process::getppid() != Some(starter) {
                    return Err(std::io::Error::other("the starter died"));
                }
                Ok(())
            });
        }
        command
    }

    /// The argv of this tool's command `args` on the other server: the agent's
    /// command line (the copied binary's path when it was provisioned, and its
    /// options, such as `--root`) with its trailing `agent` replaced by `args`,
    /// so the other command runs the same binary the same way.
    ///
    /// # Errors
    /// [`Error::CheckFailed`] when the agent's command line does not end with
    /// `agent` (then the tool's other commands cannot be derived from it).
    pub fn tool_argv(&self, args: &[&str]) -> Result<Vec<String>> {
        match self.agent_argv.split_last() {
            Some((last, program)) if last == "agent" && !program.is_empty() => Ok(program
                .iter()
                .cloned()
                .chain(args.iter().map(|arg| (*arg).to_owned()))
                .collect()),
            _ => Err(Error::CheckFailed {
                what: format!("running cmw-upgrade's commands on {}", self.destination()),
                details: format!(
                    "the agent's command line ({}) does not end with `agent`; give it as \
                     PROGRAM [OPTIONS] agent",
                    remote_command_line(&self.agent_argv)
                ),
            }),
        }
    }

    /// The agent's tool version on the other server.
    pub fn agent_version(&self) -> &str {
        self.agent.agent_version()
    }
}

/// The one line ssh gives to the login shell on the other server for `argv`:
/// every element [`shell_quote`]d, so the shell there splits it back into
/// exactly `argv`. The only place a remote command line is made.
pub(crate) fn remote_command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| shell_quote(arg))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why the agent there is replaced by a copy of this binary.
enum Replace {
    /// It did not start or answer (not installed, or broken).
    Missing(Error),
    /// It speaks another protocol (its own words name its version).
    OtherProtocol(String),
    /// It is of this protocol but older (its version).
    Older(String),
}

impl Replace {
    /// Sorts a failed start: `Err` for failures a copy would not cure.
    fn from_error(error: Error) -> std::result::Result<Replace, Error> {
        match error {
            Error::CommandFailed { .. } => Ok(Replace::Missing(error)),
            // An agent of an older protocol refuses the greeting of this one.
            Error::Remote {
                kind: crate::error::ErrorKind::BadRequest,
                ref message,
                ..
            } if message.contains("protocol") => Ok(Replace::OtherProtocol(message.clone())),
            // It answered the greeting with another protocol.
            Error::CheckFailed { ref details, .. } if details.contains("speaking protocol") => {
                Ok(Replace::OtherProtocol(details.clone()))
            }
            other => Err(other),
        }
    }

    /// The error for an agent that does not fit and was not replaced (for a
    /// missing one, the copy's error, or the failed start's without a copy).
    fn incompatible(self, server: &str, copy_failed: Option<Error>) -> Error {
        let theirs = match self {
            Replace::Missing(error) => return copy_failed.unwrap_or(error),
            Replace::OtherProtocol(words) => format!("it answered: {words}"),
            Replace::Older(version) => format!("it is cmw-upgrade {version}"),
        };
        let next = match copy_failed {
            Some(error) => format!(
                "copying this binary there failed ({error}); fix that, or install cmw-upgrade {} there",
                crate::VERSION
            ),
            None => format!(
                "install cmw-upgrade {} there, or allow copying this binary there (provisioning)",
                crate::VERSION
            ),
        };
        Error::CheckFailed {
            what: format!("greeting the agent on {server}"),
            details: format!(
                "{theirs}; this is cmw-upgrade {} speaking protocol {PROTOCOL_VERSION}: {next}",
                crate::VERSION
            ),
        }
    }
}

impl RemoteCommands for SshMaster {
    fn server(&self) -> &str {
        &self.target.destination
    }

    fn run(
        &self,
        argv: &[&str],
        stdin: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<CommandOutput> {
        let argv: Vec<String> = argv.iter().map(|arg| (*arg).to_owned()).collect();
        self.local.execute(&CommandSpec {
            argv: self.remote_argv(&argv),
            timeout: Some(timeout),
            stdin,
            ..CommandSpec::default()
        })
    }
}

impl SshMaster {
    fn control_path(&self) -> PathBuf {
        self.control_dir.join("master")
    }

    /// `ssh … host -- ARGV`, every element shell-quoted for the login shell
    /// there, over the master connection.
    fn remote_argv(&self, remote: &[String]) -> Vec<String> {
        let mut argv = self.base_argv();
        argv.extend(["-o", "ControlMaster=no"].map(String::from));
        argv.push(self.target.destination.clone());
        argv.push("--".to_owned());
        argv.push(remote_command_line(remote));
        argv
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
