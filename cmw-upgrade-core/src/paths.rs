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

/// A path a caller names for the server a command acts on (a bundle, a log
/// folder, a database folder), as the CLI and the Python module read it: with
/// root `/` it is used as given; under another root it must be absolute, and
/// it is placed under that root as every path from a config is (`..` cannot
/// climb out). One root thus moves a whole command onto a mounted copy or a
/// test tree. `origin` names the argument in the error.
///
/// # Errors
/// [`Error::PathOutsideRoot`] for a relative path, a path that is not UTF-8,
/// or one that climbs above `/`, under a root other than `/`.
pub fn server_path_argument(root: &Path, path: &Path, origin: &str) -> Result<PathBuf> {
    if root == Path::new("/") {
        return Ok(path.to_path_buf());
    }
    let Some(text) = path.to_str() else {
        return Err(Error::PathOutsideRoot {
            path: path.to_string_lossy().into_owned(),
            origin: origin.to_owned(),
            reason: "is not valid UTF-8",
        });
    };
    under_root(root, text, origin)
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

/// The top-level folders of a Linux system: no folder the tool moves aside,
/// replaces or gives to the service account may be one of these, or sit
/// directly in one (or directly in `/`).
pub const SYSTEM_FOLDERS: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
    "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr",
    "/var",
];

/// Whether a server path, normalised as [`under_root`] reads it, is `/`, a
/// [`SYSTEM_FOLDERS`] entry, or directly inside one of them or `/`: a data
/// folder there would make a restore move a system folder aside, or a chown
/// give it away. Platform folders sit deeper (`/var/lib/comindware/<i>/...`).
pub fn is_system_folder(server_path: &Path) -> bool {
    let parts: Vec<_> = server_path
        .components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect();
    match parts.len() {
        0 | 1 => true,
        2 => SYSTEM_FOLDERS
            .iter()
            .any(|folder| Path::new(folder).file_name() == Some(parts[0])),
        _ => false,
    }
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

/// The documented contract of [`under_root`], written apart from its code so
/// that property tests here and in [`crate::layout`] check the code against
/// the contract rather than against itself.
#[cfg(test)]
pub(crate) mod contract {
    /// Where `server_path` must land under `root`, or `None` when it must be
    /// refused: it is refused exactly when it is not absolute, holds a NUL, or a
    /// `..` would climb above `/`. Otherwise it is read part by part between
    /// slashes (empty parts and `.` dropped, `..` dropping the part before) and
    /// the parts left are appended to `root`.
    pub(crate) fn placed(root: &str, server_path: &str) -> Option<String> {
        if !server_path.starts_with('/') || server_path.contains('\0') {
            return None;
        }
        let mut kept: Vec<&str> = Vec::new();
        for part in server_path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    kept.pop()?;
                }
                name => kept.push(name),
            }
        }
        if kept.is_empty() {
            return Some(root.to_owned());
        }
        Some(format!("{}/{}", root.trim_end_matches('/'), kept.join("/")))
    }
}

#[cfg(test)]
mod tests {
    use super::place_under_root;
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

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

    #[test]
    fn system_folders_and_their_direct_children_are_named() {
        for system in [
            "/",
            "/etc",
            "/var",
            "/var/lib",
            "/var/www",
            "/usr/local",
            "/data",
            "/home/admin",
            "/mnt/db",
            "/etc/ssh",
        ] {
            assert!(is_system_folder(Path::new(system)), "{system}");
        }
        for data in [
            "/var/lib/comindware/prod/Database",
            "/data/prod/Database",
            "/mnt/db/prod",
            "/srv/cmw/prod",
            "/var/log/comindware/prod/Logs",
        ] {
            assert!(!is_system_folder(Path::new(data)), "{data}");
        }
    }

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

    /// Target roots as the tool meets them: a live server, a mounted copy, a test tree.
    fn root() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("/".to_owned()),
            "/[a-z]{1,8}(/[a-z]{1,8}){0,2}",
            Just("/mnt/old copy/".to_owned()),
        ]
    }

    /// Server paths weighted so that about half are accepted: mostly absolute,
    /// with enough `..` to climb out often, and some relative, empty or NUL-holding
    /// ones. Names include dotted ones (`...`, `.hidden`) that are not `..`.
    fn server_path() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            8 => "[a-zA-Z0-9_][a-zA-Z0-9._ \\\\-]{0,9}",
            1 => "\\.[.a-z]{1,3}",
            3 => Just("..".to_owned()),
            1 => Just(".".to_owned()),
            1 => Just(String::new()),
        ];
        let start = prop_oneof![8 => Just("/"), 1 => Just("//"), 2 => Just(""), 1 => Just("./")];
        (
            start,
            proptest::collection::vec(part, 0..8),
            proptest::option::weighted(0.08, any::<proptest::sample::Index>()),
        )
            .prop_map(|(start, parts, nul_at)| {
                let mut path = format!("{start}{}", parts.join("/"));
                if let Some(index) = nul_at {
                    // Every generated character is ASCII, so any byte offset is a char boundary.
                    path.insert(index.index(path.len() + 1), '\0');
                }
                path
            })
    }

    /// What the procedure must do with a path: the config contract, and no `..` at all.
    fn procedure_contract(root: &str, server_path: &str) -> Option<String> {
        if server_path.split('/').any(|part| part == "..") {
            return None;
        }
        contract::placed(root, server_path)
    }

    /// How many of `samples` generated cases the contract accepts.
    fn accepted_count(samples: usize, decide: fn(&str, &str) -> Option<String>) -> usize {
        let mut runner = TestRunner::deterministic();
        let cases = (root(), server_path());
        (0..samples)
            .filter(|_| {
                let (root, path) = cases.new_tree(&mut runner).unwrap().current();
                decide(&root, &path).is_some()
            })
            .count()
    }

    // A generator that drifts to all-accepted or all-refused would leave one side
    // of the properties below unchecked while they still pass.
    #[test]
    fn generated_paths_are_often_accepted_and_often_refused() {
        let accepted = accepted_count(1000, contract::placed);
        assert!((350..=650).contains(&accepted), "{accepted} of 1000");
        let accepted = accepted_count(1000, procedure_contract);
        assert!((200..=500).contains(&accepted), "{accepted} of 1000");
    }

    proptest! {
        /// A config path is accepted exactly when the contract accepts it, lands
        /// exactly where the contract says, and a refusal names the path and its origin.
        #[test]
        fn placement_follows_the_contract(root in root(), server_path in server_path()) {
            let origin = "db.workDir in prod.yml";
            let outcome = under_root(Path::new(&root), &server_path, origin);
            match (outcome, contract::placed(&root, &server_path)) {
                (Ok(placed), Some(expected)) => {
                    prop_assert_eq!(placed.to_str(), Some(expected.as_str()));
                }
                (Err(Error::PathOutsideRoot { path, origin: named, .. }), None) => {
                    prop_assert_eq!(path, server_path);
                    prop_assert_eq!(named, origin);
                }
                (outcome, expected) => prop_assert!(
                    false,
                    "{:?} under {:?}: got {:?}, the contract says {:?}",
                    server_path, root, outcome, expected
                ),
            }
        }

        /// The procedure's placement is the config one with every `..` refused,
        /// even one that would stay inside the root.
        #[test]
        fn procedure_placement_follows_the_contract(root in root(), server_path in server_path()) {
            let outcome = place_under_root(Path::new(&root), &server_path);
            match (outcome, procedure_contract(&root, &server_path)) {
                (Ok(placed), Some(expected)) => {
                    prop_assert_eq!(placed.to_str(), Some(expected.as_str()));
                }
                (Err(Error::PathOutsideRoot { path, .. }), None) => {
                    prop_assert_eq!(path, server_path);
                }
                (outcome, expected) => prop_assert!(
                    false,
                    "{:?} under {:?}: got {:?}, the contract says {:?}",
                    server_path, root, outcome, expected
                ),
            }
        }
    }
}
