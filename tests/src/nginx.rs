//! A throwaway nginx on a loopback port in front of a backend, for tests of
//! the nginx cut-over: the real `nginx` (package nginx-light, installed by
//! `.ci/run`) in the foreground, laid out under a test root as a Debian
//! server's is (`/etc/nginx/nginx.conf` including `sites-enabled/*`, pid,
//! logs and temp folders under the packages' prefix `/usr/share/nginx`), so
//! the tool run with `--root` reads it as it would the server's. Every path
//! in the config is relative: nginx started with `-p ROOT/usr/share/nginx/
//! -c ROOT/etc/nginx/nginx.conf` finds the same files.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::haproxy::http_get;

/// The main config's server path inside a test root.
pub const MAIN_CONFIG: &str = "/etc/nginx/nginx.conf";
/// The site's server path inside a test root.
pub const SITE: &str = "/etc/nginx/sites-enabled/cmw";
/// nginx's prefix's server path inside a test root.
pub const PREFIX: &str = "/usr/share/nginx";

/// The main config: pid, logs and temp folders relative to the prefix.
pub const MAIN_TEXT: &str = "# A throwaway nginx for the cut-over tests.\n\
worker_processes 1;\n\
pid logs/nginx.pid;\n\
error_log logs/error.log;\n\
\n\
events {\n\
    worker_connections 512;\n\
}\n\
\n\
http {\n\
    access_log off;\n\
    # A connection is closed after this many requests (1000 by default): the\n\
    # tests' clients would count that as a failure of the switch.\n\
    keepalive_requests 1000000;\n\
    client_body_temp_path temp/body;\n\
    proxy_temp_path temp/proxy;\n\
    fastcgi_temp_path temp/fastcgi;\n\
    uwsgi_temp_path temp/uwsgi;\n\
    scgi_temp_path temp/scgi;\n\
    include sites-enabled/*;\n\
}\n";

/// The site: the proxy on `port` sends everything to `upstream` (`ADDR:PORT`).
pub fn site_text(port: u16, upstream: &str) -> String {
    format!(
        "# The proxy in front of the platform.\n\
         server {{\n\
         \x20   listen 127.0.0.1:{port};\n\
         \x20   location / {{\n\
         \x20       proxy_pass http://{upstream};   # the old server\n\
         \x20       proxy_http_version 1.1;\n\
         \x20       proxy_set_header Connection \"\";\n\
         \x20   }}\n\
         }}\n"
    )
}

/// A running nginx; stopped when dropped.
#[derive(Debug)]
pub struct TestNginx {
    child: Child,
    /// The site's port on 127.0.0.1.
    pub port: u16,
    root: PathBuf,
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl TestNginx {
    /// Starts nginx with its config under `root`, proxying to
    /// 127.0.0.1:`upstream_port`, and waits until it answers.
    ///
    /// # Errors
    /// When nginx does not start (is the package installed?).
    pub fn start(root: &Path, upstream_port: u16) -> io::Result<TestNginx> {
        TestNginx::start_proxying(root, &format!("127.0.0.1:{upstream_port}"))
    }

    /// Starts nginx proxying to `upstream` (`ADDR:PORT`).
    ///
    /// # Errors
    /// When nginx does not start (is the package installed?).
    pub fn start_proxying(root: &Path, upstream: &str) -> io::Result<TestNginx> {
        let under = |path: &str| root.join(path.trim_start_matches('/'));
        fs::create_dir_all(under("/etc/nginx/sites-enabled"))?;
        fs::create_dir_all(under(PREFIX).join("logs"))?;
        fs::create_dir_all(under(PREFIX).join("temp"))?;
        fs::write(under(MAIN_CONFIG), MAIN_TEXT)?;
        let mut last_error = io::Error::other("not started");
        // A port taken by a parallel test between the probe and the bind: retry on another.
        for _ in 0..5 {
            let port = free_port()?;
            fs::write(under(SITE), site_text(port, upstream))?;
            let mut child = Command::new(nginx_program())
                .arg("-p")
                .arg(format!("{}/", under(PREFIX).display()))
                .arg("-c")
                .arg(under(MAIN_CONFIG))
                .args(["-g", "daemon off;"])
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
                    let log = fs::read_to_string(under(PREFIX).join("logs/error.log"))
                        .unwrap_or_default();
                    last_error =
                        io::Error::other(format!("nginx exited ({status}): {stderr}{log}"));
                    break;
                }
                if http_get(port).is_ok() {
                    return Ok(TestNginx {
                        child,
                        port,
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

    /// The site file on this machine.
    pub fn site_file(&self) -> PathBuf {
        self.root.join(SITE.trim_start_matches('/'))
    }

    /// The main config on this machine.
    pub fn main_file(&self) -> PathBuf {
        self.root.join(MAIN_CONFIG.trim_start_matches('/'))
    }

    /// Asks until every answer of a few fresh requests is `body`, at most
    /// `limit` (a reload takes effect when the new workers run): the last answers.
    pub fn answers_become(&self, body: &str, limit: Duration) -> Vec<String> {
        let started = Instant::now();
        loop {
            let answers: Vec<String> = (0..4)
                .map(|_| http_get(self.port).unwrap_or_else(|error| format!("error: {error}")))
                .collect();
            if answers.iter().all(|answer| answer == body) || started.elapsed() >= limit {
                return answers;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl TestNginx {
    /// The pids of the master's worker processes (from /proc).
    pub fn workers(&self) -> Vec<u32> {
        let master = self.child.id();
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                // `pid (comm) state ppid ...`: the parent is the 2nd field after the comm.
                fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.rsplit_once(") ")
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                        == Some(master)
                })
            })
            .collect()
    }

    /// Waits until every worker of `before` has exited and new ones run (a
    /// reload done), at most `limit`: whether it was.
    pub fn wait_for_new_workers(&self, before: &[u32], limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            let now = self.workers();
            if !now.is_empty() && now.iter().all(|pid| !before.contains(pid)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn nginx_program() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

impl Drop for TestNginx {
    fn drop(&mut self) {
        // The master stops its workers on `-s stop`; a killed master would leave them.
        let prefix = self.root.join(PREFIX.trim_start_matches('/'));
        let _ = Command::new(nginx_program())
            .arg("-p")
            .arg(format!("{}/", prefix.display()))
            .arg("-c")
            .arg(self.main_file())
            .args(["-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
