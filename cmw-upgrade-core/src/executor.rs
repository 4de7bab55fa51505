//! Every effect of the upgrade procedure goes through an [`Executor`], so one
//! procedure runs for real, as a dry run, or against a test tree.
//!
//! - [`LocalExecutor`] does the real thing on this machine; file paths are server
//!   paths (`/var/lib/...`) placed under its root, and may not contain `..`.
//! - [`DryRun`] reads through its inner executor but changes nothing: commands
//!   "succeed" with empty output, writes are dropped.
//! - [`Recording`] forwards to its inner executor and keeps every effect, in
//!   order, as an [`Operation`]: `Recording<DryRun<LocalExecutor>>` is a plan,
//!   `Recording<LocalExecutor>` a transcript.
//!
//! Commands are argv vectors; nothing is ever handed to a shell.

use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::atomic::{write_atomic, FileAttributes};
use crate::config::secrets::is_secret_key;
use crate::error::{Error, Result};
use crate::exec::{CommandOutput, CommandRunner};
use crate::paths::under_root;
use crate::procedure::tool::{run_tool_locally, ToolAction};

/// A command to run: argv, environment, working folder, time limit, input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Working folder (a server path), or the executor's default.
    pub cwd: Option<String>,
    /// Kill the command after this long.
    pub timeout: Option<Duration>,
    /// Bytes fed to its standard input (none: stdin is empty).
    pub stdin: Option<Vec<u8>>,
    /// Indexes of `argv` elements that are server paths: a local executor
    /// places them under its root (and refuses `..`), like every file path.
    pub path_args: Vec<usize>,
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

/// Runs commands and touches files on one server. Paths are server paths.
pub trait Executor: Send + Sync {
    /// Runs a command and waits for it (up to its time limit).
    ///
    /// # Errors
    /// [`Error::CommandFailed`] when it cannot start or times out; a non-zero
    /// exit is not an error here: it is in the output.
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput>;

    /// Reads a whole file; `None` when it does not exist.
    ///
    /// # Errors
    /// [`Error::PathOutsideRoot`] for an unsafe path; [`Error::Io`].
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>>;

    /// Whether something (a file, folder or link) is at `path`.
    ///
    /// # Errors
    /// [`Error::PathOutsideRoot`] for an unsafe path.
    fn exists(&self, path: &str) -> Result<bool>;

    /// Writes a file atomically (temp file and rename) with this mode.
    ///
    /// # Errors
    /// [`Error::PathOutsideRoot`]; [`Error::Io`] (the old file is then unchanged).
    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()>;

    /// Creates a folder and its parents.
    ///
    /// # Errors
    /// [`Error::PathOutsideRoot`]; [`Error::Io`].
    fn create_dir_all(&self, path: &str) -> Result<()>;

    /// Copies a file or a whole tree, keeping modes, times and links; `to` must not exist.
    ///
    /// # Errors
    /// [`Error::PathOutsideRoot`]; [`Error::Io`] or [`Error::CommandFailed`].
    fn copy(&self, from: &str, to: &str) -> Result<()>;

    /// Renames a file, link or folder.
    ///
    /// # Errors
    /// [`Error::PathOutsideRoot`]; [`Error::Io`].
    fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Removes a file, link or tree; links are removed, never followed.
    /// Nothing there is not an error.
    ///
    /// # Errors
    /// [`Error::PathOutsideRoot`]; [`Error::Io`].
    fn remove(&self, path: &str) -> Result<()>;

    /// Gives a tree to an owner, links included as links.
    ///
    /// # Errors
    /// [`Error::PathOutsideRoot`]; [`Error::Io`].
    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()>;

    /// The names in a folder, sorted; empty when it does not exist.
    ///
    /// # Errors
    /// [`Error::PathOutsideRoot`]; [`Error::Io`].
    fn list_dir(&self, path: &str) -> Result<Vec<String>>;

    /// Runs one of the tool's own actions on this server and returns its JSON report.
    ///
    /// # Errors
    /// Whatever the action reports; [`Error::CommandFailed`] over ssh.
    fn tool(&self, action: &ToolAction) -> Result<serde_json::Value>;

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
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        (**self).read_file(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        (**self).exists(path)
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
    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        (**self).list_dir(path)
    }
    fn tool(&self, action: &ToolAction) -> Result<serde_json::Value> {
        (**self).tool(action)
    }
    fn is_dry_run(&self) -> bool {
        (**self).is_dry_run()
    }
}

// Code written against `CommandRunner` (the config migration's `nginx -t`,
// the backup's snapshot) runs through any executor.
impl<E: Executor + ?Sized> CommandRunner for E {
    fn run(&self, argv: &[String]) -> std::io::Result<CommandOutput> {
        Executor::execute(self, &CommandSpec::new(argv.iter().cloned()))
            .map_err(|error| std::io::Error::other(error.to_string()))
    }
}

/// A server path made safe: absolute, no `..`, no NUL; placed under `root`.
///
/// # Errors
/// [`Error::PathOutsideRoot`] saying why.
pub fn place_under_root(root: &Path, server_path: &str) -> Result<PathBuf> {
    // Stricter than config paths: the procedure never needs `..`, so none is allowed.
    if Path::new(server_path)
        .components()
        .any(|component| component == Component::ParentDir)
    {
        return Err(Error::PathOutsideRoot {
            path: server_path.to_owned(),
            origin: "the procedure".to_owned(),
            reason: "contains '..'",
        });
    }
    under_root(root, server_path, "the procedure")
}

/// The real thing, on this machine, with server paths under `root`.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    root: PathBuf,
    search_path: Option<std::ffi::OsString>,
}

impl LocalExecutor {
    /// An executor for the server under `root` (`/` on a live server).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalExecutor {
            root: root.into(),
            search_path: None,
        }
    }

    /// The same executor looking up programs in `folder` first (the
    /// simulator's stand-ins for `systemctl` and the package tools).
    #[must_use]
    pub fn with_programs_from(mut self, folder: &Path) -> Self {
        let mut search = folder.as_os_str().to_owned();
        if let Some(path) = std::env::var_os("PATH") {
            search.push(":");
            search.push(path);
        }
        self.search_path = Some(search);
        self
    }

    /// The root every server path is placed under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn place(&self, path: &str) -> Result<PathBuf> {
        place_under_root(&self.root, path)
    }
}

fn command_failed(command: &CommandSpec, status: String, output: String, hint: &str) -> Error {
    Error::CommandFailed {
        command: command.display(),
        status,
        output,
        hint: hint.to_owned(),
    }
}

impl Executor for LocalExecutor {
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput> {
        let Some((program, args)) = command.argv.split_first() else {
            return Err(command_failed(
                command,
                "did not start".into(),
                "empty command".into(),
                "this is a bug",
            ));
        };
        let mut placed_args = Vec::with_capacity(args.len());
        for (index, arg) in args.iter().enumerate() {
            if command.path_args.contains(&(index + 1)) {
                placed_args.push(self.place(arg)?.into_os_string());
            } else {
                placed_args.push(arg.into());
            }
        }
        let mut process = Command::new(program);
        if let Some(search) = &self.search_path {
            // std looks the program up in the child's PATH when it is set.
            process.env("PATH", search);
        }
        process
            .args(placed_args)
            .envs(command.env.iter().map(|(key, value)| (key, value)))
            .stdin(if command.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = &command.cwd {
            process.current_dir(self.place(cwd)?);
        }
        let mut child = process.spawn().map_err(|error| {
            command_failed(
                command,
                "did not start".into(),
                error.to_string(),
                "is it installed and on PATH?",
            )
        })?;
        // Input and output go through threads so a chatty command never blocks on a full pipe.
        let stdin = child.stdin.take().zip(command.stdin.clone());
        let feeder = stdin.map(|(mut pipe, bytes)| {
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            })
        });
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out_reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stdout.read_to_end(&mut bytes);
            bytes
        });
        let err_reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            bytes
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(error) => {
                    return Err(command_failed(
                        command,
                        "lost".into(),
                        error.to_string(),
                        "rerun it",
                    ))
                }
            }
            if command
                .timeout
                .is_some_and(|limit| started.elapsed() >= limit)
            {
                let _ = child.kill();
                let _ = child.wait();
                let limit = command.timeout.unwrap_or_default();
                // The output readers are left to finish on their own: a grandchild
                // (or an ssh master holding the pipes) may keep them open.
                return Err(command_failed(
                    command,
                    format!("timed out after {}s and was killed", limit.as_secs_f64()),
                    String::new(),
                    "check why it hangs (its logs), then rerun",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(feeder) = feeder {
            let _ = feeder.join();
        }
        Ok(CommandOutput {
            code: status.code(),
            stdout: String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned(),
            stderr: String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned(),
        })
    }

    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let placed = self.place(path)?;
        match fs::read(&placed) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Error::io("read", placed, error)),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(fs::symlink_metadata(self.place(path)?).is_ok())
    }

    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()> {
        let placed = self.place(path)?;
        let (uid, gid) = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        write_atomic(&placed, content, FileAttributes { mode, uid, gid })
    }

    fn create_dir_all(&self, path: &str) -> Result<()> {
        let placed = self.place(path)?;
        fs::create_dir_all(&placed).map_err(|error| Error::io("create the folder", placed, error))
    }

    fn copy(&self, from: &str, to: &str) -> Result<()> {
        let (source, target) = (self.place(from)?, self.place(to)?);
        if fs::symlink_metadata(&target).is_ok() {
            return Err(Error::AlreadyExists {
                path: target,
                hint: "a copy never overwrites; move it away first",
            });
        }
        // GNU cp -a: modes, owners, times and links kept, the same on every family.
        let spec = CommandSpec::new([
            "cp".to_owned(),
            "-a".to_owned(),
            "--no-target-directory".to_owned(),
            source.to_string_lossy().into_owned(),
            target.to_string_lossy().into_owned(),
        ])
        .with_env("LC_ALL", "C");
        let output = self.execute(&spec)?;
        if output.success() {
            Ok(())
        } else {
            Err(command_failed(
                &spec,
                format!("exit code {:?}", output.code),
                output.stderr,
                "check the free space and permissions there",
            ))
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (source, target) = (self.place(from)?, self.place(to)?);
        fs::rename(&source, &target).map_err(|error| Error::io("rename", source, error))
    }

    fn remove(&self, path: &str) -> Result<()> {
        let placed = self.place(path)?;
        match fs::symlink_metadata(&placed) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::io("inspect", placed, error)),
            // remove_dir_all removes links inside as links, never following them.
            Ok(metadata) if metadata.is_dir() => {
                fs::remove_dir_all(&placed).map_err(|error| Error::io("remove", placed, error))
            }
            Ok(_) => fs::remove_file(&placed).map_err(|error| Error::io("remove", placed, error)),
        }
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let placed = self.place(path)?;
        let listing = match fs::read_dir(&placed) {
            Ok(listing) => listing,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Error::io("list", placed, error)),
        };
        let mut names = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|error| Error::io("list", &placed, error))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn tool(&self, action: &ToolAction) -> Result<serde_json::Value> {
        run_tool_locally(&self.root, self, action)
    }

    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        let placed = self.place(path)?;
        let mut pending = vec![placed];
        while let Some(current) = pending.pop() {
            std::os::unix::fs::lchown(&current, Some(uid), Some(gid))
                .map_err(|error| Error::io("change the owner of", &current, error))?;
            let metadata = fs::symlink_metadata(&current)
                .map_err(|error| Error::io("inspect", &current, error))?;
            if metadata.is_dir() {
                for entry in
                    fs::read_dir(&current).map_err(|error| Error::io("list", &current, error))?
                {
                    pending.push(
                        entry
                            .map_err(|error| Error::io("list", &current, error))?
                            .path(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Reads through `inner`, changes nothing: commands succeed with no output,
/// writes are dropped. Wrap it in [`Recording`] to see what would have happened.
#[derive(Debug, Clone)]
pub struct DryRun<E> {
    inner: E,
}

impl<E: Executor> DryRun<E> {
    /// A dry run reading through `inner`.
    pub fn new(inner: E) -> Self {
        DryRun { inner }
    }
}

impl<E: Executor> Executor for DryRun<E> {
    fn execute(&self, _command: &CommandSpec) -> Result<CommandOutput> {
        Ok(CommandOutput {
            code: Some(0),
            stdout: String::new(),
            stderr: String::new(),
        })
    }
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read_file(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        self.inner.exists(path)
    }
    fn write_file(&self, path: &str, _content: &[u8], _mode: u32) -> Result<()> {
        self.inner.exists(path).map(drop)
    }
    fn create_dir_all(&self, path: &str) -> Result<()> {
        self.inner.exists(path).map(drop)
    }
    fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.inner.exists(from).and(self.inner.exists(to)).map(drop)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.exists(from).and(self.inner.exists(to)).map(drop)
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.inner.exists(path).map(drop)
    }
    fn chown_tree(&self, path: &str, _uid: u32, _gid: u32) -> Result<()> {
        self.inner.exists(path).map(drop)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn tool(&self, _action: &ToolAction) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    fn is_dry_run(&self) -> bool {
        true
    }
}

/// Forwards to `inner` and records every effect in order (reads are not effects).
#[derive(Debug)]
pub struct Recording<E> {
    inner: E,
    operations: Mutex<Vec<Operation>>,
}

impl<E: Executor> Recording<E> {
    /// A recorder around `inner`.
    pub fn new(inner: E) -> Self {
        Recording {
            inner,
            operations: Mutex::new(Vec::new()),
        }
    }

    /// The executor it forwards to (for what must not be in the transcript,
    /// such as saving the run state).
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The effects so far, in order.
    pub fn operations(&self) -> Vec<Operation> {
        self.operations
            .lock()
            .expect("no panic while recording")
            .clone()
    }

    /// Takes the effects so far, leaving none (one step's transcript at a time).
    pub fn take_operations(&self) -> Vec<Operation> {
        std::mem::take(&mut *self.operations.lock().expect("no panic while recording"))
    }

    fn record(&self, operation: Operation) {
        self.operations
            .lock()
            .expect("no panic while recording")
            .push(operation);
    }
}

impl<E: Executor> Executor for Recording<E> {
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput> {
        self.record(Operation::Run {
            command: command.display(),
        });
        self.inner.execute(command)
    }
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read_file(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        self.inner.exists(path)
    }
    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()> {
        self.record(Operation::WriteFile {
            path: path.to_owned(),
            bytes: content.len() as u64,
            mode,
        });
        self.inner.write_file(path, content, mode)
    }
    fn create_dir_all(&self, path: &str) -> Result<()> {
        self.record(Operation::CreateDir {
            path: path.to_owned(),
        });
        self.inner.create_dir_all(path)
    }
    fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.record(Operation::Copy {
            from: from.to_owned(),
            to: to.to_owned(),
        });
        self.inner.copy(from, to)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.record(Operation::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        });
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.record(Operation::Remove {
            path: path.to_owned(),
        });
        self.inner.remove(path)
    }
    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        self.record(Operation::ChownTree {
            path: path.to_owned(),
            uid,
            gid,
        });
        self.inner.chown_tree(path, uid, gid)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn tool(&self, action: &ToolAction) -> Result<serde_json::Value> {
        self.record(Operation::Tool {
            command: action.display(),
        });
        self.inner.tool(action)
    }
    fn is_dry_run(&self) -> bool {
        self.inner.is_dry_run()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    #[test]
    fn commands_get_env_cwd_stdin_and_a_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("opt/cmw")).unwrap();
        let local = LocalExecutor::new(dir.path());
        let mut spec = CommandSpec::new([
            "sh",
            "-c",
            "pwd; echo \"$GREETING\"; cat; echo oops >&2; exit 3",
        ])
        .in_folder("/opt/cmw")
        .with_env("GREETING", "hello");
        spec.stdin = Some(b"from stdin\n".to_vec());
        let output = local.execute(&spec).unwrap();
        assert_eq!(output.code, Some(3));
        assert_eq!(
            output.stdout,
            format!(
                "{}\nhello\nfrom stdin\n",
                fs::canonicalize(dir.path().join("opt/cmw"))
                    .unwrap()
                    .display()
            )
        );
        assert_eq!(output.stderr, "oops\n");

        let started = Instant::now();
        let error = local
            .execute(&CommandSpec::new(["sleep", "30"]).with_timeout(Duration::from_millis(200)))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(error.to_string().contains("timed out"), "{error}");
        let error = local
            .execute(&CommandSpec::new(["/no/such/program"]))
            .unwrap_err();
        assert!(error.to_string().contains("did not start"), "{error}");
    }

    #[test]
    fn display_quotes_and_masks_secrets() {
        let spec = CommandSpec::new(["instance_create.sh", "-n=prod", "a b", "it's"])
            .with_env("DB_PASSWORD", "hunter2")
            .in_folder("/opt/CMW dist");
        assert_eq!(
            spec.display(),
            "(cd '/opt/CMW dist' && DB_PASSWORD=*** instance_create.sh -n=prod 'a b' 'it'\\''s')"
        );
    }

    #[test]
    fn paths_stay_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalExecutor::new(dir.path());
        for bad in ["relative/path", "/var/../etc/passwd", "/var/lib/\0x"] {
            assert!(
                matches!(
                    local.write_file(bad, b"x", 0o600),
                    Err(Error::PathOutsideRoot { .. })
                ),
                "{bad}"
            );
        }
        local.create_dir_all("/var/lib/cmw").unwrap();
        local
            .write_file("/var/lib/cmw/state.json", b"{}", 0o600)
            .unwrap();
        assert_eq!(
            fs::read(dir.path().join("var/lib/cmw/state.json")).unwrap(),
            b"{}"
        );
        assert_eq!(
            fs::metadata(dir.path().join("var/lib/cmw/state.json"))
                .unwrap()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(local.read_file("/var/lib/cmw/missing").unwrap(), None);
    }

    #[test]
    fn copy_rename_remove_and_chown_do_not_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep.txt"), "keep").unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("data/db")).unwrap();
        fs::write(root.join("data/db/part.bin"), "p").unwrap();
        fs::set_permissions(
            root.join("data/db/part.bin"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        symlink(&outside, root.join("data/escape")).unwrap();
        let local = LocalExecutor::new(&root);
        local.copy("/data", "/copy").unwrap();
        assert_eq!(
            fs::metadata(root.join("copy/db/part.bin")).unwrap().mode() & 0o777,
            0o640
        );
        assert!(fs::symlink_metadata(root.join("copy/escape"))
            .unwrap()
            .is_symlink());
        assert!(matches!(
            local.copy("/data", "/copy"),
            Err(Error::AlreadyExists { .. })
        ));
        local.chown_tree("/copy", 33, 33).unwrap();
        assert_eq!(
            fs::metadata(root.join("copy/db/part.bin")).unwrap().uid(),
            33
        );
        assert_eq!(
            fs::metadata(outside.join("keep.txt")).unwrap().uid(),
            0,
            "the link's target is not chowned"
        );
        local.rename("/copy", "/moved").unwrap();
        local.remove("/moved").unwrap();
        local.remove("/moved").unwrap();
        assert!(!root.join("moved").exists());
        assert_eq!(
            fs::read_to_string(outside.join("keep.txt")).unwrap(),
            "keep",
            "links are not followed"
        );
    }

    #[test]
    fn a_recorded_dry_run_lists_everything_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/os-release"), "ID=astra\n").unwrap();
        let plan = Recording::new(DryRun::new(LocalExecutor::new(dir.path())));
        assert_eq!(
            plan.read_file("/etc/os-release").unwrap().unwrap(),
            b"ID=astra\n"
        );
        plan.create_dir_all("/var/lib/cmw-upgrade/prod").unwrap();
        let output = Executor::execute(
            &plan,
            &CommandSpec::new(["systemctl", "stop", "comindwareprod"]),
        )
        .unwrap();
        assert!(output.success());
        plan.write_file("/var/lib/cmw-upgrade/prod/state.json", b"{}", 0o600)
            .unwrap();
        plan.remove("/etc/os-release").unwrap();
        assert!(
            matches!(plan.remove("/../etc"), Err(Error::PathOutsideRoot { .. })),
            "a dry run refuses what the real run would"
        );
        let lines: Vec<String> = plan.operations().iter().map(Operation::display).collect();
        assert_eq!(
            lines,
            [
                "mkdir -p /var/lib/cmw-upgrade/prod",
                "systemctl stop comindwareprod",
                "write /var/lib/cmw-upgrade/prod/state.json (2 bytes, mode 0600)",
                "rm -rf /etc/os-release",
                "rm -rf /../etc",
            ]
        );
        assert!(dir.path().join("etc/os-release").exists());
        assert!(!dir.path().join("var").exists());
        assert_eq!(plan.take_operations().len(), 5);
        assert!(plan.operations().is_empty());
        // Code written for CommandRunner runs through any executor.
        let runner: &dyn CommandRunner = &plan;
        assert!(runner
            .run(&["nginx".into(), "-t".into()])
            .unwrap()
            .success());
    }
}
