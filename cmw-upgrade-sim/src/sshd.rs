//! A throwaway OpenSSH server on a loopback port: each simulated server of
//! `cmw-upgrade demo --over-ssh` sits behind one, and the ssh tests use it too.
//!
//! It runs the system's real `sshd` (package openssh-server) with its own
//! host key, a fresh client key in `authorized_keys`, no passwords, for the
//! user running it, and a `known_hosts` file holding its host key, so
//! clients check it for real. Its files are kept in a folder the caller
//! gives; it is stopped when dropped.

use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running sshd; stopped when dropped (its folder stays).
#[derive(Debug)]
pub struct SimSshd {
    dir: PathBuf,
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
}

/// The error for a program of OpenSSH that is not installed.
fn not_installed(program: &str, package: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{program} is not installed: install {package} (apt-get install {package}, \
             or dnf install {package})"
        ),
    )
}

/// Makes an ed25519 key pair without a passphrase: `path` and `path.pub`.
///
/// # Errors
/// When `ssh-keygen` is missing (openssh-client) or fails.
pub fn keygen(path: &Path, comment: &str) -> io::Result<()> {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => not_installed("ssh-keygen", "openssh-client"),
            _ => error,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ssh-keygen -f {} failed ({}): {}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The sshd program: an absolute path, as sshd needs to re-execute itself.
///
/// # Errors
/// When it is not installed (openssh-server).
pub fn sshd_program() -> io::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]
        .into_iter()
        .chain(on_path)
        .filter(|folder| folder.is_absolute())
        .map(|folder| folder.join("sshd"))
        .find(|path| path.is_file())
        .ok_or_else(|| not_installed("sshd", "openssh-server"))
}

/// The user running this process, whom the server lets in.
pub fn current_user() -> String {
    if let Some(user) = std::env::var("USER").ok().filter(|user| !user.is_empty()) {
        return user;
    }
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "root".to_owned())
}

impl SimSshd {
    /// Starts sshd on a free loopback port, its keys and config in `dir`
    /// (created; new or empty), and waits until it accepts connections.
    /// `extra` lines are added to its `sshd_config` (e.g. `SetEnv PATH=...`
    /// to put the simulator's stand-ins first on the sessions' PATH).
    ///
    /// # Errors
    /// When sshd or ssh-keygen is not installed (the message names the
    /// package), keys cannot be made, or sshd does not start.
    pub fn start(dir: &Path, extra: &str) -> io::Result<SimSshd> {
        let program = sshd_program()?;
        fs::create_dir_all(dir)?;
        let dir = fs::canonicalize(dir)?;
        keygen(&dir.join("host_key"), "cmw-upgrade-sim host")?;
        keygen(&dir.join("client_key"), "cmw-upgrade-sim client")?;
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
        // sshd refuses to start without its privilege-separation folder (only
        // root can make it; another user's sshd says so itself).
        let _ = fs::create_dir_all("/run/sshd");
        // The port is picked free, then released for sshd: another process may
        // take it in between. Then this sshd exits (its bind fails) while the
        // port still answers — the other one's server — so a start only counts
        // once this sshd itself is seen alive after the port answers.
        for _ in 0..5 {
            if let Some(sshd) = SimSshd::try_start(&program, &dir, extra)? {
                return Ok(sshd);
            }
        }
        Err(io::Error::other(format!(
            "sshd exited at start five times (each port taken meanwhile, or see {})",
            dir.join("sshd.log").display()
        )))
    }

    /// One start on a fresh port: `None` when sshd exited (its port was taken).
    fn try_start(program: &Path, dir: &Path, extra: &str) -> io::Result<Option<SimSshd>> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nLogLevel ERROR\n\
             MaxSessions 50\n{extra}\n",
            dir = dir.display()
        );
        fs::write(dir.join("sshd_config"), config)?;
        let host_key = fs::read_to_string(dir.join("host_key.pub"))?;
        let mut fields = host_key.split_whitespace();
        let (kind, key) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )?;
        let log = fs::File::create(dir.join("sshd.log"))?;
        let child = Command::new(program)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let mut sshd = SimSshd {
            dir: dir.to_path_buf(),
            child,
            port,
        };
        let started = Instant::now();
        loop {
            if sshd.child.try_wait()?.is_some() {
                return Ok(None);
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // Alive after the port answered: the port is this sshd's.
                std::thread::sleep(Duration::from_millis(50));
                if sshd.child.try_wait()?.is_some() {
                    return Ok(None);
                }
                return Ok(Some(sshd));
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::other(format!(
                    "sshd did not start listening within 10 s (see {})",
                    dir.join("sshd.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The folder holding its keys, config and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The private key of the client it lets in.
    pub fn identity_file(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    /// A known_hosts file with the server's host key.
    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Lets the holder of another client key in too (a public key file), so
    /// one key reaches several servers.
    ///
    /// # Errors
    /// When a file cannot be read or written.
    pub fn authorize(&self, public_key: &Path) -> io::Result<()> {
        let key = fs::read_to_string(public_key)?;
        let mut keys = fs::read_to_string(self.dir.join("authorized_keys"))?;
        keys.push_str(&key);
        fs::write(self.dir.join("authorized_keys"), keys)
    }

    /// `user@127.0.0.1` for the user running this process.
    pub fn destination(&self) -> String {
        format!("{}@127.0.0.1", current_user())
    }
}

impl Drop for SimSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_its_package() {
        let error = not_installed("sshd", "openssh-server");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(error.to_string().contains("install openssh-server"));
    }
}
