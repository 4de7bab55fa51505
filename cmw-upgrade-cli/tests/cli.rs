//! The `cmw-upgrade` binary end to end: output, JSON shapes, exit codes, errors.

use std::fs;
use std::path::Path;

mod util;

use std::process::Output;

use cmw_upgrade_tests::{upgrade_logs, DatabaseSpec, ServerSpec, UpgradeLogState};
use serde_json::Value;
use util::{backup_bundle, backups_in, cmw, cmw_in, json, server, stderr, stdout};

#[test]
fn detect_reports_family_owner_and_layout() {
    for (family, distro, owner, site) in [
        (
            "deb",
            "astra",
            "www-data",
            "etc/nginx/sites-available/comindwareprod",
        ),
        ("rpm", "redos", "nginx", "etc/nginx/conf.d/comindwareprod"),
        (
            "alt",
            "altlinux",
            "_nginx",
            "etc/nginx/sites-available.d/comindwareprod",
        ),
    ] {
        let dir = server(ServerSpec {
            family: family.parse().unwrap(),
            ..ServerSpec::default()
        });
        let output = cmw_in(dir.path(), &["--json", "detect", "--instance", "prod"]);
        assert!(output.status.success(), "{}", stderr(&output));
        let report = json(&output);
        assert_eq!(report["family"], family);
        assert_eq!(report["distro"], distro);
        assert_eq!(report["web_owner"]["user"], owner);
        let layout = &report["layout"];
        // Under --root the paths are the server's, and the root is named once.
        assert_eq!(report["root"], dir.path().to_str().unwrap());
        assert_eq!(layout["nginx_site"], format!("/{site}"));
        assert_eq!(
            layout["database"]["path"],
            "/var/lib/comindware/prod/Database"
        );
        assert_eq!(layout["data_owner"]["user"], owner);
        assert_eq!(layout["units"][0]["name"], "comindwareprod");

        let text = cmw_in(dir.path(), &["detect", "--instance", "prod"]);
        assert!(
            stdout(&text).contains(&format!("{family} ({distro}")),
            "{}",
            stdout(&text)
        );
        assert!(
            stdout(&text).contains("databasePath in"),
            "{}",
            stdout(&text)
        );
    }
}

#[test]
fn detect_with_an_explicit_os_release_file_and_family_override() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("os-release");
    fs::write(&file, "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n").unwrap();
    let output = cmw(&["--json", "detect", "--os-release", file.to_str().unwrap()]);
    assert_eq!(json(&output)["family"], "rpm");

    fs::write(&file, "ID=gentoo\n").unwrap();
    let unknown = cmw(&["detect", "--os-release", file.to_str().unwrap()]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("ID=\"gentoo\""),
        "{}",
        stderr(&unknown)
    );
    assert!(
        stderr(&unknown).contains("--family"),
        "the message says what to do: {}",
        stderr(&unknown)
    );

    let forced = cmw(&[
        "--json",
        "detect",
        "--os-release",
        file.to_str().unwrap(),
        "--family",
        "rpm",
    ]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(json(&forced)["family"], "rpm");
    assert_eq!(json(&forced)["family_source"], "--family");
}

#[test]
fn detect_without_os_release_says_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let output = cmw_in(dir.path(), &["--json", "detect"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--os-release FILE"),
        "{}",
        stderr(&output)
    );
    assert_eq!(json(&output)["error"]["kind"], "no_os_release");
}

#[test]
fn bad_instance_names_are_rejected_before_anything_runs() {
    for name in ["../etc", "a b", "-rf", "", "x$y"] {
        let argument = format!("--instance={name}");
        let output = cmw(&["detect", &argument]);
        assert_eq!(output.status.code(), Some(2), "{name:?}");
        assert!(
            stderr(&output).contains("invalid instance name"),
            "{name:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn verdict_exit_codes_follow_the_upgrade_state() {
    for (state, verdict, code) in [
        (UpgradeLogState::Succeeded, "succeeded", 0),
        (UpgradeLogState::Failed, "failed", 1),
        (UpgradeLogState::InProgress, "in_progress", 3),
        (UpgradeLogState::NotStarted, "not_started", 3),
    ] {
        let dir = server(ServerSpec {
            upgrade_logs: state,
            ..ServerSpec::default()
        });
        let output = cmw_in(
            dir.path(),
            &["--json", "logs", "verdict", "--instance", "prod"],
        );
        assert_eq!(
            output.status.code(),
            Some(code),
            "{state:?}: {}",
            stderr(&output)
        );
        let report = json(&output);
        assert_eq!(report["verdict"], verdict);
        if state == UpgradeLogState::Failed {
            let error = &report["errors"][0];
            assert_eq!(error["file"], "upgrade2026-11-24.log");
            assert_eq!(error["line"], 4);
            assert_eq!(error["level"], "ERROR");
            assert_eq!(error["reason"], "level");
            assert!(error["message"]
                .as_str()
                .unwrap()
                .contains("MigrateStreams"));
            let text = cmw_in(dir.path(), &["logs", "verdict", "--instance", "prod"]);
            assert!(stdout(&text).contains("FAILED"));
            assert!(stdout(&text).contains("restore the database from the backup"));
            assert!(stdout(&text).contains("upgrade2026-11-24.log:4: ERROR [level]"));
        } else {
            assert_eq!(report["errors"], Value::Array(Vec::new()));
        }
    }
}

#[test]
fn verdict_reads_the_seed_s_log_folder_too() {
    let dir = server(ServerSpec {
        log_folder_name: "Log".into(),
        ..ServerSpec::default()
    });
    fs::remove_file(dir.path().join("var/www/prod/adapterhost.yml")).unwrap();
    let output = cmw_in(
        dir.path(),
        &["--json", "logs", "verdict", "--instance", "prod"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(json(&output)["log_dir"]
        .as_str()
        .unwrap()
        .ends_with("prod/Log"));
}

/// `--since`: an earlier attempt's records (a retry's folder) give no verdict.
#[test]
fn verdict_since_a_moment_ignores_earlier_records() {
    let dir = server(ServerSpec::default());
    let succeeded = cmw_in(dir.path(), &["logs", "verdict", "--instance", "prod"]);
    assert_eq!(succeeded.status.code(), Some(0), "{}", stderr(&succeeded));
    let later = cmw_in(
        dir.path(),
        &[
            "--json",
            "logs",
            "verdict",
            "--instance",
            "prod",
            "--since",
            "2999-01-01 00:00:00",
        ],
    );
    assert_eq!(
        later.status.code(),
        Some(3),
        "not finished: {}",
        stdout(&later)
    );
    assert_ne!(json(&later)["verdict"], "succeeded");
    let typo = cmw_in(
        dir.path(),
        &[
            "logs",
            "verdict",
            "--instance",
            "prod",
            "--since",
            "yesterday",
        ],
    );
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        stderr(&typo).contains("YYYY-MM-DD HH:MM:SS"),
        "{}",
        stderr(&typo)
    );
}

#[test]
fn verdict_needs_exactly_one_source_and_an_existing_folder() {
    assert_eq!(cmw(&["logs", "verdict"]).status.code(), Some(2));
    assert_eq!(
        cmw(&["logs", "verdict", "--instance", "a", "--log-dir", "/tmp"])
            .status
            .code(),
        Some(2)
    );
    let missing = cmw(&["logs", "verdict", "--log-dir", "/nonexistent/cmw/Logs"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("/nonexistent/cmw/Logs"),
        "{}",
        stderr(&missing)
    );
    // A log it cannot decode is an error to fix, also while waiting: never an endless wait.
    let dir = tempfile::tempdir().unwrap();
    let utf32 = dir.path().join("upgrade2026-11-27.log");
    fs::write(&utf32, b"\xff\xfe\x00\x002\x00\x00\x00").unwrap();
    let log_dir = dir.path().to_str().unwrap();
    for wait in [&[][..], &["--wait", "1h"]] {
        let unreadable = cmw(&[&["logs", "verdict", "--log-dir", log_dir][..], wait].concat());
        assert_eq!(unreadable.status.code(), Some(2));
        assert!(
            stderr(&unreadable).contains(utf32.to_str().unwrap()),
            "{}",
            stderr(&unreadable)
        );
    }
    let bad_wait = cmw(&["logs", "verdict", "--log-dir", "/tmp", "--wait", "soon"]);
    assert_eq!(bad_wait.status.code(), Some(2));
    assert!(
        stderr(&bad_wait).contains("e.g. 90s"),
        "{}",
        stderr(&bad_wait)
    );
}

#[test]
fn waiting_returns_as_soon_as_the_upgrade_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().to_path_buf();
    let in_progress = upgrade_logs(UpgradeLogState::InProgress);
    for (name, content) in &in_progress {
        fs::write(logs.join(name), content).unwrap();
    }
    let writer = {
        let logs = logs.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            for (name, content) in upgrade_logs(UpgradeLogState::Succeeded) {
                fs::write(logs.join(name), content).unwrap();
            }
        })
    };
    let output = cmw(&[
        "--json",
        "logs",
        "verdict",
        "--log-dir",
        logs.to_str().unwrap(),
        "--wait",
        "60s",
        "--interval",
        "50ms",
    ]);
    writer.join().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["verdict"], "succeeded");
    assert!(report["waited_seconds"].as_f64().unwrap() < 30.0);
}

#[test]
fn waiting_gives_up_with_not_finished() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in upgrade_logs(UpgradeLogState::InProgress) {
        fs::write(dir.path().join(name), content).unwrap();
    }
    let output = cmw(&[
        "logs",
        "verdict",
        "--log-dir",
        dir.path().to_str().unwrap(),
        "--wait",
        "200ms",
        "--interval",
        "50ms",
    ]);
    assert_eq!(output.status.code(), Some(3));
    assert!(stdout(&output).contains("IN PROGRESS"));
}

#[test]
fn prune_check_then_prune() {
    let dir = server(ServerSpec {
        database: DatabaseSpec {
            node_folders: 2,
            ..DatabaseSpec::default()
        },
        ..ServerSpec::default()
    });
    let database = dir.path().join("var/lib/comindware/prod/Database");
    let target = database.to_str().unwrap();
    let check = cmw(&["--json", "prune-caches", target, "--check"]);
    assert!(check.status.success(), "{}", stderr(&check));
    let planned = json(&check);
    assert_eq!(planned["check"], true);
    let removed: Vec<&str> = planned["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(removed.len(), 32);
    let mut sorted = removed.clone();
    sorted.sort();
    assert_eq!(removed, sorted, "paths are sorted");
    assert!(
        removed.iter().all(|path| !path.starts_with('/')),
        "paths are relative to DIR"
    );
    assert!(database.join(removed[0]).exists(), "check removes nothing");

    let text = cmw(&["prune-caches", target, "--check"]);
    assert!(
        stdout(&text).contains("Would remove 32 entries"),
        "{}",
        stdout(&text)
    );

    let prune = cmw(&["--json", "prune-caches", target]);
    assert!(prune.status.success(), "{}", stderr(&prune));
    let done = json(&prune);
    assert_eq!(done["removed"], planned["removed"]);
    assert_eq!(done["bytes_freed"], planned["bytes_freed"]);
    assert!(!database.join(removed[0]).exists());
}

#[test]
fn prune_refuses_the_wrong_folder() {
    let dir = server(ServerSpec::default());
    let streams = dir.path().join("var/lib/comindware/prod/Streams");
    let output = cmw(&["--json", "prune-caches", streams.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no Ignite node folder"),
        "{}",
        stderr(&output)
    );
    assert_eq!(json(&output)["error"]["kind"], "no_ignite_node_folder");
}

#[test]
fn help_teaches_each_command() {
    let help = |args: &[&str]| {
        stdout(&cmw(args))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let top = help(&["--help"]);
    for word in [
        "detect",
        "logs",
        "prune-caches",
        "Exit codes",
        "--root",
        "--json",
    ] {
        assert!(top.contains(word), "--help lacks {word}: {top}");
    }
    let prune = help(&["prune-caches", "--help"]);
    for word in [
        "cacheGroup-*-TableIdentity",
        "snapshots",
        "--check",
        "Examples",
    ] {
        assert!(prune.contains(word), "prune-caches --help lacks {word}");
    }
    let verdict = help(&["logs", "verdict", "--help"]);
    for word in [
        "Upgrade completed",
        "--wait",
        "Exit codes",
        "restore the database",
    ] {
        assert!(verdict.contains(word), "logs verdict --help lacks {word}");
    }
}

/// `cmw-upgrade --root NEW config migrate --from FROM --instance prod ARGS...`;
/// `--json` in ARGS goes before the command, where global options belong.
fn migrate_cmd(new: &Path, from: &str, args: &[&str]) -> Output {
    let mut full: Vec<&str> = args
        .iter()
        .copied()
        .filter(|arg| *arg == "--json")
        .collect();
    full.extend(["config", "migrate", "--from", from, "--instance", "prod"]);
    full.extend(args.iter().copied().filter(|arg| *arg != "--json"));
    cmw_in(new, &full)
}

/// Where the old server's files are on the new one in the migration tests
/// (`--from` is a server path, placed under `--root` like every other).
const OLD_FILES: &str = "/srv/old-server";

/// The new server's tree, and in it (at [`OLD_FILES`]) the old server's files.
fn migration_servers() -> (std::path::PathBuf, tempfile::TempDir) {
    let new = tempfile::tempdir().unwrap();
    let old = new.path().join(OLD_FILES.trim_start_matches('/'));
    cmw_upgrade_tests::write_server(&old, &ServerSpec::default()).unwrap();
    cmw_upgrade_tests::write_new_server(
        new.path(),
        "deb".parse().unwrap(),
        "prod",
        "5.0.1234.0",
        false,
    )
    .unwrap();
    (old, new)
}

fn snapshot(root: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push((path.clone(), fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn config_migrate_check_shows_diffs_and_writes_nothing() {
    let (_old, new) = migration_servers();
    let before = snapshot(new.path());
    let from = OLD_FILES;
    let output = migrate_cmd(new.path(), from, &["--check"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("--- a/usr/share/comindware/configs/instance/prod.yml"),
        "{text}"
    );
    assert!(text.contains("+nodeName: cmw-node-01"), "{text}");
    assert!(text.contains("Nothing was written (--check)"));
    assert!(
        !text.contains("journal-secret") && !text.contains("kafka-secret"),
        "secrets leaked: {text}"
    );
    assert_eq!(snapshot(new.path()), before);

    let output = migrate_cmd(new.path(), from, &["--json", "--check"]);
    let report = json(&output);
    assert_eq!(report["check"], true);
    // The text's masked diff is in the JSON too (Ansible's --diff shows it).
    let diff = report["diff"].as_str().unwrap();
    assert!(
        diff.contains("--- a/usr/share/comindware/configs/instance/prod.yml")
            && diff.contains("+nodeName: cmw-node-01"),
        "{diff}"
    );
    assert!(
        !diff.contains("journal-secret") && !diff.contains("kafka-secret"),
        "secrets leaked: {diff}"
    );
    assert!(report["written"].as_array().unwrap().is_empty());
    let change = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "userStorage.localDisk.path")
        .unwrap();
    assert_eq!(change["action"], "renamed");
    assert_eq!(change["from"], "streamsPath");
    for field in ["file", "key", "action", "old", "new"] {
        assert!(change.get(field).is_some(), "{field} missing in {change}");
    }
    // The decisions for a person are notes of their own, with a code each.
    let to_do = report["to_do"].as_array().unwrap();
    assert!(
        to_do.iter().any(|note| note["code"] == "worker_switch"
            && note["key"] == "SyncThread"
            && note["action_needed"] == true),
        "{to_do:?}"
    );
    assert!(!report["warnings"].as_array().unwrap().is_empty());
    assert_eq!(report["errors"], Value::Array(Vec::new()));
}

/// `--check` checks what the write would: the migrated site through the real
/// `nginx -t` in the new server's nginx configuration.
#[test]
fn config_migrate_check_runs_nginx_t_on_the_candidate_site() {
    let (_old, new) = migration_servers();
    let site = new.path().join("etc/nginx/sites-available/comindwareprod");
    let text = fs::read_to_string(&site).unwrap().replacen(
        "proxy_set_header Host $host;",
        "proxy_set_header Host $host;\n        add_header X-Test $no_such_variable;",
        1,
    );
    fs::write(&site, text).unwrap();
    let before = snapshot(new.path());
    let from = OLD_FILES;
    let output = migrate_cmd(new.path(), from, &["--json", "--check"]);
    let report = json(&output);
    let errors = report["errors"].to_string();
    assert!(
        errors.contains("nginx -t") && errors.contains("no_such_variable"),
        "{errors}"
    );
    assert!(!output.status.success());
    assert_eq!(snapshot(new.path()), before, "a check writes nothing");
}

#[test]
fn config_migrate_writes_with_backups_then_changes_nothing() {
    let (_old, new) = migration_servers();
    let from = OLD_FILES;
    let output = migrate_cmd(new.path(), from, &["--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    let written = report["written"].as_array().unwrap();
    assert_eq!(written.len(), 6, "{report}");
    for file in written {
        let backup = new
            .path()
            .join(file["backup"].as_str().unwrap().trim_start_matches('/'));
        assert!(backup.is_file(), "{}", backup.display());
    }
    let again = cmw_in(
        new.path(),
        &["config", "migrate", "--from", from, "--instance", "prod"],
    );
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("Nothing to write"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn config_migrate_errors_exit_2_and_write_nothing() {
    let (old, new) = migration_servers();
    fs::write(
        old.join("var/www/prod/apigateway.yml"),
        "cluster.name: other\n",
    )
    .unwrap();
    let before = snapshot(new.path());
    let from = OLD_FILES;
    let output = cmw_in(
        new.path(),
        &["config", "migrate", "--from", from, "--instance", "prod"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stdout(&output).contains("cluster.name") && stdout(&output).contains("--fix"),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("Nothing was written"));
    assert_eq!(snapshot(new.path()), before);
    let fixed = migrate_cmd(new.path(), from, &["--fix"]);
    assert!(fixed.status.success(), "{}", stdout(&fixed));
}

/// `cmw-upgrade agent`: one answer line per request, errors with their real
/// kind, a malformed line answered with `bad_request`, exit 0 when stdin ends.
#[test]
fn the_agent_answers_one_json_line_per_request() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let old = server(ServerSpec::default());
    let bundle = old.path().join("mnt/backup/prod");
    fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    let output = backup_bundle(old.path(), &bundle);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // Damage one file of the bundle: a restore must refuse it, kind kept.
    let damaged = fs::read_dir(bundle.join("database"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.is_dir())
        .unwrap();
    fs::write(damaged.join("planted.bin"), "not in the manifest").unwrap();

    let requests = [
        r#"{"protocol":1,"action":{"kind":"verdict","log_dir":"/var/log/comindware/prod/Logs"}}"#,
        "nonsense",
        r#"{"protocol":1,"action":{"kind":"restore","bundle":"/mnt/backup/prod","instance":"prod","family":"deb"}}"#,
        r#"{"protocol":2,"action":{"kind":"hello"}}"#,
    ];
    let mut agent = Command::new(env!("CARGO_BIN_EXE_cmw-upgrade"))
        .arg("--root")
        .arg(old.path())
        .arg("agent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = agent.stdin.take().unwrap();
    for request in requests {
        writeln!(stdin, "{request}").unwrap();
    }
    drop(stdin);
    let output = agent.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let answers: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(answers.len(), requests.len(), "{answers:?}");
    assert_eq!(answers[0]["ok"], true, "{}", answers[0]);
    assert_eq!(answers[0]["outcome"]["kind"], "verdict");
    assert_eq!(answers[0]["outcome"]["verdict"], "succeeded");
    assert_eq!(answers[1]["ok"], false);
    assert_eq!(answers[1]["error"]["kind"], "bad_request");
    assert_eq!(answers[2]["ok"], false);
    assert_eq!(
        answers[2]["error"]["kind"], "bundle_damaged",
        "{}",
        answers[2]
    );
    assert!(answers[2]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("planted.bin"));
    assert_eq!(answers[3]["error"]["kind"], "bad_request");
}

/// A rollback of an instance with no recorded run changes nothing on the
/// server: no state folder, no lock file.
#[test]
fn a_rollback_with_no_run_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let output = cmw_in(dir.path(), &["--json", "rollback", "--instance", "nothere"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(json(&output)["error"]["kind"], "state_conflict");
    assert!(!dir.path().join("var/lib/cmw-upgrade").exists());
}

/// `--root` of a mounted copy: its absolute links lead into the copy, never to
/// this machine's files (`/etc/os-release -> /usr/lib/os-release` is common).
#[test]
fn a_root_s_absolute_links_stay_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    fs::write(
        root.join("usr/lib/os-release"),
        "NAME=\"RED OS\"\nID=\"redos\"\nID_LIKE=\"rhel centos fedora\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("/usr/lib/os-release", root.join("etc/os-release")).unwrap();
    let output = cmw_in(root, &["--json", "detect"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // This machine is Debian (deb); the copy is RED OS.
    assert_eq!(json(&output)["family"], "rpm", "{}", stdout(&output));
}

/// The texts the packages install come from the binary itself.
#[test]
fn completions_man_pages_and_version_come_from_the_binary() {
    let version = cmw(&["--version"]);
    assert!(version.status.success());
    let version = stdout(&version);
    assert!(
        version.starts_with(&format!(
            "cmw-upgrade {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
    );
    for (shell, check) in [("bash", Some("bash")), ("zsh", None), ("fish", None)] {
        let output = cmw(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        for word in ["cmw-upgrade", "rollback", "--instance"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        if let Some(interpreter) = check {
            // The script must at least parse in its shell.
            let file = tempfile::NamedTempFile::new().unwrap();
            fs::write(file.path(), &script).unwrap();
            let parsed = std::process::Command::new(interpreter)
                .arg("-n")
                .arg(file.path())
                .status()
                .unwrap();
            assert!(parsed.success(), "{shell} completion does not parse");
        }
    }
    let page = stdout(&cmw(&["man"]));
    assert!(page.contains(".TH cmw-upgrade 1") && page.contains("rollback"));
    let dir = tempfile::tempdir().unwrap();
    let output = cmw(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    for page in [
        "cmw-upgrade.1",
        "cmw-upgrade-run.1",
        "cmw-upgrade-logs-verdict.1",
    ] {
        let text = fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    assert!(
        !dir.path().join("cmw-upgrade-agent.1").exists(),
        "hidden commands get no page"
    );
    let typo = cmw(&["completions", "tcsh"]);
    assert_eq!(typo.status.code(), Some(2));
}

/// `check` is healthy only with a 200, at least one heartbeat log, and no
/// error in them; a URL it cannot check is bad input (2), not bad news (1).
#[test]
fn check_needs_an_answer_and_a_heartbeat_log() {
    use std::io::{Read, Write};
    let dir = server(ServerSpec::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut request = [0_u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let url = format!("http://127.0.0.1:{port}/api/health");
    let logs = dir.path().join("var/log/comindware/prod/Logs");
    let healthy = cmw_in(dir.path(), &["check", "--instance", "prod", "--url", &url]);
    assert_eq!(healthy.status.code(), Some(0), "{}", stdout(&healthy));
    assert!(
        stdout(&healthy).contains("heartbeat logs: 1 scanned, 0 error records"),
        "{}",
        stdout(&healthy)
    );
    for entry in fs::read_dir(&logs).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("heartbeat")
        {
            fs::remove_file(path).unwrap();
        }
    }
    let silent = cmw_in(
        dir.path(),
        &["--json", "check", "--instance", "prod", "--url", &url],
    );
    assert_eq!(silent.status.code(), Some(1), "{}", stdout(&silent));
    let report = json(&silent);
    assert_eq!(report["heartbeat_logs"], 0);
    assert_eq!(report["ok"], false);
    let unsupported = cmw_in(
        dir.path(),
        &[
            "check",
            "--instance",
            "prod",
            "--url",
            "https://127.0.0.1/api/health",
        ],
    );
    assert_eq!(
        unsupported.status.code(),
        Some(2),
        "{}",
        stderr(&unsupported)
    );
    assert!(stderr(&unsupported).contains("only http://"));
}

/// `instances` lists what the server has; `detect --instance` of another name
/// is a mistake (exit 2) that names them.
#[test]
fn instances_are_listed_and_a_missing_one_is_named() {
    let dir = server(ServerSpec::default());
    let listed = cmw_in(dir.path(), &["--json", "instances"]);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let report = json(&listed);
    assert_eq!(report["instances"][0]["name"], "prod");
    assert_eq!(report["instances"][0]["version"], "4.7.2890.0");
    assert_eq!(report["instances"].as_array().unwrap().len(), 1);
    let text = cmw_in(dir.path(), &["instances"]);
    assert!(stdout(&text).starts_with("prod"), "{}", stdout(&text));
    let typo = cmw_in(dir.path(), &["detect", "--instance", "prd"]);
    assert_eq!(typo.status.code(), Some(2), "{}", stdout(&typo));
    assert!(
        stderr(&typo).contains("the instances here are: prod"),
        "{}",
        stderr(&typo)
    );
    let empty = tempfile::tempdir().unwrap();
    let none = cmw_in(empty.path(), &["instances"]);
    assert_eq!(none.status.code(), Some(0));
    assert!(stdout(&none).contains("No instance is configured"));
}

/// `config migrate --from` a folder without the old server's files is a
/// mistake (exit 2) that says what was expected, and writes nothing.
#[test]
fn a_migration_from_a_folder_without_old_files_is_refused() {
    let dir = server(ServerSpec::default());
    let dest = backups_in(dir.path()).join("prod");
    let made = backup_bundle(dir.path(), &dest);
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    for (from, expected) in [
        (
            "/srv/backups/prod",
            "it is a bundle: give its config folder",
        ),
        ("/srv/backups/prod/nosuch", "it does not exist"),
        (
            "/srv/backups/prod/database",
            "give the bundle's config/ folder",
        ),
    ] {
        let output = cmw_in(
            dir.path(),
            &["config", "migrate", "--from", from, "--instance", "prod"],
        );
        assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
        assert!(stderr(&output).contains("nothing was written"));
    }
}

/// `--progress json`: stderr carries one JSON object a line (for Ansible's
/// async and other scripts), stdout the one report.
#[test]
fn progress_can_be_json_lines() {
    let dir = server(ServerSpec::default());
    backups_in(dir.path());
    let output = cmw_in(
        dir.path(),
        &[
            "--json",
            "--progress",
            "json",
            "backup",
            "--instance",
            "prod",
            "--dest",
            "/srv/backups/prod",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(json(&output)["files"].as_u64().unwrap() > 0);
    let lines: Vec<Value> = stderr(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let last = lines.last().expect("at least the final reading");
    assert_eq!(last["event"], "copy");
    assert_eq!(last["done_files"], last["total_files"]);
}

/// One contract for scripts: every `--json` report has `ok` and `changed`,
/// every refusal `{"ok": false, "error": {"kind", "message"}}` — the
/// parser's too.
#[test]
fn every_json_answer_has_ok_and_changed_or_an_error() {
    let dir = server(ServerSpec::default());
    let detect = json(&cmw_in(
        dir.path(),
        &["--json", "detect", "--instance", "prod"],
    ));
    assert_eq!(
        (&detect["ok"], &detect["changed"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    let prune = json(&cmw_in(
        dir.path(),
        &[
            "--json",
            "prune-caches",
            "/var/lib/comindware/prod/Database",
            "--check",
        ],
    ));
    assert_eq!(
        (&prune["ok"], &prune["changed"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    for args in [
        &["--json", "detect", "--bogus"][..],
        &["--json", "nosuchcommand"][..],
        &["--json", "status"][..],
    ] {
        let output = cmw(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let refusal = json(&output);
        assert_eq!(refusal["ok"], false);
        assert_eq!(refusal["error"]["kind"], "bad_arguments", "{args:?}");
        assert!(!refusal["error"]["message"].as_str().unwrap().is_empty());
    }
    let typo = json(&cmw_in(
        dir.path(),
        &["--json", "detect", "--instance", "prd"],
    ));
    assert_eq!(typo["ok"], false);
    assert_eq!(typo["error"]["kind"], "check_failed");
    // Help and the version are not refusals.
    assert_eq!(cmw(&["--version"]).status.code(), Some(0));
    assert_eq!(cmw(&["detect", "--help"]).status.code(), Some(0));
}

/// On a terminal an error is in colour; `TERM=dumb` and `NO_COLOR` get no
/// escape sequence at all (the terminal is util-linux's `script`).
#[test]
fn escape_sequences_only_where_the_terminal_takes_them() {
    let binary = env!("CARGO_BIN_EXE_cmw-upgrade");
    let on_terminal = |env: &[(&str, &str)]| -> String {
        let mut command = std::process::Command::new("script");
        command
            .args(["-qec"])
            .arg(format!("{binary} --root /nonexistent-root detect"))
            .arg("/dev/null")
            .env("TERM", "xterm")
            .env_remove("NO_COLOR");
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().expect("script (util-linux) runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let coloured = on_terminal(&[]);
    assert!(coloured.contains("\x1b[1;31merror:"), "{coloured:?}");
    for env in [[("TERM", "dumb")], [("NO_COLOR", "1")]] {
        let plain = on_terminal(&env);
        assert!(plain.contains("error:"), "{plain:?}");
        assert!(!plain.contains('\x1b'), "{env:?}: {plain:?}");
    }
}

/// Commands that change a live server say first that they need root, when
/// run as another user (here: nobody, through util-linux's setpriv); under
/// --root (a tree the user may own) they do not.
#[test]
fn commands_that_need_root_say_so_first() {
    let binary = env!("CARGO_BIN_EXE_cmw-upgrade");
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                binary,
            ])
            .args(args)
            .output()
            .expect("setpriv (util-linux) runs")
    };
    for args in [
        &[
            "run",
            "--instance",
            "prod",
            "--bundle",
            "/b",
            "--distribution",
            "/d",
            "--prerequisites",
            "/p",
        ][..],
        &["restore", "/b", "--instance", "prod"][..],
        &["rollback", "--instance", "prod", "--yes"][..],
        &["demo"][..],
    ] {
        let output = as_nobody(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains("are you root?"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let tree = as_nobody(&[
        "--root",
        "/nonexistent-tree",
        "rollback",
        "--instance",
        "prod",
        "--yes",
    ]);
    assert!(
        !stderr(&tree).contains("are you root?"),
        "{}",
        stderr(&tree)
    );
}
