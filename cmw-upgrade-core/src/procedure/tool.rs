//! The tool's own actions inside the procedure (verify, back up, restore,
//! prune, migrate configs, read the verdict, smoke-check), as the executor
//! runs them.
//!
//! Each action is also a `cmw-upgrade` command line ([`ToolAction::argv`]):
//! a plan shows it so an admin can do the same by hand, a transcript records
//! it, and the ssh executor runs exactly that on the other server. Locally the
//! action runs in this process ([`run_tool_locally`]) with the executor's root.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::backup::manifest::BackupMethod;
use crate::backup::{backup, BackupOptions, Progress};
use crate::backup::{restore, verify_bundle, RestoreOptions};
use crate::config::migrate::{apply_migration, plan_migration, MigrateOptions};
use crate::error::{Error, Result};
use crate::exec::CommandRunner;
use crate::executor::{place_under_root, shell_quote};
use crate::instance::InstanceName;
use crate::layout::discover_log_dir;
use crate::logs::scan::scan_log_file;
use crate::logs::upgrade_verdict;
use crate::os::OsFamily;
use crate::prune::prune_caches;

/// One of the tool's own actions; paths are server paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolAction {
    /// Re-hash a bundle against its manifest.
    VerifyBundle {
        /// The bundle folder.
        bundle: String,
    },
    /// Back up an instance (plain copy; the instance is stopped first).
    Backup {
        /// The instance.
        instance: InstanceName,
        /// The server's family.
        family: OsFamily,
        /// The bundle folder to create.
        dest: String,
    },
    /// Restore a bundle's database into the instance, the current one moved aside.
    Restore {
        /// The bundle folder.
        bundle: String,
        /// The instance.
        instance: InstanceName,
        /// The server's family.
        family: OsFamily,
    },
    /// Remove the old-format caches from a database copy.
    PruneCaches {
        /// The database folder (a copy, never the live one).
        database: String,
    },
    /// Carry the old server's config values into the new instance's files.
    MigrateConfig {
        /// The old server's files at their absolute paths (a bundle's `config/`).
        from: String,
        /// The instance.
        instance: InstanceName,
        /// The server's family.
        family: OsFamily,
        /// Apply the evident fixes for failed checks.
        fix: bool,
    },
    /// The data-structure upgrade's verdict from the instance's logs.
    Verdict {
        /// The instance.
        instance: InstanceName,
    },
    /// `GET <url>` must answer 200 and the heartbeat logs must hold no error.
    Check {
        /// The instance.
        instance: InstanceName,
        /// The health URL, e.g. `http://127.0.0.1:80/api/health`.
        url: String,
    },
}

impl ToolAction {
    /// The `cmw-upgrade` command that does the same.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec!["cmw-upgrade".to_owned()];
        let mut push = |parts: &[&str]| argv.extend(parts.iter().map(|part| (*part).to_owned()));
        match self {
            ToolAction::VerifyBundle { bundle } => push(&["backup", "verify", bundle]),
            ToolAction::Backup {
                instance,
                family,
                dest,
            } => push(&[
                "backup",
                "--instance",
                instance.as_str(),
                "--dest",
                dest,
                "--method",
                "copy",
                "--family",
                family.as_str(),
            ]),
            ToolAction::Restore {
                bundle,
                instance,
                family,
            } => push(&[
                "restore",
                bundle,
                "--instance",
                instance.as_str(),
                "--replace",
                "--family",
                family.as_str(),
            ]),
            ToolAction::PruneCaches { database } => push(&["prune-caches", database]),
            ToolAction::MigrateConfig {
                from,
                instance,
                family,
                fix,
            } => {
                push(&[
                    "config",
                    "migrate",
                    "--from",
                    from,
                    "--instance",
                    instance.as_str(),
                    "--family",
                    family.as_str(),
                ]);
                if *fix {
                    push(&["--fix"]);
                }
            }
            ToolAction::Verdict { instance } => {
                push(&["logs", "verdict", "--instance", instance.as_str()]);
            }
            ToolAction::Check { instance, url } => {
                push(&["check", "--instance", instance.as_str(), "--url", url]);
            }
        }
        argv
    }

    /// The command as an admin would type it.
    pub fn display(&self) -> String {
        self.argv()
            .iter()
            .map(|arg| shell_quote(arg))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|error| Error::ValidationFailed {
        what: "writing a report".to_owned(),
        details: error.to_string(),
    })
}

/// Runs `action` in this process on the server under `root`; commands it
/// needs (`nginx -t`) go through `runner`.
///
/// # Errors
/// What the action reports; a config migration with errors is
/// [`Error::ValidationFailed`] listing them (nothing written).
pub fn run_tool_locally(
    root: &Path,
    runner: &dyn CommandRunner,
    action: &ToolAction,
) -> Result<Value> {
    let place = |path: &str| place_under_root(root, path);
    let progress = Progress::default();
    match action {
        ToolAction::VerifyBundle { bundle } => to_json(&verify_bundle(&place(bundle)?, &progress)?),
        ToolAction::Backup {
            instance,
            family,
            dest,
        } => {
            let options = BackupOptions {
                root: root.to_path_buf(),
                instance: instance.clone(),
                family: *family,
                destination: place(dest)?,
                method: BackupMethod::Copy,
                with_streams: false,
                control_script: None,
                check_space: true,
            };
            to_json(&backup(&options, runner, &progress)?)
        }
        ToolAction::Restore {
            bundle,
            instance,
            family,
        } => {
            let options = RestoreOptions {
                bundle: place(bundle)?,
                root: root.to_path_buf(),
                instance: instance.clone(),
                family: *family,
                replace: true,
            };
            to_json(&restore(&options, &progress)?)
        }
        ToolAction::PruneCaches { database } => to_json(&prune_caches(&place(database)?, false)?),
        ToolAction::MigrateConfig {
            from,
            instance,
            family,
            fix,
        } => {
            let stamp = crate::exec::utc_stamp(std::time::SystemTime::now());
            let options = MigrateOptions {
                take: Vec::new(),
                fix: *fix,
                stamp: stamp.clone(),
            };
            let mut plan = plan_migration(&place(from)?, root, instance, *family, &options)?;
            if !plan.report.errors.is_empty() {
                return Err(Error::ValidationFailed {
                    what: "the config migration".to_owned(),
                    details: format!(
                        "{}; see them with: cmw-upgrade config migrate --from {from} --instance {instance} --check (--fix applies the evident fixes)",
                        plan.report.errors.join("; ")
                    ),
                });
            }
            plan.report.written = apply_migration(&plan, runner, &stamp)?;
            to_json(&plan.report)
        }
        ToolAction::Verdict { instance } => {
            let log_dir = discover_log_dir(root, instance)?.path;
            to_json(&upgrade_verdict(&log_dir)?)
        }
        ToolAction::Check { instance, url } => to_json(&smoke_check(root, instance, url)?),
    }
}

/// What a smoke check saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The URL asked.
    pub url: String,
    /// Its HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it did not answer.
    pub unreachable: Option<String>,
    /// Error records in the heartbeat logs (first lines).
    pub heartbeat_errors: Vec<String>,
    /// 200 and no heartbeat errors.
    pub ok: bool,
}

/// `GET url` and a scan of the instance's `heartbeat*` logs for errors.
///
/// # Errors
/// [`Error::Io`] when a heartbeat log cannot be read; an unreachable URL is
/// a report, not an error.
pub fn smoke_check(root: &Path, instance: &InstanceName, url: &str) -> Result<CheckReport> {
    let (status, unreachable) = match http_get_status(url, Duration::from_secs(5)) {
        Ok(status) => (Some(status), None),
        Err(reason) => (None, Some(reason)),
    };
    let log_dir = discover_log_dir(root, instance)?.path;
    let mut heartbeat_errors = Vec::new();
    if let Ok(listing) = std::fs::read_dir(&log_dir) {
        let mut names: Vec<String> = listing
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("heartbeat"))
            .collect();
        names.sort();
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
    let ok = status == Some(200) && heartbeat_errors.is_empty();
    Ok(CheckReport {
        url: url.to_owned(),
        status,
        unreachable,
        heartbeat_errors,
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
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: cmw-upgrade\r\nConnection: close\r\n\r\n"
    )
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
    fn actions_are_cli_commands() {
        let instance = InstanceName::new("prod").unwrap();
        let action = ToolAction::Restore {
            bundle: "/mnt/backup/prod 1".into(),
            instance: instance.clone(),
            family: OsFamily::Alt,
        };
        assert_eq!(
            action.display(),
            "cmw-upgrade restore '/mnt/backup/prod 1' --instance prod --replace --family alt"
        );
        let check = ToolAction::Check {
            instance,
            url: "http://127.0.0.1:8080/api/health".into(),
        };
        assert_eq!(
            check.argv()[1..],
            [
                "check",
                "--instance",
                "prod",
                "--url",
                "http://127.0.0.1:8080/api/health"
            ]
        );
    }

    #[test]
    fn http_status_of_a_tiny_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let read = stream.read(&mut request).unwrap();
            assert!(request[..read].starts_with(b"GET /api/health HTTP/1.0\r\n"));
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
