//! This machine's disk under a root, read as a server: the reading half of
//! [`LocalExecutor`](crate::executor::LocalExecutor), and what the effect
//! helpers (backup, restore, the migration) read the server they run on with.

// The disk reader is the effect layer's reading half.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::instance::InstanceName;
use crate::layout::{read_log_dir, InstanceLayout, LayoutPath};
use crate::os::OsFamily;
use crate::paths::place_under_root;
use crate::server::{DirEntry, NodeKind, ServerRead};

/// The server under `root` (`/` on a live server).
#[derive(Debug, Clone)]
pub struct Disk {
    root: PathBuf,
}

impl Disk {
    /// The server under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Disk { root: root.into() }
    }

    /// The root every server path is placed under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A server path placed under the root: absolute, no `..`, no NUL; the
    /// links on the way to its last part resolved inside the root (that part
    /// itself is what an effect acts on: a link there is the link).
    ///
    /// # Errors
    /// [`Error::PathOutsideRoot`]; [`Error::Io`] for a link loop.
    pub fn place(&self, path: &str) -> Result<PathBuf> {
        self.place_with(path, false)
    }

    /// [`Disk::place`], a link in the last part followed too (inside the root):
    /// for what reads through it (`/etc/os-release` is usually a link).
    ///
    /// # Errors
    /// As [`Disk::place`].
    pub fn place_following(&self, path: &str) -> Result<PathBuf> {
        self.place_with(path, true)
    }

    fn place_with(&self, path: &str, follow_last: bool) -> Result<PathBuf> {
        let placed = place_under_root(&self.root, path)?;
        if self.root == Path::new("/") {
            // The kernel resolves `/` the same way; nothing to contain.
            return Ok(placed);
        }
        resolve_in_root(&self.root, &placed, follow_last)
            .map_err(|error| Error::io("resolve", &placed, error))
    }

    /// A path under the root (a layout's, already placed) with every link on
    /// it resolved inside the root, as `canonicalize` does on a live server.
    ///
    /// # Errors
    /// [`Error::Io`]: nothing there, or a link loop.
    pub fn canonical(&self, path: &Path) -> Result<PathBuf> {
        canonical_in_root(&self.root, path).map_err(|error| Error::io("resolve", path, error))
    }
}

/// `fs::canonicalize` for a path under `root`, its links resolved inside the
/// root ([`resolve_in_root`]); plain `canonicalize` when the root is `/`.
///
/// # Errors
/// `NotFound` when the path (or a link's target) is not there, as
/// `canonicalize` says; what [`resolve_in_root`] says.
pub fn canonical_in_root(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    if root == Path::new("/") {
        fs::canonicalize(path)
    } else {
        resolve_in_root(root, path, true).and_then(|resolved| {
            // What `canonicalize` also says: it must be there.
            fs::symlink_metadata(&resolved).map(|_| resolved)
        })
    }
}

/// Resolves the links on `path` (which is under `root`) the way the kernel
/// would if `root` were `/`: an absolute link target starts again at `root`,
/// `..` never climbs above it. A mounted copy of a server (`--root /mnt/old`)
/// is full of absolute links (`/etc/os-release -> /usr/lib/os-release`, a data
/// root linked to `/data/...`): followed by the kernel they would lead to this
/// machine's files, not the copy's. `follow_last`: whether a link in the last
/// part is resolved too. At most 40 links, as the kernel allows.
///
/// # Errors
/// `InvalidInput` for a path not under `root`; a link loop; what reading a link says.
pub fn resolve_in_root(root: &Path, path: &Path, follow_last: bool) -> std::io::Result<PathBuf> {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::path::Component;
    let relative = path
        .strip_prefix(root)
        .map_err(|_| std::io::Error::new(IoKind::InvalidInput, "not under the root"))?;
    let parts = |path: &Path| -> Vec<OsString> {
        path.components()
            .filter_map(|component| match component {
                Component::Normal(part) => Some(part.to_owned()),
                Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .collect()
    };
    let mut pending: VecDeque<OsString> = parts(relative).into();
    let mut resolved = root.to_path_buf();
    let mut depth = 0usize;
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            if depth > 0 {
                resolved.pop();
                depth -= 1;
            }
            continue;
        }
        let candidate = resolved.join(&part);
        let last = pending.is_empty();
        let is_link = fs::symlink_metadata(&candidate).is_ok_and(|metadata| metadata.is_symlink());
        if is_link && (follow_last || !last) {
            links += 1;
            if links > 40 {
                return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = fs::read_link(&candidate)?;
            if target.is_absolute() {
                resolved = root.to_path_buf();
                depth = 0;
            }
            for target_part in parts(&target).into_iter().rev() {
                pending.push_front(target_part);
            }
            continue;
        }
        resolved = candidate;
        depth += 1;
    }
    Ok(resolved)
}

fn missing(error: &std::io::Error) -> bool {
    // A file below something that is not a folder is not there either.
    matches!(error.kind(), IoKind::NotFound | IoKind::NotADirectory)
}

impl ServerRead for Disk {
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let placed = self.place_following(path)?;
        match read_regular(&placed) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if missing(&error) => Ok(None),
            Err(error) => Err(Error::io("read", placed, error)),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(fs::symlink_metadata(self.place(path)?).is_ok())
    }

    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        let placed = self.place_following(path)?;
        let listing = match fs::read_dir(&placed) {
            Ok(listing) => listing,
            Err(error) if missing(&error) => return Ok(Vec::new()),
            Err(error) => return Err(Error::io("list", placed, error)),
        };
        let mut entries = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|error| Error::io("list", &placed, error))?;
            let link = entry.file_type().is_ok_and(|kind| kind.is_symlink());
            // What a link leads to, inside the root (a copy's absolute links
            // must not describe this machine's files).
            let seen = if link && self.root != Path::new("/") {
                resolve_in_root(&self.root, &entry.path(), true).unwrap_or_else(|_| entry.path())
            } else {
                entry.path()
            };
            let kind = match fs::metadata(seen) {
                Ok(metadata) if metadata.is_file() => NodeKind::File,
                Ok(metadata) if metadata.is_dir() => NodeKind::Folder,
                _ => NodeKind::Other,
            };
            entries.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind,
                link,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn read_link(&self, path: &str) -> Result<Option<String>> {
        let placed = self.place(path)?;
        match fs::read_link(&placed) {
            Ok(target) => Ok(Some(target.to_string_lossy().into_owned())),
            Err(error) if missing(&error) || error.kind() == IoKind::InvalidInput => Ok(None),
            Err(error) => Err(Error::io("read the link", placed, error)),
        }
    }
}

impl Disk {
    /// Takes an exclusive `flock` on the file at `path` (made 0600, with its
    /// folder, when missing) without waiting, and writes this process's pid
    /// into it. Held as long as the returned file is open; the kernel drops it
    /// when the process dies.
    ///
    /// # Errors
    /// [`Error::Locked`] naming the holder's pid; [`Error::Io`].
    pub fn lock_file(&self, path: &str) -> Result<fs::File> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;

        let placed = self.place(path)?;
        if let Some(folder) = placed.parent() {
            fs::create_dir_all(folder)
                .map_err(|error| Error::io("create the folder", folder, error))?;
        }
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&placed)
            .map_err(|error| Error::io("open the lock file", &placed, error))?;
        if let Err(error) =
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            if error != rustix::io::Errno::WOULDBLOCK {
                return Err(Error::io("lock", &placed, error.into()));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(Error::Locked {
                path: placed,
                holder: format!("process {}", holder.trim()),
            });
        }
        // Holding the lock: say who holds it, for the message above.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(file)
    }
}

impl Disk {
    /// Every path of `instance` on this disk, read from its config files.
    ///
    /// # Errors
    /// As [`InstanceLayout::read`].
    pub fn layout(&self, instance: &InstanceName, family: OsFamily) -> Result<InstanceLayout> {
        InstanceLayout::read(self, &self.root, instance, family)
    }

    /// The log folder of `instance` on this disk.
    ///
    /// # Errors
    /// As [`read_log_dir`].
    pub fn log_dir(&self, instance: &InstanceName) -> Result<LayoutPath> {
        read_log_dir(self, &self.root, instance)
    }
}

/// Opens a file to read, refusing anything but a regular file (links are
/// followed: `/etc/os-release` is usually one). A FIFO or a device, planted
/// where a config or a log is expected, would block a read forever or never
/// end; it is opened without blocking and refused.
///
/// # Errors
/// The open's error; `InvalidInput` for what is not a regular file.
pub fn open_regular(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            IoKind::InvalidInput,
            "not a regular file (a FIFO, a socket or a device?)",
        ));
    }
    Ok(file)
}

/// A whole regular file; see [`open_regular`].
fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_regular(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads a file to a string, mapping "not found" to `None` and everything else to [`Error::Io`].
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>> {
    Ok(read_optional_bytes(path)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// A regular file's bytes; `None` when it does not exist.
///
/// # Errors
/// [`Error::Io`] when it exists but cannot be read.
pub(crate) fn read_optional_bytes(path: &Path) -> Result<Option<Vec<u8>>> {
    match read_regular(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == IoKind::NotFound => Ok(None),
        Err(error) if error.kind() == IoKind::NotADirectory => Ok(None),
        Err(error) => Err(Error::io("read", path, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn fifo(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o666),
            0,
        )
        .unwrap();
    }

    /// Runs `work` on a thread and gives its result, or fails the test when it
    /// blocks: the point is that it must not.
    fn within_seconds<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(work());
        });
        receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("it returned instead of blocking")
    }

    #[test]
    fn a_fifo_where_a_file_is_expected_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        fifo(&root.join("etc/os-release"));
        let disk = Disk::new(&root);
        let error = within_seconds(move || {
            Disk::new(&root)
                .read_file("/etc/os-release")
                .map(|_| ())
                .unwrap_err()
                .to_string()
        });
        assert!(error.contains("not a regular file"), "{error}");
        // The service account owns the log folder: a FIFO as a heartbeat log.
        let logs = dir.path().join("var/log/comindware/prod/Logs");
        fifo(&logs.join("heartbeat_2026-11-28.log"));
        let root = dir.path().to_path_buf();
        let checked = within_seconds(move || {
            crate::health::smoke_check(
                &root,
                &crate::InstanceName::new("prod").unwrap(),
                "http://127.0.0.1:9/api/health",
            )
            .map(|_| ())
            .map_err(|error| error.to_string())
        });
        assert!(
            checked.unwrap_err().contains("not a regular file"),
            "the check fails, it does not hang"
        );
        assert!(disk.read_file("/etc/missing").unwrap().is_none());
    }
}
