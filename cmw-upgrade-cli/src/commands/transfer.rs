//! `cmw-upgrade bundle transfer`, and the two hidden commands it runs on each
//! server: `bundle-send` and `bundle-receive`.
//!
//! The control point (this process) asks the sender for the manifest, asks
//! the receiver which files it lacks, then starts both and hands the sender's
//! stdout to the receiver's stdin as one OS pipe: the bundle's bytes never
//! pass through here. It reads the receiver's progress lines (JSON on its
//! stderr) for the progress line, and its report (JSON on its stdout).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cmw_upgrade_core::backup::transfer::{
    self, files_needed, parse_manifest, read_manifest_bytes, receive_bundle, send_bundle,
    ReceiveReport, MAX_MANIFEST_BYTES,
};
use cmw_upgrade_core::backup::Progress;
use cmw_upgrade_core::executor::shell_quote;
use cmw_upgrade_core::paths::under_root;
use cmw_upgrade_core::{Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::args::{BundleReceiveArgs, BundleSendArgs, GlobalArgs, TransferArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::{human_bytes, print_json};

fn server_path(global: &GlobalArgs, path: &str) -> Result<PathBuf, CliError> {
    Ok(under_root(&global.root, path, "the command line")?)
}

/// This process's stdout as a file, unbuffered by std (the stream is binary).
fn raw_stdout() -> Result<File, CliError> {
    Ok(File::from(std::io::stdout().as_fd().try_clone_to_owned()?))
}

fn raw_stdin() -> Result<File, CliError> {
    Ok(File::from(std::io::stdin().as_fd().try_clone_to_owned()?))
}

fn widen_pipe(file: &impl AsFd) {
    transfer::widen_pipe(file.as_fd());
}

/// `cmw-upgrade bundle-send DIR [--manifest]`.
pub fn send(global: &GlobalArgs, args: BundleSendArgs) -> Result<ExitStatus, CliError> {
    let bundle = server_path(global, &args.bundle)?;
    let stdout = raw_stdout()?;
    widen_pipe(&stdout);
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    if args.manifest {
        out.write_all(&read_manifest_bytes(&bundle)?)?;
        out.flush()?;
        return Ok(ExitStatus::Success);
    }
    let mut wanted = Vec::new();
    for line in BufReader::new(raw_stdin()?).lines() {
        let line = line?;
        if !line.is_empty() {
            wanted.push(line);
        }
    }
    let wanted = (!wanted.is_empty()).then_some(wanted);
    send_bundle(&bundle, wanted.as_deref(), &mut out, &Progress::default())?;
    out.flush()?;
    Ok(ExitStatus::Success)
}

/// Writes the progress as one JSON line on stderr every quarter second while
/// `work` runs, and once more at the end.
fn with_progress_lines<R>(progress: &Progress, work: impl FnOnce() -> R) -> R {
    let done = AtomicBool::new(false);
    let line = || {
        if let Ok(text) = serde_json::to_string(&progress.snapshot()) {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{text}");
        }
    };
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                line();
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    });
    line();
    result
}

/// `cmw-upgrade bundle-receive DEST [--needed]`.
pub fn receive(global: &GlobalArgs, args: BundleReceiveArgs) -> Result<ExitStatus, CliError> {
    let dest = server_path(global, &args.dest)?;
    if args.needed {
        let mut bytes = Vec::new();
        raw_stdin()?
            .take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)?;
        let manifest = parse_manifest(&bytes, &dest)?;
        let needed = files_needed(&dest, &manifest, &Progress::default())?;
        // A protocol answer: file names must arrive exactly, never masked.
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}",
            serde_json::to_string(&needed).map_err(std::io::Error::from)?
        )?;
        out.flush()?;
        return Ok(ExitStatus::Success);
    }
    let stdin = raw_stdin()?;
    widen_pipe(&stdin);
    let mut input = BufReader::with_capacity(1 << 16, stdin);
    let progress = Progress::default();
    let report = with_progress_lines(&progress, || receive_bundle(&dest, &mut input, &progress))?;
    print_json(&report)?;
    Ok(ExitStatus::Success)
}

/// One side of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// A folder on this machine (absolute).
    Local(String),
    /// A folder on a server reached by ssh.
    Remote {
        destination: String,
        port: u16,
        dir: String,
    },
}

impl Endpoint {
    fn parse(option: &'static str, text: &str) -> Result<Endpoint, CliError> {
        let refuse = |details: String| -> CliError {
            Error::CheckFailed {
                what: format!("reading {option}"),
                details,
            }
            .into()
        };
        let local = |path: &str| -> Result<Endpoint, CliError> {
            if path.is_empty() {
                return Err(refuse("the path is empty".to_owned()));
            }
            let path = Path::new(path);
            let absolute = if path.is_absolute() {
                path.to_path_buf()
            } else {
                std::env::current_dir()?.join(path)
            };
            Ok(Endpoint::Local(absolute.to_string_lossy().into_owned()))
        };
        if let Some(path) = text.strip_prefix("local:") {
            return local(path);
        }
        if text.starts_with('/') || text.starts_with('.') {
            return local(text);
        }
        let Some((host, rest)) = text.split_once(':') else {
            return local(text);
        };
        let (port, dir) = match rest.split_once(':') {
            Some((port, dir)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|port| *port > 0)
                    .ok_or_else(|| refuse(format!("{port} is not a port")))?;
                (port, dir)
            }
            _ => (22, rest),
        };
        if host.is_empty()
            || host.starts_with('-')
            || host.contains(|c: char| c.is_whitespace() || c == '/')
        {
            return Err(refuse(format!(
                "{host:?} is not a [user@]host; write [user@]host[:port]:DIR, or a local path"
            )));
        }
        if !dir.starts_with('/') {
            return Err(refuse(format!(
                "the folder {dir:?} on {host} is not absolute; write [user@]host[:port]:/path"
            )));
        }
        Ok(Endpoint::Remote {
            destination: host.to_owned(),
            port,
            dir: dir.to_owned(),
        })
    }

    fn dir(&self) -> &str {
        match self {
            Endpoint::Local(dir) | Endpoint::Remote { dir, .. } => dir,
        }
    }

    fn name(&self) -> String {
        match self {
            Endpoint::Local(dir) => dir.clone(),
            Endpoint::Remote {
                destination,
                port,
                dir,
            } if *port == 22 => format!("{destination}:{dir}"),
            Endpoint::Remote {
                destination,
                port,
                dir,
            } => format!("{destination}:{port}:{dir}"),
        }
    }

    fn server(&self) -> String {
        match self {
            Endpoint::Local(_) => "this machine".to_owned(),
            Endpoint::Remote { destination, .. } => destination.clone(),
        }
    }
}

/// The ssh options of every connection the control point opens.
fn ssh_options(args: &TransferArgs, port: u16) -> Vec<String> {
    let mut argv: Vec<String> = ["ssh", "-T", "-p", &port.to_string()]
        .map(String::from)
        .to_vec();
    for option in [
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=4",
        "ClearAllForwardings=yes",
    ] {
        argv.extend(["-o".to_owned(), option.to_owned()]);
    }
    if let Some(known_hosts) = &args.known_hosts {
        argv.extend([
            "-o".to_owned(),
            format!("UserKnownHostsFile={}", known_hosts.display()),
        ]);
    }
    if let Some(identity) = &args.identity_file {
        argv.extend(["-o".to_owned(), "IdentitiesOnly=yes".to_owned()]);
        argv.extend(["-i".to_owned(), identity.display().to_string()]);
    }
    argv
}

/// One OpenSSH master connection to a server: the control point's sessions
/// there (the manifest, the needed files, the stream) share it, so the server
/// authenticates once. Closed when dropped; an orphan (this process killed)
/// closes itself a minute after its last session.
struct Master {
    folder: PathBuf,
    /// `ssh` and the options that reach the server through the master.
    argv: Vec<String>,
    destination: String,
}

impl Master {
    fn open(args: &TransferArgs, destination: &str, port: u16) -> Result<Master, CliError> {
        let folder = cmw_upgrade_core::paths::private_temp_dir("cmw-upgrade-transfer")?;
        let mut argv = ssh_options(args, port);
        argv.extend([
            "-o".to_owned(),
            format!("ControlPath={}", folder.join("master").display()),
        ]);
        let master = Master {
            folder,
            argv,
            destination: destination.to_owned(),
        };
        let mut start = master.argv.clone();
        start.extend(
            [
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPersist=60",
                "-N",
                "-f",
            ]
            .map(String::from),
        );
        start.push(destination.to_owned());
        // The backgrounded master keeps its stderr: a file, so nothing waits on it.
        let log = master.folder.join("master.log");
        let stderr = File::create(&log).map_err(|source| CliError::WriteFile {
            path: log.clone(),
            source,
        })?;
        let status = command_of(&start)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .map_err(|error| Error::io("start", "ssh", error))?;
        if !status.success() {
            let mut said = String::new();
            if let Ok(file) = File::open(&log) {
                said = tail_of(file);
            }
            return Err(failed(
                &start,
                status,
                &said,
                "check the address, the port, the key and the host key (known_hosts)",
            ));
        }
        Ok(master)
    }

    /// The argv running `remote` (already shell-quoted) through the master.
    fn session(&self, remote: String) -> Vec<String> {
        let mut argv = self.argv.clone();
        argv.extend(["-o".to_owned(), "ControlMaster=no".to_owned()]);
        argv.push(self.destination.clone());
        argv.push("--".to_owned());
        argv.push(remote);
        argv
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let mut argv = self.argv.clone();
        argv.extend(["-O".to_owned(), "exit".to_owned()]);
        argv.push(self.destination.clone());
        let _ = command_of(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// How the control point starts the commands on either side.
struct Launcher<'a> {
    global: &'a GlobalArgs,
    args: &'a TransferArgs,
    this_binary: PathBuf,
    masters: Vec<((String, u16), Master)>,
}

impl Launcher<'_> {
    /// Opens the master connection to `endpoint`'s server, once per server.
    fn connect(&mut self, endpoint: &Endpoint) -> Result<(), CliError> {
        if let Endpoint::Remote {
            destination, port, ..
        } = endpoint
        {
            let key = (destination.clone(), *port);
            if !self.masters.iter().any(|(known, _)| *known == key) {
                let master = Master::open(self.args, destination, *port)?;
                self.masters.push((key, master));
            }
        }
        Ok(())
    }

    /// The argv running `cmw-upgrade [--root R] [--json] ARGS...` at `endpoint`.
    fn argv(&self, endpoint: &Endpoint, json: bool, tail: &[&str]) -> Vec<String> {
        let mut tool: Vec<String> = Vec::new();
        if self.global.root != Path::new("/") {
            tool.push("--root".to_owned());
            tool.push(self.global.root.to_string_lossy().into_owned());
        }
        if json {
            tool.push("--json".to_owned());
        }
        tool.extend(tail.iter().map(|arg| (*arg).to_owned()));
        match endpoint {
            Endpoint::Local(_) => {
                let mut argv = vec![self.this_binary.to_string_lossy().into_owned()];
                argv.extend(tool);
                argv
            }
            Endpoint::Remote {
                destination, port, ..
            } => {
                let remote: Vec<String> = std::iter::once(self.args.remote_cmw_upgrade.clone())
                    .chain(tool)
                    .map(|arg| shell_quote(&arg))
                    .collect();
                let remote = remote.join(" ");
                match self
                    .masters
                    .iter()
                    .find(|(key, _)| key.0 == *destination && key.1 == *port)
                {
                    Some((_, master)) => master.session(remote),
                    None => {
                        let mut argv = ssh_options(self.args, *port);
                        argv.extend([destination.clone(), "--".to_owned(), remote]);
                        argv
                    }
                }
            }
        }
    }
}

fn command_of(argv: &[String]) -> Command {
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    command
}

fn display(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| shell_quote(arg))
        .collect::<Vec<_>>()
        .join(" ")
}

fn failed(argv: &[String], status: std::process::ExitStatus, output: &str, hint: &str) -> CliError {
    Error::CommandFailed {
        command: display(argv),
        status: match status.code() {
            Some(code) => format!("exit code {code}"),
            None => "killed by a signal".to_owned(),
        },
        output: output.trim().to_owned(),
        hint: hint.to_owned(),
    }
    .into()
}

/// The error a `--json` run of the tool printed on stdout, as the core error.
fn remote_error(server: &str, stdout: &str) -> Option<CliError> {
    let document: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())?;
    let error = document.get("error")?;
    let kind = error.get("kind")?.as_str()?;
    let message = error.get("message")?.as_str()?;
    Some(
        Error::Remote {
            server: server.to_owned(),
            kind: ErrorKind::from_name(kind).unwrap_or(ErrorKind::Internal),
            message: message.to_owned(),
        }
        .into(),
    )
}

/// Runs `argv` to its end with `input` on stdin; its stdout.
fn run_captured(
    argv: &[String],
    server: &str,
    input: &[u8],
    hint: &str,
) -> Result<Vec<u8>, CliError> {
    let mut child = command_of(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| Error::io("start", &argv[0], error))?;
    let mut stdin = child.stdin.take();
    let output = std::thread::scope(|scope| {
        scope.spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(input);
            }
            drop(stdin);
        });
        child.wait_with_output()
    })?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Err(remote_error(server, &stdout).unwrap_or_else(|| {
        failed(
            argv,
            output.status,
            &String::from_utf8_lossy(&output.stderr),
            hint,
        )
    }))
}

/// What `bundle transfer --json` prints.
#[derive(Debug, Serialize)]
struct TransferReport {
    from: String,
    to: String,
    /// Files and bytes in the bundle.
    files: u64,
    bytes: u64,
    /// Files and bytes sent this time.
    sent_files: u64,
    sent_bytes: u64,
    /// Files the receiver already had, checked by hash.
    skipped_files: u64,
    seconds: f64,
}

const SSH_HINT: &str =
    "check that the server is reachable with ssh (key, host key in known_hosts) \
                        and has cmw-upgrade (--remote-cmw-upgrade names it)";

/// Keeps the last 16 KiB of a child's stderr.
fn tail_of(reader: impl Read) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut reader = reader;
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
    String::from_utf8_lossy(&tail).into_owned()
}

/// A progress line of the receiver (the core's `ProgressSnapshot`, read back).
#[derive(Debug, Deserialize)]
struct ProgressLine {
    total_bytes: u64,
    total_files: u64,
    done_bytes: u64,
    done_files: u64,
}

/// The progress line for a terminal.
fn progress_line(now: &ProgressLine, elapsed: Duration) -> String {
    crate::output::copy_progress_line(
        "sending",
        (now.done_bytes, now.total_bytes),
        (now.done_files, now.total_files),
        elapsed,
    )
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `cmw-upgrade bundle transfer --from ... --to ...`.
pub fn transfer(global: &GlobalArgs, args: TransferArgs) -> Result<ExitStatus, CliError> {
    let from = Endpoint::parse("--from", &args.from)?;
    let to = Endpoint::parse("--to", &args.to)?;
    if from == to {
        return Err(Error::CheckFailed {
            what: "reading --from and --to".to_owned(),
            details: format!("both name {}; name another folder to copy to", to.name()),
        }
        .into());
    }
    let mut launcher = Launcher {
        global,
        args: &args,
        this_binary: std::env::current_exe()?,
        masters: Vec::new(),
    };
    launcher.connect(&from)?;
    launcher.connect(&to)?;
    let started = Instant::now();

    let manifest_argv = launcher.argv(&from, false, &["bundle-send", from.dir(), "--manifest"]);
    let manifest = run_captured(&manifest_argv, &from.server(), b"", SSH_HINT)?;
    let needed_argv = launcher.argv(&to, true, &["bundle-receive", to.dir(), "--needed"]);
    let needed = run_captured(&needed_argv, &to.server(), &manifest, SSH_HINT)?;
    let needed: Vec<String> = serde_json::from_slice(&needed).map_err(|error| Error::Internal {
        details: format!("the receiver's list of needed files does not parse: {error}"),
    })?;

    let receive_argv = launcher.argv(&to, true, &["bundle-receive", to.dir()]);
    let send_argv = launcher.argv(&from, false, &["bundle-send", from.dir()]);
    let mut sender = None;
    let receiver_stdin = if needed.is_empty() {
        Stdio::piped()
    } else {
        let mut child = command_of(&send_argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| Error::io("start", &send_argv[0], error))?;
        let Some(stdout) = child.stdout.take() else {
            kill(&mut child);
            return Err(Error::Internal {
                details: "the sender's stdout was not captured".to_owned(),
            }
            .into());
        };
        widen_pipe(&stdout);
        sender = Some(child);
        Stdio::from(stdout)
    };
    let mut receiver = match command_of(&receive_argv)
        .stdin(receiver_stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            if let Some(child) = sender.as_mut() {
                kill(child);
            }
            return Err(Error::io("start", &receive_argv[0], error).into());
        }
    };

    let show = !global.json && std::io::stderr().is_terminal();
    let wanted: String = needed.iter().map(|path| format!("{path}\n")).collect();
    let (sender_outcome, receiver_stdout, receiver_err) = std::thread::scope(|scope| {
        // The sender's list of wanted files, then its stdin closes.
        let sender_stdin = sender.as_mut().and_then(|child| child.stdin.take());
        let sender_stderr = sender.as_mut().and_then(|child| child.stderr.take());
        let receiver_input = receiver.stdin.take();
        let manifest = &manifest;
        let wanted = &wanted;
        scope.spawn(move || {
            if let Some(mut stdin) = sender_stdin {
                let _ = stdin.write_all(wanted.as_bytes());
            }
            if let Some(mut stdin) = receiver_input {
                let _ = transfer::send_manifest_only(manifest, &mut stdin);
            }
        });
        let sender_err = scope.spawn(move || sender_stderr.map(tail_of).unwrap_or_default());
        let receiver_stdout = receiver.stdout.take();
        let stdout = scope.spawn(move || receiver_stdout.map(tail_of).unwrap_or_default());
        // The receiver's stderr: progress lines, and whatever else it says.
        let mut other = String::new();
        let sending = Instant::now();
        if let Some(stderr) = receiver.stderr.take() {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<ProgressLine>(&line) {
                    Ok(now) if show => {
                        eprint!("\r\x1b[2K{}", progress_line(&now, sending.elapsed()))
                    }
                    Ok(_) => {}
                    Err(_) => {
                        other.push_str(&line);
                        other.push('\n');
                    }
                }
            }
        }
        if show {
            eprint!("\r\x1b[2K");
        }
        (
            sender_err.join().unwrap_or_default(),
            stdout.join().unwrap_or_default(),
            other,
        )
    });
    let receiver_status = receiver.wait()?;
    let sender_status = match sender.as_mut() {
        Some(child) => {
            if !receiver_status.success() {
                // A receiver that stopped reading leaves the sender blocked on the pipe.
                let _ = child.kill();
            }
            Some(child.wait()?)
        }
        None => None,
    };
    let receiver_error = || {
        remote_error(&to.server(), &receiver_stdout).unwrap_or_else(|| {
            failed(
                &receive_argv,
                receiver_status,
                &receiver_err,
                "nothing incomplete kept its name; run the same transfer again",
            )
        })
    };
    if let Some(status) = sender_status.filter(|status| !status.success()) {
        // Both sides' words: the sender's cause, and what it did to the receiver.
        let mut output = sender_outcome.trim().to_owned();
        if !receiver_status.success() {
            output.push_str(&format!("; the receiver says: {}", receiver_error()));
        }
        return Err(failed(
            &send_argv,
            status,
            &output,
            "nothing incomplete kept its name on the receiver; fix the cause and run the same \
             transfer again: it sends only what is missing",
        ));
    }
    if !receiver_status.success() {
        return Err(receiver_error());
    }
    let report: ReceiveReport =
        serde_json::from_str(&receiver_stdout).map_err(|error| Error::Internal {
            details: format!("the receiver's report does not parse: {error}"),
        })?;
    let report = TransferReport {
        from: from.name(),
        to: to.name(),
        files: report.files,
        bytes: report.bytes,
        sent_files: report.received_files,
        sent_bytes: report.received_bytes,
        skipped_files: report.skipped_files,
        seconds: started.elapsed().as_secs_f64(),
    };
    if global.json {
        print_json(&report)?;
        return Ok(ExitStatus::Success);
    }
    let mut out = crate::output::stdout();
    writeln!(
        out,
        "Sent {} files ({}) from {} to {} in {:.1}s ({}/s); {} of {} files were already there.",
        report.sent_files,
        human_bytes(report.sent_bytes),
        report.from,
        report.to,
        report.seconds,
        human_bytes((report.sent_bytes as f64 / report.seconds.max(0.001)) as u64),
        report.skipped_files,
        report.files,
    )?;
    // `backup verify` takes the folder as it is on that server (under --root).
    let placed = server_path(global, to.dir())?;
    let verify = format!(
        "cmw-upgrade backup verify {}",
        shell_quote(&placed.to_string_lossy())
    );
    let verify = match &to {
        Endpoint::Local(_) => verify,
        Endpoint::Remote { destination, .. } => format!("(on {destination})  {verify}"),
    };
    writeln!(
        out,
        "Every file sent was checked against the manifest on arrival. Check the whole copy with:\n  {verify}"
    )?;
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let remote = |destination: &str, port, dir: &str| Endpoint::Remote {
            destination: destination.to_owned(),
            port,
            dir: dir.to_owned(),
        };
        assert_eq!(
            Endpoint::parse("--from", "admin@old:/mnt/b").unwrap(),
            remote("admin@old", 22, "/mnt/b")
        );
        assert_eq!(
            Endpoint::parse("--from", "old:2222:/mnt/b:1").unwrap(),
            remote("old", 2222, "/mnt/b:1")
        );
        assert_eq!(
            Endpoint::parse("--to", "/mnt/b").unwrap(),
            Endpoint::Local("/mnt/b".to_owned())
        );
        assert_eq!(
            Endpoint::parse("--to", "local:/mnt/x:y").unwrap(),
            Endpoint::Local("/mnt/x:y".to_owned())
        );
        for bad in [
            "old:relative",
            "-oProxyCommand=x:/a",
            "old:99999:/a",
            ":/a",
            "local:",
        ] {
            assert!(Endpoint::parse("--to", bad).is_err(), "{bad}");
        }
    }
}
