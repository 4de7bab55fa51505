//! Moving a bundle from one server to another as one byte stream: the sender
//! reads the bundle, the receiver writes it, checking every file against the
//! manifest as it arrives, and a rerun sends only what is still missing.
//!
//! # The stream (format 1)
//!
//! All integers are unsigned, big-endian.
//!
//! ```text
//! magic      8 bytes   "CMWXFER\n"
//! version    u32       1
//! manifest   u64 length, then that many bytes of manifest.json (at most 256 MiB)
//! announced  u64 files, u64 bytes: what the sender is about to send
//! per file   u8 'F', u32 path length (1..=4096), the path (UTF-8, as in the
//!            manifest), u64 size, then exactly `size` bytes of content
//! end        u8 'E', u64 files sent (the count again, so a cut is never an end)
//! ```
//!
//! The receiver refuses, as [`Error::BundleDamaged`] naming the destination, a
//! stream that ends early, a path that is not a file of the manifest (or comes
//! twice, or is unsafe), a size other than the manifest's, content whose
//! BLAKE3 differs, counts that do not add up, or bytes after the end marker;
//! another magic or version is [`Error::BadRequest`].
//!
//! # What the receiver leaves
//!
//! Each file is written to `NAME.cmw-upgrade-partial` beside its place while
//! it is hashed, checked, given its mode, owner (as root) and time, and only
//! then renamed to `NAME`: a file under its own name is always complete. The
//! folders, links and `manifest.json` come after the last file, the manifest
//! last of all once everything is flushed, so a destination without it is
//! visibly incomplete, and a rerun (which asks [`files_needed`] first) sends
//! only the files not yet in place with the right size and hash. Memory is a
//! fixed buffer per side plus the manifest.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::manifest::{
    is_safe_relative, EntryKind, Manifest, ManifestEntry, FORMAT_VERSION, MANIFEST_FILE,
};
use super::{Phase, Progress};
use crate::error::{Error, Result};
use crate::fd_walk;

/// The first bytes of a transfer stream.
pub const STREAM_MAGIC: &[u8; 8] = b"CMWXFER\n";
/// The stream format this tool writes and reads.
pub const STREAM_VERSION: u32 = 1;
/// The largest manifest a stream may carry.
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;
/// The longest path a file header may carry.
const MAX_PATH_BYTES: u32 = 4096;
/// The suffix of a file being received.
pub const PARTIAL_SUFFIX: &str = ".cmw-upgrade-partial";
const FILE_TAG: u8 = b'F';
const END_TAG: u8 = b'E';
/// One buffer per side, whatever the bundle's size.
const BUFFER_BYTES: usize = 1 << 20;

/// What [`receive_bundle`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveReport {
    /// The bundle folder written.
    pub bundle: PathBuf,
    /// Files in the manifest.
    pub files: u64,
    /// Bytes of all files in the manifest.
    pub bytes: u64,
    /// Files that came in the stream (each checked against the manifest).
    pub received_files: u64,
    /// Their bytes.
    pub received_bytes: u64,
    /// Files that were already in place (checked by [`files_needed`]).
    pub skipped_files: u64,
}

fn damaged(dest: &Path, details: impl Into<String>) -> Error {
    Error::BundleDamaged {
        bundle: dest.to_path_buf(),
        details: details.into(),
    }
}

/// What a receiver says when the stream stops before its end.
const ENDED_EARLY: &str = "the transfer stream ended early (the sender or the connection \
                           stopped); run the transfer again: it sends only what is missing";

fn truncated(dest: &Path) -> Error {
    damaged(dest, ENDED_EARLY)
}

/// Whether `error` is a receiver's "the stream ended early", here or from
/// another server: the sender's failure, if any, is then the cause to report.
pub fn ended_early(error: &Error) -> bool {
    match error {
        Error::BundleDamaged { details, .. } => details == ENDED_EARLY,
        Error::Remote { kind, message, .. } => {
            *kind == crate::ErrorKind::BundleDamaged && message.contains(ENDED_EARLY)
        }
        _ => false,
    }
}

/// Parses and checks a manifest that came over the wire (as [`Manifest::read`]
/// checks one on disk): the format, safe paths, no path twice.
///
/// # Errors
/// [`Error::BundleDamaged`] naming `bundle`.
pub fn parse_manifest(bytes: &[u8], bundle: &Path) -> Result<Manifest> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|error| damaged(bundle, format!("{MANIFEST_FILE} does not parse: {error}")))?;
    if manifest.format != FORMAT_VERSION {
        return Err(damaged(
            bundle,
            format!(
                "{MANIFEST_FILE} has format {}, this tool reads format {FORMAT_VERSION}; \
                 use a matching cmw-upgrade on both servers",
                manifest.format
            ),
        ));
    }
    let mut seen = HashSet::new();
    for entry in &manifest.files {
        if !is_safe_relative(&entry.path) || entry.path == MANIFEST_FILE {
            return Err(damaged(
                bundle,
                format!("{MANIFEST_FILE} names the unsafe path {:?}", entry.path),
            ));
        }
        if entry.path.ends_with(PARTIAL_SUFFIX) {
            return Err(damaged(
                bundle,
                format!(
                    "{MANIFEST_FILE} names {:?}, which ends like a file being received",
                    entry.path
                ),
            ));
        }
        if !seen.insert(entry.path.as_str()) {
            return Err(damaged(
                bundle,
                format!("{MANIFEST_FILE} names {:?} twice", entry.path),
            ));
        }
    }
    Ok(manifest)
}

/// The permission bits a received entry gets: the manifest's, without setuid
/// and setgid — the sending server may be compromised, and the receiver runs
/// as root and gives the manifest's owners (a setuid-root file of its choice).
fn received_mode(mode: u32) -> u32 {
    mode & 0o1777
}

/// Reads a bundle's `manifest.json` as bytes, without following a link there.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn read_manifest_bytes(bundle: &Path) -> Result<Vec<u8>> {
    let path = bundle.join(MANIFEST_FILE);
    let top = fd_walk::open_folder_following(bundle)
        .map_err(|error| Error::io("open the bundle", bundle, error.into()))?;
    let mut file = open_file_in(top.as_fd(), bundle, MANIFEST_FILE)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| Error::io("read the bundle manifest", &path, error))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(damaged(
            bundle,
            format!("{MANIFEST_FILE} is larger than 256 MiB"),
        ));
    }
    Ok(bytes)
}

/// Opens the regular file at `relative` under the folder `top` (at `bundle`),
/// never following a link on the way or at the end.
fn open_file_in(top: BorrowedFd<'_>, bundle: &Path, relative: &str) -> Result<File> {
    let path = bundle.join(relative);
    let (folder, name) = split(relative);
    let handle = fd_walk::open_folder_path(top, Path::new(folder))
        .map_err(|error| Error::io("open the folder of", &path, error.into()))?;
    let file = fd_walk::open_child_file(handle.as_fd(), name)
        .map_err(|error| Error::io("open", &path, error.into()))?;
    let stat =
        fd_walk::stat_handle(&file).map_err(|error| Error::io("inspect", &path, error.into()))?;
    if !stat.is_file() {
        return Err(Error::io(
            "read",
            &path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    // Back to blocking reads: it was opened non-blocking only against a pipe.
    rustix::fs::fcntl_setfl(&file, OFlags::empty())
        .map_err(|error| Error::io("open", &path, error.into()))?;
    Ok(file)
}

/// Makes the pipe behind `fd` hold 1 MiB instead of the kernel's 64 KiB, so
/// the two sides of a transfer wait on each other less; does nothing for
/// anything but a pipe, or when the kernel refuses.
pub fn widen_pipe(fd: BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETPIPE_SZ only reads its integer argument, and the descriptor
    // is borrowed for the call. A failure changes nothing.
    unsafe {
        libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            BUFFER_BYTES as libc::c_int,
        );
    }
}

fn split(relative: &str) -> (&str, &str) {
    relative.rsplit_once('/').unwrap_or(("", relative))
}

fn write_header(
    out: &mut dyn Write,
    manifest_bytes: &[u8],
    files: u64,
    bytes: u64,
) -> io::Result<()> {
    out.write_all(STREAM_MAGIC)?;
    out.write_all(&STREAM_VERSION.to_be_bytes())?;
    out.write_all(&(manifest_bytes.len() as u64).to_be_bytes())?;
    out.write_all(manifest_bytes)?;
    out.write_all(&files.to_be_bytes())?;
    out.write_all(&bytes.to_be_bytes())
}

fn write_end(out: &mut dyn Write, files: u64) -> io::Result<()> {
    out.write_all(&[END_TAG])?;
    out.write_all(&files.to_be_bytes())?;
    out.flush()
}

/// Writes a stream that carries only the manifest: what a receiver that
/// already has every file needs to finish the bundle.
///
/// # Errors
/// [`Error::Io`] when the output cannot be written (named `output`).
pub fn send_manifest_only(manifest_bytes: &[u8], out: &mut dyn Write) -> Result<()> {
    write_header(out, manifest_bytes, 0, 0)
        .and_then(|()| write_end(out, 0))
        .map_err(|error| Error::io("write the transfer stream to", "the output", error))
}

/// Streams the bundle in `bundle` to `out`: its manifest, then the files named
/// in `wanted` (every file of the manifest when `None`), in manifest order.
/// Files are read through folder handles, never following a link.
///
/// # Errors
/// [`Error::Io`] when the manifest or a file cannot be read or the output
/// written; [`Error::BundleDamaged`] for a bad manifest, a wanted path that is
/// not a file of it, or a file whose size is not the manifest's;
/// [`Error::Cancelled`].
pub fn send_bundle(
    bundle: &Path,
    wanted: Option<&[String]>,
    out: &mut dyn Write,
    progress: &Progress,
) -> Result<()> {
    let manifest_bytes = read_manifest_bytes(bundle)?;
    let manifest = parse_manifest(&manifest_bytes, bundle)?;
    let files: Vec<&ManifestEntry> = match wanted {
        None => manifest
            .files
            .iter()
            .filter(|entry| entry.kind == EntryKind::File)
            .collect(),
        Some(wanted) => {
            let wanted: HashSet<&str> = wanted.iter().map(String::as_str).collect();
            let chosen: Vec<&ManifestEntry> = manifest
                .files
                .iter()
                .filter(|entry| {
                    entry.kind == EntryKind::File && wanted.contains(entry.path.as_str())
                })
                .collect();
            if chosen.len() != wanted.len() {
                let known: HashSet<&str> = chosen.iter().map(|entry| entry.path.as_str()).collect();
                let unknown = wanted.iter().find(|path| !known.contains(**path));
                return Err(Error::BadRequest {
                    details: format!(
                        "{:?} is not a file of the bundle {}; ask the receiver again what it needs",
                        unknown.copied().unwrap_or_default(),
                        bundle.display()
                    ),
                });
            }
            chosen
        }
    };
    let total: u64 = files.iter().map(|entry| entry.size).sum();
    progress.start(Phase::Copying, total, files.len() as u64);
    let write_error = |error| Error::io("write the transfer stream to", "the output", error);
    write_header(out, &manifest_bytes, files.len() as u64, total).map_err(write_error)?;
    let top = fd_walk::open_folder_following(bundle)
        .map_err(|error| Error::io("open the bundle", bundle, error.into()))?;
    let mut buffer = vec![0u8; BUFFER_BYTES];
    for entry in &files {
        progress.check_cancelled()?;
        let path = bundle.join(&entry.path);
        let mut file = open_file_in(top.as_fd(), bundle, &entry.path)?;
        let size = file
            .metadata()
            .map_err(|error| Error::io("inspect", &path, error))?
            .len();
        if size != entry.size {
            return Err(damaged(
                bundle,
                format!(
                    "{} has {size} bytes, the manifest says {}; run `cmw-upgrade backup verify` there",
                    entry.path, entry.size
                ),
            ));
        }
        out.write_all(&[FILE_TAG]).map_err(write_error)?;
        out.write_all(&(entry.path.len() as u32).to_be_bytes())
            .map_err(write_error)?;
        out.write_all(entry.path.as_bytes()).map_err(write_error)?;
        out.write_all(&entry.size.to_be_bytes())
            .map_err(write_error)?;
        let mut left = entry.size;
        while left > 0 {
            progress.check_cancelled()?;
            let chunk = left.min(BUFFER_BYTES as u64) as usize;
            let read = match file.read(&mut buffer[..chunk]) {
                Ok(0) => {
                    return Err(Error::SourceChanged {
                        path,
                        details: "it got shorter while it was sent".to_owned(),
                    })
                }
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(Error::io("read", &path, error)),
            };
            out.write_all(&buffer[..read]).map_err(write_error)?;
            left -= read as u64;
            progress.add_bytes(read as u64);
        }
        progress.add_file();
    }
    write_end(out, files.len() as u64).map_err(write_error)
}

/// The files of `manifest` that are not yet in `dest` with the right size and
/// BLAKE3 (every file when `dest` does not exist): what a transfer must send.
///
/// # Errors
/// [`Error::Io`] when `dest` cannot be listed; [`Error::Cancelled`].
pub fn files_needed(dest: &Path, manifest: &Manifest, progress: &Progress) -> Result<Vec<String>> {
    let all = || {
        manifest
            .files
            .iter()
            .filter(|entry| entry.kind == EntryKind::File)
            .map(|entry| entry.path.clone())
            .collect()
    };
    match fd_walk::stat_path(dest) {
        Err(Errno::NOENT) => return Ok(all()),
        Err(error) => return Err(Error::io("inspect", dest, error.into())),
        Ok(_) => {}
    }
    let report = super::verify::verify_entries(dest, manifest, progress)?;
    let wrong: HashSet<&str> = report
        .missing
        .iter()
        .chain(&report.changed)
        .map(String::as_str)
        .collect();
    Ok(manifest
        .files
        .iter()
        .filter(|entry| entry.kind == EntryKind::File && wrong.contains(entry.path.as_str()))
        .map(|entry| entry.path.clone())
        .collect())
}

/// Reads exactly `buffer.len()` bytes; a short stream is [`truncated`].
fn read_exact(input: &mut dyn Read, buffer: &mut [u8], dest: &Path) -> Result<()> {
    input.read_exact(buffer).map_err(|error| {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            truncated(dest)
        } else {
            Error::io("read the transfer stream for", dest, error)
        }
    })
}

fn read_u64(input: &mut dyn Read, dest: &Path) -> Result<u64> {
    let mut bytes = [0u8; 8];
    read_exact(input, &mut bytes, dest)?;
    Ok(u64::from_be_bytes(bytes))
}

fn read_u32(input: &mut dyn Read, dest: &Path) -> Result<u32> {
    let mut bytes = [0u8; 4];
    read_exact(input, &mut bytes, dest)?;
    Ok(u32::from_be_bytes(bytes))
}

fn timestamps(seconds: i64, nanoseconds: u32) -> Timestamps {
    let time = Timespec {
        tv_sec: seconds,
        tv_nsec: nanoseconds.min(999_999_999).into(),
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn ids(entry: &ManifestEntry) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    (
        Some(rustix::fs::Uid::from_raw(entry.uid)),
        Some(rustix::fs::Gid::from_raw(entry.gid)),
    )
}

/// The receiving side: the destination folder held open, and the folders
/// below it opened so far.
struct Receiver<'a> {
    dest: &'a Path,
    top: OwnedFd,
    as_root: bool,
}

impl Receiver<'_> {
    /// Opens (creating as 0700 when missing) the folder at `relative` under
    /// the destination, never following a link.
    fn folder(&self, relative: &str) -> Result<OwnedFd> {
        let mut handle = self
            .top
            .try_clone()
            .map_err(|error| Error::io("open", self.dest, error))?;
        if relative.is_empty() {
            return Ok(handle);
        }
        let mut walked = PathBuf::from(self.dest);
        for name in relative.split('/') {
            walked.push(name);
            match fd_walk::open_child_folder(handle.as_fd(), name) {
                Ok(Some(next)) => handle = next,
                Ok(None) => {
                    return Err(Error::NotAFolder {
                        path: walked,
                        hint: "something else is where the bundle has a folder; move it away and run the transfer again",
                    })
                }
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(handle.as_fd(), name, Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(error) => return Err(Error::io("create the folder", &walked, error.into())),
                    }
                    handle = fd_walk::open_child_folder(handle.as_fd(), name)
                        .map_err(|error| Error::io("open", &walked, error.into()))?
                        .ok_or_else(|| Error::NotAFolder {
                            path: walked.clone(),
                            hint: "something else took the place of the folder just created; run the transfer again",
                        })?;
                }
                Err(error) => return Err(Error::io("open", &walked, error.into())),
            }
        }
        Ok(handle)
    }

    /// Receives one file's `size` bytes into its temporary name, checks them
    /// against `entry` and renames the file into place.
    fn receive_file(
        &self,
        entry: &ManifestEntry,
        input: &mut dyn Read,
        buffer: &mut [u8],
        progress: &Progress,
    ) -> Result<()> {
        let (folder, name) = split(&entry.path);
        let handle = self.folder(folder)?;
        let temp = format!("{name}{PARTIAL_SUFFIX}");
        let temp_path = self.dest.join(format!("{}{PARTIAL_SUFFIX}", entry.path));
        // A leftover of a run that stopped: it is this file, about to be written again.
        match rustix::fs::unlinkat(handle.as_fd(), temp.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(error) => return Err(Error::io("remove the leftover", &temp_path, error.into())),
        }
        let mut output = fd_walk::create_child_file(handle.as_fd(), temp.as_str(), 0o600)
            .map_err(|error| Error::io("create", &temp_path, error.into()))?;
        let written = self.fill(entry, &mut output, input, buffer, progress, &temp_path);
        let finished = written.and_then(|()| {
            let temp_path = &temp_path;
            let set = |action: &'static str| {
                move |error: Errno| Error::io(action, temp_path, error.into())
            };
            if self.as_root {
                let (uid, gid) = ids(entry);
                rustix::fs::fchown(&output, uid, gid).map_err(set("change the owner of"))?;
            }
            rustix::fs::fchmod(&output, Mode::from_raw_mode(received_mode(entry.mode)))
                .map_err(set("set the mode of"))?;
            rustix::fs::futimens(&output, &timestamps(entry.mtime, entry.mtime_nsec))
                .map_err(set("set the times of"))?;
            rustix::fs::renameat(handle.as_fd(), temp.as_str(), handle.as_fd(), name).map_err(
                |error| {
                    Error::io(
                        "rename into place",
                        self.dest.join(&entry.path),
                        error.into(),
                    )
                },
            )
        });
        if finished.is_err() {
            let _ = rustix::fs::unlinkat(handle.as_fd(), temp.as_str(), AtFlags::empty());
        }
        finished?;
        progress.add_file();
        Ok(())
    }

    fn fill(
        &self,
        entry: &ManifestEntry,
        output: &mut File,
        input: &mut dyn Read,
        buffer: &mut [u8],
        progress: &Progress,
        temp_path: &Path,
    ) -> Result<()> {
        let mut hasher = blake3::Hasher::new();
        let mut left = entry.size;
        while left > 0 {
            progress.check_cancelled()?;
            let chunk = left.min(buffer.len() as u64) as usize;
            let read = match input.read(&mut buffer[..chunk]) {
                Ok(0) => return Err(truncated(self.dest)),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    return Err(Error::io("read the transfer stream for", self.dest, error))
                }
            };
            hasher.update(&buffer[..read]);
            output
                .write_all(&buffer[..read])
                .map_err(|error| Error::io("write", temp_path, error))?;
            left -= read as u64;
            progress.add_bytes(read as u64);
        }
        let hash = hasher.finalize().to_hex();
        if entry.blake3.as_deref() != Some(hash.as_str()) {
            return Err(damaged(
                self.dest,
                format!(
                    "{} arrived with BLAKE3 {hash}, the manifest says {}; the sender's copy is damaged \
                     (run `cmw-upgrade backup verify` there) or the stream was altered",
                    entry.path,
                    entry.blake3.as_deref().unwrap_or("nothing")
                ),
            ));
        }
        Ok(())
    }

    /// Creates the manifest's folders and links, and gives the folders their
    /// mode, owner and time (deepest first, after everything in them).
    fn finish_tree(&self, manifest: &Manifest) -> Result<()> {
        for entry in manifest
            .files
            .iter()
            .filter(|e| e.kind == EntryKind::Symlink)
        {
            let (folder, name) = split(&entry.path);
            let handle = self.folder(folder)?;
            let path = self.dest.join(&entry.path);
            let target = entry.target.as_deref().unwrap_or_default();
            match fd_walk::read_link_child(handle.as_fd(), name) {
                Ok(existing) if existing == OsStr::new(target) => {}
                Ok(_) => {
                    rustix::fs::unlinkat(handle.as_fd(), name, AtFlags::empty())
                        .map_err(|error| Error::io("replace the link", &path, error.into()))?;
                    rustix::fs::symlinkat(target, handle.as_fd(), name)
                        .map_err(|error| Error::io("create the link", &path, error.into()))?;
                }
                Err(Errno::NOENT) => rustix::fs::symlinkat(target, handle.as_fd(), name)
                    .map_err(|error| Error::io("create the link", &path, error.into()))?,
                Err(_) => {
                    return Err(Error::AlreadyExists {
                        path,
                        hint: "the bundle has a link there; move what is in the way and run the transfer again",
                    })
                }
            }
            if self.as_root {
                let (uid, gid) = ids(entry);
                rustix::fs::chownat(handle.as_fd(), name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|error| Error::io("change the owner of", &path, error.into()))?;
            }
            rustix::fs::utimensat(
                handle.as_fd(),
                name,
                &timestamps(entry.mtime, entry.mtime_nsec),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|error| Error::io("set the times of", &path, error.into()))?;
        }
        let mut folders: Vec<&ManifestEntry> = manifest
            .files
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .collect();
        folders.sort_by_key(|entry| std::cmp::Reverse(entry.path.matches('/').count()));
        for entry in &folders {
            self.folder(&entry.path)?;
        }
        for entry in folders {
            let handle = self.folder(&entry.path)?;
            let path = self.dest.join(&entry.path);
            if self.as_root {
                let (uid, gid) = ids(entry);
                rustix::fs::fchown(&handle, uid, gid)
                    .map_err(|error| Error::io("change the owner of", &path, error.into()))?;
            }
            rustix::fs::fchmod(&handle, Mode::from_raw_mode(received_mode(entry.mode)))
                .map_err(|error| Error::io("set the mode of", &path, error.into()))?;
            rustix::fs::futimens(&handle, &timestamps(entry.mtime, entry.mtime_nsec))
                .map_err(|error| Error::io("set the times of", &path, error.into()))?;
        }
        Ok(())
    }

    /// Checks that every file of the manifest is in place with its size.
    fn check_complete(&self, manifest: &Manifest) -> Result<()> {
        for entry in manifest.files.iter().filter(|e| e.kind == EntryKind::File) {
            let (folder, name) = split(&entry.path);
            let found = fd_walk::open_folder_path(self.top.as_fd(), Path::new(folder))
                .and_then(|handle| fd_walk::stat_child(handle.as_fd(), name));
            match found {
                Ok(stat) if stat.is_file() && stat.size == entry.size => {}
                _ => {
                    return Err(damaged(
                        self.dest,
                        format!(
                        "{} is not in place after the transfer (it was neither sent nor there); \
                             run the transfer again",
                        entry.path
                    ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Writes `manifest.json` through a temporary name, flushed.
    fn write_manifest(&self, bytes: &[u8]) -> Result<()> {
        let path = self.dest.join(MANIFEST_FILE);
        let temp = format!("{MANIFEST_FILE}{PARTIAL_SUFFIX}");
        let _ = rustix::fs::unlinkat(self.top.as_fd(), temp.as_str(), AtFlags::empty());
        let mut file = fd_walk::create_child_file(self.top.as_fd(), temp.as_str(), 0o600)
            .map_err(|error| Error::io("create", &path, error.into()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|error| Error::io("write", &path, error))?;
        rustix::fs::renameat(
            self.top.as_fd(),
            temp.as_str(),
            self.top.as_fd(),
            MANIFEST_FILE,
        )
        .map_err(|error| Error::io("rename into place", &path, error.into()))?;
        rustix::fs::fsync(&self.top).map_err(|error| Error::io("flush", self.dest, error.into()))
    }
}

/// Opens the destination folder, creating it (0700) when it is missing.
fn open_destination(dest: &Path) -> Result<OwnedFd> {
    match rustix::fs::mkdir(dest, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(error) => return Err(Error::io("create the bundle folder", dest, error.into())),
    }
    // Followed when it is a link: the admin named it (as `backup verify` does).
    match fd_walk::open_folder_following(dest) {
        Ok(handle) => Ok(handle),
        Err(Errno::NOTDIR | Errno::LOOP) => Err(Error::NotAFolder {
            path: dest.to_path_buf(),
            hint: "name a new or existing folder to receive the bundle",
        }),
        Err(error) => Err(Error::io("open", dest, error.into())),
    }
}

/// Reads a transfer stream from `input` into the bundle folder `dest` (created
/// 0700 when missing): see the module's documentation for what is checked and
/// in which order things are written.
///
/// # Errors
/// [`Error::BundleDamaged`] for a malformed, cut or altered stream;
/// [`Error::BadRequest`] for another stream format; [`Error::Io`] for the
/// destination; [`Error::Cancelled`]. What was received in full stays in
/// place for the next run; nothing incomplete keeps a final name.
pub fn receive_bundle(
    dest: &Path,
    input: &mut dyn Read,
    progress: &Progress,
) -> Result<ReceiveReport> {
    receive_bundle_expecting(dest, input, None, progress)
}

/// The hex BLAKE3 of a manifest's bytes: what a transfer's two reads of the
/// manifest (for the needed files, then in the stream) are compared by.
pub fn manifest_hash(manifest_bytes: &[u8]) -> String {
    blake3::hash(manifest_bytes).to_hex().to_string()
}

/// [`receive_bundle`], refusing a stream whose manifest's BLAKE3 is not
/// `expected_manifest` (hex): the needed files were listed from that manifest,
/// so a sender whose bundle changed since must not finish another one here.
///
/// # Errors
/// As [`receive_bundle`]; [`Error::BundleDamaged`] for another manifest, before
/// anything is written.
pub fn receive_bundle_expecting(
    dest: &Path,
    input: &mut dyn Read,
    expected_manifest: Option<&str>,
    progress: &Progress,
) -> Result<ReceiveReport> {
    let mut magic = [0u8; 8];
    read_exact(input, &mut magic, dest)?;
    let version = read_u32(input, dest)?;
    if &magic != STREAM_MAGIC || version != STREAM_VERSION {
        return Err(Error::BadRequest {
            details: format!(
                "the input is not a cmw-upgrade transfer stream of format {STREAM_VERSION}; \
                 use the same cmw-upgrade version on both servers"
            ),
        });
    }
    let manifest_length = read_u64(input, dest)?;
    if manifest_length > MAX_MANIFEST_BYTES {
        return Err(damaged(
            dest,
            "the stream announces a manifest larger than 256 MiB",
        ));
    }
    let mut manifest_bytes = Vec::new();
    input
        .take(manifest_length)
        .read_to_end(&mut manifest_bytes)
        .map_err(|error| Error::io("read the transfer stream for", dest, error))?;
    if manifest_bytes.len() as u64 != manifest_length {
        return Err(truncated(dest));
    }
    if let Some(expected) = expected_manifest {
        let arrived = manifest_hash(&manifest_bytes);
        if !arrived.eq_ignore_ascii_case(expected) {
            return Err(damaged(
                dest,
                format!(
                    "the stream carries a {MANIFEST_FILE} with BLAKE3 {arrived}, but the files to \
                     send were chosen from one with BLAKE3 {expected}: the bundle on the sending \
                     server changed during the transfer (is a backup still writing there?); \
                     nothing was written, run the transfer again once the bundle is finished"
                ),
            ));
        }
    }
    let manifest = parse_manifest(&manifest_bytes, dest)?;
    let announced_files = read_u64(input, dest)?;
    let announced_bytes = read_u64(input, dest)?;
    let files: HashMap<&str, &ManifestEntry> = manifest
        .files
        .iter()
        .filter(|entry| entry.kind == EntryKind::File)
        .map(|entry| (entry.path.as_str(), entry))
        .collect();
    if announced_files > files.len() as u64 || announced_bytes > manifest.total_bytes() {
        return Err(damaged(
            dest,
            "the stream announces more files or bytes than its manifest has",
        ));
    }
    let top = open_destination(dest)?;
    // One receiver per folder: a transfer left running by a killed control
    // point must not write the same files as its rerun. The kernel drops the
    // lock with the process.
    match rustix::fs::flock(&top, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            return Err(Error::Locked {
                path: dest.to_path_buf(),
                holder: "another transfer is writing into it".to_owned(),
            })
        }
        // A file system that cannot lock a folder (NFS emulates flock with
        // byte-range locks, which need a file open for writing): the transfer
        // goes on unlocked, as it did before this lock existed.
        Err(Errno::BADF | Errno::NOLCK | Errno::OPNOTSUPP | Errno::INVAL) => {}
        Err(error) => return Err(Error::io("lock", dest, error.into())),
    }
    let receiver = Receiver {
        dest,
        top,
        as_root: running_as_root(),
    };
    // A finished bundle already there must be this one (a rerun): another
    // bundle is never overwritten, whatever --to said.
    if let Ok(existing) = read_manifest_bytes(dest) {
        if existing != manifest_bytes {
            return Err(Error::AlreadyExists {
                path: dest.to_path_buf(),
                hint: "it holds another bundle (its manifest.json differs); choose an empty \
                       folder, or remove that bundle first",
            });
        }
    }
    // This bundle's manifest from a finished run goes first: until the end
    // the folder is incomplete.
    match rustix::fs::unlinkat(receiver.top.as_fd(), MANIFEST_FILE, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(error) => {
            return Err(Error::io(
                "remove the old",
                dest.join(MANIFEST_FILE),
                error.into(),
            ))
        }
    }
    progress.start(Phase::Copying, announced_bytes, announced_files);
    let mut buffer = vec![0u8; BUFFER_BYTES];
    let mut received: HashSet<&str> = HashSet::new();
    let mut report = ReceiveReport {
        bundle: dest.to_path_buf(),
        files: files.len() as u64,
        bytes: manifest.total_bytes(),
        ..ReceiveReport::default()
    };
    loop {
        let mut tag = [0u8; 1];
        read_exact(input, &mut tag, dest)?;
        match tag[0] {
            FILE_TAG => {}
            END_TAG => break,
            other => {
                return Err(damaged(
                    dest,
                    format!("the stream has the unknown record {other:#04x}"),
                ))
            }
        }
        let length = read_u32(input, dest)?;
        if length == 0 || length > MAX_PATH_BYTES {
            return Err(damaged(
                dest,
                format!("the stream has a path of {length} bytes"),
            ));
        }
        let mut path = vec![0u8; length as usize];
        read_exact(input, &mut path, dest)?;
        let path = String::from_utf8_lossy(&path).into_owned();
        let Some((known, entry)) = files.get_key_value(path.as_str()) else {
            return Err(damaged(
                dest,
                format!("the stream sends {path:?}, which is not a file of its manifest"),
            ));
        };
        if !received.insert(known) {
            return Err(damaged(dest, format!("the stream sends {path:?} twice")));
        }
        let size = read_u64(input, dest)?;
        if size != entry.size {
            return Err(damaged(
                dest,
                format!(
                    "the stream sends {path:?} with {size} bytes, the manifest says {}",
                    entry.size
                ),
            ));
        }
        if report.received_files >= announced_files
            || report.received_bytes + size > announced_bytes
        {
            return Err(damaged(dest, "the stream sends more than it announced"));
        }
        receiver.receive_file(entry, input, &mut buffer, progress)?;
        report.received_files += 1;
        report.received_bytes += size;
    }
    let ended = read_u64(input, dest)?;
    if ended != report.received_files
        || report.received_files != announced_files
        || report.received_bytes != announced_bytes
    {
        return Err(damaged(
            dest,
            format!(
                "the stream announced {announced_files} files ({announced_bytes} bytes), \
                 sent {} ({} bytes) and ended saying {ended}",
                report.received_files, report.received_bytes
            ),
        ));
    }
    let mut extra = [0u8; 1];
    loop {
        match input.read(&mut extra) {
            Ok(0) => break,
            Ok(_) => return Err(damaged(dest, "the stream goes on after its end marker")),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(Error::io("read the transfer stream for", dest, error)),
        }
    }
    progress.check_cancelled()?;
    receiver.finish_tree(&manifest)?;
    receiver.check_complete(&manifest)?;
    // Everything under its name is on disk before the manifest says it is complete.
    rustix::fs::syncfs(&receiver.top).map_err(|error| Error::io("flush", dest, error.into()))?;
    receiver.write_manifest(&manifest_bytes)?;
    report.skipped_files = report.files - report.received_files;
    Ok(report)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backup::verify_bundle;
    use proptest::prelude::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    /// A bundle with nested folders, files of a few sizes (one over the
    /// buffer), an empty file and a link, with its manifest.
    pub(crate) fn make_bundle(dir: &Path) -> Manifest {
        let files: Vec<(&str, Vec<u8>, u32)> = vec![
            ("config/etc/prod.yml", b"db: x\n".to_vec(), 0o600),
            (
                "database/db/node/part-1.bin",
                vec![7u8; BUFFER_BYTES + 17],
                0o644,
            ),
            (
                "database/db/node/part-2.bin",
                (0..70_000u32).map(|i| i as u8).collect(),
                0o640,
            ),
            ("database/empty", Vec::new(), 0o644),
            ("database/z.dat", b"last".to_vec(), 0o400),
        ];
        let mut entries = Vec::new();
        for folder in [
            "config",
            "config/etc",
            "database",
            "database/db",
            "database/db/node",
        ] {
            std::fs::create_dir_all(dir.join(folder)).unwrap();
            entries.push(ManifestEntry {
                path: folder.to_owned(),
                kind: EntryKind::Dir,
                size: 0,
                mode: 0o750,
                mtime: 1_700_000_000,
                mtime_nsec: 5,
                uid: 0,
                gid: 0,
                blake3: None,
                target: None,
            });
        }
        for (path, content, mode) in &files {
            std::fs::write(dir.join(path), content).unwrap();
            entries.push(ManifestEntry {
                path: (*path).to_owned(),
                kind: EntryKind::File,
                size: content.len() as u64,
                mode: *mode,
                mtime: 1_700_000_123,
                mtime_nsec: 456,
                uid: 0,
                gid: 0,
                blake3: Some(blake3::hash(content).to_hex().to_string()),
                target: None,
            });
        }
        symlink("node/part-1.bin", dir.join("database/db/current")).unwrap();
        entries.push(ManifestEntry {
            path: "database/db/current".to_owned(),
            kind: EntryKind::Symlink,
            size: 0,
            mode: 0o777,
            mtime: 1_700_000_000,
            mtime_nsec: 0,
            uid: 0,
            gid: 0,
            blake3: None,
            target: Some("node/part-1.bin".to_owned()),
        });
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = Manifest {
            format: FORMAT_VERSION,
            tool_version: "test".to_owned(),
            instance: Some("prod".to_owned()),
            host: "old".to_owned(),
            os_family: None,
            platform_version: None,
            method: super::super::BackupMethod::Copy,
            consistency: String::new(),
            snapshot: None,
            sources: Default::default(),
            started: String::new(),
            finished: String::new(),
            files: entries,
        };
        std::fs::write(
            dir.join(MANIFEST_FILE),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();
        manifest
    }

    fn stream_of(bundle: &Path, wanted: Option<&[String]>) -> Vec<u8> {
        let mut out = Vec::new();
        send_bundle(bundle, wanted, &mut out, &Progress::default()).unwrap();
        out
    }

    fn receive(dest: &Path, stream: &[u8]) -> Result<ReceiveReport> {
        receive_bundle(dest, &mut &stream[..], &Progress::default())
    }

    fn assert_damaged(result: Result<ReceiveReport>) {
        match result {
            Err(Error::BundleDamaged { .. } | Error::BadRequest { .. }) => {}
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// No file under a temporary name is left, and no manifest unless complete.
    fn leftovers(dest: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![dest.to_path_buf()];
        while let Some(folder) = pending.pop() {
            let Ok(listing) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in listing {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(PARTIAL_SUFFIX) {
                    found.push(name);
                }
                if entry.file_type().unwrap().is_dir() {
                    pending.push(entry.path());
                }
            }
        }
        found
    }

    /// The sending server may be compromised: no setuid or setgid bit from its
    /// manifest, and a finished bundle of another manifest is never replaced.
    #[test]
    fn a_sender_cannot_plant_setuid_files_or_replace_another_bundle() {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        let mut manifest = make_bundle(&source);
        for entry in &mut manifest.files {
            if entry.path == "database/z.dat" {
                entry.mode = 0o6755;
            }
        }
        std::fs::write(
            source.join(MANIFEST_FILE),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();
        let dest = work.path().join("copy");
        receive(&dest, &stream_of(&source, None)).unwrap();
        let mode = std::fs::metadata(dest.join("database/z.dat"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "{mode:o}");

        let other = work.path().join("other");
        let mut other_manifest = make_bundle(&other);
        other_manifest.host = "another-server".to_owned();
        std::fs::write(
            other.join(MANIFEST_FILE),
            serde_json::to_vec_pretty(&other_manifest).unwrap(),
        )
        .unwrap();
        let before = read_manifest_bytes(&dest).unwrap();
        let refused = receive(&dest, &stream_of(&other, None)).unwrap_err();
        assert_eq!(refused.kind(), crate::ErrorKind::AlreadyExists, "{refused}");
        assert_eq!(read_manifest_bytes(&dest).unwrap(), before);
    }

    #[test]
    fn a_bundle_arrives_whole_and_verifies() {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        let manifest = make_bundle(&source);
        let dest = work.path().join("copy");
        let stream = stream_of(&source, None);
        assert!(stream.starts_with(STREAM_MAGIC));
        let report = receive(&dest, &stream).unwrap();
        assert_eq!(report.received_files, 5);
        assert_eq!(report.skipped_files, 0);
        assert_eq!(report.bytes, manifest.total_bytes());
        let verified = verify_bundle(&dest, &Progress::default()).unwrap();
        assert!(verified.ok, "{verified:?}");
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = std::fs::metadata(dest.join("database/z.dat")).unwrap();
        assert_eq!(
            (file.mode() & 0o7777, file.mtime(), file.mtime_nsec()),
            (0o400, 1_700_000_123, 456)
        );
        let folder = std::fs::metadata(dest.join("database/db")).unwrap();
        assert_eq!(
            (folder.mode() & 0o7777, folder.mtime()),
            (0o750, 1_700_000_000)
        );
        assert!(leftovers(&dest).is_empty());
        // Nothing more is needed, and a second run with nothing to send finishes.
        assert!(files_needed(&dest, &manifest, &Progress::default())
            .unwrap()
            .is_empty());
        let mut empty = Vec::new();
        send_manifest_only(&read_manifest_bytes(&source).unwrap(), &mut empty).unwrap();
        assert_eq!(receive(&dest, &empty).unwrap().skipped_files, 5);
        assert!(verify_bundle(&dest, &Progress::default()).unwrap().ok);
    }

    #[test]
    fn a_link_in_the_bundle_is_never_followed_by_the_sender() {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        make_bundle(&source);
        std::fs::write(work.path().join("secret"), b"last").unwrap();
        std::fs::remove_file(source.join("database/z.dat")).unwrap();
        symlink(work.path().join("secret"), source.join("database/z.dat")).unwrap();
        let error = send_bundle(&source, None, &mut Vec::new(), &Progress::default()).unwrap_err();
        assert!(matches!(error, Error::Io { .. }), "{error}");
        // A folder swapped for a link to a copy of it outside is not entered either.
        std::fs::remove_file(source.join("database/z.dat")).unwrap();
        std::fs::write(source.join("database/z.dat"), b"last").unwrap();
        let outside = work.path().join("outside");
        std::fs::rename(source.join("config"), &outside).unwrap();
        symlink(&outside, source.join("config")).unwrap();
        let error = send_bundle(&source, None, &mut Vec::new(), &Progress::default()).unwrap_err();
        assert!(matches!(error, Error::Io { .. }), "{error}");
        assert!(error.to_string().contains("config"), "{error}");
    }

    fn check_resume(cut: usize) {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        let manifest = make_bundle(&source);
        let dest = work.path().join("copy");
        let stream = stream_of(&source, None);
        let cut = cut % stream.len();
        assert_damaged(receive(&dest, &stream[..cut]));
        assert!(leftovers(&dest).is_empty(), "cut at {cut}");
        assert!(!dest.join(MANIFEST_FILE).exists());
        let needed = files_needed(&dest, &manifest, &Progress::default()).unwrap();
        let second = stream_of(&source, Some(&needed));
        assert!(second.len() <= stream.len());
        let report = receive(&dest, &second).unwrap();
        assert_eq!(report.received_files as usize, needed.len());
        assert_eq!(report.received_files + report.skipped_files, 5);
        assert!(
            verify_bundle(&dest, &Progress::default()).unwrap().ok,
            "cut at {cut}"
        );
    }

    #[test]
    fn a_cut_after_the_first_files_resends_only_the_rest() {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        let manifest = make_bundle(&source);
        let stream = stream_of(&source, None);
        let dest = work.path().join("copy");
        // Cut in the middle of the third file (part-2.bin).
        assert_damaged(receive(&dest, &stream[..stream.len() - 40_000]));
        let needed = files_needed(&dest, &manifest, &Progress::default()).unwrap();
        assert_eq!(
            needed,
            [
                "database/db/node/part-2.bin",
                "database/empty",
                "database/z.dat"
            ]
        );
        check_resume(stream.len() - 40_000);
    }

    #[test]
    fn a_tampered_byte_is_refused_and_leaves_nothing_half_written() {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        make_bundle(&source);
        let stream = stream_of(&source, None);
        let manifest_end = 8 + 4 + 8 + read_manifest_bytes(&source).unwrap().len() + 16;
        for offset in [
            manifest_end + 100,
            manifest_end + 30_000,
            stream.len() - 10,
            stream.len() - 1,
        ] {
            let dest = work.path().join(format!("copy-{offset}"));
            let mut tampered = stream.clone();
            tampered[offset] ^= 0x20;
            assert_damaged(receive(&dest, &tampered));
            assert!(leftovers(&dest).is_empty());
            assert!(!dest.join(MANIFEST_FILE).exists());
        }
    }

    /// A stream with the given manifest and one file record.
    fn forged(manifest: &[u8], path: &str, size: u64, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out, manifest, 1, size).unwrap();
        out.push(FILE_TAG);
        out.extend((path.len() as u32).to_be_bytes());
        out.extend(path.as_bytes());
        out.extend(size.to_be_bytes());
        out.extend(content);
        write_end(&mut out, 1).unwrap();
        out
    }

    #[test]
    fn malformed_streams_are_refused() {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        make_bundle(&source);
        let bytes = read_manifest_bytes(&source).unwrap();
        let dest = work.path().join("copy");
        for stream in [
            forged(&bytes, "database/other", 4, b"last"),
            forged(&bytes, "database/../../etc/passwd", 4, b"last"),
            forged(&bytes, "database/z.dat", 5, b"last!"),
            forged(&bytes, "database/z.dat", 4, b"lost"),
            forged(&bytes, "database/db", 0, b""),
            b"not a stream at all".to_vec(),
        ] {
            assert_damaged(receive(&dest, &stream));
            assert!(leftovers(&dest).is_empty());
        }
        let good = forged(&bytes, "database/z.dat", 4, b"last");
        // Bytes after the end, a wrong count at the end, a path sent twice.
        let mut longer = good.clone();
        longer.push(0);
        assert_damaged(receive(&dest, &longer));
        let mut miscounted = good.clone();
        let end = miscounted.len() - 1;
        miscounted[end] = 2;
        assert_damaged(receive(&dest, &miscounted));
        // A manifest with an unsafe path is refused before anything is written.
        let evil = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"database/z.dat\"", "\"../z.dat\"");
        let fresh = work.path().join("never");
        assert_damaged(receive(
            &fresh,
            &forged(evil.as_bytes(), "../z.dat", 4, b"last"),
        ));
        assert!(!fresh.exists());
        // The forged good one alone is incomplete: the rest of the bundle is missing.
        assert_damaged(receive(&dest, &good));
        assert!(!dest.join(MANIFEST_FILE).exists());
    }

    /// The needed files were chosen from one manifest: a stream carrying
    /// another (the bundle changed between the two reads) writes nothing.
    #[test]
    fn a_stream_with_another_manifest_than_expected_is_refused() {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        make_bundle(&source);
        let expected = manifest_hash(&read_manifest_bytes(&source).unwrap());
        let mut changed = make_bundle(&work.path().join("changed"));
        changed.host = "changed meanwhile".to_owned();
        std::fs::write(
            source.join(MANIFEST_FILE),
            serde_json::to_vec_pretty(&changed).unwrap(),
        )
        .unwrap();
        let dest = work.path().join("copy");
        let stream = stream_of(&source, None);
        let error = receive_bundle_expecting(
            &dest,
            &mut &stream[..],
            Some(&expected),
            &Progress::default(),
        )
        .unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::BundleDamaged, "{error}");
        assert!(error.to_string().contains("changed"), "{error}");
        assert!(!dest.exists(), "nothing is written");
        let arrived = manifest_hash(&read_manifest_bytes(&source).unwrap());
        receive_bundle_expecting(
            &dest,
            &mut &stream[..],
            Some(&arrived),
            &Progress::default(),
        )
        .unwrap();
    }

    #[test]
    fn a_sender_refuses_paths_outside_the_manifest() {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        make_bundle(&source);
        for wanted in [["../etc/passwd".to_owned()], ["database/db".to_owned()]] {
            let error = send_bundle(
                &source,
                Some(&wanted),
                &mut Vec::new(),
                &Progress::default(),
            )
            .unwrap_err();
            assert!(matches!(error, Error::BadRequest { .. }), "{error}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn a_stream_cut_anywhere_resumes(cut in 0usize..2_000_000) {
            check_resume(cut);
        }

        #[test]
        fn arbitrary_bytes_are_refused_without_a_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            with_header in any::<bool>(),
        ) {
            let work = tempfile::tempdir().unwrap();
            let mut stream = Vec::new();
            if with_header {
                stream.extend(STREAM_MAGIC);
                stream.extend(STREAM_VERSION.to_be_bytes());
            }
            stream.extend(bytes);
            prop_assert!(receive(&work.path().join("copy"), &stream).is_err());
        }
    }
}
