//! `cmw-upgrade cutover plan|prepare|apply|verify|finish|revert`: parse, call the core, print.

use std::io::Write;
use std::time::Duration;

use cmw_upgrade_core::cutover::dns::{self, DnsOptions, DnsReport, DnsTarget};
use cmw_upgrade_core::cutover::dns_key::{self, TsigKey};
use cmw_upgrade_core::cutover::dns_wire::HickoryWire;
use cmw_upgrade_core::cutover::nginx::{self, NginxOptions, NginxReport, NginxTarget};
use cmw_upgrade_core::cutover::nginx_site::{Endpoint, ResolverDriven};
use cmw_upgrade_core::cutover::{self, CutoverOptions, CutoverReport, HaproxyTarget};
use cmw_upgrade_core::executor::{DryRun, Executor, LocalExecutor, ToolAction};

use super::cutover_around;
use super::cutover_proxy::ProxyHost;
use crate::args::{CutoverArgs, CutoverMethod, GlobalArgs, HaproxyCommandArgs, ReachArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::print_json;

/// The core's options from the command line.
pub(super) fn options(args: CutoverArgs) -> Result<CutoverOptions, CliError> {
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
    let proxy = ProxyHost::connect(global, &args)?;
    // haproxy with a server's address: what prepare would add, when the backend lacks it.
    if args.method == CutoverMethod::Haproxy && (args.old.is_some() || args.new.is_some()) {
        return super::cutover_probe::plan_haproxy_prepare(global, args, &proxy);
    }
    // The checks apply runs first, run here too: each only reads.
    let around = cutover_around::planned(global, &args, &proxy)?;
    if args.method == CutoverMethod::Nginx {
        let options = nginx_options(global, args)?;
        // A dry run on top: the plan only reads the site and the saved state.
        let executor = DryRun::new(proxy.executor());
        let report = nginx::plan(&executor, &options)?;
        return around.print(global, &report, || print_nginx(global, &report));
    }
    if args.method == CutoverMethod::Dns {
        let options = dns_options(args, false)?;
        // Only queries: the dns plan sends no update; the state file is only read.
        let executor = DryRun::new(proxy.executor());
        let report = dns::plan(&executor, &HickoryWire::default(), &options)?;
        return around.print(global, &report, || print_dns(global, &report));
    }
    let options = options(args)?;
    // A dry run on top: whatever the core does, nothing here changes a thing.
    let executor = DryRun::new(proxy.executor());
    let report = cutover::plan(&executor, &options)?;
    around.print(global, &report, || print(global, &report))
}

pub fn prepare(global: &GlobalArgs, args: CutoverArgs) -> Result<ExitStatus, CliError> {
    let proxy = ProxyHost::connect(global, &args)?;
    if args.method == CutoverMethod::Nginx {
        let options = nginx_options(global, args)?;
        let executor = proxy.executor();
        return print_nginx(
            global,
            &nginx::prepare(&executor, &HickoryWire::default(), &options)?,
        );
    }
    if args.method == CutoverMethod::Haproxy {
        return super::cutover_probe::prepare_haproxy(global, args, &proxy);
    }
    let options = dns_options(args, true)?;
    let executor = proxy.executor();
    print_dns(
        global,
        &dns::prepare(&executor, &HickoryWire::default(), &options)?,
    )
}

pub fn apply(global: &GlobalArgs, args: CutoverArgs) -> Result<ExitStatus, CliError> {
    let proxy = ProxyHost::connect(global, &args)?;
    // Every method, before anything changes: the checks, then --freeze-old.
    let around = cutover_around::cleared_for_apply(global, &args, &proxy)?;
    if args.probe.probe.is_some() {
        return super::cutover_probe::switch(
            global,
            args,
            super::cutover_probe::Switch::Apply,
            &around,
            &proxy,
        );
    }
    if args.method == CutoverMethod::Nginx {
        let options = nginx_options(global, args)?;
        if options.reload {
            // Said before the switch, not only in the report after it.
            eprintln!("Warning: {}", nginx::RESET_WARNING);
        }
        let executor = proxy.executor();
        let report = around.switched(&executor, nginx::apply(&executor, &options))?;
        around.record(&executor, "nginx")?;
        return around.print(global, &report, || print_nginx(global, &report));
    }
    if args.method == CutoverMethod::Dns {
        let options = dns_options(args, true)?;
        let executor = proxy.executor();
        let report = around.switched(
            &executor,
            dns::apply(&executor, &HickoryWire::default(), &options),
        )?;
        around.record(&executor, "dns")?;
        return around.print(global, &report, || print_dns(global, &report));
    }
    let options = options(args)?;
    let executor = proxy.executor();
    let report = around.switched(&executor, cutover::apply(&executor, &options))?;
    around.record(&executor, "haproxy")?;
    around.print(global, &report, || print(global, &report))
}

pub fn verify(global: &GlobalArgs, args: CutoverArgs) -> Result<ExitStatus, CliError> {
    let proxy = ProxyHost::connect(global, &args)?;
    // After the switch: the new server's health and logs, when it is known here.
    let after = cutover_around::verified(global, &args, &proxy)?;
    if args.probe.old_url.is_some() {
        return super::cutover_probe::verify_compared(global, args, &proxy, &after);
    }
    if args.method == CutoverMethod::Nginx {
        let options = nginx_options(global, args)?;
        let executor = proxy.executor();
        let report = nginx::verify(&executor, &options)?;
        return checked(
            &after,
            after.print(global, &report, || print_nginx(global, &report)),
        );
    }
    if args.method == CutoverMethod::Dns {
        let options = dns_options(args, false)?;
        let report = dns::verify(&HickoryWire::default(), &options)?;
        return checked(
            &after,
            after.print(global, &report, || print_dns(global, &report)),
        );
    }
    let options = options(args)?;
    let executor = proxy.executor();
    let report = cutover::verify(&executor, &options)?;
    checked(
        &after,
        after.print(global, &report, || print(global, &report)),
    )
}

/// A verify's exit status with the look after the switch: a new server that
/// fails its health check or logs an error is bad news (exit 1) even when
/// traffic went where it should (the text printer's status says only that).
fn checked(
    after: &cutover_around::Around,
    status: Result<ExitStatus, CliError>,
) -> Result<ExitStatus, CliError> {
    match status? {
        ExitStatus::Success if !after.checks_hold() => Ok(ExitStatus::Failed),
        status => Ok(status),
    }
}

pub fn finish(global: &GlobalArgs, args: CutoverArgs) -> Result<ExitStatus, CliError> {
    let proxy = ProxyHost::connect(global, &args)?;
    // The freeze is lifted first: the switch is done, the old server may take writes again.
    let around = cutover_around::finish_old_site(global, &args)?;
    let executor = proxy.executor();
    if args.method != CutoverMethod::Dns {
        let Some(report) = around.old_site_reports.first() else {
            return Err(nothing_to(args.method, "finish"));
        };
        return around.print(global, report, || Ok(ExitStatus::Success));
    }
    let options = dns_options(args, true)?;
    let report = dns::finish(&executor, &HickoryWire::default(), &options)?;
    around.print(global, &report, || print_dns(global, &report))
}

pub fn revert(global: &GlobalArgs, args: CutoverArgs) -> Result<ExitStatus, CliError> {
    let proxy = ProxyHost::connect(global, &args)?;
    // The old site first: it must serve as before when traffic comes back.
    let around = match cutover_around::revert_old_site(global, &args)? {
        cutover_around::OldSiteReverted::Alone(status) => return Ok(status),
        cutover_around::OldSiteReverted::Then(around) => around,
    };
    // haproxy: prepare's additions are taken out too.
    if args.probe.probe.is_some() || args.method == CutoverMethod::Haproxy {
        return super::cutover_probe::switch(
            global,
            args,
            super::cutover_probe::Switch::Revert,
            &around,
            &proxy,
        );
    }
    let executor = proxy.executor();
    if args.method == CutoverMethod::Nginx {
        let options = nginx_options(global, args)?;
        let report = nginx::revert(&executor, &options)?;
        return around.print(global, &report, || print_nginx(global, &report));
    }
    if args.method == CutoverMethod::Dns {
        let options = dns_options(args, true)?;
        let report = dns::revert(&executor, &HickoryWire::default(), &options)?;
        return around.print(global, &report, || print_dns(global, &report));
    }
    let options = options(args)?;
    let report = cutover::revert(&executor, &options)?;
    around.print(global, &report, || print(global, &report))
}

fn nothing_to(method: CutoverMethod, verb: &str) -> CliError {
    let name = match method {
        CutoverMethod::Haproxy => "haproxy",
        CutoverMethod::Nginx => "nginx",
        CutoverMethod::Dns => "dns",
    };
    CliError::from(cmw_upgrade_core::Error::BadInput {
        details: format!(
            "--method {name} has nothing to {verb}: `cutover apply` switches and `cutover \
             revert` switches back (prepare is for every method, finish for --method dns \
             and, with any method, to lift apply's --freeze-old)"
        ),
    })
}

/// The nginx method's options.
pub(super) fn nginx_options(
    global: &GlobalArgs,
    args: CutoverArgs,
) -> Result<NginxOptions, CliError> {
    let bad = |details: String| CliError::from(cmw_upgrade_core::Error::BadInput { details });
    // clap requires these with --method nginx; a missing one is a bug there.
    let endpoint = |value: Option<String>, option: &str| {
        let value = value.ok_or_else(|| bad(format!("--method nginx needs {option}")))?;
        Endpoint::parse(&value).map_err(|error| bad(format!("{option}: {error}")))
    };
    let resolver =
        match (args.upstream_name, args.resolver.first()) {
            (Some(name), Some(resolver)) => Some(ResolverDriven {
                name,
                resolver: resolver.to_string(),
                valid: args.resolver_valid,
            }),
            (Some(_), None) => return Err(bad(
                "--upstream-name needs --resolver ADDR[:PORT]: the DNS server nginx asks for it"
                    .to_owned(),
            )),
            (None, _) => None,
        };
    if args.reload && resolver.is_some() {
        return Err(bad(
            "--reload swaps the address and reloads; --upstream-name makes the upstream \
             resolver-driven: pass one of them"
                .to_owned(),
        ));
    }
    Ok(NginxOptions {
        instance: args.instance,
        target: NginxTarget {
            site: args
                .nginx_site
                .ok_or_else(|| bad("--method nginx needs --nginx-site".to_owned()))?,
            main_config: args.nginx_conf,
            old: endpoint(args.old, "--old")?,
            new: endpoint(args.new, "--new")?,
        },
        root: global.root.clone(),
        reload: args.reload,
        resolver,
        proxy_url: args.proxy_url,
        stamp: cmw_upgrade_core::exec::utc_stamp(std::time::SystemTime::now()),
    })
}

pub(super) fn print_nginx(
    global: &GlobalArgs,
    report: &NginxReport,
) -> Result<ExitStatus, CliError> {
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
        "{} nginx cut-over ({}) of {} ({} -> {})",
        report.action, report.how, target.site, target.old, target.new
    )?;
    if !report.diff.is_empty() {
        write!(out, "{}", report.diff)?;
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
    for note in &report.notes {
        writeln!(out, "Note: {note}")?;
    }
    match report.action.as_str() {
        "plan" => writeln!(out, "Nothing was changed (plan).")?,
        "verify" if !report.ok => writeln!(out, "Not switched yet (checks marked FAIL).")?,
        "verify" => {}
        _ if !report.changed => writeln!(out, "Nothing to change: already so.")?,
        _ => {}
    }
    Ok(status)
}

/// The dns method's options; the key file is read (and its secret masked
/// from then on) when the action changes records.
pub(super) fn dns_options(args: CutoverArgs, needs_key: bool) -> Result<DnsOptions, CliError> {
    // clap requires these with --method dns; a missing one is a bug there.
    let missing = |option: &str| {
        CliError::from(cmw_upgrade_core::Error::BadInput {
            details: format!("--method dns needs {option}"),
        })
    };
    let ip = |value: Option<String>, option: &str| {
        let value = value.ok_or_else(|| missing(option))?;
        value.parse::<std::net::IpAddr>().map_err(|_| {
            CliError::from(cmw_upgrade_core::Error::BadInput {
                details: format!("{option} {value:?} is not an IP address (--method dns swaps an A or AAAA record)"),
            })
        })
    };
    let key = match (&args.tsig_key_file, needs_key) {
        (Some(file), true) => Some(read_key(file)?),
        _ => None,
    };
    let now = std::time::SystemTime::now();
    Ok(DnsOptions {
        instance: args.instance,
        target: DnsTarget {
            zone: args.zone.ok_or_else(|| missing("--zone"))?,
            name: args.name.ok_or_else(|| missing("--name"))?,
            old: ip(args.old, "--old")?,
            new: ip(args.new, "--new")?,
        },
        server: args.server,
        ns_port: args.ns_port,
        resolvers: args.resolver,
        key,
        lowered_ttl: args.ttl,
        force: args.force,
        verify_timeout: args.verify_timeout,
        now: now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        stamp: cmw_upgrade_core::exec::utc_stamp(now),
    })
}

/// Reads a TSIG key file on this machine (the one sending the updates).
fn read_key(file: &std::path::Path) -> Result<TsigKey, CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| CliError::from(cmw_upgrade_core::Error::io("read", file, error)))?;
    let key = dns_key::parse_bind_key(&text).map_err(|details| {
        CliError::from(cmw_upgrade_core::Error::BadInput {
            details: format!("--tsig-key-file {}: {details}", file.display()),
        })
    })?;
    dns_key::remember_secret(&key);
    Ok(key)
}

pub(super) fn print_dns(global: &GlobalArgs, report: &DnsReport) -> Result<ExitStatus, CliError> {
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
        "{} dns cut-over of {} ({} -> {}) at primary {}",
        report.action, target.name, target.old, target.new, report.server
    )?;
    for set in &report.after {
        let addresses: Vec<String> = set.addresses.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "  {:<5} TTL {:<6} {}",
            set.kind.as_str(),
            set.ttl,
            addresses.join(", ")
        )?;
    }
    if let (Some(before), Some(after)) = (report.serial_before, report.serial_after) {
        if before != after {
            writeln!(out, "  SOA serial {before} -> {after}")?;
        }
    }
    for (number, step) in report.steps.iter().enumerate() {
        writeln!(
            out,
            "{:>2}. [{}] {}: {}",
            number + 1,
            step.outcome,
            step.phase,
            step.display
        )?;
    }
    for row in &report.servers {
        let mark = if row.ok { "ok  " } else { "OLD " };
        let answer: Vec<String> = row.answer.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "  {mark} {:<13} {:<28} {:<22} {}{}{}",
            row.role,
            row.server,
            row.address,
            if answer.is_empty() {
                "-".to_owned()
            } else {
                answer.join(", ")
            },
            row.ttl
                .map(|ttl| format!(" (TTL {ttl})"))
                .unwrap_or_default(),
            row.error
                .as_deref()
                .map(|error| format!("  {error}"))
                .unwrap_or_default()
        )?;
    }
    for note in &report.notes {
        writeln!(out, "Note: {note}")?;
    }
    match report.action.as_str() {
        "plan" => writeln!(out, "Nothing was changed (plan).")?,
        "verify" if !report.ok => writeln!(
            out,
            "Not every server answers the new address yet (rows marked OLD)."
        )?,
        "verify" => {}
        _ if !report.changed => writeln!(out, "Nothing to change: already so.")?,
        _ => {}
    }
    Ok(status)
}

pub(super) fn print(global: &GlobalArgs, report: &CutoverReport) -> Result<ExitStatus, CliError> {
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
