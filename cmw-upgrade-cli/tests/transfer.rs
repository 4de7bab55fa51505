//! `cmw-upgrade bundle transfer` between two folders of a real OpenSSH server
//! on loopback, with this build's `cmw-upgrade` on the other side: a bundle
//! made by `backup` arrives verified, a sender killed midway leaves nothing
//! that looks finished, and the rerun sends only what is missing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

mod util;

use cmw_upgrade_core::cancel::Cancel;
use cmw_upgrade_core::executor::transfer::{
    transfer_bundle, BundleEnd, DirectSsh, Route, RouteTaken, TransferProgress, TransferRequest,
};
use cmw_upgrade_core::executor::{SshExecutor, SshTarget};
use cmw_upgrade_core::ErrorKind;
use cmw_upgrade_tests::sshd::TestSshd;
use cmw_upgrade_tests::{DatabaseSpec, ServerSpec};
use util::{backup_bundle_to, cmw, json, server, stderr};

const BINARY: &str = env!("CARGO_BIN_EXE_cmw-upgrade");

fn transfer(sshd: &TestSshd, remote: &str, from: &str, to: &str) -> std::process::Output {
    let identity = sshd.identity_file();
    let known_hosts = sshd.known_hosts_file();
    cmw(&[
        "--json",
        "bundle",
        "transfer",
        "--from",
        from,
        "--to",
        to,
        "--identity-file",
        identity.to_str().unwrap(),
        "--known-hosts",
        known_hosts.to_str().unwrap(),
        "--remote-cmw-upgrade",
        remote,
    ])
}

fn on(sshd: &TestSshd, path: &Path) -> String {
    format!("{}:{}:{}", sshd.destination(), sshd.port, path.display())
}

/// Files under `folder` still under a temporary name.
fn partial_files(folder: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(listing) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in listing.map(Result::unwrap) {
            if entry
                .file_name()
                .to_string_lossy()
                .ends_with(".cmw-upgrade-partial")
            {
                found.push(entry.path().display().to_string());
            }
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn a_bundle_crosses_over_ssh_verified_and_a_killed_transfer_resumes() {
    let sshd = TestSshd::start().expect("sshd starts (openssh-server is installed by .ci/run)");
    let old = server(ServerSpec {
        database: DatabaseSpec {
            entities: 10,
            files_per_group: 3,
            bytes_per_file: 256 << 10,
            ..DatabaseSpec::default()
        },
        ..ServerSpec::default()
    });
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("old server's bundle");
    let output = backup_bundle_to(old.path(), &bundle);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // A sender killed after 1 MiB of its stream (the pipe to `head` closes:
    // SIGPIPE), as a sender dying midway.
    let killer = work.path().join("cmw-upgrade-killed-midway");
    fs::write(
        &killer,
        format!(
            "#!/bin/sh\ncase \" $* \" in\n  *' bundle-send '*' --manifest '*) exec '{BINARY}' \"$@\" ;;\n  \
             *' bundle-send '*) '{BINARY}' \"$@\" | head -c 1048576; exit 1 ;;\n  *) exec '{BINARY}' \"$@\" ;;\nesac\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&killer, fs::Permissions::from_mode(0o755)).unwrap();

    let copy = work.path().join("new server").join("prod bundle");
    fs::create_dir(work.path().join("new server")).unwrap();
    let output = transfer(
        &sshd,
        killer.to_str().unwrap(),
        &on(&sshd, &bundle),
        &on(&sshd, &copy),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let error = json(&output);
    // The sender's failure, with what the receiver made of it.
    assert_eq!(error["error"]["kind"], "command_failed", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("bundle-send") && message.contains("ended early"),
        "{error}"
    );
    assert!(
        !copy.join("manifest.json").exists(),
        "an unfinished copy must not look finished"
    );
    assert!(
        partial_files(&copy).is_empty(),
        "{:?}",
        partial_files(&copy)
    );
    assert_eq!(
        fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let output = transfer(&sshd, BINARY, &on(&sshd, &bundle), &on(&sshd, &copy));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    let (files, sent, skipped) = (
        report["files"].as_u64().unwrap(),
        report["sent_files"].as_u64().unwrap(),
        report["skipped_files"].as_u64().unwrap(),
    );
    assert!(
        skipped > 0 && sent > 0 && sent + skipped == files,
        "{report}"
    );
    assert!(report["sent_bytes"].as_u64().unwrap() < report["bytes"].as_u64().unwrap());
    // One server for both ends, no key of its own for itself: through here, saying why.
    assert_eq!(report["route_taken"], "through_here", "{report}");
    assert!(
        report["route_reason"]
            .as_str()
            .unwrap()
            .contains("cannot reach"),
        "{report}"
    );
    let hash = report["manifest_blake3"].as_str().unwrap();
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{report}"
    );
    let output = cmw(&["--json", "backup", "verify", copy.to_str().unwrap()]);
    assert_eq!(json(&output)["ok"], true, "{}", util::stdout(&output));

    // Once more: nothing to send, still complete.
    let output = transfer(&sshd, BINARY, &on(&sshd, &bundle), &on(&sshd, &copy));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json(&output)["sent_files"], 0);
    let output = cmw(&["--json", "backup", "verify", copy.to_str().unwrap()]);
    assert_eq!(json(&output)["ok"], true);

    // From the remote bundle to this machine too.
    let local = work.path().join("here");
    let output = transfer(&sshd, BINARY, &on(&sshd, &bundle), local.to_str().unwrap());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = cmw(&["--json", "backup", "verify", local.to_str().unwrap()]);
    assert_eq!(json(&output)["ok"], true);
}

#[test]
fn bad_input_exits_2_and_help_teaches_the_syntax() {
    let work = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("old:relative/path", "/tmp/x"),
        ("-oProxyCommand=touch:/x", "/tmp/x"),
        ("/tmp/x", "local:/tmp/x"),
    ] {
        let output = cmw(&["bundle", "transfer", "--from", from, "--to", to]);
        assert_eq!(output.status.code(), Some(2), "{from}");
    }
    // Not a bundle: the sender says so, nothing is created.
    let target = work.path().join("copy");
    let output = cmw(&[
        "bundle",
        "transfer",
        "--from",
        work.path().to_str().unwrap(),
        "--to",
        target.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("manifest.json"),
        "{}",
        stderr(&output)
    );
    assert!(!target.exists());
    let help = util::stdout(&cmw(&["bundle", "transfer", "--help"]));
    assert!(
        help.contains("[user@]host[:port]:DIR") && help.contains("Examples:"),
        "{help}"
    );
}

/// The ssh executor for a test sshd, with this build as its agent.
fn connect(sshd: &TestSshd, agent: &str) -> SshExecutor {
    SshExecutor::connect(SshTarget {
        port: sshd.port,
        identity_file: Some(sshd.identity_file()),
        known_hosts_file: Some(sshd.known_hosts_file()),
        agent: vec![agent.to_owned(), "agent".to_owned()],
        provision: false,
        ..SshTarget::new(sshd.destination())
    })
    .expect("connects to the test sshd")
}

/// A small bundle made by `backup`, in a temporary folder.
fn small_bundle(work: &Path) -> std::path::PathBuf {
    let old = server(ServerSpec {
        database: DatabaseSpec {
            entities: 4,
            files_per_group: 2,
            bytes_per_file: 64 << 10,
            ..DatabaseSpec::default()
        },
        ..ServerSpec::default()
    });
    let bundle = work.join("bundle");
    let output = backup_bundle_to(old.path(), &bundle);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    bundle
}

fn remote<'a>(ssh: &'a SshExecutor, dir: &Path) -> BundleEnd<'a> {
    BundleEnd::Remote {
        ssh,
        dir: dir.to_str().unwrap().to_owned(),
    }
}

/// How the "old server" (sshd A) reaches the "new" one (sshd B): both run as
/// this user, so B's client key and known_hosts are readable there.
fn direct_to(new: &TestSshd, options: &[String]) -> Option<DirectSsh> {
    Some(DirectSsh {
        destination: new.destination(),
        port: new.port,
        options: options.to_vec(),
    })
}

fn verified(copy: &Path) {
    let output = cmw(&["--json", "backup", "verify", copy.to_str().unwrap()]);
    assert_eq!(json(&output)["ok"], true, "{}", util::stdout(&output));
}

#[test]
fn the_direct_route_goes_server_to_server_and_auto_finds_it() {
    let (old, new) = (TestSshd::start().unwrap(), TestSshd::start().unwrap());
    let work = tempfile::tempdir().unwrap();
    let bundle = small_bundle(work.path());
    let (from, to) = (connect(&old, BINARY), connect(&new, BINARY));
    let options = [
        format!("IdentityFile={}", new.identity_file().display()),
        format!("UserKnownHostsFile={}", new.known_hosts_file().display()),
    ];
    let copy = work.path().join("direct copy");
    let mut seen = Vec::new();
    let report = transfer_bundle(
        &TransferRequest {
            from: remote(&from, &bundle),
            to: remote(&to, &copy),
            route: Route::Direct,
            direct: direct_to(&new, &options),
        },
        &mut |now: &TransferProgress| seen.push(*now),
        &Cancel::new(),
    )
    .expect("the direct transfer succeeds");
    assert_eq!(report.route_taken, RouteTaken::Direct, "{report:?}");
    assert!(report.route_reason.contains("asked for"), "{report:?}");
    assert!(report.sent_files > 0 && report.sent_files == report.files);
    let last = seen
        .last()
        .expect("the receiver's progress came through the sender");
    assert_eq!(last.bytes_done, report.sent_bytes, "{seen:?}");
    verified(&copy);

    // Auto probes the same way and takes it.
    let copy = work.path().join("auto copy");
    let report = transfer_bundle(
        &TransferRequest {
            from: remote(&from, &bundle),
            to: remote(&to, &copy),
            route: Route::Auto,
            direct: direct_to(&new, &options),
        },
        &mut |_| {},
        &Cancel::new(),
    )
    .unwrap();
    assert_eq!(report.route_taken, RouteTaken::Direct, "{report:?}");
    assert!(report.route_reason.contains("reaches"), "{report:?}");
    verified(&copy);
}

#[test]
fn without_a_way_between_the_servers_auto_goes_through_here_and_direct_fails() {
    let (old, new) = (TestSshd::start().unwrap(), TestSshd::start().unwrap());
    let work = tempfile::tempdir().unwrap();
    let bundle = small_bundle(work.path());
    let (from, to) = (connect(&old, BINARY), connect(&new, BINARY));
    // The host key is known there, but no key of the old server is let in.
    let options = [format!(
        "UserKnownHostsFile={}",
        new.known_hosts_file().display()
    )];
    let copy = work.path().join("copy");
    let mut seen = 0;
    let report = transfer_bundle(
        &TransferRequest {
            from: remote(&from, &bundle),
            to: remote(&to, &copy),
            route: Route::Auto,
            direct: direct_to(&new, &options),
        },
        &mut |_| seen += 1,
        &Cancel::new(),
    )
    .expect("the transfer through here succeeds");
    assert_eq!(report.route_taken, RouteTaken::ThroughHere, "{report:?}");
    let reason = &report.route_reason;
    assert!(
        reason.contains("cannot reach")
            && reason.contains("Permission denied")
            && reason.contains("through this machine"),
        "{reason}"
    );
    assert!(seen > 0);
    verified(&copy);

    // Asked for the direct route anyway: ssh's words, and nothing finished.
    let elsewhere = work.path().join("elsewhere");
    let error = transfer_bundle(
        &TransferRequest {
            from: remote(&from, &bundle),
            to: remote(&to, &elsewhere),
            route: Route::Direct,
            direct: direct_to(&new, &options),
        },
        &mut |_| {},
        &Cancel::new(),
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CommandFailed, "{error}");
    assert!(error.to_string().contains("Permission denied"), "{error}");
    assert!(!elsewhere.join("manifest.json").exists());
}

#[test]
fn a_manifest_that_changes_between_the_needed_list_and_the_stream_is_refused() {
    let sshd = TestSshd::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bundle = small_bundle(work.path());
    // A sender whose first reading of the manifest differs from the stream's
    // (one byte more): as a bundle rewritten between the two.
    let changing = work.path().join("cmw-upgrade-changing-manifest");
    fs::write(
        &changing,
        format!(
            "#!/bin/sh\ncase \" $* \" in\n  *' bundle-send '*' --manifest '*) '{BINARY}' \"$@\" | sed '1s/{{/{{ /' ;;\n  \
             *) exec '{BINARY}' \"$@\" ;;\nesac\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&changing, fs::Permissions::from_mode(0o755)).unwrap();
    let copy = work.path().join("copy");
    let output = transfer(
        &sshd,
        changing.to_str().unwrap(),
        &on(&sshd, &bundle),
        &on(&sshd, &copy),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let error = json(&output);
    assert_eq!(error["error"]["kind"], "bundle_damaged", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("changed during the transfer"), "{error}");
    assert!(!copy.join("manifest.json").exists());
    assert!(partial_files(&copy).is_empty());

    // The same through the CLI's text output, once the bundle holds still.
    let output = cmw(&[
        "bundle",
        "transfer",
        "--from",
        &on(&sshd, &bundle),
        "--to",
        &on(&sshd, &copy),
        "--identity-file",
        sshd.identity_file().to_str().unwrap(),
        "--known-hosts",
        sshd.known_hosts_file().to_str().unwrap(),
        "--remote-cmw-upgrade",
        BINARY,
        "--route",
        "through-here",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = util::stdout(&output);
    assert!(
        text.contains("Route: through here (the route through this machine was asked for)"),
        "{text}"
    );
    verified(&copy);
}

#[test]
fn a_cancelled_transfer_stops_both_sides_and_the_rerun_resumes() {
    let sshd = TestSshd::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bundle = small_bundle(work.path());
    let to = connect(&sshd, BINARY);
    let copy = work.path().join("copy");
    let request = TransferRequest {
        from: BundleEnd::Local {
            root: "/".into(),
            dir: bundle.to_str().unwrap().to_owned(),
        },
        to: remote(&to, &copy),
        route: Route::Auto,
        direct: None,
    };
    // Stopped at the receiver's first progress line.
    let cancel = Cancel::new();
    let stop = cancel.clone();
    let error = transfer_bundle(&request, &mut |_| stop.cancel(), &cancel).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Cancelled, "{error}");
    assert!(error.to_string().contains("resumes"), "{error}");
    assert!(!copy.join("manifest.json").exists());

    let report = transfer_bundle(&request, &mut |_| {}, &Cancel::new()).unwrap();
    assert_eq!(report.route_taken, RouteTaken::ThroughHere, "{report:?}");
    assert_eq!(report.sent_files + report.skipped_files, report.files);
    assert!(partial_files(&copy).is_empty());
    verified(&copy);
}
