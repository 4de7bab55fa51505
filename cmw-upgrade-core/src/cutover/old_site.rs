//! The old server's own nginx site around the switch, edited on the old
//! server through its executor:
//!
//! - **freeze** (`apply --freeze-old`): every `server` block answers 503 to
//!   writes (any method but GET and HEAD) before the final drift check, so no
//!   write lands on the old server that the new one would miss; reads still
//!   work. Undone by `revert` and by `finish`.
//! - **forward** (`cutover forward-old`): every upstream address of the site
//!   (its `proxy_pass` to the platform, or an `upstream` block's servers)
//!   sends to the new server instead, so clients that still resolve the old
//!   address reach the live instance. Undone by `revert`.
//!
//! The site's text before the first edit is saved on this machine (with the
//! cut-over's state, 0600) and a copy kept on the old server as
//! `/var/lib/cmw-upgrade/<instance>/<name>.old-site.cmw-upgrade.<time>.bak`;
//! `revert` writes it back byte for byte.
//! Each edit changes only the bytes it adds or swaps, is written atomically,
//! must pass `nginx -t` (else the previous text is put back) and ends with a
//! reload.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::nginx_site::{self, Endpoint};
use crate::config::nginx::parse_nginx;
use crate::config::nginx::Directive;
use crate::error::{Error, Result};
use crate::executor::{CommandSpec, Executor};
use crate::instance::InstanceName;

/// The comment that marks the freeze's lines (and finds them again).
pub const FREEZE_MARK: &str =
    "# cmw-upgrade freeze-old: writes refused during the cut-over (cutover revert or finish removes this)";
/// The freeze itself: 503 to any method but GET and HEAD, before any location is chosen.
pub const FREEZE_RULE: &str = "if ($request_method !~ ^(GET|HEAD)$) { return 503; }";

/// nginx's compiled-in prefix on the Debian and Astra packages (what `-p`
/// names, so a `--root` tree is read as the server reads it).
const NGINX_PREFIX: &str = "/usr/share/nginx/";

/// The old server's site and the main config its nginx loads (server paths there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldSite {
    /// The site file.
    pub site: String,
    /// nginx's main config, for `nginx -t` and the reload.
    pub main_config: String,
}

/// What was done to the old site, and what undoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedOldSite {
    /// The format of this file.
    pub format: u32,
    /// When the first edit was made (UTC stamp).
    pub saved_at: String,
    /// How the old server was reached (`[user@]host[:port]` or `local`), for a revert from this file alone.
    pub old_host: String,
    /// The old server's `/` for the tool there (rehearsals and tests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_root: Option<String>,
    /// The site and main config.
    pub target: OldSite,
    /// The site's text before the first edit.
    pub original: String,
    /// Its permission bits.
    pub mode: u32,
    /// The copy kept on the old server.
    pub backup: String,
    /// Writes answer 503.
    pub frozen: bool,
    /// Traffic is sent to this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_to: Option<Endpoint>,
}

/// What an edit of the old site did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldSiteReport {
    /// `freeze`, `unfreeze`, `forward` or `restore`.
    pub action: String,
    /// The site file on the old server.
    pub site: String,
    /// How the old server was reached.
    pub old_host: String,
    /// Whether the file was rewritten (and nginx reloaded).
    pub changed: bool,
    /// The change as a unified diff (empty: none).
    pub diff: String,
    /// What was done, in order.
    pub steps: Vec<String>,
    /// The state on this machine.
    pub saved_state: String,
}

/// The saved state's server path (on this machine) for an instance.
pub fn saved_state_path(instance: &InstanceName) -> String {
    format!(
        "/var/lib/cmw-upgrade/{}/cutover-old-site.json",
        instance.as_str()
    )
}

/// Reads the saved state; `None` when there is none.
///
/// # Errors
/// [`Error::StateConflict`] when it does not read.
pub fn read_saved_state(
    executor: &dyn Executor,
    instance: &InstanceName,
) -> Result<Option<SavedOldSite>> {
    super::read_saved(
        executor,
        &saved_state_path(instance),
        "old-site",
        "put back the old server's site from its copy in /var/lib/cmw-upgrade/<instance>/ \
         there (<name>.old-site.cmw-upgrade.<time>.bak) by hand",
    )
}

/// The `server` blocks of a site (inside `http` too, for a whole config).
fn server_blocks(directives: &[Directive]) -> Vec<&Directive> {
    let mut found = Vec::new();
    for directive in directives {
        match (directive.name.as_str(), &directive.block) {
            ("server", Some(_)) => found.push(directive),
            ("http", Some(block)) => found.extend(server_blocks(block)),
            _ => {}
        }
    }
    found
}

fn line_ending(text: &str) -> &'static str {
    if text.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

/// The indentation of the line `offset` is on.
fn indentation(text: &str, offset: usize) -> &str {
    let line_start = text[..offset].rfind('\n').map_or(0, |at| at + 1);
    let line = &text[line_start..offset];
    let width = line.len() - line.trim_start_matches([' ', '\t']).len();
    &line[..width]
}

/// The site with the freeze's two lines at the top of every `server` block;
/// `None` when it is frozen already. Every other byte stays as it was.
///
/// # Errors
/// The parser's message, or a sentence when the site has no `server` block.
pub fn freeze_text(file: &str, text: &str) -> std::result::Result<Option<String>, String> {
    if text.contains(FREEZE_MARK) {
        return Ok(None);
    }
    let directives = parse_nginx(file, text).map_err(|error| error.to_string())?;
    let servers = server_blocks(&directives);
    if servers.is_empty() {
        return Err(format!(
            "{file} has no server block: give the old server's site (the file with its `server {{ \
             listen ...; }}`) as --old-site"
        ));
    }
    let newline = line_ending(text);
    let mut out = String::with_capacity(text.len() + 200 * servers.len());
    let mut copied = 0;
    for server in servers {
        let open = text[server.args_end..]
            .find('{')
            .map(|at| server.args_end + at + 1)
            .ok_or_else(|| format!("{file}: the server block at line {} has no {{", server.line))?;
        let indent = match server.block.as_deref().and_then(<[Directive]>::first) {
            Some(first) => indentation(text, first.start).to_owned(),
            None => format!("{}    ", indentation(text, server.start)),
        };
        out.push_str(&text[copied..open]);
        out.push_str(&format!(
            "{newline}{indent}{FREEZE_MARK}{newline}{indent}{FREEZE_RULE}"
        ));
        copied = open;
    }
    out.push_str(&text[copied..]);
    Ok(Some(out))
}

/// The site without the freeze's lines: exactly the text before
/// [`freeze_text`] when nothing else changed in between.
pub fn unfreeze_text(text: &str) -> String {
    let mut out = text.to_owned();
    while let Some(at) = out.find(FREEZE_MARK) {
        let mut start = out[..at].rfind('\n').unwrap_or(0);
        if start > 0 && out.as_bytes()[start - 1] == b'\r' {
            start -= 1;
        }
        let end = out[at..]
            .find(FREEZE_RULE)
            .map_or(at + FREEZE_MARK.len(), |rule| at + rule + FREEZE_RULE.len());
        out.replace_range(start..end, "");
    }
    out
}

/// The site with every upstream address sent to `to`; `None` when each is
/// `to` already. Every other byte stays as it was.
///
/// # Errors
/// The parser's message, or a sentence when the site proxies nowhere.
pub fn forward_text(
    file: &str,
    text: &str,
    to: &Endpoint,
) -> std::result::Result<Option<String>, String> {
    let places = nginx_site::upstream_addresses(file, text)?;
    if places.is_empty() {
        return Err(format!(
            "{file} has no proxy_pass to an address (nor an upstream block): forward-old turns \
             the site's proxy_pass into one to the new server; give the site that proxies to the \
             platform as --old-site"
        ));
    }
    let moving: Vec<_> = places
        .iter()
        .filter(|place| !to.is(&place.host, place.port))
        .collect();
    if moving.is_empty() {
        return Ok(None);
    }
    Ok(Some(nginx_site::replace_places(
        text,
        &moving,
        &to.to_string(),
    )))
}

/// `nginx -t` (with `-s reload` for `signal`) for the nginx whose main config is `main`.
fn nginx_command(main: &str, signal: Option<&str>) -> CommandSpec {
    let command = CommandSpec::new(["nginx", "-p"])
        .path_arg(NGINX_PREFIX)
        .args(["-c"])
        .path_arg(main);
    match signal {
        Some(signal) => command.args(["-s", signal]),
        None => command.args(["-t"]),
    }
    .with_timeout(Duration::from_secs(60))
}

/// How an edit reaches the old server and where its state is kept.
pub struct OldSiteAccess<'a> {
    /// The cut-over's state (this machine).
    pub state: &'a dyn Executor,
    /// The old server.
    pub old: &'a dyn Executor,
    /// How the old server was reached (`local`, `root@old:22`), saved for a revert.
    pub old_host: String,
    /// The old server's `/` for the tool there (rehearsals and tests only).
    pub old_root: Option<String>,
    /// The instance.
    pub instance: InstanceName,
    /// A stamp for file names.
    pub stamp: String,
}

fn read_text(executor: &dyn Executor, site: &str) -> Result<String> {
    if let Some(points_to) = executor.read_link(site)? {
        return Err(Error::BadInput {
            details: format!(
                "{site} is a link to {points_to} on the old server; pass the file itself as \
                 --old-site (the edit replaces the file atomically and would replace the link)"
            ),
        });
    }
    let bytes = executor.read_file(site)?.ok_or_else(|| Error::BadInput {
        details: format!(
            "there is no nginx site at {site} on the old server; pass the old server's site \
             file as --old-site"
        ),
    })?;
    String::from_utf8(bytes).map_err(|_| Error::BadInput {
        details: format!(
            "{site} on the old server is not UTF-8 text; edit it by hand (the freeze is `{FREEZE_RULE}` \
             at the top of each server block)"
        ),
    })
}

/// Writes `candidate` over `current` (atomically), checks it with `nginx -t`
/// (the current text put back when it fails) and reloads nginx.
fn rewrite(
    old: &dyn Executor,
    target: &OldSite,
    current: &str,
    candidate: &str,
    mode: u32,
    steps: &mut Vec<String>,
) -> Result<()> {
    old.write_file(&target.site, candidate.as_bytes(), mode)?;
    steps.push(format!("wrote {} (atomically)", target.site));
    let test = nginx_command(&target.main_config, None);
    let result = old.execute(&test);
    let passed = matches!(&result, Ok(output) if output.code == Some(0));
    if !passed {
        old.write_file(&target.site, current.as_bytes(), mode)?;
        let output = result?;
        return Err(Error::CheckFailed {
            what: format!("`{}` on the old server", test.display()),
            details: format!(
                "{}{}; {} was put back as it was and nginx was not reloaded: fix what nginx \
                 refuses there, then rerun",
                output.stdout.trim(),
                output.stderr.trim(),
                target.site
            ),
        });
    }
    steps.push(format!("`{}` passes", test.display()));
    let reload = nginx_command(&target.main_config, Some("reload"));
    let output = old.execute(&reload)?;
    if output.code != Some(0) {
        return Err(Error::CommandFailed {
            command: reload.display(),
            status: format!("{:?}", output.code),
            output: format!("{}{}", output.stdout, output.stderr),
            hint: format!(
                "{} is written and passes `nginx -t`; reload the old server's nginx by hand",
                target.site
            ),
        });
    }
    steps.push(format!("`{}`", reload.display()));
    Ok(())
}

fn report(access: &OldSiteAccess<'_>, action: &str, site: &str) -> OldSiteReport {
    OldSiteReport {
        action: action.to_owned(),
        site: site.to_owned(),
        old_host: access.old_host.clone(),
        changed: false,
        diff: String::new(),
        steps: Vec::new(),
        saved_state: saved_state_path(&access.instance),
    }
}

/// One edit: the candidate from the current text (`None`: so already),
/// the saved state updated first (made on the first edit, with a copy of
/// the site kept on the old server), then the rewrite.
fn edit(
    access: &OldSiteAccess<'_>,
    target: &OldSite,
    action: &str,
    candidate: impl Fn(&str) -> Result<Option<String>>,
    mark: impl Fn(&mut SavedOldSite),
) -> Result<OldSiteReport> {
    let _lock = super::lock(access.state, &access.instance)?;
    let saved = read_saved_state(access.state, &access.instance)?;
    if let Some(saved) = &saved {
        if saved.target.site != target.site {
            return Err(Error::StateConflict {
                details: format!(
                    "{} holds edits of the old site {} not yet reverted; revert them first \
                     (`cmw-upgrade cutover revert`)",
                    saved_state_path(&access.instance),
                    saved.target.site
                ),
            });
        }
    }
    let current = read_text(access.old, &target.site)?;
    let mut report = report(access, action, &target.site);
    let Some(next) = candidate(&current)? else {
        report.steps.push(format!("{} is so already", target.site));
        return Ok(report);
    };
    report.diff = super::nginx::site_diff(&target.site, &current, &next);
    let mode = super::file_mode(access.old, &target.site)?;
    let before = saved.clone();
    let mut state = match saved {
        Some(saved) => saved,
        None => {
            let backup = backup_path(access, &target.site);
            if !access.old.exists(&backup)? {
                let folder = backup.rsplit_once('/').map_or("/", |(folder, _)| folder);
                access.old.create_dir_all(folder)?;
                access.old.copy(&target.site, &backup)?;
            }
            report.steps.push(format!(
                "kept {} as {backup} on the old server",
                target.site
            ));
            SavedOldSite {
                format: 1,
                saved_at: access.stamp.clone(),
                old_host: access.old_host.clone(),
                old_root: access.old_root.clone(),
                target: target.clone(),
                original: current.clone(),
                mode,
                backup,
                frozen: false,
                forward_to: None,
            }
        }
    };
    mark(&mut state);
    super::write_saved(access.state, &saved_state_path(&access.instance), &state)?;
    report.steps.push(format!(
        "saved the site's text before the first edit to {}",
        saved_state_path(&access.instance)
    ));
    if let Err(error) = rewrite(access.old, target, &current, &next, mode, &mut report.steps) {
        // `nginx -t` refused it and the site was put back as it was: so is its state.
        if matches!(error, Error::CheckFailed { .. }) {
            let path = saved_state_path(&access.instance);
            match &before {
                Some(before) => super::write_saved(access.state, &path, before)?,
                None => access.state.remove(&path)?,
            }
        }
        return Err(error);
    }
    report.changed = true;
    Ok(report)
}

/// Where the copy of the site is kept on the old server: the tool's own
/// folder there, not beside the site (nginx's `include sites-enabled/*`
/// would load a copy there as a second site).
fn backup_path(access: &OldSiteAccess<'_>, site: &str) -> String {
    let name = site.rsplit('/').next().unwrap_or("site");
    format!(
        "/var/lib/cmw-upgrade/{}/{name}.old-site.cmw-upgrade.{}.bak",
        access.instance.as_str(),
        access.stamp
    )
}

fn bad_site(details: String) -> Error {
    Error::BadInput { details }
}

/// Makes the old site answer 503 to writes (see the module's documentation).
///
/// # Errors
/// [`Error::BadInput`] for a site that is not there or has no server block;
/// [`Error::CheckFailed`] when `nginx -t` refuses it (put back as it was).
pub fn freeze(access: &OldSiteAccess<'_>, target: &OldSite) -> Result<OldSiteReport> {
    edit(
        access,
        target,
        "freeze",
        |text| freeze_text(&target.site, text).map_err(bad_site),
        |state| state.frozen = true,
    )
}

/// What [`freeze`] would do now, for a plan: reads the site, changes nothing.
///
/// # Errors
/// As [`freeze`] for the site.
pub fn plan_freeze(access: &OldSiteAccess<'_>, target: &OldSite) -> Result<OldSiteReport> {
    let current = read_text(access.old, &target.site)?;
    let mut report = report(access, "freeze (planned)", &target.site);
    match freeze_text(&target.site, &current).map_err(bad_site)? {
        Some(next) => {
            report.diff = super::nginx::site_diff(&target.site, &current, &next);
            report.steps = vec![
                format!(
                    "after the checks pass: save the site to {} and keep a copy in \
                     /var/lib/cmw-upgrade/{}/ on the old server",
                    saved_state_path(&access.instance),
                    access.instance.as_str()
                ),
                format!("write {} atomically", target.site),
                format!("`{}`", nginx_command(&target.main_config, None).display()),
                format!(
                    "`{}`",
                    nginx_command(&target.main_config, Some("reload")).display()
                ),
                "check the old database against the bundle once more (the final drift check)"
                    .to_owned(),
            ];
        }
        None => report
            .steps
            .push(format!("{} is frozen already", target.site)),
    }
    Ok(report)
}

/// Sends the old site's traffic to `to`, the new server (see the module's documentation).
///
/// # Errors
/// As [`freeze`]; [`Error::BadInput`] for a site with no upstream address.
pub fn forward(
    access: &OldSiteAccess<'_>,
    target: &OldSite,
    to: &Endpoint,
) -> Result<OldSiteReport> {
    edit(
        access,
        target,
        "forward",
        |text| forward_text(&target.site, text, to).map_err(bad_site),
        |state| state.forward_to = Some(to.clone()),
    )
}

/// Lets writes through again (`finish`): the freeze's lines removed, a
/// forward kept. `None` when nothing is frozen.
///
/// # Errors
/// As [`freeze`].
pub fn unfreeze(access: &OldSiteAccess<'_>) -> Result<Option<OldSiteReport>> {
    let Some(saved) = read_saved_state(access.state, &access.instance)? else {
        return Ok(None);
    };
    if !saved.frozen {
        return Ok(None);
    }
    let target = saved.target.clone();
    let report = edit(
        access,
        &target,
        "unfreeze",
        |text| {
            let next = unfreeze_text(text);
            Ok((next != text).then_some(next))
        },
        |state| state.frozen = false,
    )?;
    // Nothing else was done to the site: its state has nothing left to undo.
    if let Some(saved) = read_saved_state(access.state, &access.instance)? {
        if saved.forward_to.is_none() {
            keep_beside(access, "finished")?;
        }
    }
    Ok(Some(report))
}

/// Writes back the site saved before the first edit, byte for byte
/// (`revert`), and keeps the state beside. `None` when nothing was edited.
///
/// # Errors
/// As [`freeze`]; the saved site refused by `nginx -t` stays unwritten.
pub fn restore(access: &OldSiteAccess<'_>) -> Result<Option<OldSiteReport>> {
    let _lock = super::lock(access.state, &access.instance)?;
    let Some(saved) = read_saved_state(access.state, &access.instance)? else {
        return Ok(None);
    };
    let target = &saved.target;
    let current = read_text(access.old, &target.site)?;
    let mut report = report(access, "restore", &target.site);
    if current != saved.original {
        report.diff = super::nginx::site_diff(&target.site, &current, &saved.original);
        rewrite(
            access.old,
            target,
            &current,
            &saved.original,
            saved.mode,
            &mut report.steps,
        )?;
        report.changed = true;
    } else {
        report
            .steps
            .push(format!("{} is as saved already", target.site));
    }
    let kept = keep_beside(access, "reverted")?;
    report
        .steps
        .push(format!("kept the old-site state as {kept}"));
    Ok(Some(report))
}

fn keep_beside(access: &OldSiteAccess<'_>, how: &str) -> Result<String> {
    let kept = format!(
        "/var/lib/cmw-upgrade/{}/cutover-old-site.{how}.{}.json",
        access.instance.as_str(),
        access.stamp
    );
    access
        .state
        .rename(&saved_state_path(&access.instance), &kept)?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "# the platform\nserver {\n    listen 80;\n    location / {\n        proxy_pass http://127.0.0.1:8081;   # the platform\n    }\n}\n";

    #[test]
    fn freeze_adds_two_lines_per_server_and_unfreeze_takes_them_back() {
        let frozen = freeze_text("site", SITE).unwrap().unwrap();
        assert!(
            frozen.starts_with(&format!(
                "# the platform\nserver {{\n    {FREEZE_MARK}\n    {FREEZE_RULE}\n    listen 80;"
            )),
            "{frozen}"
        );
        assert_eq!(freeze_text("site", &frozen).unwrap(), None);
        assert_eq!(unfreeze_text(&frozen), SITE);
        let crlf = SITE.replace('\n', "\r\n");
        let two = format!("{crlf}server {{ listen 81; }}\r\n");
        let frozen = freeze_text("site", &two).unwrap().unwrap();
        assert_eq!(frozen.matches(FREEZE_RULE).count(), 2);
        assert!(!frozen.replace("\r\n", "").contains('\n'), "{frozen:?}");
        assert_eq!(unfreeze_text(&frozen), two);
    }

    #[test]
    fn freeze_refuses_a_file_without_a_server() {
        let error = freeze_text("site", "upstream x { server 1.2.3.4:80; }\n").unwrap_err();
        assert!(error.contains("no server block"), "{error}");
    }

    #[test]
    fn forward_swaps_every_upstream_address_and_nothing_else() {
        let to = Endpoint::parse("10.0.0.6:80").unwrap();
        let forwarded = forward_text("site", SITE, &to).unwrap().unwrap();
        assert_eq!(
            forwarded,
            SITE.replace("127.0.0.1:8081", "10.0.0.6:80"),
            "{forwarded}"
        );
        assert_eq!(forward_text("site", &forwarded, &to).unwrap(), None);
        let error =
            forward_text("site", "server { listen 80; root /var/www; }\n", &to).unwrap_err();
        assert!(error.contains("no proxy_pass"), "{error}");
    }
}
