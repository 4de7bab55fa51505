//! Around `cmw-upgrade cutover`'s switch, with the simulator's server trees,
//! real nginx (each server's site and the proxy), real HAProxy and BIND: the
//! checks before the switch refuse an unhealthy new server, an unreachable
//! port and an old database that took writes after the backup (then accepted
//! with --accept-drift), changing nothing; --freeze-old makes the old site
//! answer 503 to writes until revert; forward-old sends the old site's
//! traffic to the new server until revert.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

mod util;

use cmw_upgrade_tests::bind::{TestBind, OLD};
use cmw_upgrade_tests::haproxy::{http_get, TestBackend, TestHaproxy};
use cmw_upgrade_tests::nginx::{TestNginx, SITE};
use cmw_upgrade_tests::{log_record, ServerSpec};
use util::{backup_bundle, cmw_in, json, server, stderr};

/// The longest a reload may take to reach every new request.
const RELOAD_LIMIT: Duration = Duration::from_secs(10);

/// The bundle's server path on the old server.
const BUNDLE: &str = "/mnt/backup/prod";

/// One platform server: a simulated tree, the platform played by a backend
/// that names the server, and the server's own nginx site in front of it.
struct Platform {
    root: tempfile::TempDir,
    _backend: TestBackend,
    nginx: TestNginx,
}

fn platform(name: &str) -> Platform {
    let root = server(ServerSpec::default());
    let backend = TestBackend::start(name).unwrap();
    let nginx = TestNginx::start(root.path(), backend.port)
        .expect("nginx starts (is the nginx-light package installed?)");
    Platform {
        root,
        _backend: backend,
        nginx,
    }
}

impl Platform {
    fn root(&self) -> &str {
        self.root.path().to_str().unwrap()
    }

    fn site_file(&self) -> PathBuf {
        self.nginx.site_file()
    }

    fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/health", self.nginx.port)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.nginx.port)
    }

    /// An error record in its heartbeat log: not healthy.
    fn log_an_error(&self) {
        let log = self
            .root
            .path()
            .join("var/log/comindware/prod/Logs/heartbeat_2026-11-24.log");
        let mut file = fs::OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(
            log_record(
                "10:00:00",
                "ERROR",
                "Cluster node lost: the store is unavailable",
            )
            .as_bytes(),
        )
        .unwrap();
    }
}

/// Both platform servers, the old one backed up to [`BUNDLE`], and a test
/// root for the proxy's host (this machine: the cut-over's state lives there).
struct Servers {
    old: Platform,
    new: Platform,
    proxy_root: tempfile::TempDir,
}

fn servers() -> Servers {
    let old = platform("old");
    let new = platform("new");
    let bundle = old.root.path().join(BUNDLE.trim_start_matches('/'));
    fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    let output = backup_bundle(old.root.path(), &bundle);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    Servers {
        old,
        new,
        proxy_root: tempfile::tempdir().unwrap(),
    }
}

impl Servers {
    /// The options naming both servers (this machine, under their roots).
    fn server_args(&self) -> Vec<String> {
        [
            "--new-host",
            "local",
            "--new-root",
            self.new.root(),
            "--health-url",
            &self.new.health_url(),
            "--old-host",
            "local",
            "--old-root",
            self.old.root(),
            "--bundle",
            BUNDLE,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn cmw(&self, args: &[String]) -> Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cmw_in(self.proxy_root.path(), &args)
    }

    fn state_folder(&self) -> PathBuf {
        self.proxy_root.path().join("var/lib/cmw-upgrade/prod")
    }

    /// HAProxy on the proxy's host in front of both sites.
    fn haproxy(&self) -> TestHaproxy {
        TestHaproxy::start(
            self.proxy_root.path(),
            self.old.nginx.port,
            self.new.nginx.port,
        )
        .expect("haproxy starts (is the haproxy package installed?)")
    }

    /// A write on the old server after the backup.
    fn write_late(&self) {
        let database = self
            .old
            .root
            .path()
            .join("var/lib/comindware/prod/Database");
        fs::write(database.join("db/late-write.bin"), "after the backup").unwrap();
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

/// The refusal's message; the exit code must be 2 (nothing changed).
fn refusal(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{}", stderr(output));
    let error = &json(output)["error"];
    assert_eq!(error["kind"], "check_failed", "{error}");
    error["message"].as_str().unwrap().to_owned()
}

fn assert_ok(output: &Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
    json(output)
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {report}"))
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

/// The status code of one request with `method` on a fresh connection.
fn status_of(port: u16, method: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = if method == "GET" { "" } else { "{\"a\":1}" };
    write!(
        stream,
        "{method} /api/records HTTP/1.1\r\nHost: cmw\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// Polls until `port` answers `method` with `code` (a reload takes effect
/// worker by worker), at most [`RELOAD_LIMIT`].
fn answers_become(port: u16, method: &str, code: u16) -> u16 {
    let started = std::time::Instant::now();
    loop {
        let status = status_of(port, method);
        if status == code || started.elapsed() > RELOAD_LIMIT {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `cutover apply --method nginx --reload --freeze-old` from the old site to the new one.
fn nginx_freezing_apply(servers: &Servers) -> Vec<String> {
    let mut apply = strings(&[
        "--json",
        "cutover",
        "apply",
        "--instance",
        "prod",
        "--method",
        "nginx",
        "--reload",
        "--nginx-site",
        SITE,
        "--old",
        &servers.old.address(),
        "--new",
        &servers.new.address(),
        "--freeze-old",
        "--old-site",
        SITE,
    ]);
    apply.extend(servers.server_args());
    apply
}

fn haproxy_args(haproxy: &TestHaproxy, action: &str) -> Vec<String> {
    strings(&[
        "--json",
        "cutover",
        action,
        "--instance",
        "prod",
        "--method",
        "haproxy",
        "--haproxy-socket",
        &haproxy.socket,
        "--backend",
        "cmw",
        "--old-server",
        "old",
        "--new-server",
        "new",
        "--drain-seconds",
        "1",
    ])
}

#[test]
fn an_unhealthy_new_server_is_refused_before_the_haproxy_switch() {
    let servers = servers();
    let haproxy = servers.haproxy();
    let mut plan = haproxy_args(&haproxy, "plan");
    plan.extend(servers.server_args());
    let planned = assert_ok(&servers.cmw(&plan));
    for name in ["new-health", "new-reachable", "old-drift"] {
        assert_eq!(check(&planned, name)["ok"], true, "{planned}");
    }

    servers.new.log_an_error();
    let planned = assert_ok(&servers.cmw(&plan));
    assert_eq!(check(&planned, "new-health")["ok"], false, "{planned}");
    let mut apply = haproxy_args(&haproxy, "apply");
    apply.extend(servers.server_args());
    let message = refusal(&servers.cmw(&apply));
    assert!(
        message.contains("[new-health]") && message.contains("Cluster node lost"),
        "{message}"
    );
    assert!(!message.contains("[old-drift]"), "{message}");
    assert!(!servers.state_folder().join("cutover.json").exists());
    assert_eq!(http_get(haproxy.port).unwrap(), "old");

    // Skipped by name, the switch goes on; the checks are recorded.
    apply.extend(strings(&["--skip-check", "new-health"]));
    let applied = assert_ok(&servers.cmw(&apply));
    assert_eq!(check(&applied, "new-health")["skipped"], true);
    assert_eq!(check(&applied, "old-drift")["ok"], true);
    assert_eq!(http_get(haproxy.port).unwrap(), "new");
    let recorded: serde_json::Value = serde_json::from_slice(
        &fs::read(servers.state_folder().join("cutover-checks.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(recorded["checks"], applied["checks"]);

    // After the switch, verify looks at the new server too: traffic is where
    // it should be, but its log holds an error, so the verify is bad news.
    let mut verify = haproxy_args(&haproxy, "verify");
    verify.extend(servers.server_args());
    let output = servers.cmw(&verify);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let verified: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verified["ok"], false, "{verified}");
    assert_eq!(check(&verified, "new-health")["ok"], false, "{verified}");
    assert!(
        check(&verified, "new-health")["detail"]
            .as_str()
            .unwrap()
            .contains("Cluster node lost"),
        "{verified}"
    );
}

#[test]
fn drift_is_refused_then_accepted_and_freeze_old_holds_writes_until_revert() {
    let servers = servers();
    let proxy =
        TestNginx::start(servers.proxy_root.path(), servers.old.nginx.port).expect("nginx starts");
    let proxy_site = fs::read(proxy.site_file()).unwrap();
    let old_site = fs::read(servers.old.site_file()).unwrap();
    servers.write_late();
    let mut apply = nginx_freezing_apply(&servers);
    let message = refusal(&servers.cmw(&apply));
    assert!(
        message.contains("[old-drift]")
            && message.contains("added db/late-write.bin")
            && message.contains("--accept-drift"),
        "{message}"
    );
    // Nothing changed: the proxy's site, the old site (frozen, checked, put back), traffic.
    assert_eq!(fs::read(proxy.site_file()).unwrap(), proxy_site);
    assert_eq!(fs::read(servers.old.site_file()).unwrap(), old_site);
    assert!(!servers.state_folder().join("cutover-nginx.json").exists());
    assert!(!servers
        .state_folder()
        .join("cutover-old-site.json")
        .exists());
    assert_eq!(http_get(proxy.port).unwrap(), "old");
    assert_eq!(answers_become(servers.old.nginx.port, "POST", 200), 200);

    apply.push("--accept-drift".to_owned());
    let applied = assert_ok(&servers.cmw(&apply));
    let drift = check(&applied, "old-drift");
    assert_eq!(drift["accepted"], true, "{applied}");
    assert!(
        drift["detail"]
            .as_str()
            .unwrap()
            .starts_with("after the freeze"),
        "{drift}"
    );
    assert_eq!(applied["old_site"][0]["action"], "freeze");
    assert_eq!(proxy.answers_become("new", RELOAD_LIMIT), ["new"; 4]);
    // The old site, through its own nginx: reads answer, writes do not.
    let old_port = servers.old.nginx.port;
    assert_eq!(answers_become(old_port, "POST", 503), 503);
    assert_eq!(status_of(old_port, "PUT"), 503);
    assert_eq!(status_of(old_port, "GET"), 200);
    assert_eq!(status_of(old_port, "HEAD"), 200);
    let frozen = fs::read_to_string(servers.old.site_file()).unwrap();
    assert!(frozen.contains("return 503"), "{frozen}");

    let mut revert = apply.clone();
    revert[2] = "revert".to_owned();
    let reverted = assert_ok(&servers.cmw(&revert));
    assert_eq!(reverted["old_site"][0]["action"], "restore");
    assert_eq!(fs::read(servers.old.site_file()).unwrap(), old_site);
    assert_eq!(answers_become(old_port, "POST", 200), 200);
    assert_eq!(proxy.answers_become("old", RELOAD_LIMIT), ["old"; 4]);
    assert_eq!(fs::read(proxy.site_file()).unwrap(), proxy_site);
}

#[test]
fn finish_lifts_the_freeze_byte_for_byte() {
    let servers = servers();
    let proxy =
        TestNginx::start(servers.proxy_root.path(), servers.old.nginx.port).expect("nginx starts");
    let old_site = fs::read(servers.old.site_file()).unwrap();
    let apply = nginx_freezing_apply(&servers);
    let mut plan = apply.clone();
    plan[2] = "plan".to_owned();
    let planned = assert_ok(&servers.cmw(&plan));
    assert_eq!(planned["changed"], false);
    assert_eq!(planned["old_site"][0]["action"], "freeze (planned)");
    assert!(
        planned["old_site"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("+    if ($request_method !~ ^(GET|HEAD)$) { return 503; }"),
        "{planned}"
    );
    assert_eq!(fs::read(servers.old.site_file()).unwrap(), old_site);
    assert!(!servers.state_folder().exists());
    let applied = assert_ok(&servers.cmw(&apply));
    assert_eq!(check(&applied, "old-drift")["ok"], true, "{applied}");
    assert_eq!(proxy.answers_become("new", RELOAD_LIMIT), ["new"; 4]);
    assert_eq!(answers_become(servers.old.nginx.port, "POST", 503), 503);
    let mut finish = apply.clone();
    finish[2] = "finish".to_owned();
    let finished = assert_ok(&servers.cmw(&finish));
    assert_eq!(finished["action"], "unfreeze", "{finished}");
    assert_eq!(fs::read(servers.old.site_file()).unwrap(), old_site);
    assert_eq!(answers_become(servers.old.nginx.port, "POST", 200), 200);
    // The switch itself stays.
    assert_eq!(proxy.answers_become("new", RELOAD_LIMIT), ["new"; 4]);
}

#[test]
fn an_unreachable_new_port_is_refused_before_the_dns_switch() {
    let servers = servers();
    let dir = tempfile::tempdir().unwrap();
    let bind = TestBind::start(dir.path(), 300).expect("named starts");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let key = bind.key_file.to_str().unwrap().to_owned();
    let server = bind.address();
    let mut apply = strings(&[
        "--json",
        "cutover",
        "apply",
        "--instance",
        "prod",
        "--method",
        "dns",
        "--zone",
        "example.test",
        "--name",
        "cmw.example.test",
        "--old",
        OLD,
        "--new",
        "127.0.0.1",
        "--server",
        &server,
        "--tsig-key-file",
        &key,
        "--force",
        "--new-port",
        &closed_port,
    ]);
    apply.extend(servers.server_args());
    let serial = bind.serial().unwrap();
    let message = refusal(&servers.cmw(&apply));
    assert!(
        message.contains("[new-reachable]")
            && message.contains(&format!("127.0.0.1:{closed_port}")),
        "{message}"
    );
    assert_eq!(bind.serial().unwrap(), serial);
    assert!(bind.dig("cmw.example.test", "A").unwrap().contains(OLD));
    assert!(!servers.state_folder().exists());
    // Without a port the check cannot run: refused too, naming the flag.
    let at = apply.iter().position(|arg| arg == "--new-port").unwrap();
    apply.drain(at..at + 2);
    let message = refusal(&servers.cmw(&apply));
    assert!(message.contains("--new-port"), "{message}");
    assert_eq!(bind.serial().unwrap(), serial);
}

#[test]
fn forward_old_sends_the_old_sites_traffic_to_the_new_server_until_revert() {
    let servers = servers();
    let old_site = fs::read(servers.old.site_file()).unwrap();
    let old_port = servers.old.nginx.port;
    assert_eq!(http_get(old_port).unwrap(), "old");
    let forward = strings(&[
        "--json",
        "cutover",
        "forward-old",
        "--instance",
        "prod",
        "--old-host",
        "local",
        "--old-root",
        servers.old.root(),
        "--old-site",
        SITE,
        "--forward-to",
        &servers.new.address(),
    ]);
    let forwarded = assert_ok(&servers.cmw(&forward));
    assert_eq!(forwarded["changed"], true, "{forwarded}");
    assert!(
        forwarded["diff"].as_str().unwrap().contains(&format!(
            "+        proxy_pass http://{};",
            servers.new.address()
        )),
        "{forwarded}"
    );
    assert_eq!(
        servers.old.nginx.answers_become("new", RELOAD_LIMIT),
        ["new"; 4]
    );
    assert_eq!(assert_ok(&servers.cmw(&forward))["changed"], false);
    // A copy on the old server, in the tool's folder: none beside the site,
    // where nginx's `include sites-enabled/*` would load it.
    let kept: Vec<_> = fs::read_dir(servers.old.root.path().join("var/lib/cmw-upgrade/prod"))
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".bak"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(fs::read(kept[0].path()).unwrap(), old_site);
    assert_eq!(
        fs::read_dir(servers.old.site_file().parent().unwrap())
            .unwrap()
            .count(),
        1
    );

    // revert (of a cut-over never applied here): the old site comes back as it was.
    let reverted = assert_ok(&servers.cmw(&strings(&[
        "--json",
        "cutover",
        "revert",
        "--instance",
        "prod",
        "--method",
        "haproxy",
        "--haproxy-socket",
        "/run/haproxy/admin.sock",
        "--backend",
        "cmw",
        "--old-server",
        "old",
        "--new-server",
        "new",
    ])));
    assert_eq!(reverted["changed"], true, "{reverted}");
    assert_eq!(fs::read(servers.old.site_file()).unwrap(), old_site);
    assert_eq!(
        servers.old.nginx.answers_become("old", RELOAD_LIMIT),
        ["old"; 4]
    );
    assert!(!servers
        .state_folder()
        .join("cutover-old-site.json")
        .exists());
}

#[test]
fn the_run_recorded_here_names_both_servers_the_bundle_and_the_port() {
    use cmw_upgrade_core::executor::transfer::Route;
    use cmw_upgrade_core::executor::LocalExecutor;
    use cmw_upgrade_core::procedure::state::RunState;
    use cmw_upgrade_core::procedure::two_servers::{
        two_server_step_names, RecordedServers, ServerSpec as Reach, TwoServerSettings,
    };
    use cmw_upgrade_core::procedure::UpgradeSettings;
    use cmw_upgrade_core::{InstanceName, OsFamily};

    let servers = servers();
    let instance = InstanceName::new("prod").unwrap();
    // What `cmw-upgrade upgrade --old … --new …` records on the control point.
    let mut state = RunState::new(&instance, &two_server_step_names());
    let on = |root: &str| Reach {
        root: Some(root.to_owned()),
        ..Reach::local()
    };
    state.settings = Some(UpgradeSettings {
        instance: instance.clone(),
        family: OsFamily::Deb,
        bundle: BUNDLE.to_owned(),
        distribution: "/opt/distr/new.tar.gz".to_owned(),
        prerequisites: "/opt/distr/prerequisites.tar.gz".to_owned(),
        port: servers.new.nginx.port,
        upgrade_timeout_seconds: 60,
        health_timeout_seconds: 60,
        fix_config: false,
    });
    state.servers = Some(RecordedServers {
        settings: TwoServerSettings {
            old: on(servers.old.root()),
            new: on(servers.new.root()),
            bundle_dir: "/mnt/backup".to_owned(),
            backup_method: None,
            accept_crash_consistent: false,
            route: Route::Auto,
            direct_ssh_options: Vec::new(),
        },
        old_family: OsFamily::Deb,
    });
    state
        .save(&LocalExecutor::new(servers.proxy_root.path()))
        .unwrap();
    let haproxy = servers.haproxy();
    servers.write_late();
    let planned = assert_ok(&servers.cmw(&haproxy_args(&haproxy, "plan")));
    let health = check(&planned, "new-health");
    assert_eq!(health["ok"], true, "{planned}");
    assert!(
        health["detail"]
            .as_str()
            .unwrap()
            .contains(&servers.new.health_url()),
        "{health}"
    );
    let drift = check(&planned, "old-drift");
    assert_eq!(drift["ok"], false, "{planned}");
    assert!(
        drift["detail"].as_str().unwrap().contains(BUNDLE),
        "{drift}"
    );
    let message = refusal(&servers.cmw(&haproxy_args(&haproxy, "apply")));
    assert!(message.contains("added db/late-write.bin"), "{message}");
    assert_eq!(http_get(haproxy.port).unwrap(), "old");
}

#[test]
fn a_freeze_nginx_refuses_leaves_the_old_site_as_it_was() {
    let servers = servers();
    let proxy =
        TestNginx::start(servers.proxy_root.path(), servers.old.nginx.port).expect("nginx starts");
    let proxy_site = fs::read(proxy.site_file()).unwrap();
    // The running nginx serves the site as it loaded it; the file on disk
    // now holds a line `nginx -t` refuses, so the frozen one is refused too.
    let broken = fs::read_to_string(servers.old.site_file())
        .unwrap()
        .replace(
            "    listen 127.0.0.1",
            "    no_such_directive on;\n    listen 127.0.0.1",
        );
    fs::write(servers.old.site_file(), &broken).unwrap();
    let output = servers.cmw(&nginx_freezing_apply(&servers));
    let message = refusal(&output);
    assert!(
        message.contains("-t` on the old server")
            && message.contains("no_such_directive")
            && message.contains("put back as it was"),
        "{message}"
    );
    assert_eq!(fs::read_to_string(servers.old.site_file()).unwrap(), broken);
    assert!(!servers
        .state_folder()
        .join("cutover-old-site.json")
        .exists());
    assert_eq!(fs::read(proxy.site_file()).unwrap(), proxy_site);
    assert_eq!(http_get(proxy.port).unwrap(), "old");
    assert_eq!(status_of(servers.old.nginx.port, "POST"), 200);
}

#[test]
fn the_old_server_is_reached_over_ssh_for_its_drift_and_its_site() {
    use cmw_upgrade_tests::sshd::TestSshd;

    let servers = servers();
    // The agent there is this build, found on the sessions' PATH; nginx too.
    let programs = std::path::Path::new(env!("CARGO_BIN_EXE_cmw-upgrade"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let sshd = TestSshd::start_with(&format!(
        "SetEnv PATH={programs}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ))
    .expect("sshd starts (is openssh-server installed?)");
    let old_host = format!("{}:{}", sshd.destination(), sshd.port);
    let identity = sshd.identity_file().display().to_string();
    let known_hosts = sshd.known_hosts_file().display().to_string();
    let over_ssh = |args: &[&str]| {
        let mut all = strings(args);
        all.extend(strings(&[
            "--old-host",
            &old_host,
            "--old-root",
            servers.old.root(),
            "--identity-file",
            &identity,
            "--known-hosts",
            &known_hosts,
        ]));
        servers.cmw(&all)
    };
    let haproxy = servers.haproxy();
    servers.write_late();
    let mut plan = haproxy_args(&haproxy, "plan");
    plan.extend(strings(&[
        "--new-host",
        "local",
        "--new-root",
        servers.new.root(),
        "--health-url",
        &servers.new.health_url(),
        "--bundle",
        BUNDLE,
    ]));
    let plan: Vec<&str> = plan.iter().map(String::as_str).collect();
    let planned = assert_ok(&over_ssh(&plan));
    let drift = check(&planned, "old-drift");
    assert_eq!(drift["ok"], false, "{planned}");
    let detail = drift["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("the old server ({old_host})"))
            && detail.contains("added db/late-write.bin"),
        "{detail}"
    );

    let old_site = fs::read(servers.old.site_file()).unwrap();
    let forwarded = assert_ok(&over_ssh(&[
        "--json",
        "cutover",
        "forward-old",
        "--instance",
        "prod",
        "--old-site",
        SITE,
        "--forward-to",
        &servers.new.address(),
    ]));
    assert_eq!(forwarded["old_host"], old_host.as_str());
    assert_eq!(
        servers.old.nginx.answers_become("new", RELOAD_LIMIT),
        ["new"; 4]
    );
    // revert reaches the old server from the saved state alone.
    let mut revert = haproxy_args(&haproxy, "revert");
    revert.extend(strings(&[
        "--identity-file",
        &identity,
        "--known-hosts",
        &known_hosts,
    ]));
    let reverted = assert_ok(&servers.cmw(&revert));
    assert_eq!(reverted["old_site"][0]["action"], "restore", "{reverted}");
    assert_eq!(fs::read(servers.old.site_file()).unwrap(), old_site);
    assert_eq!(
        servers.old.nginx.answers_become("old", RELOAD_LIMIT),
        ["old"; 4]
    );
}

#[test]
fn a_switch_that_changes_nothing_gives_the_old_server_its_writes_back() {
    let servers = servers();
    let proxy =
        TestNginx::start(servers.proxy_root.path(), servers.old.nginx.port).expect("nginx starts");
    let old_site = fs::read(servers.old.site_file()).unwrap();
    // Without --reload the nginx method refuses (prepare makes it resolver-driven):
    // after the checks and the freeze, before any change of the proxy.
    let apply: Vec<String> = nginx_freezing_apply(&servers)
        .into_iter()
        .filter(|arg| arg != "--reload")
        .collect();
    let output = servers.cmw(&apply);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(json(&output)["error"]["kind"], "bad_input");
    assert!(
        stderr(&output).contains("the old site's freeze was taken out"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read(servers.old.site_file()).unwrap(), old_site);
    assert_eq!(answers_become(servers.old.nginx.port, "POST", 200), 200);
    assert_eq!(http_get(proxy.port).unwrap(), "old");
    assert!(!servers
        .state_folder()
        .join("cutover-old-site.json")
        .exists());
}
