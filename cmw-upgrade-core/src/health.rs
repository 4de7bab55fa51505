//! The smoke check: the site answers `GET /api/health` with 200 and the
//! heartbeat logs hold no error record.

// Reads this server's heartbeat logs, as the log scanner does.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::instance::InstanceName;
use crate::logs::scan::scan_log_file;

/// What a smoke check saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The URL asked.
    pub url: String,
    /// Its HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it did not answer.
    pub unreachable: Option<String>,
    /// Error records in the heartbeat logs (first lines).
    pub heartbeat_errors: Vec<String>,
    /// How many heartbeat logs were scanned: none found is not healthy (the
    /// instance has not written one, or the log folder is another).
    #[serde(default)]
    pub heartbeat_logs: u64,
    /// The log folder scanned (a path under the root).
    #[serde(default)]
    pub log_dir: String,
    /// 200, at least one heartbeat log, and no error in them.
    pub ok: bool,
}

/// `GET url` and a scan of the instance's `heartbeat*` logs for errors.
///
/// # Errors
/// [`Error::BadRequest`] for a URL that is not `http://`; [`Error::Io`] when
/// a heartbeat log cannot be read. An unreachable URL is a report, not an error.
pub fn smoke_check(root: &Path, instance: &InstanceName, url: &str) -> Result<CheckReport> {
    if !url.starts_with("http://") {
        return Err(Error::BadRequest {
            details: format!(
                "{url}: only http:// URLs can be checked; give the site's plain-HTTP address \
                 (e.g. http://127.0.0.1/api/health)"
            ),
        });
    }
    let (status, unreachable) = match http_get_status(url, Duration::from_secs(5)) {
        Ok(status) => (Some(status), None),
        Err(reason) => (None, Some(reason)),
    };
    let log_dir = Disk::new(root).log_dir(instance)?.path;
    let mut heartbeat_errors = Vec::new();
    let mut heartbeat_logs = 0;
    if let Ok(listing) = std::fs::read_dir(&log_dir) {
        let mut names: Vec<String> = listing
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("heartbeat"))
            .collect();
        names.sort();
        heartbeat_logs = names.len() as u64;
        for name in names {
            let scanner = scan_log_file(&log_dir.join(&name), &name)?;
            heartbeat_errors.extend(
                scanner
                    .errors()
                    .iter()
                    .map(|error| format!("{name}:{}: {}", error.line, error.message)),
            );
        }
    }
    let ok = status == Some(200) && heartbeat_logs > 0 && heartbeat_errors.is_empty();
    Ok(CheckReport {
        url: url.to_owned(),
        status,
        unreachable,
        heartbeat_errors,
        heartbeat_logs,
        log_dir: log_dir.to_string_lossy().into_owned(),
        ok,
    })
}

/// The status code of `GET url` (plain `http://` only), or why there is none.
///
/// # Errors
/// A text saying why the server did not answer.
pub fn http_get_status(url: &str, timeout: Duration) -> std::result::Result<u16, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url}: only http:// URLs can be checked; give the backend's plain-HTTP address")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let socket = address
        .to_socket_addrs()
        .map_err(|error| format!("{address}: {error}"))?
        .next()
        .ok_or_else(|| format!("{address}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&socket, timeout)
        .map_err(|error| format!("{address}: {error}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let host = authority.split(':').next().unwrap_or(authority);
    // One write: `write!` on an unbuffered stream sends each piece as its own
    // segment, and some servers read only the first.
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: cmw-upgrade\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|error| format!("{address}: {error}"))?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let read = stream
            .read(&mut buffer)
            .map_err(|error| format!("{address}: {error}"))?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| format!("{address}: not an HTTP answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_status_of_a_tiny_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let read = stream.read(&mut buffer).unwrap();
                assert!(read > 0, "the request ends with an empty line");
                request.extend_from_slice(&buffer[..read]);
            }
            assert!(request.starts_with(b"GET /api/health HTTP/1.0\r\n"));
            stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
                .unwrap();
        });
        let url = format!("http://127.0.0.1:{port}/api/health");
        assert_eq!(http_get_status(&url, Duration::from_secs(5)), Ok(503));
        server.join().unwrap();
        assert!(http_get_status("https://x/", Duration::from_secs(1)).is_err());
        assert!(http_get_status(&url, Duration::from_secs(1)).is_err());
    }
}
