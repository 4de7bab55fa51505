//! The simulated platform service (`comindware<i>`).
//!
//! Started on a database of an older version (its `.cmw-sim-version` marker),
//! it upgrades it the way the real one does as far as the tool can see:
//! `UpgradeOntology.log` and `upgrade<date>.log` records over a few seconds,
//! then the completion records and the marker set to the new version. It
//! answers `GET /api/health` on its port: 503 while upgrading, 500 after a
//! failure, 200 when working; and writes a heartbeat log. Failure modes come
//! from the simulation's `failure` file: `error` (an error record, the upgrade
//! stops), `hang` (records stop coming), `crash` (the process dies mid-upgrade).
//! `upgrade-seconds` sets how long the upgrade takes, `start-delay-seconds`
//! how long the service boots before it touches the data.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cmw_upgrade_core::exec::utc_rfc3339;

/// The database marker the simulation keeps the data's version in.
pub const VERSION_MARKER: &str = ".cmw-sim-version";

/// What the service is asked to run.
#[derive(Debug, Clone)]
pub struct ServiceArgs {
    /// The server's `/`.
    pub root: PathBuf,
    /// The instance.
    pub instance: String,
    /// The simulation's state folder.
    pub sim: PathBuf,
    /// The port to answer health checks on.
    pub port: u16,
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

fn directive(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?.trim();
        Some(value.trim_matches(|c| c == '"' || c == '\'').to_owned())
    })
}

fn under(root: &Path, server_path: &str) -> PathBuf {
    root.join(server_path.trim_start_matches('/'))
}

struct Logs {
    dir: PathBuf,
    date: String,
}

impl Logs {
    fn append(&self, name: &str, level: &str, message: &str) {
        let now = utc_rfc3339(SystemTime::now());
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_millis())
            .unwrap_or(0);
        let record = format!(
            "{} {},{millis:03} {level} 8c1f0d4e-52aa-4b7e-9d7f-0a1b2c3d4e5f system 127.0.0.1 /upgrade 200 12 '{message}'\n",
            &now[..10],
            &now[11..19]
        );
        let _ = fs::create_dir_all(&self.dir);
        if let Ok(mut file) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
        {
            let _ = file.write_all(record.as_bytes());
        }
    }
    fn ontology(&self, level: &str, message: &str) {
        self.append("UpgradeOntology.log", level, message);
    }
    fn upgrade(&self, level: &str, message: &str) {
        let name = format!("upgrade{}.log", self.date);
        self.append(&name, level, message);
    }
}

const STARTING: u16 = 503;

/// Runs the service until it is killed (or crashes on request).
///
/// # Errors
/// When its port cannot be bound.
pub fn run(args: &ServiceArgs) -> std::io::Result<()> {
    let config_text = fs::read_to_string(under(
        &args.root,
        &format!(
            "/usr/share/comindware/configs/instance/{}.yml",
            args.instance
        ),
    ))
    .unwrap_or_default();
    let version = directive(&config_text, "version").unwrap_or_else(|| "unknown".to_owned());
    let database = directive(&config_text, "db.workDir")
        .unwrap_or_else(|| format!("/var/lib/comindware/{}/Database", args.instance));
    let database = under(&args.root, &database);
    let adapterhost = fs::read_to_string(under(
        &args.root,
        &format!("/var/www/{}/adapterhost.yml", args.instance),
    ))
    .unwrap_or_default();
    let log_dir = directive(&adapterhost, "log.folder")
        .unwrap_or_else(|| format!("/var/log/comindware/{}/Logs", args.instance));
    let logs = Logs {
        dir: under(&args.root, &log_dir),
        date: utc_rfc3339(SystemTime::now())[..10].to_owned(),
    };
    let failure = read_trimmed(&args.sim.join("failure")).unwrap_or_default();
    let seconds: f64 = read_trimmed(&args.sim.join("upgrade-seconds"))
        .and_then(|text| text.parse().ok())
        .unwrap_or(3.0);

    let status = Arc::new(AtomicU16::new(STARTING));
    let listener = bind(args.port)?;
    let answering = Arc::clone(&status);
    std::thread::spawn(move || serve(&listener, &answering));
    let heartbeat_logs = Logs {
        dir: logs.dir.clone(),
        date: logs.date.clone(),
    };
    std::thread::spawn(move || loop {
        let name = format!("heartbeat_{}.log", heartbeat_logs.date);
        heartbeat_logs.append(&name, "INFO", "heartbeat");
        std::thread::sleep(Duration::from_secs(2));
    });

    // The platform takes a while to boot before it touches the data (a JVM,
    // the cluster): `start-delay-seconds` plays that.
    let start_delay: f64 = read_trimmed(&args.sim.join("start-delay-seconds"))
        .and_then(|text| text.parse().ok())
        .unwrap_or(0.0);
    std::thread::sleep(Duration::from_secs_f64(start_delay));
    let data_version = read_trimmed(&database.join(VERSION_MARKER));
    if data_version.as_deref().is_some_and(|data| data != version) {
        let from = data_version.unwrap_or_default();
        let pause = Duration::from_secs_f64(seconds / 6.0);
        logs.ontology("INFO", "Upgrade of ontology started");
        std::thread::sleep(pause);
        logs.ontology("INFO", "Applying ontology patch 1 of 2: attribute registry");
        std::thread::sleep(pause);
        logs.ontology("INFO", "Applying ontology patch 2 of 2");
        logs.ontology("INFO", "Upgrade of ontology completed successfully");
        logs.upgrade("INFO", &format!("Upgrade started: {from} -> {version}"));
        std::thread::sleep(pause);
        logs.upgrade("INFO", "Migrated 125000 records, 0 failures");
        match failure.as_str() {
            "crash" => {
                logs.upgrade("INFO", "Converting streams");
                std::process::exit(134);
            }
            "hang" => {
                logs.upgrade("INFO", "Converting streams");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            "error" => {
                std::thread::sleep(pause);
                logs.upgrade(
                    "ERROR",
                    "Data upgrade step 'MigrateStreams' failed: stream 42 not found",
                );
                logs.upgrade("INFO", "Upgrade stopped");
                status.store(500, Ordering::SeqCst);
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            _ => {}
        }
        std::thread::sleep(pause);
        logs.upgrade("Debug", "Обновление индексов завершено");
        std::thread::sleep(pause);
        fs::write(database.join(VERSION_MARKER), format!("{version}\n"))?;
        logs.upgrade("INFO", "Upgrade completed");
    }
    status.store(200, Ordering::SeqCst);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Binds the port, waiting a little for a previous instance to let go of it.
fn bind(port: u16) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => return Ok(listener),
            Err(error) => last = Some(error),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cannot bind")))
}

fn serve(listener: &TcpListener, status: &AtomicU16) {
    for stream in listener.incoming().flatten() {
        let mut stream = stream;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut request = [0u8; 2048];
        let read = stream.read(&mut request).unwrap_or(0);
        let request = String::from_utf8_lossy(&request[..read]);
        let code = if request.starts_with("GET /api/health") {
            status.load(Ordering::SeqCst)
        } else {
            404
        };
        let reason = match code {
            200 => "OK",
            404 => "Not Found",
            500 => "Internal Server Error",
            _ => "Service Unavailable",
        };
        let body = format!("{{\"status\":{code}}}\n");
        let _ = write!(
            stream,
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}
