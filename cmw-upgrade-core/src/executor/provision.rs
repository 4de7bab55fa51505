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

/// SHA-256 of `data`, lower-case hex (what `sha256sum` prints).
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a_2f98,
        0x7137_4491,
        0xb5c0_fbcf,
        0xe9b5_dba5,
        0x3956_c25b,
        0x59f1_11f1,
        0x923f_82a4,
        0xab1c_5ed5,
        0xd807_aa98,
        0x1283_5b01,
        0x2431_85be,
        0x550c_7dc3,
        0x72be_5d74,
        0x80de_b1fe,
        0x9bdc_06a7,
        0xc19b_f174,
        0xe49b_69c1,
        0xefbe_4786,
        0x0fc1_9dc6,
        0x240c_a1cc,
        0x2de9_2c6f,
        0x4a74_84aa,
        0x5cb0_a9dc,
        0x76f9_88da,
        0x983e_5152,
        0xa831_c66d,
        0xb003_27c8,
        0xbf59_7fc7,
        0xc6e0_0bf3,
        0xd5a7_9147,
        0x06ca_6351,
        0x1429_2967,
        0x27b7_0a85,
        0x2e1b_2138,
        0x4d2c_6dfc,
        0x5338_0d13,
        0x650a_7354,
        0x766a_0abb,
        0x81c2_c92e,
        0x9272_2c85,
        0xa2bf_e8a1,
        0xa81a_664b,
        0xc24b_8b70,
        0xc76c_51a3,
        0xd192_e819,
        0xd699_0624,
        0xf40e_3585,
        0x106a_a070,
        0x19a4_c116,
        0x1e37_6c08,
        0x2748_774c,
        0x34b0_bcb5,
        0x391c_0cb3,
        0x4ed8_aa4a,
        0x5b9c_ca4f,
        0x682e_6ff3,
        0x748f_82ee,
        0x78a5_636f,
        0x84c8_7814,
        0x8cc7_0208,
        0x90be_fffa,
        0xa450_6ceb,
        0xbef9_a3f7,
        0xc671_78f2,
    ];
    let mut state: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    let compress = |state: &mut [u32; 8], block: &[u8]| {
        let mut w = [0u32; 64];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let choice = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(choice)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let majority = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(majority);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (slot, value) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *slot = slot.wrapping_add(value);
        }
    };
    let mut blocks = data.chunks_exact(64);
    for block in blocks.by_ref() {
        compress(&mut state, block);
    }
    let mut tail = blocks.remainder().to_vec();
    tail.push(0x80);
    while tail.len() % 64 != 56 {
        tail.push(0);
    }
    tail.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_be_bytes());
    for block in tail.chunks_exact(64) {
        compress(&mut state, block);
    }
    state.iter().map(|word| format!("{word:08x}")).collect()
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
