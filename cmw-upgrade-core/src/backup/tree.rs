//! Planning and copying file trees: one pass that reads, hashes and writes.
//!
//! Each file is read once: the same buffer goes into BLAKE3 and to the copy.
//! A kernel copy (`copy_file_range`) would need a second read of the source to
//! hash it, which measured slower on the target's database shape (thousands of
//! partition files, see the README's speed table). Files are spread over all
//! cores, largest first, so one big file does not finish alone at the end.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::manifest::{EntryKind, ManifestEntry};
use super::{Phase, Progress};
use crate::error::{Error, Result};
use crate::parallel::parallel_map_with;

/// Bytes read at a time; one buffer per worker thread, so memory stays flat
/// whatever the database size.
const BUFFER_BYTES: usize = 1 << 20;

/// How copies get their mode, owner and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Treatment {
    /// The source's mode, owner (when running as root) and times: database files,
    /// which a restore gives back as they were.
    Keep,
    /// Files `0600`, folders `0700`, owned by the tool's user, times kept:
    /// config copies, which hold secrets.
    Private,
    /// The source's mode and times, this owner: a restore to the data owner.
    Owner(u32, u32),
}

/// One folder, file or link to copy.
#[derive(Debug, Clone)]
pub(crate) struct PlannedEntry {
    /// Where it is read from.
    pub source: PathBuf,
    /// Where it goes, relative to the destination, `/`-separated.
    pub path: String,
    /// File, folder or link.
    pub kind: EntryKind,
    /// Size when planned (files).
    pub size: u64,
    /// The source's attributes when planned.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// A link's target.
    pub target: Option<String>,
    /// How the copy gets its attributes.
    pub treatment: Treatment,
}

/// Everything one copy will do, planned before anything is written.
#[derive(Debug, Default)]
pub(crate) struct CopyPlan {
    /// The entries, sorted by path (parents before children) by [`CopyPlan::finish`].
    pub entries: Vec<PlannedEntry>,
    planned: HashSet<String>,
    /// Things the admin should know (skipped special files, missing optional files).
    pub warnings: Vec<String>,
}

fn utf8_name(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| Error::CheckFailed {
        what: "reading file names".to_owned(),
        details: format!(
            "{} is not valid UTF-8, which the manifest cannot record; rename it",
            path.display()
        ),
    })
}

fn planned_entry(
    source: PathBuf,
    path: String,
    metadata: &fs::Metadata,
    treatment: Treatment,
) -> Result<Option<PlannedEntry>> {
    let file_type = metadata.file_type();
    let (kind, target) = if file_type.is_dir() {
        (EntryKind::Dir, None)
    } else if file_type.is_file() {
        (EntryKind::File, None)
    } else if file_type.is_symlink() {
        let target =
            fs::read_link(&source).map_err(|error| Error::io("read the link", &source, error))?;
        (EntryKind::Symlink, Some(utf8_name(&target)?.to_owned()))
    } else {
        return Ok(None);
    };
    Ok(Some(PlannedEntry {
        size: if kind == EntryKind::File {
            metadata.len()
        } else {
            0
        },
        mode: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        mtime: metadata.mtime(),
        mtime_nsec: metadata.mtime_nsec() as u32,
        target,
        kind,
        source,
        path,
        treatment,
    }))
}

impl CopyPlan {
    fn push(&mut self, entry: PlannedEntry) {
        if self.planned.insert(entry.path.clone()) {
            self.entries.push(entry);
        }
    }

    /// Plans the folders above `path` that are not planned yet, from the
    /// folders above `source` (same depth), so a verify finds no unknown folder.
    fn add_parents(&mut self, source: &Path, path: &str, treatment: Treatment) -> Result<()> {
        let mut parents = Vec::new();
        let mut bundle_parent = Path::new(path).parent();
        let mut source_parent = source.parent();
        while let (Some(bundle), Some(source)) = (bundle_parent, source_parent) {
            if bundle.as_os_str().is_empty() {
                break;
            }
            parents.push((bundle.to_path_buf(), source.to_path_buf()));
            bundle_parent = bundle.parent();
            source_parent = source.parent();
        }
        for (bundle, source) in parents.into_iter().rev() {
            let bundle = utf8_name(&bundle)?.to_owned();
            if self.planned.contains(&bundle) {
                continue;
            }
            let metadata =
                fs::metadata(&source).map_err(|error| Error::io("inspect", &source, error))?;
            if let Some(entry) = planned_entry(source, bundle, &metadata, treatment)? {
                self.push(entry);
            }
        }
        Ok(())
    }

    /// Plans a whole folder tree under `prefix`. The folder itself may be reached
    /// through symlinks (a data disk mounted elsewhere); inside it, links are
    /// recorded as links and never followed, so a link loop is just a link.
    ///
    /// # Errors
    /// [`Error::Io`] when the folder cannot be resolved (missing, a symlink
    /// loop) or listed; [`Error::NotAFolder`] when it is a file.
    pub fn add_tree(&mut self, folder: &Path, prefix: &str, treatment: Treatment) -> Result<()> {
        let resolved = fs::canonicalize(folder).map_err(|error| {
            Error::io("resolve the folder (following its symlinks)", folder, error)
        })?;
        let metadata =
            fs::metadata(&resolved).map_err(|error| Error::io("inspect", &resolved, error))?;
        if !metadata.is_dir() {
            return Err(Error::NotAFolder {
                path: folder.to_path_buf(),
                hint: "the instance config names a file where a folder should be",
            });
        }
        self.add_parents(&resolved, prefix, treatment)?;
        if let Some(entry) =
            planned_entry(resolved.clone(), prefix.to_owned(), &metadata, treatment)?
        {
            self.push(entry);
        }
        let mut pending = vec![(resolved, prefix.to_owned())];
        while let Some((folder, path)) = pending.pop() {
            let listing =
                fs::read_dir(&folder).map_err(|error| Error::io("list", &folder, error))?;
            for item in listing {
                let item = item.map_err(|error| Error::io("list", &folder, error))?;
                let source = item.path();
                let name = item.file_name();
                let name = utf8_name(Path::new(&name))?;
                let child_path = format!("{path}/{name}");
                let metadata = fs::symlink_metadata(&source)
                    .map_err(|error| Error::io("inspect", &source, error))?;
                match planned_entry(source.clone(), child_path.clone(), &metadata, treatment)? {
                    Some(entry) => {
                        if entry.kind == EntryKind::Dir {
                            pending.push((source, child_path));
                        }
                        self.push(entry);
                    }
                    None => self.warnings.push(format!(
                        "skipped {}: not a file, folder or link (a socket, pipe or device)",
                        source.display()
                    )),
                }
            }
        }
        Ok(())
    }

    /// Plans one file at `path`; a symlink is followed, as `cp` does for a file
    /// named on its command line. A missing file is a warning, not an error:
    /// not every version or family has every config file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be inspected.
    pub fn add_file(&mut self, file: &Path, path: &str, treatment: Treatment) -> Result<()> {
        let metadata = match fs::metadata(file) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.warnings.push(format!(
                    "{} does not exist; not in the bundle",
                    file.display()
                ));
                return Ok(());
            }
            Err(error) => return Err(Error::io("inspect", file, error)),
        };
        if !metadata.is_file() {
            self.warnings.push(format!(
                "{} is not a regular file; not in the bundle",
                file.display()
            ));
            return Ok(());
        }
        self.add_parents(file, path, treatment)?;
        if let Some(entry) =
            planned_entry(file.to_path_buf(), path.to_owned(), &metadata, treatment)?
        {
            self.push(entry);
        }
        Ok(())
    }

    /// Sorts the plan so every folder comes before what it holds.
    pub fn finish(&mut self) {
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
    }

    /// Bytes of file data the plan copies.
    pub fn data_bytes(&self) -> u64 {
        self.entries.iter().map(|entry| entry.size).sum()
    }

    /// Files the plan copies.
    pub fn file_count(&self) -> u64 {
        self.entries
            .iter()
            .filter(|entry| entry.kind == EntryKind::File)
            .count() as u64
    }
}

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn system_time(seconds: i64, nanoseconds: u32) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::new(seconds as u64, nanoseconds)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
            + Duration::from_nanos(u64::from(nanoseconds))
    }
}

/// What the copy of one file found: its attributes when opened, its bytes and hash.
struct CopiedFile {
    index: usize,
    size: u64,
    blake3: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    mtime_nsec: u32,
}

impl Treatment {
    /// The owner a copy gets, or `None` to leave it with the tool's user (only
    /// root may give files away).
    fn owner(self, source: (u32, u32), as_root: bool) -> Option<(u32, u32)> {
        match self {
            Treatment::Keep if as_root => Some(source),
            Treatment::Owner(uid, gid) => Some((uid, gid)),
            _ => None,
        }
    }

    /// The mode a copy gets.
    fn mode(self, source: u32, is_dir: bool) -> u32 {
        match self {
            Treatment::Private if is_dir => 0o700,
            Treatment::Private => 0o600,
            _ => source,
        }
    }
}

/// A source's mode, owner and modification time.
struct SourceAttributes {
    mode: u32,
    owner: (u32, u32),
    mtime: SystemTime,
}

/// Sets owner, mode and times of an open file or folder as `treatment` says.
fn apply_attributes(
    handle: &File,
    path: &Path,
    source: &SourceAttributes,
    treatment: Treatment,
    is_dir: bool,
    as_root: bool,
) -> Result<()> {
    if let Some((uid, gid)) = treatment.owner(source.owner, as_root) {
        // Owner first: chown clears set-id bits, which the mode then restores.
        std::os::unix::fs::fchown(handle, Some(uid), Some(gid))
            .map_err(|error| Error::io("change the owner of", path, error))?;
    }
    handle
        .set_permissions(fs::Permissions::from_mode(
            treatment.mode(source.mode, is_dir),
        ))
        .map_err(|error| Error::io("set the mode of", path, error))?;
    handle
        .set_times(
            FileTimes::new()
                .set_modified(source.mtime)
                .set_accessed(source.mtime),
        )
        .map_err(|error| Error::io("set the times of", path, error))
}

fn copy_one_file(
    entry: &PlannedEntry,
    index: usize,
    destination: &Path,
    buffer: &mut [u8],
    progress: &Progress,
    as_root: bool,
) -> Result<CopiedFile> {
    progress.check_cancelled()?;
    let source = &entry.source;
    let mut input = match OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(source)
    {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(Error::SourceChanged {
                path: source.clone(),
                details: "it vanished".to_owned(),
            })
        }
        Err(error) => return Err(Error::io("read", source, error)),
    };
    let metadata = input
        .metadata()
        .map_err(|error| Error::io("inspect", source, error))?;
    if !metadata.is_file() {
        return Err(Error::SourceChanged {
            path: source.clone(),
            details: "it is no longer a regular file".to_owned(),
        });
    }
    let mut output = create_private_file(destination)?;
    let (size, blake3) = hash_stream(&mut input, Some(&mut output), buffer, progress).map_err(
        |error| match error {
            StreamError::Read(error) => Error::io("read", source, error),
            StreamError::Write(error) => Error::io("write", destination, error),
            StreamError::Cancelled => super::cancelled(),
        },
    )?;
    start_writeback(&output);
    // Attributes as they were when the copy started: a file the instance changes
    // afterwards then shows up as changed in `backup drift`.
    let source_attributes = SourceAttributes {
        mode: metadata.mode() & 0o7777,
        owner: (metadata.uid(), metadata.gid()),
        mtime: system_time(metadata.mtime(), metadata.mtime_nsec() as u32),
    };
    apply_attributes(
        &output,
        destination,
        &source_attributes,
        entry.treatment,
        false,
        as_root,
    )?;
    progress.add_file();
    Ok(CopiedFile {
        index,
        size,
        blake3,
        mode: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        mtime: metadata.mtime(),
        mtime_nsec: metadata.mtime_nsec() as u32,
    })
}

/// Why a hashed stream copy stopped.
pub(crate) enum StreamError {
    /// Reading the input failed.
    Read(io::Error),
    /// Writing the output failed.
    Write(io::Error),
    /// The operation was asked to stop; the output is incomplete.
    Cancelled,
}

/// Reads `input` to its end through `buffer`, hashing every byte with BLAKE3
/// and writing it to `output` when there is one: the one pass that copies,
/// hashes and counts progress. Returns the bytes read and the hex hash. A stop
/// request is honoured between buffers, so one large file does not hold it up.
pub(crate) fn hash_stream(
    input: &mut dyn Read,
    mut output: Option<&mut dyn Write>,
    buffer: &mut [u8],
    progress: &Progress,
) -> std::result::Result<(u64, String), StreamError> {
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    loop {
        if progress.is_cancelled() {
            return Err(StreamError::Cancelled);
        }
        let read = match input.read(buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(StreamError::Read(error)),
        };
        hasher.update(&buffer[..read]);
        if let Some(output) = output.as_mut() {
            output
                .write_all(&buffer[..read])
                .map_err(StreamError::Write)?;
        }
        size += read as u64;
        progress.add_bytes(read as u64);
    }
    Ok((size, hasher.finalize().to_hex().to_string()))
}

/// Creates a new file only the tool's user can read (`0600`); never replaces one.
///
/// # Errors
/// [`Error::Io`] naming the path.
pub(crate) fn create_private_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| Error::io("create", path, error))
}

/// Asks the kernel to start writing the file to disk now, without waiting.
///
/// The bundle is flushed once at the end (`syncfs`) before it gets its final
/// name; starting each file's writeback as soon as it is copied lets the disk
/// work while later files are still being read, so that flush has little left.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor
    // is valid for the duration of the call because `file` is borrowed.
    // A failure (e.g. a file system without support) only loses the overlap.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Copies everything in `plan` under `destination` (an existing folder),
/// hashing each file in the same pass. Returns the manifest entries in plan order.
///
/// # Errors
/// The first [`Error::Io`] (naming the path: a full disk, a permission),
/// [`Error::SourceChanged`], or [`Error::Cancelled`] once the progress's stop
/// request is set; what was written stays for the caller to remove.
pub(crate) fn copy_plan(
    plan: &CopyPlan,
    destination: &Path,
    progress: &Progress,
) -> Result<Vec<ManifestEntry>> {
    let as_root = running_as_root();
    progress.start(Phase::Copying, plan.data_bytes(), plan.file_count());
    let target_of = |entry: &PlannedEntry| destination.join(&entry.path);
    for entry in plan
        .entries
        .iter()
        .filter(|entry| entry.kind == EntryKind::Dir)
    {
        let folder = target_of(entry);
        // Writable by the tool until the end, whatever the source's mode.
        DirBuilder::new()
            .mode(0o700)
            .create(&folder)
            .map_err(|error| Error::io("create the folder", &folder, error))?;
    }
    let mut files: Vec<usize> = (0..plan.entries.len())
        .filter(|&index| plan.entries[index].kind == EntryKind::File)
        .collect();
    files.sort_by_key(|&index| std::cmp::Reverse(plan.entries[index].size));
    let copied = parallel_map_with(
        &files,
        || vec![0u8; BUFFER_BYTES],
        |buffer, &index| {
            let entry = &plan.entries[index];
            copy_one_file(entry, index, &target_of(entry), buffer, progress, as_root)
        },
    )?;
    let mut manifest: Vec<ManifestEntry> = plan
        .entries
        .iter()
        .map(|entry| ManifestEntry {
            path: entry.path.clone(),
            kind: entry.kind,
            size: entry.size,
            mode: entry.mode,
            mtime: entry.mtime,
            mtime_nsec: entry.mtime_nsec,
            uid: entry.uid,
            gid: entry.gid,
            blake3: None,
            target: entry.target.clone(),
        })
        .collect();
    for file in copied {
        let entry = &mut manifest[file.index];
        entry.size = file.size;
        entry.blake3 = Some(file.blake3);
        entry.mode = file.mode;
        entry.uid = file.uid;
        entry.gid = file.gid;
        entry.mtime = file.mtime;
        entry.mtime_nsec = file.mtime_nsec;
    }
    for entry in plan
        .entries
        .iter()
        .filter(|entry| entry.kind == EntryKind::Symlink)
    {
        let link = target_of(entry);
        let target = entry.target.as_deref().unwrap_or_default();
        std::os::unix::fs::symlink(target, &link)
            .map_err(|error| Error::io("create the link", &link, error))?;
        if let Some((uid, gid)) = entry.treatment.owner((entry.uid, entry.gid), as_root) {
            std::os::unix::fs::lchown(&link, Some(uid), Some(gid))
                .map_err(|error| Error::io("change the owner of", &link, error))?;
        }
        let time = rustix::fs::Timespec {
            tv_sec: entry.mtime,
            tv_nsec: entry.mtime_nsec.into(),
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &link,
            &rustix::fs::Timestamps {
                last_access: time,
                last_modification: time,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|error| Error::io("set the times of", &link, error.into()))?;
    }
    // Folders last and deepest first: writing into a folder changes its time,
    // and a read-only source folder must stay writable until it is filled.
    for entry in plan
        .entries
        .iter()
        .rev()
        .filter(|entry| entry.kind == EntryKind::Dir)
    {
        let folder = target_of(entry);
        let handle = File::open(&folder).map_err(|error| Error::io("open", &folder, error))?;
        let source = SourceAttributes {
            mode: entry.mode,
            owner: (entry.uid, entry.gid),
            mtime: system_time(entry.mtime, entry.mtime_nsec),
        };
        apply_attributes(&handle, &folder, &source, entry.treatment, true, as_root)?;
    }
    Ok(manifest)
}

/// The size and BLAKE3 of a file, read with `buffer`; links are not followed.
///
/// # Errors
/// The I/O error of opening or reading; [`io::ErrorKind::Interrupted`] when the
/// operation was asked to stop (callers check [`Progress::check_cancelled`]).
pub(crate) fn hash_file(
    path: &Path,
    buffer: &mut [u8],
    progress: &Progress,
) -> io::Result<(u64, String)> {
    let mut input = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    let hashed = hash_stream(&mut input, None, buffer, progress).map_err(|error| match error {
        StreamError::Read(error) | StreamError::Write(error) => error,
        StreamError::Cancelled => stopped(),
    })?;
    progress.add_file();
    Ok(hashed)
}

/// The error of a hash stopped on request; it never reaches the admin, since
/// the callers turn a stop into [`Error::Cancelled`] first.
fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "stopped on request")
}

/// Hashes the given files on all cores: `(size, blake3)` or the error, in order.
/// Once the operation is asked to stop, the files not started yet are skipped;
/// the caller checks [`Progress::check_cancelled`] before using the results.
pub(crate) fn hash_files(paths: &[PathBuf], progress: &Progress) -> Vec<io::Result<(u64, String)>> {
    parallel_map_with(
        paths,
        || vec![0u8; BUFFER_BYTES],
        |buffer, path| {
            if progress.is_cancelled() {
                return Ok(Err(stopped()));
            }
            Ok(hash_file(path, buffer, progress))
        },
    )
    .expect("per-file errors are results, so the map itself never fails")
}

/// Every path under `folder` relative to it (`/`-separated), without following links.
///
/// # Errors
/// [`Error::Io`] when a folder cannot be listed.
pub(crate) fn list_tree(folder: &Path) -> Result<Vec<(String, fs::Metadata)>> {
    let mut found = Vec::new();
    let mut pending = vec![(folder.to_path_buf(), String::new())];
    while let Some((current, prefix)) = pending.pop() {
        let listing = fs::read_dir(&current).map_err(|error| Error::io("list", &current, error))?;
        for item in listing {
            let item = item.map_err(|error| Error::io("list", &current, error))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let metadata = fs::symlink_metadata(item.path())
                .map_err(|error| Error::io("inspect", item.path(), error))?;
            if metadata.is_dir() {
                pending.push((item.path(), relative.clone()));
            }
            found.push((relative, metadata));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Removes a tree the tool wrote itself (a partial bundle, a staging folder),
/// making its folders writable first; links inside are removed, not followed.
///
/// # Errors
/// [`Error::Io`] naming what could not be removed.
pub(crate) fn remove_own_tree(folder: &Path) -> Result<()> {
    match fs::symlink_metadata(folder) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(Error::io("inspect", folder, error)),
        Ok(metadata) if !metadata.is_dir() => {
            return fs::remove_file(folder).map_err(|error| Error::io("remove", folder, error))
        }
        Ok(_) => {}
    }
    let mut pending = vec![folder.to_path_buf()];
    while let Some(current) = pending.pop() {
        let _ = fs::set_permissions(&current, fs::Permissions::from_mode(0o700));
        if let Ok(listing) = fs::read_dir(&current) {
            for item in listing.flatten() {
                if item.file_type().is_ok_and(|kind| kind.is_dir()) {
                    pending.push(item.path());
                }
            }
        }
    }
    fs::remove_dir_all(folder).map_err(|error| Error::io("remove", folder, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_modes_times_and_links_and_hash_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        fs::create_dir_all(source.join("db/node")).unwrap();
        fs::write(
            source.join("db/node/part-0.bin"),
            vec![7u8; 3 * BUFFER_BYTES + 5],
        )
        .unwrap();
        fs::write(source.join("db/empty.bin"), b"").unwrap();
        fs::set_permissions(
            source.join("db/empty.bin"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("..", source.join("db/node/loop")).unwrap();
        fs::set_permissions(source.join("db/node"), fs::Permissions::from_mode(0o500)).unwrap();
        let mut plan = CopyPlan::default();
        plan.add_tree(&source, "database", Treatment::Keep).unwrap();
        plan.finish();
        let paths: Vec<&str> = plan
            .entries
            .iter()
            .map(|entry| entry.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "database",
                "database/db",
                "database/db/empty.bin",
                "database/db/node",
                "database/db/node/loop",
                "database/db/node/part-0.bin"
            ]
        );
        let destination = dir.path().join("bundle");
        fs::create_dir(&destination).unwrap();
        let progress = Progress::default();
        let manifest = copy_plan(&plan, &destination, &progress).unwrap();
        let big = manifest
            .iter()
            .find(|entry| entry.path.ends_with("part-0.bin"))
            .unwrap();
        assert_eq!(big.size, 3 * BUFFER_BYTES as u64 + 5);
        assert_eq!(
            big.blake3.as_deref().unwrap(),
            blake3::hash(&vec![7u8; 3 * BUFFER_BYTES + 5])
                .to_hex()
                .as_str()
        );
        assert_eq!(progress.snapshot().done_bytes, big.size);
        let copied = destination.join("database/db");
        assert_eq!(
            fs::read_link(copied.join("node/loop")).unwrap(),
            Path::new("..")
        );
        assert_eq!(
            fs::metadata(copied.join("node")).unwrap().mode() & 0o7777,
            0o500
        );
        assert_eq!(
            fs::metadata(copied.join("empty.bin")).unwrap().mode() & 0o7777,
            0o640
        );
        assert_eq!(
            fs::metadata(copied.join("node/part-0.bin"))
                .unwrap()
                .mtime(),
            fs::metadata(source.join("db/node/part-0.bin"))
                .unwrap()
                .mtime()
        );
        remove_own_tree(&destination).unwrap();
        assert!(!destination.exists());
        assert!(
            source.join("db/node/part-0.bin").exists(),
            "the source is untouched"
        );
    }

    #[test]
    fn a_file_that_vanishes_before_its_turn_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        fs::create_dir_all(source.join("wal")).unwrap();
        fs::write(source.join("wal/0001.wal"), "segment").unwrap();
        let mut plan = CopyPlan::default();
        plan.add_tree(&source, "database", Treatment::Keep).unwrap();
        plan.finish();
        // The running instance removes the segment between listing and copying.
        fs::remove_file(source.join("wal/0001.wal")).unwrap();
        let destination = dir.path().join("bundle");
        fs::create_dir(&destination).unwrap();
        let error = copy_plan(&plan, &destination, &Progress::default()).unwrap_err();
        assert!(matches!(error, Error::SourceChanged { .. }));
        let message = error.to_string();
        assert!(
            message.contains("wal/0001.wal") && message.contains("vanished"),
            "{message}"
        );
    }

    #[test]
    fn config_files_are_private_and_their_folders_planned() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc/sysconfig")).unwrap();
        let env = dir.path().join("etc/sysconfig/comindwareprod-env");
        fs::write(&env, "PASSWORD=secret\n").unwrap();
        fs::set_permissions(&env, fs::Permissions::from_mode(0o644)).unwrap();
        let mut plan = CopyPlan::default();
        plan.add_file(
            &env,
            "config/etc/sysconfig/comindwareprod-env",
            Treatment::Private,
        )
        .unwrap();
        plan.add_file(
            &dir.path().join("missing"),
            "config/missing",
            Treatment::Private,
        )
        .unwrap();
        plan.finish();
        assert_eq!(plan.entries.len(), 4, "{:?}", plan.entries);
        assert_eq!(plan.warnings.len(), 1);
        let destination = dir.path().join("bundle");
        fs::create_dir(&destination).unwrap();
        copy_plan(&plan, &destination, &Progress::default()).unwrap();
        let copy = destination.join("config/etc/sysconfig/comindwareprod-env");
        assert_eq!(fs::metadata(&copy).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(
            fs::metadata(destination.join("config/etc")).unwrap().mode() & 0o7777,
            0o700
        );
    }
}
