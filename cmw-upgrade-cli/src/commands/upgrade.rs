//! `plan`, `run`, `status`, `rollback`, `check`: the whole procedure.

use std::io::Write;

use cmw_upgrade_core::config::ChangeAction;
use cmw_upgrade_core::executor::{shell_quote, DryRun, LocalExecutor, Recording, ToolOutcome};
use cmw_upgrade_core::health::smoke_check;
use cmw_upgrade_core::procedure::state::{RunState, StepRecord, StepStatus};
use cmw_upgrade_core::procedure::RunLock;
use cmw_upgrade_core::procedure::{
    plan_upgrade, preflight, rollback_command, rollback_upgrade, run_upgrade, Event,
    RollbackReport, UpgradeSettings,
};

use super::family_of_root;
use crate::args::{CheckArgs, GlobalArgs, InstanceArgs, RollbackArgs, UpgradeArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::{change_line, print_outcome};

pub fn settings_of(global: &GlobalArgs, args: &UpgradeArgs) -> Result<UpgradeSettings, CliError> {
    Ok(UpgradeSettings {
        instance: args.instance.clone(),
        family: family_of_root(&global.root, args.family)?,
        bundle: args.bundle.clone(),
        distribution: args.distribution.clone(),
        prerequisites: args.prerequisites.clone(),
        port: args.port,
        upgrade_timeout_seconds: args.upgrade_timeout.as_secs().max(1),
        health_timeout_seconds: args.health_timeout.as_secs().max(1),
        fix_config: args.fix_config,
    })
}

/// What a plan's preview found, in a few lines per step (the JSON has it all).
fn print_finding(out: &mut impl Write, finding: &ToolOutcome) -> std::io::Result<()> {
    let ToolOutcome::Migrate(report) = finding else {
        return Ok(());
    };
    let carried: Vec<_> = report
        .changes
        .iter()
        .filter(|change| change.action != ChangeAction::Kept)
        .collect();
    writeln!(out, "   will carry {} values:", carried.len())?;
    for change in carried {
        writeln!(out, "     {}", change_line(change, "(removed)"))?;
    }
    for warning in &report.warnings {
        writeln!(out, "   review: {warning}")?;
    }
    for note in &report.to_do {
        writeln!(out, "   to do by hand: {}", note.message)?;
    }
    for error in &report.errors {
        writeln!(out, "   would stop: {error}")?;
    }
    Ok(())
}

pub fn plan(global: &GlobalArgs, args: UpgradeArgs) -> Result<ExitStatus, CliError> {
    super::refuse_state_folder(global)?;
    let settings = settings_of(global, &args)?;
    let recorder = Recording::new(DryRun::new(LocalExecutor::new(&global.root)));
    let steps = plan_upgrade(&recorder, &settings)?;
    if global.json {
        print_outcome(
            &serde_json::json!({
                "instance": settings.instance,
                "family": settings.family,
                "old_server": old_server_commands(&settings),
                "steps": steps,
            }),
            true,
            false,
        )?;
        return Ok(ExitStatus::Success);
    }
    let mut out = crate::output::stdout();
    writeln!(
        out,
        "Plan for {} on this {} server (nothing is changed).\n\nOn the old server first:",
        settings.instance,
        settings.family.as_str()
    )?;
    for command in old_server_commands(&settings) {
        writeln!(out, "    {command}")?;
    }
    writeln!(out, "  and bring the bundle here as {}.", settings.bundle)?;
    for (index, step) in steps.iter().enumerate() {
        print_planned_step(&mut out, index, step)?;
    }
    writeln!(
        out,
        "\nRun it with the same options: cmw-upgrade run ...; see where it is with: cmw-upgrade status --instance {}",
        settings.instance
    )?;
    Ok(ExitStatus::Success)
}

/// One step of a plan: its name and title, what it needs, every command
/// (labelled `[old]`/`[new]` with its server in a run from a control point),
/// what its previews found, its check and undo, and why it could not be
/// planned in full.
pub(super) fn print_planned_step(
    out: &mut impl Write,
    index: usize,
    step: &cmw_upgrade_core::procedure::PlannedStep,
) -> std::io::Result<()> {
    let label = step
        .server
        .as_ref()
        .map(|server| format!("[{server}] "))
        .unwrap_or_default();
    writeln!(
        out,
        "\n{}. {label}{} — {}",
        index + 1,
        step.name,
        step.title
    )?;
    writeln!(out, "   needs: {}", step.precondition)?;
    for command in &step.commands {
        writeln!(out, "   {label}$ {command}")?;
    }
    for finding in &step.findings {
        print_finding(out, finding)?;
    }
    writeln!(out, "   check: {}", step.check)?;
    writeln!(out, "   undo:  {}", step.undo)?;
    if let Some(note) = &step.note {
        writeln!(out, "   note: cannot plan in full now: {note}")?;
    }
    Ok(())
}

/// What to run on the old server first, shell-quoted (a bundle path may hold spaces).
fn old_server_commands(settings: &UpgradeSettings) -> Vec<String> {
    let bundle = shell_quote(&settings.bundle);
    vec![
        format!(
            "cmw-upgrade backup --instance {} --dest {bundle}",
            settings.instance
        ),
        format!("cmw-upgrade backup verify {bundle}"),
    ]
}

/// Draws the procedure's events on stderr for people.
pub struct ProgressPrinter {
    quiet: bool,
    /// One JSON object a line instead of text (`--progress json`).
    json_lines: bool,
    terminal: bool,
    waiting_line: bool,
    /// The label of the server of the step under way (`[old] `), if any.
    server: String,
}

impl ProgressPrinter {
    /// The printer `--progress` (and `--json`) ask for.
    pub fn for_global(global: &GlobalArgs) -> Self {
        let mut printer = ProgressPrinter::new(!global.text_progress());
        if global.progress == crate::args::ProgressMode::Json && !global.quiet {
            printer.quiet = false;
            printer.json_lines = true;
        }
        printer
    }

    pub fn new(quiet: bool) -> Self {
        ProgressPrinter {
            quiet,
            json_lines: false,
            terminal: crate::output::stderr_is_styled_terminal(),
            waiting_line: false,
            server: String::new(),
        }
    }

    pub fn show(&mut self, event: &Event) {
        if self.quiet {
            return;
        }
        let mut err = crate::output::stderr();
        if self.json_lines {
            if let Ok(line) = serde_json::to_string(event) {
                let _ = writeln!(err, "{line}");
            }
            return;
        }
        let transient = matches!(event, Event::Waiting { .. } | Event::Transfer { .. });
        if self.waiting_line && !transient {
            let _ = writeln!(err);
            self.waiting_line = false;
        }
        let _ = match event {
            Event::StepStarted {
                index,
                total,
                name,
                title,
                server,
            } => {
                self.server = server
                    .as_ref()
                    .map(|server| format!("[{server}] "))
                    .unwrap_or_default();
                writeln!(
                    err,
                    "[{}/{total}] {}{name}: {title}",
                    index + 1,
                    self.server
                )
            }
            Event::StepSkipped { name } => writeln!(err, "[done] {name}: done in an earlier run"),
            Event::StepFinished {
                name,
                status,
                seconds,
            } => writeln!(
                err,
                "      {name} {} ({seconds:.1}s)",
                match status {
                    StepStatus::Done => "done",
                    StepStatus::Failed => "FAILED",
                    _ => "stopped",
                }
            ),
            Event::Waiting {
                what,
                elapsed,
                limit,
                detail,
            } => {
                if self.terminal {
                    self.waiting_line = true;
                    write!(
                        err,
                        "\r      waiting for {what}: {detail}, {elapsed:.0}s of {limit:.0}s   "
                    )
                } else {
                    Ok(())
                }
            }
            Event::Transfer {
                bytes_done,
                bytes_total,
                files_done,
                files_total,
                seconds,
            } => {
                if self.terminal {
                    self.waiting_line = true;
                    write!(
                        err,
                        "\r\x1b[2K      {}",
                        crate::output::copy_progress_line(
                            "sending",
                            (*bytes_done, *bytes_total),
                            (*files_done, *files_total),
                            std::time::Duration::from_secs_f64(*seconds),
                        )
                    )
                } else {
                    Ok(())
                }
            }
            Event::Note { text } => writeln!(err, "      {}note: {text}", self.server),
        };
    }
}

/// A test hook, only in builds with the `test-hooks` feature (the tests';
/// never the release binary): `CMW_UPGRADE_KILL_AT=<step>:start|<step>:end`
/// makes the process kill itself with SIGKILL right after that boundary is
/// saved, so the tests can prove a run resumes from any boundary;
/// `transfer:progress` kills it at the bundle transfer's first progress report.
#[cfg(feature = "test-hooks")]
pub(super) fn kill_hook(event: &Event) {
    let Ok(target) = std::env::var("CMW_UPGRADE_KILL_AT") else {
        return;
    };
    let here = match event {
        Event::StepStarted { name, .. } => format!("{name}:start"),
        Event::StepFinished { name, .. } => format!("{name}:end"),
        Event::Transfer { .. } => "transfer:progress".to_owned(),
        _ => return,
    };
    if here == target {
        // The shell's own `kill` (procps may be absent); $PPID is this process.
        let _ = std::process::Command::new("sh")
            .args(["-c", "kill -KILL \"$PPID\""])
            .status();
        std::thread::sleep(std::time::Duration::from_secs(10));
    }
}

#[cfg(not(feature = "test-hooks"))]
pub(super) fn kill_hook(_event: &Event) {}

pub fn run(global: &GlobalArgs, args: UpgradeArgs) -> Result<ExitStatus, CliError> {
    super::refuse_state_folder(global)?;
    let settings = settings_of(global, &args)?;
    let local = LocalExecutor::new(&global.root);
    // A typo must change nothing, not even the lock file: check the inputs
    // of a new run before taking it (the run checks them again, locked).
    if RunState::load(&local, &settings.instance)?.is_none() {
        preflight(&local, &settings)?;
    }
    let _lock = RunLock::acquire(&local, &settings.instance)?;
    let recorder = Recording::new(&local);
    let mut printer = ProgressPrinter::for_global(global);
    // Whether this call ran a step (a rerun of a finished run changes nothing).
    let mut ran_a_step = false;
    let report = run_upgrade(&recorder, &settings, &mut |event| {
        ran_a_step |= matches!(event, Event::StepStarted { .. });
        printer.show(event);
        kill_hook(event);
    })?;
    if global.json {
        print_outcome(&report, report.outcome == "upgraded", ran_a_step)?;
    } else {
        let mut out = crate::output::stdout();
        if global.verbose {
            for step in &report.steps {
                print_step(&mut out, step)?;
                for command in &step.commands {
                    writeln!(out, "      $ {}", command.display())?;
                }
            }
        }
        if let Some(failed) = report
            .steps
            .iter()
            .find(|step| step.status == StepStatus::Failed)
        {
            writeln!(
                out,
                "\nStep {} failed: {}",
                failed.name,
                failed.error.as_deref().unwrap_or("")
            )?;
        } else {
            writeln!(out, "\n{} upgraded.", settings.instance)?;
        }
        writeln!(out, "{}", report.next)?;
        crate::output::print_to_do(&mut out, &report.to_do)?;
    }
    Ok(if report.outcome == "upgraded" {
        ExitStatus::Success
    } else {
        ExitStatus::Failed
    })
}

pub fn status(global: &GlobalArgs, args: InstanceArgs) -> Result<ExitStatus, CliError> {
    let store = super::state_store(global);
    let Some(state) = RunState::load(store.as_ref(), &args.instance)? else {
        // Not started is not a mistake: the same code as not finished.
        let message = format!(
            "no run of {} is recorded under {}; start one with cmw-upgrade run (or upgrade)",
            args.instance,
            cmw_upgrade_core::procedure::state_file(&args.instance)
        );
        if global.json {
            print_outcome(
                &serde_json::json!({
                    "recorded": false,
                    "instance": args.instance,
                    "message": message,
                }),
                false,
                false,
            )?;
        } else {
            writeln!(crate::output::stdout(), "{message}")?;
        }
        return Ok(ExitStatus::NotFinished);
    };
    let exit = status_exit(&state);
    if global.json {
        print_outcome(&state, exit == ExitStatus::Success, false)?;
        return Ok(exit);
    }
    let mut out = crate::output::stdout();
    writeln!(out, "Run of {}:", state.instance)?;
    for step in &state.steps {
        print_step(&mut out, step)?;
    }
    if let Some(rollback) = &state.rollback {
        print_step(&mut out, rollback)?;
    }
    // A run from a control point is resumed with the command that started it.
    let (verb, server) = match &state.servers {
        Some(servers) => ("upgrade", servers.settings.new.display()),
        None => ("run", "this server".to_owned()),
    };
    let next = match exit {
        ExitStatus::Success => {
            format!("All steps done: switch DNS or the upstream proxy to {server}.")
        }
        ExitStatus::Failed => format!(
            "Fix the failed step's cause and rerun the same `cmw-upgrade {verb}` to resume, or undo with: {}",
            rollback_command(&args.instance)
        ),
        _ => format!("Not finished: rerun the same `cmw-upgrade {verb}` to resume."),
    };
    writeln!(out, "{next}")?;
    crate::output::print_to_do(&mut out, &state.to_do)?;
    Ok(exit)
}

fn status_exit(state: &RunState) -> ExitStatus {
    if state
        .steps
        .iter()
        .any(|step| step.status == StepStatus::Failed)
    {
        ExitStatus::Failed
    } else if state
        .steps
        .iter()
        .all(|step| step.status == StepStatus::Done)
    {
        ExitStatus::Success
    } else {
        ExitStatus::NotFinished
    }
}

fn print_step(out: &mut impl Write, step: &StepRecord) -> std::io::Result<()> {
    let status = step.status.as_str();
    let seconds = step
        .seconds
        .map(|seconds| format!("{seconds:.1}s"))
        .unwrap_or_default();
    let server = step
        .server
        .as_ref()
        .map(|server| format!("[{server}] "))
        .unwrap_or_default();
    writeln!(
        out,
        "  {server}{:<17} {:<12} {seconds:>8}",
        step.name, status
    )?;
    if let Some(error) = &step.error {
        writeln!(out, "      {error}")?;
    }
    Ok(())
}

pub fn rollback(global: &GlobalArgs, args: RollbackArgs) -> Result<ExitStatus, CliError> {
    let store = super::state_store(global);
    // Nothing recorded, nothing to lock: no folder or lock file is made for a typo.
    let Some(state) = RunState::load(store.as_ref(), &args.instance)? else {
        return Err(cmw_upgrade_core::Error::StateConflict {
            details: format!(
                "no run of {} is recorded on this server ({}); nothing to undo",
                args.instance,
                cmw_upgrade_core::procedure::state_file(&args.instance)
            ),
        }
        .into());
    };
    confirm_rollback(&state, &args)?;
    if let Some(servers) = &state.servers {
        return super::two_servers::rollback(global, &args.instance, servers, args.force);
    }
    super::refuse_state_folder(global)?;
    let local = LocalExecutor::new(&global.root);
    let _lock = RunLock::acquire(&local, &args.instance)?;
    if let Some(now) = RunState::load(&local, &args.instance)? {
        refuse_finished(&now, &args.instance, args.force)?;
    }
    let recorder = Recording::new(&local);
    let mut printer = ProgressPrinter::for_global(global);
    let report = rollback_upgrade(&recorder, &args.instance, &mut |event| printer.show(event))?;
    print_rollback(global, &report, "")
}

/// A finished run may have traffic on it: its rollback needs `--force`.
/// Checked before asking, and again under the lock (a run that finished
/// meanwhile).
pub(super) fn refuse_finished(
    state: &RunState,
    instance: &cmw_upgrade_core::InstanceName,
    force: bool,
) -> Result<(), CliError> {
    let finished = state
        .steps
        .iter()
        .all(|step| step.status == StepStatus::Done);
    if finished && !force {
        return Err(cmw_upgrade_core::Error::CheckFailed {
            what: format!("rolling back {instance} (nothing was changed)"),
            details: "every step of the run is done: DNS or the upstream proxy may already send \
                      traffic to this instance, and a rollback would stop it and drop what was \
                      written since. Switch traffic back to the old server first; then pass \
                      --force"
                .to_owned(),
        }
        .into());
    }
    Ok(())
}

/// A rollback stops production: refused for a finished run without
/// `--force` (traffic may be on it), asked on a terminal, and needs `--yes`
/// elsewhere.
fn confirm_rollback(state: &RunState, args: &RollbackArgs) -> Result<(), CliError> {
    refuse_finished(state, &args.instance, args.force)?;
    let refuse = |details: String| -> CliError {
        cmw_upgrade_core::Error::CheckFailed {
            what: format!("rolling back {} (nothing was changed)", args.instance),
            details,
        }
        .into()
    };
    let where_ = match &state.servers {
        Some(servers) => format!("the new server {}", servers.settings.new.display()),
        None => "this server".to_owned(),
    };
    super::confirm(
        args.yes,
        &format!(
            "Roll back {} on {where_}? It stops the instance there and puts the bundle's \
             database back.",
            args.instance
        ),
        &format!(
            "a rollback stops {} on {where_} and puts the bundle's database back",
            args.instance
        ),
    )
    .map_err(refuse)
}

/// The rollback's report; each command labelled with its server when one is given.
pub fn print_rollback(
    global: &GlobalArgs,
    report: &RollbackReport,
    server: &str,
) -> Result<ExitStatus, CliError> {
    if global.json {
        print_outcome(report, true, true)?;
    } else {
        let label = if server.is_empty() {
            String::new()
        } else {
            format!("[{server}] ")
        };
        let mut out = crate::output::stdout();
        for command in &report.rollback.commands {
            writeln!(out, "  {label}$ {}", command.display())?;
        }
        writeln!(out, "Rolled back. {}", report.next)?;
    }
    Ok(ExitStatus::Success)
}

pub fn check(global: &GlobalArgs, args: CheckArgs) -> Result<ExitStatus, CliError> {
    let report = smoke_check(&global.root, &args.instance, &args.url)?;
    if global.json {
        print_outcome(&report, report.ok, false)?;
    } else {
        let mut out = crate::output::stdout();
        match (report.status, &report.unreachable) {
            (Some(status), _) => writeln!(out, "{}: HTTP {status}", report.url)?,
            (None, Some(reason)) => writeln!(out, "{}: no answer ({reason})", report.url)?,
            (None, None) => writeln!(out, "{}: no answer", report.url)?,
        }
        if report.heartbeat_logs == 0 {
            writeln!(
                out,
                "no heartbeat log in {}: the instance has not written one yet (or it logs elsewhere)",
                report.log_dir
            )?;
        } else {
            writeln!(
                out,
                "heartbeat logs: {} scanned, {} error records",
                report.heartbeat_logs,
                report.heartbeat_errors.len()
            )?;
        }
        for error in &report.heartbeat_errors {
            writeln!(out, "  {error}")?;
        }
        writeln!(out, "{}", if report.ok { "healthy" } else { "NOT healthy" })?;
    }
    Ok(if report.ok {
        ExitStatus::Success
    } else {
        ExitStatus::Failed
    })
}
