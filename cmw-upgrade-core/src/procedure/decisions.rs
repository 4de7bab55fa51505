//! The steps' decisions on a server in memory: what each step does given what
//! the server holds, including the cases a resumed run meets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::memory::{output, Event as Happened, MemoryServer};
use super::state::RunState;
use super::steps::Step;
use super::{fresh_state, UpgradeSettings, STEPS};
use crate::error::{ErrorKind, Result};
use crate::executor::{Executor, ToolAction, ToolOutcome};
use crate::instance::InstanceName;
use crate::logs::scan::ErrorRecord;
use crate::logs::{ErrorReason, LogFileStatus, UpgradeVerdict, Verdict};
use crate::os::OsFamily;
use crate::server::ServerRead;

const STATE: &str = "/var/lib/cmw-upgrade/prod/state.json";
const OLD_CONFIG: &str = "/usr/share/comindware/configs/instance/prod.yml";
const DATABASE: &str = "/var/lib/comindware/prod/Database";
const PRUNED: &str = "/var/lib/comindware/prod/Database.cmw-upgrade-pruned";

fn settings() -> UpgradeSettings {
    UpgradeSettings {
        instance: InstanceName::new("prod").unwrap(),
        family: OsFamily::Deb,
        bundle: "/mnt/backup/prod".into(),
        distribution: "/opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz".into(),
        prerequisites: "/opt/distr/5.0-release-ru-5.0.77.prerequisites.astra.tar.gz".into(),
        port: 8080,
        upgrade_timeout_seconds: 5,
        health_timeout_seconds: 5,
        fix_config: false,
    }
}

/// Runs the step called `name` on `server` (its state saved there too).
fn run_step(server: &MemoryServer, state: &mut RunState, name: &str) -> Result<()> {
    run_step_until(server, state, name, &crate::cancel::Cancel::new())
}

fn run_step_until(
    server: &MemoryServer,
    state: &mut RunState,
    name: &str,
    cancel: &crate::cancel::Cancel,
) -> Result<()> {
    let settings = settings();
    let index = STEPS.iter().position(|step| step.name == name).unwrap();
    let mut ignore = |_: &super::Event| {};
    (STEPS[index].run)(&mut Step::new(
        server,
        server,
        &settings,
        state,
        index,
        &mut ignore,
        cancel,
    ))
}

fn accounts(server: MemoryServer) -> MemoryServer {
    server
        .with_file(
            "/etc/passwd",
            "www-data:x:33:33::/var/www:/usr/sbin/nologin\n",
        )
        .with_file("/etc/group", "www-data:x:33:\n")
}

#[test]
fn the_step_table_is_the_order_the_state_names() {
    let names = super::step_names();
    assert_eq!(names.len(), STEPS.len());
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "step names are unique");
    assert_eq!(fresh_state(&settings()).steps.len(), STEPS.len());
}

#[test]
fn a_replaced_version_is_remembered_before_it_is_deleted() {
    let remembered_first = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&remembered_first);
    let server = MemoryServer::new()
        .with_file(OLD_CONFIG, "clusterName: prod\nversion: 4.7.2890.0\n")
        .answering(move |server, command| {
            let line = command.argv.join(" ");
            if line.contains("instance_delete.sh") {
                // The run state on the server must already name the old version.
                let state = server.text(STATE).unwrap_or_default();
                seen.store(state.contains("4.7.2890.0"), Ordering::SeqCst);
                server.remove(OLD_CONFIG).unwrap();
            }
            if line.contains("instance_create.sh") {
                server
                    .write_file(
                        OLD_CONFIG,
                        b"clusterName: prod\nversion: 5.0.1234.0\n",
                        0o644,
                    )
                    .unwrap();
                return output(0, "OK     Instance folder created.\nOK     Final status.\n");
            }
            output(0, "")
        });
    let mut state = fresh_state(&settings());
    run_step(&server, &mut state, "create-instance").unwrap();
    assert!(
        remembered_first.load(Ordering::SeqCst),
        "previous_version saved before instance_delete.sh"
    );
    assert_eq!(state.artifact("previous_version"), Some("4.7.2890.0"));
    let ran: Vec<String> = server
        .events()
        .into_iter()
        .filter_map(|event| match event {
            Happened::Ran(line) => Some(line),
            _ => None,
        })
        .collect();
    let position = |needle: &str| ran.iter().position(|line| line.contains(needle)).unwrap();
    assert!(position("instance_delete.sh") < position("instance_create.sh"));

    // Resumed after the create: the instance of the new version is there,
    // so it is started, not created again, and nothing is deleted.
    let resumed =
        MemoryServer::new().with_file(OLD_CONFIG, "clusterName: prod\nversion: 5.0.1234.0\n");
    run_step(&resumed, &mut state, "create-instance").unwrap();
    let ran = format!("{:?}", resumed.events());
    assert!(
        !ran.contains("instance_delete.sh") && !ran.contains("instance_create.sh"),
        "{ran}"
    );
    assert!(ran.contains("systemctl start comindwareprod"), "{ran}");
    assert_eq!(
        state.artifact("previous_version"),
        Some("4.7.2890.0"),
        "kept"
    );
}

#[test]
fn replacing_the_database_resumes_after_the_rename() {
    // Killed after the pruned copy was renamed into place: only the rest runs.
    let server = accounts(MemoryServer::new()).with_file(&format!("{DATABASE}/db/part.bin"), "x");
    let mut state = fresh_state(&settings());
    run_step(&server, &mut state, "replace-database").unwrap();
    let events = server.events();
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, Happened::Renamed(..))),
        "{events:?}"
    );
    assert!(
        events.contains(&Happened::Chowned(DATABASE.into(), 33, 33)),
        "{events:?}"
    );
    assert!(events.contains(&Happened::Ran("systemctl start comindwareprod".into())));

    // A fresh run: the database goes aside, the pruned copy comes in.
    let server = accounts(MemoryServer::new())
        .with_file(&format!("{DATABASE}/db/old.bin"), "upgraded")
        .with_file(&format!("{PRUNED}/db/new.bin"), "pruned");
    let mut state = fresh_state(&settings());
    run_step(&server, &mut state, "replace-database").unwrap();
    assert_eq!(
        server.text(&format!("{DATABASE}/db/new.bin")).as_deref(),
        Some("pruned")
    );
    let aside = state
        .artifact("upgraded_database_aside")
        .unwrap()
        .to_owned();
    assert_eq!(
        server.text(&format!("{aside}/db/old.bin")).as_deref(),
        Some("upgraded"),
        "the replaced database is kept beside it"
    );

    // Neither there: stop and say where to resume.
    let server = accounts(MemoryServer::new());
    let error = run_step(&server, &mut fresh_state(&settings()), "replace-database").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CheckFailed);
    assert!(
        error.to_string().contains("rerun from prune-caches"),
        "{error}"
    );
}

fn failed_verdict() -> ToolOutcome {
    let nothing = LogFileStatus {
        file: None,
        completed: false,
        last_record: None,
        scanned: Vec::new(),
    };
    ToolOutcome::Verdict(UpgradeVerdict {
        verdict: Verdict::Failed,
        log_dir: "/var/log/comindware/prod/Logs".into(),
        ontology_log: nothing.clone(),
        upgrade_log: nothing,
        errors: vec![ErrorRecord {
            file: "upgrade2026-11-24.log".into(),
            line: 4,
            level: "ERROR".into(),
            reason: ErrorReason::Level,
            message: "Data upgrade step failed".into(),
        }],
        errors_total: 1,
    })
}

#[test]
fn a_failed_verdict_stops_the_instance_keeps_its_logs_and_is_a_step_failure() {
    let server = MemoryServer::new()
        .with_file(
            "/var/log/comindware/prod/Logs/upgrade2026-11-24.log",
            "ERROR ...",
        )
        .with_folder("/mnt/backup/prod")
        .with_tools(|_, action| match action {
            ToolAction::Verdict { .. } => Ok(failed_verdict()),
            other => panic!("unexpected {other:?}"),
        });
    let mut state = fresh_state(&settings());
    let error = run_step(&server, &mut state, "wait-upgrade").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StepFailed, "{error}");
    let message = error.to_string();
    assert!(message.contains("Data upgrade step failed"), "{message}");
    assert!(
        message.contains("cmw-upgrade rollback --instance prod"),
        "{message}"
    );
    assert!(server
        .events()
        .contains(&Happened::Ran("systemctl stop comindwareprod".into())));
    let kept = state.artifact("kept_logs").unwrap().to_owned();
    assert!(kept.starts_with("/mnt/backup/prod/upgrade-logs/"), "{kept}");
    assert_eq!(
        server
            .text(&format!("{kept}/upgrade2026-11-24.log"))
            .as_deref(),
        Some("ERROR ..."),
        "the logs are copied into the bundle"
    );
    assert!(
        server.text(STATE).unwrap().contains(&kept),
        "the artifact is saved at once"
    );
}

#[test]
fn a_bundle_of_another_instance_is_refused_before_it_is_hashed() {
    let server = MemoryServer::new().with_file(
        "/mnt/backup/prod/manifest.json",
        r#"{"instance":"test","platform_version":"4.7.2890.0"}"#,
    );
    let error = run_step(&server, &mut fresh_state(&settings()), "verify-bundle").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CheckFailed);
    assert!(
        error.to_string().contains("backup of instance test"),
        "{error}"
    );
    assert!(
        !server.events().contains(&Happened::Tool("verify")),
        "nothing hashed"
    );
    let missing = MemoryServer::new();
    let error = run_step(&missing, &mut fresh_state(&settings()), "verify-bundle").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("cmw-upgrade backup --instance prod"),
        "{error}"
    );
}

#[test]
fn a_cancelled_wait_stops_between_polls_and_changes_nothing() {
    let mut verdict = failed_verdict();
    if let ToolOutcome::Verdict(report) = &mut verdict {
        report.verdict = Verdict::InProgress;
        report.errors.clear();
    }
    let cancel = crate::cancel::Cancel::new();
    let asked = cancel.clone();
    let server = MemoryServer::new().with_tools(move |_, action| {
        assert!(matches!(action, ToolAction::Verdict { .. }));
        // The caller gives up while the upgrade is still in progress.
        asked.cancel();
        Ok(verdict.clone())
    });
    let started = std::time::Instant::now();
    let error = run_step_until(
        &server,
        &mut fresh_state(&settings()),
        "wait-upgrade",
        &cancel,
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Cancelled, "{error}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "not the 5 s timeout"
    );
    assert!(error.to_string().contains("starts over"), "{error}");
    let ran = format!("{:?}", server.events());
    assert!(!ran.contains("systemctl stop"), "nothing stopped: {ran}");
}

fn succeeded_verdict() -> ToolOutcome {
    let mut verdict = failed_verdict();
    if let ToolOutcome::Verdict(report) = &mut verdict {
        report.verdict = Verdict::Succeeded;
        report.errors.clear();
        report.errors_total = 0;
    }
    verdict
}

#[test]
fn a_rerun_of_a_timed_out_wait_starts_the_stopped_instance_once_and_waits_again() {
    let started = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&started);
    let server = MemoryServer::new()
        .answering(move |_, command| {
            let line = command.argv.join(" ");
            if line == "systemctl start comindwareprod" {
                seen.store(true, Ordering::SeqCst);
            }
            if line == "systemctl is-active comindwareprod" && !seen.load(Ordering::SeqCst) {
                return output(3, "inactive\n");
            }
            output(0, "")
        })
        .with_tools(|_, _| Ok(succeeded_verdict()));
    let mut state = fresh_state(&settings());
    let wait = STEPS
        .iter()
        .position(|step| step.name == "wait-upgrade")
        .unwrap();
    state.steps[wait]
        .artifacts
        .insert("kept_logs".into(), "/mnt/backup/prod/upgrade-logs/1".into());
    run_step(&server, &mut state, "wait-upgrade").unwrap();
    assert!(started.load(Ordering::SeqCst), "{:?}", server.events());
}

#[test]
fn a_resumed_run_may_change_its_time_limits_but_not_what_it_upgrades() {
    let server = MemoryServer::new();
    let mut state = fresh_state(&settings());
    state.steps[0].status = super::state::StepStatus::Done;
    state.save(&server).unwrap();
    let longer = UpgradeSettings {
        upgrade_timeout_seconds: 7200,
        health_timeout_seconds: 600,
        fix_config: true,
        ..settings()
    };
    let resumed = super::load_or_start(&server, &longer).unwrap();
    assert_eq!(
        resumed.settings.unwrap().upgrade_timeout_seconds,
        7200,
        "the new limit is taken"
    );
    let other = UpgradeSettings {
        bundle: "/mnt/backup/other".into(),
        port: 81,
        ..settings()
    };
    let error = super::load_or_start(&server, &other).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StateConflict);
    let message = error.to_string();
    assert!(
        message.contains("bundle: /mnt/backup/prod recorded, /mnt/backup/other given")
            && message.contains("port: 8080 recorded, 81 given"),
        "{message}"
    );
    assert!(!message.contains("timeout"), "{message}");
}

#[test]
fn a_rollback_without_its_bundle_does_the_rest_and_says_what_it_could_not() {
    let server = MemoryServer::new()
        .with_file(
            "/var/log/comindware/prod/Logs/upgrade2026-11-24.log",
            "ERROR ...",
        )
        .with_tools(|_, action| panic!("nothing to restore from: {action:?}"));
    let mut state = fresh_state(&settings());
    for step in &mut state.steps {
        if ["create-instance", "transfer-data"].contains(&step.name.as_str()) {
            step.status = super::state::StepStatus::Done;
        }
    }
    let mut ignore = |_: &super::Event| {};
    let error = super::steps::rollback(&server, &settings(), &mut state, &mut ignore).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StepFailed, "{error}");
    let message = error.to_string();
    assert!(
        message.contains("the bundle /mnt/backup/prod is gone"),
        "{message}"
    );
    assert!(!message.contains("back in place"), "{message}");
    assert!(server
        .events()
        .contains(&Happened::Ran("systemctl stop comindwareprod".into())));
    let kept = server
        .list_dir("/var/lib/cmw-upgrade/prod/upgrade-logs")
        .unwrap();
    assert_eq!(kept.len(), 1, "the logs are kept in the run's folder");
}
