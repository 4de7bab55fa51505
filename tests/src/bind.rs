//! A throwaway BIND on a loopback port, for tests of the dns cut-over: the
//! real `named` (package bind9, installed by `.ci/run`) in the foreground with
//! one zone, `example.test.`, in a temporary folder; keys made by
//! `tsig-keygen`: one allowed to update the zone, one the server knows but
//! does not allow, one with the right name and a wrong secret. Unsigned
//! updates are refused (`update-policy` grants only the key). `dig` (package
//! bind9-dnsutils) reads the records back.

use std::fs;
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The zone every test server holds.
pub const ZONE: &str = "example.test.";
/// The name the cut-over moves.
pub const NAME: &str = "cmw.example.test.";
/// The old server's address (A).
pub const OLD: &str = "192.0.2.10";
/// The new server's address (A).
pub const NEW: &str = "192.0.2.20";
/// The name's AAAA record (untouched by an IPv4 swap but for its TTL).
pub const OLD_V6: &str = "2001:db8::10";
/// The key allowed to update the zone.
pub const KEY_NAME: &str = "cmw-upgrade";

/// A running `named`; stopped when dropped.
#[derive(Debug)]
pub struct TestBind {
    child: Child,
    /// The port on 127.0.0.1 (UDP and TCP).
    pub port: u16,
    /// The key allowed to update the zone (BIND's key format).
    pub key_file: PathBuf,
    /// A key with the allowed key's name and another secret.
    pub wrong_key_file: PathBuf,
    /// A key the server knows but does not allow to update the zone.
    pub other_key_file: PathBuf,
    dir: PathBuf,
}

fn program(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A fresh key from `tsig-keygen`.
fn keygen(name: &str) -> io::Result<String> {
    let output = Command::new(program("tsig-keygen"))
        .args(["-a", "hmac-sha256", name])
        .output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "tsig-keygen failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    String::from_utf8(output.stdout).map_err(io::Error::other)
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The zone file: the name has an A and an AAAA record with `ttl`; the NS
/// host is in the zone, at 127.0.0.1.
pub fn zone_file(ttl: u32) -> String {
    format!(
        "$TTL 300\n\
         @    IN SOA ns1.example.test. hostmaster.example.test. ( 1 3600 600 86400 60 )\n\
         @    IN NS  ns1.example.test.\n\
         ns1  IN A   127.0.0.1\n\
         cmw  {ttl} IN A    {OLD}\n\
         cmw  {ttl} IN AAAA {OLD_V6}\n\
         other 300 IN A 192.0.2.99\n"
    )
}

fn named_conf(dir: &Path, port: u16, keys: &str) -> String {
    let dir = dir.display();
    format!(
        "options {{\n\
         \x20   directory \"{dir}\";\n\
         \x20   listen-on port {port} {{ 127.0.0.1; }};\n\
         \x20   listen-on-v6 {{ none; }};\n\
         \x20   pid-file none;\n\
         \x20   session-keyfile \"{dir}/session.key\";\n\
         \x20   managed-keys-directory \"{dir}\";\n\
         \x20   recursion no;\n\
         \x20   dnssec-validation no;\n\
         \x20   notify no;\n\
         }};\n\
         controls {{ }};\n\
         {keys}\n\
         zone \"example.test\" {{\n\
         \x20   type primary;\n\
         \x20   file \"{dir}/example.test.zone\";\n\
         \x20   // Only the cmw-upgrade key may change it: unsigned updates are refused.\n\
         \x20   update-policy {{ grant {KEY_NAME} zonesub ANY; }};\n\
         }};\n"
    )
}

impl TestBind {
    /// Starts `named` with the zone (the name's records with `ttl`) in `dir`
    /// and waits until it answers.
    ///
    /// # Errors
    /// When named or tsig-keygen does not run (is bind9 installed?).
    pub fn start(dir: &Path, ttl: u32) -> io::Result<TestBind> {
        let good = keygen(KEY_NAME)?;
        let other = keygen("not-allowed")?;
        let wrong = keygen(KEY_NAME)?;
        let key_file = dir.join("cmw-upgrade.key");
        let wrong_key_file = dir.join("wrong.key");
        let other_key_file = dir.join("not-allowed.key");
        fs::write(&key_file, &good)?;
        fs::write(&wrong_key_file, &wrong)?;
        fs::write(&other_key_file, &other)?;
        fs::write(dir.join("example.test.zone"), zone_file(ttl))?;
        let conf = dir.join("named.conf");
        let mut last_error = io::Error::other("not started");
        // A port taken by a parallel test between the probe and the bind: retry on another.
        for _ in 0..5 {
            let port = free_port()?;
            fs::write(&conf, named_conf(dir, port, &format!("{good}{other}")))?;
            let mut child = Command::new(program("named"))
                .arg("-g")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if let Some(status) = child.try_wait()? {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = pipe.read_to_string(&mut stderr);
                    }
                    last_error = io::Error::other(format!("named exited ({status}): {stderr}"));
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let bind = TestBind {
                        child,
                        port,
                        key_file,
                        wrong_key_file,
                        other_key_file,
                        dir: dir.to_path_buf(),
                    };
                    if bind.dig(ZONE, "SOA").is_ok_and(|soa| !soa.is_empty()) {
                        // named logs to stderr forever: drain it so it never blocks.
                        return Ok(bind.draining());
                    }
                    return Err(io::Error::other(
                        "named listens but has no SOA for the zone",
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(last_error)
    }

    fn draining(mut self) -> TestBind {
        if let Some(mut pipe) = self.child.stderr.take() {
            let log = self.dir.join("named.log");
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = pipe.read_to_end(&mut text);
                let _ = fs::write(log, text);
            });
        }
        self
    }

    /// `ADDR:PORT` of the server.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `dig +short +tcp` of `name` `kind`, one value a line, sorted.
    ///
    /// # Errors
    /// When dig does not run or fails.
    pub fn dig(&self, name: &str, kind: &str) -> io::Result<String> {
        let output = Command::new(program("dig"))
            .args(["+short", "+tcp", "+time=3", "+tries=1", "-p"])
            .arg(self.port.to_string())
            .args(["@127.0.0.1", name, kind])
            .output()?;
        if !output.status.success() {
            return Err(io::Error::other(
                String::from_utf8_lossy(&output.stdout).into_owned(),
            ));
        }
        let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        Ok(lines.join("\n"))
    }

    /// The TTL of `name`'s `kind` records as the server has them.
    ///
    /// # Errors
    /// When dig fails or there is no such record.
    pub fn ttl(&self, name: &str, kind: &str) -> io::Result<u32> {
        let output = Command::new(program("dig"))
            .args(["+noall", "+answer", "+tcp", "+time=3", "+tries=1", "-p"])
            .arg(self.port.to_string())
            .args(["@127.0.0.1", name, kind])
            .output()?;
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .nth(1)
            .and_then(|ttl| ttl.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no {kind} record for {name}")))
    }

    /// The zone's SOA serial.
    ///
    /// # Errors
    /// When dig fails.
    pub fn serial(&self) -> io::Result<u32> {
        self.dig(ZONE, "SOA")?
            .split_whitespace()
            .nth(2)
            .and_then(|serial| serial.parse().ok())
            .ok_or_else(|| io::Error::other("no SOA serial"))
    }

    /// Sends `commands` through `nsupdate` (TCP), with the key file if given.
    ///
    /// # Errors
    /// When nsupdate does not run.
    pub fn nsupdate(&self, key_file: Option<&Path>, commands: &str) -> io::Result<Output> {
        let mut command = Command::new(program("nsupdate"));
        command.arg("-v");
        if let Some(key_file) = key_file {
            command.arg("-k").arg(key_file);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            write!(
                stdin,
                "server 127.0.0.1 {}\nzone {ZONE}\n{commands}\nsend\n",
                self.port
            )?;
        }
        child.wait_with_output()
    }
}

impl Drop for TestBind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
