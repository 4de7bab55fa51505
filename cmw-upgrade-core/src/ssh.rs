//! An [`Executor`] for another server, through the system's OpenSSH client.
//!
//! One master connection is opened per executor (`ControlMaster`) and every
//! command and file operation reuses it, so a step with dozens of operations
//! authenticates once. Host keys are checked (`BatchMode`, no prompts).
//!
//! The remote side runs every command through its login shell, which is how
//! ssh works; the command line is therefore built only from [`shell_quote`]d
//! argv elements, and the file operations are constant `sh -c` scripts that
//! take their paths as quoted positional arguments, so nothing from input is
//! ever interpreted as shell syntax.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::exec::CommandOutput;
use crate::executor::{place_under_root, shell_quote, CommandSpec, Executor, LocalExecutor};
use crate::procedure::tool::ToolAction;

/// Exit code the read script uses for "no such file".
const MISSING: i32 = 44;

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
}

/// Runs commands and file operations on another server over ssh.
#[derive(Debug)]
pub struct SshExecutor {
    target: SshTarget,
    control_dir: PathBuf,
    local: LocalExecutor,
}

impl SshExecutor {
    /// Opens the master connection to `target`.
    ///
    /// # Errors
    /// [`Error::CommandFailed`] when ssh cannot connect or authenticate (the
    /// message has ssh's own words); [`Error::Io`] for the control folder.
    pub fn connect(target: SshTarget) -> Result<SshExecutor> {
        if target.destination.starts_with('-') || target.destination.contains(char::is_whitespace) {
            return Err(Error::ValidationFailed {
                what: "checking the ssh destination".to_owned(),
                details: format!("{:?} is not a user@host", target.destination),
            });
        }
        // A private folder for the control socket (its path must stay short).
        let control_dir = crate::paths::private_temp_dir("cmw-upgrade-ssh")?;
        let executor = SshExecutor {
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
        Ok(executor)
    }

    /// The master connection's control socket.
    pub fn control_path(&self) -> PathBuf {
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

    /// Runs `remote` (already quoted) over the master connection.
    fn remote(
        &self,
        remote: String,
        stdin: Option<Vec<u8>>,
        timeout: Option<std::time::Duration>,
    ) -> Result<CommandOutput> {
        let mut argv = self.base_argv();
        argv.extend(["-o", "ControlMaster=no"].map(String::from));
        argv.push(self.target.destination.clone());
        argv.push("--".to_owned());
        argv.push(remote);
        let spec = CommandSpec {
            argv,
            stdin,
            timeout,
            ..CommandSpec::default()
        };
        let output = self.local.execute(&spec)?;
        if output.code == Some(255) {
            return Err(Error::CommandFailed {
                command: spec.display(),
                status: "exit code 255 (ssh)".to_owned(),
                output: output.stderr.trim().to_owned(),
                hint: "the connection to the other server failed; check it and rerun".to_owned(),
            });
        }
        Ok(output)
    }

    /// Runs a constant `sh -c` script with quoted arguments; a non-zero exit is an error.
    fn script(
        &self,
        what: &'static str,
        script: &str,
        arguments: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<CommandOutput> {
        let mut parts = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            shell_quote(script),
            "sh".to_owned(),
        ];
        parts.extend(arguments.iter().map(|argument| shell_quote(argument)));
        let output = self.remote(parts.join(" "), stdin, None)?;
        if output.success() || output.code == Some(MISSING) {
            return Ok(output);
        }
        Err(Error::CommandFailed {
            command: format!(
                "{what} {} on {}",
                arguments.join(" "),
                self.target.destination
            ),
            status: format!("exit code {:?}", output.code),
            output: output.stderr.trim().to_owned(),
            hint: "check the path and the permissions on the other server".to_owned(),
        })
    }

    /// Runs a script that changes something and has no input or output to keep.
    fn act(&self, what: &'static str, script: &str, arguments: &[&str]) -> Result<()> {
        self.script(what, script, arguments, None).map(drop)
    }

    fn checked<'a>(&self, path: &'a str) -> Result<&'a str> {
        place_under_root(Path::new("/"), path)?;
        Ok(path)
    }
}

impl Executor for SshExecutor {
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput> {
        let mut parts = Vec::new();
        if let Some(cwd) = &command.cwd {
            parts.push(format!("cd {} &&", shell_quote(self.checked(cwd)?)));
        }
        if !command.env.is_empty() {
            parts.push("env".to_owned());
            parts.extend(
                command
                    .env
                    .iter()
                    .map(|(key, value)| shell_quote(&format!("{key}={value}"))),
            );
        }
        if let Some(limit) = command.timeout {
            // Enforced on the other server too, so a hung command does not linger there.
            parts.extend(["timeout", "-k", "5"].map(String::from));
            parts.push(format!("{:.3}", limit.as_secs_f64()));
        }
        parts.extend(command.argv.iter().map(|arg| shell_quote(arg)));
        let local_limit = command
            .timeout
            .map(|limit| limit + std::time::Duration::from_secs(15));
        let output = self.remote(parts.join(" "), command.stdin.clone(), local_limit)?;
        if command.timeout.is_some() && output.code == Some(124) {
            return Err(Error::CommandFailed {
                command: command.display(),
                status: format!(
                    "timed out after {}s on {} and was killed",
                    command.timeout.unwrap_or_default().as_secs_f64(),
                    self.target.destination
                ),
                output: output.stderr.trim().to_owned(),
                hint: "check why it hangs (its logs), then rerun".to_owned(),
            });
        }
        Ok(output)
    }

    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let output = self.script(
            "read",
            "if [ -e \"$1\" ] || [ -L \"$1\" ]; then exec cat -- \"$1\"; else exit 44; fi",
            &[self.checked(path)?],
            None,
        )?;
        Ok((output.code != Some(MISSING)).then(|| output.stdout.into_bytes()))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let output = self.script(
            "test",
            "if [ -e \"$1\" ] || [ -L \"$1\" ]; then exit 0; else exit 44; fi",
            &[self.checked(path)?],
            None,
        )?;
        Ok(output.success())
    }

    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()> {
        let mode = format!("{mode:o}");
        self.script(
            "write",
            "set -e; umask 077; tmp=\"$1.cmw-upgrade.$$.tmp\"; cat > \"$tmp\"; chmod \"$2\" \"$tmp\"; sync \"$tmp\" 2>/dev/null || true; mv -f -- \"$tmp\" \"$1\"",
            &[self.checked(path)?, &mode],
            Some(content.to_vec()),
        )
        .map(drop)
    }

    fn create_dir_all(&self, path: &str) -> Result<()> {
        self.act(
            "mkdir -p",
            "exec mkdir -p -- \"$1\"",
            &[self.checked(path)?],
        )
    }

    fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.act("cp -a", "if [ -e \"$2\" ] || [ -L \"$2\" ]; then echo \"$2 already exists\" >&2; exit 1; fi; exec cp -a -T -- \"$1\" \"$2\"", &[self.checked(from)?, self.checked(to)?])
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.act(
            "mv",
            "exec mv -T -- \"$1\" \"$2\"",
            &[self.checked(from)?, self.checked(to)?],
        )
    }

    fn remove(&self, path: &str) -> Result<()> {
        // rm -rf removes links as links and never follows them.
        self.act("rm -rf", "exec rm -rf -- \"$1\"", &[self.checked(path)?])
    }

    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        let owner = format!("{uid}:{gid}");
        self.act(
            "chown -R -h",
            "exec chown -R -h -- \"$2\" \"$1\"",
            &[self.checked(path)?, &owner],
        )
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let output = self.script(
            "ls",
            "if [ -d \"$1\" ]; then exec ls -1A -- \"$1\"; else exit 44; fi",
            &[self.checked(path)?],
            None,
        )?;
        let mut names: Vec<String> = output.stdout.lines().map(str::to_owned).collect();
        names.sort();
        Ok(names)
    }

    /// Runs `cmw-upgrade --json ...` on the other server: the same binary does
    /// the same action there, and its JSON report comes back.
    fn tool(&self, action: &ToolAction) -> Result<serde_json::Value> {
        let spec = CommandSpec::new(action.argv().into_iter().take(1))
            .args(["--json".to_owned()])
            .args(action.argv().into_iter().skip(1));
        let output = self.execute(&spec)?;
        serde_json::from_str(&output.stdout).map_err(|_| Error::CommandFailed {
            command: spec.display(),
            status: format!("exit code {:?}", output.code),
            output: output.stderr.trim().to_owned(),
            hint: "install the same cmw-upgrade version on the other server".to_owned(),
        })
    }
}

impl Drop for SshExecutor {
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
