//! Planning and copying file trees: one pass that reads, hashes and writes.
//!
//! Each file is read once: the same buffer goes into BLAKE3 and to the copy.
//! A kernel copy (`copy_file_range`) would need a second read of the source to
//! hash it, which measured slower on the target's database shape (thousands of
//! partition files, see the README's speed table). Files are spread over all
//! cores, largest first, so one big file does not finish alone at the end.
//!
//! The trees read (a live database, the uploaded files) belong to the
//! platform's service account, and the tool reads them as root, so they are
//! listed and read through folder handles (see `fd_walk`): each file is opened
//! relative to its folder, which is opened again from the tree's top one level
//! at a time and compared (device and inode) with what was listed. A folder
//! swapped for a link or for another folder is reported as a changed source,
//! never followed. The copies are written through a handle on the destination,
//! whose name may sit in a folder that account writes (a restore's staging folder).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::io::Errno;

use super::manifest::{EntryKind, ManifestEntry};
use super::{Phase, Progress};
use crate::error::{Error, Result};
use crate::fd_walk::{self, EntryStat, Identity};
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

/// Where a planned entry was listed: in which of the plan's trees, at which
/// path below its top, as which file.
#[derive(Debug, Clone)]
struct ListedAt {
    tree: usize,
    /// `/`-separated, empty for the top itself.
    relative: String,
    identity: Identity,
}

/// One folder, file or link to copy.
#[derive(Debug, Clone)]
pub(crate) struct PlannedEntry {
    /// Where it is read from (named in messages; a listed entry is not opened
    /// through this path).
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
    /// Where it was listed, for an entry of a tree; `None` for a file named
    /// on its own (a config file), which is opened by its path.
    listed: Option<ListedAt>,
}

/// A tree added to a plan: its top, held open from listing to copying, and
/// every folder listed in it by its path below the top.
#[derive(Debug)]
struct PlannedTree {
    path: PathBuf,
    handle: OwnedFd,
    folders: HashMap<String, Identity>,
}

/// Everything one copy will do, planned before anything is written.
#[derive(Debug, Default)]
pub(crate) struct CopyPlan {
    /// The entries, sorted by path (parents before children) by [`CopyPlan::finish`].
    pub entries: Vec<PlannedEntry>,
    planned: HashSet<String>,
    /// Things the admin should know (skipped special files, missing optional files).
    pub warnings: Vec<String>,
    trees: Vec<PlannedTree>,
}

fn not_utf8(path: &Path) -> Error {
    Error::CheckFailed {
        what: "reading file names".to_owned(),
        details: format!(
            "{} is not valid UTF-8, which the manifest cannot record; rename it",
            path.display()
        ),
    }
}

fn utf8_name(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| not_utf8(path))
}

/// The target of a link named by its path (above a tree: the admin's paths).
fn link_target_by_path(source: &Path) -> Result<String> {
    let target =
        fs::read_link(source).map_err(|error| Error::io("read the link", source, error))?;
    Ok(utf8_name(&target)?.to_owned())
}

fn planned_entry(
    source: PathBuf,
    path: String,
    stat: &EntryStat,
    treatment: Treatment,
    link_target: impl FnOnce() -> Result<String>,
) -> Result<Option<PlannedEntry>> {
    let (kind, target) = if stat.is_dir() {
        (EntryKind::Dir, None)
    } else if stat.is_file() {
        (EntryKind::File, None)
    } else if stat.is_symlink() {
        (EntryKind::Symlink, Some(link_target()?))
    } else {
        return Ok(None);
    };
    Ok(Some(PlannedEntry {
        size: if kind == EntryKind::File {
            stat.size
        } else {
            0
        },
        mode: stat.mode,
        uid: stat.uid,
        gid: stat.gid,
        mtime: stat.mtime,
        mtime_nsec: stat.mtime_nsec,
        target,
        kind,
        source,
        path,
        treatment,
        listed: None,
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
            let stat = EntryStat::from_metadata(&metadata);
            let link = source.clone();
            if let Some(entry) = planned_entry(source, bundle, &stat, treatment, || {
                link_target_by_path(&link)
            })? {
                self.push(entry);
            }
        }
        Ok(())
    }

    /// Plans a whole folder tree under `prefix`. The folder itself may be reached
    /// through symlinks (a data disk mounted elsewhere); inside it, links are
    /// recorded as links and never followed, so a link loop is just a link.
    /// The folder stays open in the plan, and everything in it is listed (and
    /// later copied) through handles, not paths.
    ///
    /// # Errors
    /// [`Error::Io`] when the folder cannot be resolved (missing, a symlink
    /// loop) or listed; [`Error::NotAFolder`] when it is a file;
    /// [`Error::SourceChanged`] when a folder is swapped while it is listed.
    pub fn add_tree(&mut self, folder: &Path, prefix: &str, treatment: Treatment) -> Result<()> {
        let resolved = fs::canonicalize(folder).map_err(|error| {
            Error::io("resolve the folder (following its symlinks)", folder, error)
        })?;
        let handle = match fd_walk::open_folder(&resolved) {
            Ok(handle) => handle,
            Err(Errno::NOTDIR) => {
                return Err(Error::NotAFolder {
                    path: folder.to_path_buf(),
                    hint: "the instance config names a file where a folder should be",
                })
            }
            Err(error) => return Err(Error::io("open", &resolved, error.into())),
        };
        let top = fd_walk::stat_handle(&handle)
            .map_err(|error| Error::io("inspect", &resolved, error.into()))?;
        self.add_parents(&resolved, prefix, treatment)?;
        let tree = self.trees.len();
        let mut folders = HashMap::from([(String::new(), top.identity)]);
        if let Some(mut entry) =
            // An open folder is never a link, so its target is never asked for.
            planned_entry(resolved.clone(), prefix.to_owned(), &top, treatment, || {
                    Ok(String::new())
                })?
        {
            entry.listed = Some(ListedAt {
                tree,
                relative: String::new(),
                identity: top.identity,
            });
            self.push(entry);
        }
        fd_walk::walk_tree(handle.as_fd(), &resolved, |visit| {
            // Made of names already checked below, so always UTF-8.
            let folder_relative = utf8_name(visit.relative)?.to_owned();
            let mut descend = Vec::new();
            for (index, child) in visit.children.iter().enumerate() {
                let source = resolved
                    .join(&folder_relative)
                    .join(fd_walk::name_of(&child.name));
                let name = fd_walk::name_of(&child.name)
                    .to_str()
                    .ok_or_else(|| not_utf8(&source))?;
                let relative = if folder_relative.is_empty() {
                    name.to_owned()
                } else {
                    format!("{folder_relative}/{name}")
                };
                let planned = planned_entry(
                    source.clone(),
                    format!("{prefix}/{relative}"),
                    &child.stat,
                    treatment,
                    || {
                        let target =
                            match fd_walk::read_link_child(visit.handle, child.name.as_c_str()) {
                                Ok(target) => target,
                                // Gone, or something else took its place since it was listed.
                                Err(Errno::INVAL | Errno::NOENT) => {
                                    return Err(Error::SourceChanged {
                                        path: source.clone(),
                                        details: "it is no longer a link".to_owned(),
                                    })
                                }
                                Err(error) => {
                                    return Err(Error::io("read the link", &source, error.into()))
                                }
                            };
                        Ok(utf8_name(Path::new(&target))?.to_owned())
                    },
                )?;
                match planned {
                    Some(mut entry) => {
                        if entry.kind == EntryKind::Dir {
                            descend.push(index);
                            folders.insert(relative.clone(), child.stat.identity);
                        }
                        entry.listed = Some(ListedAt {
                            tree,
                            relative,
                            identity: child.stat.identity,
                        });
                        self.push(entry);
                    }
                    None => self.warnings.push(format!(
                        "skipped {}: not a file, folder or link (a socket, pipe or device)",
                        source.display()
                    )),
                }
            }
            Ok(descend)
        })?;
        self.trees.push(PlannedTree {
            path: resolved,
            handle,
            folders,
        });
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
        let stat = EntryStat::from_metadata(&metadata);
        if let Some(entry) = planned_entry(
            file.to_path_buf(),
            path.to_owned(),
            &stat,
            treatment,
            || link_target_by_path(file),
        )? {
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

    /// Opens the listed file `source` through its tree's handles: its folders
    /// again from the top, each compared with what was listed, then the file
    /// in the last one, never following a link.
    fn open_listed_file(&self, listed: &ListedAt, source: &Path) -> Result<File> {
        let tree = &self.trees[listed.tree];
        let (folder, name) = split_relative(&listed.relative);
        let vanished = || Error::SourceChanged {
            path: source.to_path_buf(),
            details: "it vanished".to_owned(),
        };
        let Some(handle) = fd_walk::open_folder_below(
            tree.handle.as_fd(),
            &tree.path,
            Path::new(folder),
            |walked| tree.folders.get(walked.to_str()?).copied(),
        )?
        else {
            return Err(vanished());
        };
        match fd_walk::open_child_file(handle.as_fd(), name) {
            Ok(file) => Ok(file),
            Err(Errno::NOENT) => Err(vanished()),
            // A link took its place.
            Err(Errno::LOOP) => Err(no_longer_a_file(source)),
            Err(error) => Err(Error::io("read", source, error.into())),
        }
    }
}

/// `(folder, name)` of a `/`-separated relative path; the folder is empty for
/// a name at the top.
fn split_relative(relative: &str) -> (&str, &str) {
    relative.rsplit_once('/').unwrap_or(("", relative))
}

fn no_longer_a_file(source: &Path) -> Error {
    Error::SourceChanged {
        path: source.to_path_buf(),
        details: "it is no longer a regular file".to_owned(),
    }
}

/// The folder a copy writes into, held open: its name may sit in a folder
/// another account writes (a restore's staging folder beside the target), so
/// it is never looked up by its path again. Nobody else can enter it (it is
/// the tool's, `0700`, until it gets its final name), so what the copy makes
/// inside is reached from the handle one level at a time, links never followed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Destination<'a> {
    /// Its path, for messages.
    pub path: &'a Path,
    /// The folder itself.
    pub handle: BorrowedFd<'a>,
}

impl Destination<'_> {
    /// Opens the folder at `relative` inside the destination.
    fn open_folder(&self, relative: &str) -> Result<OwnedFd> {
        fd_walk::open_folder_path(self.handle, Path::new(relative))
            .map_err(|error| Error::io("open", self.path.join(relative), error.into()))
    }

    /// Creates the folder at `relative` (mode `0700`).
    fn create_folder(&self, relative: &str) -> Result<()> {
        let (parent, name) = split_relative(relative);
        rustix::fs::mkdirat(
            self.open_folder(parent)?,
            name,
            rustix::fs::Mode::from_raw_mode(0o700),
        )
        .map_err(|error| Error::io("create the folder", self.path.join(relative), error.into()))
    }

    /// Creates the file at `relative`, readable by the tool's user only; never
    /// replaces one.
    fn create_file(&self, relative: &str) -> Result<File> {
        let (parent, name) = split_relative(relative);
        fd_walk::create_child_file(self.open_folder(parent)?.as_fd(), name, 0o600)
            .map_err(|error| Error::io("create", self.path.join(relative), error.into()))
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
    /// It kept changing while it was copied: the copy may mix old and new bytes.
    torn: bool,
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

/// Opens a file named on its own (not in a listed tree) to read, not
/// following a link in its last component.
fn open_named_file(source: &Path) -> Result<File> {
    match OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(source)
    {
        Ok(file) => Ok(file),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(Error::SourceChanged {
            path: source.to_path_buf(),
            details: "it vanished".to_owned(),
        }),
        Err(error) => Err(Error::io("read", source, error)),
    }
}

fn copy_one_file(
    plan: &CopyPlan,
    entry: &PlannedEntry,
    index: usize,
    destination: Destination<'_>,
    buffer: &mut [u8],
    progress: &Progress,
    as_root: bool,
) -> Result<CopiedFile> {
    progress.check_cancelled()?;
    let source = &entry.source;
    let mut input = match &entry.listed {
        Some(listed) => plan.open_listed_file(listed, source)?,
        None => open_named_file(source)?,
    };
    let metadata = input
        .metadata()
        .map_err(|error| Error::io("inspect", source, error))?;
    if !metadata.is_file() {
        return Err(no_longer_a_file(source));
    }
    if let Some(listed) = &entry.listed {
        // A file in the listed folder, but not the one listed: what is copied
        // must be what the plan (and the space check) counted.
        if (metadata.dev(), metadata.ino()) != (listed.identity.dev, listed.identity.ino) {
            return Err(Error::SourceChanged {
                path: source.clone(),
                details: "another file took its place since it was listed".to_owned(),
            });
        }
    }
    let target = destination.path.join(&entry.path);
    let mut output = destination.create_file(&entry.path)?;
    // A file written while it is read gives a copy that never existed on disk
    // (old and new bytes mixed): its size or times differ after the read. It is
    // copied again, a few times; one that keeps changing is reported, by name.
    let mut metadata = metadata;
    let mut attempts = 1;
    let (size, blake3, torn) =
        loop {
            let (size, blake3) = hash_stream(&mut input, Some(&mut output), buffer, progress)
                .map_err(|error| match error {
                    StreamError::Read(error) => Error::io("read", source, error),
                    StreamError::Write(error) => Error::io("write", &target, error),
                    StreamError::Cancelled => super::cancelled(),
                })?;
            let after = input
                .metadata()
                .map_err(|error| Error::io("inspect", source, error))?;
            let unchanged = (
                after.len(),
                after.mtime(),
                after.mtime_nsec(),
                after.ctime(),
                after.ctime_nsec(),
            ) == (
                metadata.len(),
                metadata.mtime(),
                metadata.mtime_nsec(),
                metadata.ctime(),
                metadata.ctime_nsec(),
            );
            if unchanged || attempts == COPY_ATTEMPTS {
                break (size, blake3, !unchanged);
            }
            attempts += 1;
            metadata = after;
            input
                .seek(io::SeekFrom::Start(0))
                .map_err(|error| Error::io("read", source, error))?;
            output
                .set_len(0)
                .and_then(|()| output.seek(io::SeekFrom::Start(0)).map(drop))
                .map_err(|error| Error::io("write", &target, error))?;
        };
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
        &target,
        &source_attributes,
        entry.treatment,
        false,
        as_root,
    )?;
    progress.add_file();
    Ok(CopiedFile {
        index,
        torn,
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

/// How often a file that changes while it is read is copied before it is
/// reported as torn.
pub(crate) const COPY_ATTEMPTS: u32 = 3;

/// What [`copy_plan`] copied.
#[derive(Debug)]
pub(crate) struct CopiedTree {
    /// The manifest entries, in plan order.
    pub entries: Vec<ManifestEntry>,
    /// Files (plan paths) that kept changing while they were copied: their
    /// copies match the manifest but may never have existed on disk as such.
    pub torn: Vec<String>,
}

/// Copies everything in `plan` into `destination` (an existing folder, held
/// open), hashing each file in the same pass.
///
/// # Errors
/// The first [`Error::Io`] (naming the path: a full disk, a permission),
/// [`Error::SourceChanged`], or [`Error::Cancelled`] once the progress's stop
/// request is set; what was written stays for the caller to remove.
pub(crate) fn copy_plan(
    plan: &CopyPlan,
    destination: Destination<'_>,
    progress: &Progress,
) -> Result<CopiedTree> {
    let as_root = running_as_root();
    progress.start(Phase::Copying, plan.data_bytes(), plan.file_count());
    for entry in plan
        .entries
        .iter()
        .filter(|entry| entry.kind == EntryKind::Dir)
    {
        // Writable by the tool until the end, whatever the source's mode.
        destination.create_folder(&entry.path)?;
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
            copy_one_file(plan, entry, index, destination, buffer, progress, as_root)
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
    let mut torn = Vec::new();
    for file in copied {
        if file.torn {
            torn.push(plan.entries[file.index].path.clone());
        }
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
        let link = destination.path.join(&entry.path);
        let (parent, name) = split_relative(&entry.path);
        let folder = destination.open_folder(parent)?;
        let target = entry.target.as_deref().unwrap_or_default();
        rustix::fs::symlinkat(target, &folder, name)
            .map_err(|error| Error::io("create the link", &link, error.into()))?;
        if let Some((uid, gid)) = entry.treatment.owner((entry.uid, entry.gid), as_root) {
            rustix::fs::chownat(
                &folder,
                name,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|error| Error::io("change the owner of", &link, error.into()))?;
        }
        let time = rustix::fs::Timespec {
            tv_sec: entry.mtime,
            tv_nsec: entry.mtime_nsec.into(),
        };
        rustix::fs::utimensat(
            &folder,
            name,
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
        let folder = destination.path.join(&entry.path);
        let handle = File::from(destination.open_folder(&entry.path)?);
        let source = SourceAttributes {
            mode: entry.mode,
            owner: (entry.uid, entry.gid),
            mtime: system_time(entry.mtime, entry.mtime_nsec),
        };
        apply_attributes(&handle, &folder, &source, entry.treatment, true, as_root)?;
    }
    torn.sort();
    Ok(CopiedTree {
        entries: manifest,
        torn,
    })
}

/// One entry of a [`ListedTree`], as it was when listed.
#[derive(Debug, Clone)]
pub(crate) struct ListedEntry {
    /// What it was (a link not followed).
    pub stat: EntryStat,
    /// A link's target, read through its folder's handle.
    pub target: Option<PathBuf>,
}

/// A tree listed through handles (see `fd_walk`): its top, held open, and
/// every entry below it as it was when listed.
#[derive(Debug)]
pub(crate) struct ListedTree {
    path: PathBuf,
    handle: OwnedFd,
    /// Every entry by its path relative to the top (`/`-separated), sorted.
    pub entries: Vec<(String, ListedEntry)>,
    folders: HashMap<String, Identity>,
}

/// What hashing a listed file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hashed {
    /// A regular file: its size and BLAKE3.
    File { size: u64, blake3: String },
    /// Nothing is there any more.
    Missing,
    /// Something other than a regular file is there now (a link, a pipe):
    /// not read.
    NotAFile,
}

/// Every path under `folder` (followed when it is a link: the admin named it)
/// relative to it, without following links below it.
///
/// # Errors
/// [`Error::Io`] when a folder cannot be listed; [`Error::SourceChanged`] when
/// a folder is swapped while it is listed.
pub(crate) fn list_tree(folder: &Path) -> Result<ListedTree> {
    let handle = fd_walk::open_folder_following(folder)
        .map_err(|error| Error::io("list", folder, error.into()))?;
    list_tree_at(handle, folder)
}

/// Like [`list_tree`], for the folder already open as `handle` (at `folder`).
///
/// # Errors
/// As [`list_tree`].
pub(crate) fn list_tree_at(handle: OwnedFd, folder: &Path) -> Result<ListedTree> {
    let top = fd_walk::stat_handle(&handle)
        .map_err(|error| Error::io("inspect", folder, error.into()))?;
    let mut entries = Vec::new();
    let mut folders = HashMap::from([(String::new(), top.identity)]);
    fd_walk::walk_tree(handle.as_fd(), folder, |visit| {
        let prefix = visit.relative.to_string_lossy();
        let mut descend = Vec::new();
        for (index, child) in visit.children.iter().enumerate() {
            let name = fd_walk::name_of(&child.name).to_string_lossy();
            let relative = if prefix.is_empty() {
                name.into_owned()
            } else {
                format!("{prefix}/{name}")
            };
            // A link that cannot be read (gone since the listing) has no target,
            // which compares as changed.
            let target = child
                .stat
                .is_symlink()
                .then(|| fd_walk::read_link_child(visit.handle, child.name.as_c_str()).ok())
                .flatten()
                .map(PathBuf::from);
            if child.stat.is_dir() {
                descend.push(index);
                folders.insert(relative.clone(), child.stat.identity);
            }
            entries.push((
                relative,
                ListedEntry {
                    stat: child.stat,
                    target,
                },
            ));
        }
        Ok(descend)
    })?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ListedTree {
        path: folder.to_path_buf(),
        handle,
        entries,
        folders,
    })
}

impl ListedTree {
    /// The size and BLAKE3 of the file at `relative`, read with `buffer`: its
    /// folders are opened again from the top, each compared with what was
    /// listed, and the file in the last one, not following a link. What is
    /// hashed is what is in that folder now: a file rewritten since the
    /// listing shows as changed.
    ///
    /// # Errors
    /// [`Error::SourceChanged`] when a folder on the way is not the one
    /// listed; [`Error::Io`] naming the file; [`Error::Cancelled`].
    fn hash_file(&self, relative: &str, buffer: &mut [u8], progress: &Progress) -> Result<Hashed> {
        let path = self.path.join(relative);
        let (folder, name) = split_relative(relative);
        let Some(handle) = fd_walk::open_folder_below(
            self.handle.as_fd(),
            &self.path,
            Path::new(folder),
            |walked| self.folders.get(&*walked.to_string_lossy()).copied(),
        )?
        else {
            return Ok(Hashed::Missing);
        };
        let mut input = match fd_walk::open_child_file(handle.as_fd(), name) {
            Ok(file) => file,
            Err(Errno::NOENT) => return Ok(Hashed::Missing),
            Err(Errno::LOOP) => return Ok(Hashed::NotAFile),
            Err(error) => return Err(Error::io("read", &path, error.into())),
        };
        let metadata = input
            .metadata()
            .map_err(|error| Error::io("inspect", &path, error))?;
        if !metadata.is_file() {
            return Ok(Hashed::NotAFile);
        }
        let (size, blake3) =
            hash_stream(&mut input, None, buffer, progress).map_err(|error| match error {
                StreamError::Read(error) | StreamError::Write(error) => {
                    Error::io("read", &path, error)
                }
                StreamError::Cancelled => super::cancelled(),
            })?;
        progress.add_file();
        Ok(Hashed::File { size, blake3 })
    }
}

/// Hashes the given files of `tree` (paths relative to its top) on all cores,
/// in order. Once the operation is asked to stop, the files not started yet
/// are skipped; the caller checks [`Progress::check_cancelled`] before using
/// the results.
pub(crate) fn hash_files(
    tree: &ListedTree,
    relatives: &[&str],
    progress: &Progress,
) -> Vec<Result<Hashed>> {
    parallel_map_with(
        relatives,
        || vec![0u8; BUFFER_BYTES],
        |buffer, relative| {
            if progress.is_cancelled() {
                return Ok(Err(super::cancelled()));
            }
            Ok(tree.hash_file(relative, buffer, progress))
        },
    )
    .expect("per-file errors are results, so the map itself never fails")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::StagingFolder;

    fn into(staging: &StagingFolder) -> Destination<'_> {
        Destination {
            path: staging.path(),
            handle: staging.handle(),
        }
    }

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
        let staging = StagingFolder::claim(&destination).unwrap();
        let progress = Progress::default();
        let manifest = copy_plan(&plan, into(&staging), &progress).unwrap().entries;
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
        staging.discard().unwrap();
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
        let staging = StagingFolder::claim(&destination).unwrap();
        let error = copy_plan(&plan, into(&staging), &Progress::default()).unwrap_err();
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
        let staging = StagingFolder::claim(&destination).unwrap();
        copy_plan(&plan, into(&staging), &Progress::default()).unwrap();
        let copy = destination.join("config/etc/sysconfig/comindwareprod-env");
        assert_eq!(fs::metadata(&copy).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(
            fs::metadata(destination.join("config/etc")).unwrap().mode() & 0o7777,
            0o700
        );
    }

    /// A source whose folder `db/sub` is replaced after the plan listed it, by
    /// `replace` (given the folder and root's folder outside): the copy names
    /// the folder and never reads through what took its place.
    fn copy_after_swap(replace: impl Fn(&Path, &Path)) -> Error {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("part.bin"), "root's").unwrap();
        let source = dir.path().join("source");
        fs::create_dir_all(source.join("db/sub")).unwrap();
        fs::write(source.join("db/sub/part.bin"), "inside").unwrap();
        let mut plan = CopyPlan::default();
        plan.add_tree(&source, "database", Treatment::Keep).unwrap();
        plan.finish();
        replace(&source.join("db/sub"), &outside);
        let destination = dir.path().join("bundle");
        let staging = StagingFolder::claim(&destination).unwrap();
        let error = copy_plan(&plan, into(&staging), &Progress::default()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("db/sub changed"), "{message}");
        assert!(
            !destination.join("database/db/sub/part.bin").exists(),
            "nothing was copied through it"
        );
        error
    }

    #[test]
    fn a_folder_swapped_for_a_link_after_listing_is_named_not_followed() {
        let error = copy_after_swap(|folder, outside| {
            fs::rename(folder, folder.with_file_name("sub-moved")).unwrap();
            std::os::unix::fs::symlink(outside, folder).unwrap();
        });
        assert!(error.to_string().contains("no longer a folder"), "{error}");
    }

    #[test]
    fn a_folder_swapped_for_another_after_listing_is_named_not_read() {
        let error = copy_after_swap(|folder, _| {
            let other = folder.with_file_name("other");
            fs::create_dir(&other).unwrap();
            fs::write(other.join("part.bin"), "planted").unwrap();
            fs::rename(folder, folder.with_file_name("sub-moved")).unwrap();
            fs::rename(&other, folder).unwrap();
        });
        assert!(
            error.to_string().contains("another folder took its place"),
            "{error}"
        );
    }

    #[test]
    fn a_file_replaced_after_listing_is_named_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        fs::create_dir_all(source.join("db")).unwrap();
        fs::write(source.join("db/part.bin"), "listed").unwrap();
        let mut plan = CopyPlan::default();
        plan.add_tree(&source, "database", Treatment::Keep).unwrap();
        plan.finish();
        fs::write(source.join("db/new.bin"), "another").unwrap();
        fs::rename(source.join("db/new.bin"), source.join("db/part.bin")).unwrap();
        let staging = StagingFolder::claim(&dir.path().join("bundle")).unwrap();
        let error = copy_plan(&plan, into(&staging), &Progress::default()).unwrap_err();
        assert!(matches!(error, Error::SourceChanged { .. }), "{error}");
        assert!(
            error.to_string().contains("db/part.bin changed")
                && error.to_string().contains("another file took its place"),
            "{error}"
        );
    }
}
