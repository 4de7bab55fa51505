//! Around `cutover`'s switch: the servers reached for the checks before it
//! (`--new-host`, `--old-host`, or the run `upgrade` recorded on this
//! machine), the checks' printing and JSON, `--freeze-old`, `forward-old`,
//! and the old site put back by `revert` and `finish`.
//!
//! The servers are reached as `upgrade` reaches them (the agent over ssh, or
//! this machine), so a cut-over driven from the control point that drove the
//! upgrade needs no new option: the run state names both servers, the bundle
//! and the site's port.

use std::collections::BTreeSet;
use std::io::Write;

use cmw_upgrade_core::cutover::before_switch::{
    self, CheckName, DriftProbe, HealthProbe, PreSwitch, PreSwitchCheck, Reached,
};
use cmw_upgrade_core::cutover::haproxy::Runtime;
use cmw_upgrade_core::cutover::nginx_site::Endpoint;
use cmw_upgrade_core::cutover::old_site::{self, OldSite, OldSiteAccess, OldSiteReport};
use cmw_upgrade_core::cutover::{dns, nginx};
use cmw_upgrade_core::cutover::{pick_servers, HaproxyTarget};
use cmw_upgrade_core::executor::{DryRun, Executor, LocalExecutor};
use cmw_upgrade_core::procedure::state::RunState;
use cmw_upgrade_core::procedure::two_servers::{Server, ServerSpec};
use cmw_upgrade_core::{InstanceName, OsFamily};
use serde::Serialize;

use super::cutover_proxy::ProxyHost;
use crate::args::{
    AroundArgs, CutoverArgs, CutoverMethod, ForwardOldArgs, GlobalArgs, OldServerArgs, SkipCheck,
};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::print_json;

fn bad(details: String) -> CliError {
    CliError::from(cmw_upgrade_core::Error::BadInput { details })
}

/// A server reached, and how it was named.
pub struct Connected {
    server: Server,
    /// `local`, or `user@host:port`, as saved for a revert from the state alone.
    host: String,
    root: Option<String>,
    label: String,
}

impl Connected {
    fn reached(&self) -> Reached<'_> {
        Reached {
            executor: self.server.executor(),
            label: self.label.clone(),
        }
    }
}

/// What the run recorded on this machine says about the servers, if anything.
struct Recorded {
    new: Option<ServerSpec>,
    old: Option<ServerSpec>,
    old_family: Option<OsFamily>,
    bundle: Option<String>,
    port: Option<u16>,
}

fn recorded(global: &GlobalArgs, instance: &InstanceName) -> Result<Recorded, CliError> {
    let store = super::state_store(global);
    let state = RunState::load(store.as_ref(), instance)?;
    let settings = state.as_ref().and_then(|state| state.settings.clone());
    let servers = state.and_then(|state| state.servers);
    Ok(Recorded {
        // A run without servers ran on this machine: the new server is here.
        new: match (&servers, &settings) {
            (Some(servers), _) => Some(servers.settings.new.clone()),
            (None, Some(_)) => Some(ServerSpec {
                root: Some(global.root.display().to_string()),
                ..ServerSpec::local()
            }),
            (None, None) => None,
        },
        old: servers.as_ref().map(|servers| servers.settings.old.clone()),
        old_family: servers.as_ref().map(|servers| servers.old_family),
        bundle: settings
            .as_ref()
            .map(|settings| settings.bundle.clone())
            .filter(|bundle| !bundle.is_empty()),
        port: settings.as_ref().map(|settings| settings.port),
    })
}

fn spec_of(
    option: &str,
    text: &str,
    root: Option<&String>,
    keys: &OldServerArgs,
) -> Result<ServerSpec, CliError> {
    let mut spec = ServerSpec::parse(text).map_err(|error| bad(format!("{option}: {error}")))?;
    spec.identity_file = keys.identity_file.clone();
    spec.known_hosts_file = keys.known_hosts.clone();
    spec.root = root.cloned();
    Ok(spec)
}

/// The spec as `--old-host` takes it again (an IPv6 address in brackets).
fn spec_text(spec: &ServerSpec) -> String {
    if spec.is_local() {
        return "local".to_owned();
    }
    let (user, host) = match spec.destination.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), spec.destination.as_str()),
    };
    if host.contains(':') {
        format!("{user}[{host}]:{}", spec.port)
    } else {
        format!("{user}{host}:{}", spec.port)
    }
}

fn connect(spec: &ServerSpec, which: &str) -> Result<Connected, CliError> {
    // As `upgrade` reaches it: a failure names the server.
    let server = super::two_servers::connect(which, spec)?;
    Ok(Connected {
        server,
        host: spec_text(spec),
        root: spec.root.clone(),
        label: format!("the {which} server ({})", spec.display()),
    })
}

/// Named JSON fields to add to a report object.
pub type ReportFields = Vec<(&'static str, serde_json::Value)>;

/// The servers and what the checks read, resolved once per command.
pub struct Around {
    instance: InstanceName,
    new: Option<Connected>,
    old: Option<Connected>,
    health: Option<HealthProbe>,
    drift: Option<DriftProbe>,
    skip: BTreeSet<CheckName>,
    accept_drift: bool,
    freeze: Option<OldSite>,
    stamp: String,
    /// The checks run, for the report.
    pub checks: Vec<PreSwitchCheck>,
    /// What was done to the old site, for the report.
    pub old_site_reports: Vec<OldSiteReport>,
    /// The checks' outcome is part of the report's `ok` (verify's look
    /// after the switch); before it, a plan shows them and apply refuses.
    checks_decide_ok: bool,
}

impl Around {
    /// Reaches the servers the checks (or the old site's edits) need: the
    /// ones given, else the recorded run's; none for a check that is skipped.
    pub fn resolve(
        global: &GlobalArgs,
        instance: &InstanceName,
        args: &AroundArgs,
        checks_needed: bool,
        not_needed: &[CheckName],
    ) -> Result<Around, CliError> {
        let recorded = recorded(global, instance)?;
        let skip: BTreeSet<CheckName> = args
            .skip_check
            .iter()
            .map(|skip| match skip {
                SkipCheck::NewHealth => CheckName::NewHealth,
                SkipCheck::NewReachable => CheckName::NewReachable,
                SkipCheck::OldDrift => CheckName::OldDrift,
            })
            .chain(not_needed.iter().copied())
            .collect();
        let old_site = args.old.old_site.as_ref().map(|site| OldSite {
            site: site.clone(),
            main_config: args.old.old_nginx_conf.clone(),
        });
        if args.freeze_old && old_site.is_none() {
            return Err(bad(
                "--freeze-old edits the old server's nginx site: give it as --old-site FILE"
                    .to_owned(),
            ));
        }
        let new_spec = match &args.new_host {
            Some(text) => Some(spec_of(
                "--new-host",
                text,
                args.new_root.as_ref(),
                &args.old,
            )?),
            None => recorded.new.clone(),
        };
        let old_spec = match &args.old.old_host {
            Some(text) => Some(spec_of(
                "--old-host",
                text,
                args.old.old_root.as_ref(),
                &args.old,
            )?),
            None => recorded.old.clone(),
        };
        let wants_new = checks_needed && !skip.contains(&CheckName::NewHealth);
        let wants_old = (checks_needed && !skip.contains(&CheckName::OldDrift)) || args.freeze_old;
        let new = match (&new_spec, wants_new) {
            (Some(spec), true) => Some(connect(spec, "new")?),
            _ => None,
        };
        let old = match (&old_spec, wants_old) {
            (Some(spec), true) => Some(connect(spec, "old")?),
            (None, _) if args.freeze_old => {
                return Err(bad(
                    "--freeze-old edits the old server's site: give the old server as \
                     --old-host [user@]host[:port]|local"
                        .to_owned(),
                ))
            }
            _ => None,
        };
        let url = args.health_url.clone().unwrap_or_else(|| {
            format!(
                "http://127.0.0.1:{}/api/health",
                recorded.port.unwrap_or(80)
            )
        });
        Ok(Around {
            instance: instance.clone(),
            new,
            old,
            health: Some(HealthProbe {
                instance: instance.clone(),
                url,
            }),
            drift: args
                .bundle
                .clone()
                .or(recorded.bundle)
                .map(|bundle| DriftProbe {
                    instance: instance.clone(),
                    bundle,
                    family: recorded.old_family,
                }),
            skip,
            accept_drift: args.accept_drift,
            freeze: old_site.filter(|_| args.freeze_old),
            stamp: now_stamp(),
            checks: Vec::new(),
            old_site_reports: Vec::new(),
            checks_decide_ok: false,
        })
    }

    fn request<'a>(
        &'a self,
        reach_from: Reached<'a>,
        address: Option<(String, u16)>,
        skip: BTreeSet<CheckName>,
    ) -> PreSwitch<'a> {
        PreSwitch {
            new_server: self.new.as_ref().map(Connected::reached),
            health: self.health.clone(),
            reach_from,
            address,
            old_server: self.old.as_ref().map(Connected::reached),
            drift: self.drift.clone(),
            skip,
            accept_drift: self.accept_drift,
        }
    }

    /// The checks, for a plan, and the freeze as it would be made: nothing
    /// changes, a failed check is shown, not an error.
    ///
    /// # Errors
    /// When the old site cannot be read or frozen.
    pub fn plan_checks(
        &mut self,
        state: &dyn Executor,
        reach_from: Reached<'_>,
        address: Option<(String, u16)>,
    ) -> Result<(), CliError> {
        self.checks =
            before_switch::run_checks(&self.request(reach_from, address, self.skip.clone()));
        if let Some(target) = self.freeze.clone() {
            let report = old_site::plan_freeze(&self.old_site_access(state)?, &target)?;
            self.old_site_reports.push(report);
        }
        Ok(())
    }

    /// Before `apply` changes anything: the checks (refused with what failed,
    /// nothing changed), then with --freeze-old the old site frozen and the
    /// drift checked again, the final check (the freeze undone when it fails).
    ///
    /// # Errors
    /// [`cmw_upgrade_core::Error::CheckFailed`] naming each failed check.
    pub fn before_apply(
        &mut self,
        state: &dyn Executor,
        reach_from: Reached<'_>,
        address: Option<(String, u16)>,
    ) -> Result<(), CliError> {
        let access = match &self.freeze {
            Some(_) => Some(self.old_site_access(state)?),
            None => None,
        };
        let freeze = access.as_ref().zip(self.freeze.as_ref());
        let cleared = before_switch::clear_for_switch(
            &self.request(reach_from, address, self.skip.clone()),
            freeze,
        )?;
        self.checks = cleared.checks;
        self.old_site_reports.extend(cleared.freeze);
        Ok(())
    }

    /// Takes apply's freeze out again (the switch changed nothing).
    fn undo_freeze(&self, state: &dyn Executor) -> Result<Option<OldSiteReport>, CliError> {
        Ok(old_site::restore(&self.old_site_access(state)?)?)
    }

    /// A switch that failed after --freeze-old: one that changed nothing gives
    /// the old server its writes back (it still serves); one that failed half-way
    /// keeps the freeze (traffic may be on the new server already).
    pub fn switched<T>(
        &self,
        state: &dyn Executor,
        result: cmw_upgrade_core::Result<T>,
    ) -> Result<T, CliError> {
        result.map_err(|error| {
            if self.old_site_reports.is_empty() {
                return CliError::from(error);
            }
            if matches!(error, cmw_upgrade_core::Error::StepFailed { .. }) {
                eprintln!(
                    "Note: the old site stays frozen (writes answer 503); `cmw-upgrade cutover \
                     revert` lifts it, or rerun apply once fixed"
                );
                return CliError::from(error);
            }
            match self.undo_freeze(state) {
                Ok(_) => eprintln!(
                    "Note: the switch changed nothing, so the old site's freeze was taken out: \
                     writes reach the old server again"
                ),
                Err(undo) => eprintln!(
                    "Note: the switch changed nothing, but taking the old site's freeze out failed: \
                     {undo}; `cmw-upgrade cutover revert` retries it"
                ),
            }
            CliError::from(error)
        })
    }

    /// Records the checks beside the method's saved state, once the switch went
    /// through (a refused apply leaves nothing behind).
    pub fn record(&self, state: &dyn Executor, method: &str) -> Result<(), CliError> {
        before_switch::save_checks(state, &self.instance, method, &self.stamp, &self.checks)?;
        Ok(())
    }

    fn old_site_access<'a>(
        &'a self,
        state: &'a dyn Executor,
    ) -> Result<OldSiteAccess<'a>, CliError> {
        let old = self
            .old
            .as_ref()
            .ok_or_else(|| bad(OLD_UNKNOWN.to_owned()))?;
        Ok(access(old, state, &self.instance, &self.stamp))
    }

    /// The checks and the old site's edits as JSON fields (`checks`,
    /// `old_site`) for a report printed elsewhere (the probe's), with
    /// whether the old site changed.
    pub fn fields(&self) -> Result<(ReportFields, bool), CliError> {
        let mut fields = Vec::new();
        if !self.checks.is_empty() {
            fields.push((
                "checks",
                serde_json::to_value(&self.checks).map_err(std::io::Error::from)?,
            ));
        }
        if !self.old_site_reports.is_empty() {
            fields.push((
                "old_site",
                serde_json::to_value(&self.old_site_reports).map_err(std::io::Error::from)?,
            ));
        }
        let changed = self.old_site_reports.iter().any(|report| report.changed);
        Ok((fields, changed))
    }

    /// Whether the checks let the report be good news: always, except for
    /// verify's look after the switch, where a failed one is bad news.
    pub fn checks_hold(&self) -> bool {
        !self.checks_decide_ok
            || self
                .checks
                .iter()
                .all(|check| check.ok || check.skipped || check.accepted)
    }

    /// The checks and the old site's edits as text, before a report printed
    /// elsewhere (the probe's).
    pub fn print_text(&self) -> Result<(), CliError> {
        print_checks(&self.checks)?;
        for report in &self.old_site_reports {
            print_old_site(report)?;
        }
        Ok(())
    }

    /// Prints a method's report with the checks and the old site's edits:
    /// in JSON as its `checks` and `old_site` fields, in text before it.
    pub fn print<R: Serialize>(
        &self,
        global: &GlobalArgs,
        report: &R,
        text: impl FnOnce() -> Result<ExitStatus, CliError>,
    ) -> Result<ExitStatus, CliError> {
        if global.json {
            let mut document = serde_json::to_value(report).map_err(std::io::Error::from)?;
            // A report of the old site alone (revert, finish) went through when it is here.
            let ok = document
                .get("ok")
                .is_none_or(|ok| ok.as_bool() == Some(true))
                && self.checks_hold();
            if let Some(object) = document.as_object_mut() {
                object.insert("ok".to_owned(), ok.into());
                if !self.checks.is_empty() {
                    object.insert(
                        "checks".to_owned(),
                        serde_json::to_value(&self.checks).map_err(std::io::Error::from)?,
                    );
                }
                if !self.old_site_reports.is_empty() {
                    object.insert(
                        "old_site".to_owned(),
                        serde_json::to_value(&self.old_site_reports)
                            .map_err(std::io::Error::from)?,
                    );
                    if self.old_site_reports.iter().any(|report| report.changed) {
                        object.insert("changed".to_owned(), true.into());
                    }
                }
            }
            print_json(&document)?;
            return Ok(if ok {
                ExitStatus::Success
            } else {
                ExitStatus::Failed
            });
        }
        print_checks(&self.checks)?;
        for report in &self.old_site_reports {
            print_old_site(report)?;
        }
        text()
    }
}

fn print_checks(checks: &[PreSwitchCheck]) -> Result<(), CliError> {
    let mut out = crate::output::stdout();
    if !checks.is_empty() {
        writeln!(out, "Before the switch:")?;
    }
    for check in checks {
        let mark = match (check.ok, check.skipped, check.accepted) {
            (_, true, _) => "skip",
            (_, _, true) => "acc ",
            (true, _, _) => "ok  ",
            (false, _, _) => "FAIL",
        };
        writeln!(out, "  {mark} {}: {}", check.name, check.detail)?;
    }
    Ok(())
}

fn print_old_site(report: &OldSiteReport) -> Result<(), CliError> {
    let mut out = crate::output::stdout();
    writeln!(
        out,
        "The old server's site {} ({}), {}:",
        report.site, report.old_host, report.action
    )?;
    if !report.diff.is_empty() {
        write!(out, "{}", report.diff)?;
    }
    for step in &report.steps {
        writeln!(out, "  - {step}")?;
    }
    Ok(())
}

/// A host (name or address) and a TCP port.
type HostPort = (String, u16);

/// Where traffic will go (`None`: not known, the check says what to give)
/// and where the TCP connection is made from: the proxy's host is this
/// machine (haproxy, nginx); dns clients are anywhere, this machine stands for them.
fn switch_target<'p>(
    args: &CutoverArgs,
    proxy: &'p ProxyHost,
) -> Result<(&'p str, Option<HostPort>), CliError> {
    Ok(match args.method {
        CutoverMethod::Nginx => {
            let new = args.new.as_deref().unwrap_or_default();
            let new = Endpoint::parse(new).map_err(|error| bad(format!("--new: {error}")))?;
            (proxy.label(), Some((new.host, new.port)))
        }
        CutoverMethod::Dns => {
            let new = args.new.as_deref().unwrap_or_default();
            let new: std::net::IpAddr = new.parse().map_err(|_| {
                bad(format!(
                    "--new {new:?} is not an IP address (--method dns swaps an A or AAAA record)"
                ))
            })?;
            (
                "this machine",
                args.around.new_port.map(|port| (new.to_string(), port)),
            )
        }
        CutoverMethod::Haproxy => {
            let (Some(socket), Some(backend), Some(old), Some(new)) = (
                &args.haproxy_socket,
                &args.backend,
                &args.old_server,
                &args.new_server,
            ) else {
                return Err(bad(
                    "--method haproxy needs --haproxy-socket, --backend, --old-server and \
                     --new-server"
                        .to_owned(),
                ));
            };
            let target = HaproxyTarget {
                socket: socket.clone(),
                backend: backend.clone(),
                old_server: old.clone(),
                new_server: new.clone(),
                config: None,
            };
            // Read (only) from the proxy: the address the backend names the new server by
            // (a name it does not have is the error the switch would give).
            let reader = DryRun::new(proxy.executor());
            let rows =
                Runtime::new(&reader as &dyn Executor, socket.clone()).servers_state(backend)?;
            let (_, new_row) = pick_servers(&rows, &target)?;
            (
                proxy.label(),
                new_row.port.map(|port| (new_row.address.clone(), port)),
            )
        }
    })
}

/// `plan`'s look at what `apply` checks first (and the freeze it would make).
pub fn planned(
    global: &GlobalArgs,
    args: &CutoverArgs,
    proxy: &ProxyHost,
) -> Result<Around, CliError> {
    let mut around = Around::resolve(global, &args.instance, &args.around, true, &[])?;
    let (label, address) = switch_target(args, proxy)?;
    let executor = DryRun::new(proxy.executor());
    let reach_from = Reached {
        executor: &executor,
        label: label.to_owned(),
    };
    around.plan_checks(&executor, reach_from, address)?;
    Ok(around)
}

/// What `apply` does first, for every method: the checks (refused: nothing
/// changed), then --freeze-old and the final drift check.
pub fn cleared_for_apply(
    global: &GlobalArgs,
    args: &CutoverArgs,
    proxy: &ProxyHost,
) -> Result<Around, CliError> {
    let mut around = Around::resolve(global, &args.instance, &args.around, true, &[])?;
    let (label, address) = switch_target(args, proxy)?;
    let executor = proxy.executor();
    let reach_from = Reached {
        executor: &executor,
        label: label.to_owned(),
    };
    around.before_apply(&executor, reach_from, address)?;
    Ok(around)
}

/// `verify`'s look at the new server after the switch: its health through
/// its site and its heartbeat logs (the new-health check), when the new
/// server is known here (--new-host, or the run recorded on this machine);
/// nothing when it is not. A failed check makes the verify bad news.
pub fn verified(
    global: &GlobalArgs,
    args: &CutoverArgs,
    proxy: &ProxyHost,
) -> Result<Around, CliError> {
    let mut around = Around::resolve(
        global,
        &args.instance,
        &args.around,
        true,
        &[CheckName::NewReachable, CheckName::OldDrift],
    )?;
    around.checks_decide_ok = true;
    if around.new.is_none() {
        return Ok(around);
    }
    let executor = DryRun::new(proxy.executor());
    let reach_from = Reached {
        executor: &executor,
        label: proxy.label().to_owned(),
    };
    around.checks =
        before_switch::run_checks(&around.request(reach_from, None, around.skip.clone()));
    Ok(around)
}

const OLD_UNKNOWN: &str =
    "the old server is not known here: give it as --old-host [user@]host[:port]|local";

fn access<'a>(
    old: &'a Connected,
    state: &'a dyn Executor,
    instance: &InstanceName,
    stamp: &str,
) -> OldSiteAccess<'a> {
    OldSiteAccess {
        state,
        old: old.server.executor(),
        old_host: old.host.clone(),
        old_root: old.root.clone(),
        instance: instance.clone(),
        stamp: stamp.to_owned(),
    }
}

fn now_stamp() -> String {
    cmw_upgrade_core::exec::utc_stamp(std::time::SystemTime::now())
}

/// The old site put back as saved (`revert`); nothing when it was not edited.
/// The old server is the one given, else the one the state saved.
fn restore_old_site(
    instance: &InstanceName,
    args: &OldServerArgs,
    state: &dyn Executor,
) -> Result<Option<OldSiteReport>, CliError> {
    edit_saved_old_site(instance, args, state, old_site::restore)
}

/// What `revert` did to the old site first.
pub enum OldSiteReverted {
    /// Only the old site had been edited (forward-old, or a freeze before a
    /// switch that failed): done, with this exit status.
    Alone(ExitStatus),
    /// The method's revert comes next; its report carries the old site's.
    Then(Box<Around>),
}

/// `revert`'s first part, for every method: the old site written back as
/// saved, when --freeze-old or forward-old edited it.
pub fn revert_old_site(
    global: &GlobalArgs,
    args: &CutoverArgs,
) -> Result<OldSiteReverted, CliError> {
    let state = LocalExecutor::new(&global.root);
    let restored = restore_old_site(&args.instance, &args.around.old, &state)?;
    let around = with_old_site_reports(&args.instance, restored.into_iter().collect());
    let switched = match args.method {
        CutoverMethod::Haproxy => {
            cmw_upgrade_core::cutover::read_saved_state(&state, &args.instance)?.is_some()
        }
        CutoverMethod::Nginx => nginx::read_saved_state(&state, &args.instance)?.is_some(),
        CutoverMethod::Dns => dns::read_saved_state(&state, &args.instance)?.is_some(),
    };
    match (switched, around.old_site_reports.first()) {
        (false, Some(report)) => Ok(OldSiteReverted::Alone(around.print(
            global,
            report,
            || Ok(ExitStatus::Success),
        )?)),
        _ => Ok(OldSiteReverted::Then(Box::new(around))),
    }
}

/// `finish`'s first part, for every method: apply's freeze lifted (the
/// report carries it; none when the old site is not frozen).
pub fn finish_old_site(global: &GlobalArgs, args: &CutoverArgs) -> Result<Around, CliError> {
    let state = LocalExecutor::new(&global.root);
    let unfrozen = unfreeze_old_site(&args.instance, &args.around.old, &state)?;
    Ok(with_old_site_reports(
        &args.instance,
        unfrozen.into_iter().collect(),
    ))
}

/// The freeze lifted (`finish`); nothing when the old site is not frozen.
fn unfreeze_old_site(
    instance: &InstanceName,
    args: &OldServerArgs,
    state: &dyn Executor,
) -> Result<Option<OldSiteReport>, CliError> {
    edit_saved_old_site(instance, args, state, old_site::unfreeze)
}

fn edit_saved_old_site(
    instance: &InstanceName,
    args: &OldServerArgs,
    state: &dyn Executor,
    edit: impl FnOnce(&OldSiteAccess<'_>) -> cmw_upgrade_core::Result<Option<OldSiteReport>>,
) -> Result<Option<OldSiteReport>, CliError> {
    let Some(saved) = old_site::read_saved_state(state, instance)? else {
        return Ok(None);
    };
    let spec = match &args.old_host {
        Some(text) => spec_of("--old-host", text, args.old_root.as_ref(), args)?,
        None => spec_of(
            "the saved old server",
            &saved.old_host,
            saved.old_root.as_ref(),
            args,
        )?,
    };
    let old = connect(&spec, "old")?;
    Ok(edit(&access(&old, state, instance, &now_stamp()))?)
}

/// `cutover forward-old`.
pub fn forward_old(global: &GlobalArgs, args: ForwardOldArgs) -> Result<ExitStatus, CliError> {
    let to =
        Endpoint::parse(&args.forward_to).map_err(|error| bad(format!("--forward-to: {error}")))?;
    let target = OldSite {
        site: args.old.old_site.clone().ok_or_else(|| {
            bad(
                "forward-old edits the old server's nginx site: give it as --old-site FILE"
                    .to_owned(),
            )
        })?,
        main_config: args.old.old_nginx_conf.clone(),
    };
    let spec = match &args.old.old_host {
        Some(text) => spec_of("--old-host", text, args.old.old_root.as_ref(), &args.old)?,
        None => recorded(global, &args.instance)?
            .old
            .ok_or_else(|| bad(OLD_UNKNOWN.to_owned()))?,
    };
    let old = connect(&spec, "old")?;
    let state = LocalExecutor::new(&global.root);
    let report = old_site::forward(
        &access(&old, &state, &args.instance, &now_stamp()),
        &target,
        &to,
    )?;
    if global.json {
        let mut document = serde_json::to_value(&report).map_err(std::io::Error::from)?;
        if let Some(object) = document.as_object_mut() {
            object.insert("ok".to_owned(), true.into());
            object.insert("forward_to".to_owned(), to.to_string().into());
        }
        print_json(&document)?;
    } else {
        print_old_site(&report)?;
        if !report.changed {
            writeln!(crate::output::stdout(), "Nothing to change: already so.")?;
        }
    }
    Ok(ExitStatus::Success)
}

/// An [`Around`] holding only the old site's reports (revert, finish), for [`Around::print`].
fn with_old_site_reports(instance: &InstanceName, reports: Vec<OldSiteReport>) -> Around {
    Around {
        instance: instance.clone(),
        new: None,
        old: None,
        health: None,
        drift: None,
        skip: BTreeSet::new(),
        accept_drift: false,
        freeze: None,
        stamp: String::new(),
        checks: Vec::new(),
        old_site_reports: reports,
        checks_decide_ok: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_server_reads_back_as_the_same_server() {
        for text in [
            "local",
            "admin@10.0.0.5:2222",
            "old-server",
            "root@[fd00::5]:22",
            "[::1]",
        ] {
            let spec = ServerSpec::parse(text).unwrap();
            let again = ServerSpec::parse(&spec_text(&spec)).unwrap();
            assert_eq!(
                (again.destination, again.port),
                (spec.destination, spec.port),
                "{text}"
            );
        }
    }
}
