//! `cmw-upgrade bundle transfer`, and the two hidden commands it runs on each
//! server: `bundle-send` and `bundle-receive`.
//!
//! The transfer itself is the core's [`transfer_bundle`]: this file parses
//! the two ends, connects to their servers (ssh executors: host keys checked,
//! the binary copied there when missing), prints the progress and the report.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cmw_upgrade_core::backup::transfer::{
    self, files_needed, parse_manifest, read_manifest_bytes, receive_bundle_expecting, send_bundle,
    MAX_MANIFEST_BYTES,
};
use cmw_upgrade_core::backup::Progress;
use cmw_upgrade_core::cancel::Cancel;
use cmw_upgrade_core::executor::transfer::{
    send_bundle_into, transfer_bundle, BundleEnd, DirectSsh, Route, TransferProgress,
    TransferRequest,
};
use cmw_upgrade_core::executor::{shell_quote, SshExecutor, SshTarget};
use cmw_upgrade_core::paths::under_root;
use cmw_upgrade_core::Error;

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

/// `cmw-upgrade bundle-send DIR [--manifest] [-- ARGV]`.
pub fn send(global: &GlobalArgs, args: BundleSendArgs) -> Result<ExitStatus, CliError> {
    let bundle = server_path(global, &args.bundle)?;
    if !args.into.is_empty() && !args.manifest {
        // The direct route: the stream goes into ARGV (ssh to the receiver).
        let wanted = read_wanted()?;
        let answer = send_bundle_into(
            &bundle,
            wanted.as_deref(),
            &args.into,
            &mut std::io::stderr(),
            &Cancel::new(),
        )?;
        let mut out = std::io::stdout().lock();
        out.write_all(&answer)?;
        out.flush()?;
        return Ok(ExitStatus::Success);
    }
    let stdout = raw_stdout()?;
    widen_pipe(&stdout);
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    if args.manifest {
        out.write_all(&read_manifest_bytes(&bundle)?)?;
        out.flush()?;
        return Ok(ExitStatus::Success);
    }
    let wanted = read_wanted()?;
    send_bundle(&bundle, wanted.as_deref(), &mut out, &Progress::default())?;
    out.flush()?;
    Ok(ExitStatus::Success)
}

/// The wanted files on stdin, one a line; none: every file.
fn read_wanted() -> Result<Option<Vec<String>>, CliError> {
    let mut wanted = Vec::new();
    for line in BufReader::new(raw_stdin()?).lines() {
        let line = line?;
        if !line.is_empty() {
            wanted.push(line);
        }
    }
    Ok((!wanted.is_empty()).then_some(wanted))
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
    let report = with_progress_lines(&progress, || {
        receive_bundle_expecting(
            &dest,
            &mut input,
            args.manifest_blake3.as_deref(),
            &progress,
        )
    })?;
    print_json(&report)?;
    Ok(ExitStatus::Success)
}

/// One side of a transfer, as written on the command line.
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

    fn server(&self) -> Option<(&str, u16)> {
        match self {
            Endpoint::Local(_) => None,
            Endpoint::Remote {
                destination, port, ..
            } => Some((destination, *port)),
        }
    }
}

/// The ssh executor for a remote end: host keys checked, the agent started
/// from `--remote-cmw-upgrade` (or a copy of this binary when that one is
/// missing or older).
fn connect(
    global: &GlobalArgs,
    args: &TransferArgs,
    destination: &str,
    port: u16,
) -> Result<SshExecutor, CliError> {
    let mut agent = vec![args.remote_cmw_upgrade.clone()];
    if global.root != Path::new("/") {
        agent.push("--root".to_owned());
        agent.push(global.root.to_string_lossy().into_owned());
    }
    agent.push("agent".to_owned());
    Ok(SshExecutor::connect(SshTarget {
        port,
        identity_file: args.identity_file.clone(),
        known_hosts_file: args.known_hosts.clone(),
        agent,
        ..SshTarget::new(destination)
    })?)
}

/// The core's end for `endpoint`: on its server when it has one, here otherwise.
fn bundle_end<'a>(
    global: &GlobalArgs,
    endpoint: &Endpoint,
    ssh: Option<&'a SshExecutor>,
) -> BundleEnd<'a> {
    match (endpoint, ssh) {
        (Endpoint::Remote { dir, .. }, Some(ssh)) => BundleEnd::Remote {
            ssh,
            dir: dir.clone(),
        },
        _ => BundleEnd::Local {
            root: global.root.clone(),
            dir: endpoint.dir().to_owned(),
        },
    }
}

fn route_of(text: &str) -> Route {
    match text {
        "direct" => Route::Direct,
        "through-here" => Route::ThroughHere,
        _ => Route::Auto,
    }
}

/// `cmw-upgrade bundle transfer --from ... --to ...`.
pub fn transfer(global: &GlobalArgs, args: TransferArgs) -> Result<ExitStatus, CliError> {
    let from = Endpoint::parse("--from", &args.from)?;
    let to = Endpoint::parse("--to", &args.to)?;
    if from == to {
        return Err(Error::CheckFailed {
            what: "reading --from and --to".to_owned(),
            details: format!(
                "both name {}; name another folder to copy to",
                args.to.trim_start_matches("local:")
            ),
        }
        .into());
    }
    // One connection per server, shared when both ends are on one.
    let from_ssh = match from.server() {
        Some((destination, port)) => Some(connect(global, &args, destination, port)?),
        None => None,
    };
    let to_ssh = match to.server() {
        Some(server) if from.server() == Some(server) => None,
        Some((destination, port)) => Some(connect(global, &args, destination, port)?),
        None => None,
    };
    for provisioned in [&from_ssh, &to_ssh]
        .into_iter()
        .flatten()
        .filter_map(SshExecutor::provisioned)
    {
        if !global.json {
            eprintln!("{}", provisioned.note());
        }
    }
    let direct = match (&to, to_ssh.as_ref().or(from_ssh.as_ref())) {
        (Endpoint::Remote { .. }, Some(ssh)) => Some(DirectSsh {
            destination: ssh.destination().to_owned(),
            port: ssh.port(),
            options: args.direct_ssh_option.clone(),
        }),
        _ => None,
    };
    let request = TransferRequest {
        from: bundle_end(global, &from, from_ssh.as_ref()),
        to: bundle_end(global, &to, to_ssh.as_ref().or(from_ssh.as_ref())),
        route: route_of(&args.route),
        direct,
    };
    let show = !global.json && std::io::stderr().is_terminal();
    let mut progress = |now: &TransferProgress| {
        if show {
            let line = crate::output::copy_progress_line(
                "sending",
                (now.bytes_done, now.bytes_total),
                (now.files_done, now.files_total),
                Duration::from_secs_f64(now.seconds),
            );
            eprint!("\r\x1b[2K{line}");
        }
    };
    let result = transfer_bundle(&request, &mut progress, &Cancel::new());
    if show {
        eprint!("\r\x1b[2K");
    }
    let report = result?;
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
    writeln!(
        out,
        "Route: {} ({}).",
        report.route_taken.as_str().replace('_', " "),
        report.route_reason
    )?;
    // `backup verify` takes the folder as typed, under the same --root.
    let verify = format!(
        "cmw-upgrade {}backup verify {}",
        super::root_option(global),
        shell_quote(to.dir())
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
