//! `cmw-upgrade cutover` with the real HAProxy on loopback: traffic moves to
//! the new server under a keep-alive load with no failed request, comes back
//! with revert (also after a crash mid-apply), the config keeps the switch.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

mod util;

use cmw_upgrade_core::cutover::{self, CutoverOptions, HaproxyTarget};
use cmw_upgrade_core::executor::{Executor, LocalExecutor, ToolAction};
use cmw_upgrade_core::InstanceName;
use cmw_upgrade_tests::haproxy::{http_get, Load, LoadReport, TestBackend, TestHaproxy};
use cmw_upgrade_tests::tripwire::Tripwire;
use util::{cmw, cmw_in, json, stderr};

/// The checks before the switch that need the platform's servers, skipped by name.
const SKIP_SERVER_CHECKS: &[&str] = &["--skip-check", "new-health", "--skip-check", "old-drift"];

/// The longest a load runs: far beyond a switch, so only a hung test meets it.
const LOAD_LIMIT: Duration = Duration::from_secs(60);

/// A proxy in front of two backends, with its config and socket under a test root.
struct Rig {
    haproxy: TestHaproxy,
    root: tempfile::TempDir,
    _old: TestBackend,
    _new: TestBackend,
}

fn rig() -> Rig {
    rig_with(TestBackend::start("new").unwrap(), None)
}

/// A rig whose `new` server line points at `new_port` (default: the new backend's).
fn rig_with(new: TestBackend, new_port: Option<u16>) -> Rig {
    let root = tempfile::tempdir().unwrap();
    let old = TestBackend::start("old").unwrap();
    let haproxy = TestHaproxy::start(root.path(), old.port, new_port.unwrap_or(new.port))
        .expect("haproxy starts (is the haproxy package installed?)");
    Rig {
        haproxy,
        root,
        _old: old,
        _new: new,
    }
}

impl Rig {
    /// `cmw-upgrade --root ROOT --json cutover ACTION ...` for this proxy.
    fn cutover(&self, action: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "--json",
            "cutover",
            action,
            "--instance",
            "prod",
            "--method",
            "haproxy",
            "--haproxy-socket",
            &self.haproxy.socket,
            "--backend",
            "cmw",
            "--old-server",
            "old",
            "--new-server",
            "new",
        ];
        // The checks before the switch need the platform's servers; these
        // tests are about the proxy (cutover_around.rs runs the checks).
        args.extend_from_slice(SKIP_SERVER_CHECKS);
        args.extend_from_slice(extra);
        cmw_in(self.root.path(), &args)
    }

    fn with_config(&self, action: &str) -> std::process::Output {
        self.cutover(
            action,
            &[
                "--haproxy-config",
                &self.haproxy.config,
                "--drain-seconds",
                "2",
            ],
        )
    }

    fn saved_state(&self) -> std::path::PathBuf {
        self.root
            .path()
            .join("var/lib/cmw-upgrade/prod/cutover.json")
    }

    /// Every answer of a few fresh requests.
    fn answers(&self) -> Vec<String> {
        (0..4)
            .map(|_| http_get(self.haproxy.port).unwrap())
            .collect()
    }
}

/// The servers a load's answers came from, sorted: both when it ran through a switch.
fn servers_seen(seen: &LoadReport) -> Vec<&str> {
    let mut servers: Vec<&str> = seen.bodies.iter().map(|(body, _)| body.as_str()).collect();
    servers.sort_unstable();
    servers
}

fn assert_ok(output: &std::process::Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
    json(output)
}

fn haproxy_check(config: &Path) {
    let status = std::process::Command::new("haproxy")
        .args(["-c", "-q", "-f"])
        .arg(config)
        .status()
        .unwrap();
    assert!(status.success(), "haproxy -c refuses {}", config.display());
}

#[test]
fn apply_moves_traffic_under_load_and_revert_brings_it_back() {
    let rig = rig();
    let config_file = rig.haproxy.config_file();
    let original = fs::read_to_string(&config_file).unwrap();
    assert_eq!(rig.answers(), ["old"; 4]);

    // plan: every change listed, nothing changed.
    let plan = assert_ok(&rig.with_config("plan"));
    assert_eq!(plan["ok"], true);
    assert_eq!(plan["changed"], false);
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "check_reachable",
            "check_config",
            "save_state",
            "set_state",
            "wait_up",
            "set_state",
            "drain",
            "set_state",
            "persist_config"
        ]
    );
    assert!(plan["steps"][3]["display"]
        .as_str()
        .unwrap()
        .contains("set server cmw/new state ready"));
    assert!(!rig.saved_state().exists());
    assert_eq!(fs::read_to_string(&config_file).unwrap(), original);
    assert_eq!(rig.answers(), ["old"; 4]);

    // apply through a load that never retries.
    let load = Load::start(rig.haproxy.port, 4, LOAD_LIMIT);
    load.wait_for_answers(200);
    let applied = assert_ok(&rig.with_config("apply"));
    let seen = load.finish();
    assert_eq!(seen.failed, 0, "failed requests during apply: {seen:?}");
    // The load ran through the switch: it saw both servers.
    assert_eq!(servers_seen(&seen), ["new", "old"], "{seen:?}");
    assert_eq!(applied["changed"], true);
    assert_eq!(rig.answers(), ["new"; 4]);
    let verified = assert_ok(&rig.with_config("verify"));
    assert_eq!(verified["ok"], true, "{verified}");

    // The state before, saved 0600; the config keeps the switch, nothing else changed.
    let saved = fs::metadata(rig.saved_state()).unwrap();
    assert_eq!(saved.permissions().mode() & 0o777, 0o600);
    let switched = fs::read_to_string(&config_file).unwrap();
    assert_eq!(
        switched,
        original
            .replace(
                "inter 100ms   # the old",
                "inter 100ms disabled   # the old"
            )
            .replace("inter 100ms disabled\n", "inter 100ms\n")
    );
    haproxy_check(&config_file);
    let backups: Vec<_> = fs::read_dir(config_file.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "haproxy.cfg")
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(backups[0].starts_with("haproxy.cfg.cmw-upgrade.") && backups[0].ends_with(".bak"));
    assert_eq!(
        fs::read_to_string(config_file.with_file_name(&backups[0])).unwrap(),
        original
    );

    // A second apply changes nothing.
    let again = assert_ok(&rig.with_config("apply"));
    assert_eq!(again["changed"], false, "{again}");

    // revert under load: the old server serves again, the config is as it was.
    let load = Load::start(rig.haproxy.port, 4, LOAD_LIMIT);
    load.wait_for_answers(200);
    let reverted = assert_ok(&rig.with_config("revert"));
    let seen = load.finish();
    assert_eq!(seen.failed, 0, "failed requests during revert: {seen:?}");
    assert_eq!(servers_seen(&seen), ["new", "old"], "{seen:?}");
    assert_eq!(reverted["changed"], true);
    assert_eq!(rig.answers(), ["old"; 4]);
    assert_eq!(fs::read_to_string(&config_file).unwrap(), original);
    assert!(!rig.saved_state().exists());
    let verify = rig.with_config("verify");
    assert_eq!(verify.status.code(), Some(1), "{}", stderr(&verify));
    assert_eq!(json(&verify)["ok"], false);
}

#[test]
fn wrong_names_are_bad_input_naming_what_exists() {
    let rig = rig();
    let mut args: Vec<String> = [
        "--json",
        "cutover",
        "plan",
        "--instance",
        "prod",
        "--method",
        "haproxy",
        "--haproxy-socket",
        &rig.haproxy.socket,
        "--backend",
        "cwm",
        "--old-server",
        "old",
        "--new-server",
        "new",
    ]
    .map(str::to_owned)
    .to_vec();
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = cmw_in(rig.root.path(), &args);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        json(&output)["error"].clone()
    };
    let error = run(&args);
    assert_eq!(error["kind"], "bad_input");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("backends with servers: cmw"),
        "{error}"
    );
    args[10] = "cmw".into();
    args[14] = "nwe".into();
    let error = run(&args);
    assert_eq!(error["kind"], "bad_input");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("\"nwe\"") && message.contains("old, new"),
        "{message}"
    );
    assert_eq!(rig.answers(), ["old"; 4]);
}

#[test]
fn an_unreachable_new_server_changes_nothing() {
    // A port nothing listens on: bound, then let go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let rig = rig_with(TestBackend::start("new").unwrap(), Some(closed_port));
    let config = fs::read(rig.haproxy.config_file()).unwrap();
    let output = rig.with_config("apply");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let error = &json(&output)["error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{closed_port}")),
        "{error}"
    );
    assert!(!rig.saved_state().exists());
    assert_eq!(fs::read(rig.haproxy.config_file()).unwrap(), config);
    assert_eq!(rig.answers(), ["old"; 4]);
}

#[test]
fn a_method_that_is_not_there_is_refused_by_the_parser() {
    let output = cmw(&["cutover", "apply", "--instance", "prod", "--method", "bgp"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("possible values: haproxy, nginx, dns"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_config_haproxy_refuses_is_never_written() {
    let rig = rig();
    let config_file = rig.haproxy.config_file();
    let broken = format!(
        "{}    no-such-directive here\n",
        fs::read_to_string(&config_file).unwrap()
    );
    fs::write(&config_file, &broken).unwrap();
    let output = rig.with_config("apply");
    assert_eq!(output.status.code(), Some(2));
    let error = &json(&output)["error"];
    assert!(
        error["message"].as_str().unwrap().contains("haproxy -c"),
        "{error}"
    );
    assert_eq!(fs::read_to_string(&config_file).unwrap(), broken);
    assert_eq!(
        fs::read_dir(config_file.parent().unwrap()).unwrap().count(),
        1
    );
    // Checked before the first change: traffic did not move, nothing was saved.
    assert_eq!(rig.answers(), ["old"; 4]);
    assert!(!rig.saved_state().exists());
}

#[test]
fn a_crash_mid_apply_is_reverted_from_the_saved_state() {
    let rig = rig();
    let options = core_options(&rig, None);
    // A crash after the state was saved and the new server set ready.
    let crashing = Tripwire::at_tool(
        LocalExecutor::new(rig.root.path()),
        "crash before the drain",
        |action| {
            matches!(action, ToolAction::HaproxyCommand { command, .. }
                if command.ends_with("old state drain"))
        },
    );
    let crash = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cutover::apply(&crashing, &options)
    }));
    assert!(crash.is_err(), "the apply did not crash");
    assert!(rig.saved_state().exists());
    // Both serve now; the saved state says only the old one did.
    let mut answers = rig.answers();
    answers.sort();
    answers.dedup();
    assert_eq!(answers, ["new", "old"]);

    let reverted = assert_ok(&rig.cutover("revert", &["--drain-seconds", "1"]));
    assert_eq!(reverted["changed"], true);
    assert_eq!(rig.answers(), ["old"; 4]);
    let after: Vec<(String, String)> = reverted["after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["name"].as_str().unwrap().to_owned(),
                row["admin"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        after,
        [
            ("old".to_owned(), "ready".to_owned()),
            ("new".to_owned(), "maint".to_owned())
        ]
    );
}

#[test]
fn one_switch_at_a_time() {
    let rig = rig();
    let local = LocalExecutor::new(rig.root.path());
    let held = local
        .lock("/var/lib/cmw-upgrade/prod/cutover.lock")
        .unwrap();
    let output = rig.cutover("apply", &[]);
    assert_eq!(output.status.code(), Some(4), "busy: {}", stderr(&output));
    assert_eq!(json(&output)["error"]["kind"], "locked");
    assert_eq!(rig.answers(), ["old"; 4]);
    drop(held);
    assert_ok(&rig.cutover("apply", &["--drain-seconds", "1"]));
    assert_eq!(rig.answers(), ["new"; 4]);
}

/// The options of a switch of the rig's proxy, for the core's own calls.
fn core_options(rig: &Rig, config: Option<&str>) -> CutoverOptions {
    CutoverOptions {
        instance: InstanceName::new("prod").unwrap(),
        target: HaproxyTarget {
            socket: rig.haproxy.socket.clone(),
            backend: "cmw".into(),
            old_server: "old".into(),
            new_server: "new".into(),
            config: config.map(str::to_owned),
        },
        drain: Duration::from_secs(1),
        up_limit: Duration::from_secs(10),
        stamp: "20261128T120000Z".into(),
    }
}

#[test]
fn a_proxy_on_another_host_is_switched_over_ssh() {
    use cmw_upgrade_core::executor::{SshExecutor, SshTarget};
    let sshd = cmw_upgrade_tests::sshd::TestSshd::start()
        .expect("sshd starts (openssh-server is installed by .ci/run)");
    let rig = rig();
    let root = rig.root.path().to_str().unwrap();
    let agent = [env!("CARGO_BIN_EXE_cmw-upgrade"), "--root", root, "agent"];
    let remote = SshExecutor::connect(SshTarget {
        destination: sshd.destination(),
        port: sshd.port,
        identity_file: Some(sshd.identity_file()),
        known_hosts_file: Some(sshd.known_hosts_file()),
        agent: agent.iter().map(|arg| (*arg).to_owned()).collect(),
        provision: false,
        ..SshTarget::new(sshd.destination())
    })
    .expect("connects to the test sshd");
    let options = core_options(&rig, Some(&rig.haproxy.config));
    let applied = cutover::apply(&remote, &options).unwrap();
    assert!(applied.changed);
    assert_eq!(rig.answers(), ["new"; 4]);
    assert!(cutover::verify(&remote, &options).unwrap().ok);
    assert!(rig.saved_state().exists());
    cutover::revert(&remote, &options).unwrap();
    assert_eq!(rig.answers(), ["old"; 4]);
}

/// The same from the command line: `--proxy-host` reaches HAProxy's host by
/// ssh (the agent there is this build, on the sessions' PATH), and every read,
/// write and runtime-API request goes there; the state stays on that host.
#[test]
fn cutover_proxy_host_switches_haproxy_on_another_host() {
    let programs = Path::new(env!("CARGO_BIN_EXE_cmw-upgrade"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let sshd = cmw_upgrade_tests::sshd::TestSshd::start_with(&format!(
        "SetEnv PATH={programs}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ))
    .expect("sshd starts (openssh-server is installed by .ci/run)");
    let rig = rig();
    // The control point: a tree of its own, nothing of the proxy's in it.
    let control = tempfile::tempdir().unwrap();
    let proxy_host = format!("{}:{}", sshd.destination(), sshd.port);
    let identity = sshd.identity_file().display().to_string();
    let known_hosts = sshd.known_hosts_file().display().to_string();
    let over_ssh = |action: &str, method: &str, extra: &[&str]| {
        let mut args = vec![
            "--json",
            "cutover",
            action,
            "--instance",
            "prod",
            "--method",
            method,
            "--haproxy-socket",
            &rig.haproxy.socket,
            "--backend",
            "cmw",
            "--old-server",
            "old",
            "--new-server",
            "new",
            "--haproxy-config",
            &rig.haproxy.config,
            "--drain-seconds",
            "1",
            "--proxy-host",
            &proxy_host,
            "--proxy-root",
            rig.root.path().to_str().unwrap(),
            "--identity-file",
            &identity,
            "--known-hosts",
            &known_hosts,
        ];
        args.extend_from_slice(SKIP_SERVER_CHECKS);
        args.extend_from_slice(extra);
        cmw_in(control.path(), &args)
    };
    let applied = assert_ok(&over_ssh("apply", "haproxy", &[]));
    assert_eq!(applied["changed"], true, "{applied}");
    // The new server was reached from the proxy's host, as the label says.
    let checks = applied["checks"].to_string();
    assert!(checks.contains(&proxy_host), "{checks}");
    assert_eq!(rig.answers(), ["new"; 4]);
    assert!(
        rig.saved_state().exists(),
        "the state is on the proxy's host"
    );
    assert!(
        fs::read_dir(control.path()).unwrap().next().is_none(),
        "nothing written on the control point"
    );
    assert_ok(&over_ssh("verify", "haproxy", &[]));
    assert_ok(&over_ssh("revert", "haproxy", &[]));
    assert_eq!(rig.answers(), ["old"; 4]);
    // Only the haproxy method runs on another host: exit 2, nothing changed.
    let site = ["--nginx-site", "/etc/nginx/sites-enabled/cmw"];
    let endpoints = ["--old", "127.0.0.1:1", "--new", "127.0.0.1:2"];
    let refused = over_ssh("apply", "nginx", &[&site[..], &endpoints[..]].concat());
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--proxy-host is for --method haproxy"));
}
