//! The built-in probe: N keep-alive HTTP/1.1 clients sending GETs back to
//! back through the switch, from this machine (the control point, where the
//! admin's clients are, not a server the executor reaches), so the report
//! says what a client saw: requests, failures, p50/p95 latency before and
//! after, and when the first answer came from the new server.
//!
//! A client never retries: a reset, a close in the middle of an answer or a
//! status other than 2xx/3xx counts as failed, and the next request goes on
//! a new connection. An answer with `Connection: close` is not a failure
//! (the server said so before closing); the next request reconnects.
//!
//! Which server answered: the header `--probe-server-header` names (the
//! proxy or the site adds it), else the body's first line.
//! The numbers are computed by pure functions ([`summarize`], [`percentile`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where the probe sends its GETs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrl {
    /// Host as written (the `Host` header).
    pub host: String,
    /// Port (80 when not written).
    pub port: u16,
    /// Path and query (`/` when not written).
    pub path: String,
}

impl ProbeUrl {
    /// Parses `http://HOST[:PORT][/PATH]`.
    ///
    /// # Errors
    /// [`Error::BadInput`] for anything else (https included: the probe speaks plain HTTP).
    pub fn parse(url: &str) -> Result<ProbeUrl> {
        let bad = |why: &str| Error::BadInput {
            details: format!("probe URL {url:?}: {why}; write http://HOST[:PORT]/PATH"),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// is probed (the proxy's plain HTTP side)"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("no host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                match port.parse::<u16>() {
                    Ok(port) => (host, port),
                    Err(_) if authority.starts_with('[') && authority.ends_with(']') => {
                        (authority, 80)
                    }
                    Err(_) => return Err(bad("the port is not a number")),
                }
            }
            _ => (authority, 80),
        };
        Ok(ProbeUrl {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    fn address(&self) -> Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.next())
            .ok_or_else(|| Error::BadInput {
                details: format!("probe URL host {} does not resolve", self.host),
            })
    }
}

/// One request the probe sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When it was sent, in ms since the probe started.
    pub sent_ms: f64,
    /// How long the answer took, in ms.
    pub latency_ms: f64,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Which server answered (see the module's documentation).
    pub server: Option<String>,
}

/// What the probe saw through a switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The URL probed.
    pub url: String,
    /// The clients (keep-alive connections).
    pub clients: usize,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (none is retried).
    pub failed: u64,
    /// Latency before the switch began, median.
    pub p50_ms_before: f64,
    /// Latency before the switch began, 95th percentile.
    pub p95_ms_before: f64,
    /// Latency after the switch ended, median.
    pub p50_ms_after: f64,
    /// Latency after the switch ended, 95th percentile.
    pub p95_ms_after: f64,
    /// The first answer from a server not seen before the switch, in ms
    /// after the switch began (`None`: traffic did not move).
    pub moved_after_ms: Option<u64>,
    /// How long the switch took, in ms.
    pub switch_ms: u64,
    /// The servers that answered before the switch.
    pub servers_before: Vec<String>,
    /// The servers that answered after it.
    pub servers_after: Vec<String>,
    /// The first few failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The `p`th percentile (0-100) of sorted values, nearest rank; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn rounded(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

fn latencies(samples: &[&Sample]) -> Vec<f64> {
    let mut values: Vec<f64> = samples
        .iter()
        .filter(|sample| sample.error.is_none())
        .map(|sample| sample.latency_ms)
        .collect();
    values.sort_by(f64::total_cmp);
    values
}

fn servers(samples: &[&Sample]) -> Vec<String> {
    let mut names: Vec<String> = samples
        .iter()
        .filter_map(|sample| sample.server.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The report from the samples and when the switch began and ended (ms
/// since the probe started). Pure.
pub fn summarize(
    url: &str,
    clients: usize,
    samples: &[Sample],
    switch_began_ms: f64,
    switch_ended_ms: f64,
) -> ProbeReport {
    let before: Vec<&Sample> = samples
        .iter()
        .filter(|sample| sample.sent_ms + sample.latency_ms <= switch_began_ms)
        .collect();
    let after: Vec<&Sample> = samples
        .iter()
        .filter(|sample| sample.sent_ms >= switch_ended_ms)
        .collect();
    let seen_before = servers(&before);
    let moved_after_ms = samples
        .iter()
        .filter(|sample| sample.sent_ms + sample.latency_ms > switch_began_ms)
        .filter(|sample| {
            sample
                .server
                .as_ref()
                .is_some_and(|server| !seen_before.contains(server))
        })
        .map(|sample| sample.sent_ms + sample.latency_ms - switch_began_ms)
        .min_by(f64::total_cmp)
        .map(|ms| ms.max(0.0).round() as u64);
    let (sorted_before, sorted_after) = (latencies(&before), latencies(&after));
    ProbeReport {
        url: url.to_owned(),
        clients,
        requests: samples.len() as u64,
        failed: samples
            .iter()
            .filter(|sample| sample.error.is_some())
            .count() as u64,
        p50_ms_before: rounded(percentile(&sorted_before, 50.0)),
        p95_ms_before: rounded(percentile(&sorted_before, 95.0)),
        p50_ms_after: rounded(percentile(&sorted_after, 50.0)),
        p95_ms_after: rounded(percentile(&sorted_after, 95.0)),
        moved_after_ms,
        switch_ms: (switch_ended_ms - switch_began_ms).max(0.0).round() as u64,
        servers_before: seen_before,
        servers_after: servers(&after),
        errors: samples
            .iter()
            .filter_map(|sample| sample.error.clone())
            .take(5)
            .collect(),
    }
}

/// What one answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The server, from the header or the body.
    pub server: Option<String>,
    /// Whether the server closes the connection after it.
    pub closes: bool,
}

/// One keep-alive connection.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// How long one request may take before it counts as failed.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

impl Connection {
    fn open(address: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&address, REQUEST_LIMIT)?;
        stream.set_read_timeout(Some(REQUEST_LIMIT))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    fn get(&mut self, url: &ProbeUrl, server_header: Option<&str>) -> std::io::Result<Answer> {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cmw-upgrade-probe\r\nConnection: keep-alive\r\n\r\n",
            url.path, url.host
        );
        self.writer.write_all(request.as_bytes())?;
        read_answer(&mut self.reader, server_header)
    }
}

fn closed(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what.to_owned())
}

/// Reads one HTTP/1.1 answer (Content-Length, chunked, or until close).
fn read_answer(reader: &mut impl BufRead, server_header: Option<&str>) -> std::io::Result<Answer> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(closed("closed before the answer"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {:?}", line.trim())))?;
    let (mut length, mut chunked, mut closes, mut server) = (None, false, false, None);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(closed("closed in the headers"));
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<u64>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            closes = value.eq_ignore_ascii_case("close");
        }
        if server_header.is_some_and(|wanted| name.eq_ignore_ascii_case(wanted)) {
            server = Some(value.to_owned());
        }
    }
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(closed("closed in a chunk"));
            }
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("a bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; usize::try_from(size).unwrap_or(usize::MAX)];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..chunk.len().min(256)]);
            let mut end = [0; 2];
            reader.read_exact(&mut end)?;
        }
        body
    } else if let Some(length) = length {
        let mut body = Vec::new();
        reader.take(length).read_to_end(&mut body)?;
        if (body.len() as u64) < length {
            return Err(closed("closed in the body"));
        }
        body
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else {
        closes = true;
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        body
    };
    if server_header.is_none() || server.is_none() {
        let text = String::from_utf8_lossy(&body);
        let first = text.lines().next().unwrap_or("").trim();
        if server.is_none() && !first.is_empty() {
            server = Some(first.chars().take(64).collect());
        }
    }
    Ok(Answer {
        status,
        server,
        closes,
    })
}

/// The probe while it runs.
pub struct Probe {
    url: String,
    clients: usize,
    started: Instant,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Vec<Sample>>>,
    switch: Mutex<(f64, f64)>,
}

impl Probe {
    /// Starts `clients` clients sending GETs to `url` back to back; each
    /// stops by itself after `limit` (a probe nobody finishes still ends).
    ///
    /// # Errors
    /// [`Error::BadInput`] for a URL that does not parse or resolve;
    /// [`Error::CheckFailed`] when the first GET fails (nothing was switched yet).
    pub fn start(
        url: &str,
        clients: usize,
        server_header: Option<String>,
        limit: Duration,
    ) -> Result<Probe> {
        let parsed = ProbeUrl::parse(url)?;
        let address = parsed.address()?;
        // One GET first: a probe that fails from the start measures nothing.
        Connection::open(address)
            .and_then(|mut connection| connection.get(&parsed, server_header.as_deref()))
            .map_err(|error| error.to_string())
            .and_then(|answer| {
                if answer.status < 400 {
                    Ok(())
                } else {
                    Err(format!("answered {}", answer.status))
                }
            })
            .map_err(|details| Error::CheckFailed {
                what: format!("the probe's first GET {url}"),
                details: format!(
                    "{details}; nothing was switched: give a URL through the proxy that answers now"
                ),
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let threads = (0..clients.max(1))
            .map(|_| {
                let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
                let (parsed, header) = (parsed.clone(), server_header.clone());
                std::thread::spawn(move || {
                    client(
                        address,
                        &parsed,
                        header.as_deref(),
                        started,
                        limit,
                        &stop,
                        &answered,
                    )
                })
            })
            .collect();
        Ok(Probe {
            url: url.to_owned(),
            clients: clients.max(1),
            started,
            stop,
            answered,
            threads,
            switch: Mutex::new((0.0, 0.0)),
        })
    }

    /// Waits until `count` answers came (or `limit` passed).
    pub fn wait_for_answers(&self, count: u64, limit: Duration) {
        let until = Instant::now() + limit;
        while self.answered.load(Ordering::SeqCst) < count && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn now_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Stops the clients and sums up.
    pub fn finish(self) -> ProbeReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut samples = Vec::new();
        for thread in self.threads {
            match thread.join() {
                Ok(mut each) => samples.append(&mut each),
                Err(_) => samples.push(Sample {
                    sent_ms: 0.0,
                    latency_ms: 0.0,
                    error: Some("a probe client panicked".to_owned()),
                    server: None,
                }),
            }
        }
        samples.sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
        let (began, ended) = *self
            .switch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        summarize(&self.url, self.clients, &samples, began, ended)
    }
}

fn client(
    address: SocketAddr,
    url: &ProbeUrl,
    header: Option<&str>,
    started: Instant,
    limit: Duration,
    stop: &AtomicBool,
    answered: &AtomicU64,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut connection: Option<Connection> = None;
    while started.elapsed() < limit && !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        let result = match connection.as_mut() {
            Some(open) => open.get(url, header),
            None => Connection::open(address).and_then(|mut fresh| {
                let answer = fresh.get(url, header);
                connection = Some(fresh);
                answer
            }),
        };
        let latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
        let sent_ms = sent.duration_since(started).as_secs_f64() * 1000.0;
        let (error, server) = match result {
            Ok(answer) if answer.status < 400 => {
                if answer.closes {
                    connection = None;
                }
                answered.fetch_add(1, Ordering::SeqCst);
                (None, answer.server)
            }
            Ok(answer) => {
                connection = None;
                (Some(format!("answered {}", answer.status)), answer.server)
            }
            Err(error) => {
                // Never retried: the next request goes on a new connection.
                connection = None;
                (Some(error.to_string()), None)
            }
        };
        samples.push(Sample {
            sent_ms,
            latency_ms,
            error,
            server,
        });
    }
    samples
}

/// How the probe runs through a switch.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// `http://HOST[:PORT]/PATH` through the proxy.
    pub url: String,
    /// Keep-alive clients.
    pub clients: usize,
    /// The header naming the server that answered (else the body's first line).
    pub server_header: Option<String>,
    /// How long the probe runs before and after the switch.
    pub settle: Duration,
}

/// Runs `switch` with the probe running before, during and after it.
///
/// # Errors
/// The probe's start errors (nothing switched); the switch's own error.
pub fn through_switch<T>(
    options: &ProbeOptions,
    switch: impl FnOnce() -> Result<T>,
) -> Result<(T, ProbeReport)> {
    // Bounded: the switch's own limits (drain, up) plus the settling on both sides.
    let limit = Duration::from_secs(600);
    let probe = Probe::start(
        &options.url,
        options.clients,
        options.server_header.clone(),
        limit,
    )?;
    probe.wait_for_answers(options.clients as u64 * 20, options.settle);
    std::thread::sleep(options.settle / 2);
    let began = probe.now_ms();
    let result = switch();
    let ended = probe.now_ms();
    if let Ok(mut switch) = probe.switch.lock() {
        *switch = (began, ended);
    }
    if result.is_ok() {
        std::thread::sleep(options.settle);
    }
    let report = probe.finish();
    Ok((result?, report))
}

/// Latency of one URL over `requests` GETs on one keep-alive connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// The URL.
    pub url: String,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
}

/// Sends `requests` GETs to `url`, one after the other, and measures them.
///
/// # Errors
/// [`Error::BadInput`] for a URL that does not parse or resolve.
pub fn measure(url: &str, requests: u64) -> Result<Latency> {
    let parsed = ProbeUrl::parse(url)?;
    let address = parsed.address()?;
    let mut connection: Option<Connection> = None;
    let mut values = Vec::new();
    let mut failed = 0;
    for _ in 0..requests {
        let sent = Instant::now();
        let result = match connection.as_mut() {
            Some(open) => open.get(&parsed, None),
            None => Connection::open(address).and_then(|mut fresh| {
                let answer = fresh.get(&parsed, None);
                connection = Some(fresh);
                answer
            }),
        };
        match result {
            Ok(answer) if answer.status < 400 => {
                values.push(sent.elapsed().as_secs_f64() * 1000.0);
                if answer.closes {
                    connection = None;
                }
            }
            _ => {
                failed += 1;
                connection = None;
            }
        }
    }
    values.sort_by(f64::total_cmp);
    Ok(Latency {
        url: url.to_owned(),
        requests,
        failed,
        p50_ms: rounded(percentile(&values, 50.0)),
        p95_ms: rounded(percentile(&values, 95.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sent_ms: f64, latency_ms: f64, server: &str, failed: bool) -> Sample {
        Sample {
            sent_ms,
            latency_ms,
            error: failed.then(|| "reset".to_owned()),
            server: (!failed).then(|| server.to_owned()),
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 95.0), 95.0);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn before_after_and_when_traffic_moved() {
        let samples = vec![
            sample(0.0, 1.0, "old", false),
            sample(2.0, 3.0, "old", false),
            sample(99.0, 2.0, "old", false), // answered after the switch began
            sample(120.0, 5.0, "new", false),
            sample(130.0, 1.0, "old", true),
            sample(300.0, 4.0, "new", false),
            sample(310.0, 6.0, "new", false),
        ];
        let report = summarize("http://x/", 2, &samples, 100.0, 200.0);
        assert_eq!(report.requests, 7);
        assert_eq!(report.failed, 1);
        assert_eq!(report.p50_ms_before, 1.0);
        assert_eq!(report.p95_ms_before, 3.0);
        assert_eq!(report.p50_ms_after, 4.0);
        assert_eq!(report.p95_ms_after, 6.0);
        assert_eq!(report.moved_after_ms, Some(25));
        assert_eq!(report.switch_ms, 100);
        assert_eq!(report.servers_before, ["old"]);
        assert_eq!(report.servers_after, ["new"]);
        assert_eq!(report.errors, ["reset"]);
    }

    #[test]
    fn urls() {
        assert_eq!(
            ProbeUrl::parse("http://127.0.0.1:8080/api/health?x=1").unwrap(),
            ProbeUrl {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/api/health?x=1".into()
            }
        );
        assert_eq!(ProbeUrl::parse("http://cmw").unwrap().path, "/");
        assert_eq!(ProbeUrl::parse("http://[::1]:81/").unwrap().host, "::1");
        assert!(ProbeUrl::parse("https://cmw/").is_err());
        assert!(ProbeUrl::parse("http://cmw:x/").is_err());
    }

    #[test]
    fn answers_of_each_kind() {
        let read = |text: &str, header: Option<&str>| {
            read_answer(&mut BufReader::new(text.as_bytes()), header).unwrap()
        };
        let answer = read(
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Served-By: b2\r\n\r\nnew\n",
            Some("x-served-by"),
        );
        assert_eq!(answer.server.as_deref(), Some("b2"));
        assert!(!answer.closes);
        let answer = read(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nold\r\n0\r\n\r\n",
            None,
        );
        assert_eq!(answer.server.as_deref(), Some("old"));
        assert!(answer.closes);
        assert_eq!(
            read("HTTP/1.1 503 x\r\nContent-Length: 0\r\n\r\n", None).status,
            503
        );
        assert!(read_answer(
            &mut BufReader::new("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab".as_bytes()),
            None
        )
        .is_err());
    }
}
