//! Bringing this binary to another server whose agent is missing or does not
//! fit: copied over the ssh master connection into a private folder
//! (`/var/lib/cmw-upgrade/bin` by default), its SHA-256 checked on the other
//! side, then made executable and moved into place in one rename.
//!
//! The folder is refused unless every folder on its path is safe: not a
//! symlink, owned by root or the ssh user, and not writable by anyone else
//! (unless sticky, like `/tmp`); the folder itself and its file are the ssh
//! user's alone. Otherwise another account (the service account) could plant
//! a binary that root then runs.
//!
//! Every remote command is an argv vector; the ssh executor shell-quotes it.

// Reads this very binary, to copy it to the other server.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::exec::CommandOutput;

/// The default folder of the copied binary on the other server.
pub const DEFAULT_BIN_DIR: &str = "/var/lib/cmw-upgrade/bin";

/// The copied binary's file name in that folder.
pub const BINARY_NAME: &str = "cmw-upgrade";

/// Where the bytes go before their checksum is checked (never executable).
const TEMP_NAME: &str = ".cmw-upgrade.tmp";

/// What provisioning did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisioned {
    /// The server, as given to ssh.
    pub server: String,
    /// The binary's path there.
    pub path: String,
    /// Its version (this binary's).
    pub version: String,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Whether it was copied now (false: an identical copy was already there).
    pub copied: bool,
}

impl Provisioned {
    /// A line for the admin: what was copied where.
    pub fn note(&self) -> String {
        let verb = if self.copied {
            "copied"
        } else {
            "found the same"
        };
        format!(
            "{verb} cmw-upgrade {} (sha256 {}) to {}:{}",
            self.version, self.sha256, self.server, self.path
        )
    }
}

/// Runs one argv on the other server (through the master connection).
pub(crate) trait RemoteCommands {
    /// The server's name in messages.
    fn server(&self) -> &str;
    /// Runs `argv` there, with `stdin` fed to it.
    fn run(
        &self,
        argv: &[&str],
        stdin: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<CommandOutput>;
}

fn refused(server: &str, details: String) -> Error {
    Error::CheckFailed {
        what: format!("checking where to copy cmw-upgrade on {server}"),
        details,
    }
}

/// Runs `argv`; its failure is an error saying what to do.
fn run_ok(
    remote: &dyn RemoteCommands,
    argv: &[&str],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    hint: &str,
) -> Result<CommandOutput> {
    let output = remote.run(argv, stdin, timeout)?;
    if output.success() {
        Ok(output)
    } else {
        Err(Error::CommandFailed {
            command: format!("ssh {} -- {}", remote.server(), argv.join(" ")),
            status: format!("exit code {:?}", output.code),
            output: output.stderr.trim().to_owned(),
            hint: hint.to_owned(),
        })
    }
}

/// The folders from `/` down to `dir`, each as an absolute path.
///
/// # Errors
/// [`Error::CheckFailed`] for a path that is not absolute and plain (`..`,
/// `.`, a newline).
fn chain(server: &str, dir: &str) -> Result<Vec<String>> {
    let plain = dir.starts_with('/')
        && dir != "/"
        && !dir.contains('\n')
        && dir
            .split('/')
            .skip(1)
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !plain {
        return Err(refused(
            server,
            format!("{dir:?} is not an absolute folder path without `.`, `..` or `//`"),
        ));
    }
    let mut paths = vec!["/".to_owned()];
    let mut current = String::new();
    for part in dir.split('/').skip(1) {
        current.push('/');
        current.push_str(part);
        paths.push(current.clone());
    }
    Ok(paths)
}

/// One `stat` line: owner, permission bits, file type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    uid: u32,
    mode: u32,
}

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;

/// Reads `stat -c '%u %f %n'` for `paths` (missing ones are left out).
fn stat(remote: &dyn RemoteCommands, paths: &[String]) -> Result<Vec<(String, Node)>> {
    let mut argv = vec!["stat", "-c", "%u %f %n", "--"];
    argv.extend(paths.iter().map(String::as_str));
    // A missing path makes stat fail; the others are still printed.
    let output = remote.run(&argv, None, Duration::from_secs(60))?;
    let mut nodes = Vec::new();
    for line in output.stdout.lines() {
        let mut fields = line.splitn(3, ' ');
        let (Some(uid), Some(raw), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (Ok(uid), Ok(mode)) = (uid.parse(), u32::from_str_radix(raw, 16)) else {
            return Err(Error::CommandFailed {
                command: format!("stat on {}", remote.server()),
                status: "unexpected output".to_owned(),
                output: line.to_owned(),
                hint: "GNU or BusyBox stat is needed there".to_owned(),
            });
        };
        nodes.push((name.to_owned(), Node { uid, mode }));
    }
    Ok(nodes)
}

/// Refuses a folder chain another account could change. `must_exist`: after
/// `mkdir -p`, every folder must be there.
fn check_chain(
    remote: &dyn RemoteCommands,
    paths: &[String],
    me: u32,
    must_exist: bool,
) -> Result<()> {
    let server = remote.server();
    let nodes = stat(remote, paths)?;
    let dir = paths.last().map(String::as_str).unwrap_or("/");
    for (index, path) in paths.iter().enumerate() {
        let Some(node) = nodes
            .iter()
            .find(|(name, _)| name == path)
            .map(|(_, node)| *node)
        else {
            if must_exist {
                return Err(refused(
                    server,
                    format!("{path} is missing after it was created"),
                ));
            }
            continue;
        };
        let is_bin = paths.len() - 1 == index;
        let kind = node.mode & S_IFMT;
        if kind == S_IFLNK {
            return Err(refused(
                server,
                format!(
                    "{path} is a symlink; the binary's folder {dir} must be a real folder path: \
                     remove the link (or give the real path)"
                ),
            ));
        }
        if kind != S_IFDIR {
            return Err(refused(
                server,
                format!("{path} is not a folder; remove it or give another folder"),
            ));
        }
        let writable_by_others = node.mode & 0o022 != 0;
        let sticky = node.mode & 0o1000 != 0;
        if is_bin {
            if node.uid != me || writable_by_others {
                return Err(refused(
                    server,
                    format!(
                        "{path} is owned by uid {} with mode {:o}; it must be the ssh user's \
                         (uid {me}) alone: remove it, or `chown {me} {path}; chmod 0700 {path}` \
                         after checking what is in it",
                        node.uid,
                        node.mode & 0o7777
                    ),
                ));
            }
        } else if (node.uid != 0 && node.uid != me) || (writable_by_others && !sticky) {
            return Err(refused(
                server,
                format!(
                    "{path} (above {dir}) is owned by uid {} with mode {:o}: another account \
                     could replace what is under it; make it root's and not writable by others, \
                     or give another folder",
                    node.uid,
                    node.mode & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// `sha256sum FILE` there, or `None` when it does not answer a checksum.
fn remote_sha256(remote: &dyn RemoteCommands, file: &str) -> Result<Option<String>> {
    let output = remote.run(&["sha256sum", "--", file], None, Duration::from_secs(300))?;
    Ok(output
        .success()
        .then(|| output.stdout.split_whitespace().next().map(str::to_owned))
        .flatten())
}

/// Copies the binary at `local_binary` (this one by default) to `dir` on the
/// other server, unless an identical copy is there, and returns its path.
///
/// # Errors
/// [`Error::CheckFailed`] when `dir` or a folder above it is unsafe (a
/// symlink, another account's) or the copy's checksum there differs from
/// this one's (the copy is removed; nothing executable is left);
/// [`Error::Io`] when the local binary cannot be read;
/// [`Error::CommandFailed`] when a remote command fails.
pub(crate) fn provision(
    remote: &dyn RemoteCommands,
    dir: &str,
    local_binary: Option<&Path>,
) -> Result<Provisioned> {
    let server = remote.server().to_owned();
    let paths = chain(&server, dir)?;
    let local_binary: PathBuf = match local_binary {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe().map_err(|source| Error::Io {
            action: "find this binary",
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?,
    };
    let bytes = std::fs::read(&local_binary).map_err(|source| Error::Io {
        action: "read (to copy it to the other server)",
        path: local_binary.clone(),
        source,
    })?;
    let sha256 = sha256_hex(&bytes);
    let me = run_ok(
        remote,
        &["id", "-u"],
        None,
        Duration::from_secs(60),
        "`id -u` must work there",
    )?;
    let me: u32 = me.stdout.trim().parse().map_err(|_| Error::CommandFailed {
        command: format!("id -u on {server}"),
        status: "unexpected output".to_owned(),
        output: me.stdout.clone(),
        hint: "`id -u` must print the user's number".to_owned(),
    })?;

    // Nothing is created through a folder another account controls.
    check_chain(remote, &paths, me, false)?;
    run_ok(
        remote,
        &[
            "sh",
            "-c",
            "umask 077 && mkdir -p -- \"$1\" && chmod 0700 -- \"$1\"",
            "sh",
            dir,
        ],
        None,
        Duration::from_secs(60),
        "the ssh user must be able to create that folder (log in as root)",
    )?;
    check_chain(remote, &paths, me, true)?;

    let path = format!("{dir}/{BINARY_NAME}");
    let temp = format!("{dir}/{TEMP_NAME}");
    let done = |copied| Provisioned {
        server: server.clone(),
        path: path.clone(),
        version: crate::VERSION.to_owned(),
        sha256: sha256.clone(),
        copied,
    };
    let present = stat(remote, std::slice::from_ref(&path))?;
    if let Some((_, node)) = present.first() {
        let own_file = node.mode & S_IFMT == S_IFREG && node.uid == me && node.mode & 0o022 == 0;
        if own_file && remote_sha256(remote, &path)?.as_deref() == Some(sha256.as_str()) {
            return Ok(done(false));
        }
    }

    run_ok(
        remote,
        &[
            "sh",
            "-c",
            "umask 077 && rm -f -- \"$1\" && cat > \"$1\"",
            "sh",
            &temp,
        ],
        Some(bytes),
        Duration::from_secs(1800),
        "check the free space and the connection there, then rerun",
    )?;
    let theirs = remote_sha256(remote, &temp)?;
    if theirs.as_deref() != Some(sha256.as_str()) {
        let removed = remote.run(&["rm", "-f", "--", &temp], None, Duration::from_secs(60));
        let left = match removed {
            Ok(output) if output.success() => "it was removed".to_owned(),
            _ => format!("remove {server}:{temp} by hand (it is not executable)"),
        };
        return Err(Error::CheckFailed {
            what: format!("checking the copy of cmw-upgrade on {server}"),
            details: format!(
                "its sha256 there is {} but {} here ({}); {left}; check the disk and the \
                 `sha256sum` on that server, then rerun",
                theirs.as_deref().unwrap_or("not readable"),
                sha256,
                local_binary.display()
            ),
        });
    }
    run_ok(
        remote,
        &[
            "sh",
            "-c",
            "chmod 0700 -- \"$1\" && mv -f -- \"$1\" \"$2\"",
            "sh",
            &temp,
            &path,
        ],
        None,
        Duration::from_secs(60),
        "check that folder there, then rerun",
    )?;
    Ok(done(true))
}

/// Whether `version` (`MAJOR.MINOR.PATCH[-pre]`) is older than `than`; a
/// version that does not read as numbers is not called older.
pub(crate) fn is_older(version: &str, than: &str) -> bool {
    fn numbers(version: &str) -> Option<(Vec<u64>, bool)> {
        let (core, pre) = match version.find(['-', '+']) {
            Some(at) => (&version[..at], version[at..].starts_with('-')),
            None => (version, false),
        };
        let parts = core
            .split('.')
            .map(|part| part.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        Some((parts, pre))
    }
    match (numbers(version), numbers(than)) {
        (Some((a, a_pre)), Some((b, b_pre))) => match a.cmp(&b) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            // A pre-release comes before its release.
            std::cmp::Ordering::Equal => a_pre && !b_pre,
        },
        _ => false,
    }
}

/// SHA-256 of `data`, lower-case hex (what `sha256sum` prints on the other side).
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_standard_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        let million = vec![b'a'; 1_000_000];
        assert_eq!(
            sha256_hex(&million),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert!(is_older("0.1.0", "0.2.0"));
        assert!(is_older("0.9.0", "0.10.0"));
        assert!(is_older("1.0.0-rc.1", "1.0.0"));
        assert!(!is_older("0.1.0", "0.1.0"));
        assert!(!is_older("0.2.0", "0.1.9"));
        assert!(!is_older("unknown", "0.1.0"));
    }

    #[test]
    fn only_plain_absolute_folders_are_accepted() {
        assert_eq!(
            chain("h", "/var/lib/cmw-upgrade/bin").unwrap(),
            [
                "/",
                "/var",
                "/var/lib",
                "/var/lib/cmw-upgrade",
                "/var/lib/cmw-upgrade/bin"
            ]
        );
        for bad in [
            "relative/bin",
            "/",
            "/var/../etc",
            "/var//lib",
            "/var/lib/",
            "/a/./b",
        ] {
            assert_eq!(
                chain("h", bad).unwrap_err().kind(),
                crate::ErrorKind::CheckFailed,
                "{bad}"
            );
        }
    }
}
