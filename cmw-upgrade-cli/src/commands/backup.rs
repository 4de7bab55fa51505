//! `cmw-upgrade backup`, `backup verify|drift|import` and `restore`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cmw_upgrade_core::backup::{
    self, BackupMethod, BackupOptions, BackupReport, Phase, Progress, RestoreOptions, ServiceState,
};
use cmw_upgrade_core::executor::LocalExecutor;
use cmw_upgrade_core::InstanceName;

use super::{family_of_root, server_arg};
use crate::args::{
    BackupArgs, BackupCommand, DriftArgs, GlobalArgs, ImportArgs, MethodArg, RestoreArgs,
    VerifyArgs,
};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::{human_bytes, print_outcome};

/// Runs `work` while its progress shows on stderr: a line redrawn on a
/// terminal, or (`--progress json`) a JSON object a second.
fn with_progress<R>(progress: &Progress, global: &GlobalArgs, work: impl FnOnce() -> R) -> R {
    if global.progress == crate::args::ProgressMode::Json && !global.quiet {
        return with_json_progress(progress, work);
    }
    if !global.text_progress() || !crate::output::stderr_is_styled_terminal() {
        return work();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut phase_started = (Phase::Scanning, Instant::now());
            while !done.load(Ordering::Relaxed) {
                let now = progress.snapshot();
                if now.phase != phase_started.0 {
                    phase_started = (now.phase, Instant::now());
                }
                let line = if now.total_bytes > 0 {
                    crate::output::copy_progress_line(
                        now.phase.as_str(),
                        (now.done_bytes, now.total_bytes),
                        (now.done_files, now.total_files),
                        phase_started.1.elapsed(),
                    )
                } else {
                    format!("{}...", now.phase.as_str())
                };
                eprint!("\r\x1b[2K{line}");
                std::thread::sleep(Duration::from_millis(200));
            }
            eprint!("\r\x1b[2K");
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    })
}

/// [`with_progress`] for scripts: `{"event":"copy","phase":…,"done_bytes":…}`
/// once a second and once at the end.
fn with_json_progress<R>(progress: &Progress, work: impl FnOnce() -> R) -> R {
    let done = AtomicBool::new(false);
    let line = || {
        let now = progress.snapshot();
        let mut event = serde_json::to_value(now).unwrap_or_default();
        if let Some(object) = event.as_object_mut() {
            object.insert("event".to_owned(), "copy".into());
        }
        let _ = writeln!(crate::output::stderr(), "{event}");
    };
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                line();
                // A second, in short naps: the end is not held up by the wait.
                for _ in 0..10 {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    });
    line();
    result
}

pub fn run(global: &GlobalArgs, args: BackupArgs) -> Result<ExitStatus, CliError> {
    match args.action {
        Some(BackupCommand::Verify(verify)) => return verify_bundle(global, verify),
        Some(BackupCommand::Drift(drift)) => return bundle_drift(global, drift),
        Some(BackupCommand::Import(args)) => return import(global, args),
        None => {}
    }
    let (Some(instance), Some(destination)) = (args.instance, args.dest) else {
        unreachable!("clap requires --instance and --dest without a subcommand")
    };
    let destination = server_arg(global, &destination, "--dest")?;
    let runner = LocalExecutor::new("/");
    let service = service_state(&runner, &instance);
    let method = backup::choose_method(
        args.method.map(|method| match method {
            MethodArg::Copy => BackupMethod::Copy,
            MethodArg::Snapshot => BackupMethod::Snapshot,
        }),
        service,
        args.accept_crash_consistent,
    )?;
    let options = BackupOptions {
        family: family_of_root(&global.root, args.family)?,
        root: global.root.clone(),
        instance,
        destination,
        method,
        with_streams: args.with_streams,
        control_script: args.control_script,
        check_space: !args.no_space_check,
    };
    let progress = Progress::default();
    let mut report = with_progress(&progress, global, || {
        backup::backup(&options, &runner, &progress)
    })?;
    if args.method.is_none() && service == ServiceState::Unknown {
        report
            .warnings
            .push(backup::unknown_service_warning(&options.instance));
    }
    print_backup_report(global, &report)
}

/// Whether the instance's service runs ([`cmw_upgrade_core::executor::service_state`]).
pub(super) fn service_state(runner: &LocalExecutor, instance: &InstanceName) -> ServiceState {
    cmw_upgrade_core::executor::service_state(runner, instance)
}

fn print_backup_report(global: &GlobalArgs, report: &BackupReport) -> Result<ExitStatus, CliError> {
    if global.json {
        print_outcome(report, true, true)?;
        return Ok(ExitStatus::Success);
    }
    let mut out = crate::output::stdout();
    writeln!(
        out,
        "Bundle {}: {} files, {} in {:.1}s ({}/s).",
        report.bundle.display(),
        report.files,
        human_bytes(report.bytes),
        report.seconds,
        human_bytes((report.bytes as f64 / report.seconds.max(0.001)) as u64)
    )?;
    if let Some(snapshot) = &report.snapshot {
        writeln!(out, "Ignite snapshot: {snapshot} (in database/snapshots/).")?;
    }
    writeln!(out, "Consistency: {}.", report.consistency)?;
    for warning in &report.warnings {
        writeln!(out, "warning: {warning}")?;
    }
    writeln!(
        out,
        "Every file was re-read and matches the manifest. Check it again later with:\n  cmw-upgrade {}backup verify {}",
        super::root_option(global),
        cmw_upgrade_core::executor::shell_quote(&report.bundle.to_string_lossy())
    )?;
    Ok(ExitStatus::Success)
}

/// Prints a report of path lists: as JSON, or as aligned `label path` lines.
/// Returns the exit status (0 when `clean`, 1 otherwise) and, for text, stdout
/// still locked for the summary line.
fn print_lists<T: serde::Serialize>(
    global: &GlobalArgs,
    report: &T,
    clean: bool,
    lists: &[(&str, &Vec<String>)],
) -> Result<
    (
        ExitStatus,
        Option<crate::output::Masked<std::io::StdoutLock<'static>>>,
    ),
    CliError,
> {
    let status = if clean {
        ExitStatus::Success
    } else {
        ExitStatus::Failed
    };
    if global.json {
        print_outcome(report, clean, false)?;
        return Ok((status, None));
    }
    let mut out = crate::output::stdout();
    for (label, paths) in lists {
        for path in paths.iter() {
            writeln!(out, "{label:<8} {path}")?;
        }
    }
    Ok((status, Some(out)))
}

fn verify_bundle(global: &GlobalArgs, mut args: VerifyArgs) -> Result<ExitStatus, CliError> {
    args.bundle = server_arg(global, &args.bundle, "the bundle folder")?;
    let progress = Progress::default();
    let report = with_progress(&progress, global, || {
        backup::verify_bundle(&args.bundle, &progress)
    })?;
    let (status, out) = print_lists(
        global,
        &report,
        report.ok,
        &[
            ("missing", &report.missing),
            ("changed", &report.changed),
            ("extra", &report.extra),
        ],
    )?;
    let Some(mut out) = out else {
        return Ok(status);
    };
    if report.ok {
        writeln!(
            out,
            "{}: every file matches the manifest.",
            args.bundle.display()
        )?;
    } else {
        writeln!(
            out,
            "{}: DAMAGED: {} missing, {} changed, {} extra. Do not restore from it; use another copy.",
            args.bundle.display(),
            report.missing.len(),
            report.changed.len(),
            report.extra.len()
        )?;
    }
    Ok(status)
}

fn bundle_drift(global: &GlobalArgs, mut args: DriftArgs) -> Result<ExitStatus, CliError> {
    args.bundle = server_arg(global, &args.bundle, "the bundle folder")?;
    let family = family_of_root(&global.root, args.family)?;
    let disk = cmw_upgrade_core::disk::Disk::new(&global.root);
    let layout = disk.layout(&args.instance, family)?;
    // Its links followed inside the root, as the backup followed them.
    let database = disk.canonical(&layout.database.path)?;
    let progress = Progress::default();
    let report = with_progress(&progress, global, || {
        backup::bundle_drift(&args.bundle, &database, args.deep, &progress)
    })?;
    let changed =
        !(report.changed.is_empty() && report.added.is_empty() && report.removed.is_empty());
    let (status, out) = print_lists(
        global,
        &report,
        !changed,
        &[
            ("changed", &report.changed),
            ("added", &report.added),
            ("removed", &report.removed),
        ],
    )?;
    let Some(mut out) = out else {
        return Ok(status);
    };
    if changed {
        writeln!(
            out,
            "{} changed since the backup: {} changed, {} added, {} removed. The new instance will not have these changes; back up again (or stop the old instance) before moving the data.",
            report.database.display(),
            report.changed.len(),
            report.added.len(),
            report.removed.len()
        )?;
    } else {
        writeln!(
            out,
            "{} is as in the bundle{}.",
            report.database.display(),
            if report.deep {
                " (contents re-hashed)"
            } else {
                " (sizes and times)"
            }
        )?;
    }
    Ok(status)
}

fn import(global: &GlobalArgs, mut args: ImportArgs) -> Result<ExitStatus, CliError> {
    args.file = server_arg(global, &args.file, "the platform backup file")?;
    args.dest = server_arg(global, &args.dest, "--dest")?;
    let progress = Progress::default();
    let instance = args.instance.as_ref().map(ToString::to_string);
    let report = with_progress(&progress, global, || {
        backup::import_cdbbz(
            &args.file,
            &args.dest,
            instance.as_deref(),
            !args.no_space_check,
            &progress,
        )
    })?;
    print_backup_report(global, &report)
}

pub fn restore(global: &GlobalArgs, args: RestoreArgs) -> Result<ExitStatus, CliError> {
    let options = RestoreOptions {
        family: family_of_root(&global.root, args.family)?,
        bundle: server_arg(global, &args.bundle, "the bundle folder")?,
        root: global.root.clone(),
        instance: args.instance,
        replace: args.replace,
    };
    let progress = Progress::default();
    let report = with_progress(&progress, global, || backup::restore(&options, &progress))?;
    if global.json {
        print_outcome(&report, true, true)?;
        return Ok(ExitStatus::Success);
    }
    let mut out = crate::output::stdout();
    for part in &report.parts {
        writeln!(
            out,
            "Restored {} into {}: {} files, {}, owned by {} ({}:{}).",
            part.part,
            part.target.display(),
            part.files,
            human_bytes(part.bytes),
            report.owner,
            report.uid,
            report.gid
        )?;
        if let Some(aside) = &part.moved_aside {
            writeln!(
                out,
                "  Its previous content is in {} (remove it once the instance works).",
                aside.display()
            )?;
        }
    }
    Ok(ExitStatus::Success)
}
