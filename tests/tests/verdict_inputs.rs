//! The upgrade verdict on the logs real servers hold: a run across midnight,
//! rotated and compressed parts, UTF-16, other loggers' layouts, unreadable
//! encodings, and lines longer than any buffer.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use cmw_upgrade_core::logs::{
    upgrade_verdict, upgrade_verdict_since, ErrorReason, LogWatcher, Since, Verdict,
};
use cmw_upgrade_core::ErrorKind;

const ONTOLOGY_DONE: &str =
    "2026-11-27 23:40:00,000 INFO Upgrade of ontology completed successfully\n";

fn since(text: &str) -> Option<Since> {
    Some(Since::parse(text).unwrap())
}

fn gzip(path: &Path) {
    let status = Command::new("gzip").arg("-n").arg(path).status().unwrap();
    assert!(status.success(), "gzip {}", path.display());
}

/// `text` in UTF-16 with a byte-order mark, as iconv writes it.
fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let (bom, target): (&[u8], &str) = if big_endian {
        (b"\xfe\xff", "UTF-16BE")
    } else {
        (b"\xff\xfe", "UTF-16LE")
    };
    let mut iconv = Command::new("iconv")
        .args(["-f", "UTF-8", "-t", target])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    iconv
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = iconv.wait_with_output().unwrap();
    assert!(output.status.success());
    [bom, &output.stdout].concat()
}

/// The one-shot verdict and a watcher's first poll, which must agree.
fn both_verdicts(dir: &Path, since: Option<Since>) -> cmw_upgrade_core::UpgradeVerdict {
    let verdict = upgrade_verdict_since(dir, since).unwrap();
    let watched = LogWatcher::new(dir).since(since).poll().unwrap();
    assert_eq!(watched, verdict);
    verdict
}

#[test]
fn a_run_across_midnight_fails_on_an_error_in_the_earlier_days_log() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("UpgradeOntology.log"),
        "2026-11-27 23:44:30,000 INFO Upgrade of ontology completed successfully\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("upgrade2026-11-26.log"),
        "2026-11-26 10:00:00,000 ERROR an earlier day's attempt\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("upgrade2026-11-27.log"),
        "2026-11-27 23:45:00,000 INFO Upgrade started\n\
         2026-11-27 23:59:58,000 ERROR Cannot migrate stream 42\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("upgrade2026-11-28.log"),
        "2026-11-28 00:00:01,000 INFO Upgrade completed\n",
    )
    .unwrap();
    let verdict = both_verdicts(dir.path(), since("2026-11-27 23:44:00"));
    assert_eq!(verdict.verdict, Verdict::Failed);
    assert_eq!(verdict.errors_total, 1, "{:?}", verdict.errors);
    assert_eq!(
        (verdict.errors[0].file.as_str(), verdict.errors[0].line),
        ("upgrade2026-11-27.log", 2)
    );
    assert!(verdict.upgrade_log.completed);
    assert_eq!(
        verdict.upgrade_log.file.as_deref(),
        Some("upgrade2026-11-28.log")
    );
    assert_eq!(
        verdict.upgrade_log.scanned,
        ["upgrade2026-11-27.log", "upgrade2026-11-28.log"]
    );
    // Without the error, the same two days succeed.
    fs::write(
        dir.path().join("upgrade2026-11-27.log"),
        "2026-11-27 23:45:00,000 INFO Upgrade started\n",
    )
    .unwrap();
    let verdict = both_verdicts(dir.path(), since("2026-11-27 23:44:00"));
    assert_eq!(verdict.verdict, Verdict::Succeeded);
}

#[test]
fn errors_in_rotated_compressed_and_archived_parts_count() {
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
    log("UpgradeOntology.log", ONTOLOGY_DONE);
    log(
        "UpgradeOntology.1.log",
        "2026-11-27 23:30:00.0001|Info|Ontology|patch 1\n\
         2026-11-27 23:30:01.0001|Error|Ontology|patch 2 failed\n",
    );
    log(
        "upgrade2026-11-27.log",
        "2026-11-27 23:50:00,000 INFO Upgrade completed\n",
    );
    log(
        "upgrade2026-11-27.log.1",
        "2026-11-27 23:49:00,000 INFO step 3\n",
    );
    log(
        "upgrade2026-11-27.log.2",
        "2026-11-27 23:48:00,000 INFO step 2\n  at Step2() error in the trace\n",
    );
    gzip(&dir.path().join("upgrade2026-11-27.log.2"));
    log(
        "upgrade2026-11-27.log-20261126",
        "2026-11-27 23:47:00,000 INFO step 1\n\n2026-11-27 23:47:01,000 Fatal out of memory\n",
    );
    gzip(&dir.path().join("upgrade2026-11-27.log-20261126"));

    let verdict = both_verdicts(dir.path(), since("2026-11-27 23:00:00"));
    assert_eq!(verdict.verdict, Verdict::Failed);
    let found: Vec<_> = verdict
        .errors
        .iter()
        .map(|error| (error.file.as_str(), error.line, error.reason))
        .collect();
    assert_eq!(
        found,
        [
            ("UpgradeOntology.1.log", 2, ErrorReason::Level),
            ("upgrade2026-11-27.log-20261126.gz", 3, ErrorReason::Level),
            ("upgrade2026-11-27.log.2.gz", 1, ErrorReason::Keyword),
        ]
    );
    assert_eq!(verdict.errors[0].message, "Ontology|patch 2 failed");
    assert_eq!(
        verdict.upgrade_log.scanned,
        [
            "upgrade2026-11-27.log-20261126.gz",
            "upgrade2026-11-27.log.2.gz",
            "upgrade2026-11-27.log.1",
            "upgrade2026-11-27.log"
        ]
    );
    // Records in a compressed part before the run began do not count either.
    let later = upgrade_verdict_since(dir.path(), since("2026-11-27 23:49:30")).unwrap();
    assert_eq!(later.errors_total, 0, "{:?}", later.errors);
}

#[test]
fn a_damaged_compressed_part_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("UpgradeOntology.log"), ONTOLOGY_DONE).unwrap();
    let part = dir.path().join("UpgradeOntology.log.1");
    fs::write(&part, "2026-11-27 23:00:00,000 INFO x\n".repeat(100)).unwrap();
    gzip(&part);
    let gz = dir.path().join("UpgradeOntology.log.1.gz");
    let mut bytes = fs::read(&gz).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    bytes[middle + 1] ^= 0x55;
    fs::write(&gz, &bytes).unwrap();
    let error = upgrade_verdict(dir.path()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Io);
    assert!(
        error.to_string().contains("UpgradeOntology.log.1.gz"),
        "{error}"
    );
    // A part cut short is one logrotate is still writing: the watcher reads it next time.
    bytes.truncate(middle);
    fs::write(&gz, &bytes).unwrap();
    assert!(upgrade_verdict(dir.path()).is_err());
    let mut watcher = LogWatcher::new(dir.path());
    assert_eq!(watcher.poll().unwrap().verdict, Verdict::InProgress);
}

#[test]
fn utf16_logs_give_the_same_verdict_and_lines_as_utf8() {
    let ontology = "2026-11-27 10:00:00,000 INFO Онтология\r\n\
                    2026-11-27 10:00:01,000 INFO Upgrade of ontology completed successfully\r\n";
    let upgrade = "2026-11-27 10:00:02,000 INFO Upgrade started 😀\r\n\
                   2026-11-27 10:00:03,000 Warn Поток «42»: error while indexing\r\n\
                   \x20 at Index()\r\n\
                   2026-11-27 10:00:04,000 INFO Upgrade completed\r\n";
    let plain = tempfile::tempdir().unwrap();
    fs::write(plain.path().join("UpgradeOntology.log"), ontology).unwrap();
    fs::write(plain.path().join("upgrade2026-11-27.log"), upgrade).unwrap();
    let expected = both_verdicts(plain.path(), None);
    assert_eq!(expected.verdict, Verdict::Failed);
    assert_eq!(expected.errors[0].line, 2);
    for big_endian in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("UpgradeOntology.log"),
            utf16(ontology, big_endian),
        )
        .unwrap();
        fs::write(
            dir.path().join("upgrade2026-11-27.log"),
            utf16(upgrade, big_endian),
        )
        .unwrap();
        let verdict = both_verdicts(dir.path(), None);
        assert_eq!(verdict.errors, expected.errors, "big endian: {big_endian}");
        assert_eq!(verdict.ontology_log, expected.ontology_log);
        assert_eq!(verdict.upgrade_log, expected.upgrade_log);
        assert_eq!(verdict.verdict, Verdict::Failed);
    }
}

#[test]
fn logs_it_cannot_decode_are_errors_naming_the_file_even_while_waiting() {
    for (name, bytes) in [
        (
            "upgrade2026-11-27.log",
            b"\xff\xfe\x00\x002\x00\x00\x000\x00\x00\x00".to_vec(),
        ),
        (
            "UpgradeOntology.log",
            // UTF-16 without a byte-order mark.
            "2026-11-27 10:00:00,000 INFO x\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(name), bytes).unwrap();
        let error = upgrade_verdict(dir.path()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Io, "{error}");
        let message = error.to_string();
        assert!(message.contains(name), "{message}");
        assert!(message.contains("UTF-8 or UTF-16"), "{message}");
        let waiting = LogWatcher::new(dir.path()).poll().unwrap_err();
        assert_eq!(waiting.to_string(), message);
    }
}

/// Log4net with a thread, NLog's pipes and ISO 8601 stamps with a zone: each
/// error is reported at the line its record starts on, in every file.
#[test]
fn other_layouts_report_errors_at_their_real_lines() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("UpgradeOntology.log"),
        "2026-11-27 10:15:00,001 [1] INFO  Ontology - started\n\
         2026-11-27 10:15:01,002 [12] DEBUG Ontology - patch\n\
         \x20 continued\n\
         2026-11-27 10:15:02,123 [12] ERROR Ontology - patch 2 failed\n\
         System.InvalidOperationException: bad\n\
         \x20  at Patch2()\n\
         2026-11-27 10:15:03,000 [Worker 3] INFO  Ontology - Upgrade of ontology completed successfully\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("upgrade2026-11-27.1.log"),
        "2026-11-27 10:15:02.1234|INFO|Upgrade|step 1\n\
         2026-11-27 10:15:02.2234|WARN|Upgrade|slow\n\
         \x20 detail line\n\
         2026-11-27 10:15:02.3234|ERROR|Upgrade|Cannot migrate\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("upgrade2026-11-27.log"),
        "2026-11-27T10:16:00.000+03:00 INFO Upgrade resumed\n\
         \n\
         2026-11-27T10:16:01.500+03:00 Warn retrying\n\
         \x20 the last try ended in error\n\
         2026-11-27T10:16:02.000Z INFO Upgrade completed\n",
    )
    .unwrap();
    let verdict = both_verdicts(dir.path(), None);
    assert_eq!(verdict.verdict, Verdict::Failed);
    let found: Vec<_> = verdict
        .errors
        .iter()
        .map(|error| {
            (
                error.file.as_str(),
                error.line,
                error.level.as_str(),
                error.reason,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("UpgradeOntology.log", 4, "ERROR", ErrorReason::Level),
            ("upgrade2026-11-27.1.log", 4, "ERROR", ErrorReason::Level),
            ("upgrade2026-11-27.log", 3, "Warn", ErrorReason::Keyword),
        ]
    );
    assert_eq!(verdict.errors[0].message, "Ontology - patch 2 failed");
    assert_eq!(verdict.errors[2].message, "retrying");
    assert!(verdict.ontology_log.completed && verdict.upgrade_log.completed);
    // The zoned stamps count against a start time by the clock they are written in.
    let later = upgrade_verdict_since(dir.path(), since("2026-11-27 10:16:01")).unwrap();
    assert_eq!(
        later
            .errors
            .iter()
            .map(|error| error.line)
            .collect::<Vec<_>>(),
        [3]
    );
}

/// Whatever a line's length, the report keeps a bounded prefix of a record:
/// the message at most 500 bytes, the last record's first line at most 64 KiB.
#[test]
fn the_report_of_a_huge_line_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut ontology = ONTOLOGY_DONE.as_bytes().to_vec();
    ontology.extend(std::iter::repeat_n(0u8, 8 << 20));
    fs::write(dir.path().join("UpgradeOntology.log"), ontology).unwrap();
    let mut upgrade = b"2026-11-27 23:41:00,000 ERROR ".to_vec();
    upgrade.extend(b"lorem ipsum ".repeat(700_000));
    upgrade.extend(b"\n2026-11-27 23:42:00,000 INFO ");
    upgrade.extend(b"x".repeat(5 << 20));
    fs::write(dir.path().join("upgrade2026-11-27.log"), upgrade).unwrap();
    let verdict = both_verdicts(dir.path(), None);
    assert_eq!(verdict.verdict, Verdict::Failed);
    assert_eq!(verdict.errors.len(), 1);
    assert_eq!(verdict.errors[0].line, 1);
    assert!(verdict.errors[0].message.len() <= 500);
    assert!(verdict.errors[0].message.starts_with("lorem ipsum lorem"));
    let last = verdict.upgrade_log.last_record.as_deref().unwrap();
    assert!(last.len() <= 64 * 1024, "{}", last.len());
    assert!(last.starts_with("2026-11-27 23:42:00,000 INFO xxx"));
    // The NUL tail continues the completion record; it does not hide it.
    assert!(verdict.ontology_log.completed);
    let serialized = serde_json::to_string(&verdict).unwrap();
    assert!(serialized.len() < 200 * 1024, "{}", serialized.len());
}

/// The procedure asks for the verdict of a log folder it emptied before the
/// service started: every dated log in it counts, so an error written before
/// midnight fails a run whose newest log is clean.
#[test]
fn the_procedures_verdict_action_reads_every_dated_log_of_the_run() {
    use cmw_upgrade_core::executor::{Executor, LocalExecutor, ToolAction};
    let root = tempfile::tempdir().unwrap();
    let logs = root.path().join("logs");
    fs::create_dir(&logs).unwrap();
    fs::write(logs.join("UpgradeOntology.log"), ONTOLOGY_DONE).unwrap();
    fs::write(
        logs.join("upgrade2026-11-27.log"),
        "2026-11-27 23:45:00,000 INFO Upgrade started\n\
         2026-11-27 23:59:58,000 ERROR Cannot migrate stream 42\n",
    )
    .unwrap();
    fs::write(
        logs.join("upgrade2026-11-28.log"),
        "2026-11-28 00:10:00,000 INFO Upgrade completed\n",
    )
    .unwrap();
    let local = LocalExecutor::new(root.path());
    let verdict = |since: Option<String>| {
        local
            .tool(&ToolAction::Verdict {
                instance: None,
                log_dir: Some("/logs".to_owned()),
                since,
            })
            .unwrap()
            .verdict()
            .unwrap()
            .unwrap()
            .verdict
    };
    assert_eq!(
        verdict(Some(Since::EARLIEST.as_str().to_owned())),
        Verdict::Failed
    );
    // Only the newest day's log, as `logs verdict` without --since reads.
    assert_ne!(verdict(None), Verdict::Failed);
    let refused = local
        .tool(&ToolAction::Verdict {
            instance: None,
            log_dir: Some("/logs".to_owned()),
            since: Some("yesterday".to_owned()),
        })
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::BadRequest);
}
