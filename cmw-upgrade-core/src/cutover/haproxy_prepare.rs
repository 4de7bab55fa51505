//! HAProxy `prepare`: the backend gets both servers before the switch.
//!
//! The runtime API switches between servers the running config has; a
//! backend holding only the old server (or only the new one) needs the other
//! added first, and that takes a reload. It is done here, once, hours
//! before the window if the admin likes, never in `apply`:
//!
//! - the missing server's line is written right after the one that is there,
//!   with its options (health check, timings) and `disabled`, so the reload
//!   moves no traffic; every other byte of the config stays;
//! - `option idle-close-on-response` goes into each frontend (or listen)
//!   sending traffic to the backend, when HAProxy knows it (2.6 and later):
//!   at a reload the old worker then answers the next request of an idle
//!   keep-alive connection with `Connection: close` instead of closing it
//!   under the client (measured: that is what loses requests at a reload);
//! - `haproxy -c` on the candidate before it is written; the original is
//!   kept as `<config>.cmw-upgrade.<time>.bak`;
//! - one reload, master-worker: `reload` on the master socket (`-S`), or the
//!   admin's reload command (`systemctl reload haproxy`); then the admin
//!   socket must list the added server (the new worker serves).
//!
//! What was added is saved (`cutover.haproxy-prepare.json`) before the
//! config is touched, so [`revert`] takes exactly those lines out again
//! (and reloads once), also after a crash.
//!
//! A reload after `apply` keeps the switch: apply writes the `disabled`
//! flags into the config. With `server-state-file` and
//! `load-server-state-from-file`, HAProxy 2.x lets the config win for a
//! server whose `disabled` flag differs from the one the state file recorded
//! (the file keeps the config's flag in bit 0x04 of `srv_admin_state`), and
//! apply changes exactly those two flags: a state file dumped before or
//! after the switch does not bring the old server back (tested).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::haproxy::{Runtime, ServerState};
use super::haproxy_config::{self, lines_of, server_lines, split_line, word, SECTION_KEYWORDS};
use super::{file_mode, read_saved, write_saved};
use crate::error::{Error, Result};
use crate::executor::{shell_quote, CommandSpec, Executor};
use crate::instance::InstanceName;

/// The option that makes a reload close idle keep-alive connections politely.
pub const IDLE_CLOSE: &str = "option idle-close-on-response";

/// How HAProxy is reloaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reload {
    /// `reload` sent to the master CLI socket of a master-worker HAProxy (`-W -S PATH`).
    MasterSocket(String),
    /// A command that reloads it (argv), e.g. `systemctl reload haproxy`.
    Command(Vec<String>),
}

impl Reload {
    /// As an admin would type it.
    pub fn display(&self) -> String {
        match self {
            Reload::MasterSocket(socket) => {
                format!("echo reload | socat stdio {}", shell_quote(socket))
            }
            Reload::Command(argv) => argv
                .iter()
                .map(|arg| shell_quote(arg))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// What `prepare --method haproxy` needs.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// The instance (names the saved state's folder).
    pub instance: InstanceName,
    /// The admin socket (server path): the added server must show there after the reload.
    pub socket: String,
    /// The config file HAProxy loads (server path).
    pub config: String,
    /// The backend.
    pub backend: String,
    /// The server traffic leaves.
    pub old_server: String,
    /// The server traffic goes to.
    pub new_server: String,
    /// The old server's `HOST:PORT`, when the backend lacks it.
    pub old_address: Option<String>,
    /// The new server's `HOST:PORT`, when the backend lacks it.
    pub new_address: Option<String>,
    /// How HAProxy is reloaded.
    pub reload: Option<Reload>,
    /// Add `option idle-close-on-response` to the frontends of the backend.
    pub idle_close: bool,
    /// The longest the new worker may take to answer with the new config.
    pub reload_limit: Duration,
    /// A stamp for file names.
    pub stamp: String,
}

/// What prepare added: what [`revert`] takes out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedState {
    /// The format of this file.
    pub format: u32,
    /// When it was saved.
    pub saved_at: String,
    /// The config file.
    pub config: String,
    /// The backend.
    pub backend: String,
    /// The servers added.
    pub servers: Vec<String>,
    /// The lines added, as written (without their line end).
    pub lines: Vec<String>,
    /// How HAProxy was reloaded (revert reloads the same way).
    pub reload: Reload,
    /// The original config's copy.
    pub backup: String,
}

/// What prepare (or its revert) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareReport {
    /// `prepare`, `plan` or `revert`.
    pub action: String,
    /// `haproxy`.
    pub method: String,
    /// Whether it went through.
    pub ok: bool,
    /// Whether anything was changed.
    pub changed: bool,
    /// The config file.
    pub config: String,
    /// The servers added (or taken out).
    pub servers: Vec<String>,
    /// The lines added (or taken out).
    pub lines: Vec<String>,
    /// The reload, as an admin would run it (none when nothing changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<String>,
    /// The original config's copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The saved state's server path.
    pub saved_state: String,
    /// What the admin should know.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

const PREPARED_FORMAT: u32 = 1;

/// The saved state's server path.
pub fn prepared_state_path(instance: &InstanceName) -> String {
    format!(
        "/var/lib/cmw-upgrade/{}/cutover.haproxy-prepare.json",
        instance.as_str()
    )
}

/// Reads what prepare saved; `None` when it added nothing (or was reverted).
///
/// # Errors
/// [`Error::StateConflict`] when it does not read.
pub fn read_prepared(
    executor: &dyn Executor,
    instance: &InstanceName,
) -> Result<Option<PreparedState>> {
    read_saved(
        executor,
        &prepared_state_path(instance),
        "haproxy prepare",
        "take the added server lines out of the config by hand",
    )
}

fn line_end(line: &[u8]) -> &'static [u8] {
    if line.ends_with(b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    }
}

fn without_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The config with `server NAME ADDRESS` added right after `template`'s
/// line in `backend`, with the template's options except `disabled`, `id`
/// and `cookie` (unique per server), and `disabled` at the end. Pure.
///
/// Returns the new text and the added line (without its end).
///
/// # Errors
/// What is wrong, as text: no such backend or template server, the name taken.
pub fn add_server(
    text: &[u8],
    backend: &str,
    template: &str,
    name: &str,
    address: &str,
) -> std::result::Result<(Vec<u8>, String), String> {
    let lines = lines_of(text);
    let servers = server_lines(&lines, backend)?;
    if servers.contains_key(name) {
        return Err(format!("backend {backend} has a server {name} already"));
    }
    let Some(&at) = servers.get(template) else {
        return Err(format!(
            "backend {backend} in the config has no `server {template}` line to copy the options from"
        ));
    };
    let line = lines[at];
    let parsed = split_line(line);
    let indent = String::from_utf8_lossy(&line[..parsed.words[0].0]).into_owned();
    let words: Vec<String> = parsed
        .words
        .iter()
        .map(|&span| String::from_utf8_lossy(word(line, span)).into_owned())
        .collect();
    let mut added = vec!["server".to_owned(), name.to_owned(), address.to_owned()];
    let mut rest = words.iter().skip(3);
    while let Some(option) = rest.next() {
        match option.as_str() {
            "disabled" => {}
            "id" | "cookie" => {
                rest.next();
            }
            _ => added.push(option.clone()),
        }
    }
    added.push("disabled".to_owned());
    let added_line = format!("{indent}{}", added.join(" "));
    let mut out = Vec::with_capacity(text.len() + added_line.len() + 2);
    for (number, each) in lines.iter().enumerate() {
        out.extend_from_slice(each);
        if number == at {
            if !each.ends_with(b"\n") {
                out.extend_from_slice(b"\n");
            }
            out.extend_from_slice(added_line.as_bytes());
            out.extend_from_slice(line_end(each));
        }
    }
    Ok((out, added_line))
}

/// The config with [`IDLE_CLOSE`] in every `frontend` sending traffic to
/// `backend` (`default_backend` / `use_backend`) and in `listen backend`,
/// right after the section's first line, unless the section has it (or
/// `no option idle-close-on-response`) already. Pure.
///
/// Returns the new text and the lines added.
pub fn add_idle_close(text: &[u8], backend: &str) -> (Vec<u8>, Vec<String>) {
    struct Section {
        header: usize,
        uses: bool,
        has: bool,
        indent: Option<String>,
    }
    let lines = lines_of(text);
    let mut sections: Vec<Section> = Vec::new();
    let mut current: Option<Section> = None;
    for (number, line) in lines.iter().enumerate() {
        let parsed = split_line(line);
        let Some(&first) = parsed.words.first() else {
            continue;
        };
        let words: Vec<&[u8]> = parsed.words.iter().map(|&span| word(line, span)).collect();
        if SECTION_KEYWORDS.iter().any(|k| k.as_bytes() == words[0]) {
            sections.extend(current.take());
            if words[0] == b"frontend" || words[0] == b"listen" {
                current = Some(Section {
                    header: number,
                    uses: words[0] == b"listen" && words.get(1) == Some(&backend.as_bytes()),
                    has: false,
                    indent: None,
                });
            }
            continue;
        }
        let Some(section) = current.as_mut() else {
            continue;
        };
        if section.indent.is_none() {
            section.indent = Some(String::from_utf8_lossy(&line[..first.0]).into_owned());
        }
        if (words[0] == b"default_backend" || words[0] == b"use_backend")
            && words.get(1) == Some(&backend.as_bytes())
        {
            section.uses = true;
        }
        if words.contains(&b"option".as_slice()) && words.contains(&&b"idle-close-on-response"[..])
        {
            section.has = true;
        }
    }
    sections.extend(current);
    let mut inserts = std::collections::BTreeMap::new();
    for section in sections
        .iter()
        .filter(|section| section.uses && !section.has)
    {
        let indent = section.indent.clone().unwrap_or_else(|| "    ".to_owned());
        inserts.insert(section.header, format!("{indent}{IDLE_CLOSE}"));
    }
    let mut out = Vec::with_capacity(text.len() + 40 * inserts.len());
    for (number, line) in lines.iter().enumerate() {
        out.extend_from_slice(line);
        if let Some(added) = inserts.get(&number) {
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\n");
            }
            out.extend_from_slice(added.as_bytes());
            out.extend_from_slice(line_end(line));
        }
    }
    (out, inserts.into_values().collect())
}

/// The config without the lines prepare added (each once, the first line
/// equal to it). Pure. Returns the text and the lines found.
pub fn remove_lines(text: &[u8], added: &[String]) -> (Vec<u8>, Vec<String>) {
    let lines = lines_of(text);
    let mut dropped = vec![false; lines.len()];
    let mut found = Vec::new();
    for wanted in added {
        if let Some(index) = lines
            .iter()
            .enumerate()
            .position(|(index, line)| !dropped[index] && without_end(line) == wanted.as_bytes())
        {
            dropped[index] = true;
            found.push(wanted.clone());
        }
    }
    let mut out = Vec::with_capacity(text.len());
    for (line, dropped) in lines.iter().zip(dropped) {
        if !dropped {
            out.extend_from_slice(line);
        }
    }
    (out, found)
}

fn lock<'a>(
    executor: &'a dyn Executor,
    instance: &InstanceName,
) -> Result<crate::executor::LockGuard<'a>> {
    let folder = format!("/var/lib/cmw-upgrade/{}", instance.as_str());
    executor.create_dir_all(&folder)?;
    executor.lock(&format!("{folder}/cutover.lock"))
}

fn read_config(executor: &dyn Executor, config: &str) -> Result<Vec<u8>> {
    executor.read_file(config)?.ok_or_else(|| Error::BadInput {
        details: format!(
            "there is no HAProxy config at {config}; pass the file haproxy loads as --haproxy-config"
        ),
    })
}

/// `haproxy -c` on `candidate` written beside `config`: the output when it
/// passes; the candidate is kept (for the rename) when `keep`.
fn check_candidate(
    executor: &dyn Executor,
    config: &str,
    candidate: &[u8],
    stamp: &str,
    keep: bool,
) -> Result<std::result::Result<String, String>> {
    let mode = file_mode(executor, config)?;
    let path = candidate_path(config, stamp);
    executor.write_file(&path, candidate, mode)?;
    let check = CommandSpec::new(["haproxy", "-c", "-f"])
        .path_arg(path.clone())
        .with_timeout(Duration::from_secs(60));
    let result = executor.execute(&check);
    let passed = matches!(&result, Ok(output) if output.code == Some(0));
    if !passed || !keep {
        let _ = executor.remove(&path);
    }
    let output = result?;
    let text = format!("{}{}", output.stdout.trim(), output.stderr.trim());
    Ok(if passed { Ok(text) } else { Err(text) })
}

fn candidate_path(config: &str, stamp: &str) -> String {
    format!("{config}.cmw-upgrade.{stamp}.candidate")
}

/// How long a master re-executing itself may refuse its socket.
const MASTER_BACK: Duration = Duration::from_secs(10);

/// Sends the reload.
///
/// # Errors
/// [`Error::CommandFailed`] when the master refuses or the command fails.
fn reload(executor: &dyn Executor, reload: &Reload) -> Result<()> {
    match reload {
        Reload::MasterSocket(socket) => {
            let runtime = Runtime::new(executor, socket.clone());
            let until = Instant::now() + MASTER_BACK;
            // A master still re-executing itself after an earlier reload refuses for a moment.
            let answer = loop {
                match runtime.command("reload") {
                    Err(Error::CommandFailed { status, .. })
                        if status == "did not connect" && Instant::now() < until =>
                    {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    // Sent: the master re-executes itself and may drop the line
                    // before a word; the wait for the new worker tells.
                    Err(Error::CommandFailed { status, .. }) if status == "no whole answer" => {
                        break String::new()
                    }
                    other => break other?.unwrap_or_default(),
                }
            };
            // 2.6 closes without a word; 2.7 and later say `Success=0` on failure.
            if answer.contains("Success=0") || answer.contains("Unknown command") {
                return Err(Error::CommandFailed {
                    command: reload_display(reload),
                    status: "refused".to_owned(),
                    output: answer.trim().to_owned(),
                    hint: "check that --haproxy-master-socket is the master CLI (`haproxy -W -S \
                           PATH`), and the master's log"
                        .to_owned(),
                });
            }
            Ok(())
        }
        Reload::Command(argv) => {
            let command = CommandSpec::new(argv.clone()).with_timeout(Duration::from_secs(120));
            let output = executor.execute(&command)?;
            if output.success() {
                return Ok(());
            }
            Err(Error::CommandFailed {
                command: command.display(),
                status: format!("{:?}", output.code),
                output: format!("{}{}", output.stdout, output.stderr),
                hint: "the config passed `haproxy -c`; see HAProxy's log for why it did not reload"
                    .to_owned(),
            })
        }
    }
}

fn reload_display(reload: &Reload) -> String {
    reload.display()
}

/// Waits until the admin socket lists the backend's servers as `wanted`
/// says (the new worker answers), at most `limit`.
fn wait_for_servers(
    executor: &dyn Executor,
    socket: &str,
    backend: &str,
    limit: Duration,
    wanted: impl Fn(&[ServerState]) -> bool,
) -> Result<u128> {
    let runtime = Runtime::new(executor, socket.to_owned());
    let started = Instant::now();
    loop {
        // The socket may refuse for a moment while the workers change hands.
        let rows = runtime.servers_state(backend);
        if matches!(&rows, Ok(rows) if wanted(rows)) {
            return Ok(started.elapsed().as_millis());
        }
        if started.elapsed() >= limit {
            return Err(Error::CheckFailed {
                what: "HAProxy serving with the new config after the reload".to_owned(),
                details: format!(
                    "after {}s the admin socket {socket} still shows {}; see HAProxy's log (the \
                     master keeps the previous worker when the new one fails)",
                    limit.as_secs(),
                    match rows {
                        Ok(rows) => rows
                            .iter()
                            .map(|row| row.name.clone())
                            .collect::<Vec<_>>()
                            .join(", "),
                        Err(error) => error.to_string(),
                    }
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report(action: &str, options: &PrepareOptions) -> PrepareReport {
    PrepareReport {
        action: action.to_owned(),
        method: "haproxy".to_owned(),
        ok: true,
        changed: false,
        config: options.config.clone(),
        servers: Vec::new(),
        lines: Vec::new(),
        reload: None,
        backup: None,
        saved_state: prepared_state_path(&options.instance),
        notes: Vec::new(),
    }
}

/// Adds the missing server (and the option) and reloads once; a dry run
/// (the plan) only checks the candidate.
///
/// # Errors
/// [`Error::BadInput`] when the backend has neither server, or the missing
/// one's address is not given, or no reload is given while one is needed;
/// [`Error::CheckFailed`] when `haproxy -c` refuses the candidate (nothing
/// written) or the new worker does not come up.
pub fn prepare(executor: &dyn Executor, options: &PrepareOptions) -> Result<PrepareReport> {
    let dry = executor.is_dry_run();
    let _lock = if dry {
        None
    } else {
        Some(lock(executor, &options.instance)?)
    };
    let mut report = report(if dry { "plan" } else { "prepare" }, options);
    let text = read_config(executor, &options.config)?;
    let bad = |details: String| Error::BadInput {
        details: format!("{}: {details}", options.config),
    };
    let flags = haproxy_config::disabled_flags(&text, &options.backend).map_err(bad)?;
    let has_old = flags.contains_key(&options.old_server);
    let has_new = flags.contains_key(&options.new_server);
    let (template, missing, address, option) = match (has_old, has_new) {
        (true, true) => (None, None, None, ""),
        (true, false) => (
            Some(&options.old_server),
            Some(&options.new_server),
            options.new_address.as_ref(),
            "--new",
        ),
        (false, true) => (
            Some(&options.new_server),
            Some(&options.old_server),
            options.old_address.as_ref(),
            "--old",
        ),
        (false, false) => {
            return Err(bad(format!(
                "backend {} has neither {} nor {} (it has: {}); prepare adds one of the two \
                 next to the other",
                options.backend,
                options.old_server,
                options.new_server,
                flags.keys().cloned().collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let mut candidate = text.clone();
    if let (Some(template), Some(missing)) = (template, missing) {
        let address = address.ok_or_else(|| {
            bad(format!(
                "backend {} has no server {missing}; pass its address as {option} HOST:PORT so \
                 prepare adds it (disabled)",
                options.backend
            ))
        })?;
        let (with_server, line) =
            add_server(&candidate, &options.backend, template, missing, address).map_err(bad)?;
        candidate = with_server;
        report.servers.push(missing.clone());
        report.lines.push(line);
    }
    let mut idle_lines = Vec::new();
    if options.idle_close {
        let (with_option, lines) = add_idle_close(&candidate, &options.backend);
        if lines.is_empty() {
            report.notes.push(format!(
                "`{IDLE_CLOSE}` is already in each frontend sending traffic to {} (or none names it)",
                options.backend
            ));
        } else {
            candidate = with_option;
            idle_lines = lines;
        }
    }
    let mut checked =
        check_candidate(executor, &options.config, &candidate, &options.stamp, false)?;
    if checked.is_err() && !idle_lines.is_empty() {
        let refused = checked.clone().unwrap_err();
        if refused.contains("idle-close-on-response") {
            // An HAProxy before 2.6: the reload then closes idle connections the old way.
            let (without, _) = remove_lines(&candidate, &idle_lines);
            candidate = without;
            idle_lines.clear();
            report.notes.push(format!(
                "this HAProxy does not know `{IDLE_CLOSE}` (2.6 and later do): idle keep-alive \
                 clients may see a closed connection at the reload"
            ));
            checked =
                check_candidate(executor, &options.config, &candidate, &options.stamp, false)?;
        }
    }
    if let Err(refused) = checked {
        return Err(Error::CheckFailed {
            what: format!(
                "`haproxy -c` on {} as prepare would write it",
                options.config
            ),
            details: format!(
                "{refused}; {} was left as it is: fix what HAProxy refuses there, then rerun",
                options.config
            ),
        });
    }
    report.lines.extend(idle_lines);
    if candidate == text {
        report
            .notes
            .push("the backend has both servers already: nothing to add, no reload".to_owned());
        return Ok(report);
    }
    let needs_reload = "prepare changes the config and needs one reload: pass \
                        --haproxy-master-socket PATH (master-worker HAProxy, `-W -S PATH`) or \
                        --reload-command 'systemctl reload haproxy'";
    let reload_how = match (options.reload.clone(), dry) {
        (Some(reload), _) => reload,
        (None, true) => {
            report.notes.push(needs_reload.to_owned());
            return Ok(report);
        }
        (None, false) => {
            return Err(Error::BadInput {
                details: needs_reload.to_owned(),
            })
        }
    };
    report.reload = Some(reload_how.display());
    if report.lines.iter().any(|line| line.trim() == IDLE_CLOSE) {
        report.notes.push(format!(
            "the worker that stops at this reload runs the config without `{IDLE_CLOSE}`: it \
             closes its idle keep-alive connections as before (a client that does not retry \
             may see one closed connection per connection); later reloads close them politely"
        ));
    }
    let backup = format!("{}.cmw-upgrade.{}.bak", options.config, options.stamp);
    report.backup = Some(backup.clone());
    if dry {
        report.notes.push(
            "prepare checks the config as it will be written with `haproxy -c` first".to_owned(),
        );
        return Ok(report);
    }
    // Saved before the config is touched: a crash after it leaves what revert needs.
    let mut saved = read_prepared(executor, &options.instance)?.unwrap_or(PreparedState {
        format: PREPARED_FORMAT,
        saved_at: options.stamp.clone(),
        config: options.config.clone(),
        backend: options.backend.clone(),
        servers: Vec::new(),
        lines: Vec::new(),
        reload: reload_how.clone(),
        backup: backup.clone(),
    });
    saved.servers.extend(report.servers.iter().cloned());
    saved.lines.extend(report.lines.iter().cloned());
    saved.reload = reload_how.clone();
    write_saved(executor, &prepared_state_path(&options.instance), &saved)?;
    write_checked(
        executor,
        &options.config,
        &candidate,
        &options.stamp,
        &backup,
    )?;
    report.changed = true;
    reload(executor, &reload_how)?;
    let added = report.servers.clone();
    let millis = wait_for_servers(
        executor,
        &options.socket,
        &options.backend,
        options.reload_limit,
        |rows| {
            added
                .iter()
                .all(|name| rows.iter().any(|row| &row.name == name))
        },
    )?;
    report.notes.push(format!(
        "reloaded; the new worker answered after {millis} ms"
    ));
    Ok(report)
}

/// Candidate checked again (it is what is renamed), original kept, rename.
fn write_checked(
    executor: &dyn Executor,
    config: &str,
    candidate: &[u8],
    stamp: &str,
    backup: &str,
) -> Result<()> {
    if let Err(refused) = check_candidate(executor, config, candidate, stamp, true)? {
        return Err(Error::CheckFailed {
            what: format!("`haproxy -c` on {config} as it would be written"),
            details: format!("{refused}; {config} was left as it is"),
        });
    }
    if !executor.exists(backup)? {
        executor.copy(config, backup)?;
    }
    executor.rename(&candidate_path(config, stamp), config)
}

/// Takes out what prepare added and reloads once. `None` when prepare added
/// nothing (or was reverted already).
///
/// # Errors
/// [`Error::StateConflict`] when an added server serves alone (revert the
/// switch first); as [`prepare`] otherwise.
pub fn revert(
    executor: &dyn Executor,
    instance: &InstanceName,
    socket: &str,
    stamp: &str,
    reload_limit: Duration,
) -> Result<Option<PrepareReport>> {
    let _lock = lock(executor, instance)?;
    let Some(saved) = read_prepared(executor, instance)? else {
        return Ok(None);
    };
    let mut report = PrepareReport {
        action: "revert".to_owned(),
        method: "haproxy".to_owned(),
        ok: true,
        changed: false,
        config: saved.config.clone(),
        servers: saved.servers.clone(),
        lines: Vec::new(),
        reload: None,
        backup: None,
        saved_state: prepared_state_path(instance),
        notes: Vec::new(),
    };
    let rows = Runtime::new(executor, socket.to_owned()).servers_state(&saved.backend)?;
    let added_serve = rows
        .iter()
        .any(|row| saved.servers.contains(&row.name) && row.serves());
    let others_serve = rows
        .iter()
        .any(|row| !saved.servers.contains(&row.name) && row.serves());
    if added_serve && !others_serve {
        return Err(Error::StateConflict {
            details: format!(
                "traffic is on {} (added by prepare): taking it out of the config would stop \
                 the site; switch back first (`cmw-upgrade cutover revert` with the saved \
                 cut-over), then revert again",
                saved.servers.join(", ")
            ),
        });
    }
    let text = read_config(executor, &saved.config)?;
    let (candidate, found) = remove_lines(&text, &saved.lines);
    report.lines = found;
    if candidate != text {
        let backup = format!("{}.cmw-upgrade.{stamp}.bak", saved.config);
        write_checked(executor, &saved.config, &candidate, stamp, &backup)?;
        report.backup = Some(backup);
        report.changed = true;
        reload(executor, &saved.reload)?;
        report.reload = Some(saved.reload.display());
        let gone = saved.servers.clone();
        let millis = wait_for_servers(executor, socket, &saved.backend, reload_limit, |rows| {
            !rows.iter().any(|row| gone.contains(&row.name))
        })?;
        report.notes.push(format!(
            "reloaded; the new worker answered after {millis} ms"
        ));
    } else {
        report
            .notes
            .push("the added lines are no longer in the config: nothing to take out".to_owned());
    }
    let path = prepared_state_path(instance);
    executor.rename(
        &path,
        &format!(
            "/var/lib/cmw-upgrade/{}/cutover.haproxy-prepare.reverted.{stamp}.json",
            instance.as_str()
        ),
    )?;
    report.changed = true;
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "global\n    stats socket /run/haproxy/admin.sock level admin\n\nfrontend fe\n\tbind :80\n\tdefault_backend cmw\n\nfrontend other\n    bind :81\n    default_backend x\n\nbackend cmw\r\n    balance roundrobin\r\n    server old 10.0.0.5:80 check inter 2s id 3 cookie a   # the old server\r\n\nbackend x\n    server old 10.9.9.9:80\n";

    #[test]
    fn adds_the_server_after_the_other_with_its_options_disabled() {
        let (out, line) =
            add_server(CONFIG.as_bytes(), "cmw", "old", "new", "10.0.0.6:8080").unwrap();
        assert_eq!(line, "    server new 10.0.0.6:8080 check inter 2s disabled");
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            CONFIG.replace(
                "# the old server\r\n",
                "# the old server\r\n    server new 10.0.0.6:8080 check inter 2s disabled\r\n"
            )
        );
        let flags = haproxy_config::disabled_flags(&out, "cmw").unwrap();
        assert_eq!(flags.get("new"), Some(&true));
        assert_eq!(flags.get("old"), Some(&false));
        let (back, found) = remove_lines(&out, &[line]);
        assert_eq!(found.len(), 1);
        assert_eq!(String::from_utf8(back).unwrap(), CONFIG);
        let error = add_server(&out, "cmw", "old", "new", "x:1").unwrap_err();
        assert!(error.contains("has a server new"), "{error}");
        let error = add_server(CONFIG.as_bytes(), "cmw", "nope", "new", "x:1").unwrap_err();
        assert!(error.contains("no `server nope`"), "{error}");
    }

    #[test]
    fn the_option_goes_into_the_frontends_of_the_backend_only() {
        let (out, lines) = add_idle_close(CONFIG.as_bytes(), "cmw");
        assert_eq!(lines, [format!("\t{IDLE_CLOSE}")]);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            CONFIG.replace("frontend fe\n", &format!("frontend fe\n\t{IDLE_CLOSE}\n"))
        );
        // Once is enough.
        let (again, none) = add_idle_close(&out, "cmw");
        assert!(none.is_empty());
        assert_eq!(again, out);
        // A listen section named after the backend gets it too.
        let listen = "listen cmw\n  bind :80\n  server old 1.2.3.4:80\n";
        let (out, lines) = add_idle_close(listen.as_bytes(), "cmw");
        assert_eq!(lines, [format!("  {IDLE_CLOSE}")]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            listen.replace("listen cmw\n", &format!("listen cmw\n  {IDLE_CLOSE}\n"))
        );
        // The admin's `no option ...` is respected.
        let refused =
            "frontend fe\n  no option idle-close-on-response\n  use_backend cmw if TRUE\n";
        assert!(add_idle_close(refused.as_bytes(), "cmw").1.is_empty());
    }

    #[test]
    fn removing_takes_out_only_what_was_added() {
        let text = "a\n  x\nb\n  x\n";
        let (out, found) = remove_lines(text.as_bytes(), &["  x".to_owned(), "  y".to_owned()]);
        assert_eq!(found, ["  x"]);
        assert_eq!(String::from_utf8(out).unwrap(), "a\nb\n  x\n");
    }
}
