//! `cmw-upgrade upgrade --old … --new …`: the whole upgrade from one control
//! point; and the control point's side of `status` and `rollback`.

use std::io::Write;

use cmw_upgrade_core::backup::manifest::BackupMethod;
use cmw_upgrade_core::executor::transfer::Route;
use cmw_upgrade_core::procedure::two_servers::{
    plan_two_servers, prepare_two_servers, rollback_two_servers, run_two_servers, RecordedServers,
    Server, ServerSpec, TwoServerPlan, TwoServerPreflight, TwoServerReport, TwoServerRun,
    TwoServerSettings,
};
use cmw_upgrade_core::procedure::{Event, RunLock, UpgradeSettings};
use cmw_upgrade_core::{InstanceName, OsFamily};

use super::upgrade::{print_planned_step, print_rollback, ProgressPrinter};
use crate::args::{BackupMethodArg, GlobalArgs, RouteArg, TwoServerArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::print_outcome;

/// One server of the command line, with the options both share.
fn server_spec(
    option: &str,
    text: &str,
    root: Option<&String>,
    args: &TwoServerArgs,
) -> Result<ServerSpec, CliError> {
    let mut spec =
        ServerSpec::parse(text).map_err(|error| cmw_upgrade_core::Error::BadRequest {
            details: format!("{option}: {error}"),
        })?;
    spec.identity_file = args.identity_file.clone();
    spec.known_hosts_file = args.known_hosts.clone();
    spec.program = args.remote_cmw_upgrade.clone();
    spec.root = root.cloned();
    spec.provision = !args.no_copy_agent;
    spec.provision_dir.clone_from(&args.copy_agent_to);
    Ok(spec)
}

fn settings_of(args: &TwoServerArgs) -> Result<(TwoServerSettings, UpgradeSettings), CliError> {
    for option in &args.direct_ssh_option {
        if !option.contains('=') || option.starts_with('-') {
            return Err(cmw_upgrade_core::Error::BadRequest {
                details: format!(
                    "--direct-ssh-option {option:?} is not KEY=VALUE (e.g. IdentityFile=/root/.ssh/upgrade)"
                ),
            }
            .into());
        }
    }
    let two = TwoServerSettings {
        old: server_spec("--old", &args.old, args.old_root.as_ref(), args)?,
        new: server_spec("--new", &args.new, args.new_root.as_ref(), args)?,
        bundle_dir: args.bundle_dir.clone(),
        backup_method: args.method.map(|method| match method {
            BackupMethodArg::Copy => BackupMethod::Copy,
            BackupMethodArg::Snapshot => BackupMethod::Snapshot,
        }),
        accept_crash_consistent: args.accept_crash_consistent,
        route: match args.route {
            RouteArg::Auto => Route::Auto,
            RouteArg::Direct => Route::Direct,
            RouteArg::ThroughHere => Route::ThroughHere,
        },
        direct_ssh_options: args.direct_ssh_option.clone(),
    };
    let settings = UpgradeSettings {
        instance: args.instance.clone(),
        // The new server's preflight detects it.
        family: OsFamily::Deb,
        bundle: String::new(),
        distribution: args.distribution.clone(),
        prerequisites: args.prerequisites.clone(),
        port: args.port,
        upgrade_timeout_seconds: args.upgrade_timeout.as_secs().max(1),
        health_timeout_seconds: args.health_timeout.as_secs().max(1),
        fix_config: args.fix_config,
    };
    Ok((two, settings))
}

/// Reaches a server, saying which on failure.
pub(super) fn connect(label: &str, spec: &ServerSpec) -> Result<Server, CliError> {
    Server::connect(spec).map_err(|error| {
        cmw_upgrade_core::Error::CheckFailed {
            what: format!(
                "reaching the {label} server {} (nothing was changed or recorded)",
                spec.display()
            ),
            details: error.to_string(),
        }
        .into()
    })
}

/// The new server's own lock for the instance, so a `run` there cannot start
/// meanwhile; `None` when the new server is this control point's own tree
/// (its lock is the control point's, already held).
fn lock_new<'a>(
    global: &GlobalArgs,
    spec: &ServerSpec,
    new: &'a Server,
    instance: &InstanceName,
) -> Result<Option<RunLock<'a>>, CliError> {
    // This machine named as the new server (`local`, or its own host name):
    // its lock is the one this control point holds already.
    let this_machine = spec.is_local()
        || cmw_upgrade_core::procedure::two_servers::same_machine(
            &cmw_upgrade_core::executor::LocalExecutor::new(&global.root),
            new.executor(),
        );
    let same_tree = global.state.is_none()
        && this_machine
        && std::path::Path::new(spec.root.as_deref().unwrap_or("/")) == global.root.as_path();
    if same_tree {
        return Ok(None);
    }
    Ok(Some(RunLock::acquire(new.executor(), instance)?))
}

/// Says what was copied to a server to reach it.
fn say_provisioned(global: &GlobalArgs, label: &str, server: &Server) {
    if let (true, Server::Ssh(ssh)) = (global.text_progress(), server) {
        if let Some(provisioned) = ssh.provisioned() {
            eprintln!("[{label}] {}", provisioned.note());
        }
    }
}

pub fn upgrade(global: &GlobalArgs, args: TwoServerArgs) -> Result<ExitStatus, CliError> {
    let (two, settings) = settings_of(&args)?;
    let old = connect("old", &two.old)?;
    say_provisioned(global, "old", &old);
    let new = connect("new", &two.new)?;
    say_provisioned(global, "new", &new);
    // Copying the agent to a server is a change there too.
    let copied = [&old, &new].iter().any(|server| {
        matches!(server, Server::Ssh(ssh) if ssh.provisioned().is_some_and(|copy| copy.copied))
    });
    if args.plan {
        let plan = plan_two_servers(&old, &new, &two, &settings)?;
        if global.json {
            print_outcome(&plan, true, copied)?;
        } else {
            print_plan(&plan)?;
        }
        return Ok(ExitStatus::Success);
    }
    let store = super::state_store(global);
    let servers = TwoServerRun {
        old: &old,
        new: &new,
        store: store.as_ref(),
    };
    let prepared = prepare_two_servers(&servers, &two, &settings)?;
    if let (Some(preflight), true) = (&prepared.preflight, global.text_progress()) {
        print_preflight(&mut crate::output::stderr(), preflight)?;
    }
    // Locks only once the preflight passed: a typo leaves no file behind.
    let _here = RunLock::acquire(store.as_ref(), &settings.instance)?;
    let _there = lock_new(global, &two.new, &new, &settings.instance)?;
    let mut printer = ProgressPrinter::for_global(global);
    let mut ran_a_step = false;
    let report = run_two_servers(
        &servers,
        prepared,
        &two,
        &settings,
        &mut |event| {
            ran_a_step |= matches!(event, Event::StepStarted { .. });
            printer.show(event);
            super::upgrade::kill_hook(event);
        },
        &cmw_upgrade_core::Cancel::new(),
    )?;
    let upgraded = report.run.outcome == "upgraded";
    if global.json {
        print_outcome(&report, upgraded, ran_a_step || copied)?;
    } else {
        print_report(&report)?;
    }
    Ok(if upgraded {
        ExitStatus::Success
    } else {
        ExitStatus::Failed
    })
}

pub(super) fn print_preflight(
    out: &mut impl Write,
    preflight: &TwoServerPreflight,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Preflight (the old database: {} MiB):",
        preflight.database_bytes / (1 << 20)
    )?;
    for (label, report) in [("old", &preflight.old), ("new", &preflight.new)] {
        for check in &report.checks {
            writeln!(
                out,
                "  [{label}] {:<10} {}  {}",
                check.name,
                if check.ok { "ok" } else { "FAILED" },
                check.detail
            )?;
        }
    }
    Ok(())
}

fn print_plan(plan: &TwoServerPlan) -> Result<(), CliError> {
    let mut out = crate::output::stdout();
    writeln!(
        out,
        "Plan for {}: old server {}, new server {} (nothing is changed).\n",
        plan.instance,
        plan.old.display(),
        plan.new.display()
    )?;
    print_preflight(&mut out, &plan.preflight)?;
    for (index, step) in plan.steps.iter().enumerate() {
        print_planned_step(&mut out, index, step)?;
    }
    writeln!(
        out,
        "\nRun it with the same options without --plan; see where it is with: cmw-upgrade status --instance {}",
        plan.instance
    )?;
    Ok(())
}

fn print_report(report: &TwoServerReport) -> Result<(), CliError> {
    let mut out = crate::output::stdout();
    let servers = &report.servers.settings;
    writeln!(
        out,
        "\nUpgrade of {} from {} (old) to {} (new): {}\n",
        report.run.instance,
        servers.old.display(),
        servers.new.display(),
        report.run.outcome
    )?;
    for step in &report.run.steps {
        let server = step.server.as_deref().unwrap_or("new");
        let seconds = step
            .seconds
            .map(|seconds| format!("{seconds:.1}s"))
            .unwrap_or_default();
        writeln!(
            out,
            "[{server:<8}] {:<17} {:<12} {seconds:>8}",
            step.name,
            step.status.as_str()
        )?;
        for command in &step.commands {
            writeln!(out, "    [{server}] $ {}", command.display())?;
        }
        if let Some(error) = &step.error {
            writeln!(out, "    ! {error}")?;
        }
    }
    if let Some(drift) = report
        .run
        .steps
        .iter()
        .find_map(|step| step.artifacts.get("drift"))
    {
        writeln!(out, "\nAfter the backup: {drift}")?;
    }
    writeln!(out, "\n{}", report.run.next)?;
    crate::output::print_to_do(&mut out, &report.run.to_do)?;
    Ok(())
}

/// `rollback` of a run from this control point: reconnects to the recorded
/// new server and undoes its part (the old server was only read).
pub fn rollback(
    global: &GlobalArgs,
    instance: &InstanceName,
    servers: &RecordedServers,
    force: bool,
) -> Result<ExitStatus, CliError> {
    let store = super::state_store(global);
    let new = connect("new", &servers.settings.new)?;
    let _here = RunLock::acquire(store.as_ref(), instance)?;
    let _there = lock_new(global, &servers.settings.new, &new, instance)?;
    if let Some(now) = cmw_upgrade_core::procedure::state::RunState::load(store.as_ref(), instance)?
    {
        super::upgrade::refuse_finished(&now, instance, force)?;
    }
    let mut printer = ProgressPrinter::for_global(global);
    let report = rollback_two_servers(store.as_ref(), &new, instance, &mut |event| {
        printer.show(event)
    })?;
    print_rollback(global, &report, "new")
}
