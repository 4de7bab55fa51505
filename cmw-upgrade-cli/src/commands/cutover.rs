//! `cmw-upgrade cutover plan|apply|verify|revert`: parse, call the core, print.

use std::io::Write;
use std::time::Duration;

use cmw_upgrade_core::cutover::{self, CutoverOptions, CutoverReport, HaproxyTarget};
use cmw_upgrade_core::executor::{DryRun, Executor, LocalExecutor, ToolAction};

use crate::args::{CutoverArgs, CutoverMethod, GlobalArgs, HaproxyCommandArgs, ReachArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::print_json;

/// The core's options from the command line.
fn options(args: CutoverArgs) -> Result<CutoverOptions, CliError> {
    let CutoverMethod::Haproxy = args.method;
    // clap requires these with --method haproxy; a missing one is a bug there.
    let required = |value: Option<String>, option: &str| {
        value.ok_or_else(|| {
            CliError::from(cmw_upgrade_core::Error::BadInput {
                details: format!("--method haproxy needs {option}"),
            })
        })
    };
    Ok(CutoverOptions {
        instance: args.instance,
        target: HaproxyTarget {
            socket: required(args.haproxy_socket, "--haproxy-socket")?,
            backend: required(args.backend, "--backend")?,
            old_server: required(args.old_server, "--old-server")?,
            new_server: required(args.new_server, "--new-server")?,
            config: args.haproxy_config,
        },
        drain: Duration::from_secs(args.drain_seconds),
        up_limit: args.up_timeout,
        stamp: cmw_upgrade_core::exec::utc_stamp(std::time::SystemTime::now()),
    })
}

pub fn plan(global: &GlobalArgs, args: CutoverArgs) -> Result<ExitStatus, CliError> {
    let options = options(args)?;
    // A dry run on top: whatever the core does, nothing here changes a thing.
    let executor = DryRun::new(LocalExecutor::new(&global.root));
    print(global, &cutover::plan(&executor, &options)?)
}

pub fn apply(global: &GlobalArgs, args: CutoverArgs) -> Result<ExitStatus, CliError> {
    let options = options(args)?;
    let executor = LocalExecutor::new(&global.root);
    print(global, &cutover::apply(&executor, &options)?)
}

pub fn verify(global: &GlobalArgs, args: CutoverArgs) -> Result<ExitStatus, CliError> {
    let options = options(args)?;
    let executor = LocalExecutor::new(&global.root);
    print(global, &cutover::verify(&executor, &options)?)
}

pub fn revert(global: &GlobalArgs, args: CutoverArgs) -> Result<ExitStatus, CliError> {
    let options = options(args)?;
    let executor = LocalExecutor::new(&global.root);
    print(global, &cutover::revert(&executor, &options)?)
}

fn print(global: &GlobalArgs, report: &CutoverReport) -> Result<ExitStatus, CliError> {
    let status = if report.ok {
        ExitStatus::Success
    } else {
        ExitStatus::Failed
    };
    if global.json {
        print_json(report)?;
        return Ok(status);
    }
    let mut out = crate::output::stdout();
    let target = &report.target;
    writeln!(
        out,
        "{} cut-over of backend {} ({} -> {}) through {}",
        report.action, target.backend, target.old_server, target.new_server, target.socket
    )?;
    for server in &report.after {
        writeln!(
            out,
            "  {:<12} {}:{}  {:?}, {}",
            server.name,
            server.address,
            server.port.map_or("-".to_owned(), |port| port.to_string()),
            server.operational,
            server.admin
        )?;
    }
    for (number, step) in report.steps.iter().enumerate() {
        let detail = step
            .detail
            .as_deref()
            .map(|detail| format!("  ({detail})"))
            .unwrap_or_default();
        writeln!(
            out,
            "{:>2}. [{}] {}{detail}",
            number + 1,
            step.outcome,
            step.display
        )?;
    }
    for check in &report.checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        writeln!(out, "  {mark} {}: {}", check.check, check.found)?;
    }
    match report.action.as_str() {
        "plan" => writeln!(out, "Nothing was changed (plan).")?,
        "verify" if !report.ok => writeln!(
            out,
            "Not switched yet: run `cmw-upgrade cutover apply` with the same options."
        )?,
        _ if !report.changed && report.action != "verify" => {
            writeln!(out, "Nothing to change: already so.")?
        }
        _ => {}
    }
    Ok(status)
}

pub fn haproxy_command(
    global: &GlobalArgs,
    args: HaproxyCommandArgs,
) -> Result<ExitStatus, CliError> {
    let answer = LocalExecutor::new(&global.root)
        .tool(&ToolAction::HaproxyCommand {
            socket: args.haproxy_socket,
            command: args.command,
        })?
        .haproxy_answer()?
        .unwrap_or_default();
    if global.json {
        print_json(&serde_json::json!({ "ok": true, "changed": false, "answer": answer }))?;
    } else {
        write!(crate::output::stdout(), "{answer}")?;
    }
    Ok(ExitStatus::Success)
}

pub fn reach(global: &GlobalArgs, args: ReachArgs) -> Result<ExitStatus, CliError> {
    let address = LocalExecutor::new(&global.root)
        .tool(&ToolAction::TcpConnect {
            host: args.host,
            port: args.port,
        })?
        .reachable()?
        .unwrap_or_default();
    if global.json {
        print_json(&serde_json::json!({ "ok": true, "changed": false, "address": address }))?;
    } else {
        writeln!(crate::output::stdout(), "connected to {address}")?;
    }
    Ok(ExitStatus::Success)
}
