//! `cutover prepare --method haproxy` with a real master-worker HAProxy on
//! loopback: the missing server is added `disabled` with one reload and no
//! failed request; `apply --probe` reports the switch as a client saw it; a
//! reload after the switch keeps it (also with a server-state file); revert
//! takes prepare's lines out again; verify compares the two servers.

use std::fs;
use std::path::Path;
use std::time::Duration;

mod util;

use cmw_upgrade_core::cutover::probe::Probe;
use cmw_upgrade_tests::haproxy::{http_get, test_config, TestBackend};
use cmw_upgrade_tests::haproxy_master::TestHaproxyMaster;
use util::{cmw_in, json, stderr, stdout};

/// The longest a load runs: far beyond a reload, so only a hung test meets it.
const LOAD_LIMIT: Duration = Duration::from_secs(60);

struct Rig {
    haproxy: TestHaproxyMaster,
    root: tempfile::TempDir,
    old: TestBackend,
    new: TestBackend,
}

/// The test config with the backend holding only `old`; `extra_global`
/// goes into the global section.
fn config_without_new(root: &Path, port: u16, old: u16, extra_global: &str) -> String {
    test_config(root, port, old, 1)
        .lines()
        .filter(|line| !line.contains("server new "))
        .map(|line| {
            if line.starts_with("global") {
                format!("{line}\n{extra_global}")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

fn rig(extra_global: &str) -> Rig {
    let root = tempfile::tempdir().unwrap();
    let old = TestBackend::start("old").unwrap();
    let new = TestBackend::start("new").unwrap();
    let old_port = old.port;
    let extra = extra_global.to_owned();
    let haproxy = TestHaproxyMaster::start(root.path(), |root, port| {
        config_without_new(root, port, old_port, &extra)
    })
    .expect("haproxy starts (is the haproxy package installed?)");
    Rig {
        haproxy,
        root,
        old,
        new,
    }
}

impl Rig {
    /// `cmw-upgrade --root ROOT [--json] cutover ACTION ...` for this proxy.
    fn run(&self, json: bool, action: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
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
            "--haproxy-config",
            &self.haproxy.config,
            "--drain-seconds",
            "2",
        ];
        if json {
            args.insert(0, "--json");
        }
        // The checks before the switch need the platform's servers; these
        // tests are about the proxy (cutover_around.rs runs the checks).
        args.extend_from_slice(&["--skip-check", "new-health", "--skip-check", "old-drift"]);
        args.extend_from_slice(extra);
        cmw_in(self.root.path(), &args)
    }

    fn cutover(&self, action: &str, extra: &[&str]) -> std::process::Output {
        self.run(true, action, extra)
    }

    fn prepare(&self) -> std::process::Output {
        let new = format!("127.0.0.1:{}", self.new.port);
        self.cutover(
            "prepare",
            &[
                "--new",
                &new,
                "--haproxy-master-socket",
                &self.haproxy.master_socket,
            ],
        )
    }

    fn answers(&self) -> Vec<String> {
        (0..4)
            .map(|_| http_get(self.haproxy.port).unwrap())
            .collect()
    }

    fn runtime(&self, socket: &str, command: &str) -> String {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let output = cmw_in(
                self.root.path(),
                &[
                    "cutover",
                    "haproxy-command",
                    "--haproxy-socket",
                    socket,
                    command,
                ],
            );
            // The master re-executes itself at a reload: its socket refuses for a moment.
            let refused = ["did not connect", "no whole answer"]
                .iter()
                .any(|what| stderr(&output).contains(what));
            if refused && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
            return stdout(&output);
        }
    }

    fn servers(&self) -> String {
        self.runtime(&self.haproxy.socket, "show servers state cmw")
    }

    /// `reload` on the master socket, then waits until a worker with the
    /// new config answers (the reload counter rose and the old worker left).
    fn reload(&self) {
        let before = self.reloads();
        let answer = self.runtime(&self.haproxy.master_socket, "reload");
        assert!(answer.trim().is_empty(), "{answer}");
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while self.reloads() <= before || self.workers() != 1 {
            assert!(
                std::time::Instant::now() < until,
                "no reload: {}",
                self.show_proc()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn show_proc(&self) -> String {
        self.runtime(&self.haproxy.master_socket, "show proc")
    }

    fn reloads(&self) -> u64 {
        let text = self.show_proc();
        text.lines()
            .find(|line| line.contains(" master "))
            .and_then(|line| line.split_whitespace().nth(2))
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("no master line in {text}"))
    }

    fn workers(&self) -> usize {
        self.show_proc()
            .lines()
            .filter(|line| line.contains(" worker "))
            .count()
    }
}

fn assert_ok(output: &std::process::Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
    json(output)
}

#[test]
fn prepare_adds_the_server_with_one_reload_and_revert_takes_it_out() {
    let rig = rig("");
    let config_file = rig.haproxy.config_file();
    let original = fs::read_to_string(&config_file).unwrap();
    assert!(!rig.servers().contains(" new "));

    // prepare under a keep-alive load: one reload, no failed request, no traffic moved.
    let url = format!("http://127.0.0.1:{}/", rig.haproxy.port);
    let load = Probe::start(&url, 4, None, LOAD_LIMIT).unwrap();
    load.wait_for_answers(200, LOAD_LIMIT);
    let reloads = rig.reloads();
    let prepared = assert_ok(&rig.prepare());
    let seen = load.finish();
    // The worker that stops runs the config without idle-close-on-response yet: each
    // of the 4 connections may be closed once under its client (which never retries).
    assert!(seen.failed <= 4, "failed requests during prepare: {seen:?}");
    // No switch was marked: every answer counts as after it.
    assert_eq!(seen.servers_after, ["old"], "{seen:?}");
    assert_eq!(rig.reloads(), reloads + 1);
    assert_eq!(prepared["changed"], true, "{prepared}");
    assert_eq!(prepared["servers"], serde_json::json!(["new"]));
    let server_line = format!(
        "    server new 127.0.0.1:{} check inter 100ms disabled",
        rig.new.port
    );
    assert_eq!(
        prepared["lines"],
        serde_json::json!([server_line, "    option idle-close-on-response"])
    );
    let written = fs::read_to_string(&config_file).unwrap();
    assert_eq!(
        written,
        original
            .replace(
                "# the old server\n",
                &format!("# the old server\n{server_line}\n")
            )
            .replace(
                "frontend fe\n",
                "frontend fe\n    option idle-close-on-response\n"
            )
    );
    let backup = prepared["backup"].as_str().unwrap();
    assert_eq!(
        fs::read_to_string(rig.root.path().join(backup.trim_start_matches('/'))).unwrap(),
        original
    );
    // In the running worker now, in maintenance.
    let state = rig.servers();
    assert!(state.contains(" new 127.0.0.1 0 5 "), "{state}");
    assert_eq!(rig.answers(), ["old"; 4]);
    // Again: nothing to add, no reload.
    let again = assert_ok(&rig.prepare());
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(rig.reloads(), reloads + 1);

    // apply under the built-in probe: 0 failed, traffic moved.
    let probe_url = format!("http://127.0.0.1:{}/", rig.haproxy.port);
    let applied =
        assert_ok(&rig.cutover("apply", &["--probe", &probe_url, "--probe-clients", "4"]));
    let probe = &applied["probe"];
    assert_eq!(probe["failed"], 0, "{probe}");
    assert!(probe["requests"].as_u64().unwrap() > 100, "{probe}");
    assert_eq!(
        probe["servers_before"],
        serde_json::json!(["old"]),
        "{probe}"
    );
    assert_eq!(
        probe["servers_after"],
        serde_json::json!(["new"]),
        "{probe}"
    );
    assert!(probe["moved_after_ms"].as_u64().is_some(), "{probe}");
    for key in [
        "p50_ms_before",
        "p95_ms_before",
        "p50_ms_after",
        "p95_ms_after",
    ] {
        assert!(probe[key].as_f64().unwrap() > 0.0, "{key}: {probe}");
    }
    assert_eq!(rig.answers(), ["new"; 4]);

    // A reload after the switch keeps it: the config's flags say so.
    rig.reload();
    assert_eq!(rig.answers(), ["new"; 4]);

    // verify compares the two servers' response times.
    let old_url = format!("http://127.0.0.1:{}/", rig.old.port);
    let new_url = format!("http://127.0.0.1:{}/", rig.new.port);
    let compare = [
        "--old-url",
        old_url.as_str(),
        "--new-url",
        new_url.as_str(),
        "--compare-requests",
        "50",
    ];
    let verified = assert_ok(&rig.cutover("verify", &compare));
    assert_eq!(verified["ok"], true, "{verified}");
    for (side, url) in [("old", &old_url), ("new", &new_url)] {
        let row = &verified["response_time"][side];
        assert_eq!(row["url"], url.as_str());
        assert_eq!(row["requests"], 50);
        assert_eq!(row["failed"], 0);
        assert!(row["p95_ms"].as_f64().unwrap() >= row["p50_ms"].as_f64().unwrap());
    }
    let table = stdout(&rig.run(false, "verify", &compare));
    assert!(table.contains("response time over 50 GETs each"), "{table}");
    assert!(
        table.contains("  old  ") && table.contains(&new_url),
        "{table}"
    );

    // revert: traffic back under the probe, then prepare's lines out with one more reload.
    // This reload's stopping worker has the option: not one request fails.
    let load = Probe::start(&url, 4, None, LOAD_LIMIT).unwrap();
    load.wait_for_answers(200, LOAD_LIMIT);
    let reverted = assert_ok(&rig.cutover("revert", &["--probe", &probe_url]));
    let seen = load.finish();
    assert_eq!(seen.failed, 0, "failed requests during revert: {seen:?}");
    assert_eq!(reverted["probe"]["failed"], 0, "{reverted}");
    assert_eq!(
        reverted["probe"]["servers_after"],
        serde_json::json!(["old"])
    );
    assert_eq!(reverted["prepare"]["action"], "revert", "{reverted}");
    assert_eq!(fs::read_to_string(&config_file).unwrap(), original);
    assert!(!rig.servers().contains(" new "));
    assert_eq!(rig.answers(), ["old"; 4]);
    // Nothing left to revert.
    let nothing = rig.cutover("revert", &[]);
    assert_eq!(nothing.status.code(), Some(2), "{}", stderr(&nothing));
}

#[test]
fn a_reload_with_a_server_state_file_keeps_the_switch() {
    // The state file as a systemd ExecReload would dump it; loaded by every new worker.
    // Relative: HAProxy runs in the test root as systemd runs it in `/`.
    let rig = rig("    server-state-file run/haproxy/state\n");
    let config_file = rig.haproxy.config_file();
    let text = fs::read_to_string(&config_file).unwrap().replace(
        "defaults\n",
        "defaults\n    load-server-state-from-file global\n",
    );
    fs::write(&config_file, text).unwrap();
    let state_file = rig.root.path().join("run/haproxy/state");
    assert_ok(&rig.prepare());
    // A dump from before the switch: the new server down (it is in maintenance).
    let stale = rig.runtime(&rig.haproxy.socket, "show servers state");
    fs::write(&state_file, &stale).unwrap();
    let url = format!("http://127.0.0.1:{}/", rig.haproxy.port);

    let applied = assert_ok(&rig.cutover("apply", &[]));
    let steps = applied["steps"].as_array().unwrap();
    let last = steps.last().unwrap();
    assert_eq!(last["step"], "write_server_state", "{applied}");
    assert_eq!(last["path"], "/run/haproxy/state");
    let fresh = fs::read_to_string(&state_file).unwrap();
    assert_ne!(fresh, stale);
    assert_eq!(rig.answers(), ["new"; 4]);
    // The reload starts the new server up: not one request fails, all on the new server.
    let load = Probe::start(&url, 4, None, LOAD_LIMIT).unwrap();
    load.wait_for_answers(200, LOAD_LIMIT);
    rig.reload();
    load.wait_for_answers(400, LOAD_LIMIT);
    let seen = load.finish();
    assert_eq!(seen.failed, 0, "{seen:?}");
    assert_eq!(seen.servers_after, ["new"], "{seen:?}");

    // Back: the revert writes the file too, and a reload keeps the old server.
    let reverted = assert_ok(&rig.cutover("revert", &[]));
    assert_eq!(reverted["prepare"]["action"], "revert", "{reverted}");
    // (No load here: revert took `option idle-close-on-response` out with prepare's lines.)
    rig.reload();
    assert_eq!(rig.answers(), ["old"; 4], "{}", rig.servers());
}

#[test]
fn prepare_without_the_address_or_a_reload_changes_nothing() {
    let rig = rig("");
    let config_file = rig.haproxy.config_file();
    let original = fs::read_to_string(&config_file).unwrap();
    // The plan names the server the backend lacks, and what adds it.
    let plan = rig.cutover("plan", &[]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    assert!(
        stderr(&plan).contains("no server \"new\"")
            && stderr(&plan).contains("cutover prepare --method haproxy"),
        "{}",
        stderr(&plan)
    );
    // With the address: prepare's changes, made by nobody.
    let new = format!("127.0.0.1:{}", rig.new.port);
    let planned = assert_ok(&rig.cutover("plan", &["--new", &new]));
    assert_eq!(planned["action"], "plan", "{planned}");
    assert_eq!(planned["changed"], false);
    assert_eq!(planned["servers"], serde_json::json!(["new"]));
    assert_eq!(planned["lines"].as_array().unwrap().len(), 2, "{planned}");
    assert_eq!(fs::read_to_string(&config_file).unwrap(), original);
    let no_address = rig.cutover(
        "prepare",
        &["--haproxy-master-socket", &rig.haproxy.master_socket],
    );
    assert_eq!(no_address.status.code(), Some(2), "{}", stderr(&no_address));
    assert!(
        stderr(&no_address).contains("--new HOST:PORT"),
        "{}",
        stderr(&no_address)
    );
    let no_reload = rig.cutover("prepare", &["--new", &new]);
    assert_eq!(no_reload.status.code(), Some(2), "{}", stderr(&no_reload));
    assert!(
        stderr(&no_reload).contains("--haproxy-master-socket"),
        "{}",
        stderr(&no_reload)
    );
    assert_eq!(fs::read_to_string(&config_file).unwrap(), original);
    assert!(!rig
        .root
        .path()
        .join("var/lib/cmw-upgrade/prod/cutover.haproxy-prepare.json")
        .exists());
}

#[test]
fn prepare_reloads_with_the_command_given() {
    let rig = rig("");
    let reloads = rig.reloads();
    let new = format!("127.0.0.1:{}", rig.new.port);
    // SIGUSR2 is what `systemctl reload haproxy` sends the master.
    let command = format!("kill -USR2 {}", rig.haproxy.pid());
    let prepared = assert_ok(&rig.cutover(
        "prepare",
        &[
            "--new",
            &new,
            "--reload-command",
            &command,
            "--no-idle-close",
        ],
    ));
    assert_eq!(prepared["reload"], command);
    assert_eq!(prepared["servers"], serde_json::json!(["new"]));
    // Only the server line: --no-idle-close.
    assert_eq!(prepared["lines"].as_array().unwrap().len(), 1, "{prepared}");
    assert_eq!(rig.reloads(), reloads + 1);
    assert!(
        rig.servers().contains(" new 127.0.0.1 0 5 "),
        "{}",
        rig.servers()
    );
    assert_eq!(rig.answers(), ["old"; 4]);
}
