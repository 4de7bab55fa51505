//! Reading a server: the one vocabulary the layout, the family detection and
//! the procedure read through, whether the server is this machine's disk
//! under a root ([`crate::disk::Disk`]) or anything an
//! [`Executor`](crate::executor::Executor) reaches (locally, over ssh).
//!
//! Paths are server paths (`/var/www/prod`); the reader places them.

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// What a folder entry is, links followed (a dangling link is `Other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A folder.
    Folder,
    /// Anything else (a socket, a device, a dangling link).
    Other,
}

/// One name in a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// The name.
    pub name: String,
    /// What it is, links followed.
    pub kind: NodeKind,
    /// Whether the entry itself is a symlink.
    pub link: bool,
}

/// Reads files, folders and links of one server. Nothing here changes anything.
pub trait ServerRead {
    /// A whole file; `None` when it does not exist.
    ///
    /// # Errors
    /// [`crate::Error::PathOutsideRoot`] for an unsafe path; [`crate::Error::Io`].
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>>;

    /// Whether something (a file, folder or link, even dangling) is at `path`.
    ///
    /// # Errors
    /// [`crate::Error::PathOutsideRoot`] for an unsafe path.
    fn exists(&self, path: &str) -> Result<bool>;

    /// The entries of a folder, sorted by name; none when it does not exist.
    ///
    /// # Errors
    /// [`crate::Error::PathOutsideRoot`]; [`crate::Error::Io`].
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>>;

    /// Where a symlink points, as written in it; `None` when `path` is not a link.
    ///
    /// # Errors
    /// [`crate::Error::PathOutsideRoot`]; [`crate::Error::Io`].
    fn read_link(&self, path: &str) -> Result<Option<String>>;

    /// A whole file as text (invalid UTF-8 replaced); `None` when missing.
    ///
    /// # Errors
    /// As [`ServerRead::read_file`].
    fn read_text(&self, path: &str) -> Result<Option<String>> {
        Ok(self
            .read_file(path)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// The names in a folder whose entries are of `kind`, sorted.
    ///
    /// # Errors
    /// As [`ServerRead::list_dir`].
    fn names_of_kind(&self, path: &str, kind: NodeKind) -> Result<Vec<String>> {
        Ok(self
            .list_dir(path)?
            .into_iter()
            .filter(|entry| entry.kind == kind)
            .map(|entry| entry.name)
            .collect())
    }
}

impl<R: ServerRead + ?Sized> ServerRead for &R {
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        (**self).read_file(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        (**self).exists(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        (**self).list_dir(path)
    }
    fn read_link(&self, path: &str) -> Result<Option<String>> {
        (**self).read_link(path)
    }
}
