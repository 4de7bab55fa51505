//! `cmw-upgrade demo --over-ssh`: the rehearsal from a control point, each
//! simulated server behind its own real sshd (openssh-server, installed by
//! `.ci/run`), this binary the agent on each.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use util::{json, stderr};

/// `demo --over-ssh --json --keep <dir>/sim …`; `shared` makes the bundle
/// folder act as storage mounted on both servers (a test hook).
fn demo_over_ssh(dir: &Path, shared: bool, extra: &[&str]) -> (Output, Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cmw-upgrade"));
    command
        .args([
            "demo",
            "--over-ssh",
            "--json",
            "--upgrade-time",
            "1s",
            "--keep",
        ])
        .arg(dir.join("sim"))
        .args(extra);
    if shared {
        command.env("CMW_UPGRADE_DEMO_SHARED_STORAGE", "1");
    }
    let output = command.output().unwrap();
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        stderr(&output)
    );
    let report = json(&output);
    (output, report)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {value}"))
}

/// Every step names its server and how it was reached; the old server's
/// steps ran through the old server's sshd, the others through the new one's.
fn check_servers(report: &Value) {
    let old = text(&report["servers"]["old"], "destination");
    let new = text(&report["servers"]["new"], "destination");
    assert_ne!(old, new);
    assert_eq!(report["servers"]["old"]["via"], "ssh");
    for step in report["steps"].as_array().unwrap() {
        let name = text(step, "name");
        let (server, destination) = (text(step, "server"), text(step, "destination"));
        match name {
            "backup-old" | "drift-old" => {
                assert_eq!((server, destination), ("old", old), "{step}");
            }
            "transfer-bundle" => {
                assert_eq!(server, "old->new", "{step}");
                assert_eq!(destination, format!("{old} -> {new}"), "{step}");
            }
            _ => assert_eq!((server, destination), ("new", new), "{step}"),
        }
    }
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {report}"))
}

/// The control point's run state: every step with its server.
fn state(dir: &Path) -> Value {
    let path = dir.join("sim/control-point/var/lib/cmw-upgrade/prod/state.json");
    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
}

/// The bundle folder on a simulated server.
fn bundles(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join("mnt/cmw-backup"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("manifest.json").is_file())
        .collect()
}

#[test]
fn the_demo_over_ssh_upgrades_from_a_control_point() {
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = demo_over_ssh(dir.path(), false, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{report:#}\n{}",
        stderr(&output)
    );
    assert_eq!(report["outcome"], "upgraded");
    check_servers(&report);
    let backup = step(&report, "backup-old");
    assert_eq!(backup["status"], "done");
    assert!(
        backup["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|command| command.as_str().unwrap().starts_with("cmw-upgrade backup ")),
        "{backup}"
    );
    assert_eq!(step(&report, "drift-old")["status"], "done");
    assert_eq!(step(&report, "final-check")["status"], "done");
    // The backup was made in the old server's tree (the agent's root there)
    // and the state on the control point says where each step ran.
    let old_root = PathBuf::from(text(&report["servers"]["old"], "root"));
    let new_root = PathBuf::from(text(&report["servers"]["new"], "root"));
    let (sent, received) = (bundles(&old_root), bundles(&new_root));
    assert_eq!((sent.len(), received.len()), (1, 1));
    // The bundle went from one server's tree to the other's, at the same path.
    assert_eq!(
        sent[0].strip_prefix(&old_root).unwrap(),
        received[0].strip_prefix(&new_root).unwrap()
    );
    assert_eq!(
        fs::read(sent[0].join("manifest.json")).unwrap(),
        fs::read(received[0].join("manifest.json")).unwrap()
    );
    let state = state(dir.path());
    for step in state["steps"].as_array().unwrap() {
        assert!(step["server"].is_string(), "{step}");
    }
    // Sent, not found in place: straight from the old server to the new one
    // (the demo lets the old server's ssh reach the new one).
    let transfer = &state["steps"][1];
    assert_eq!(transfer["name"], "transfer-bundle");
    assert_eq!(transfer["artifacts"]["route"], "direct", "{transfer}");
    // --keep: the servers, their sshd folders and the control point stay.
    assert!(dir.path().join("sim/ssh/known_hosts").is_file());
}

#[test]
fn a_failed_upgrade_over_ssh_is_rolled_back_from_the_control_point() {
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = demo_over_ssh(dir.path(), false, &["--fail-upgrade", "--family", "rpm"]);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(report["outcome"], "rolled_back");
    assert_eq!(report["family"], "rpm");
    check_servers(&report);
    assert_eq!(step(&report, "wait-upgrade")["status"], "failed");
    let rollback = step(&report, "rollback");
    assert_eq!(rollback["status"], "done", "{rollback}");
    assert_eq!(rollback["server"], "new");
    // The old server was only read: its instance is untouched.
    let old_root = PathBuf::from(text(&report["servers"]["old"], "root"));
    assert!(old_root.join("var/lib/comindware/prod/Database").is_dir());
}

#[test]
fn over_ssh_does_not_go_with_setup_only() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cmw-upgrade"))
        .args(["demo", "--over-ssh", "--setup-only", "--keep"])
        .arg(dir.path().join("sim"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

/// Without sshd the demo says to install openssh-server, exits 2 and lays
/// nothing out. sshd is hidden in a mount namespace of the run's own
/// (util-linux's unshare; the tests run as root, as the procedure does).
#[test]
fn without_sshd_the_demo_says_to_install_openssh_server() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("sim");
    let output = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(
            "for sshd in /usr/sbin/sshd /usr/bin/sshd; do \
               if [ -e \"$sshd\" ]; then mount --bind /dev/null \"$sshd\" || exit 99; fi; \
             done; exec \"$0\" demo --over-ssh --keep \"$1\"",
        )
        .arg(env!("CARGO_BIN_EXE_cmw-upgrade"))
        .arg(&keep)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_ne!(
        output.status.code(),
        Some(99),
        "sshd could not be hidden (bind mount): {}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("install openssh-server"),
        "{}",
        stderr(&output)
    );
    let laid_out = fs::read_dir(&keep).map_or(0, |listing| listing.count());
    assert_eq!(laid_out, 0, "nothing is laid out without sshd");
}

/// The text report: each step and each command labelled with its server and
/// how it was reached, as the progress lines are. Here the bundle folder acts
/// as storage both servers mount: the new server uses the bundle in place.
#[test]
fn the_text_report_labels_each_step_with_its_server() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cmw-upgrade"))
        .args(["demo", "--over-ssh", "--upgrade-time", "1s", "--keep"])
        .arg(dir.path().join("sim"))
        .env("CMW_UPGRADE_DEMO_SHARED_STORAGE", "1")
        .output()
        .unwrap();
    let text = util::stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}\n{}", stderr(&output));
    assert!(
        text.contains("from a control point over ssh: upgraded"),
        "{text}"
    );
    let label = |line: &str| {
        line.trim_start()
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("] "))
            .map(|(label, _)| label.to_owned())
    };
    let backup = text
        .lines()
        .find(|line| line.contains("backup-old "))
        .unwrap_or_else(|| panic!("{text}"));
    let old = label(backup).unwrap();
    assert!(
        old.starts_with("old ") && old.contains("@127.0.0.1:"),
        "{backup}"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with(&format!("    [{old}] $ cmw-upgrade backup "))),
        "{text}"
    );
    let final_check = text
        .lines()
        .find(|line| line.contains("final-check "))
        .unwrap();
    assert!(
        label(final_check).unwrap().starts_with("new "),
        "{final_check}"
    );
    // The progress lines on stderr name the server of each step too.
    assert!(
        stderr(&output).contains(&format!("[{old}] backup-old:")),
        "{}",
        stderr(&output)
    );
}
