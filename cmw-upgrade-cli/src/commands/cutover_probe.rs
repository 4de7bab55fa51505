//! `cutover apply|revert --probe URL`, `cutover prepare --method haproxy`,
//! `cutover verify --old-url --new-url`: parse, call the core, print.

use std::io::Write;
use std::time::Duration;

use cmw_upgrade_core::cutover::dns_wire::HickoryWire;
use cmw_upgrade_core::cutover::haproxy_prepare::{self, PrepareOptions, PrepareReport, Reload};
use cmw_upgrade_core::cutover::probe::{self, Latency, ProbeOptions, ProbeReport};
use cmw_upgrade_core::cutover::{self, dns, nginx};
use cmw_upgrade_core::executor::{DryRun, Executor};
use serde::Serialize;
use serde_json::Value;

use super::cutover::{dns_options, nginx_options, options, print, print_dns, print_nginx};
use super::cutover_around::Around;
use super::cutover_proxy::ProxyHost;
use crate::args::{CutoverArgs, CutoverMethod, GlobalArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::print_json;

/// Which way traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// To the new server.
    Apply,
    /// Back to what was saved.
    Revert,
}

/// How long the probe runs before and after the switch.
const SETTLE: Duration = Duration::from_secs(1);

fn probe_options(args: &CutoverArgs) -> Option<ProbeOptions> {
    args.probe.probe.clone().map(|url| ProbeOptions {
        url,
        clients: usize::try_from(args.probe.probe_clients).unwrap_or(1),
        server_header: args.probe.probe_server_header.clone(),
        settle: SETTLE,
    })
}

/// Runs `switch` under the probe when one is asked for.
fn under_probe<T>(
    probe: Option<&ProbeOptions>,
    switch: impl FnOnce() -> cmw_upgrade_core::Result<T>,
) -> cmw_upgrade_core::Result<(T, Option<ProbeReport>)> {
    match probe {
        Some(options) => {
            probe::through_switch(options, switch).map(|(report, seen)| (report, Some(seen)))
        }
        None => switch().map(|report| (report, None)),
    }
}

/// Prints a method's report with more fields: JSON merged into its object
/// (with the checks before the switch and the old site's edits of `around`),
/// text after its own lines (those of `around` before them).
fn print_with<R: Serialize>(
    global: &GlobalArgs,
    around: Option<&Around>,
    report: &R,
    ok: bool,
    text: impl FnOnce(&GlobalArgs, &R) -> Result<ExitStatus, CliError>,
    extra: Vec<(&str, Value)>,
    extra_text: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<ExitStatus, CliError> {
    // The report's own verdict, the caller's (the probe, the comparison) and
    // the checks' where they decide (verify's look after the switch).
    let ok = ok && around.is_none_or(Around::checks_hold);
    let (around_fields, old_site_changed) = match around {
        Some(around) => around.fields()?,
        None => (Vec::new(), false),
    };
    if global.json {
        let mut value = serde_json::to_value(report).map_err(std::io::Error::from)?;
        if let Value::Object(map) = &mut value {
            for (key, more) in extra.into_iter().chain(around_fields) {
                map.insert(key.to_owned(), more);
            }
            // The contract every report keeps: `ok` and `changed`.
            map.insert("ok".to_owned(), ok.into());
            if old_site_changed {
                map.insert("changed".to_owned(), true.into());
            }
            map.entry("changed").or_insert(false.into());
        }
        print_json(&value)?;
        return Ok(if ok {
            ExitStatus::Success
        } else {
            ExitStatus::Failed
        });
    }
    if let Some(around) = around {
        around.print_text()?;
    }
    let status = text(global, report)?;
    let mut out = crate::output::stdout();
    extra_text(&mut out)?;
    Ok(match status {
        ExitStatus::Success if !ok => ExitStatus::Failed,
        status => status,
    })
}

fn write_probe(out: &mut dyn Write, seen: &ProbeReport) -> std::io::Result<()> {
    writeln!(
        out,
        "probe {} ({} keep-alive clients): {} requests, {} failed; p50/p95 before {}/{} ms, \
         after {}/{} ms; the switch took {} ms",
        seen.url,
        seen.clients,
        seen.requests,
        seen.failed,
        seen.p50_ms_before,
        seen.p95_ms_before,
        seen.p50_ms_after,
        seen.p95_ms_after,
        seen.switch_ms
    )?;
    match seen.moved_after_ms {
        Some(ms) => writeln!(
            out,
            "  traffic moved {ms} ms after the switch began (answering before: {}; after: {})",
            seen.servers_before.join(", "),
            seen.servers_after.join(", ")
        )?,
        None => writeln!(
            out,
            "  no answer came from another server than before ({})",
            seen.servers_before.join(", ")
        )?,
    }
    for error in &seen.errors {
        writeln!(out, "  failed: {error}")?;
    }
    Ok(())
}

fn probe_value(seen: Option<&ProbeReport>) -> Vec<(&'static str, Value)> {
    seen.and_then(|seen| serde_json::to_value(seen).ok())
        .map(|value| vec![("probe", value)])
        .unwrap_or_default()
}

/// Apply: a failure goes through `around` (a switch that changed nothing
/// lifts the freeze), a success records the checks. Revert: as it is.
fn settled<T>(
    which: Switch,
    around: &Around,
    executor: &dyn Executor,
    method: &str,
    result: cmw_upgrade_core::Result<T>,
) -> Result<T, CliError> {
    match which {
        Switch::Apply => {
            let done = around.switched(executor, result)?;
            around.record(executor, method)?;
            Ok(done)
        }
        Switch::Revert => Ok(result?),
    }
}

/// `cutover apply|revert` with the probe (any method) or, for haproxy
/// revert, prepare's additions taken out after the switch back.
///
/// `around` holds the checks apply ran (and --freeze-old's edit) or the old
/// site revert put back: a failed switch goes through it (a switch that
/// changed nothing lifts the freeze), a done apply records the checks, and
/// the report shows them.
pub fn switch(
    global: &GlobalArgs,
    args: CutoverArgs,
    which: Switch,
    around: &Around,
    proxy: &ProxyHost,
) -> Result<ExitStatus, CliError> {
    let probe = probe_options(&args);
    let executor = proxy.executor();
    let method = match args.method {
        CutoverMethod::Haproxy => "haproxy",
        CutoverMethod::Nginx => "nginx",
        CutoverMethod::Dns => "dns",
    };
    match args.method {
        CutoverMethod::Nginx => {
            let options = nginx_options(global, args)?;
            if options.reload && which == Switch::Apply {
                eprintln!("Warning: {}", nginx::RESET_WARNING);
            }
            let (report, seen) = settled(
                which,
                around,
                &executor,
                method,
                under_probe(probe.as_ref(), || match which {
                    Switch::Apply => nginx::apply(&executor, &options),
                    Switch::Revert => nginx::revert(&executor, &options),
                }),
            )?;
            print_with(
                global,
                Some(around),
                &report,
                report.ok,
                print_nginx,
                probe_value(seen.as_ref()),
                |out| seen.as_ref().map_or(Ok(()), |seen| write_probe(out, seen)),
            )
        }
        CutoverMethod::Dns => {
            let options = dns_options(args, true)?;
            let wire = HickoryWire::default();
            let (report, seen) = settled(
                which,
                around,
                &executor,
                method,
                under_probe(probe.as_ref(), || match which {
                    Switch::Apply => dns::apply(&executor, &wire, &options),
                    Switch::Revert => dns::revert(&executor, &wire, &options),
                }),
            )?;
            print_with(
                global,
                Some(around),
                &report,
                report.ok,
                print_dns,
                probe_value(seen.as_ref()),
                |out| seen.as_ref().map_or(Ok(()), |seen| write_probe(out, seen)),
            )
        }
        CutoverMethod::Haproxy => {
            let reload_limit = args.up_timeout;
            let options = options(args)?;
            if which == Switch::Apply {
                let (report, seen) = settled(
                    which,
                    around,
                    &executor,
                    method,
                    under_probe(probe.as_ref(), || cutover::apply(&executor, &options)),
                )?;
                return print_with(
                    global,
                    Some(around),
                    &report,
                    report.ok,
                    print,
                    probe_value(seen.as_ref()),
                    |out| seen.as_ref().map_or(Ok(()), |seen| write_probe(out, seen)),
                );
            }
            let switched = cutover::read_saved_state(&executor, &options.instance)?.is_some();
            let prepared = haproxy_prepare::read_prepared(&executor, &options.instance)?.is_some();
            let (report, seen) = if switched || !prepared {
                // Without either, the core's revert says there is nothing to revert.
                let (report, seen) =
                    under_probe(probe.as_ref(), || cutover::revert(&executor, &options))?;
                (Some(report), seen)
            } else {
                (None, None)
            };
            let undone = haproxy_prepare::revert(
                &executor,
                &options.instance,
                &options.target.socket,
                &options.stamp,
                reload_limit,
            )?;
            let mut extra = probe_value(seen.as_ref());
            if let Some(undone) = &undone {
                extra.push((
                    "prepare",
                    serde_json::to_value(undone).map_err(std::io::Error::from)?,
                ));
            }
            let write_extra = |out: &mut dyn Write| -> std::io::Result<()> {
                if let Some(seen) = &seen {
                    write_probe(out, seen)?;
                }
                if let Some(undone) = &undone {
                    write_prepare(out, undone)?;
                }
                Ok(())
            };
            match (report, &undone) {
                (Some(report), _) => print_with(
                    global,
                    Some(around),
                    &report,
                    report.ok,
                    print,
                    extra,
                    write_extra,
                ),
                (None, Some(undone)) => {
                    if !global.json {
                        around.print_text()?;
                    }
                    print_prepare(global, undone)
                }
                (None, None) => around.print(
                    global,
                    &serde_json::json!({"ok": true, "changed": false}),
                    || Ok(ExitStatus::Success),
                ),
            }
        }
    }
}

/// `cutover plan --method haproxy --new|--old HOST:PORT`: prepare's changes
/// under a dry run (the config is read, nothing written, no reload).
pub fn plan_haproxy_prepare(
    global: &GlobalArgs,
    args: CutoverArgs,
    proxy: &ProxyHost,
) -> Result<ExitStatus, CliError> {
    let options = prepare_options(args)?;
    let executor = DryRun::new(proxy.executor());
    print_prepare(global, &haproxy_prepare::prepare(&executor, &options)?)
}

/// `cutover prepare --method haproxy`.
pub fn prepare_haproxy(
    global: &GlobalArgs,
    args: CutoverArgs,
    proxy: &ProxyHost,
) -> Result<ExitStatus, CliError> {
    let options = prepare_options(args)?;
    let executor = proxy.executor();
    print_prepare(global, &haproxy_prepare::prepare(&executor, &options)?)
}

fn prepare_options(args: CutoverArgs) -> Result<PrepareOptions, CliError> {
    let bad = |details: String| CliError::from(cmw_upgrade_core::Error::BadInput { details });
    let config = args.haproxy_config.clone().ok_or_else(|| {
        bad(
            "--method haproxy prepare needs --haproxy-config: the file it adds the server to"
                .to_owned(),
        )
    })?;
    let reload = match (
        &args.probe.haproxy_master_socket,
        &args.probe.reload_command,
    ) {
        (Some(socket), _) => Some(Reload::MasterSocket(socket.clone())),
        (None, Some(command)) => {
            let argv: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
            if argv.is_empty() {
                return Err(bad("--reload-command is empty".to_owned()));
            }
            Some(Reload::Command(argv))
        }
        (None, None) => None,
    };
    let idle_close = !args.probe.no_idle_close;
    let (old_address, new_address, reload_limit) =
        (args.old.clone(), args.new.clone(), args.up_timeout);
    let core = options(args)?;
    Ok(PrepareOptions {
        instance: core.instance,
        socket: core.target.socket,
        config,
        backend: core.target.backend,
        old_server: core.target.old_server,
        new_server: core.target.new_server,
        old_address,
        new_address,
        reload,
        idle_close,
        reload_limit,
        stamp: core.stamp,
    })
}

fn write_prepare(out: &mut dyn Write, report: &PrepareReport) -> std::io::Result<()> {
    let verb = if report.action == "revert" {
        "taken out of"
    } else {
        "added to"
    };
    for line in &report.lines {
        writeln!(out, "  {verb} {}: {}", report.config, line.trim())?;
    }
    if let Some(backup) = &report.backup {
        writeln!(out, "  original kept as {backup}")?;
    }
    if let Some(reload) = &report.reload {
        writeln!(out, "  reload: {reload}")?;
    }
    for note in &report.notes {
        writeln!(out, "Note: {note}")?;
    }
    Ok(())
}

fn print_prepare(global: &GlobalArgs, report: &PrepareReport) -> Result<ExitStatus, CliError> {
    if global.json {
        print_json(report)?;
        return Ok(ExitStatus::Success);
    }
    let mut out = crate::output::stdout();
    writeln!(
        out,
        "{} haproxy cut-over preparation of {}{}",
        report.action,
        report.config,
        if report.servers.is_empty() {
            String::new()
        } else {
            format!(" (server {})", report.servers.join(", "))
        }
    )?;
    write_prepare(&mut out, report)?;
    if report.action == "plan" {
        writeln!(out, "Nothing was changed (plan).")?;
    } else if !report.changed {
        writeln!(out, "Nothing was changed.")?;
    }
    Ok(ExitStatus::Success)
}

/// `cutover verify` with `--old-url` and `--new-url`: the method's checks,
/// then the two servers' response times over the same requests.
pub fn verify_compared(
    global: &GlobalArgs,
    args: CutoverArgs,
    proxy: &ProxyHost,
    after: &Around,
) -> Result<ExitStatus, CliError> {
    let (Some(old_url), Some(new_url)) = (args.probe.old_url.clone(), args.probe.new_url.clone())
    else {
        return Err(CliError::from(cmw_upgrade_core::Error::BadInput {
            details: "--old-url and --new-url go together".to_owned(),
        }));
    };
    let requests = args.probe.compare_requests.max(1);
    let compare = || -> Result<(Latency, Latency), CliError> {
        Ok((
            probe::measure(&old_url, requests)?,
            probe::measure(&new_url, requests)?,
        ))
    };
    let executor = proxy.executor();
    match args.method {
        CutoverMethod::Nginx => {
            let options = nginx_options(global, args)?;
            let report = nginx::verify(&executor, &options)?;
            let (old, new) = compare()?;
            print_compared(global, after, &report, report.ok, print_nginx, &old, &new)
        }
        CutoverMethod::Dns => {
            let options = dns_options(args, false)?;
            let report = dns::verify(&HickoryWire::default(), &options)?;
            let (old, new) = compare()?;
            print_compared(global, after, &report, report.ok, print_dns, &old, &new)
        }
        CutoverMethod::Haproxy => {
            let options = options(args)?;
            let report = cutover::verify(&executor, &options)?;
            let (old, new) = compare()?;
            print_compared(global, after, &report, report.ok, print, &old, &new)
        }
    }
}

fn print_compared<R: Serialize>(
    global: &GlobalArgs,
    after: &Around,
    report: &R,
    ok: bool,
    text: impl FnOnce(&GlobalArgs, &R) -> Result<ExitStatus, CliError>,
    old: &Latency,
    new: &Latency,
) -> Result<ExitStatus, CliError> {
    let answered = old.failed == 0 && new.failed == 0;
    let value = serde_json::json!({ "old": old, "new": new });
    print_with(
        global,
        Some(after),
        report,
        ok && answered,
        text,
        vec![("response_time", value)],
        |out| {
            writeln!(
                out,
                "response time over {} GETs each (one keep-alive connection):",
                old.requests
            )?;
            writeln!(
                out,
                "  server  {:>9}  {:>9}  {:>6}  url",
                "p50 ms", "p95 ms", "failed"
            )?;
            for (name, row) in [("old", old), ("new", new)] {
                writeln!(
                    out,
                    "  {name:<6}  {:>9.2}  {:>9.2}  {:>6}  {}",
                    row.p50_ms, row.p95_ms, row.failed, row.url
                )?;
            }
            if !answered {
                writeln!(out, "  FAIL some GETs failed (see the failed column)")?;
            }
            Ok(())
        },
    )
    .map(|status| if answered { status } else { ExitStatus::Failed })
}
