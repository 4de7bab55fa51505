//! The real thing, on this machine: commands with a time limit, files under a root.

// The local executor is the effect layer itself.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::protocol::{ToolAction, ToolOutcome};
use super::{tools, CommandSpec, Executor, LockGuard};
use crate::atomic::{write_atomic, FileAttributes};
use crate::backup::Progress;
use crate::cancel::Cancel;
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::exec::CommandOutput;
use crate::fd_walk;
use crate::server::{DirEntry, ServerRead};

/// The real thing, on this machine, with server paths under `root`.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    disk: Disk,
    search_path: Option<std::ffi::OsString>,
    cancel: Cancel,
}

impl LocalExecutor {
    /// An executor for the server under `root` (`/` on a live server).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalExecutor {
            disk: Disk::new(root),
            search_path: None,
            cancel: Cancel::new(),
        }
    }

    /// The same executor whose tool actions (backup, restore, verify) stop
    /// between files once `cancel` is set, leaving nothing half-written.
    #[must_use]
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
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
        self.disk.root()
    }

    /// Its reading half: the disk under the root.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    fn place(&self, path: &str) -> Result<PathBuf> {
        self.disk.place(path)
    }
}

impl ServerRead for LocalExecutor {
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.disk.read_file(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        self.disk.exists(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        self.disk.list_dir(path)
    }
    fn read_link(&self, path: &str) -> Result<Option<String>> {
        self.disk.read_link(path)
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
        // What `cp -a` does, through folder handles: both sides may sit in
        // folders the service account can write (the pruned copy beside the
        // database, its log folder copied into a bundle), and a copy by path
        // would follow a folder swapped for a link while it runs.
        crate::fd_walk::copy_tree(&source, &target)
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
            // remove_dir_all removes links inside as links, never following them,
            // and since Rust 1.58.1 (CVE-2022-21658) it walks by handles
            // (openat/unlinkat, O_NOFOLLOW), so a folder swapped for a link while
            // it runs is not followed either; a link at `placed` itself is removed
            // as a link.
            Ok(metadata) if metadata.is_dir() => {
                fs::remove_dir_all(&placed).map_err(|error| Error::io("remove", placed, error))
            }
            Ok(_) => fs::remove_file(&placed).map_err(|error| Error::io("remove", placed, error)),
        }
    }

    fn tool(&self, action: &ToolAction) -> Result<ToolOutcome> {
        tools::run_tool(
            &self.disk,
            self,
            &Progress::with_cancel(self.cancel.clone()),
            action,
        )
    }

    fn lock(&self, path: &str) -> Result<LockGuard<'_>> {
        let file = self.disk.lock_file(path)?;
        Ok(LockGuard::new(move || drop(file)))
    }

    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        let placed = self.place(path)?;
        change_owner_of_tree(&placed, uid, gid)
    }
}

/// Gives the tree at `top` to `uid:gid`, links as links.
///
/// The tree belongs to the platform's service account, which can write in it
/// while this runs as root: it could swap a folder for a link to `/etc` between
/// a listing and a chown by path. So the walk holds folder handles (see
/// `fd_walk`): each entry is chowned by name relative to its folder's handle
/// without following it, and only a name that opens as a real folder
/// (`O_NOFOLLOW | O_DIRECTORY`) is walked into; no path is resolved again.
fn change_owner_of_tree(top: &Path, uid: u32, gid: u32) -> Result<()> {
    use rustix::fs::{AtFlags, FileType, Gid, Uid};
    let (owner, group) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    let handle = match fd_walk::open_folder(top) {
        Ok(handle) => handle,
        // Not a folder: a link (which `O_NOFOLLOW | O_DIRECTORY` reports so
        // too), or a single file, changed as itself.
        Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            let is_link = fd_walk::stat_path(top)
                .map_err(|error| Error::io("inspect", top, error.into()))?
                .is_symlink();
            if is_link {
                return Err(Error::CheckFailed {
                    what: format!("changing the owner of {}", top.display()),
                    details: "it is a symbolic link, and owners are changed in a real folder \
                              only, never through a link; name the folder it points to"
                        .to_owned(),
                });
            }
            // Never following a link, should one have taken its place since.
            return rustix::fs::chownat(
                rustix::fs::CWD,
                top,
                owner,
                group,
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|error| Error::io("change the owner of", top, error.into()));
        }
        Err(error) => return Err(Error::io("open", top, error.into())),
    };
    let list = |handle: &OwnedFd, path: &Path| {
        fd_walk::child_names(handle.as_fd()).map_err(|error| Error::io("list", path, error.into()))
    };
    rustix::fs::fchown(&handle, owner, group)
        .map_err(|error| Error::io("change the owner of", top, error.into()))?;
    let names = list(&handle, top)?;
    // One handle per level of the tree is open: the folders being walked.
    let mut stack = vec![(handle, top.to_path_buf(), names)];
    while let Some((handle, path, names)) = stack.last_mut() {
        let Some((name, kind)) = names.pop() else {
            stack.pop();
            continue;
        };
        let entry = path.join(fd_walk::name_of(&name));
        rustix::fs::chownat(&*handle, &name, owner, group, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|error| Error::io("change the owner of", &entry, error.into()))?;
        if !matches!(kind, FileType::Directory | FileType::Unknown) {
            continue;
        }
        // A name that no longer opens as a folder is a link or a file now,
        // changed above as the entry it is; it is never followed.
        let Some(folder) = fd_walk::open_child_folder(handle.as_fd(), &name)
            .map_err(|error| Error::io("open", &entry, error.into()))?
        else {
            continue;
        };
        // What is walked into is what was opened, which may have been swapped
        // in after the chown by name: it is given away too, being in the tree.
        rustix::fs::fchown(&folder, owner, group)
            .map_err(|error| Error::io("change the owner of", &entry, error.into()))?;
        let names = list(&folder, &entry)?;
        stack.push((folder, entry, names));
    }
    Ok(())
}
