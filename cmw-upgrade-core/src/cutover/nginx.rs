//! The nginx cut-over: the proxy's site file sends traffic to the old
//! server's address; two ways move it to the new one.
//!
//! - **Resolver-driven** ([`prepare`]): each `proxy_pass` to the old address
//!   becomes `proxy_pass http://$cmw_upgrade_upstream:PORT` with `resolver …
//!   valid=…` and `set $cmw_upgrade_upstream NAME` before it; one reload, in
//!   `prepare`, never in the window. nginx then asks DNS for NAME every
//!   `valid` seconds, so the switch is a DNS change (`cutover apply --method
//!   dns --name NAME`) with no reload: measured, 0 failed requests.
//! - **Reload** ([`apply`] with `reload`): the old address is swapped for the
//!   new one in the site (only those bytes change), then `nginx -s reload`.
//!   Old workers close their idle keep-alive connections: measured, 0–22
//!   failed requests per switch for keep-alive clients that never retry.
//!
//! Before any write the candidate passes the real `nginx -t` inside a private
//! copy of the proxy's nginx configuration ([`crate::config::nginx_context`]),
//! so a site nginx refuses is never written. The site as it was is saved in
//! `/var/lib/cmw-upgrade/<instance>/cutover-nginx.json` (0600, atomic) before
//! the first change, so [`revert`] restores exactly that, also after a crash;
//! a copy is kept there as `<file>.cmw-upgrade.<stamp>.bak` — not beside the
//! site, where `include sites-enabled/*` would load it as a second site.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::dns::{self, DnsWire, RecordKind};
use super::nginx_site::{self, Endpoint, ResolverDriven, UPSTREAM_VARIABLE};
use super::CheckResult;
use crate::config::{nginx_context, raw_text};
use crate::error::{Error, Result};
use crate::executor::{CommandSpec, Executor, ToolAction};
use crate::instance::InstanceName;

/// nginx's compiled-in prefix on the Debian, Astra, RHEL and ALT packages:
/// relative `pid` and temp paths start there (as the `nginx -t` copy reads them).
const NGINX_PREFIX: &str = "/usr/share/nginx/";

/// Said before a reload switch, and kept in its report.
pub const RESET_WARNING: &str = "a reload makes nginx's old workers close their idle keep-alive \
     connections: clients that do not retry may see connection resets (measured: 0-22 failed \
     requests per switch with keep-alive clients); the resolver-driven upstream (`cutover \
     prepare --method nginx`, then a DNS switch) moves traffic with none";

/// The site and the two addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NginxTarget {
    /// The site file (server path) holding the `proxy_pass` or `upstream`.
    pub site: String,
    /// nginx's main config (server path), for `nginx -t` in context and the reload.
    pub main_config: String,
    /// The address traffic leaves.
    pub old: Endpoint,
    /// The address traffic goes to.
    pub new: Endpoint,
}

/// What an nginx cut-over needs.
#[derive(Debug, Clone)]
pub struct NginxOptions {
    /// The instance (names the saved state's folder).
    pub instance: InstanceName,
    /// The site and addresses.
    pub target: NginxTarget,
    /// Where this machine sees the proxy's files (`--root`): the `nginx -t`
    /// copy is made from there. The cut-over runs on the proxy's host.
    pub root: PathBuf,
    /// `apply` swaps the address and reloads (the admin chose the reload path).
    pub reload: bool,
    /// `prepare`'s resolver-driven upstream (and what `verify` checks for).
    pub resolver: Option<ResolverDriven>,
    /// A URL through the proxy `verify` asks (`http://127.0.0.1/`).
    pub proxy_url: Option<String>,
    /// A stamp for file names (`20261128T113000Z`).
    pub stamp: String,
}

/// The saved state's server path for an instance.
pub fn saved_state_path(instance: &InstanceName) -> String {
    format!(
        "/var/lib/cmw-upgrade/{}/cutover-nginx.json",
        instance.as_str()
    )
}

/// What was there before the first change: what [`revert`] restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedNginxState {
    /// The format of this file.
    pub format: u32,
    /// `nginx`.
    pub method: String,
    /// When it was saved (UTC stamp).
    pub saved_at: String,
    /// `reload` or `resolver`: how the first change was made.
    pub how: String,
    /// The site and addresses.
    pub target: NginxTarget,
    /// The site's text before the first change.
    pub original: String,
    /// Its permission bits.
    pub mode: u32,
}

const SAVED_FORMAT: u32 = 1;

/// One change (or check) of an nginx cut-over, in the order it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum NginxStep {
    /// The upstream name answers the old server's address alone at the
    /// resolver nginx will ask: once prepared, nginx sends traffic where it points.
    CheckName {
        /// The name.
        name: String,
        /// The DNS server nginx asks.
        resolver: String,
        /// The address it must answer.
        address: String,
    },
    /// A TCP connection from the proxy's host to the new address.
    CheckReachable {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// The site as it would be written passes `nginx -t` in the proxy's configuration.
    CheckSite {
        /// The site (server path).
        path: String,
        /// The main config.
        main_config: String,
    },
    /// Save the site as it is before any change.
    SaveState {
        /// Server path.
        path: String,
    },
    /// Write the site (atomically; the original kept as `backup`).
    WriteSite {
        /// Server path.
        path: String,
        /// Where the original is kept (none on revert: the saved state has it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup: Option<String>,
    },
    /// `nginx -s reload`.
    Reload {
        /// The command.
        command: String,
    },
    /// The saved state is kept beside, out of the way of the next cut-over.
    KeepStateBeside {
        /// Where it goes.
        path: String,
    },
}

impl NginxStep {
    /// The step as a plan line.
    pub fn display(&self) -> String {
        match self {
            NginxStep::CheckName {
                name,
                resolver,
                address,
            } => format!(
                "check {name} answers {address} alone at {resolver} (nginx will send the traffic \
                 where it points)"
            ),
            NginxStep::CheckReachable { host, port } => {
                format!("check {host}:{port} takes TCP connections from the proxy's host")
            }
            NginxStep::CheckSite { path, main_config } => format!(
                "check that {path} as it will be written passes `nginx -t` in {main_config}'s \
                 configuration (in a private copy)"
            ),
            NginxStep::SaveState { path } => {
                format!("save the site as it is now to {path} (0600)")
            }
            NginxStep::WriteSite { path, backup } => match backup {
                Some(backup) => format!("write {path} atomically; original kept as {backup}"),
                None => format!("write {path} atomically as saved"),
            },
            NginxStep::Reload { command } => command.clone(),
            NginxStep::KeepStateBeside { path } => format!("keep the saved state as {path}"),
        }
    }
}

/// How a step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NginxStepReport {
    /// The step.
    #[serde(flatten)]
    pub step: NginxStep,
    /// The step as a plan line.
    pub display: String,
    /// `planned` or `done`.
    pub outcome: String,
    /// What it found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What an nginx cut-over command did (or would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NginxReport {
    /// `plan`, `prepare`, `apply`, `verify` or `revert`.
    pub action: String,
    /// `nginx`.
    pub method: String,
    /// `reload` or `resolver`.
    pub how: String,
    /// Whether everything holds (verify) or went through.
    pub ok: bool,
    /// Whether anything was changed.
    pub changed: bool,
    /// The site and addresses.
    pub target: NginxTarget,
    /// The saved state's server path.
    pub saved_state: String,
    /// Every change of the site, as a unified diff (empty: none).
    pub diff: String,
    /// The steps, in order.
    pub steps: Vec<NginxStepReport>,
    /// The checks (verify).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    /// What the admin should know (connection resets on reload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// `nginx -s reload` for the nginx whose main config is `main`; the prefix
/// is the packages' compiled-in one, given so a `--root` test tree is read
/// as the server is.
pub fn reload_command(main: &str) -> CommandSpec {
    CommandSpec::new(["nginx", "-p"])
        .path_arg(NGINX_PREFIX)
        .args(["-c"])
        .path_arg(main)
        .args(["-s", "reload"])
        .with_timeout(Duration::from_secs(60))
}

fn how(options: &NginxOptions) -> &'static str {
    if options.resolver.is_some() {
        "resolver"
    } else {
        "reload"
    }
}

fn new_report(action: &str, options: &NginxOptions, how: &str) -> NginxReport {
    NginxReport {
        action: action.to_owned(),
        method: "nginx".to_owned(),
        how: how.to_owned(),
        ok: true,
        changed: false,
        target: options.target.clone(),
        saved_state: saved_state_path(&options.instance),
        diff: String::new(),
        steps: Vec::new(),
        checks: Vec::new(),
        notes: Vec::new(),
    }
}

/// The site's text; a link is refused (an atomic write would replace the
/// link by a file), naming where it leads.
fn read_site(executor: &dyn Executor, target: &NginxTarget) -> Result<String> {
    let site = &target.site;
    if let Some(points_to) = executor.read_link(site)? {
        return Err(Error::BadInput {
            details: format!(
                "{site} is a link to {points_to}; pass the file itself as --nginx-site (the \
                 rewrite replaces the file atomically and would replace the link)"
            ),
        });
    }
    let bytes = executor.read_file(site)?.ok_or_else(|| Error::BadInput {
        details: format!(
            "there is no nginx site at {site}; pass the file that holds the proxy_pass (or \
             upstream) to the old server as --nginx-site"
        ),
    })?;
    if !executor.exists(&target.main_config)? {
        return Err(Error::BadInput {
            details: format!(
                "there is no nginx config at {}; pass the main config nginx loads as --nginx-conf",
                target.main_config
            ),
        });
    }
    raw_text::decode(site, &bytes)
}

/// The site as the cut-over would write it; `None` when it is so already.
fn candidate(options: &NginxOptions, text: &str) -> Result<Option<String>> {
    let target = &options.target;
    if options.resolver.is_some() && target.old.port != target.new.port {
        return Err(Error::BadInput {
            details: format!(
                "--old {} and --new {} differ in port; a resolver-driven upstream keeps the \
                 port and the DNS switch moves only the address: run the new server on port {}, \
                 or switch with --reload",
                target.old, target.new, target.old.port
            ),
        });
    }
    let result = match &options.resolver {
        Some(how) => nginx_site::resolver_driven(&target.site, text, &target.old, how),
        None => nginx_site::swap_address(&target.site, text, &target.old, &target.new),
    };
    result.map_err(|details| {
        let prepared = options.resolver.is_none() && text.contains(UPSTREAM_VARIABLE);
        Error::BadInput {
            details: if prepared {
                format!(
                    "{details}. The site is resolver-driven (`cutover prepare --method nginx` \
                     made it so): switch with the name's DNS record (`cutover apply --method \
                     dns`), or `cutover revert --method nginx` first to swap the address instead"
                )
            } else {
                details
            },
        }
    })
}

/// What the admin should know about a change before it is made.
fn notes(options: &NginxOptions, text: &str) -> Vec<String> {
    match &options.resolver {
        None => vec![RESET_WARNING.to_owned()],
        // Without its own Host header, nginx sends the proxy_pass's host: the name now.
        Some(how) if !text.to_ascii_lowercase().contains("proxy_set_header host") => vec![format!(
            "the site sets no Host header for the upstream, so nginx sends `Host: {}:PORT` \
             instead of the old address; add `proxy_set_header Host $host;` if the platform \
             checks it",
            how.name
        )],
        Some(_) => Vec::new(),
    }
}

fn check_target(target: &NginxTarget) -> Result<()> {
    if target.old == target.new {
        return Err(Error::BadInput {
            details: format!(
                "--old and --new are both {}; pass the address traffic leaves and the one it goes to",
                target.old
            ),
        });
    }
    Ok(())
}

/// A unified diff of the site, for the plan and the report.
pub fn site_diff(site: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(2)
        .header(site, &format!("{site} (cmw-upgrade)"))
        .to_string()
}

/// Reads the saved state; `None` when there is none.
///
/// # Errors
/// [`Error::StateConflict`] when it does not read.
pub fn read_saved_state(
    executor: &dyn Executor,
    instance: &InstanceName,
) -> Result<Option<SavedNginxState>> {
    super::read_saved(
        executor,
        &saved_state_path(instance),
        "nginx cut-over",
        "restore the site from its .cmw-upgrade.*.bak copy by hand",
    )
}

fn same_target(saved: &NginxTarget, now: &NginxTarget) -> bool {
    saved.site == now.site && saved.old == now.old && saved.new == now.new
}

/// The steps that write `candidate` over the site, in order.
fn change_steps(options: &NginxOptions, save: bool, check_new: bool) -> Vec<NginxStep> {
    let target = &options.target;
    let mut steps = Vec::new();
    if let Some(how) = &options.resolver {
        steps.push(NginxStep::CheckName {
            name: how.name.clone(),
            resolver: how.resolver.clone(),
            address: target.old.host.clone(),
        });
    }
    if check_new {
        steps.push(NginxStep::CheckReachable {
            host: target.new.host.clone(),
            port: target.new.port,
        });
    }
    steps.push(NginxStep::CheckSite {
        path: target.site.clone(),
        main_config: target.main_config.clone(),
    });
    if save {
        steps.push(NginxStep::SaveState {
            path: saved_state_path(&options.instance),
        });
    }
    steps.push(NginxStep::WriteSite {
        path: target.site.clone(),
        backup: Some(backup_path(options)),
    });
    steps.push(NginxStep::Reload {
        command: reload_command(&target.main_config).display(),
    });
    steps
}

fn backup_path(options: &NginxOptions) -> String {
    let name = options
        .target
        .site
        .rsplit('/')
        .next()
        .unwrap_or("site")
        .to_owned();
    format!(
        "/var/lib/cmw-upgrade/{}/{name}.cmw-upgrade.{}.bak",
        options.instance.as_str(),
        options.stamp
    )
}

/// Every change `prepare` (with the resolver options) or `apply --reload`
/// would make now, and the diff; changes nothing.
///
/// # Errors
/// [`Error::BadInput`] for a site, config or address that is not there (the
/// message names the addresses the site has).
pub fn plan(executor: &dyn Executor, options: &NginxOptions) -> Result<NginxReport> {
    check_target(&options.target)?;
    if !options.reload && options.resolver.is_none() {
        return Err(Error::BadInput {
            details: "plan --method nginx shows one of two ways: pass --reload (the address \
                      swapped, one reload in the window) or --upstream-name NAME --resolver \
                      ADDR[:PORT] (prepare's resolver-driven upstream; the switch is then a DNS change)"
                .to_owned(),
        });
    }
    let text = read_site(executor, &options.target)?;
    let saved = read_saved_state(executor, &options.instance)?;
    let mut report = new_report("plan", options, how(options));
    let Some(candidate) = candidate(options, &text)? else {
        return Ok(report);
    };
    report.diff = site_diff(&options.target.site, &text, &candidate);
    report.notes = notes(options, &text);
    report.steps = change_steps(options, saved.is_none(), options.resolver.is_none())
        .into_iter()
        .map(|step| NginxStepReport {
            display: step.display(),
            step,
            outcome: "planned".to_owned(),
            detail: None,
        })
        .collect();
    Ok(report)
}

/// Makes each `proxy_pass` to the old address resolver-driven (see the
/// module's documentation), with one reload. Running it again changes nothing.
///
/// # Errors
/// [`Error::BadInput`] without the resolver options, or as [`plan`];
/// [`Error::CheckFailed`] when `nginx -t` refuses the result (nothing written).
pub fn prepare(
    executor: &dyn Executor,
    wire: &dyn DnsWire,
    options: &NginxOptions,
) -> Result<NginxReport> {
    if options.resolver.is_none() {
        return Err(Error::BadInput {
            details:
                "prepare --method nginx makes the upstream resolver-driven: pass \
                      --upstream-name NAME (the DNS name nginx resolves) and --resolver ADDR[:PORT]"
                    .to_owned(),
        });
    }
    change(executor, Some(wire), options, "prepare")
}

/// Swaps the old address for the new one in the site and reloads nginx (the
/// reload path; see the module's documentation).
///
/// # Errors
/// [`Error::BadInput`] without `reload` (after `prepare` the switch is a DNS
/// change) or as [`plan`]; [`Error::CheckFailed`] when the new server is not
/// reachable or `nginx -t` refuses the result (nothing written);
/// [`Error::StepFailed`] when the reload fails after the write.
pub fn apply(executor: &dyn Executor, options: &NginxOptions) -> Result<NginxReport> {
    if !options.reload || options.resolver.is_some() {
        return Err(Error::BadInput {
            details: "apply --method nginx switches by swapping the address and reloading \
                      nginx: pass --reload (keep-alive clients may see connection resets). After \
                      `cutover prepare --method nginx` the switch is a DNS change instead: \
                      `cutover apply --method dns --name <the upstream name> ...`"
                .to_owned(),
        });
    }
    change(executor, None, options, "apply")
}

fn change(
    executor: &dyn Executor,
    wire: Option<&dyn DnsWire>,
    options: &NginxOptions,
    action: &str,
) -> Result<NginxReport> {
    check_target(&options.target)?;
    let _lock = super::lock(executor, &options.instance)?;
    let target = &options.target;
    let text = read_site(executor, target)?;
    let saved = read_saved_state(executor, &options.instance)?;
    if let Some(saved) = &saved {
        if !same_target(&saved.target, target) {
            return Err(Error::StateConflict {
                details: format!(
                    "{} holds an nginx cut-over of {} ({} -> {}) not yet reverted; revert it first \
                     (`cmw-upgrade cutover revert --method nginx` with its options)",
                    saved_state_path(&options.instance),
                    saved.target.site,
                    saved.target.old,
                    saved.target.new
                ),
            });
        }
    }
    let mut report = new_report(action, options, how(options));
    let Some(candidate) = candidate(options, &text)? else {
        return Ok(report);
    };
    report.diff = site_diff(&target.site, &text, &candidate);
    report.notes = notes(options, &text);
    let mode = super::file_mode(executor, &target.site)?;
    let saved_now = SavedNginxState {
        format: SAVED_FORMAT,
        method: "nginx".to_owned(),
        saved_at: options.stamp.clone(),
        how: how(options).to_owned(),
        target: target.clone(),
        original: text.clone(),
        mode,
    };
    let steps = change_steps(options, saved.is_none(), options.resolver.is_none());
    let mut session = Session {
        executor,
        wire,
        options,
        report,
    };
    for step in steps {
        session.run(step, &candidate, mode, &saved_now)?;
    }
    Ok(session.report)
}

/// Writes back the site saved before the first change (checked with `nginx
/// -t` first), reloads nginx, and keeps the saved state beside. Works from
/// the saved state alone, also after a crash mid-apply.
///
/// # Errors
/// [`Error::StateConflict`] with no saved state, or one for another site or
/// addresses; [`Error::CheckFailed`] when `nginx -t` refuses the saved site
/// in today's configuration (nothing written).
pub fn revert(executor: &dyn Executor, options: &NginxOptions) -> Result<NginxReport> {
    let _lock = super::lock(executor, &options.instance)?;
    let path = saved_state_path(&options.instance);
    let saved =
        read_saved_state(executor, &options.instance)?.ok_or_else(|| Error::StateConflict {
            details: format!(
                "no saved nginx cut-over state at {path}: nothing was prepared or applied for {} \
                 (or it was reverted already); `cmw-upgrade cutover plan --method nginx` shows the site now",
                options.instance.as_str()
            ),
        })?;
    if !same_target(&saved.target, &options.target) {
        return Err(Error::StateConflict {
            details: format!(
                "{path} saved an nginx cut-over of {} ({} -> {}); revert with those options",
                saved.target.site, saved.target.old, saved.target.new
            ),
        });
    }
    let target = &saved.target;
    let now = read_site(executor, target)?;
    let mut report = new_report("revert", options, &saved.how);
    let mut steps = Vec::new();
    if now != saved.original {
        report.diff = site_diff(&target.site, &now, &saved.original);
        steps.push(NginxStep::CheckSite {
            path: target.site.clone(),
            main_config: target.main_config.clone(),
        });
        steps.push(NginxStep::WriteSite {
            path: target.site.clone(),
            backup: None,
        });
        steps.push(NginxStep::Reload {
            command: reload_command(&target.main_config).display(),
        });
        if saved.how == "reload" {
            report.notes.push(RESET_WARNING.to_owned());
        }
    }
    steps.push(NginxStep::KeepStateBeside {
        path: format!(
            "/var/lib/cmw-upgrade/{}/cutover-nginx.reverted.{}.json",
            options.instance.as_str(),
            options.stamp
        ),
    });
    let mut session = Session {
        executor,
        wire: None,
        options,
        report,
    };
    for step in steps {
        session.run(step, &saved.original, saved.mode, &saved)?;
    }
    session.report.changed = true;
    Ok(session.report)
}

/// Whether traffic goes to the new server: the site sends there (or is
/// resolver-driven, with the resolver options), and with a proxy URL,
/// requests through the proxy answer as the new server does.
///
/// # Errors
/// As [`plan`] for the site.
pub fn verify(executor: &dyn Executor, options: &NginxOptions) -> Result<NginxReport> {
    let target = &options.target;
    let text = read_site(executor, target)?;
    let places = nginx_site::upstream_addresses(&target.site, &text)
        .map_err(|details| Error::BadInput { details })?;
    let mut report = new_report("verify", options, how(options));
    let named = |endpoint: &Endpoint| {
        places
            .iter()
            .filter(|place| {
                place.host.eq_ignore_ascii_case(&endpoint.host) && place.port == endpoint.port
            })
            .count()
    };
    let found = places
        .iter()
        .map(|place| place.describe())
        .collect::<Vec<_>>()
        .join(", ");
    match &options.resolver {
        Some(how) => report.checks.push(CheckResult {
            check: format!(
                "{} resolves {} at request time (resolver-driven)",
                target.site, how.name
            ),
            ok: text.contains(UPSTREAM_VARIABLE) && text.contains(&how.name),
            found: if text.contains(UPSTREAM_VARIABLE) {
                format!("{UPSTREAM_VARIABLE} is set")
            } else {
                found.clone()
            },
        }),
        None => report.checks.push(CheckResult {
            check: format!(
                "{} sends to {} and not to {}",
                target.site, target.new, target.old
            ),
            ok: named(&target.new) > 0 && named(&target.old) == 0,
            found: if found.is_empty() {
                "no upstream address".to_owned()
            } else {
                found
            },
        }),
    }
    if let Some(url) = &options.proxy_url {
        report.checks.push(probe(url, target));
    }
    report.ok = report.checks.iter().all(|check| check.ok);
    Ok(report)
}

/// Requests through the proxy and to each server directly: the proxy must
/// answer, and as the new server does (when the two answer differently).
fn probe(url: &str, target: &NginxTarget) -> CheckResult {
    let check = format!("requests through {url} reach {}", target.new);
    let (host, port, path) = match split_url(url) {
        Ok(parts) => parts,
        Err(found) => {
            return CheckResult {
                check,
                ok: false,
                found,
            }
        }
    };
    let through: Vec<std::result::Result<(u16, Vec<u8>), String>> =
        (0..3).map(|_| http_get(&host, port, &path)).collect();
    let new = http_get(&target.new.host, target.new.port, &path);
    let old = http_get(&target.old.host, target.old.port, &path);
    let mut problems = Vec::new();
    for answer in &through {
        match answer {
            Err(error) => problems.push(format!("the proxy did not answer: {error}")),
            Ok((status, _)) if *status >= 500 => {
                problems.push(format!("the proxy answered {status}"))
            }
            Ok((status, body)) => match (&new, &old) {
                (Ok((_, new_body)), _) if body == new_body => {}
                (Ok(_), _) => problems.push(format!(
                    "the proxy answered {status} with other content than {} directly",
                    target.new
                )),
                (Err(error), _) => {
                    problems.push(format!("{} did not answer directly: {error}", target.new))
                }
            },
        }
    }
    let alike = matches!((&new, &old), (Ok(new), Ok(old)) if new.1 == old.1);
    problems.dedup();
    CheckResult {
        check,
        ok: problems.is_empty(),
        found: if !problems.is_empty() {
            problems.join("; ")
        } else if alike {
            format!(
                "3 answers as {} gives; {} answers alike, so the content cannot tell which served",
                target.new, target.old
            )
        } else {
            format!("3 answers as {} gives, none as {}", target.new, target.old)
        },
    }
}

/// `http://HOST[:PORT][/PATH]` split.
fn split_url(url: &str) -> std::result::Result<(String, u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url:?} is not an http:// URL; pass --proxy-url http://HOST[:PORT]/PATH")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], rest[at..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let endpoint = Endpoint::parse(authority)
        .or_else(|_| Endpoint::parse(&format!("{authority}:80")))
        .map_err(|error| format!("--proxy-url: {error}"))?;
    Ok((endpoint.host, endpoint.port, path))
}

/// One `GET` on a fresh connection from this machine: status and body.
fn http_get(host: &str, port: u16, path: &str) -> std::result::Result<(u16, Vec<u8>), String> {
    let limit = Duration::from_secs(5);
    let address = (host, port)
        .to_socket_addrs()
        .map_err(|error| format!("{host}:{port} does not resolve: {error}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, limit)
        .map_err(|error| format!("{address}: {error}"))?;
    let _ = stream.set_read_timeout(Some(limit));
    let _ = stream.set_write_timeout(Some(limit));
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .map_err(|error| format!("{address}: {error}"))?;
    // Read up to the body's end as the headers give it (servers may keep the
    // connection open whatever the request says), at most 1 MiB: a page.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut head_end = None;
    loop {
        let read = stream
            .read(&mut chunk)
            .map_err(|error| format!("{address}: {error}"))?;
        answer.extend_from_slice(&chunk[..read]);
        if head_end.is_none() {
            head_end = answer
                .windows(4)
                .position(|window| window == b"\r\n\r\n")
                .map(|at| at + 4);
        }
        if read == 0 || answer.len() > 1 << 20 {
            break;
        }
        if let Some(end) = head_end {
            if body_complete(&answer[..end], &answer[end..]) {
                break;
            }
        }
    }
    let split = head_end.ok_or_else(|| format!("{address}: not an HTTP answer"))?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{address}: no status in {:?}", head.lines().next()))?;
    Ok((status, answer[split..].to_vec()))
}

/// Whether `body` is whole as the head says (Content-Length, or chunked to
/// its last chunk); without either, the body ends when the server closes.
fn body_complete(head: &[u8], body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(name).map(|value| value.trim().to_owned()))
    };
    if let Some(length) = header("content-length:").and_then(|value| value.parse::<usize>().ok()) {
        return body.len() >= length;
    }
    if header("transfer-encoding:").is_some_and(|value| value.contains("chunked")) {
        return body.starts_with(b"0\r\n\r\n") || body.ends_with(b"\r\n0\r\n\r\n");
    }
    false
}

/// Asks `resolver` for `name`'s A and AAAA records: they must be `address`
/// alone, or nginx would send traffic elsewhere once prepared.
fn check_name(wire: &dyn DnsWire, name: &str, resolver: &str, address: &str) -> Result<String> {
    let server = dns::parse_server(resolver).map_err(|details| Error::BadInput {
        details: format!("--resolver: {details}"),
    })?;
    let mut answered = Vec::new();
    for kind in [RecordKind::A, RecordKind::Aaaa] {
        let answer = wire.query(server, &dns::fqdn(name), kind)?;
        if let Some(set) = dns::rrset_of(&answer, kind) {
            answered.extend(set.addresses);
        }
    }
    let expected: Option<std::net::IpAddr> = address.parse().ok();
    match expected {
        Some(expected) if answered == [expected] => Ok(format!("{name} is {expected}")),
        // A host name for the old server: what it stands for is not known here.
        None if !answered.is_empty() => Ok(format!(
            "{name} is {}; --old names a host, not compared",
            answered
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => Err(Error::CheckFailed {
            what: format!("{name} at {resolver}"),
            details: format!(
                "it answers {}, not {address} alone: once prepared, nginx would send the traffic \
                 there; point {name} at the old server first (only its A record, nothing was changed)",
                if answered.is_empty() {
                    "no address".to_owned()
                } else {
                    answered
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        }),
    }
}

/// Runs steps in order into a report.
struct Session<'a> {
    executor: &'a dyn Executor,
    /// The DNS queries of `prepare`'s name check.
    wire: Option<&'a dyn DnsWire>,
    options: &'a NginxOptions,
    report: NginxReport,
}

impl Session<'_> {
    /// Runs one step; after the first change a failure says what was done
    /// and how to go back.
    fn run(
        &mut self,
        step: NginxStep,
        text: &str,
        mode: u32,
        saved: &SavedNginxState,
    ) -> Result<()> {
        let display = step.display();
        let detail = self.step(&step, text, mode, saved).map_err(|error| {
            if !self.report.changed {
                return error;
            }
            let done: Vec<String> = self
                .report
                .steps
                .iter()
                .map(|step| step.display.clone())
                .collect();
            Error::StepFailed {
                instance: self.options.instance.as_str().to_owned(),
                step: display.clone(),
                details: format!(
                    "{error}; done before it: [{}]; rerun the same command once fixed, or \
                     `cmw-upgrade cutover revert --method nginx` to put the saved site back",
                    done.join("; ")
                ),
            }
        })?;
        self.report.changed |= matches!(
            step,
            NginxStep::SaveState { .. } | NginxStep::WriteSite { .. } | NginxStep::Reload { .. }
        );
        self.report.steps.push(NginxStepReport {
            display,
            step,
            outcome: "done".to_owned(),
            detail,
        });
        Ok(())
    }

    fn step(
        &self,
        step: &NginxStep,
        text: &str,
        mode: u32,
        saved: &SavedNginxState,
    ) -> Result<Option<String>> {
        let executor = self.executor;
        match step {
            NginxStep::CheckName {
                name,
                resolver,
                address,
            } => {
                let wire = self.wire.ok_or_else(|| Error::Internal {
                    details: "the name check of prepare was run without a DNS client".to_owned(),
                })?;
                check_name(wire, name, resolver, address).map(Some)
            }
            NginxStep::CheckReachable { host, port } => Ok(executor
                .tool(&ToolAction::TcpConnect {
                    host: host.clone(),
                    port: *port,
                })?
                .reachable()?
                .map(|address| format!("connected to {address}"))),
            NginxStep::CheckSite { path, main_config } => {
                nginx_context::test_site_in_main_config(
                    &self.options.root,
                    main_config,
                    path,
                    text,
                    &executor,
                )
                .map_err(|error| match error {
                    Error::CheckFailed { what, details } => Error::CheckFailed {
                        what,
                        details: format!(
                            "{details}; {path} was left as it is: fix what nginx refuses, then rerun"
                        ),
                    },
                    other => other,
                })?;
                Ok(Some("nginx -t passes".to_owned()))
            }
            NginxStep::SaveState { path } => {
                super::write_saved(executor, path, saved)?;
                Ok(None)
            }
            NginxStep::WriteSite { path, backup } => {
                if let Some(backup) = backup {
                    if !executor.exists(backup)? {
                        let folder = backup.rsplit_once('/').map_or("/", |(folder, _)| folder);
                        executor.create_dir_all(folder)?;
                        executor.copy(path, backup)?;
                    }
                }
                executor.write_file(path, &raw_text::encode(text), mode)?;
                Ok(None)
            }
            NginxStep::Reload { .. } => {
                let command = reload_command(&saved.target.main_config);
                let output = executor.execute(&command)?;
                if output.code != Some(0) {
                    return Err(Error::CommandFailed {
                        command: command.display(),
                        status: format!("{:?}", output.code),
                        output: format!("{}{}", output.stdout, output.stderr)
                            .trim()
                            .to_owned(),
                        hint: "nginx did not take the signal: is it running, with the pid file \
                               its config names? `systemctl reload nginx` does the same"
                            .to_owned(),
                    });
                }
                Ok(None)
            }
            NginxStep::KeepStateBeside { path } => {
                executor.rename(&saved_state_path(&self.options.instance), path)?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(reload: bool, resolver: Option<ResolverDriven>) -> NginxOptions {
        NginxOptions {
            instance: InstanceName::new("prod").unwrap(),
            target: NginxTarget {
                site: "/etc/nginx/sites-available/cmw".into(),
                main_config: "/etc/nginx/nginx.conf".into(),
                old: Endpoint::parse("10.0.0.5:8080").unwrap(),
                new: Endpoint::parse("10.0.0.6:8080").unwrap(),
            },
            root: PathBuf::from("/"),
            reload,
            resolver,
            proxy_url: None,
            stamp: "20261128T120000Z".into(),
        }
    }

    #[test]
    fn the_reload_path_checks_before_it_writes_and_reloads_last() {
        let steps: Vec<String> = change_steps(&options(true, None), true, true)
            .iter()
            .map(NginxStep::display)
            .collect();
        assert_eq!(
            steps,
            [
                "check 10.0.0.6:8080 takes TCP connections from the proxy's host",
                "check that /etc/nginx/sites-available/cmw as it will be written passes `nginx -t` \
                 in /etc/nginx/nginx.conf's configuration (in a private copy)",
                "save the site as it is now to /var/lib/cmw-upgrade/prod/cutover-nginx.json (0600)",
                "write /etc/nginx/sites-available/cmw atomically; original kept as \
                 /var/lib/cmw-upgrade/prod/cmw.cmw-upgrade.20261128T120000Z.bak",
                "nginx -p /usr/share/nginx/ -c /etc/nginx/nginx.conf -s reload",
            ]
        );
    }

    #[test]
    fn apply_and_plan_say_which_way_to_take() {
        let executor = crate::executor::LocalExecutor::new("/nonexistent-root");
        let error = apply(&executor, &options(false, None)).unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::BadInput);
        assert!(error.to_string().contains("--method dns"), "{error}");
        let error = plan(&executor, &options(false, None)).unwrap_err();
        assert!(error.to_string().contains("--reload"), "{error}");
        let wire = super::super::dns_wire::HickoryWire::default();
        let error = prepare(&executor, &wire, &options(false, None)).unwrap_err();
        assert!(error.to_string().contains("--upstream-name"), "{error}");
        let mut other_port = options(
            false,
            Some(ResolverDriven {
                name: "b.example.test".into(),
                resolver: "10.0.0.2:53".into(),
                valid: 1,
            }),
        );
        other_port.target.new.port = 9090;
        let error = candidate(&other_port, "").unwrap_err();
        assert!(error.to_string().contains("differ in port"), "{error}");
        let mut same = options(true, None);
        same.target.new = same.target.old.clone();
        assert_eq!(
            plan(&executor, &same).unwrap_err().kind(),
            crate::ErrorKind::BadInput
        );
    }

    #[test]
    fn answers_end_where_their_headers_say() {
        assert!(body_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
            b"new"
        ));
        assert!(!body_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
            b"ne"
        ));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(body_complete(chunked, b"3\r\nnew\r\n0\r\n\r\n"));
        assert!(!body_complete(chunked, b"3\r\nnew\r\n"));
        assert!(!body_complete(b"HTTP/1.0 200 OK\r\n\r\n", b"x"));
        assert_eq!(
            split_url("http://127.0.0.1:8080/api/health").unwrap(),
            ("127.0.0.1".to_owned(), 8080, "/api/health".to_owned())
        );
        assert_eq!(
            split_url("http://proxy.example").unwrap(),
            ("proxy.example".to_owned(), 80, "/".to_owned())
        );
        assert!(split_url("https://x/").is_err());
    }
}
