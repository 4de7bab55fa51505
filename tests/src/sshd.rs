//! A throwaway OpenSSH server on a loopback port, for tests of the ssh executor.
//!
//! It runs Debian's real `sshd` (package openssh-server, installed by `.ci/run`)
//! with its own host key, a fresh client key in `authorized_keys`, no passwords,
//! and a `known_hosts` file holding its host key, so clients check it for real.

use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running sshd; stopped when dropped.
#[derive(Debug)]
pub struct TestSshd {
    dir: tempfile::TempDir,
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
}

fn keygen(path: &Path) -> io::Result<()> {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "cmw-upgrade-test",
            "-f",
        ])
        .arg(path)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other("ssh-keygen failed"))
    }
}

fn sshd_program() -> PathBuf {
    ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("sshd"))
}

impl TestSshd {
    /// Starts sshd on a free loopback port and waits until it accepts connections.
    ///
    /// # Errors
    /// When keys cannot be made or sshd does not start (is openssh-server installed?).
    pub fn start() -> io::Result<TestSshd> {
        TestSshd::start_with("")
    }

    /// Like [`TestSshd::start`], with `extra` lines added to its `sshd_config`
    /// (e.g. `SetEnv PATH=...` to put test programs first on the sessions' PATH).
    ///
    /// # Errors
    /// As [`TestSshd::start`].
    pub fn start_with(extra: &str) -> io::Result<TestSshd> {
        // The port is picked free, then released for sshd: another test may take
        // it in between. Then this sshd exits (its bind fails) while the port
        // still answers — the other test's server — so a start only counts once
        // this sshd itself is seen alive after the port answers.
        let mut last_error = None;
        for _ in 0..5 {
            match TestSshd::try_start(extra) {
                Ok(Some(sshd)) => return Ok(sshd),
                Ok(None) => {}
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::other("sshd exited at start five times (each port taken meanwhile)")
        }))
    }

    /// One start on a fresh port: `None` when sshd exited (its port was taken).
    fn try_start(extra: &str) -> io::Result<Option<TestSshd>> {
        let dir = tempfile::tempdir()?;
        keygen(&dir.path().join("host_key"))?;
        keygen(&dir.path().join("client_key"))?;
        fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )?;
        // sshd refuses to start without its privilege-separation folder.
        fs::create_dir_all("/run/sshd")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nLogLevel ERROR\n\
             MaxSessions 50\n{extra}\n",
            dir = dir.path().display()
        );
        fs::write(dir.path().join("sshd_config"), config)?;
        let host_key = fs::read_to_string(dir.path().join("host_key.pub"))?;
        let mut fields = host_key.split_whitespace();
        let (kind, key) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        fs::write(
            dir.path().join("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )?;
        let child = Command::new(sshd_program())
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut sshd = TestSshd { dir, child, port };
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
                return Err(io::Error::other("sshd did not start listening within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client's private key.
    pub fn identity_file(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// A known_hosts file with the server's host key.
    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// Lets the holder of another client key in too (the public key file of
    /// another [`TestSshd`]'s client), so one key reaches several servers.
    ///
    /// # Errors
    /// When a file cannot be read or written.
    pub fn authorize(&self, public_key: &Path) -> io::Result<()> {
        let key = fs::read_to_string(public_key)?;
        let mut keys = fs::read_to_string(self.dir.path().join("authorized_keys"))?;
        keys.push_str(&key);
        fs::write(self.dir.path().join("authorized_keys"), keys)
    }

    /// `user@127.0.0.1` for the user running the tests.
    pub fn destination(&self) -> String {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".to_owned());
        format!("{user}@127.0.0.1")
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
