//! `cmw-upgrade demo`: the whole procedure on simulated servers.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use cmw_upgrade_core::executor::{Executor, LocalExecutor, Recorded, Recording, ToolAction};
use cmw_upgrade_core::procedure::state::{StepRecord, StepStatus};
use cmw_upgrade_core::procedure::{rollback_upgrade, run_upgrade, RunLock, UpgradeSettings};
use cmw_upgrade_sim::{Failure, SimOptions, Simulation};
use serde::Serialize;

use super::upgrade::ProgressPrinter;
use crate::args::{DemoArgs, FailureArg, GlobalArgs, SimulatedServiceArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::print_outcome;

#[derive(Serialize)]
pub(super) struct DemoStep {
    pub(super) name: String,
    pub(super) status: StepStatus,
    pub(super) seconds: f64,
    pub(super) commands: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error_kind: Option<String>,
    /// The server it ran on (`old`, `new`, `old->new`), when a control point drove it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) server: Option<String>,
    /// How that server was reached (`user@host:port`), when a control point drove it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) destination: Option<String>,
}

impl From<&StepRecord> for DemoStep {
    fn from(record: &StepRecord) -> Self {
        DemoStep {
            name: record.name.clone(),
            status: record.status,
            seconds: record.seconds.unwrap_or_default(),
            commands: record.commands.iter().map(Recorded::display).collect(),
            error: record.error.clone(),
            error_kind: record.error_kind.clone(),
            server: record.server.clone(),
            destination: None,
        }
    }
}

#[derive(Serialize)]
pub(super) struct DemoReport {
    pub(super) outcome: &'static str,
    pub(super) family: cmw_upgrade_core::OsFamily,
    pub(super) instance: String,
    /// Where the simulated servers are kept (`--keep`).
    pub(super) folder: Option<PathBuf>,
    /// The two servers and how they were reached (`--over-ssh`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) servers: Option<super::demo_ssh::DemoServers>,
    pub(super) steps: Vec<DemoStep>,
    pub(super) next: String,
    /// What a person must decide (the config migration's notes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) to_do: Vec<cmw_upgrade_core::config::migrate::HandNote>,
    /// The switch under the probe (`--cutover`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cutover: Option<super::demo_cutover::CutoverDemo>,
}

/// The simulation's folder: `--keep DIR` (empty or new), or a private temp folder.
fn demo_folder(keep: Option<&PathBuf>) -> Result<PathBuf, CliError> {
    match keep {
        Some(dir) => {
            let empty = std::fs::read_dir(dir).map_or(true, |mut listing| listing.next().is_none());
            if !empty {
                return Err(cmw_upgrade_core::Error::AlreadyExists {
                    path: dir.clone(),
                    hint: "--keep needs a new or empty folder",
                }
                .into());
            }
            Ok(dir.clone())
        }
        None => Ok(cmw_upgrade_core::paths::private_temp_dir(
            "cmw-upgrade-demo",
        )?),
    }
}

/// The simulator drives real programs (nginx, tar); a failure there is the machine's.
pub(super) fn sim_error(folder: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |error| {
        cmw_upgrade_core::Error::io("lay out the simulated servers in", folder, error).into()
    }
}

/// The simulated servers the options ask for, laid out in `folder`.
pub(super) fn simulation(
    args: &DemoArgs,
    folder: &std::path::Path,
) -> Result<Simulation, CliError> {
    let failure = args.fail_upgrade.map(|failure| match failure {
        FailureArg::Error => Failure::Error,
        FailureArg::Hang => Failure::Hang,
        FailureArg::Crash => Failure::Crash,
    });
    Simulation::create(
        folder,
        &SimOptions {
            family: args.family,
            instance: args.instance.to_string(),
            failure,
            upgrade_seconds: args.upgrade_time.as_secs_f64(),
            service_program: std::env::current_exe()?,
            gateway_fails_once: true,
        },
    )
    .map_err(sim_error(folder))
}

pub fn run(global: &GlobalArgs, args: DemoArgs) -> Result<ExitStatus, CliError> {
    if let Some(folder) = &args.teardown {
        return teardown(global, folder);
    }
    let folder = demo_folder(args.keep.as_ref())?;
    let outcome = if args.over_ssh {
        super::demo_ssh::demo_in(global, &args, &folder)
    } else {
        demo_in(global, &args, &folder)
    };
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&folder);
    }
    outcome
}

fn demo_in(
    global: &GlobalArgs,
    args: &DemoArgs,
    folder: &std::path::Path,
) -> Result<ExitStatus, CliError> {
    let upgrade_seconds = args.upgrade_time.as_secs_f64();
    let sim = simulation(args, folder)?;
    let mut printer = ProgressPrinter::new(global.json);
    if !global.json {
        eprintln!(
            "Simulated servers ({}) in {}: old {} with data, new empty; site port {}.",
            args.family.as_str(),
            sim.dir.display(),
            cmw_upgrade_sim::OLD_VERSION,
            sim.port
        );
    }

    // On the old server: the backup; then the bundle is brought to the new server.
    let clock = Instant::now();
    let old = Recording::new(LocalExecutor::new(&sim.old_root));
    printer.show(&cmw_upgrade_core::procedure::Event::StepStarted {
        index: 0,
        total: 1,
        name: "backup-old-server".to_owned(),
        title: "On the old server: back up the database and configs (it keeps serving)".to_owned(),
        server: Some("old".to_owned()),
    });
    old.tool(&ToolAction::Backup {
        instance: args.instance.clone(),
        family: args.family,
        dest: sim.bundle.clone(),
        method: cmw_upgrade_core::backup::manifest::BackupMethod::Copy,
    })?;
    old.tool(&ToolAction::VerifyBundle {
        bundle: sim.bundle.clone(),
    })?;
    sim.bring_bundle().map_err(sim_error(folder))?;
    let mut commands: Vec<String> = old
        .take_operations()
        .iter()
        .map(Recorded::display)
        .collect();
    commands.push(format!(
        "# then bring {} to the new server, at the same path",
        sim.bundle
    ));
    let backup_step = DemoStep {
        name: "backup-old-server".to_owned(),
        status: StepStatus::Done,
        seconds: clock.elapsed().as_secs_f64(),
        commands,
        error: None,
        error_kind: None,
        server: None,
        destination: None,
    };
    printer.show(&cmw_upgrade_core::procedure::Event::StepFinished {
        name: backup_step.name.clone(),
        status: backup_step.status,
        seconds: backup_step.seconds,
    });

    let settings = UpgradeSettings {
        instance: args.instance.clone(),
        family: args.family,
        bundle: sim.bundle.clone(),
        distribution: sim.distribution.clone(),
        prerequisites: sim.prerequisites.clone(),
        port: sim.port,
        upgrade_timeout_seconds: (upgrade_seconds * 2.0 + 3.0).ceil() as u64,
        health_timeout_seconds: 30,
        fix_config: false,
    };
    if args.setup_only {
        let setup = serde_json::json!({
            "root": sim.new_root,
            "old_root": sim.old_root,
            "programs": sim.bin,
            "path": sim.path_env().to_string_lossy(),
            "instance": settings.instance,
            "family": settings.family,
            "bundle": settings.bundle,
            "distribution": settings.distribution,
            "prerequisites": settings.prerequisites,
            "port": settings.port,
        });
        if global.json {
            print_outcome(&setup, true, true)?;
        } else {
            println!(
                "Laid out in {}. Rehearse with:\n  PATH={}:$PATH cmw-upgrade --root {} run --instance {} --bundle {} --distribution {} --prerequisites {} --port {}\nStop what the rehearsal starts (the simulated services, nginx) with:\n  cmw-upgrade demo --teardown {}",
                sim.dir.display(),
                sim.bin.display(),
                sim.new_root.display(),
                settings.instance,
                settings.bundle,
                settings.distribution,
                settings.prerequisites,
                settings.port,
                sim.dir.display()
            );
        }
        return Ok(ExitStatus::Success);
    }

    let new = LocalExecutor::new(&sim.new_root).with_programs_from(&sim.bin);
    let _lock = RunLock::acquire(&new, &settings.instance)?;
    let recorder = Recording::new(&new);
    let report = run_upgrade(&recorder, &settings, &mut |event| printer.show(event))?;
    let mut steps = vec![backup_step];
    steps.extend(report.steps.iter().map(DemoStep::from));
    let to_do = report.to_do.clone();
    let (outcome, next, exit) = if report.outcome == "upgraded" {
        ("upgraded", report.next.clone(), ExitStatus::Success)
    } else {
        let rollback = rollback_upgrade(&recorder, &settings.instance, &mut |event| {
            printer.show(event)
        })?;
        steps.push(DemoStep::from(&rollback.rollback));
        ("rolled_back", rollback.next, ExitStatus::Failed)
    };
    let cutover = match (args.cutover, outcome) {
        (Some(method), "upgraded") => Some(super::demo_cutover::rehearse(
            method,
            folder,
            &args.instance,
            sim.port,
        )?),
        _ => None,
    };
    // The reload path is not zero-error by nature: its count is reported, not a failure.
    let exit = if cutover
        .as_ref()
        .is_some_and(|cutover| cutover.failed > 0 && cutover.method != "nginx")
    {
        ExitStatus::Failed
    } else {
        exit
    };
    sim.stop();
    let report = DemoReport {
        outcome,
        family: args.family,
        instance: args.instance.to_string(),
        folder: args.keep.clone(),
        servers: None,
        steps,
        next,
        to_do,
        cutover,
    };
    print_report(global, &report)?;
    Ok(exit)
}

/// The demo's report: JSON (with `ok` and `changed`: the simulated servers
/// changed) or text.
pub(super) fn print_report(global: &GlobalArgs, report: &DemoReport) -> Result<(), CliError> {
    if global.json {
        print_outcome(report, report.outcome == "upgraded", true)
    } else {
        print_text(report)
    }
}

pub(super) fn print_text(report: &DemoReport) -> Result<(), CliError> {
    let mut out = crate::output::stdout();
    writeln!(
        out,
        "\nDemo on simulated {} servers{}: {}\n",
        report.family.as_str(),
        if report.servers.is_some() {
            ", from a control point over ssh"
        } else {
            ""
        },
        report.outcome.replace('_', " ")
    )?;
    if let Some(servers) = &report.servers {
        for (label, server) in [("old", &servers.old), ("new", &servers.new)] {
            writeln!(
                out,
                "[{label} {}] sshd on 127.0.0.1:{}, the agent rooted at {}",
                server.destination,
                server.port,
                server.root.display()
            )?;
        }
        writeln!(out)?;
    }
    for step in &report.steps {
        let status = step.status.as_str();
        // `[old root@127.0.0.1:40123] ` when a control point drove the step.
        let label = match (&step.server, &step.destination) {
            (Some(server), Some(destination)) => format!("[{server} {destination}] "),
            _ => String::new(),
        };
        writeln!(
            out,
            "{label}{:<18} {:<12} {:>6.1}s",
            step.name, status, step.seconds
        )?;
        for command in &step.commands {
            writeln!(out, "    {label}$ {command}")?;
        }
        if let Some(error) = &step.error {
            writeln!(out, "    ! {error}")?;
        }
    }
    if let Some(cutover) = &report.cutover {
        writeln!(
            out,
            "\ncut-over ({}) through {} under {} keep-alive clients:",
            cutover.method, cutover.proxy, cutover.clients
        )?;
        for step in &cutover.steps {
            writeln!(out, "    $ {step}")?;
        }
        writeln!(
            out,
            "  {} requests, {} failed; p50/p95 before {}/{} ms, after {}/{} ms; traffic moved {} \
             after the switch began (answering before: {}; after: {})",
            cutover.requests,
            cutover.failed,
            cutover.p50_ms_before,
            cutover.p95_ms_before,
            cutover.p50_ms_after,
            cutover.p95_ms_after,
            cutover
                .moved_after_ms
                .map_or("never".to_owned(), |ms| format!("{ms} ms")),
            cutover.servers_before.join(", "),
            cutover.servers_after.join(", ")
        )?;
    }
    writeln!(out, "\n{}", report.next)?;
    crate::output::print_to_do(&mut out, &report.to_do)?;
    if let Some(folder) = &report.folder {
        writeln!(
            out,
            "The simulated servers are kept in {}.",
            folder.display()
        )?;
    }
    Ok(())
}

/// `demo --teardown DIR`: stops what a kept simulation may still run (its
/// platform services and nginx, started by a rehearsal run by hand after
/// `--setup-only`); the files stay.
fn teardown(global: &GlobalArgs, folder: &std::path::Path) -> Result<ExitStatus, CliError> {
    let systemctl = folder.join("bin/systemctl");
    if !systemctl.is_file() {
        return Err(cmw_upgrade_core::Error::CheckFailed {
            what: format!("stopping the simulation in {}", folder.display()),
            details: "it is not a folder `demo --keep` laid out (no bin/systemctl there)"
                .to_owned(),
        }
        .into());
    }
    let mut units = vec!["nginx".to_owned()];
    for server in ["old-server", "new-server"] {
        let disk = cmw_upgrade_core::disk::Disk::new(folder.join(server));
        for found in cmw_upgrade_core::layout::configured_instances(&disk)? {
            for unit in ["comindware", "apigateway", "adapterhost"] {
                let unit = format!("{unit}{}", found.name);
                if !units.contains(&unit) {
                    units.push(unit);
                }
            }
        }
    }
    let mut path = folder.join("bin").into_os_string();
    if let Some(rest) = std::env::var_os("PATH") {
        path.push(":");
        path.push(rest);
    }
    let output = std::process::Command::new(&systemctl)
        .arg("stop")
        .args(&units)
        .env("PATH", path)
        .output()?;
    if global.json {
        print_outcome(
            &serde_json::json!({ "folder": folder, "stopped": units }),
            output.status.success(),
            true,
        )?;
    } else {
        writeln!(
            crate::output::stdout(),
            "Stopped {} in {} (the files stay; remove the folder when done).",
            units.join(", "),
            folder.display()
        )?;
    }
    Ok(ExitStatus::Success)
}

pub fn simulated_service(
    global: &GlobalArgs,
    args: SimulatedServiceArgs,
) -> Result<ExitStatus, CliError> {
    cmw_upgrade_sim::service::run(&cmw_upgrade_sim::service::ServiceArgs {
        root: global.root.clone(),
        instance: args.instance,
        sim: args.sim,
        port: args.port,
    })?;
    Ok(ExitStatus::Success)
}
