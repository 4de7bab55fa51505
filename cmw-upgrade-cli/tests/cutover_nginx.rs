//! `cmw-upgrade cutover --method nginx` with the real nginx on loopback: the
//! reload path moves traffic under a bounded keep-alive load (its failures
//! counted and reported, not required to be zero), revert brings the old
//! server back, plan changes nothing, a site nginx refuses is never written,
//! and the resolver-driven upstream passes `nginx -t`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

mod util;

use cmw_upgrade_core::cutover::nginx::{self, NginxOptions, NginxTarget};
use cmw_upgrade_core::cutover::nginx_site::Endpoint;
use cmw_upgrade_core::executor::LocalExecutor;
use cmw_upgrade_core::InstanceName;
use cmw_upgrade_tests::haproxy::{Load, TestBackend};
use cmw_upgrade_tests::nginx::{TestNginx, SITE};
use cmw_upgrade_tests::tripwire::Tripwire;
use util::{cmw_in, json, stderr};

/// The checks before the switch that need the platform's servers, skipped by name.
const SKIP_SERVER_CHECKS: &[&str] = &["--skip-check", "new-health", "--skip-check", "old-drift"];
/// The longest a load runs: far beyond a switch, so only a hung test meets it.
const LOAD_LIMIT: Duration = Duration::from_secs(60);

/// The longest a reload may take to reach every new request.
const RELOAD_LIMIT: Duration = Duration::from_secs(10);

/// nginx in front of the old backend, the new one beside, all under a test root.
struct Rig {
    nginx: TestNginx,
    root: tempfile::TempDir,
    old: TestBackend,
    new: TestBackend,
}

fn rig() -> Rig {
    let root = tempfile::tempdir().unwrap();
    let old = TestBackend::start("old").unwrap();
    let new = TestBackend::start("new").unwrap();
    let nginx = TestNginx::start(root.path(), old.port)
        .expect("nginx starts (is the nginx-light package installed?)");
    Rig {
        nginx,
        root,
        old,
        new,
    }
}

impl Rig {
    fn old_address(&self) -> String {
        format!("127.0.0.1:{}", self.old.port)
    }

    fn new_address(&self) -> String {
        format!("127.0.0.1:{}", self.new.port)
    }

    /// `cmw-upgrade --root ROOT --json cutover ACTION --method nginx ...`.
    fn cutover(&self, action: &str, extra: &[&str]) -> Output {
        self.cutover_to(&self.new_address(), action, extra)
    }

    /// The same with `new` as the address traffic goes to.
    fn cutover_to(&self, new: &str, action: &str, extra: &[&str]) -> Output {
        let old = self.old_address();
        let mut args = vec![
            "--json",
            "cutover",
            action,
            "--instance",
            "prod",
            "--method",
            "nginx",
            "--nginx-site",
            SITE,
            "--old",
            &old,
            "--new",
            new,
        ];
        // The checks before the switch need the platform's servers; these
        // tests are about the proxy (cutover_around.rs runs the checks).
        args.extend_from_slice(SKIP_SERVER_CHECKS);
        args.extend_from_slice(extra);
        cmw_in(self.root.path(), &args)
    }

    fn state_folder(&self) -> PathBuf {
        self.root.path().join("var/lib/cmw-upgrade/prod")
    }

    fn saved_state(&self) -> PathBuf {
        self.state_folder().join("cutover-nginx.json")
    }

    fn site(&self) -> String {
        fs::read_to_string(self.nginx.site_file()).unwrap()
    }
}

fn assert_ok(output: &Output) -> serde_json::Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stderr(output),
        String::from_utf8_lossy(&output.stdout)
    );
    json(output)
}

fn steps(report: &serde_json::Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["step"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn reload_moves_traffic_under_load_and_revert_brings_it_back() {
    let rig = rig();
    let original = rig.site();
    assert_eq!(rig.nginx.answers_become("old", RELOAD_LIMIT), ["old"; 4]);

    // plan: every change shown as a diff, nothing changed.
    let plan = assert_ok(&rig.cutover("plan", &["--reload"]));
    assert_eq!(plan["changed"], false);
    assert_eq!(
        steps(&plan),
        [
            "check_reachable",
            "check_site",
            "save_state",
            "write_site",
            "reload"
        ]
    );
    let diff = plan["diff"].as_str().unwrap();
    assert!(
        diff.contains(&format!(
            "-        proxy_pass http://{};   # the old server",
            rig.old_address()
        )) && diff.contains(&format!(
            "+        proxy_pass http://{};   # the old server",
            rig.new_address()
        )),
        "{diff}"
    );
    assert!(plan["notes"][0]
        .as_str()
        .unwrap()
        .contains("connection resets"));
    assert_eq!(rig.site(), original);
    assert!(!rig.state_folder().exists());

    // apply --reload through a load of keep-alive clients that never retry.
    let load = Load::start(rig.nginx.port, 4, LOAD_LIMIT);
    load.wait_for_answers(200);
    let output = rig.cutover("apply", &["--reload"]);
    // Said before the switch.
    assert!(
        stderr(&output).contains("Warning: a reload makes nginx's old workers close"),
        "{}",
        stderr(&output)
    );
    let applied = assert_ok(&output);
    assert_eq!(rig.nginx.answers_become("new", RELOAD_LIMIT), ["new"; 4]);
    // The old workers close their keep-alive connections as they wind down:
    // the load runs on until its clients are on the new ones.
    std::thread::sleep(Duration::from_secs(1));
    let seen = load.finish();
    // The reload path is not zero-error by nature: the load reports its count.
    eprintln!(
        "nginx --reload switch under keep-alive load: {} answered, {} failed {:?}",
        seen.answered, seen.failed, seen.errors
    );
    assert!(seen.answered > 200, "{seen:?}");
    // The count is carried with its causes: every failure is a connection an
    // old worker closed (a reset, or closed before the answer), never an
    // answer nginx gave badly (a 502 would mean the new server was not reached).
    assert!(
        (seen.errors.len() as u64) <= seen.failed && seen.errors.is_empty() == (seen.failed == 0),
        "{seen:?}"
    );
    assert!(
        seen.errors
            .iter()
            .all(|error| error.contains("reset") || error.contains("closed")),
        "{seen:?}"
    );
    assert!(
        seen.bodies.iter().any(|(body, _)| body == "new"),
        "the load ran through the switch: {seen:?}"
    );
    assert_eq!(applied["changed"], true);
    assert_eq!(steps(&applied), steps(&plan));

    // Only the address bytes changed; the original saved 0600 and kept as a copy.
    assert_eq!(
        rig.site(),
        original.replace(&rig.old_address(), &rig.new_address())
    );
    let saved = fs::metadata(rig.saved_state()).unwrap();
    assert_eq!(saved.permissions().mode() & 0o777, 0o600);
    let saved: serde_json::Value =
        serde_json::from_slice(&fs::read(rig.saved_state()).unwrap()).unwrap();
    assert_eq!(saved["original"], original.as_str());
    let backups: Vec<String> = fs::read_dir(rig.state_folder())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".bak"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(backups[0].starts_with("cmw.cmw-upgrade."), "{backups:?}");
    assert_eq!(
        fs::read_to_string(rig.state_folder().join(&backups[0])).unwrap(),
        original
    );
    // Nothing beside the site, where `include sites-enabled/*` would load it.
    assert_eq!(
        fs::read_dir(rig.nginx.site_file().parent().unwrap())
            .unwrap()
            .count(),
        1
    );

    let proxy_url = format!("http://127.0.0.1:{}/", rig.nginx.port);
    let verified = rig.cutover("verify", &["--proxy-url", &proxy_url]);
    let verified = assert_ok(&verified);
    assert_eq!(verified["ok"], true, "{verified}");

    // A second apply changes nothing.
    let again = assert_ok(&rig.cutover("apply", &["--reload"]));
    assert_eq!(again["changed"], false, "{again}");

    // revert: the saved site back, the old server serves again.
    let reverted = assert_ok(&rig.cutover("revert", &[]));
    assert_eq!(reverted["changed"], true);
    assert_eq!(rig.nginx.answers_become("old", RELOAD_LIMIT), ["old"; 4]);
    assert_eq!(rig.site(), original);
    assert!(!rig.saved_state().exists());
    let verify = rig.cutover("verify", &["--proxy-url", &proxy_url]);
    assert_eq!(verify.status.code(), Some(1), "{}", stderr(&verify));
    assert_eq!(json(&verify)["ok"], false);
}

#[test]
fn an_address_not_in_the_site_is_bad_input_naming_what_is_there() {
    let rig = rig();
    let original = rig.site();
    let output = cmw_in(
        rig.root.path(),
        &[
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
            "127.0.0.1:1",
            "--new",
            &rig.new_address(),
            "--skip-check",
            "new-health",
            "--skip-check",
            "old-drift",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let error = &json(&output)["error"];
    assert_eq!(error["kind"], "bad_input");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("no upstream address 127.0.0.1:1")
            && message.contains(&format!("proxy_pass {} (line 5)", rig.old_address())),
        "{message}"
    );
    assert_eq!(rig.site(), original);
    assert!(!rig.state_folder().join("cutover-nginx.json").exists());
    assert_eq!(rig.nginx.answers_become("old", RELOAD_LIMIT), ["old"; 4]);
}

#[test]
fn a_site_nginx_refuses_is_never_written() {
    let rig = rig();
    // The running nginx serves the site as it loaded it; the file on disk
    // now holds a line `nginx -t` refuses, so every candidate is refused too.
    let broken = rig.site().replace(
        "    listen 127.0.0.1",
        "    no_such_directive on;\n    listen 127.0.0.1",
    );
    fs::write(rig.nginx.site_file(), &broken).unwrap();
    let output = rig.cutover("apply", &["--reload"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let error = &json(&output)["error"];
    assert_eq!(error["kind"], "check_failed", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("nginx -t") && message.contains("no_such_directive"),
        "{message}"
    );
    assert_eq!(rig.site(), broken);
    assert!(!rig.state_folder().join("cutover-nginx.json").exists());
    assert_eq!(rig.nginx.answers_become("old", RELOAD_LIMIT), ["old"; 4]);
}

#[test]
fn apply_without_reload_is_refused_and_says_what_to_do() {
    let rig = rig();
    let output = rig.cutover("apply", &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let error = &json(&output)["error"];
    assert_eq!(error["kind"], "bad_input");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("--reload") && message.contains("--method dns"),
        "{message}"
    );
    assert!(!rig.state_folder().exists());
}

#[test]
fn the_resolver_driven_upstream_passes_nginx_t_and_reverts() {
    let rig = rig();
    let original = rig.site();
    // The upstream name, at the DNS server nginx will ask: the old server's address.
    let dns_dir = tempfile::tempdir().unwrap();
    let bind = cmw_upgrade_tests::bind::TestBind::start(dns_dir.path(), 1)
        .expect("named starts (are bind9 and bind9-dnsutils installed?)");
    let added = bind
        .nsupdate(
            Some(&bind.key_file),
            "update add cmw-backend.example.test. 1 A 127.0.0.1",
        )
        .unwrap();
    assert!(added.status.success(), "{}", stderr(&added));
    let resolver = bind.address();
    // A DNS switch moves the address, not the port: the new server listens on the old port.
    let new = format!("127.0.0.3:{}", rig.old.port);
    let resolver_args = [
        "--upstream-name",
        "cmw-backend.example.test",
        "--resolver",
        &resolver,
    ];
    let plan = assert_ok(&rig.cutover_to(&new, "plan", &resolver_args));
    assert_eq!(plan["how"], "resolver");
    assert_eq!(
        steps(&plan),
        [
            "check_name",
            "check_site",
            "save_state",
            "write_site",
            "reload"
        ]
    );
    assert_eq!(rig.site(), original);

    let other_port = rig.cutover("prepare", &resolver_args);
    assert_eq!(other_port.status.code(), Some(2), "{}", stderr(&other_port));
    assert!(stderr(&other_port).contains("differ in port"));
    // A name that does not point at the old server: nothing changes.
    let elsewhere = rig.cutover_to(
        &new,
        "prepare",
        &[
            "--upstream-name",
            "cmw.example.test",
            "--resolver",
            &resolver,
        ],
    );
    assert_eq!(elsewhere.status.code(), Some(2), "{}", stderr(&elsewhere));
    let error = &json(&elsewhere)["error"];
    assert_eq!(error["kind"], "check_failed", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("192.0.2.10"),
        "{error}"
    );
    assert_eq!(rig.site(), original);
    assert!(!rig.saved_state().exists());

    let prepared = assert_ok(&rig.cutover_to(&new, "prepare", &resolver_args));
    assert_eq!(prepared["changed"], true);
    assert_eq!(
        prepared["steps"][0]["detail"],
        "cmw-backend.example.test is 127.0.0.1"
    );
    assert_eq!(prepared["steps"][1]["step"], "check_site");
    assert_eq!(prepared["steps"][1]["detail"], "nginx -t passes");
    // nginx now resolves the name for each request: the old server still serves.
    assert_eq!(rig.nginx.answers_become("old", RELOAD_LIMIT), ["old"; 4]);
    let expected = original.replace(
        &format!("        proxy_pass http://{};", rig.old_address()),
        &format!(
            "        resolver {resolver} valid=1s;\n        set $cmw_upgrade_upstream \
             cmw-backend.example.test;\n        proxy_pass http://$cmw_upgrade_upstream:{};",
            rig.old.port
        ),
    );
    assert_eq!(rig.site(), expected);
    // The real nginx -t passes on the site as written, in its configuration.
    let check = std::process::Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(format!("{}/usr/share/nginx/", rig.root.path().display()))
        .arg("-c")
        .arg(rig.nginx.main_file())
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let verified = assert_ok(&rig.cutover_to(&new, "verify", &resolver_args));
    assert_eq!(verified["ok"], true, "{verified}");
    // Prepared already: nothing more.
    let again = assert_ok(&rig.cutover_to(&new, "prepare", &resolver_args));
    assert_eq!(again["changed"], false);

    let reverted = assert_ok(&rig.cutover_to(&new, "revert", &[]));
    assert_eq!(reverted["changed"], true);
    assert_eq!(rig.site(), original);
    assert_eq!(rig.nginx.answers_become("old", RELOAD_LIMIT), ["old"; 4]);
}

#[test]
fn a_crash_mid_apply_is_reverted_from_the_saved_state() {
    let rig = rig();
    let original = rig.site();
    let options = NginxOptions {
        instance: InstanceName::new("prod").unwrap(),
        target: NginxTarget {
            site: SITE.to_owned(),
            main_config: cmw_upgrade_tests::nginx::MAIN_CONFIG.to_owned(),
            old: Endpoint::parse(&rig.old_address()).unwrap(),
            new: Endpoint::parse(&rig.new_address()).unwrap(),
        },
        root: rig.root.path().to_path_buf(),
        reload: true,
        resolver: None,
        proxy_url: None,
        stamp: "20261128T120000Z".into(),
    };
    // A crash after the state was saved and the site written.
    let crashing = Tripwire::at_command(
        LocalExecutor::new(rig.root.path()),
        "crash before the reload",
        |command| command.argv.iter().any(|arg| arg == "reload"),
    );
    let crash = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        nginx::apply(&crashing, &options)
    }));
    assert!(crash.is_err(), "the apply did not crash");
    // Written but not loaded: nginx still sends to the old server.
    assert!(rig.saved_state().exists());
    assert_ne!(rig.site(), original);
    assert_eq!(rig.nginx.answers_become("old", RELOAD_LIMIT), ["old"; 4]);

    let reverted = assert_ok(&rig.cutover("revert", &[]));
    assert_eq!(reverted["changed"], true);
    assert_eq!(rig.site(), original);
    assert!(!rig.saved_state().exists());
    assert_eq!(rig.nginx.answers_become("old", RELOAD_LIMIT), ["old"; 4]);
    // The state is kept beside, out of the way of the next apply.
    assert!(fs::read_dir(rig.state_folder()).unwrap().any(|entry| entry
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("cutover-nginx.reverted.")));
}

/// Two backends on one port at 127.0.0.2 and 127.0.0.3: what a DNS name
/// can point at in turn.
fn backends_on_one_port() -> (TestBackend, TestBackend) {
    for _ in 0..10 {
        let old = TestBackend::start_at("old", ([127, 0, 0, 2], 0).into()).unwrap();
        if let Ok(new) = TestBackend::start_at("new", ([127, 0, 0, 3], old.port).into()) {
            return (old, new);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

#[test]
fn once_prepared_a_dns_switch_moves_traffic_with_no_reload_and_no_failed_request() {
    let dns_dir = tempfile::tempdir().unwrap();
    let bind = cmw_upgrade_tests::bind::TestBind::start(dns_dir.path(), 1)
        .expect("named starts (are bind9 and bind9-dnsutils installed?)");
    let added = bind
        .nsupdate(
            Some(&bind.key_file),
            "update add backend.example.test. 1 A 127.0.0.2",
        )
        .unwrap();
    assert!(added.status.success(), "{}", stderr(&added));
    let (old, new) = backends_on_one_port();
    let root = tempfile::tempdir().unwrap();
    let nginx = TestNginx::start_proxying(root.path(), &old.address.to_string())
        .expect("nginx starts (is the nginx-light package installed?)");
    assert_eq!(nginx.answers_become("old", RELOAD_LIMIT), ["old"; 4]);

    // prepare: resolver-driven, one reload, before the window.
    let workers = nginx.workers();
    assert!(!workers.is_empty());
    let (old_address, new_address) = (old.address.to_string(), new.address.to_string());
    let resolver = bind.address();
    let prepared = assert_ok(&cmw_in(
        root.path(),
        &[
            "--json",
            "cutover",
            "prepare",
            "--instance",
            "prod",
            "--method",
            "nginx",
            "--nginx-site",
            SITE,
            "--old",
            &old_address,
            "--new",
            &new_address,
            "--upstream-name",
            "backend.example.test",
            "--resolver",
            &resolver,
        ],
    ));
    assert_eq!(prepared["changed"], true);
    // The reload's old workers close their keep-alive connections as they
    // go: the window starts once they are gone, as it would hours later.
    assert!(nginx.wait_for_new_workers(&workers, RELOAD_LIMIT));
    let workers = nginx.workers();
    // nginx now asks the DNS: still the old server.
    assert_eq!(nginx.answers_become("old", RELOAD_LIMIT), ["old"; 4]);

    // The switch: the name's A record, under a keep-alive load; nginx is not reloaded.
    let load = Load::start(nginx.port, 4, LOAD_LIMIT);
    load.wait_for_answers(200);
    let key = bind.key_file.to_str().unwrap().to_owned();
    let switched = assert_ok(&cmw_in(
        root.path(),
        &[
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
            "backend.example.test",
            "--old",
            "127.0.0.2",
            "--new",
            "127.0.0.3",
            "--server",
            &resolver,
            "--tsig-key-file",
            &key,
            "--force",
            "--skip-check",
            "new-health",
            "--skip-check",
            "old-drift",
            "--new-port",
            &new.port.to_string(),
        ],
    ));
    assert_eq!(switched["changed"], true);
    assert_eq!(nginx.answers_become("new", RELOAD_LIMIT), ["new"; 4]);
    std::thread::sleep(Duration::from_secs(1));
    let seen = load.finish();
    assert_eq!(
        nginx.workers(),
        workers,
        "nginx was not reloaded for the switch"
    );
    eprintln!(
        "resolver-driven nginx, DNS switch under keep-alive load: {} answered, {} failed",
        seen.answered, seen.failed
    );
    assert_eq!(
        seen.failed, 0,
        "failed requests during the DNS switch: {seen:?}"
    );
    let mut bodies: Vec<&str> = seen.bodies.iter().map(|(body, _)| body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        ["new", "old"],
        "the load ran through the switch: {seen:?}"
    );
}
