//! `cmw-upgrade backup`, `backup verify|drift|import` and `restore` end to end:
//! exit codes, JSON shapes, a kill -9 in the middle, the progress line.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod util;

use cmw_upgrade_core::OsFamily;
use cmw_upgrade_tests::{write_new_server, DatabaseSpec, ServerSpec};
use util::{backups_in, cmw, cmw_in, json, server, server_path_of, stderr, stdout};

/// `cmw-upgrade --root ROOT [--json] backup --instance prod --dest DEST`, DEST
/// a path in the tree.
fn backup_to(root: &Path, dest: &Path, json: bool) -> std::process::Output {
    let dest = server_path_of(root, dest);
    let mut args = vec!["backup", "--instance", "prod", "--dest", &dest];
    if json {
        args.insert(0, "--json");
    }
    cmw_in(root, &args)
}

fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[test]
fn backup_verify_drift_and_restore_from_the_command_line() {
    let old = server(ServerSpec::default());
    let bundle = backups_in(old.path()).join("prod-bundle");
    // Under --root a bundle is named by its server path; without, as it is.
    let bundle_arg = "/srv/backups/prod-bundle";
    let host_arg = bundle.to_str().unwrap().to_owned();

    let output = backup_to(old.path(), &bundle, false);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("crash-consistent"), "{text}");
    // The hint to check it again names the same root, so it pastes as is.
    let hint = format!(
        "cmw-upgrade --root {} backup verify /srv/backups/prod-bundle",
        old.path().display()
    );
    assert!(text.contains(&hint), "{text}");

    let output = cmw(&["--json", "backup", "verify", &host_arg]);
    assert_eq!(output.status.code(), Some(0));
    let mut under_root = json(&cmw_in(
        old.path(),
        &["--json", "backup", "verify", bundle_arg],
    ));
    // Under --root the report names the root once; the rest is the same.
    assert_eq!(under_root["root"], old.path().to_str().unwrap());
    under_root.as_object_mut().unwrap().remove("root");
    assert_eq!(
        under_root,
        json(&output),
        "the same bundle, named both ways"
    );
    let climbing = cmw_in(old.path(), &["backup", "verify", "/srv/../../etc"]);
    assert_eq!(climbing.status.code(), Some(2), "{}", stderr(&climbing));
    let relative = cmw_in(old.path(), &["backup", "verify", "srv/backups/prod-bundle"]);
    assert_eq!(relative.status.code(), Some(2), "{}", stderr(&relative));
    assert!(
        stderr(&relative).contains("absolute"),
        "{}",
        stderr(&relative)
    );
    let report = json(&output);
    assert_eq!(
        keys(&report),
        ["changed", "changed_files", "extra", "missing", "ok"]
    );
    assert_eq!(report["changed"], false, "a verify changes nothing");
    assert_eq!(report["ok"], true);

    let output = cmw_in(
        old.path(),
        &[
            "--json",
            "backup",
            "drift",
            bundle_arg,
            "--instance",
            "prod",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let drift = json(&output);
    assert_eq!(drift["changed_files"], serde_json::json!([]));
    assert_eq!(drift["changed"], false);
    let database = old.path().join("var/lib/comindware/prod/Database");
    fs::write(database.join("db/late-write.bin"), "after the backup").unwrap();
    let output = cmw_in(
        old.path(),
        &["backup", "drift", bundle_arg, "--instance", "prod"],
    );
    assert_eq!(output.status.code(), Some(1), "drift found means exit 1");
    assert!(
        stdout(&output).contains("added    db/late-write.bin"),
        "{}",
        stdout(&output)
    );

    fs::write(bundle.join("database/db/extra.bin"), "x").unwrap();
    let output = cmw(&["--json", "backup", "verify", &host_arg]);
    assert_eq!(output.status.code(), Some(1), "damage means exit 1");
    assert_eq!(
        json(&output)["extra"],
        serde_json::json!(["database/db/extra.bin"])
    );
    fs::remove_file(bundle.join("database/db/extra.bin")).unwrap();

    let new = tempfile::tempdir().unwrap();
    write_new_server(new.path(), OsFamily::Deb, "prod", "5.0.1234.0", false).unwrap();
    let new_database = new.path().join("var/lib/comindware/prod/Database");
    // A fresh database, as Ignite lays one out.
    fs::create_dir_all(new_database.join("db")).unwrap();
    fs::write(new_database.join("db/fresh.bin"), "fresh").unwrap();
    // The bundle brought to the new server, at the same server path.
    fs::rename(&bundle, backups_in(new.path()).join("prod-bundle")).unwrap();
    let output = cmw_in(new.path(), &["restore", bundle_arg, "--instance", "prod"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--replace"), "{}", stderr(&output));
    let output = cmw_in(
        new.path(),
        &[
            "--json",
            "restore",
            bundle_arg,
            "--instance",
            "prod",
            "--replace",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["owner"], "www-data:www-data");
    assert!(report["parts"][0]["moved_aside"]
        .as_str()
        .unwrap()
        .contains("Database.before-restore-"));
    assert!(new_database.join("db").is_dir());
    assert!(!new_database.join("db/fresh.bin").exists());
}

#[test]
fn errors_exit_2_and_leave_nothing_behind() {
    let old = server(ServerSpec::default());
    let work = tempfile::tempdir().unwrap();
    let existing = backups_in(old.path()).join("existing");
    fs::create_dir(&existing).unwrap();
    let output = backup_to(old.path(), &existing, true);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(json(&output)["error"]["kind"], "already_exists");
    let output = cmw(&["backup", "verify", work.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("manifest.json"),
        "{}",
        stderr(&output)
    );
    let output = cmw(&["backup", "--dest", "/tmp/x"]);
    assert_eq!(output.status.code(), Some(2), "--instance is required");
}

#[test]
fn a_backup_killed_mid_copy_never_looks_finished_and_a_rerun_completes() {
    // Large enough that the copy takes far longer than noticing it started.
    let old = server(ServerSpec {
        database: DatabaseSpec {
            entities: 20,
            files_per_group: 3,
            bytes_per_file: 1 << 20,
            ..DatabaseSpec::default()
        },
        ..ServerSpec::default()
    });
    let bundle = backups_in(old.path()).join("bundle");
    let partial = bundle.with_extension("partial");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cmw-upgrade"))
        .args([
            "--root",
            old.path().to_str().unwrap(),
            "backup",
            "--instance",
            "prod",
            "--dest",
            "/srv/backups/bundle",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !partial.join("database/db").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the copy never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup runs.
    child.wait().unwrap();
    assert!(
        !bundle.exists(),
        "the copy finished before the kill; the test needs a bigger database"
    );
    assert!(partial.exists(), "the leftover stays until the next run");

    let output = backup_to(old.path(), &bundle, true);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!partial.exists());
    let output = cmw(&["--json", "backup", "verify", bundle.to_str().unwrap()]);
    assert_eq!(json(&output)["ok"], true);
}

#[test]
fn import_turns_a_platform_backup_into_a_bundle() {
    let work = tempfile::tempdir().unwrap();
    let cdbbz = work.path().join("prod.cdbbz");
    let mut writer = zip::ZipWriter::new(fs::File::create(&cdbbz).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (name, content) in [("Database/db/part-0.bin", "data"), ("Scripts/a.cs", "// a")] {
        writer.start_file(name, options).unwrap();
        std::io::Write::write_all(&mut writer, content.as_bytes()).unwrap();
    }
    writer.finish().unwrap();
    let bundle = work.path().join("imported");
    let output = cmw(&[
        "--json",
        "backup",
        "import",
        cdbbz.to_str().unwrap(),
        "--dest",
        bundle.to_str().unwrap(),
        "--instance",
        "prod",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json(&output)["method"], "import");
    assert_eq!(
        fs::read_to_string(bundle.join("database/Scripts/a.cs")).unwrap(),
        "// a"
    );
}

#[test]
fn a_terminal_gets_a_progress_line_and_help_teaches() {
    let old = server(ServerSpec::default());
    let bundle = backups_in(old.path()).join("bundle");
    // `script` gives the command a terminal; the progress line goes to stderr there.
    let command = format!(
        "{} --root {} backup --instance prod --dest /srv/backups/bundle",
        env!("CARGO_BIN_EXE_cmw-upgrade"),
        old.path().display(),
    );
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        ["scanning", "copying", "verifying", "flushing"]
            .iter()
            .any(|phase| text.contains(&format!("\r\x1b[2K{phase}"))),
        "a redrawn progress line: {text:?}"
    );
    assert!(text.contains("Bundle "), "{text}");
    assert!(Path::new(&bundle).join("manifest.json").is_file());

    let help = stdout(&cmw(&["backup", "--help"]));
    for needle in [
        "manifest.json",
        "DIR.partial",
        "--method snapshot",
        "crash-consistent",
        "Exit codes",
        "Examples:",
    ] {
        assert!(
            help.contains(needle),
            "backup --help lacks {needle}:\n{help}"
        );
    }
    let help = stdout(&cmw(&["restore", "--help"]));
    assert!(
        help.contains("aside") && help.contains("--replace"),
        "{help}"
    );
}

#[test]
fn an_unreadable_file_names_the_path_and_leaves_nothing() {
    use std::os::unix::fs::PermissionsExt;
    // Run as an unprivileged user (nobody), as an admin who forgot sudo would.
    let work = tempfile::tempdir().unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = work.path().join("server");
    cmw_upgrade_tests::write_server(&root, &ServerSpec::default()).unwrap();
    let secret = root.join("var/lib/comindware/prod/Database/db/marshaller/secret.bin");
    fs::write(&secret, "root only").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let bundles = root.join("bundles");
    fs::create_dir(&bundles).unwrap();
    fs::set_permissions(&bundles, fs::Permissions::from_mode(0o777)).unwrap();
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_cmw-upgrade"))
        .arg("--root")
        .arg(&root)
        .args(["backup", "--family", "deb", "--instance", "prod", "--dest"])
        .arg("/bundles/prod")
        .output()
        .unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("secret.bin") && message.contains("Permission denied"),
        "{message}"
    );
    assert_eq!(
        fs::read_dir(&bundles).unwrap().count(),
        0,
        "the partial bundle is removed"
    );
}

/// `backup` with a `systemctl` that says whether the instance runs (`code`:
/// 0 active, 3 inactive), first on PATH.
fn backup_with_service(
    root: &Path,
    dest: &Path,
    code: i32,
    extra: &[&str],
) -> std::process::Output {
    let bin = tempfile::tempdir().unwrap();
    let systemctl = bin.path().join("systemctl");
    fs::write(&systemctl, format!("#!/bin/sh\nexit {code}\n")).unwrap();
    fs::set_permissions(
        &systemctl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(env!("CARGO_BIN_EXE_cmw-upgrade"))
        .env("PATH", path)
        .arg("--root")
        .arg(root)
        .args(["backup", "--instance", "prod", "--dest"])
        .arg(server_path_of(root, dest))
        .args(extra)
        .output()
        .unwrap()
}

/// A running instance is backed up consistently: by default with an Ignite
/// snapshot; a file copy of it must be accepted as crash-consistent in so many words.
#[test]
fn a_copy_of_a_running_instance_must_be_accepted_as_crash_consistent() {
    let old = server(ServerSpec::default());
    let work = tempfile::TempDir::new_in(backups_in(old.path())).unwrap();

    let refused = backup_with_service(old.path(), &work.path().join("a"), 0, &["--method", "copy"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--accept-crash-consistent"),
        "{}",
        stderr(&refused)
    );
    assert!(!work.path().join("a").exists(), "nothing written");

    // By default a running instance gets a snapshot: here, with no Ignite
    // control script on the fixture, that fails before anything is written.
    let snapshot = backup_with_service(old.path(), &work.path().join("b"), 0, &[]);
    assert_eq!(snapshot.status.code(), Some(2), "{}", stdout(&snapshot));
    assert!(
        stderr(&snapshot).contains("control.sh"),
        "{}",
        stderr(&snapshot)
    );

    let accepted = backup_with_service(
        old.path(),
        &work.path().join("c"),
        0,
        &["--method", "copy", "--accept-crash-consistent"],
    );
    assert_eq!(accepted.status.code(), Some(0), "{}", stderr(&accepted));
    assert!(stdout(&accepted).contains("crash-consistent"));

    // A stopped instance is copied by default: consistent, nothing to accept.
    let stopped = backup_with_service(old.path(), &work.path().join("d"), 3, &["--json"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", stderr(&stopped));
}
