//! `cmw-upgrade logs verdict`.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cmw_upgrade_core::disk::Disk;
use cmw_upgrade_core::logs::{
    upgrade_verdict_since, LogFileStatus, LogWatcher, Since, UpgradeVerdict, Verdict,
};
use serde::Serialize;

use crate::args::{GlobalArgs, VerdictArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::{human_duration, print_outcome};

#[derive(Serialize)]
struct VerdictReport<'a> {
    #[serde(flatten)]
    verdict: &'a UpgradeVerdict,
    /// Seconds spent waiting, with --wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    waited_seconds: Option<f64>,
}

pub fn verdict(global: &GlobalArgs, args: VerdictArgs) -> Result<ExitStatus, CliError> {
    let log_dir: PathBuf = match (&args.instance, &args.log_dir) {
        (Some(instance), _) => Disk::new(&global.root).log_dir(instance)?.path,
        (None, Some(dir)) => super::server_arg(global, dir, "--log-dir")?,
        (None, None) => unreachable!("clap requires --instance or --log-dir"),
    };
    let (result, waited) = match args.wait {
        None => (upgrade_verdict_since(&log_dir, args.since)?, None),
        Some(limit) => {
            let started = Instant::now();
            let result =
                wait_for_verdict(&log_dir, args.since, limit, args.interval, !global.json)?;
            (result, Some(started.elapsed()))
        }
    };
    if global.json {
        print_outcome(
            &VerdictReport {
                verdict: &result,
                waited_seconds: waited.map(|waited| waited.as_secs_f64()),
            },
            result.verdict == Verdict::Succeeded,
            false,
        )?;
    } else {
        print_text(&mut crate::output::stdout(), &result, waited)?;
    }
    Ok(match result.verdict {
        Verdict::Succeeded => ExitStatus::Success,
        Verdict::Failed => ExitStatus::Failed,
        Verdict::InProgress | Verdict::NotStarted => ExitStatus::NotFinished,
    })
}

/// Polls until the verdict is final or `limit` passes; draws a progress line on a terminal.
fn wait_for_verdict(
    log_dir: &std::path::Path,
    since: Option<Since>,
    limit: Duration,
    interval: Duration,
    allow_progress: bool,
) -> Result<UpgradeVerdict, CliError> {
    let mut watcher = LogWatcher::new(log_dir).since(since);
    let started = Instant::now();
    let progress = allow_progress && crate::output::stderr_is_styled_terminal();
    let mut stderr = crate::output::stderr();
    loop {
        let result = watcher.poll()?;
        let elapsed = started.elapsed();
        if progress {
            let _ = write!(
                stderr,
                "\r\x1b[2Kwaiting for the data-structure upgrade: {} after {} of {} (ontology {}, upgrade log {})",
                result.verdict.as_str(),
                human_duration(elapsed),
                human_duration(limit),
                progress_word(&result.ontology_log),
                progress_word(&result.upgrade_log),
            );
            let _ = stderr.flush();
        }
        if result.verdict.is_final() || elapsed >= limit {
            if progress {
                let _ = writeln!(stderr);
            }
            return Ok(result);
        }
        std::thread::sleep(
            interval
                .min(limit.saturating_sub(elapsed))
                .max(Duration::from_millis(10)),
        );
    }
}

fn progress_word(status: &LogFileStatus) -> &'static str {
    match (&status.file, status.completed) {
        (None, _) => "not yet",
        (Some(_), false) => "running",
        (Some(_), true) => "completed",
    }
}

fn print_text(
    out: &mut impl Write,
    result: &UpgradeVerdict,
    waited: Option<Duration>,
) -> std::io::Result<()> {
    let headline = match result.verdict {
        Verdict::Succeeded => "SUCCEEDED: the data-structure upgrade completed without errors; continue with the cache cleanup.",
        Verdict::Failed => "FAILED: the upgrade logs hold errors. Do not continue: reinstall the old version, restore the database from the backup, and keep these logs for support.",
        Verdict::InProgress => "IN PROGRESS: the upgrade has started and shows no error yet; check again later or use --wait.",
        Verdict::NotStarted => "NOT STARTED: no upgrade log yet; is the instance running on the copied database?",
    };
    writeln!(out, "{headline}")?;
    if let Some(waited) = waited {
        writeln!(out, "(waited {})", human_duration(waited))?;
    }
    writeln!(out, "log folder: {}", result.log_dir.display())?;
    for (name, status) in [
        ("UpgradeOntology.log", &result.ontology_log),
        ("upgrade<date>.log", &result.upgrade_log),
    ] {
        match &status.file {
            None => writeln!(out, "  {name}: missing")?,
            Some(file) => writeln!(
                out,
                "  {file}: {}; last record: {}",
                if status.completed {
                    "completed"
                } else {
                    "not completed"
                },
                status.last_record.as_deref().unwrap_or("(empty)")
            )?,
        }
    }
    if !result.errors.is_empty() {
        writeln!(out, "errors ({}):", result.errors_total)?;
        for error in &result.errors {
            let level = if error.level.is_empty() {
                "-"
            } else {
                &error.level
            };
            writeln!(
                out,
                "  {}:{}: {level} [{}] {}",
                error.file,
                error.line,
                error.reason.as_str(),
                error.message
            )?;
        }
        if result.errors_total > result.errors.len() as u64 {
            writeln!(
                out,
                "  ... and {} more",
                result.errors_total - result.errors.len() as u64
            )?;
        }
    }
    Ok(())
}
