//! Moving a bundle from one server (or this machine) to another as a library
//! call: [`transfer_bundle`]. The orchestration calls it between two servers it
//! already reached with [`SshExecutor`], the CLI's `bundle transfer` and the
//! Python module call it too; an end on this machine runs in-process (threads
//! and an OS pipe), so no `cmw-upgrade` binary is needed here.
//!
//! The stream format and both halves are in [`crate::backup::transfer`]; this
//! module runs them: it reads the sender's manifest, asks the receiver which
//! files it lacks, then joins the sender and the receiver by one of two routes:
//!
//! - through here: the sender's output goes into the receiver through an OS pipe
//!   on this machine (for two servers: the two ssh sessions' stdout and stdin;
//!   the bytes never pass through this process);
//! - direct: the sending server pipes the stream into ssh to the receiving one
//!   (`bundle-send DIR -- ssh … bundle-receive DEST`, [`send_bundle_into`]), so
//!   the bytes cross the network once, server to server.
//!
//! The receiver is told the manifest's BLAKE3: the needed files were chosen
//! from the manifest read first, and a stream carrying another one (the bundle
//! changed in between) is refused before anything is written.
//!
//! Every command is an argv vector; a command line for a remote shell is made
//! only by the ssh executor's quoting.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ssh::remote_command_line;
use super::{shell_quote, SshExecutor};
use crate::backup::transfer::{
    ended_early, files_needed, manifest_hash, parse_manifest, read_manifest_bytes,
    receive_bundle_expecting, send_bundle, send_manifest_only, widen_pipe, ReceiveReport,
};
use crate::backup::Progress;
use crate::cancel::Cancel;
use crate::error::{Error, ErrorKind, Result};
use crate::paths::place_under_root;

/// One side of a transfer: where the bundle is read from, or written to.
#[derive(Debug, Clone)]
pub enum BundleEnd<'a> {
    /// A folder on this machine, a server path placed under `root` (like
    /// [`LocalExecutor`](super::LocalExecutor)'s paths): read or written
    /// in-process, without the `cmw-upgrade` binary.
    Local {
        /// The tree the server paths are under (`/` for this machine itself).
        root: PathBuf,
        /// The bundle folder, as a server path.
        dir: String,
    },
    /// A folder on a server reached through this executor: its ssh master
    /// connection carries the sessions, its agent's command line names the
    /// `cmw-upgrade` there (the provisioned copy when one was made).
    Remote {
        /// The connected server.
        ssh: &'a SshExecutor,
        /// The bundle folder there (absolute).
        dir: String,
    },
}

impl BundleEnd<'_> {
    /// The end for messages and the report: the local path, or
    /// `host[:port]:DIR`.
    pub fn name(&self) -> String {
        match self {
            BundleEnd::Local { root, dir } => place_under_root(root, dir)
                .map(|path| path.display().to_string())
                .unwrap_or_else(|_| dir.clone()),
            BundleEnd::Remote { ssh, dir } if ssh.port() == 22 => {
                format!("{}:{dir}", ssh.destination())
            }
            BundleEnd::Remote { ssh, dir } => {
                format!("{}:{}:{dir}", ssh.destination(), ssh.port())
            }
        }
    }

    /// The machine the end is on, in the admin's words.
    fn server(&self) -> String {
        match self {
            BundleEnd::Local { .. } => "this machine".to_owned(),
            BundleEnd::Remote { ssh, .. } => ssh.destination().to_owned(),
        }
    }
}

/// Which way the stream goes when both ends are servers.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Direct when the sending server reaches the receiving one by ssh (probed
    /// first), through here otherwise.
    #[default]
    Auto,
    /// The sending server pipes the stream into ssh to the receiving one: the
    /// bytes cross the network once (the servers are usually closer to each
    /// other than to the admin's machine).
    Direct,
    /// Both servers' streams meet in a pipe on this machine: needs no ssh
    /// between the servers.
    ThroughHere,
}

/// The route a transfer took.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum RouteTaken {
    /// From the sending server straight to the receiving one.
    Direct,
    /// Through a pipe on this machine (or from or to a folder here).
    ThroughHere,
    /// Both ends on this machine, in-process.
    Local,
}

impl RouteTaken {
    /// The route's name in the report: `direct`, `through_here` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteTaken::Direct => "direct",
            RouteTaken::ThroughHere => "through_here",
            RouteTaken::Local => "local",
        }
    }
}

/// How the sending server reaches the receiving one by ssh for the direct
/// route (by default: the receiving executor's destination and port, with
/// the sending server's own keys and known_hosts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectSsh {
    /// `user@host` as the sending server reaches the receiving one.
    pub destination: String,
    /// The ssh port there.
    pub port: u16,
    /// Extra `-o` values for that ssh, e.g. `IdentityFile=/root/.ssh/deploy`
    /// (after the tool's own: `BatchMode` and host key checks stay on).
    pub options: Vec<String>,
}

/// What [`transfer_bundle`] moves, between which ends, by which route.
#[derive(Debug, Clone)]
pub struct TransferRequest<'a> {
    /// The bundle to send.
    pub from: BundleEnd<'a>,
    /// Where it goes (created 0700 when missing).
    pub to: BundleEnd<'a>,
    /// Which way, when both ends are servers.
    pub route: Route,
    /// How the sending server reaches the receiving one (the direct route).
    pub direct: Option<DirectSsh>,
}

/// What [`transfer_bundle`] did, for the admin and for scripts (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferReport {
    /// The sending end ([`BundleEnd::name`]).
    pub from: String,
    /// The receiving end.
    pub to: String,
    /// The route the stream took.
    pub route_taken: RouteTaken,
    /// One sentence saying why that route.
    pub route_reason: String,
    /// Files in the bundle.
    pub files: u64,
    /// Bytes of all its files.
    pub bytes: u64,
    /// Files sent this time (each checked against the manifest on arrival).
    pub sent_files: u64,
    /// Their bytes.
    pub sent_bytes: u64,
    /// Files the receiver already had with the right size and BLAKE3.
    pub skipped_files: u64,
    /// The whole transfer's duration.
    pub seconds: f64,
    /// The hex BLAKE3 of the bundle's `manifest.json` as it was sent.
    pub manifest_blake3: String,
}

/// How far the stream is, as the receiver counts it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransferProgress {
    /// Bytes received and checked so far.
    pub bytes_done: u64,
    /// Bytes to send this time.
    pub bytes_total: u64,
    /// Files in place so far.
    pub files_done: u64,
    /// Files to send this time.
    pub files_total: u64,
    /// Since the stream started.
    pub seconds: f64,
}

/// A progress line of a receiver (its `ProgressSnapshot` as JSON on stderr).
#[derive(Debug, Deserialize)]
struct ProgressLine {
    total_bytes: u64,
    total_files: u64,
    done_bytes: u64,
    done_files: u64,
}

impl ProgressLine {
    fn at(&self, started: Instant) -> TransferProgress {
        TransferProgress {
            bytes_done: self.done_bytes,
            bytes_total: self.total_bytes,
            files_done: self.done_files,
            files_total: self.total_files,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// What a stopped transfer leaves, and how to go on.
const CANCELLED_LEFT: &str = "what arrived in full stays at the destination and nothing \
                              incomplete kept its name; run the same transfer again: it resumes, \
                              sending only what is missing";

/// How long the probe for the direct route may take, connection included.
const PROBE_LIMIT: Duration = Duration::from_secs(30);
/// How long the sender's manifest and the receiver's needed list may take
/// (the receiver hashes what it already has).
const QUESTION_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// Copies the bundle at `request.from` to `request.to`, verified file by file
/// on arrival and resumable: files already at the destination with the
/// manifest's size and BLAKE3 are not sent again, `manifest.json` is written
/// last, another bundle there is never replaced.
///
/// `progress` is called from this thread with the receiver's counts (a few
/// times a second while the stream runs); `cancel` stops the transfer: both
/// sides are stopped and [`Error::Cancelled`] says that a rerun resumes.
///
/// # Errors
/// [`Error::CheckFailed`] for the same folder on both ends, a relative remote
/// folder or a bad direct destination; the sender's or the receiver's error
/// with its kind ([`Error::Remote`] across ssh, e.g. `already_exists`,
/// `bundle_damaged` for a cut stream or a bundle that changed meanwhile);
/// [`Error::CommandFailed`] when ssh or a side fails without saying why in
/// the tool's terms; [`Error::Cancelled`].
pub fn transfer_bundle(
    request: &TransferRequest<'_>,
    progress: &mut dyn FnMut(&TransferProgress),
    cancel: &Cancel,
) -> Result<TransferReport> {
    // Whichever step noticed the stop, the admin learns that a rerun resumes.
    transfer(request, progress, cancel).map_err(|error| match error {
        Error::Cancelled { .. } => cancelled(),
        other => other,
    })
}

fn transfer(
    request: &TransferRequest<'_>,
    progress: &mut dyn FnMut(&TransferProgress),
    cancel: &Cancel,
) -> Result<TransferReport> {
    let started = Instant::now();
    check_ends(request)?;
    let manifest = sender_manifest(&request.from, cancel)?;
    let manifest_blake3 = manifest_hash(&manifest);
    let needed = receiver_needed(&request.to, &manifest, cancel)?;
    let route = choose_route(request, needed.is_empty(), cancel)?;
    let stream = Stream {
        request,
        manifest: &manifest,
        manifest_blake3: &manifest_blake3,
        needed: &needed,
        cancel,
    };
    let received = match &route.direct_argv {
        Some(ssh_argv) => stream.direct(ssh_argv, progress)?,
        None => stream.through_here(progress)?,
    };
    Ok(TransferReport {
        from: request.from.name(),
        to: request.to.name(),
        route_taken: route.taken,
        route_reason: route.reason,
        files: received.files,
        bytes: received.bytes,
        sent_files: received.received_files,
        sent_bytes: received.received_bytes,
        skipped_files: received.skipped_files,
        seconds: started.elapsed().as_secs_f64(),
        manifest_blake3,
    })
}

fn check_ends(request: &TransferRequest<'_>) -> Result<()> {
    let refuse = |details: String| Error::CheckFailed {
        what: "checking the ends of the transfer".to_owned(),
        details,
    };
    for end in [&request.from, &request.to] {
        match end {
            BundleEnd::Remote { ssh, dir } if !dir.starts_with('/') => {
                return Err(refuse(format!(
                    "the folder {dir:?} on {} is not absolute; name it from /",
                    ssh.destination()
                )))
            }
            BundleEnd::Local { root, dir } => {
                place_under_root(root, dir)?;
            }
            BundleEnd::Remote { .. } => {}
        }
    }
    let same = match (&request.from, &request.to) {
        (BundleEnd::Local { .. }, BundleEnd::Local { .. }) => {
            request.from.name() == request.to.name()
        }
        (BundleEnd::Remote { ssh: a, dir: x }, BundleEnd::Remote { ssh: b, dir: y }) => {
            a.destination() == b.destination() && a.port() == b.port() && x == y
        }
        _ => false,
    };
    if same {
        return Err(refuse(format!(
            "both name {}; name another folder to copy to",
            request.to.name()
        )));
    }
    Ok(())
}

/// How a command is shown in messages: on which server, which argv.
fn display(server: &str, argv: &[String]) -> String {
    let line = argv
        .iter()
        .map(|arg| shell_quote(arg))
        .collect::<Vec<_>>()
        .join(" ");
    format!("(on {server}) {line}")
}

fn sender_manifest(from: &BundleEnd<'_>, cancel: &Cancel) -> Result<Vec<u8>> {
    match from {
        BundleEnd::Local { root, dir } => read_manifest_bytes(&place_under_root(root, dir)?),
        BundleEnd::Remote { ssh, dir } => {
            let argv = ssh.tool_argv(&["bundle-send", "--json", dir, "--manifest"])?;
            let output = run_captured(ssh.command(&argv), b"", QUESTION_LIMIT, cancel)?;
            output.into_result(ssh.destination(), &argv, SSH_HINT)
        }
    }
}

fn receiver_needed(to: &BundleEnd<'_>, manifest: &[u8], cancel: &Cancel) -> Result<Vec<String>> {
    match to {
        BundleEnd::Local { root, dir } => {
            let dest = place_under_root(root, dir)?;
            let parsed = parse_manifest(manifest, &dest)?;
            files_needed(&dest, &parsed, &Progress::with_cancel(cancel.clone()))
        }
        BundleEnd::Remote { ssh, dir } => {
            let argv = ssh.tool_argv(&["bundle-receive", "--json", dir, "--needed"])?;
            let output = run_captured(ssh.command(&argv), manifest, QUESTION_LIMIT, cancel)?;
            let answer = output.into_result(ssh.destination(), &argv, SSH_HINT)?;
            serde_json::from_slice(&answer).map_err(|error| Error::Internal {
                details: format!(
                    "the list of needed files from {} does not parse: {error}",
                    ssh.destination()
                ),
            })
        }
    }
}

/// The route chosen, why, and for the direct route the ssh argv the sending
/// server runs (without the remote command).
struct ChosenRoute {
    taken: RouteTaken,
    reason: String,
    direct_argv: Option<Vec<String>>,
}

fn choose_route(
    request: &TransferRequest<'_>,
    nothing_needed: bool,
    cancel: &Cancel,
) -> Result<ChosenRoute> {
    let here = |taken: RouteTaken, reason: String| ChosenRoute {
        taken,
        reason,
        direct_argv: None,
    };
    let (from_ssh, to_ssh) = match (&request.from, &request.to) {
        (BundleEnd::Local { .. }, BundleEnd::Local { .. }) => {
            return Ok(here(
                RouteTaken::Local,
                "both folders are on this machine: copied in-process".to_owned(),
            ))
        }
        (BundleEnd::Local { .. }, BundleEnd::Remote { ssh, .. }) => {
            return Ok(here(
                RouteTaken::ThroughHere,
                format!(
                    "the bundle is on this machine: streamed from here to {} over ssh",
                    ssh.destination()
                ),
            ))
        }
        (BundleEnd::Remote { ssh, .. }, BundleEnd::Local { .. }) => {
            return Ok(here(
                RouteTaken::ThroughHere,
                format!(
                    "the destination is on this machine: streamed from {} to here over ssh",
                    ssh.destination()
                ),
            ))
        }
        (BundleEnd::Remote { ssh: from, .. }, BundleEnd::Remote { ssh: to, .. }) => (from, to),
    };
    if nothing_needed {
        return Ok(here(
            RouteTaken::ThroughHere,
            format!(
                "{} already has every file: only the manifest went to it from this machine",
                to_ssh.destination()
            ),
        ));
    }
    let direct = direct_ssh(request, to_ssh)?;
    let (address, argv) = (
        format!("{}:{}", direct.destination, direct.port),
        direct_ssh_argv(&direct, &[]),
    );
    match request.route {
        Route::ThroughHere => Ok(here(
            RouteTaken::ThroughHere,
            "the route through this machine was asked for".to_owned(),
        )),
        Route::Direct => Ok(ChosenRoute {
            taken: RouteTaken::Direct,
            reason: format!(
                "the direct route was asked for: {} sends to {address} by ssh",
                from_ssh.destination()
            ),
            direct_argv: Some(argv),
        }),
        Route::Auto => {
            let mut probe = direct_ssh_argv(&direct, &["ConnectTimeout=10"]);
            probe.push(remote_command_line(&to_ssh.tool_argv(&["--version"])?));
            let output = run_captured(from_ssh.command(&probe), b"", PROBE_LIMIT, cancel)?;
            if output.status.success() {
                return Ok(ChosenRoute {
                    taken: RouteTaken::Direct,
                    reason: format!(
                        "{} reaches {address} by ssh and runs cmw-upgrade there: direct",
                        from_ssh.destination()
                    ),
                    direct_argv: Some(argv),
                });
            }
            let said = last_words(&output.stderr).unwrap_or_else(|| exit_text(output.status));
            Ok(here(
                RouteTaken::ThroughHere,
                format!(
                    "{} cannot reach {address} by ssh ({said}): through this machine",
                    from_ssh.destination()
                ),
            ))
        }
    }
}

fn direct_ssh(request: &TransferRequest<'_>, to: &SshExecutor) -> Result<DirectSsh> {
    let direct = request.direct.clone().unwrap_or_else(|| DirectSsh {
        destination: to.destination().to_owned(),
        port: to.port(),
        options: Vec::new(),
    });
    if direct.destination.is_empty()
        || direct.destination.starts_with('-')
        || direct.destination.contains(char::is_whitespace)
    {
        return Err(Error::CheckFailed {
            what: "checking the direct route's ssh destination".to_owned(),
            details: format!("{:?} is not a [user@]host", direct.destination),
        });
    }
    if let Some(bad) = direct.options.iter().find(|option| !option.contains('=')) {
        return Err(Error::CheckFailed {
            what: "checking the direct route's ssh options".to_owned(),
            details: format!("{bad:?} is not KEY=VALUE (as for ssh -o)"),
        });
    }
    Ok(direct)
}

/// `ssh -T -p P -o … DEST --`: what the sending server runs to reach the
/// receiving one (the remote command line follows). BatchMode and the host
/// key check come first, so no extra option can turn them off.
fn direct_ssh_argv(direct: &DirectSsh, extra: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = ["ssh", "-T", "-p", &direct.port.to_string()]
        .map(String::from)
        .to_vec();
    let own = [
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=4",
        "ClearAllForwardings=yes",
    ];
    for option in own
        .iter()
        .chain(extra)
        .map(|option| (*option).to_owned())
        .chain(direct.options.iter().cloned())
    {
        argv.push("-o".to_owned());
        argv.push(option);
    }
    argv.push(direct.destination.clone());
    argv.push("--".to_owned());
    argv
}

const SSH_HINT: &str = "check that the server is reachable with ssh and that cmw-upgrade runs \
                        there (its agent's command names it)";

/// A command run to its end: its exit and both outputs.
struct Captured {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Captured {
    /// The stdout of a tool command that succeeded, or its error: the one
    /// its `--json` printed, or ssh's words.
    fn into_result(self, server: &str, argv: &[String], hint: &str) -> Result<Vec<u8>> {
        if self.status.success() {
            return Ok(self.stdout);
        }
        Err(tool_error(server, &self.stdout).unwrap_or_else(|| {
            failed(
                display(server, argv),
                self.status,
                &String::from_utf8_lossy(&self.stderr),
                hint,
            )
        }))
    }
}

fn exit_text(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    }
}

/// The last line a command said on stderr (ssh's reason), if any.
fn last_words(stderr: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .map(|line| line.trim_end_matches('.').to_owned())
}

fn failed(command: String, status: ExitStatus, output: &str, hint: &str) -> Error {
    let output = match output.trim() {
        // ssh's 255 without a word: the session ended without an exit status,
        // as when the command there is killed or the connection drops.
        "" if status.code() == Some(255) => "ssh said nothing: the command there was killed \
                                             or the connection dropped"
            .to_owned(),
        "" => "it said nothing".to_owned(),
        said => said.to_owned(),
    };
    Error::CommandFailed {
        command,
        status: exit_text(status),
        output,
        hint: hint.to_owned(),
    }
}

/// The error a `--json` run of the tool printed on stdout, as the core error.
fn tool_error(server: &str, stdout: &[u8]) -> Option<Error> {
    let stdout = String::from_utf8_lossy(stdout);
    let document: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())?;
    let error = document.get("error")?;
    let kind = error.get("kind")?.as_str()?;
    let message = error.get("message")?.as_str()?;
    Some(Error::Remote {
        server: server.to_owned(),
        kind: ErrorKind::from_name(kind).unwrap_or(ErrorKind::Internal),
        message: message.to_owned(),
    })
}

fn start(mut command: Command, what: &str) -> Result<Child> {
    command
        .spawn()
        .map_err(|error| Error::io("start", what, error))
}

/// Stops a child that may still run (its output pipes then close).
fn stop(child: &mut Child) {
    let _ = child.kill();
}

/// Runs `command` with `input` on its stdin, up to `limit`, stopping it when
/// `cancel` is set.
fn run_captured(
    mut command: Command,
    input: &[u8],
    limit: Duration,
    cancel: &Cancel,
) -> Result<Captured> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = start(command, "ssh")?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(input);
            }
        });
        let stdout = scope.spawn(move || read_all(stdout));
        let stderr = scope.spawn(move || tail_of(stderr));
        let mut stopped = None;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(error) => break Err(Error::io("wait for", "ssh", error)),
            }
            if stopped.is_none() && cancel.is_cancelled() {
                stopped = Some(cancelled());
            } else if stopped.is_none() && started.elapsed() > limit {
                stopped = Some(Error::CommandFailed {
                    command: "ssh".to_owned(),
                    status: format!("no answer within {} s", limit.as_secs()),
                    output: String::new(),
                    hint: "check the network to the server, and run the transfer again".to_owned(),
                });
            }
            if stopped.is_some() {
                stop(&mut child);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        if let Some(error) = stopped {
            return Err(error);
        }
        Ok(Captured {
            status: status?,
            stdout,
            stderr,
        })
    })
}

fn cancelled() -> Error {
    Error::Cancelled {
        left: CANCELLED_LEFT.to_owned(),
    }
}

fn read_all(reader: Option<impl Read>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut reader) = reader {
        let _ = reader.read_to_end(&mut bytes);
    }
    bytes
}

/// Keeps the last 16 KiB a child said.
fn tail_of(reader: Option<impl Read>) -> Vec<u8> {
    let mut tail: Vec<u8> = Vec::new();
    let Some(mut reader) = reader else {
        return tail;
    };
    let mut buffer = [0u8; 4096];
    while let Ok(read) = reader.read(&mut buffer) {
        if read == 0 {
            break;
        }
        tail.extend_from_slice(&buffer[..read]);
        if tail.len() > 16 << 10 {
            tail.drain(..tail.len() - (16 << 10));
        }
    }
    tail
}

/// Reads a receiver's stderr: progress lines go to `events`, the rest is kept
/// (its last 16 KiB) for the error message.
fn progress_lines(
    reader: Option<impl Read>,
    events: &mpsc::Sender<ProgressLine>,
    mut forward: impl FnMut(&str),
) -> String {
    let mut other = String::new();
    let Some(reader) = reader else {
        return other;
    };
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        forward(&line);
        match serde_json::from_str::<ProgressLine>(&line) {
            Ok(now) => {
                let _ = events.send(now);
            }
            Err(_) => {
                other.push_str(&line);
                other.push('\n');
                if other.len() > 16 << 10 {
                    let cut = other.len() - (16 << 10);
                    let cut = (cut..other.len())
                        .find(|at| other.is_char_boundary(*at))
                        .unwrap_or(other.len());
                    other.drain(..cut);
                }
            }
        }
    }
    other
}

/// The stream stage of one transfer.
struct Stream<'a, 'b> {
    request: &'a TransferRequest<'b>,
    manifest: &'a [u8],
    manifest_blake3: &'a str,
    needed: &'a [String],
    cancel: &'a Cancel,
}

/// The report a receiver printed (`--json`) once `status` says it succeeded;
/// otherwise the error it printed, or ssh's words (`said`) with `hint`.
fn report_of(
    server: &str,
    argv: &[String],
    status: io::Result<ExitStatus>,
    answer: &[u8],
    said: &str,
    hint: &str,
) -> Result<ReceiveReport> {
    let status = status.map_err(|error| Error::io("wait for", "ssh", error))?;
    if !status.success() {
        return Err(tool_error(server, answer)
            .unwrap_or_else(|| failed(display(server, argv), status, said, hint)));
    }
    serde_json::from_slice(answer).map_err(|error| Error::Internal {
        details: format!("the receiver's report from {server} does not parse: {error}"),
    })
}

/// A side that ran as a thread here: its result (a panic is an internal error).
fn joined<T>(result: std::thread::Result<Result<T>>, side: &str) -> Result<T> {
    result.unwrap_or_else(|_| {
        Err(Error::Internal {
            details: format!("the {side} thread panicked"),
        })
    })
}

impl Stream<'_, '_> {
    /// The wanted list a sender reads on its stdin: one path a line.
    fn wanted(&self) -> String {
        self.needed.iter().map(|path| format!("{path}\n")).collect()
    }

    fn receive_argv(&self, ssh: &SshExecutor, dir: &str) -> Result<Vec<String>> {
        ssh.tool_argv(&[
            "bundle-receive",
            "--json",
            dir,
            "--manifest-blake3",
            self.manifest_blake3,
        ])
    }

    /// The sender's output goes into the receiver through one OS pipe here.
    fn through_here(&self, progress: &mut dyn FnMut(&TransferProgress)) -> Result<ReceiveReport> {
        let (reader, writer) = io::pipe().map_err(|error| Error::io("make", "a pipe", error))?;
        widen_pipe(writer.as_fd());
        let local_progress = Progress::with_cancel(self.cancel.clone());
        let (events, arrived) = mpsc::channel::<ProgressLine>();
        let started = Instant::now();

        // Both command lines first: nothing is started when one cannot be made.
        let receive_argv = match &self.request.to {
            BundleEnd::Remote { ssh, dir } => self.receive_argv(ssh, dir)?,
            BundleEnd::Local { .. } => Vec::new(),
        };
        let send_argv = match &self.request.from {
            BundleEnd::Remote { ssh, dir } => ssh.tool_argv(&["bundle-send", "--json", dir])?,
            BundleEnd::Local { .. } => Vec::new(),
        };
        // The receiver: a child reading the pipe, or a thread here.
        let mut receiver_child = None;
        let mut receiver_reader = None;
        match &self.request.to {
            BundleEnd::Remote { ssh, .. } => {
                let mut command = ssh.command(&receive_argv);
                command
                    .stdin(Stdio::from(reader))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                receiver_child = Some(start(command, "ssh")?);
            }
            BundleEnd::Local { .. } => receiver_reader = Some(reader),
        }
        // The sender: a child writing into the pipe, or a thread here (or the
        // manifest alone, when the receiver has every file).
        let mut sender_child = None;
        let mut sender_writer = None;
        match &self.request.from {
            BundleEnd::Remote { ssh, .. } if !self.needed.is_empty() => {
                let mut command = ssh.command(&send_argv);
                command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::from(writer))
                    .stderr(Stdio::piped());
                match start(command, "ssh") {
                    Ok(child) => sender_child = Some(child),
                    Err(error) => {
                        if let Some(child) = receiver_child.as_mut() {
                            stop(child);
                            let _ = child.wait();
                        }
                        return Err(error);
                    }
                }
            }
            _ => sender_writer = Some(writer),
        }

        let wanted = self.wanted();
        let outcome = std::thread::scope(|scope| {
            // The in-process halves.
            let sender_thread = sender_writer.map(|writer| {
                scope.spawn(move || -> Result<()> {
                    let mut out = BufWriter::with_capacity(1 << 16, writer);
                    match &self.request.from {
                        BundleEnd::Local { root, dir } if !self.needed.is_empty() => {
                            let bundle = place_under_root(root, dir)?;
                            // Its own counters: the receiver's are the progress shown.
                            let counters = Progress::with_cancel(self.cancel.clone());
                            send_bundle(&bundle, Some(self.needed), &mut out, &counters)?;
                        }
                        _ => send_manifest_only(self.manifest, &mut out)?,
                    }
                    out.flush().map_err(|error| {
                        Error::io("write the transfer stream to", "the pipe", error)
                    })
                })
            });
            let receiver_thread = receiver_reader.map(|reader| {
                let local_progress = &local_progress;
                scope.spawn(move || -> Result<ReceiveReport> {
                    let BundleEnd::Local { root, dir } = &self.request.to else {
                        unreachable!("a receiver thread is made only for a local end")
                    };
                    let dest = place_under_root(root, dir)?;
                    let mut input = BufReader::with_capacity(1 << 16, reader);
                    receive_bundle_expecting(
                        &dest,
                        &mut input,
                        Some(self.manifest_blake3),
                        local_progress,
                    )
                })
            });
            // The children's other pipes.
            let sender_stdin = sender_child.as_mut().and_then(|child| child.stdin.take());
            let wanted = &wanted;
            scope.spawn(move || {
                if let Some(mut stdin) = sender_stdin {
                    let _ = stdin.write_all(wanted.as_bytes());
                }
            });
            let sender_stderr = sender_child.as_mut().and_then(|child| child.stderr.take());
            let sender_said = scope.spawn(move || tail_of(sender_stderr));
            let receiver_stdout = receiver_child
                .as_mut()
                .and_then(|child| child.stdout.take());
            let receiver_answer = scope.spawn(move || read_all(receiver_stdout));
            let receiver_stderr = receiver_child
                .as_mut()
                .and_then(|child| child.stderr.take());
            let receiver_said =
                scope.spawn(move || progress_lines(receiver_stderr, &events, |_| {}));

            // Progress, cancel, and the receiver's end.
            let mut was_cancelled = false;
            let mut last_shown = None;
            loop {
                // Read before the last counts, so the final ones are shown.
                let receiver_done = match (&mut receiver_child, &receiver_thread) {
                    (Some(child), _) => matches!(child.try_wait(), Ok(Some(_)) | Err(_)),
                    (None, Some(thread)) => thread.is_finished(),
                    (None, None) => true,
                };
                if let Ok(line) = arrived.recv_timeout(Duration::from_millis(100)) {
                    progress(&line.at(started));
                    while let Ok(line) = arrived.try_recv() {
                        progress(&line.at(started));
                    }
                }
                if receiver_thread.is_some() {
                    let now = local_progress.snapshot();
                    if last_shown != Some(now) {
                        last_shown = Some(now);
                        let line = ProgressLine {
                            total_bytes: now.total_bytes,
                            total_files: now.total_files,
                            done_bytes: now.done_bytes,
                            done_files: now.done_files,
                        };
                        progress(&line.at(started));
                    }
                }
                if self.cancel.is_cancelled() && !was_cancelled {
                    was_cancelled = true;
                    for child in [sender_child.as_mut(), receiver_child.as_mut()]
                        .into_iter()
                        .flatten()
                    {
                        stop(child);
                    }
                }
                if receiver_done {
                    break;
                }
            }
            let received = match (receiver_child.as_mut(), receiver_thread) {
                (Some(child), _) => report_of(
                    &self.request.to.server(),
                    &receive_argv,
                    child.wait(),
                    &receiver_answer.join().unwrap_or_default(),
                    &receiver_said.join().unwrap_or_default(),
                    "nothing incomplete kept its name; run the same transfer again",
                ),
                (None, Some(thread)) => joined(thread.join(), "receiving"),
                (None, None) => Err(Error::Internal {
                    details: "no receiver was started".to_owned(),
                }),
            };
            // A receiver that stopped leaves a sender blocked on the pipe.
            if received.is_err() {
                if let Some(child) = sender_child.as_mut() {
                    stop(child);
                }
            }
            let sent = match (sender_child.as_mut(), sender_thread) {
                (Some(child), _) => {
                    let server = self.request.from.server();
                    match child.wait() {
                        Ok(status) if status.success() => Ok(()),
                        Ok(status) => Err(failed(
                            display(&server, &send_argv),
                            status,
                            &String::from_utf8_lossy(&sender_said.join().unwrap_or_default()),
                            "nothing incomplete kept its name on the receiver; fix the cause and \
                             run the same transfer again: it sends only what is missing",
                        )),
                        Err(error) => Err(Error::io("wait for", "ssh", error)),
                    }
                }
                (None, Some(thread)) => joined(thread.join(), "sending"),
                (None, None) => Ok(()),
            };
            (was_cancelled, sent, received)
        });
        let (was_cancelled, sent, received) = outcome;
        // The receiver's last lines, read after it ended.
        while let Ok(line) = arrived.try_recv() {
            progress(&line.at(started));
        }
        if was_cancelled || self.cancel.is_cancelled() {
            return Err(cancelled());
        }
        combine(sent, received)
    }

    /// The sending server pipes the stream into ssh to the receiving one.
    fn direct(
        &self,
        ssh_argv: &[String],
        progress: &mut dyn FnMut(&TransferProgress),
    ) -> Result<ReceiveReport> {
        let (BundleEnd::Remote { ssh: from, dir }, BundleEnd::Remote { ssh: to, dir: dest }) =
            (&self.request.from, &self.request.to)
        else {
            return Err(Error::Internal {
                details: "the direct route needs two servers".to_owned(),
            });
        };
        let mut into = ssh_argv.to_vec();
        into.push(remote_command_line(&self.receive_argv(to, dest)?));
        let mut args: Vec<&str> = vec!["bundle-send", "--json", dir, "--"];
        args.extend(into.iter().map(String::as_str));
        let send_argv = from.tool_argv(&args)?;
        let mut command = from.command(&send_argv);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = start(command, "ssh")?;
        let (events, arrived) = mpsc::channel::<ProgressLine>();
        let started = Instant::now();
        let wanted = self.wanted();
        let (status, answer, said, was_cancelled) = std::thread::scope(|scope| {
            let stdin = child.stdin.take();
            let wanted = &wanted;
            scope.spawn(move || {
                if let Some(mut stdin) = stdin {
                    let _ = stdin.write_all(wanted.as_bytes());
                }
            });
            let stdout = child.stdout.take();
            let answer = scope.spawn(move || read_all(stdout));
            let stderr = child.stderr.take();
            let said = scope.spawn(move || progress_lines(stderr, &events, |_| {}));
            let mut was_cancelled = false;
            let status = loop {
                if let Ok(line) = arrived.recv_timeout(Duration::from_millis(100)) {
                    progress(&line.at(started));
                    while let Ok(line) = arrived.try_recv() {
                        progress(&line.at(started));
                    }
                }
                if self.cancel.is_cancelled() && !was_cancelled {
                    was_cancelled = true;
                    stop(&mut child);
                }
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) => {}
                    Err(error) => break Err(error),
                }
            };
            (
                status,
                answer.join().unwrap_or_default(),
                said.join().unwrap_or_default(),
                was_cancelled,
            )
        });
        if was_cancelled || self.cancel.is_cancelled() {
            return Err(cancelled());
        }
        // The sender prints the receiver's report, or the error of either.
        report_of(
            from.destination(),
            &send_argv,
            status,
            &answer,
            &said,
            "check that the sending server reaches the receiving one by ssh (key, host key), \
             or use the route through this machine; nothing incomplete kept its name: run the \
             same transfer again",
        )
    }
}

/// One error for a stream whose sender or receiver failed: the receiver's
/// (a sender stopped by it fails too), unless it only saw the stream end
/// early, which the sender's failure explains: then the sender's, with the
/// receiver's words.
fn combine<T>(sent: Result<()>, received: Result<T>) -> Result<T> {
    match (sent, received) {
        (Ok(()), received) => received,
        (Err(error), Ok(_)) => Err(error),
        (Err(sender), Err(receiver)) => {
            if !ended_early(&receiver) {
                return Err(receiver);
            }
            Err(match sender {
                Error::CommandFailed {
                    command,
                    status,
                    mut output,
                    hint,
                } => {
                    output.push_str(&format!("; the receiver says: {receiver}"));
                    Error::CommandFailed {
                        command,
                        status,
                        output,
                        hint,
                    }
                }
                other => other,
            })
        }
    }
}

/// The sending half of the direct route (`cmw-upgrade bundle-send DIR -- ARGV`
/// on the sending server): starts `argv` (ssh to the receiving server running
/// `bundle-receive`), streams the bundle into its stdin, copies its stderr
/// (the receiver's progress lines) to `stderr` as they come, and returns its
/// stdout (the receiver's report) once it succeeded.
///
/// When `stderr` can no longer be written (whoever started this is gone) the
/// stream stops at its next buffer, as when `cancel` is set.
///
/// # Errors
/// The receiver's error as it printed it ([`Error::Remote`], for the
/// receiving server) or ssh's ([`Error::CommandFailed`]); the sender's own
/// ([`Error::Io`], [`Error::BundleDamaged`], …) when it failed first;
/// [`Error::BadRequest`] for an empty `argv`; [`Error::Cancelled`].
pub fn send_bundle_into(
    bundle: &Path,
    wanted: Option<&[String]>,
    argv: &[String],
    stderr: &mut (dyn Write + Send),
    cancel: &Cancel,
) -> Result<Vec<u8>> {
    let Some(program) = argv.first() else {
        return Err(Error::BadRequest {
            details: "bundle-send -- needs the command to send into".to_owned(),
        });
    };
    let mut command = Command::new(program);
    command
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = start(command, program)?;
    let progress = Progress::with_cancel(cancel.clone());
    // The lines are passed through as text; the parsed copies are not read.
    let (events, _not_read) = mpsc::channel::<ProgressLine>();
    let (sent, answer, said) = std::thread::scope(|scope| {
        let stdout = child.stdout.take();
        let answer = scope.spawn(move || read_all(stdout));
        let child_stderr = child.stderr.take();
        let said = scope.spawn(move || {
            let mut gone = false;
            progress_lines(child_stderr, &events, |line| {
                if !gone
                    && writeln!(stderr, "{line}")
                        .and_then(|()| stderr.flush())
                        .is_err()
                {
                    gone = true;
                    cancel.cancel();
                }
            })
        });
        let sent = match child.stdin.take() {
            Some(stdin) => {
                widen_pipe(stdin.as_fd());
                let mut out = BufWriter::with_capacity(1 << 16, stdin);
                send_bundle(bundle, wanted, &mut out, &progress).and_then(|()| {
                    out.flush()
                        .map_err(|error| Error::io("write the transfer stream to", program, error))
                })
            }
            None => Err(Error::Internal {
                details: "the stdin of the command to send into was not captured".to_owned(),
            }),
        };
        if sent.is_err() {
            // A receiver still waiting for the rest would wait forever.
            stop(&mut child);
        }
        (
            sent,
            answer.join().unwrap_or_default(),
            said.join().unwrap_or_default(),
        )
    });
    let status = child
        .wait()
        .map_err(|error| Error::io("wait for", program, error))?;
    if cancel.is_cancelled() {
        return Err(cancelled());
    }
    let received = if status.success() {
        Ok(())
    } else {
        Err(
            tool_error("the receiving server", &answer).unwrap_or_else(|| {
                failed(
                    argv.iter()
                        .map(|arg| shell_quote(arg))
                        .collect::<Vec<_>>()
                        .join(" "),
                    status,
                    &said,
                    "check that this server reaches the receiving one by ssh (key, host key in \
                     known_hosts), or use the route through the admin's machine",
                )
            }),
        )
    };
    combine(sent, received)?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::verify_bundle;
    use std::sync::{Arc, Mutex};

    /// A small bundle made by the backup module's test helper (files, a link).
    fn make_bundle(dir: &Path) {
        crate::backup::transfer::tests::make_bundle(dir);
    }

    fn local(root: &Path, dir: &str) -> BundleEnd<'static> {
        BundleEnd::Local {
            root: root.to_path_buf(),
            dir: dir.to_owned(),
        }
    }

    #[test]
    fn a_bundle_moves_between_two_local_folders_in_process_and_resumes() {
        let work = tempfile::tempdir().unwrap();
        make_bundle(&work.path().join("src/bundle"));
        let request = TransferRequest {
            from: local(work.path(), "/src/bundle"),
            to: local(work.path(), "/dst/copy"),
            route: Route::Auto,
            direct: None,
        };
        std::fs::create_dir(work.path().join("dst")).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut progress = |now: &TransferProgress| seen.lock().unwrap().push(*now);
        let report = transfer_bundle(&request, &mut progress, &Cancel::new()).unwrap();
        assert_eq!(report.route_taken, RouteTaken::Local);
        assert!(report.route_reason.contains("this machine"), "{report:?}");
        assert_eq!(report.sent_files, report.files);
        assert_eq!(report.skipped_files, 0);
        assert_eq!(
            report.manifest_blake3,
            manifest_hash(&read_manifest_bytes(&work.path().join("src/bundle")).unwrap())
        );
        assert!(
            verify_bundle(&work.path().join("dst/copy"), &Progress::default())
                .unwrap()
                .ok
        );
        let last = *seen.lock().unwrap().last().expect("progress was reported");
        assert_eq!(
            (last.bytes_done, last.files_done),
            (report.sent_bytes, report.sent_files)
        );
        // A rerun sends nothing and still finishes.
        let again = transfer_bundle(&request, &mut |_| {}, &Cancel::new()).unwrap();
        assert_eq!((again.sent_files, again.skipped_files), (0, report.files));
        // The same folder on both ends is refused.
        let same = TransferRequest {
            to: local(work.path(), "/src/bundle"),
            ..request.clone()
        };
        let error = transfer_bundle(&same, &mut |_| {}, &Cancel::new()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::CheckFailed, "{error}");
    }

    #[test]
    fn a_cancelled_transfer_says_the_rerun_resumes_and_leaves_no_manifest() {
        let work = tempfile::tempdir().unwrap();
        make_bundle(&work.path().join("bundle"));
        let cancel = Cancel::new();
        cancel.cancel();
        let request = TransferRequest {
            from: local(work.path(), "/bundle"),
            to: local(work.path(), "/copy"),
            route: Route::Auto,
            direct: None,
        };
        let error = transfer_bundle(&request, &mut |_| {}, &cancel).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Cancelled, "{error}");
        assert!(error.to_string().contains("resumes"), "{error}");
        assert!(!work.path().join("copy/manifest.json").exists());
    }

    #[test]
    fn a_missing_bundle_is_named_and_nothing_is_created() {
        let work = tempfile::tempdir().unwrap();
        std::fs::create_dir(work.path().join("nothing")).unwrap();
        let request = TransferRequest {
            from: local(work.path(), "/nothing"),
            to: local(work.path(), "/copy"),
            route: Route::ThroughHere,
            direct: None,
        };
        let error = transfer_bundle(&request, &mut |_| {}, &Cancel::new()).unwrap_err();
        assert!(error.to_string().contains("manifest.json"), "{error}");
        assert!(!work.path().join("copy").exists());
    }

    #[test]
    fn the_direct_ssh_argv_keeps_the_checks_first() {
        let direct = DirectSsh {
            destination: "root@10.0.0.6".to_owned(),
            port: 2222,
            options: vec!["IdentityFile=/root/.ssh/deploy".to_owned()],
        };
        let argv = direct_ssh_argv(&direct, &["ConnectTimeout=10"]);
        assert_eq!(&argv[..4], ["ssh", "-T", "-p", "2222"]);
        let batch = argv.iter().position(|a| a == "BatchMode=yes").unwrap();
        let identity = argv
            .iter()
            .position(|a| a == "IdentityFile=/root/.ssh/deploy")
            .unwrap();
        assert!(batch < identity && argv.contains(&"ConnectTimeout=10".to_owned()));
        assert_eq!(&argv[argv.len() - 2..], ["root@10.0.0.6", "--"]);
    }

    #[test]
    fn send_into_a_command_passes_its_report_and_progress_through() {
        let work = tempfile::tempdir().unwrap();
        let bundle = work.path().join("bundle");
        make_bundle(&bundle);
        // `sh -c` stands in for ssh: it reads the stream, says a progress line
        // and answers with a report.
        let argv: Vec<String> = [
            "sh",
            "-c",
            "wc -c > /dev/null; echo '{\"phase\":\"copying\",\"total_bytes\":1,\"total_files\":1,\"done_bytes\":1,\"done_files\":1}' >&2; echo '{\"files\":5}'",
        ]
        .map(String::from)
        .to_vec();
        let mut said = Vec::new();
        let answer = send_bundle_into(&bundle, None, &argv, &mut said, &Cancel::new()).unwrap();
        assert_eq!(String::from_utf8(answer).unwrap().trim(), "{\"files\":5}");
        assert!(String::from_utf8(said).unwrap().contains("done_bytes"));
        // A receiver that fails with a JSON error: its kind comes back.
        let argv: Vec<String> = [
            "sh",
            "-c",
            "wc -c > /dev/null; echo '{\"error\":{\"kind\":\"already_exists\",\"message\":\"it holds another bundle\"}}'; exit 2",
        ]
        .map(String::from)
        .to_vec();
        let error =
            send_bundle_into(&bundle, None, &argv, &mut Vec::new(), &Cancel::new()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AlreadyExists, "{error}");
    }
}
