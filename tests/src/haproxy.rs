//! A throwaway HAProxy on loopback ports with two tiny HTTP backends, for
//! tests of the cut-over: the real `haproxy` (package haproxy, installed by
//! `.ci/run`) in the foreground, its admin socket and config inside a test
//! root, and a bounded keep-alive load that counts failed requests.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An HTTP/1.1 server on a loopback port answering every request with 200
/// and its name as the body, keep-alive included; stopped when dropped.
#[derive(Debug)]
pub struct TestBackend {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TestBackend {
    /// Starts a backend whose answers say `name`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub fn start(name: &str) -> io::Result<TestBackend> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let body = name.to_owned();
        let stopping = Arc::clone(&stop);
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let body = body.clone();
                std::thread::spawn(move || serve_connection(stream, &body));
            }
        });
        Ok(TestBackend {
            port,
            stop,
            accept: Some(accept),
        })
    }
}

/// Answers requests on one connection until the other side closes it.
fn serve_connection(stream: TcpStream, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut content_length = 0usize;
        let mut first = true;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                if first {
                    continue;
                }
                break;
            }
            first = false;
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut request_body = vec![0; content_length];
        if reader.read_exact(&mut request_body).is_err() {
            return;
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// A running HAProxy with backend `cmw` holding servers `old` (ready) and
/// `new` (`disabled` in the config); stopped when dropped.
#[derive(Debug)]
pub struct TestHaproxy {
    child: Child,
    /// The frontend's port on 127.0.0.1.
    pub port: u16,
    /// The admin socket's server path (under the root).
    pub socket: String,
    /// The config's server path (under the root).
    pub config: String,
    root: PathBuf,
}

/// The config's server path inside a test root.
pub const CONFIG_PATH: &str = "/etc/haproxy/haproxy.cfg";
/// The admin socket's server path inside a test root.
pub const SOCKET_PATH: &str = "/run/haproxy/admin.sock";

/// The test config: checks every 100 ms so a server set ready is UP at once.
pub fn test_config(root: &Path, port: u16, old_port: u16, new_port: u16) -> String {
    format!(
        "# A throwaway HAProxy for the cut-over tests.\n\
         global\n\
         \x20   stats socket {socket} mode 600 level admin\n\
         \n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 2s\n\
         \x20   timeout client 30s   # longer than any test\n\
         \x20   timeout server 30s\n\
         \n\
         frontend fe\n\
         \x20   bind 127.0.0.1:{port}\n\
         \x20   default_backend cmw\n\
         \n\
         backend cmw\n\
         \x20   balance roundrobin\n\
         \x20   server old 127.0.0.1:{old_port} check inter 100ms   # the old server\n\
         \x20   server new 127.0.0.1:{new_port} check inter 100ms disabled\n",
        socket = root.join(SOCKET_PATH.trim_start_matches('/')).display()
    )
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl TestHaproxy {
    /// Starts HAProxy with its config and socket under `root`, in front of
    /// two backends, and waits until it answers through the frontend.
    ///
    /// # Errors
    /// When haproxy does not start (is the package installed?).
    pub fn start(root: &Path, old_port: u16, new_port: u16) -> io::Result<TestHaproxy> {
        let config = root.join(CONFIG_PATH.trim_start_matches('/'));
        let socket = root.join(SOCKET_PATH.trim_start_matches('/'));
        fs::create_dir_all(config.parent().unwrap_or(root))?;
        fs::create_dir_all(socket.parent().unwrap_or(root))?;
        let mut last_error = io::Error::other("not started");
        // A port taken by a parallel test between the probe and the bind: retry on another.
        for _ in 0..5 {
            let port = free_port()?;
            fs::write(&config, test_config(root, port, old_port, new_port))?;
            let _ = fs::remove_file(&socket);
            let mut child = Command::new(haproxy_program())
                .arg("-db")
                .arg("-f")
                .arg(&config)
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
                if socket.exists() && http_get(port).is_ok() {
                    return Ok(TestHaproxy {
                        child,
                        port,
                        socket: SOCKET_PATH.to_owned(),
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
}

fn haproxy_program() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("haproxy"))
}

impl Drop for TestHaproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP client: sends a GET, reads the whole answer.
pub struct HttpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl HttpClient {
    /// Connects to 127.0.0.1:`port`.
    ///
    /// # Errors
    /// When the connection fails.
    pub fn connect(port: u16) -> io::Result<HttpClient> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(HttpClient {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    /// `GET /` on the open connection; the body of a 200 answer.
    ///
    /// # Errors
    /// Any I/O error, or an answer other than 200.
    pub fn get(&mut self) -> io::Result<String> {
        self.writer
            .write_all(b"GET / HTTP/1.1\r\nHost: cmw\r\nConnection: keep-alive\r\n\r\n")?;
        let mut status = String::new();
        if self.reader.read_line(&mut status)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in headers",
                ));
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; content_length];
        self.reader.read_exact(&mut body)?;
        if !status.starts_with("HTTP/1.1 200") {
            return Err(io::Error::other(format!("answered {}", status.trim())));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// One GET on a fresh connection: the body of a 200 answer.
///
/// # Errors
/// Any I/O error, or an answer other than 200.
pub fn http_get(port: u16) -> io::Result<String> {
    HttpClient::connect(port)?.get()
}

/// What a load saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Requests answered 200.
    pub answered: u64,
    /// Requests that failed (a reset, a close, a non-200); none is retried.
    pub failed: u64,
    /// The first few failures, for the assertion message.
    pub errors: Vec<String>,
    /// Answers naming each backend, in order of first appearance.
    pub bodies: Vec<(String, u64)>,
}

/// A load running in the background: `clients` keep-alive clients sending
/// GETs back to back until [`Load::finish`] (or its time limit).
pub struct Load {
    threads: Vec<JoinHandle<LoadReport>>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
}

impl Load {
    /// Starts the load against 127.0.0.1:`port`; it stops by itself after
    /// `limit`, so a test that never finishes it still ends.
    pub fn start(port: u16, clients: usize, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let answered = Arc::clone(&answered);
                std::thread::spawn(move || {
                    let deadline = Instant::now() + limit;
                    let mut report = LoadReport::default();
                    let mut client = None;
                    while Instant::now() < deadline {
                        // Read before the request: the last request of each
                        // client starts after `finish` was called.
                        let last = stop.load(Ordering::SeqCst);
                        let result = match client.as_mut() {
                            Some(client) => HttpClient::get(client),
                            None => HttpClient::connect(port).and_then(|mut fresh| {
                                let body = fresh.get();
                                client = Some(fresh);
                                body
                            }),
                        };
                        match result {
                            Ok(body) => {
                                report.answered += 1;
                                answered.fetch_add(1, Ordering::SeqCst);
                                match report.bodies.iter_mut().find(|(seen, _)| *seen == body) {
                                    Some((_, count)) => *count += 1,
                                    None => report.bodies.push((body, 1)),
                                }
                            }
                            Err(error) => {
                                report.failed += 1;
                                if report.errors.len() < 5 {
                                    report.errors.push(error.to_string());
                                }
                                // A client that never retries: the next request
                                // goes on a new connection.
                                client = None;
                            }
                        }
                        if last {
                            break;
                        }
                    }
                    report
                })
            })
            .collect();
        Load {
            threads,
            stop,
            answered,
        }
    }

    /// Waits until the clients have had `count` answers (the load is
    /// really running), at most the load's own limit.
    pub fn wait_for_answers(&self, count: u64) {
        while self.answered.load(Ordering::SeqCst) < count
            && self.threads.iter().any(|thread| !thread.is_finished())
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the load (each client sends one more request, started now)
    /// and sums what every client saw.
    pub fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = LoadReport::default();
        for thread in self.threads {
            let report = thread.join().unwrap_or_else(|_| LoadReport {
                failed: 1,
                errors: vec!["a load thread panicked".to_owned()],
                ..LoadReport::default()
            });
            total.answered += report.answered;
            total.failed += report.failed;
            total.errors.extend(report.errors);
            for (body, count) in report.bodies {
                match total.bodies.iter_mut().find(|(seen, _)| *seen == body) {
                    Some((_, seen_count)) => *seen_count += count,
                    None => total.bodies.push((body, count)),
                }
            }
        }
        total
    }
}
