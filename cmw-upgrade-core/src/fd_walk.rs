//! Walking file trees that another account can write, through folder handles.
//!
//! The tool runs as root over folders the platform's service account owns and
//! can write (the database, the uploaded files, the folder beside a restore's
//! target). A walk by path resolves every component again on every call, so
//! that account can swap a folder for a symlink while the walk runs and send
//! root anywhere: a chown then gives root's files away, a copy reads them into
//! a bundle, a removal deletes them. Here every folder below the top is opened
//! relative to its parent's handle with `O_NOFOLLOW | O_DIRECTORY`, every entry
//! is inspected, read, changed or removed relative to its folder's handle
//! without following it, and no path is resolved again from the top: paths are
//! kept only to name things in messages. A folder opened again later (to copy
//! or hash a file listed earlier) is compared by device and inode with what was
//! listed, so a swap in between is reported, never followed.
//!
//! The handles open at any time are one per level of the tree being walked,
//! however wide it is.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use rustix::path::Arg;

use crate::error::{Error, Result};

/// Opening a folder that must not be a link: a link (or a file) in its place
/// fails to open (`ENOTDIR`; `ELOOP` on some kernels for a link) instead of
/// being followed.
const FOLDER_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opening a file to read that must not be a link. `NONBLOCK` because a pipe
/// put in its place would otherwise hold the open until someone writes to it
/// (what was opened is checked to be a regular file right after), `NOCTTY` so
/// a terminal put there never becomes the tool's.
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Which file a stat describes: the same device and inode are the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    /// The device it is on.
    pub dev: u64,
    /// Its inode there.
    pub ino: u64,
}

/// What `lstat` says about an entry, in the types the rest of the crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryStat {
    /// File, folder, link, or something else.
    pub kind: FileType,
    /// Device and inode.
    pub identity: Identity,
    /// Permission bits, set-id and sticky bits included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds within the second.
    pub mtime_nsec: u32,
}

impl EntryStat {
    // The field types of `struct stat` differ between architectures, so a
    // cast that changes nothing on one is needed on another.
    #[allow(clippy::unnecessary_cast)]
    fn from_stat(stat: &rustix::fs::Stat) -> EntryStat {
        EntryStat {
            kind: FileType::from_raw_mode(stat.st_mode as _),
            identity: Identity {
                dev: stat.st_dev as u64,
                ino: stat.st_ino as u64,
            },
            mode: (stat.st_mode as u32) & 0o7777,
            uid: stat.st_uid as u32,
            gid: stat.st_gid as u32,
            size: stat.st_size.max(0) as u64,
            mtime: stat.st_mtime as i64,
            mtime_nsec: stat.st_mtime_nsec as u32,
        }
    }

    /// The same facts from std's metadata (of a path named by the admin, which
    /// may be followed).
    pub fn from_metadata(metadata: &std::fs::Metadata) -> EntryStat {
        use std::os::unix::fs::MetadataExt;
        EntryStat {
            kind: FileType::from_raw_mode(metadata.mode()),
            identity: Identity {
                dev: metadata.dev(),
                ino: metadata.ino(),
            },
            mode: metadata.mode() & 0o7777,
            uid: metadata.uid(),
            gid: metadata.gid(),
            size: metadata.size(),
            mtime: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec() as u32,
        }
    }

    /// Whether it is a folder.
    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }

    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == FileType::RegularFile
    }

    /// Whether it is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.kind == FileType::Symlink
    }
}

/// An entry name as the OS string it is.
pub(crate) fn name_of(name: &CStr) -> &OsStr {
    OsStr::from_bytes(name.to_bytes())
}

/// Opens the folder at `path`, which must not itself be a link (the folders
/// above it are resolved as usual): `ENOTDIR` when it is a link or a file.
pub(crate) fn open_folder(path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(CWD, path, FOLDER_FLAGS, Mode::empty())
}

/// Opens the folder at `path`, following a link there: for a folder the admin
/// named (a data disk mounted elsewhere and linked into place).
pub(crate) fn open_folder_following(path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// What is at `path`, not following a link there.
pub(crate) fn stat_path(path: &Path) -> rustix::io::Result<EntryStat> {
    stat_child(CWD, path)
}

/// Opens the entry `name` of `folder` as a folder, never following a link:
/// `None` when it is not a folder (a link, a file, anything else) now.
pub(crate) fn open_child_folder(
    folder: BorrowedFd<'_>,
    name: impl Arg,
) -> rustix::io::Result<Option<OwnedFd>> {
    match rustix::fs::openat(folder, name, FOLDER_FLAGS, Mode::empty()) {
        Ok(handle) => Ok(Some(handle)),
        Err(Errno::NOTDIR | Errno::LOOP) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Opens the entry `name` of `folder` to read, never following a link
/// (`ELOOP` then); the caller checks that what it got is a regular file.
pub(crate) fn open_child_file(folder: BorrowedFd<'_>, name: impl Arg) -> rustix::io::Result<File> {
    rustix::fs::openat(folder, name, READ_FLAGS, Mode::empty()).map(File::from)
}

/// Creates the file `name` in `folder` with `mode`; never opens an existing
/// file or a link.
pub(crate) fn create_child_file(
    folder: BorrowedFd<'_>,
    name: impl Arg,
    mode: u32,
) -> rustix::io::Result<File> {
    rustix::fs::openat(
        folder,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map(File::from)
}

/// What the entry `name` of `folder` is, not following a link.
pub(crate) fn stat_child(folder: BorrowedFd<'_>, name: impl Arg) -> rustix::io::Result<EntryStat> {
    rustix::fs::statat(folder, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|stat| EntryStat::from_stat(&stat))
}

/// What an open file or folder is.
pub(crate) fn stat_handle(handle: impl AsFd) -> rustix::io::Result<EntryStat> {
    rustix::fs::fstat(handle).map(|stat| EntryStat::from_stat(&stat))
}

/// The target of the link `name` in `folder`.
pub(crate) fn read_link_child(
    folder: BorrowedFd<'_>,
    name: impl Arg,
) -> rustix::io::Result<OsString> {
    rustix::fs::readlinkat(folder, name, Vec::new())
        .map(|target| OsString::from_vec(target.into_bytes()))
}

/// The names in `folder` (without `.` and `..`) and the kind the listing gives
/// for each (`Unknown` on file systems that do not say).
pub(crate) fn child_names(folder: BorrowedFd<'_>) -> rustix::io::Result<Vec<(CString, FileType)>> {
    // A listing of its own (a new handle on the same folder, reopened through
    // `.`), so the folder's handle stays free for the *at calls.
    let listing = Dir::read_from(folder)?;
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        names.push((name.to_owned(), entry.file_type()));
    }
    Ok(names)
}

/// Opens, under `top`, the folder at `relative` (plain names, `/`-separated),
/// each step relative to the last without following a link: for a tree only
/// this process can enter (its own staging folder), so nothing is compared.
pub(crate) fn open_folder_path(
    top: BorrowedFd<'_>,
    relative: &Path,
) -> rustix::io::Result<OwnedFd> {
    let mut handle = rustix::io::fcntl_dupfd_cloexec(top, 0)?;
    for component in relative.components() {
        let Component::Normal(name) = component else {
            return Err(Errno::INVAL);
        };
        handle = open_child_folder(handle.as_fd(), name)?.ok_or(Errno::NOTDIR)?;
    }
    Ok(handle)
}

fn changed(path: &Path, details: &str) -> Error {
    Error::SourceChanged {
        path: path.to_path_buf(),
        details: details.to_owned(),
    }
}

/// What took a listed folder's place, in words.
const NO_LONGER_A_FOLDER: &str = "it is no longer a folder (a link or a file took its place)";

/// Opens the folder `name` of `parent` that was listed as `expected`; `None`
/// when it is gone.
///
/// # Errors
/// [`Error::SourceChanged`] naming `path` when something else is there now (a
/// link, a file, another folder, a folder on another device);
/// [`Error::Io`] when it cannot be opened.
pub(crate) fn open_listed_folder(
    parent: BorrowedFd<'_>,
    name: impl Arg,
    expected: Identity,
    path: &Path,
) -> Result<Option<OwnedFd>> {
    let handle = match open_child_folder(parent, name) {
        Ok(Some(handle)) => handle,
        Ok(None) => return Err(changed(path, NO_LONGER_A_FOLDER)),
        Err(Errno::NOENT) => return Ok(None),
        Err(error) => return Err(Error::io("open", path, error.into())),
    };
    let found = stat_handle(&handle).map_err(|error| Error::io("inspect", path, error.into()))?;
    if found.identity.dev != expected.dev {
        return Err(changed(
            path,
            "a folder on another device took its place since it was listed",
        ));
    }
    if found.identity.ino != expected.ino {
        return Err(changed(
            path,
            "another folder took its place since it was listed",
        ));
    }
    Ok(Some(handle))
}

/// Opens, under `top` (at `top_path`), the folder at `relative` again, one
/// level at a time, each folder compared with what `expected` says was listed
/// at that path (relative to the top); `None` when one of them is gone.
///
/// # Errors
/// [`Error::SourceChanged`] naming the folder that is not the one listed;
/// [`Error::Internal`] when a folder on the way was not listed.
pub(crate) fn open_folder_below(
    top: BorrowedFd<'_>,
    top_path: &Path,
    relative: &Path,
    expected: impl Fn(&Path) -> Option<Identity>,
) -> Result<Option<OwnedFd>> {
    let mut handle = top
        .try_clone_to_owned()
        .map_err(|error| Error::io("open", top_path, error))?;
    let mut walked = PathBuf::new();
    for component in relative.components() {
        let Component::Normal(name) = component else {
            return Err(Error::Internal {
                details: format!("{} is not a plain relative path", relative.display()),
            });
        };
        walked.push(name);
        let Some(identity) = expected(&walked) else {
            return Err(Error::Internal {
                details: format!("{} was not listed before it was opened", walked.display()),
            });
        };
        match open_listed_folder(handle.as_fd(), name, identity, &top_path.join(&walked))? {
            Some(next) => handle = next,
            None => return Ok(None),
        }
    }
    Ok(Some(handle))
}

/// One entry of a folder, as listed.
pub(crate) struct Listed {
    /// Its name in the folder.
    pub name: CString,
    /// What it was when listed (a link not followed).
    pub stat: EntryStat,
}

/// A folder reached by [`walk_tree`], with its entries.
pub(crate) struct FolderVisit<'a> {
    /// Its path relative to the top (empty for the top).
    pub relative: &'a Path,
    /// Its handle, to read what it holds (a link's target) without a path.
    pub handle: BorrowedFd<'a>,
    /// What it holds.
    pub children: &'a [Listed],
}

fn list_folder(handle: BorrowedFd<'_>, path: &Path) -> Result<Vec<Listed>> {
    let names = child_names(handle).map_err(|error| Error::io("list", path, error.into()))?;
    names
        .into_iter()
        .map(|(name, _)| {
            let stat = stat_child(handle, name.as_c_str())
                .map_err(|error| Error::io("inspect", path.join(name_of(&name)), error.into()))?;
            Ok(Listed { name, stat })
        })
        .collect()
}

/// Walks the tree under the folder `top` (whose path is `top_path`, for
/// messages): `visit` gets each folder with its entries and returns the
/// indices of the entries (folders when listed) to walk into next. A folder
/// walked into is opened through its parent's handle and must be the very
/// folder listed.
///
/// # Errors
/// What `visit` returns; [`Error::Io`] when a folder cannot be listed or an
/// entry inspected; [`Error::SourceChanged`] when a folder to walk into is
/// gone or something else took its place since it was listed.
pub(crate) fn walk_tree(
    top: BorrowedFd<'_>,
    top_path: &Path,
    mut visit: impl FnMut(&FolderVisit<'_>) -> Result<Vec<usize>>,
) -> Result<()> {
    // Folders waiting to be walked share their parent's handle, so one handle
    // per level stays open, not one per waiting folder.
    let mut pending: Vec<(Rc<OwnedFd>, CString, Identity, PathBuf)> = Vec::new();
    let top = top
        .try_clone_to_owned()
        .map_err(|error| Error::io("open", top_path, error))?;
    let mut next = Some((Rc::new(top), PathBuf::new()));
    while let Some((handle, relative)) = next.take() {
        let path = top_path.join(&relative);
        let mut children = list_folder(handle.as_fd(), &path)?;
        let descend = visit(&FolderVisit {
            relative: &relative,
            handle: handle.as_fd(),
            children: &children,
        })?;
        let mut taken: Vec<Option<Listed>> = children.drain(..).map(Some).collect();
        for index in descend {
            if let Some(child) = taken.get_mut(index).and_then(Option::take) {
                let child_relative = relative.join(name_of(&child.name));
                pending.push((
                    Rc::clone(&handle),
                    child.name,
                    child.stat.identity,
                    child_relative,
                ));
            }
        }
        drop(handle);
        if let Some((parent, name, expected, relative)) = pending.pop() {
            let path = top_path.join(&relative);
            let Some(handle) =
                open_listed_folder(parent.as_fd(), name.as_c_str(), expected, &path)?
            else {
                return Err(changed(&path, "it vanished"));
            };
            next = Some((Rc::new(handle), relative));
        }
    }
    Ok(())
}

/// A folder being emptied by [`remove_entry`].
struct Emptying {
    handle: OwnedFd,
    /// Its name in its parent.
    name: CString,
    /// Its path, for messages.
    path: PathBuf,
    /// What is left in it to remove.
    names: Vec<(CString, FileType)>,
}

impl Emptying {
    fn new(handle: OwnedFd, name: CString, path: PathBuf, make_writable: bool) -> Result<Self> {
        if make_writable {
            // A folder of the tool's own copied with a read-only mode: the
            // entries of a folder without write permission cannot be removed
            // (by anyone but root). Through the handle, so a link is never changed.
            let _ = rustix::fs::fchmod(&handle, Mode::from_raw_mode(0o700));
        }
        let names =
            child_names(handle.as_fd()).map_err(|error| Error::io("list", &path, error.into()))?;
        Ok(Emptying {
            handle,
            name,
            path,
            names,
        })
    }
}

/// Opens `name` in `folder` as a folder to empty; for the tool's own trees,
/// one it may not read yet is made readable first.
fn open_folder_to_remove(
    folder: BorrowedFd<'_>,
    name: &CStr,
    make_writable: bool,
) -> rustix::io::Result<Option<OwnedFd>> {
    match open_child_folder(folder, name) {
        // Only a user other than root gets EACCES, and such a user can only
        // change the modes of its own files: following a link here (there is
        // no chmod that does not) cannot reach anyone else's.
        Err(Errno::ACCESS) if make_writable => {
            rustix::fs::chmodat(folder, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
            open_child_folder(folder, name)
        }
        other => other,
    }
}

fn unlink(folder: BorrowedFd<'_>, name: &CStr, path: &Path, flags: AtFlags) -> Result<bool> {
    match rustix::fs::unlinkat(folder, name, flags) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        // The folder was emptied through its handle, but its name holds
        // something else now (a link, another folder): that is not removed.
        Err(Errno::NOTDIR | Errno::NOTEMPTY) if flags.contains(AtFlags::REMOVEDIR) => Err(changed(
            path,
            "something else took its place while it was emptied; it is left alone",
        )),
        Err(error) => Err(Error::io("remove", path, error.into())),
    }
}

/// Removes the entry `name` of `folder` (at `path`, for messages): a file or a
/// link is unlinked (a link's target is never touched), a folder is emptied
/// through handles, deepest first, and removed. Returns whether there was
/// anything to remove.
///
/// With `make_writable` (the tool's own trees), folders get mode `0700` before
/// they are emptied. With `expected`, a folder found at `name` must be that one.
///
/// # Errors
/// [`Error::SourceChanged`] when the folder at `name` is not `expected`;
/// [`Error::Io`] naming what could not be listed or removed.
pub(crate) fn remove_entry(
    folder: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    make_writable: bool,
    expected: Option<Identity>,
) -> Result<bool> {
    let name = CString::new(name.as_bytes())
        .map_err(|error| Error::io("remove", path, std::io::Error::other(error)))?;
    let top = match open_folder_to_remove(folder, &name, make_writable) {
        Ok(Some(handle)) => handle,
        Ok(None) if expected.is_some() => {
            return Err(changed(
                path,
                "something else took its place; it is left alone",
            ))
        }
        Ok(None) => return unlink(folder, &name, path, AtFlags::empty()),
        Err(Errno::NOENT) => return Ok(false),
        Err(error) => return Err(Error::io("open", path, error.into())),
    };
    if let Some(expected) = expected {
        let found = stat_handle(&top).map_err(|error| Error::io("inspect", path, error.into()))?;
        if found.identity != expected {
            return Err(changed(
                path,
                "another folder took its place; it is left alone",
            ));
        }
    }
    let mut stack = vec![Emptying::new(top, name, path.to_path_buf(), make_writable)?];
    while let Some(current) = stack.last_mut() {
        let Some((child, kind)) = current.names.pop() else {
            let done = stack.pop().expect("the loop holds a folder");
            let parent = stack.last().map_or(folder, |parent| parent.handle.as_fd());
            unlink(parent, &done.name, &done.path, AtFlags::REMOVEDIR)?;
            continue;
        };
        let child_path = current.path.join(name_of(&child));
        let maybe_folder = matches!(kind, FileType::Directory | FileType::Unknown);
        if !maybe_folder {
            match rustix::fs::unlinkat(current.handle.as_fd(), child.as_c_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => continue,
                // A folder took the file's place since the listing: emptied below.
                Err(Errno::ISDIR) => {}
                Err(error) => return Err(Error::io("remove", &child_path, error.into())),
            }
        }
        match open_folder_to_remove(current.handle.as_fd(), &child, make_writable) {
            Ok(Some(handle)) => {
                stack.push(Emptying::new(handle, child, child_path, make_writable)?);
            }
            Ok(None) => {
                unlink(
                    current.handle.as_fd(),
                    &child,
                    &child_path,
                    AtFlags::empty(),
                )?;
            }
            Err(Errno::NOENT) => {}
            Err(error) => return Err(Error::io("open", &child_path, error.into())),
        }
    }
    Ok(true)
}

/// Copies the tree (or file, or link) at `source` to `target`, which must not
/// exist, keeping modes, owners (as root) and modification times, links as
/// links: what `cp -a` does, through handles. Both sides may be in folders
/// another account can write (a copy of the bundle's database beside the live
/// one, the service's log folder into a bundle): no folder below either top
/// is ever reached by path, nothing is followed, and every file is created
/// new (`O_EXCL`), so a name swapped for a link mid-copy is an error, never a
/// write or a read elsewhere. Anything but files, folders and links (a FIFO, a
/// device) is refused, named.
///
/// # Errors
/// [`Error::AlreadyExists`] when `target` exists; [`Error::SourceChanged`]
/// naming the entry of the source that something else took the place of
/// while it was copied; [`Error::Io`] naming the path.
pub(crate) fn copy_tree(source: &Path, target: &Path) -> Result<()> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |errno: Errno| Error::io(action, path, errno.into())
    };
    let (Some(source_parent), Some(source_name)) = (source.parent(), source.file_name()) else {
        return Err(Error::io(
            "copy",
            source,
            std::io::Error::other("not a file or folder name"),
        ));
    };
    let (Some(target_parent), Some(target_name)) = (target.parent(), target.file_name()) else {
        return Err(Error::io(
            "copy to",
            target,
            std::io::Error::other("not a file or folder name"),
        ));
    };
    if stat_path(target).is_ok() {
        return Err(Error::AlreadyExists {
            path: target.to_path_buf(),
            hint: "a copy never overwrites; move it away first",
        });
    }
    let from = open_folder_following(source_parent).map_err(io("open", source_parent))?;
    let to = open_folder_following(target_parent).map_err(io("open", target_parent))?;
    copy_entry(
        from.as_fd(),
        source_name,
        to.as_fd(),
        target_name,
        source,
        target,
    )
}

fn copy_entry(
    from: BorrowedFd<'_>,
    name: &OsStr,
    to: BorrowedFd<'_>,
    new_name: &OsStr,
    source: &Path,
    target: &Path,
) -> Result<()> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |errno: Errno| Error::io(action, path, errno.into())
    };
    let stat = stat_child(from, name).map_err(io("inspect", source))?;
    let running_as_root = rustix::process::geteuid().is_root();
    let times = |stat: &EntryStat| rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: stat.mtime,
            tv_nsec: stat.mtime_nsec.into(),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: stat.mtime,
            tv_nsec: stat.mtime_nsec.into(),
        },
    };
    if stat.is_symlink() {
        let link = match read_link_child(from, name) {
            Ok(link) => link,
            // What it was looked at as is a folder or a file by now: a swap,
            // reported as one (not as the kernel's "invalid argument").
            Err(Errno::INVAL) => {
                return Err(changed(
                    source,
                    "it is no longer a link (a folder or a file took its place)",
                ))
            }
            Err(error) => return Err(io("read the link", source)(error)),
        };
        rustix::fs::symlinkat(link.as_os_str(), to, new_name)
            .map_err(io("create the link", target))?;
        if running_as_root {
            rustix::fs::chownat(
                to,
                new_name,
                Some(rustix::fs::Uid::from_raw(stat.uid)),
                Some(rustix::fs::Gid::from_raw(stat.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(io("change the owner of", target))?;
        }
        return rustix::fs::utimensat(to, new_name, &times(&stat), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io("set the times of", target));
    }
    if stat.is_file() {
        let mut input = match open_child_file(from, name) {
            Ok(input) => input,
            // A link took the file's place (`O_NOFOLLOW`): not followed, reported.
            Err(Errno::LOOP) => {
                return Err(changed(
                    source,
                    "it is no longer a file (a link took its place)",
                ))
            }
            Err(error) => return Err(io("open", source)(error)),
        };
        let opened = stat_handle(&input).map_err(io("inspect", source))?;
        if opened.identity != stat.identity || !opened.is_file() {
            return Err(Error::SourceChanged {
                path: source.to_path_buf(),
                details: "another file took its place while it was being copied".to_owned(),
            });
        }
        // Private until complete: the owner and mode are set last.
        let mut output = create_child_file(to, new_name, 0o600).map_err(io("create", target))?;
        std::io::copy(&mut input, &mut output).map_err(|error| Error::io("copy", source, error))?;
        if running_as_root {
            rustix::fs::fchown(
                &output,
                Some(rustix::fs::Uid::from_raw(stat.uid)),
                Some(rustix::fs::Gid::from_raw(stat.gid)),
            )
            .map_err(io("change the owner of", target))?;
        }
        rustix::fs::fchmod(&output, Mode::from_raw_mode(stat.mode))
            .map_err(io("set the mode of", target))?;
        return rustix::fs::futimens(&output, &times(&stat))
            .map_err(io("set the times of", target));
    }
    if !stat.is_dir() {
        return Err(Error::io(
            "copy",
            source,
            std::io::Error::other("not a file, folder or link (a FIFO, socket or device?)"),
        ));
    }
    let Some(folder) = open_child_folder(from, name).map_err(io("open", source))? else {
        return Err(Error::SourceChanged {
            path: source.to_path_buf(),
            details: "it is no longer a folder".to_owned(),
        });
    };
    if stat_handle(&folder)
        .map_err(io("inspect", source))?
        .identity
        != stat.identity
    {
        return Err(Error::SourceChanged {
            path: source.to_path_buf(),
            details: "another folder took its place while it was being copied".to_owned(),
        });
    }
    rustix::fs::mkdirat(to, new_name, Mode::from_raw_mode(0o700))
        .map_err(io("create the folder", target))?;
    let Some(copy) = open_child_folder(to, new_name).map_err(io("open", target))? else {
        return Err(Error::io(
            "open",
            target,
            std::io::Error::other("the folder just made is no longer a folder"),
        ));
    };
    let mut names = child_names(folder.as_fd()).map_err(io("list", source))?;
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (child, _) in names {
        let child_name = name_of(&child);
        copy_entry(
            folder.as_fd(),
            child_name,
            copy.as_fd(),
            child_name,
            &source.join(child_name),
            &target.join(child_name),
        )?;
    }
    // The folder's own attributes last: writing into it changed its times.
    if running_as_root {
        rustix::fs::fchown(
            &copy,
            Some(rustix::fs::Uid::from_raw(stat.uid)),
            Some(rustix::fs::Gid::from_raw(stat.gid)),
        )
        .map_err(io("change the owner of", target))?;
    }
    rustix::fs::fchmod(&copy, Mode::from_raw_mode(stat.mode))
        .map_err(io("set the mode of", target))?;
    rustix::fs::futimens(&copy, &times(&stat)).map_err(io("set the times of", target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};

    fn running_as_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// Sets the access and modification times of `path` (a link itself, not
    /// followed) to `seconds` and `nanoseconds`.
    fn set_times(path: &Path, seconds: i64, nanoseconds: i64) {
        let time = rustix::fs::Timespec {
            tv_sec: seconds,
            tv_nsec: nanoseconds as _,
        };
        rustix::fs::utimensat(
            CWD,
            path,
            &rustix::fs::Timestamps {
                last_access: time,
                last_modification: time,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Everything a copy keeps of every entry under `top` (the top included,
    /// as ""), links not followed: kind, content or link target, mode, owner,
    /// modification time to the nanosecond.
    fn describe(top: &Path) -> BTreeMap<PathBuf, String> {
        let mut found = BTreeMap::new();
        let mut pending = vec![top.to_path_buf()];
        while let Some(path) = pending.pop() {
            let metadata = fs::symlink_metadata(&path).unwrap();
            let content = if metadata.is_dir() {
                for entry in fs::read_dir(&path).unwrap() {
                    pending.push(entry.unwrap().path());
                }
                "folder".to_owned()
            } else if metadata.is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else {
                format!("file {:?}", fs::read_to_string(&path).unwrap())
            };
            found.insert(
                path.strip_prefix(top).unwrap().to_path_buf(),
                format!(
                    "{content} mode {:o} owner {}:{} mtime {}.{:09}",
                    metadata.mode() & 0o7777,
                    metadata.uid(),
                    metadata.gid(),
                    metadata.mtime(),
                    metadata.mtime_nsec()
                ),
            );
        }
        found
    }

    #[test]
    fn copy_tree_keeps_modes_owners_and_times_of_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("Database");
        fs::create_dir_all(source.join("db/node-1")).unwrap();
        fs::create_dir(source.join("empty")).unwrap();
        fs::write(source.join("config.xml"), "<config/>").unwrap();
        fs::write(source.join("db/node-1/part-0.bin"), "part zero").unwrap();
        fs::write(source.join("db/node-1/part-1.bin"), "").unwrap();
        fs::write(source.join("run.sh"), "#!/bin/sh\n").unwrap();
        // Owners first (a chown may clear set-id bits), then modes, then
        // times, deepest first so a folder's own time is set last.
        if running_as_root() {
            for (relative, owner) in [
                ("", (1001, 1002)),
                ("db", (1003, 1004)),
                ("db/node-1", (1005, 1006)),
                ("db/node-1/part-0.bin", (1007, 1008)),
                ("db/node-1/part-1.bin", (0, 1010)),
                ("config.xml", (1011, 0)),
                ("run.sh", (1013, 1014)),
                ("empty", (1015, 1016)),
            ] {
                lchown(source.join(relative), Some(owner.0), Some(owner.1)).unwrap();
            }
        }
        for (relative, mode) in [
            ("config.xml", 0o640),
            ("run.sh", 0o4755),
            ("db/node-1/part-0.bin", 0o600),
            ("db/node-1/part-1.bin", 0o444),
            // A folder nobody may write to: the copy fills it all the same.
            ("db/node-1", 0o500),
            ("db", 0o2750),
            ("empty", 0o711),
            ("", 0o750),
        ] {
            set_mode(&source.join(relative), mode);
        }
        for (index, relative) in [
            "config.xml",
            "run.sh",
            "db/node-1/part-0.bin",
            "db/node-1/part-1.bin",
            "db/node-1",
            "db",
            "empty",
            "",
        ]
        .into_iter()
        .enumerate()
        {
            set_times(
                &source.join(relative),
                1_000_000_000 + 86_400 * index as i64,
                123_456_789 + index as i64,
            );
        }
        let before = describe(&source);

        let target = dir.path().join("Database.cmw-upgrade-pruned");
        copy_tree(&source, &target).unwrap();

        assert_eq!(describe(&target), before, "the copy is the source");
        assert_eq!(describe(&source), before, "the source is unchanged");
        if running_as_root() {
            assert_eq!(
                fs::symlink_metadata(target.join("db/node-1/part-0.bin"))
                    .unwrap()
                    .uid(),
                1007,
                "owners are kept"
            );
        }
        assert_eq!(
            fs::symlink_metadata(target.join("run.sh")).unwrap().mode() & 0o7777,
            0o4755,
            "a set-id bit survives the owner being set"
        );
        // So that the temporary folder can go, whoever runs the test.
        set_mode(&source.join("db/node-1"), 0o700);
        set_mode(&target.join("db/node-1"), 0o700);
    }

    #[test]
    fn copy_tree_copies_links_as_links_and_never_follows_them() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "outside").unwrap();
        let source = dir.path().join("logs");
        fs::create_dir_all(source.join("archive")).unwrap();
        fs::write(source.join("archive/old.log"), "old").unwrap();
        let links = [
            ("absolute", outside.clone()),
            ("absolute-file", outside.join("secret")),
            ("relative", PathBuf::from("../outside")),
            ("relative-file", PathBuf::from("../outside/secret")),
            ("inside", PathBuf::from("archive")),
            ("dangling", PathBuf::from("/nowhere/at/all")),
            ("archive/up", PathBuf::from("..")),
        ];
        for (index, (name, link_target)) in links.iter().enumerate() {
            let link = source.join(name);
            symlink(link_target, &link).unwrap();
            if running_as_root() {
                lchown(&link, Some(2000 + index as u32), Some(3000)).unwrap();
            }
            set_times(&link, 1_200_000_000 + index as i64, 987_654_321);
        }
        set_times(&source.join("archive"), 1_100_000_000, 5);
        set_times(&source, 1_100_000_000, 6);
        let outside_before = describe(&outside);
        let before = describe(&source);

        let target = dir.path().join("bundle-logs");
        copy_tree(&source, &target).unwrap();

        assert_eq!(describe(&target), before, "the copy is the source");
        for (name, link_target) in &links {
            let copied = target.join(name);
            assert!(
                fs::symlink_metadata(&copied).unwrap().is_symlink(),
                "{name} is copied as a link"
            );
            assert_eq!(
                &fs::read_link(&copied).unwrap(),
                link_target,
                "{name}'s target is kept as written"
            );
        }
        assert_eq!(describe(&outside), outside_before, "nothing was followed");
        assert_eq!(
            fs::read_dir(&target)
                .unwrap()
                .filter(|entry| !entry.as_ref().unwrap().file_type().unwrap().is_symlink())
                .count(),
            1,
            "only the real folder is a folder in the copy"
        );
    }

    #[test]
    fn copy_tree_refuses_a_target_that_exists_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("Database");
        fs::create_dir(&source).unwrap();
        fs::write(source.join("part.bin"), "new").unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let folder = dir.path().join("folder");
        fs::create_dir(&folder).unwrap();
        fs::write(folder.join("part.bin"), "old").unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "old").unwrap();
        let link = dir.path().join("link");
        symlink(&elsewhere, &link).unwrap();
        let dangling = dir.path().join("dangling");
        symlink(elsewhere.join("made-through-a-link"), &dangling).unwrap();
        let before = describe(dir.path());

        for target in [&folder, &file, &link, &dangling] {
            match copy_tree(&source, target) {
                Err(Error::AlreadyExists { path, .. }) => assert_eq!(&path, target),
                other => panic!("{}: {other:?}", target.display()),
            }
            // A file as the source too: the same refusal.
            match copy_tree(&source.join("part.bin"), target) {
                Err(Error::AlreadyExists { path, .. }) => assert_eq!(&path, target),
                other => panic!("{}: {other:?}", target.display()),
            }
        }
        assert_eq!(describe(dir.path()), before, "nothing changed anywhere");
    }

    #[test]
    fn copy_tree_refuses_a_fifo_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("Database");
        fs::create_dir_all(source.join("db")).unwrap();
        fs::write(source.join("db/part.bin"), "part").unwrap();
        let fifo = source.join("db/ignite.sock");
        rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o666), 0).unwrap();

        // On a thread, so a copy that waited on the FIFO fails the test
        // instead of hanging it.
        let (sender, receiver) = std::sync::mpsc::channel();
        let (from, to) = (source.clone(), dir.path().join("copy"));
        std::thread::spawn(move || {
            let _ = sender.send(copy_tree(&from, &to));
        });
        let error = receiver
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the copy returned instead of waiting on the FIFO")
            .expect_err("a FIFO is refused");
        let Error::Io { path, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(path, &fifo, "{error}");
        assert!(error.to_string().contains("FIFO"), "{error}");
        // And as the top.
        match copy_tree(&fifo, &dir.path().join("fifo-copy")) {
            Err(Error::Io { path, .. }) => assert_eq!(path, fifo),
            other => panic!("{other:?}"),
        }
        assert!(fs::symlink_metadata(dir.path().join("fifo-copy")).is_err());
    }

    #[test]
    fn copy_tree_copies_a_single_file_or_link_as_the_top() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("folder");
        fs::create_dir(&folder).unwrap();
        fs::write(folder.join("inside"), "inside").unwrap();
        let file = dir.path().join("heartbeat.log");
        fs::write(&file, "line\n").unwrap();
        set_mode(&file, 0o640);
        if running_as_root() {
            lchown(&file, Some(1234), Some(5678)).unwrap();
        }
        set_times(&file, 1_300_000_000, 42);
        let link = dir.path().join("current");
        symlink(&folder, &link).unwrap();
        if running_as_root() {
            lchown(&link, Some(4321), Some(8765)).unwrap();
        }
        set_times(&link, 1_400_000_000, 24);
        let relative = dir.path().join("relative");
        symlink("folder/inside", &relative).unwrap();

        let copies = dir.path().join("copies");
        fs::create_dir(&copies).unwrap();
        for (top, name) in [(&file, "file"), (&link, "link"), (&relative, "relative")] {
            copy_tree(top, &copies.join(name)).unwrap();
            assert_eq!(
                describe(&copies.join(name)),
                describe(top),
                "{name} is copied as itself"
            );
        }
        assert!(fs::symlink_metadata(copies.join("link"))
            .unwrap()
            .is_symlink());
        assert_eq!(fs::read_link(copies.join("link")).unwrap(), folder);
        assert_eq!(
            fs::read_link(copies.join("relative")).unwrap(),
            Path::new("folder/inside")
        );
        assert_eq!(fs::read_to_string(copies.join("file")).unwrap(), "line\n");
    }
}
