//! A throwaway master-worker HAProxy (`haproxy -W -db -S master.sock`) on a
//! loopback port, for the tests that reload it: the master keeps the
//! listening sockets across reloads and hands them to the new worker.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::haproxy::{http_get, CONFIG_PATH, SOCKET_PATH};

/// The master CLI socket's server path inside a test root.
pub const MASTER_SOCKET_PATH: &str = "/run/haproxy/master.sock";

/// A running master-worker HAProxy; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct TestHaproxyMaster {
    child: Child,
    /// The frontend's port on 127.0.0.1.
    pub port: u16,
    /// The admin socket's server path.
    pub socket: String,
    /// The master CLI socket's server path.
    pub master_socket: String,
    /// The config's server path.
    pub config: String,
    root: PathBuf,
}

impl TestHaproxyMaster {
    /// Starts HAProxy on the config `config(root, port)` writes, and waits
    /// until it answers through the frontend on `port`.
    ///
    /// # Errors
    /// When haproxy does not start (is the package installed?).
    pub fn start(root: &Path, config: impl Fn(&Path, u16) -> String) -> io::Result<Self> {
        let config_file = root.join(CONFIG_PATH.trim_start_matches('/'));
        let socket = root.join(SOCKET_PATH.trim_start_matches('/'));
        let master = root.join(MASTER_SOCKET_PATH.trim_start_matches('/'));
        fs::create_dir_all(config_file.parent().unwrap_or(root))?;
        fs::create_dir_all(socket.parent().unwrap_or(root))?;
        let mut last_error = io::Error::other("not started");
        // A port taken by a parallel test between the probe and the bind: retry on another.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            fs::write(&config_file, config(root, port))?;
            let _ = fs::remove_file(&socket);
            let _ = fs::remove_file(&master);
            let mut child = Command::new("haproxy")
                .arg("-W")
                .arg("-db")
                .arg("-S")
                .arg(&master)
                .arg("-f")
                .arg(&config_file)
                // As systemd starts it (in `/`): relative paths in the config are the root's.
                .current_dir(root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Some(status) = child.try_wait()? {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = pipe.read_to_string(&mut stderr);
                    }
                    last_error = io::Error::other(format!("haproxy exited ({status}): {stderr}"));
                    break;
                }
                if socket.exists() && master.exists() && http_get(port).is_ok() {
                    // The master logs every reload; nobody reads the pipe, so it must not fill.
                    if let Some(mut pipe) = child.stderr.take() {
                        std::thread::spawn(move || {
                            let _ = io::copy(&mut pipe, &mut io::sink());
                        });
                    }
                    return Ok(TestHaproxyMaster {
                        child,
                        port,
                        socket: SOCKET_PATH.to_owned(),
                        master_socket: MASTER_SOCKET_PATH.to_owned(),
                        config: CONFIG_PATH.to_owned(),
                        root: root.to_path_buf(),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(last_error)
    }

    /// The config file on this machine.
    pub fn config_file(&self) -> PathBuf {
        self.root.join(CONFIG_PATH.trim_start_matches('/'))
    }

    /// The master's process id (`kill -USR2` reloads it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The master CLI socket on this machine.
    pub fn master_socket_file(&self) -> PathBuf {
        self.root.join(MASTER_SOCKET_PATH.trim_start_matches('/'))
    }
}

impl Drop for TestHaproxyMaster {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would leave them).
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
