//! The tool's own actions, run in this process on the server under a root:
//! what [`LocalExecutor::tool`](super::LocalExecutor) and the agent do.
//!
//! These call the effect helpers (backup, restore, prune, the migration's
//! atomic writes) directly: each is one action with its own checks and
//! all-or-nothing behaviour, recorded as one operation by a [`Recording`](super::Recording).

use super::protocol::{DetectReport, ToolAction, ToolOutcome};
use crate::backup::{
    backup, bundle_drift, restore, verify_bundle, BackupOptions, Progress, RestoreOptions,
};
use crate::config::migrate::{
    apply_migration, check_migration, migration_refusal, plan_migration, MigrateOptions,
};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::exec::CommandRunner;
use crate::health::smoke_check;

use crate::logs::{upgrade_verdict_since, Since};
use crate::os::{detect_os_family_from, OS_RELEASE_PATHS};
use crate::prune::prune_caches;

/// Runs `action` on the server on `disk` (under its root); commands it needs
/// (`nginx -t`, `control.sh`) go through `runner`; long file work reports to
/// `progress` and stops when it is cancelled.
///
/// # Errors
/// What the action reports, with its kind; a config migration with errors is
/// [`Error::CheckFailed`] listing them (nothing written); a verdict without
/// exactly one of instance and log folder is [`Error::BadRequest`].
pub fn run_tool(
    disk: &Disk,
    runner: &dyn CommandRunner,
    progress: &Progress,
    action: &ToolAction,
) -> Result<ToolOutcome> {
    let root = disk.root();
    let place = |path: &str| disk.place(path);
    Ok(match action {
        ToolAction::VerifyBundle { bundle } => {
            ToolOutcome::Verify(verify_bundle(&place(bundle)?, progress)?)
        }
        ToolAction::Backup {
            instance,
            family,
            dest,
            method,
        } => {
            let options = BackupOptions {
                root: root.to_path_buf(),
                instance: instance.clone(),
                family: *family,
                destination: place(dest)?,
                method: *method,
                with_streams: false,
                control_script: None,
                check_space: true,
            };
            ToolOutcome::Backup(backup(&options, runner, progress)?)
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
            ToolOutcome::Restore(restore(&options, progress)?)
        }
        ToolAction::PruneCaches { database, check } => {
            ToolOutcome::Prune(prune_caches(&place(database)?, *check)?)
        }
        ToolAction::MigrateConfig {
            from,
            instance,
            family,
            fix,
            check,
        } => {
            let stamp = crate::exec::utc_stamp(std::time::SystemTime::now());
            let options = MigrateOptions {
                take: Vec::new(),
                fix: *fix,
                stamp: stamp.clone(),
                preview_missing: *check,
            };
            let mut plan = plan_migration(&place(from)?, root, instance, *family, &options)?;
            if *check {
                check_migration(&mut plan, runner);
                return Ok(ToolOutcome::Migrate(plan.report));
            }
            if let Some(refusal) = migration_refusal(&plan.report, from, instance) {
                return Err(refusal);
            }
            plan.report.written = apply_migration(&plan, runner, &stamp)?;
            ToolOutcome::Migrate(plan.report)
        }
        ToolAction::Verdict {
            instance,
            log_dir,
            since,
        } => {
            let log_dir = match (instance, log_dir) {
                (Some(instance), None) => disk.log_dir(instance)?.path,
                (None, Some(log_dir)) => place(log_dir)?,
                _ => {
                    return Err(Error::BadRequest {
                        details: "a verdict needs exactly one of instance and log_dir".to_owned(),
                    })
                }
            };
            let since = since
                .as_deref()
                .map(Since::parse)
                .transpose()
                .map_err(|details| Error::BadRequest { details })?;
            ToolOutcome::Verdict(upgrade_verdict_since(&log_dir, since)?)
        }
        ToolAction::Check { instance, url } => {
            ToolOutcome::Check(smoke_check(root, instance, url)?)
        }
        ToolAction::Detect { instance, family } => {
            let os = detect_os_family_from(disk);
            let (os, family, family_source) = match (os, family) {
                (Ok(os), Some(family)) => (os, *family, "--family"),
                // With a family given, an unreadable or unknown os-release is only informative.
                (Err(_), Some(family)) => (None, *family, "--family"),
                (Ok(Some(os)), None) => {
                    let family = os.family;
                    (Some(os), family, "os-release")
                }
                (Ok(None), None) => {
                    return Err(Error::NoOsRelease {
                        tried: OS_RELEASE_PATHS
                            .iter()
                            .map(|relative| root.join(relative))
                            .collect(),
                    })
                }
                (Err(error), None) => return Err(error),
            };
            let layout = instance
                .as_ref()
                .map(|instance| disk.layout(instance, family))
                .transpose()?;
            ToolOutcome::Detect(Box::new(DetectReport {
                family,
                family_source: family_source.to_owned(),
                os,
                layout,
            }))
        }
        ToolAction::Drift {
            bundle,
            instance,
            family,
            deep,
        } => {
            let layout = disk.layout(instance, *family)?;
            ToolOutcome::Drift(bundle_drift(
                &place(bundle)?,
                &disk.canonical(&layout.database.path)?,
                *deep,
                progress,
            )?)
        }
        ToolAction::HaproxyCommand { socket, command } => ToolOutcome::HaproxyAnswer {
            answer: haproxy_command(&place(socket)?, socket, command)?,
        },
        ToolAction::TcpConnect { host, port } => ToolOutcome::Reachable {
            address: tcp_connect(host, *port)?,
        },
    })
}

/// How long one runtime API command may take: the API answers at once; a
/// silent socket is a stuck proxy, and the admin must hear about it.
const HAPROXY_ANSWER_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a TCP connect may take before the address counts as unreachable.
const CONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends one command to the HAProxy runtime API at `placed` (the socket
/// under the root; `socket` is its server path, for messages) and returns the
/// whole answer. Without `prompt`, HAProxy answers one command and closes.
fn haproxy_command(placed: &std::path::Path, socket: &str, command: &str) -> Result<String> {
    use std::io::{Read, Write};
    if command.contains(['\n', '\r', ';']) {
        return Err(Error::BadRequest {
            details: format!(
                "{command:?} is more than one runtime API command; send them one at a time"
            ),
        });
    }
    let failed = |status: &str, error: std::io::Error| Error::CommandFailed {
        command: format!(
            "echo {} | socat stdio {}",
            super::shell_quote(command),
            super::shell_quote(socket)
        ),
        status: status.to_owned(),
        output: error.to_string(),
        hint: "check that haproxy runs and that its config has `stats socket <this path> level \
               admin` (--haproxy-socket names that path)"
            .to_owned(),
    };
    let mut stream = std::os::unix::net::UnixStream::connect(placed)
        .map_err(|error| failed("did not connect", error))?;
    stream
        .set_read_timeout(Some(HAPROXY_ANSWER_LIMIT))
        .and_then(|()| stream.set_write_timeout(Some(HAPROXY_ANSWER_LIMIT)))
        .and_then(|()| stream.write_all(format!("{command}\n").as_bytes()))
        // The master CLI (`haproxy -W -S`) answers only once the sending side
        // is closed; the admin socket does not mind.
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .map_err(|error| failed("could not send", error))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|error| failed("no whole answer", error))?;
    Ok(answer)
}

/// Connects to `host:port` (every address it resolves to, in order) and
/// closes again; returns the address that answered.
fn tcp_connect(host: &str, port: u16) -> Result<String> {
    use std::net::ToSocketAddrs;
    let check_failed = |details: String| Error::CheckFailed {
        what: format!("a TCP connection to {host}:{port} from this server"),
        details: format!(
            "{details}; the proxy could not send traffic there: start the new server's site, \
             or open the port in its firewall"
        ),
    };
    let addresses = (host, port)
        .to_socket_addrs()
        .map_err(|error| check_failed(format!("cannot resolve {host}: {error}")))?;
    let mut errors = Vec::new();
    for address in addresses {
        match std::net::TcpStream::connect_timeout(&address, CONNECT_LIMIT) {
            Ok(_) => return Ok(address.to_string()),
            Err(error) => errors.push(format!("{address}: {error}")),
        }
    }
    if errors.is_empty() {
        errors.push(format!("{host} resolves to no address"));
    }
    Err(check_failed(errors.join(", ")))
}
