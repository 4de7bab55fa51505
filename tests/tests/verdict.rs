//! The upgrade verdict over real log folders, one-shot and while waiting.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use cmw_upgrade_core::logs::{upgrade_verdict, ErrorReason, LogWatcher, Verdict};
use cmw_upgrade_tests::{log_record, upgrade_logs, UpgradeLogState};

fn folder_with(state: UpgradeLogState) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in upgrade_logs(state) {
        fs::write(dir.path().join(name), content).unwrap();
    }
    fs::write(
        dir.path().join("heartbeat_2026-11-24.log"),
        log_record(
            "09:00:00",
            "ERROR",
            "heartbeat errors are not upgrade errors",
        ),
    )
    .unwrap();
    dir
}

fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

#[test]
fn each_state_gives_its_verdict() {
    for (state, expected) in [
        (UpgradeLogState::NotStarted, Verdict::NotStarted),
        (UpgradeLogState::InProgress, Verdict::InProgress),
        (UpgradeLogState::Succeeded, Verdict::Succeeded),
        (UpgradeLogState::Failed, Verdict::Failed),
    ] {
        let dir = folder_with(state);
        let verdict = upgrade_verdict(dir.path()).unwrap();
        assert_eq!(verdict.verdict, expected, "{state:?}");
        // The watcher's first poll agrees with the one-shot verdict.
        assert_eq!(
            LogWatcher::new(dir.path()).poll().unwrap(),
            verdict,
            "{state:?}"
        );
    }
}

#[test]
fn a_failed_upgrade_reports_file_line_level_reason_and_message() {
    let dir = folder_with(UpgradeLogState::Failed);
    let verdict = upgrade_verdict(dir.path()).unwrap();
    assert_eq!(verdict.errors.len(), 1);
    let error = &verdict.errors[0];
    assert_eq!(error.file, "upgrade2026-11-24.log");
    assert_eq!(error.line, 4);
    assert_eq!(error.level, "ERROR");
    assert_eq!(error.reason, ErrorReason::Level);
    assert!(
        error.message.contains("MigrateStreams"),
        "{}",
        error.message
    );
    assert_eq!(
        verdict
            .upgrade_log
            .last_record
            .as_deref()
            .map(|l| l.ends_with("'Upgrade stopped'")),
        Some(true)
    );
}

#[test]
fn the_newest_dated_log_counts_and_rotated_parts_are_scanned() {
    let dir = folder_with(UpgradeLogState::Succeeded);
    // An older day's failed attempt does not count against today's success.
    fs::write(
        dir.path().join("update_2026-11-20.log"),
        log_record("10:00:00", "ERROR", "old attempt"),
    )
    .unwrap();
    assert_eq!(
        upgrade_verdict(dir.path()).unwrap().verdict,
        Verdict::Succeeded
    );
    // A rotated part of today's log does.
    fs::write(
        dir.path().join("upgrade2026-11-24.log.1"),
        log_record("09:00:00", "INFO", "Step failed with error 0x80004005"),
    )
    .unwrap();
    let verdict = upgrade_verdict(dir.path()).unwrap();
    assert_eq!(verdict.verdict, Verdict::Failed);
    assert_eq!(verdict.errors[0].file, "upgrade2026-11-24.log.1");
    assert_eq!(verdict.errors[0].reason, ErrorReason::Keyword);
    assert_eq!(
        verdict.upgrade_log.scanned,
        ["upgrade2026-11-24.log.1", "upgrade2026-11-24.log"]
    );
}

#[test]
fn a_missing_folder_is_an_error_once_and_not_started_while_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("Logs");
    assert!(upgrade_verdict(&missing).is_err());
    assert_eq!(
        LogWatcher::new(&missing).poll().unwrap().verdict,
        Verdict::NotStarted
    );
}

#[test]
fn waiting_follows_the_logs_as_they_grow() {
    let dir = tempfile::tempdir().unwrap();
    let mut watcher = LogWatcher::new(dir.path());
    assert_eq!(watcher.poll().unwrap().verdict, Verdict::NotStarted);
    let ontology = dir.path().join("UpgradeOntology.log");
    let upgrade = dir.path().join("upgrade2026-11-24.log");
    append(
        &ontology,
        &log_record("10:00:00", "INFO", "Upgrade of ontology started"),
    );
    assert_eq!(watcher.poll().unwrap().verdict, Verdict::InProgress);
    append(
        &ontology,
        &log_record(
            "10:00:01",
            "INFO",
            "Upgrade of ontology completed successfully",
        ),
    );
    append(&upgrade, &log_record("10:00:02", "INFO", "Upgrade started"));
    // A record still being written: "Upgrade completed" without its line end yet.
    append(&upgrade, "2026-11-24 10:00:03,000 INFO x y z 'Upgrade comp");
    assert_eq!(watcher.poll().unwrap().verdict, Verdict::InProgress);
    append(&upgrade, "leted'\n");
    let verdict = watcher.poll().unwrap();
    assert_eq!(verdict.verdict, Verdict::Succeeded);
    assert_eq!(verdict, upgrade_verdict(dir.path()).unwrap());
}

#[test]
fn waiting_reads_only_what_was_appended() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in upgrade_logs(UpgradeLogState::InProgress) {
        fs::write(dir.path().join(name), content).unwrap();
    }
    let upgrade = dir.path().join("upgrade2026-11-24.log");
    let mut watcher = LogWatcher::new(dir.path());
    assert_eq!(watcher.poll().unwrap().verdict, Verdict::InProgress);
    // Overwrite already-read bytes in place (same length, same inode): a watcher that
    // re-read the file would now see an Error record; one that reads only appended bytes does not.
    let text = fs::read_to_string(&upgrade).unwrap();
    let tampered = text.replacen(" INFO ", " ERROR", 1);
    assert_eq!(tampered.len(), text.len());
    let mut file = OpenOptions::new().write(true).open(&upgrade).unwrap();
    file.write_all(tampered.as_bytes()).unwrap();
    drop(file);
    assert_eq!(watcher.poll().unwrap().verdict, Verdict::InProgress);
    // Appended errors are seen.
    append(&upgrade, &log_record("10:05:00", "Fatal", "out of memory"));
    let verdict = watcher.poll().unwrap();
    assert_eq!(verdict.verdict, Verdict::Failed);
    assert_eq!(verdict.errors.len(), 1);
    assert_eq!(verdict.errors[0].level, "Fatal");
}

#[test]
fn a_rotation_while_waiting_keeps_errors_and_position() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in upgrade_logs(UpgradeLogState::InProgress) {
        fs::write(dir.path().join(name), content).unwrap();
    }
    let upgrade = dir.path().join("upgrade2026-11-24.log");
    append(
        &upgrade,
        &log_record("10:04:00", "Error", "transient failure"),
    );
    let mut watcher = LogWatcher::new(dir.path());
    assert_eq!(watcher.poll().unwrap().errors.len(), 1);
    // The platform rotates the big log and starts a fresh one.
    fs::rename(&upgrade, dir.path().join("upgrade2026-11-24.log.1")).unwrap();
    append(
        &upgrade,
        &log_record("10:06:00", "INFO", "Upgrade completed"),
    );
    let verdict = watcher.poll().unwrap();
    assert_eq!(
        verdict.errors.len(),
        1,
        "the error moved with the rotated file and is reported once"
    );
    assert_eq!(verdict.verdict, Verdict::Failed);
    assert!(verdict.upgrade_log.completed);
}

#[test]
fn log_and_logs_folders_are_both_found_by_layout() {
    use cmw_upgrade_core::disk::Disk;
    use cmw_upgrade_core::InstanceName;
    let dir = tempfile::tempdir().unwrap();
    let instance = InstanceName::new("prod").unwrap();
    fs::create_dir_all(dir.path().join("var/log/comindware/prod/Log")).unwrap();
    assert!(Disk::new(dir.path())
        .log_dir(&instance)
        .unwrap()
        .path
        .ends_with("prod/Log"));
    fs::create_dir_all(dir.path().join("var/log/comindware/prod/Logs")).unwrap();
    assert!(Disk::new(dir.path())
        .log_dir(&instance)
        .unwrap()
        .path
        .ends_with("prod/Logs"));
}
