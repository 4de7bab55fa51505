//! A throwaway OpenSSH server on a loopback port, for tests of the ssh executor:
//! the simulator's [`SimSshd`](cmw_upgrade_sim::sshd::SimSshd) (which
//! `demo --over-ssh` uses too) in a temporary folder of its own.
//!
//! It runs Debian's real `sshd` (package openssh-server, installed by `.ci/run`)
//! with its own host key, a fresh client key in `authorized_keys`, no passwords,
//! and a `known_hosts` file holding its host key, so clients check it for real.

use std::io;
use std::path::{Path, PathBuf};

use cmw_upgrade_sim::sshd::SimSshd;

/// A running sshd; stopped, and its folder removed, when dropped.
#[derive(Debug)]
pub struct TestSshd {
    // Dropped first: the server stops before its folder goes.
    sshd: SimSshd,
    _dir: tempfile::TempDir,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
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
        let dir = tempfile::tempdir()?;
        let sshd = SimSshd::start(dir.path(), extra)?;
        Ok(TestSshd {
            port: sshd.port,
            sshd,
            _dir: dir,
        })
    }

    /// The client's private key.
    pub fn identity_file(&self) -> PathBuf {
        self.sshd.identity_file()
    }

    /// A known_hosts file with the server's host key.
    pub fn known_hosts_file(&self) -> PathBuf {
        self.sshd.known_hosts_file()
    }

    /// Lets the holder of another client key in too (the public key file of
    /// another [`TestSshd`]'s client), so one key reaches several servers.
    ///
    /// # Errors
    /// When a file cannot be read or written.
    pub fn authorize(&self, public_key: &Path) -> io::Result<()> {
        self.sshd.authorize(public_key)
    }

    /// `user@127.0.0.1` for the user running the tests.
    pub fn destination(&self) -> String {
        self.sshd.destination()
    }
}
