//! Whether the platform's data-structure upgrade succeeded, from its logs.
//!
//! Two logs tell: `UpgradeOntology.log`, whose last record reads
//! `Upgrade of ontology completed successfully` when done, and the newest dated
//! upgrade log (`upgrade<YYYY-MM-DD>.log`, also named `update_<YYYY-MM-DD>.log`),
//! whose last record reads `Upgrade completed`. Any error record in either means
//! the upgrade failed and must not be continued.
//!
//! Every file of the run is scanned for errors: with a start time (`since`),
//! each dated upgrade log of that day or later (a run that crosses midnight
//! writes two), and of each log its rotated parts: logrotate's `<name>.1`,
//! `<name>.2.gz` and `<name>-20261127[.gz]` (`dateext`), and NLog's archives
//! `<stem>.1.log`. Without a start time only the newest dated log counts: an
//! older one may be an earlier attempt's.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::{contains_ignore_ascii_case, Since};
use super::scan::{scan_log_file_since, ErrorRecord, LastRecord, LogScanner};
use crate::error::{Error, Result};

/// The ontology upgrade log's name.
pub const ONTOLOGY_LOG_NAME: &str = "UpgradeOntology.log";
/// What the ontology log's last record says when that part is done.
pub const ONTOLOGY_COMPLETED: &str = "Upgrade of ontology completed successfully";
/// What the dated upgrade log's last record says when the upgrade is done.
pub const UPGRADE_COMPLETED: &str = "Upgrade completed";

/// The outcome of the data-structure upgrade, as far as the logs tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Both logs end with their completion record and hold no error.
    Succeeded,
    /// An error record was found: do not continue; roll back.
    Failed,
    /// Logs exist, no error yet, completion not (yet) in the last records.
    InProgress,
    /// Neither log exists: the instance has not started upgrading.
    NotStarted,
}

impl Verdict {
    /// `succeeded`, `failed`, `in_progress` or `not_started`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Succeeded => "succeeded",
            Verdict::Failed => "failed",
            Verdict::InProgress => "in_progress",
            Verdict::NotStarted => "not_started",
        }
    }

    /// Whether waiting longer cannot change this verdict.
    pub fn is_final(self) -> bool {
        matches!(self, Verdict::Succeeded | Verdict::Failed)
    }
}

/// What one of the two logs showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFileStatus {
    /// The log's name, when it exists.
    pub file: Option<String>,
    /// Whether its last record holds the completion text.
    pub completed: bool,
    /// The first line of its last record.
    pub last_record: Option<String>,
    /// Every file scanned for errors: the log and its rotated parts.
    pub scanned: Vec<String>,
}

/// The verdict over a log folder, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeVerdict {
    /// The verdict.
    pub verdict: Verdict,
    /// The folder the logs were read from.
    pub log_dir: PathBuf,
    /// `UpgradeOntology.log`.
    pub ontology_log: LogFileStatus,
    /// The newest dated upgrade log.
    pub upgrade_log: LogFileStatus,
    /// Error records found, in file order (at most 1000 per file).
    pub errors: Vec<ErrorRecord>,
    /// Error records found in all.
    pub errors_total: u64,
}

/// The date in a dated upgrade log's name: `upgrade2026-11-24.log`,
/// `upgrade_2026-11-24.log`, `update_2026-11-24.log` (any case) give `2026-11-24`.
pub fn dated_upgrade_log_date(name: &str) -> Option<&str> {
    let lower = name.to_ascii_lowercase();
    let prefix_len = ["upgrade", "update"]
        .iter()
        .find(|prefix| lower.starts_with(*prefix))?
        .len();
    let rest = &name[prefix_len..];
    let rest = rest
        .strip_prefix('_')
        .or_else(|| rest.strip_prefix('-'))
        .unwrap_or(rest);
    let date = rest.get(..10)?;
    let suffix = rest.get(10..)?;
    let bytes = date.as_bytes();
    let is_date = bytes.iter().enumerate().all(|(index, byte)| match index {
        4 | 7 => *byte == b'-',
        _ => byte.is_ascii_digit(),
    });
    (is_date && suffix.eq_ignore_ascii_case(".log")).then_some(date)
}

/// The newest dated upgrade log among `names` (by the date in the name).
pub fn newest_upgrade_log<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .into_iter()
        .filter_map(|name| dated_upgrade_log_date(name).map(|date| (date, name)))
        .max()
        .map(|(_, name)| name)
}

/// How old a rotated part is among the parts of one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PartAge<'a> {
    /// logrotate `dateext`: `<log>-20261127`; an earlier date is older. These come first.
    Dated(&'a str),
    /// `<log>.3`, `<stem>.3.log`: a higher number is older, so it is kept negated.
    Numbered(std::cmp::Reverse<u64>),
}

/// How old `name` is as a rotated part of `log`, or `None` when it is not one.
fn part_age<'a>(log: &str, name: &'a str) -> Option<PartAge<'a>> {
    let base = name.strip_suffix(".gz").unwrap_or(name);
    let number = |digits: &str| {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| PartAge::Numbered(std::cmp::Reverse(digits.parse().unwrap_or(u64::MAX))))
    };
    if let Some(rest) = base.strip_prefix(log) {
        if let Some(digits) = rest.strip_prefix('.') {
            return number(digits);
        }
        if let Some(date) = rest.strip_prefix('-') {
            let is_date = date.len() >= 8 && date.bytes().all(|b| b.is_ascii_digit());
            return is_date.then_some(PartAge::Dated(date));
        }
        return None;
    }
    let stem = log.strip_suffix(".log")?;
    let digits = base
        .strip_prefix(stem)?
        .strip_prefix('.')?
        .strip_suffix(".log")?;
    number(digits)
}

/// The rotated parts of `log` among `names`, oldest first: logrotate's
/// `<log>.N` and `<log>-DATE` (either gzip-compressed as `.gz`) and NLog's
/// `<stem>.N.log`, the highest number and the earliest date being the oldest.
pub fn rotated_parts<'a>(log: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut parts: Vec<(PartAge<'a>, &str)> = names
        .into_iter()
        .filter_map(|name| part_age(log, name).map(|age| (age, name)))
        .collect();
    parts.sort();
    parts.into_iter().map(|(_, name)| name).collect()
}

/// The verdict from what the two logs showed. Pure.
pub fn decide(ontology: &LogFileStatus, upgrade: &LogFileStatus, errors_total: u64) -> Verdict {
    if ontology.file.is_none() && upgrade.file.is_none() {
        Verdict::NotStarted
    } else if errors_total > 0 {
        Verdict::Failed
    } else if ontology.completed && upgrade.completed {
        Verdict::Succeeded
    } else {
        Verdict::InProgress
    }
}

/// Which files of a folder listing make up one tracked log.
struct TrackedLog<'a> {
    main: Option<&'a str>,
    /// The files in the order records were written: for each log of the run
    /// (for the upgrade log, each dated one, oldest first) its rotated parts,
    /// oldest first, then the log itself; `main` is the last.
    scanned: Vec<&'a str>,
    completion: &'static str,
}

/// The dated upgrade logs of this run: the newest, and with a start time every
/// one of that day or later; oldest first.
fn upgrade_logs_of_run(names: &[String], since: Option<Since>) -> Vec<&str> {
    let newest = newest_upgrade_log(names.iter().map(String::as_str));
    let mut logs: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .filter_map(|name| dated_upgrade_log_date(name).map(|date| (date, name)))
        .filter(|(date, name)| {
            Some(*name) == newest || since.is_some_and(|since| *date >= since.date())
        })
        .collect();
    logs.sort();
    logs.into_iter().map(|(_, name)| name).collect()
}

fn tracked_logs(names: &[String], since: Option<Since>) -> [TrackedLog<'_>; 2] {
    let ontology: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| *name == ONTOLOGY_LOG_NAME)
        .collect();
    let upgrade = upgrade_logs_of_run(names, since);
    [(ontology, ONTOLOGY_COMPLETED), (upgrade, UPGRADE_COMPLETED)].map(|(logs, completion)| {
        let mut scanned = Vec::new();
        for log in &logs {
            scanned.extend(rotated_parts(log, names.iter().map(String::as_str)));
            scanned.push(*log);
        }
        TrackedLog {
            main: logs.last().copied(),
            scanned,
            completion,
        }
    })
}

fn list_file_names(log_dir: &Path) -> Result<Vec<String>> {
    let entries = fs::read_dir(log_dir).map_err(|error| Error::io("list", log_dir, error))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| Error::io("list", log_dir, error))?;
        if entry.path().is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Whether a last record was written at or after `since` (any, without one).
fn this_attempts(record: &LastRecord, since: Option<Since>) -> bool {
    since.is_none_or(|since| !since.is_after_record(record.text.as_bytes()))
}

fn status(tracked: &TrackedLog<'_>, last: Option<&LastRecord>) -> LogFileStatus {
    LogFileStatus {
        file: tracked.main.map(str::to_owned),
        completed: last
            .is_some_and(|record| contains_ignore_ascii_case(&record.text, tracked.completion)),
        last_record: last.map(|record| record.first_line().to_owned()),
        scanned: tracked
            .scanned
            .iter()
            .map(|name| (*name).to_owned())
            .collect(),
    }
}

fn assemble(
    log_dir: &Path,
    statuses: [LogFileStatus; 2],
    scanners: Vec<&LogScanner>,
) -> UpgradeVerdict {
    let errors_total = scanners.iter().map(|scanner| scanner.errors_total()).sum();
    let errors = scanners
        .iter()
        .flat_map(|scanner| scanner.errors().iter().cloned())
        .collect();
    let [ontology_log, upgrade_log] = statuses;
    UpgradeVerdict {
        verdict: decide(&ontology_log, &upgrade_log, errors_total),
        log_dir: log_dir.to_path_buf(),
        ontology_log,
        upgrade_log,
        errors,
        errors_total,
    }
}

/// The verdict over a log folder, read once: each file scanned for errors in
/// one forward pass, which also keeps each log's last record.
///
/// # Errors
/// [`Error::Io`] when the folder cannot be listed or a log cannot be read.
pub fn upgrade_verdict(log_dir: &Path) -> Result<UpgradeVerdict> {
    upgrade_verdict_since(log_dir, None)
}

/// [`upgrade_verdict`] counting only records written at or after `since`: a
/// folder that still holds an earlier attempt's records (a retry) never
/// passes them off as this attempt's verdict.
///
/// # Errors
/// As [`upgrade_verdict`].
pub fn upgrade_verdict_since(log_dir: &Path, since: Option<Since>) -> Result<UpgradeVerdict> {
    let names = list_file_names(log_dir)?;
    let tracked = tracked_logs(&names, since);
    let mut scanners = Vec::new();
    let mut statuses = Vec::new();
    for log in &tracked {
        let mut main_last = None;
        for name in &log.scanned {
            let scanner = scan_log_file_since(&log_dir.join(name), name, since)?;
            // The forward scan keeps the last record's head: no second read from the end,
            // which could not decode a UTF-16 log anyway.
            if Some(*name) == log.main {
                main_last = scanner
                    .last_record()
                    .filter(|record| this_attempts(record, since));
            }
            scanners.push(scanner);
        }
        statuses.push(status(log, main_last.as_ref()));
    }
    let statuses: [LogFileStatus; 2] = statuses.try_into().expect("two tracked logs");
    Ok(assemble(log_dir, statuses, scanners.iter().collect()))
}

/// Watches a log folder: each [`LogWatcher::poll`] reads only what was appended
/// since the previous one.
///
/// Files are tracked by device and inode, so a log rotated to `<name>.1` while
/// waiting keeps its scan position instead of being read again, and a log
/// truncated or replaced is read from its start.
#[derive(Debug)]
pub struct LogWatcher {
    log_dir: PathBuf,
    scanners: HashMap<(u64, u64), LogScanner>,
    since: Option<Since>,
}

impl LogWatcher {
    /// A watcher on `log_dir`; nothing is read until the first poll.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        LogWatcher {
            log_dir: log_dir.into(),
            scanners: HashMap::new(),
            since: None,
        }
    }

    /// The same watcher counting only records written at or after `since`.
    #[must_use]
    pub fn since(mut self, since: Option<Since>) -> Self {
        self.since = since;
        self
    }

    /// The folder being watched.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Reads what was appended and gives the verdict now. A missing folder is
    /// `not_started` (the instance may not have created it yet).
    ///
    /// # Errors
    /// [`Error::Io`] when the folder exists but cannot be listed, or a log cannot be read.
    pub fn poll(&mut self) -> Result<UpgradeVerdict> {
        let names = match list_file_names(&self.log_dir) {
            Ok(names) => names,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Vec::new()
            }
            Err(error) => return Err(error),
        };
        let tracked = tracked_logs(&names, self.since);
        let mut seen = Vec::new();
        let mut previews: Vec<LogScanner> = Vec::new();
        let mut statuses = Vec::new();
        for log in &tracked {
            let mut main_last = None;
            for name in &log.scanned {
                let path = self.log_dir.join(name);
                let metadata = match fs::metadata(&path) {
                    Ok(metadata) => metadata,
                    // Rotated away between listing and reading: the next poll sees it.
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(Error::io("inspect", &path, error)),
                };
                let key = (metadata.dev(), metadata.ino());
                seen.push(key);
                let scanner = self
                    .scanners
                    .entry(key)
                    .or_insert_with(|| LogScanner::new(*name).since(self.since));
                if metadata.len() < scanner.offset() {
                    *scanner = LogScanner::new(*name).since(self.since);
                }
                match scanner.scan_file(&path, false) {
                    Ok(()) => {}
                    // logrotate is still compressing this part: the next poll reads it whole.
                    Err(Error::Io {
                        action: "decompress",
                        source,
                        ..
                    }) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
                        self.scanners.remove(&key);
                        continue;
                    }
                    Err(error) => return Err(error),
                }
                // A last line still being written counts for this verdict only.
                let mut preview = scanner.clone();
                preview.scan_file(&path, true)?;
                if Some(*name) == log.main {
                    main_last = preview
                        .last_record()
                        .filter(|record| this_attempts(record, self.since));
                }
                previews.push(preview);
            }
            statuses.push(status(log, main_last.as_ref()));
        }
        self.scanners.retain(|key, _| seen.contains(key));
        let statuses: [LogFileStatus; 2] = statuses.try_into().expect("two tracked logs");
        Ok(assemble(&self.log_dir, statuses, previews.iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_before_a_moment_are_an_earlier_attempts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("UpgradeOntology.log"),
            "2026-11-24 10:00:00,000 INFO Upgrade of ontology completed successfully\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("upgrade2026-11-24.log"),
            "2026-11-24 10:00:01,000 ERROR step failed\n  at Upgrade.Run()\n\
             2026-11-24 10:00:02,000 INFO Upgrade completed\n",
        )
        .unwrap();
        let all = upgrade_verdict(dir.path()).unwrap();
        assert_eq!((all.verdict, all.errors_total), (Verdict::Failed, 1));
        let since = |text: &str| Some(Since::parse(text).unwrap());
        let before = upgrade_verdict_since(dir.path(), since("2026-11-24 09:59:59")).unwrap();
        assert_eq!((before.verdict, before.errors_total), (Verdict::Failed, 1));
        let after = upgrade_verdict_since(dir.path(), since("2026-11-24T10:00:03")).unwrap();
        assert_eq!(
            after.errors_total, 0,
            "the earlier attempt's error does not count"
        );
        assert!(!after.ontology_log.completed && !after.upgrade_log.completed);
        assert_ne!(after.verdict, Verdict::Succeeded);
        let mut watcher = LogWatcher::new(dir.path()).since(since("2026-11-24 10:00:03"));
        assert_eq!(watcher.poll().unwrap().verdict, after.verdict);
        for bad in [
            "2026-11-24",
            "yesterday",
            "2026-11-24 10:00",
            "2026/11/24 10:00:00",
        ] {
            assert!(Since::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dated_log_names() {
        assert_eq!(
            dated_upgrade_log_date("upgrade2026-11-24.log"),
            Some("2026-11-24")
        );
        assert_eq!(
            dated_upgrade_log_date("update_2026-11-24.log"),
            Some("2026-11-24")
        );
        assert_eq!(
            dated_upgrade_log_date("Upgrade_2026-11-24.LOG"),
            Some("2026-11-24")
        );
        for name in [
            "UpgradeOntology.log",
            "upgrade2026-11-24.log.1",
            "upgrade2026-1-24.log",
            "upgrade.log",
            "heartbeat_2026-11-24.log",
            "upgrade2026-11-24.txt",
            "upgradé",
        ] {
            assert_eq!(dated_upgrade_log_date(name), None, "{name}");
        }
    }

    #[test]
    fn newest_dated_log_wins() {
        let names = [
            "upgrade2026-11-23.log",
            "update_2026-11-25.log",
            "upgrade2026-11-24.log",
            "UpgradeOntology.log",
        ];
        assert_eq!(newest_upgrade_log(names), Some("update_2026-11-25.log"));
        assert_eq!(newest_upgrade_log(["error.log"]), None);
    }

    #[test]
    fn rotated_parts_oldest_first() {
        let names = [
            "a.log", "a.log.1", "a.log.10", "a.log.2", "a.log.x", "a.log.", "b.log.1",
        ];
        assert_eq!(
            rotated_parts("a.log", names),
            ["a.log.10", "a.log.2", "a.log.1"]
        );
    }

    #[test]
    fn logrotate_and_nlog_parts_are_found_oldest_first() {
        let names = [
            "a.log",
            "a.log.1",
            "a.log.2.gz",
            "a.log-20261127",
            "a.log-20261126.gz",
            "a.3.log",
            "a.4.log.gz",
            "a.log.gz",
            "a.log-2026.gz",
            "a.log-2026112x",
            "a.x.log",
            "a..log",
            "a.log.1.gz.tmp",
            "ab.1.log",
            "b.log-20261127",
        ];
        assert_eq!(
            rotated_parts("a.log", names),
            [
                "a.log-20261126.gz",
                "a.log-20261127",
                "a.4.log.gz",
                "a.3.log",
                "a.log.2.gz",
                "a.log.1"
            ]
        );
        assert_eq!(
            rotated_parts(
                "UpgradeOntology.log",
                ["UpgradeOntology.1.log", "UpgradeOntology.log.1"]
            ),
            ["UpgradeOntology.1.log", "UpgradeOntology.log.1"]
        );
    }

    #[test]
    fn with_a_start_time_every_dated_log_from_that_day_on_is_the_runs() {
        let names: Vec<String> = [
            "upgrade2026-11-26.log",
            "upgrade2026-11-27.log",
            "upgrade2026-11-27.log.1.gz",
            "update_2026-11-28.log",
            "UpgradeOntology.log",
            "UpgradeOntology.1.log",
        ]
        .map(str::to_owned)
        .to_vec();
        let since = Since::parse("2026-11-27 23:50:00").ok();
        let [ontology, upgrade] = tracked_logs(&names, since);
        assert_eq!(
            ontology.scanned,
            ["UpgradeOntology.1.log", "UpgradeOntology.log"]
        );
        assert_eq!(
            upgrade.scanned,
            [
                "upgrade2026-11-27.log.1.gz",
                "upgrade2026-11-27.log",
                "update_2026-11-28.log"
            ]
        );
        assert_eq!(upgrade.main, Some("update_2026-11-28.log"));
        let [_, without] = tracked_logs(&names, None);
        assert_eq!(without.scanned, ["update_2026-11-28.log"]);
        // A start after the newest log's day still reads the newest (it may be this run's).
        let later = Since::parse("2026-11-29 00:10:00").ok();
        let [_, later] = tracked_logs(&names, later);
        assert_eq!(later.scanned, ["update_2026-11-28.log"]);
    }

    fn status_of(exists: bool, completed: bool) -> LogFileStatus {
        LogFileStatus {
            file: exists.then(|| "x.log".to_owned()),
            completed,
            last_record: None,
            scanned: Vec::new(),
        }
    }

    #[test]
    fn the_decision_table() {
        let cases = [
            ((false, false), (false, false), 0, Verdict::NotStarted),
            ((false, false), (false, false), 3, Verdict::NotStarted),
            ((true, false), (false, false), 0, Verdict::InProgress),
            ((true, true), (false, false), 0, Verdict::InProgress),
            ((true, true), (true, false), 0, Verdict::InProgress),
            ((true, true), (true, true), 0, Verdict::Succeeded),
            ((true, true), (true, true), 1, Verdict::Failed),
            ((false, false), (true, false), 2, Verdict::Failed),
        ];
        for ((o_exists, o_done), (u_exists, u_done), errors, expected) in cases {
            assert_eq!(
                decide(
                    &status_of(o_exists, o_done),
                    &status_of(u_exists, u_done),
                    errors
                ),
                expected,
                "{o_exists} {o_done} {u_exists} {u_done} {errors}"
            );
        }
    }
}
