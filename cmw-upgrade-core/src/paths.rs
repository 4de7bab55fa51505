//! Placing server paths under a target root without ever leaving it.
//!
//! The tool works on a live server (`--root /`), on a mounted copy of one, or
//! on a test tree. Paths read from config files are absolute server paths; they
//! are mapped under the root lexically, and a path that climbs above `/` with
//! `..` is refused rather than silently clamped, because it means the config
//! holds something other than what the admin thinks.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Maps an absolute server path under `root`.
///
/// `.` components are dropped and `..` is resolved lexically; the result always
/// starts with `root` and holds no `..`.
///
/// # Errors
/// [`Error::PathOutsideRoot`] when the path is relative, empty, holds a NUL, or
/// climbs above `/`. `origin` names where the path came from, for the message.
///
/// ```
/// use std::path::Path;
/// use cmw_upgrade_core::paths::under_root;
/// let path = under_root(Path::new("/srv/copy"), "/var/lib/./comindware/x/../prod", "db.workDir").unwrap();
/// assert_eq!(path, Path::new("/srv/copy/var/lib/comindware/prod"));
/// assert!(under_root(Path::new("/srv/copy"), "/var/../../etc", "db.workDir").is_err());
/// ```
pub fn under_root(root: &Path, server_path: &str, origin: &str) -> Result<PathBuf> {
    let refuse = |reason: &'static str| Error::PathOutsideRoot {
        path: server_path.to_owned(),
        origin: origin.to_owned(),
        reason,
    };
    if server_path.contains('\0') {
        return Err(refuse("holds a NUL byte"));
    }
    let path = Path::new(server_path);
    if !path.has_root() {
        return Err(refuse("is not an absolute path"));
    }
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(refuse("climbs above / with '..'"));
                }
            }
            Component::Normal(part) => parts.push(part),
        }
    }
    let mut result = root.to_path_buf();
    result.extend(parts);
    Ok(result)
}

/// Joins a path known to be absolute and clean (a built-in default) under `root`.
pub(crate) fn join_default(root: &Path, server_path: &Path) -> PathBuf {
    let relative = server_path.strip_prefix("/").unwrap_or(server_path);
    root.join(relative)
}

/// Creates a new folder only this user can enter (`0700`) in the system's temp
/// folder, named `<prefix>-<pid>-<n>`. It never reuses an existing path, so two
/// callers (threads, test runs) never share one, and a name planted in a shared
/// `/tmp` is skipped rather than used. The caller removes it.
///
/// # Errors
/// [`Error::Io`] when no folder can be created there.
pub fn private_temp_dir(prefix: &str) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    loop {
        let folder = base.join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&folder) {
            Ok(()) => return Ok(folder),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(Error::io("create the folder", &folder, error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_temp_folders_are_new_and_closed() {
        use std::os::unix::fs::MetadataExt;
        let first = private_temp_dir("cmw-upgrade-test").unwrap();
        let second = private_temp_dir("cmw-upgrade-test").unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::metadata(&first).unwrap().mode() & 0o777, 0o700);
        std::fs::remove_dir(first).unwrap();
        std::fs::remove_dir(second).unwrap();
    }
    use proptest::prelude::*;

    #[test]
    fn absolute_paths_are_placed_under_the_root() {
        let root = Path::new("/mnt/old");
        assert_eq!(
            under_root(root, "/var/lib/comindware/prod/Database", "x").unwrap(),
            Path::new("/mnt/old/var/lib/comindware/prod/Database")
        );
        assert_eq!(under_root(root, "/", "x").unwrap(), root);
        assert_eq!(
            under_root(Path::new("/"), "//data//db/", "x").unwrap(),
            Path::new("/data/db")
        );
    }

    #[test]
    fn escapes_and_relative_paths_are_refused() {
        let root = Path::new("/mnt/old");
        for bad in ["/..", "/a/../../b", "relative/db", "", "./db", "/a\0b"] {
            let error = under_root(root, bad, "db.workDir in prod.yml").unwrap_err();
            assert!(matches!(error, Error::PathOutsideRoot { .. }), "{bad:?}");
            assert!(error.to_string().contains("db.workDir in prod.yml"));
        }
    }

    proptest! {
        /// No computed path ever leaves the root, whatever the input.
        #[test]
        fn never_leaves_the_root(
            root in "/[a-z]{1,8}(/[a-z]{1,8}){0,2}",
            parts in proptest::collection::vec(prop_oneof![
                Just("..".to_owned()), Just(".".to_owned()), Just("".to_owned()),
                "[a-zA-Z0-9._-]{1,10}".prop_map(|s| s),
            ], 0..12),
        ) {
            let server_path = format!("/{}", parts.join("/"));
            let root = Path::new(&root);
            if let Ok(placed) = under_root(root, &server_path, "test") {
                prop_assert!(placed.starts_with(root));
                prop_assert!(placed.components().all(|c| c != Component::ParentDir));
            }
        }
    }
}
