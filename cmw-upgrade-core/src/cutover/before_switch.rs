//! The checks `cutover apply` runs before it changes anything, for every
//! method (and `plan` shows): the new server is healthy through its own site,
//! the address traffic will go to takes TCP connections from where the
//! proxy is, and the old server's live database is still as in the bundle
//! (no write landed on it after the backup that the new server would miss).
//!
//! Each server is reached through its own executor (the agent over ssh, or
//! this machine), so the checks ask the same tool actions `cmw-upgrade
//! check` and `backup drift` run by hand. A check without what it needs
//! fails, saying what to give: none is skipped unless the admin names it
//! (`--skip-check NAME`); drift found is accepted only with `--accept-drift`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::old_site::{self, OldSite, OldSiteAccess, OldSiteReport};
use crate::backup::DriftReport;
use crate::error::{Error, Result};
use crate::executor::{Executor, ToolAction};
use crate::instance::InstanceName;
use crate::os::OsFamily;

/// A pre-switch check, by the name `--skip-check` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckName {
    /// `GET /api/health` answers 200 through the new server's site; its heartbeat logs hold no error.
    NewHealth,
    /// The address and port traffic will go to take a TCP connection from where the proxy is.
    NewReachable,
    /// The old server's live database against the bundle (`backup drift`).
    OldDrift,
}

impl CheckName {
    /// Every check, in the order they run.
    pub const ALL: [CheckName; 3] = [
        CheckName::NewHealth,
        CheckName::NewReachable,
        CheckName::OldDrift,
    ];

    /// `new-health`, `new-reachable` or `old-drift`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::NewHealth => "new-health",
            CheckName::NewReachable => "new-reachable",
            CheckName::OldDrift => "old-drift",
        }
    }
}

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreSwitchCheck {
    /// `new-health`, `new-reachable` or `old-drift`.
    pub name: String,
    /// Whether it lets the switch go on (a skipped check, or drift accepted, does).
    pub ok: bool,
    /// What was found, or why it was not checked.
    pub detail: String,
    /// Skipped by `--skip-check`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// Drift found and accepted by `--accept-drift`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accepted: bool,
}

/// The new server's health: the instance whose heartbeat logs are read,
/// and the URL of `/api/health` through its site, as the new server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthProbe {
    /// The instance.
    pub instance: InstanceName,
    /// `http://127.0.0.1:80/api/health`.
    pub url: String,
}

/// The old server's database against the bundle it was backed up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftProbe {
    /// The instance.
    pub instance: InstanceName,
    /// The bundle folder, a path on the old server.
    pub bundle: String,
    /// The old server's family (`None`: detected there).
    pub family: Option<OsFamily>,
}

/// A server a check runs on: its executor and how it reads in messages.
pub struct Reached<'a> {
    /// The executor (this machine, or the agent over ssh).
    pub executor: &'a dyn Executor,
    /// `this machine`, `root@old:22`.
    pub label: String,
}

/// What the pre-switch checks need; a `None` fails its check with what to give.
pub struct PreSwitch<'a> {
    /// The new server, for its health.
    pub new_server: Option<Reached<'a>>,
    /// What its health is read from.
    pub health: Option<HealthProbe>,
    /// Where the TCP connection is made from (the proxy's host; this machine for dns).
    pub reach_from: Reached<'a>,
    /// The address and port traffic will go to.
    pub address: Option<(String, u16)>,
    /// The old server, for its drift.
    pub old_server: Option<Reached<'a>>,
    /// The bundle to compare with.
    pub drift: Option<DriftProbe>,
    /// Checks the admin skips by name.
    pub skip: BTreeSet<CheckName>,
    /// Drift found lets the switch go on.
    pub accept_drift: bool,
}

/// Runs every check (none changes anything), in [`CheckName::ALL`]'s order.
pub fn run_checks(request: &PreSwitch<'_>) -> Vec<PreSwitchCheck> {
    CheckName::ALL
        .iter()
        .map(|&name| {
            if request.skip.contains(&name) {
                return PreSwitchCheck {
                    name: name.as_str().to_owned(),
                    ok: true,
                    detail: format!("skipped (--skip-check {})", name.as_str()),
                    skipped: true,
                    accepted: false,
                };
            }
            let (ok, detail, accepted) = match name {
                CheckName::NewHealth => health(request),
                CheckName::NewReachable => reachable(request),
                CheckName::OldDrift => drift(request),
            };
            PreSwitchCheck {
                name: name.as_str().to_owned(),
                ok,
                detail,
                skipped: false,
                accepted,
            }
        })
        .collect()
}

fn health(request: &PreSwitch<'_>) -> (bool, String, bool) {
    let (Some(server), Some(probe)) = (&request.new_server, &request.health) else {
        return (
            false,
            "not checked: the new server is not known here; give --new-host [user@]host[:port]|local \
             (or run `cmw-upgrade upgrade` from this machine, whose run state names it), or skip \
             with --skip-check new-health"
                .to_owned(),
            false,
        );
    };
    let action = ToolAction::Check {
        instance: probe.instance.clone(),
        url: probe.url.clone(),
    };
    let report = match server
        .executor
        .tool(&action)
        .and_then(|outcome| outcome.check())
    {
        Ok(Some(report)) => report,
        Ok(None) => return (false, format!("not run on {}", server.label), false),
        Err(error) => return (false, format!("on {}: {error}", server.label), false),
    };
    let mut found = vec![match (report.status, &report.unreachable) {
        (Some(status), _) => format!("GET {} answered {status}", report.url),
        (None, Some(why)) => format!("GET {} did not answer: {why}", report.url),
        (None, None) => format!("GET {} did not answer", report.url),
    }];
    if report.heartbeat_logs == 0 {
        found.push(format!("no heartbeat log in {}", report.log_dir));
    } else if report.heartbeat_errors.is_empty() {
        found.push(format!(
            "no error in {} heartbeat log{}",
            report.heartbeat_logs,
            if report.heartbeat_logs == 1 { "" } else { "s" }
        ));
    } else {
        found.push(format!(
            "errors in the heartbeat logs: {}",
            report
                .heartbeat_errors
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    (
        report.ok,
        format!(
            "on {}: {} (`{}`)",
            server.label,
            found.join(", "),
            action.display()
        ),
        false,
    )
}

fn reachable(request: &PreSwitch<'_>) -> (bool, String, bool) {
    let Some((host, port)) = &request.address else {
        return (
            false,
            "not checked: the port traffic will go to is not known; give it (--new-port for \
             --method dns), or skip with --skip-check new-reachable"
                .to_owned(),
            false,
        );
    };
    let from = &request.reach_from;
    let action = ToolAction::TcpConnect {
        host: host.clone(),
        port: *port,
    };
    match from
        .executor
        .tool(&action)
        .and_then(|outcome| outcome.reachable())
    {
        Ok(Some(address)) => (
            true,
            format!(
                "{host}:{port} takes TCP connections from {} (connected to {address})",
                from.label
            ),
            false,
        ),
        Ok(None) => (false, format!("not run on {}", from.label), false),
        Err(error) => (
            false,
            format!("{host}:{port} from {}: {error}", from.label),
            false,
        ),
    }
}

fn drift(request: &PreSwitch<'_>) -> (bool, String, bool) {
    let (Some(server), Some(probe)) = (&request.old_server, &request.drift) else {
        return (
            false,
            "not checked: the old server or the bundle is not known here; give --old-host \
             [user@]host[:port]|local and --bundle DIR (or run `cmw-upgrade upgrade` from this \
             machine, whose run state names both), or skip with --skip-check old-drift"
                .to_owned(),
            false,
        );
    };
    let family = match probe.family {
        Some(family) => family,
        None => match server
            .executor
            .tool(&ToolAction::Detect {
                instance: None,
                family: None,
            })
            .and_then(|outcome| outcome.detect())
        {
            Ok(Some(found)) => found.family,
            Ok(None) => return (false, format!("not run on {}", server.label), false),
            Err(error) => {
                return (
                    false,
                    format!("on {}: the family: {error}", server.label),
                    false,
                )
            }
        },
    };
    let action = ToolAction::Drift {
        bundle: probe.bundle.clone(),
        instance: probe.instance.clone(),
        family,
        deep: false,
    };
    match server
        .executor
        .tool(&action)
        .and_then(|outcome| outcome.drift())
    {
        Ok(Some(report)) => {
            let written = drift_lines(&report);
            if written.is_empty() {
                (
                    true,
                    format!(
                        "on {}: the live database is as in {} (nothing written after the backup)",
                        server.label, probe.bundle
                    ),
                    false,
                )
            } else {
                let accepted = request.accept_drift;
                (
                    accepted,
                    format!(
                        "on {}: the old server took writes after the backup {}: {}{} (`{}`)",
                        server.label,
                        probe.bundle,
                        written.join(", "),
                        if accepted {
                            "; accepted by --accept-drift: the new server does not have them"
                        } else {
                            ""
                        },
                        action.display()
                    ),
                    accepted,
                )
            }
        }
        Ok(None) => (false, format!("not run on {}", server.label), false),
        Err(error) => (false, format!("on {}: {error}", server.label), false),
    }
}

/// What the old server wrote after the backup, one entry a file (at most
/// ten, then how many more).
pub fn drift_lines(report: &DriftReport) -> Vec<String> {
    let all: Vec<String> = report
        .changed
        .iter()
        .map(|file| format!("changed {file}"))
        .chain(report.added.iter().map(|file| format!("added {file}")))
        .chain(report.removed.iter().map(|file| format!("removed {file}")))
        .collect();
    let mut lines: Vec<String> = all.iter().take(10).cloned().collect();
    if all.len() > 10 {
        lines.push(format!("and {} more", all.len() - 10));
    }
    lines
}

/// The failed checks as one error: nothing was changed.
pub fn refusal(checks: &[PreSwitchCheck]) -> Option<Error> {
    let failed: Vec<String> = checks
        .iter()
        .filter(|check| !check.ok)
        .map(|check| format!("[{}] {}", check.name, check.detail))
        .collect();
    let drift = checks
        .iter()
        .any(|check| !check.ok && check.name == CheckName::OldDrift.as_str());
    (!failed.is_empty()).then(|| Error::CheckFailed {
        what: "the checks before the switch".to_owned(),
        details: format!(
            "{}; fix what failed and rerun{}",
            failed.join("; "),
            if drift {
                " (drift: back up and transfer again, or pass --accept-drift to switch without \
                 those writes; --freeze-old keeps writes off the old server from the final check on)"
            } else {
                ""
            }
        ),
    })
}

/// What `apply` may switch with: the checks, and the old site's freeze when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleared {
    /// The checks (with --freeze-old, `old-drift` is the final one, after the freeze).
    pub checks: Vec<PreSwitchCheck>,
    /// The freeze made.
    pub freeze: Option<OldSiteReport>,
}

/// Everything before the switch: the checks (any failure refuses, nothing
/// changed); then, with `freeze`, the old site frozen and the drift checked
/// once more, the final check: no write lands on the old server after it.
/// A drift found then (and not accepted) puts the old site back and refuses.
///
/// # Errors
/// [`Error::CheckFailed`] naming each failed check; what freezing reports.
pub fn clear_for_switch(
    request: &PreSwitch<'_>,
    freeze: Option<(&OldSiteAccess<'_>, &OldSite)>,
) -> Result<Cleared> {
    let mut checks = run_checks(request);
    if let Some(error) = refusal(&checks) {
        return Err(error);
    }
    let Some((access, target)) = freeze else {
        return Ok(Cleared {
            checks,
            freeze: None,
        });
    };
    let report = old_site::freeze(access, target)?;
    if !request.skip.contains(&CheckName::OldDrift) {
        let (ok, detail, accepted) = drift(request);
        let last = PreSwitchCheck {
            name: CheckName::OldDrift.as_str().to_owned(),
            ok,
            detail: format!("after the freeze: {detail}"),
            skipped: false,
            accepted,
        };
        if !ok {
            let error = refusal(std::slice::from_ref(&last)).unwrap_or(Error::Internal {
                details: "a failed check did not refuse".to_owned(),
            });
            return Err(match old_site::restore(access) {
                Ok(_) => error,
                Err(undo) => Error::CheckFailed {
                    what: "the final drift check, after the freeze".to_owned(),
                    details: format!(
                        "{error}; putting the old site back failed too: {undo}; `cmw-upgrade \
                         cutover revert` retries it"
                    ),
                },
            });
        }
        for check in &mut checks {
            if check.name == last.name {
                *check = last.clone();
            }
        }
    }
    Ok(Cleared {
        checks,
        freeze: Some(report),
    })
}

/// The server path of the checks' record for an instance.
pub fn checks_path(instance: &InstanceName) -> String {
    format!(
        "/var/lib/cmw-upgrade/{}/cutover-checks.json",
        instance.as_str()
    )
}

/// What `apply` found before its switch, kept beside the method's saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedChecks {
    /// The format of this file.
    pub format: u32,
    /// `haproxy`, `nginx` or `dns`.
    pub method: String,
    /// When the checks ran (UTC stamp).
    pub checked_at: String,
    /// The checks.
    pub checks: Vec<PreSwitchCheck>,
}

/// Records the checks (0600, atomically) through `executor`, the one that
/// keeps the cut-over's state.
///
/// # Errors
/// What writing reports.
pub fn save_checks(
    executor: &dyn Executor,
    instance: &InstanceName,
    method: &str,
    stamp: &str,
    checks: &[PreSwitchCheck],
) -> Result<()> {
    super::write_saved(
        executor,
        &checks_path(instance),
        &SavedChecks {
            format: 1,
            method: method.to_owned(),
            checked_at: stamp.to_owned(),
            checks: checks.to_vec(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: CheckName, ok: bool) -> PreSwitchCheck {
        PreSwitchCheck {
            name: name.as_str().to_owned(),
            ok,
            detail: "found".to_owned(),
            skipped: false,
            accepted: false,
        }
    }

    #[test]
    fn a_failed_check_refuses_and_names_itself() {
        assert!(refusal(&[check(CheckName::NewHealth, true)]).is_none());
        let error = refusal(&[
            check(CheckName::NewHealth, true),
            check(CheckName::OldDrift, false),
        ])
        .unwrap()
        .to_string();
        assert!(error.contains("[old-drift] found"), "{error}");
        assert!(error.contains("--accept-drift"), "{error}");
        assert!(!error.contains("new-health"), "{error}");
    }

    #[test]
    fn a_check_without_its_server_fails_naming_the_option_and_a_skip_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let here = crate::executor::LocalExecutor::new(dir.path());
        let mut request = PreSwitch {
            new_server: None,
            health: None,
            reach_from: Reached {
                executor: &here,
                label: "this machine".to_owned(),
            },
            address: None,
            old_server: None,
            drift: None,
            skip: BTreeSet::new(),
            accept_drift: true,
        };
        let checks = run_checks(&request);
        let names: Vec<&str> = checks.iter().map(|check| check.name.as_str()).collect();
        assert_eq!(names, ["new-health", "new-reachable", "old-drift"]);
        for (check, option) in checks
            .iter()
            .zip(["--new-host", "--new-port", "--old-host"])
        {
            assert!(!check.ok, "{check:?}");
            assert!(check.detail.contains(option), "{check:?}");
            assert!(
                check
                    .detail
                    .contains(&format!("--skip-check {}", check.name)),
                "{check:?}"
            );
        }
        request.skip = CheckName::ALL.into_iter().collect();
        let checks = run_checks(&request);
        assert!(checks.iter().all(|check| check.ok && check.skipped));
        assert!(refusal(&checks).is_none());
    }

    #[test]
    fn drift_lines_name_each_file_and_count_the_rest() {
        let report = DriftReport {
            database: "/db".into(),
            deep: false,
            changed: vec!["db/a.bin".to_owned()],
            added: (0..12).map(|n| format!("db/new{n}.bin")).collect(),
            removed: vec![],
        };
        let lines = drift_lines(&report);
        assert_eq!(lines[0], "changed db/a.bin");
        assert_eq!(lines[1], "added db/new0.bin");
        assert_eq!(lines.last().unwrap(), "and 3 more");
        assert_eq!(lines.len(), 11);
    }
}
