//! `cmw-upgrade cutover --method dns` with the real BIND on loopback: signed
//! updates lower the TTL, swap the address and restore them; unsigned,
//! wrongly signed and stale updates change nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

mod util;

use cmw_upgrade_tests::bind::{TestBind, NAME, NEW, OLD, OLD_V6};
use util::{cmw_in, json, stderr};

/// A BIND with the zone, and a root for the saved state.
struct Rig {
    bind: TestBind,
    root: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

/// A server whose name has A and AAAA records with `ttl`.
fn rig(ttl: u32) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let bind = TestBind::start(dir.path(), ttl)
        .expect("named starts (are bind9 and bind9-dnsutils installed?)");
    Rig {
        bind,
        root: tempfile::tempdir().unwrap(),
        _dir: dir,
    }
}

impl Rig {
    /// `cmw-upgrade --root ROOT --json cutover ACTION --method dns ...` for this server.
    fn dns(&self, action: &str, extra: &[&str]) -> Output {
        self.dns_from(OLD, action, extra)
    }

    /// The same, with `old` as the address traffic leaves.
    fn dns_from(&self, old: &str, action: &str, extra: &[&str]) -> Output {
        let server = self.bind.address();
        let mut args = vec![
            "--json",
            "cutover",
            action,
            "--instance",
            "prod",
            "--method",
            "dns",
            "--zone",
            "example.test",
            "--name",
            "cmw.example.test",
            "--old",
            old,
            "--new",
            NEW,
            "--server",
            &server,
        ];
        // The checks before the switch need the platform's servers (and
        // --new-port); these tests are about the records.
        args.extend_from_slice(&[
            "--skip-check",
            "new-health",
            "--skip-check",
            "new-reachable",
            "--skip-check",
            "old-drift",
        ]);
        args.extend_from_slice(extra);
        cmw_in(self.root.path(), &args)
    }

    /// The same, signed with `key`.
    fn signed(&self, action: &str, key: &std::path::Path, extra: &[&str]) -> Output {
        let key = key.to_str().unwrap();
        let mut args = vec!["--tsig-key-file", key];
        args.extend_from_slice(extra);
        self.dns(action, &args)
    }

    fn keyed(&self, action: &str, extra: &[&str]) -> Output {
        self.signed(action, &self.bind.key_file.clone(), extra)
    }

    fn saved_state(&self) -> PathBuf {
        self.root
            .path()
            .join("var/lib/cmw-upgrade/prod/cutover-dns.json")
    }

    fn a(&self) -> String {
        self.bind.dig(NAME, "A").unwrap()
    }

    fn ttls(&self) -> (u32, u32) {
        (
            self.bind.ttl(NAME, "A").unwrap(),
            self.bind.ttl(NAME, "AAAA").unwrap(),
        )
    }

    /// The records as they were made: nothing changed.
    fn assert_untouched(&self, ttl: u32, serial: u32) {
        assert_eq!(self.a(), OLD);
        assert_eq!(self.bind.dig(NAME, "AAAA").unwrap(), OLD_V6);
        assert_eq!(self.ttls(), (ttl, ttl));
        assert_eq!(self.bind.serial().unwrap(), serial);
    }
}

fn assert_ok(output: &Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
    json(output)
}

fn error_of(output: &Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(2), "{}", stderr(output));
    json(output)["error"].clone()
}

#[test]
fn unsigned_and_unallowed_updates_are_refused() {
    let rig = rig(3600);
    let serial = rig.bind.serial().unwrap();
    // The server's policy: an unsigned update is refused.
    let unsigned = rig
        .bind
        .nsupdate(
            None,
            &format!("update delete {NAME} A\nupdate add {NAME} 60 A {NEW}"),
        )
        .unwrap();
    assert!(!unsigned.status.success());
    assert!(
        String::from_utf8_lossy(&unsigned.stdout).contains("REFUSED")
            || String::from_utf8_lossy(&unsigned.stderr).contains("REFUSED"),
        "{unsigned:?}"
    );
    rig.assert_untouched(3600, serial);
    // A key the server knows but does not allow: an authentication error, nothing kept.
    let error = error_of(&rig.signed("prepare", &rig.bind.other_key_file, &["--ttl", "5"]));
    assert_eq!(error["kind"], "authentication_failed", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("REFUSED"),
        "{error}"
    );
    rig.assert_untouched(3600, serial);
    assert!(!rig.saved_state().exists());
}

#[test]
fn a_wrong_secret_is_an_authentication_error_and_never_shown() {
    let rig = rig(3600);
    let serial = rig.bind.serial().unwrap();
    let output = rig.signed("prepare", &rig.bind.wrong_key_file, &["--ttl", "5"]);
    let error = error_of(&output);
    assert_eq!(error["kind"], "authentication_failed", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("the update of cmw.example.test. signed with key cmw-upgrade"),
        "{message}"
    );
    let wrong = fs::read_to_string(&rig.bind.wrong_key_file).unwrap();
    let secret = wrong.split('"').nth(3).unwrap();
    assert!(!stderr(&output).contains(secret));
    assert!(!String::from_utf8_lossy(&output.stdout).contains(secret));
    rig.assert_untouched(3600, serial);
    assert!(!rig.saved_state().exists());
}

#[test]
fn a_stale_old_address_changes_nothing() {
    let rig = rig(3600);
    let serial = rig.bind.serial().unwrap();
    for action in ["prepare", "apply"] {
        let key = rig.bind.key_file.to_str().unwrap();
        let output = rig.dns_from("192.0.2.77", action, &["--tsig-key-file", key, "--force"]);
        let error = error_of(&output);
        assert_eq!(error["kind"], "state_conflict", "{error}");
        assert!(error["message"].as_str().unwrap().contains(OLD), "{error}");
    }
    rig.assert_untouched(3600, serial);
    assert!(!rig.saved_state().exists());
    // Someone else moves the name after prepare: apply stops and shows it.
    assert_ok(&rig.keyed("prepare", &["--ttl", "5"]));
    let moved = rig
        .bind
        .nsupdate(
            Some(&rig.bind.key_file),
            &format!("update delete {NAME} A\nupdate add {NAME} 5 A 192.0.2.55"),
        )
        .unwrap();
    assert!(moved.status.success(), "{moved:?}");
    let error = error_of(&rig.keyed("apply", &["--force"]));
    assert_eq!(error["kind"], "state_conflict", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("192.0.2.55"),
        "{error}"
    );
    assert_eq!(rig.a(), "192.0.2.55");
}

#[test]
fn prepare_apply_verify_finish() {
    let rig = rig(3600);
    let serial = rig.bind.serial().unwrap();

    // plan: every update listed, nothing sent, nothing saved.
    let plan = assert_ok(&rig.dns("plan", &["--ttl", "2"]));
    assert_eq!(plan["changed"], false);
    let phases: Vec<(&str, &str)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            (
                step["phase"].as_str().unwrap(),
                step["step"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        [
            ("prepare", "save_state"),
            ("prepare", "update"),
            ("prepare", "update"),
            ("apply", "wait_caches"),
            ("apply", "update"),
            ("finish", "update"),
            ("finish", "update"),
            ("finish", "keep_state_beside"),
        ]
    );
    assert!(plan["steps"][4]["display"]
        .as_str()
        .unwrap()
        .contains(&format!("update add {NAME} 2 A {NEW}")));
    rig.assert_untouched(3600, serial);
    assert!(!rig.saved_state().exists());
    assert!(
        plan["notes"][0].as_str().unwrap().contains(OLD_V6),
        "the AAAA record is pointed out: {plan}"
    );

    // prepare: TTL lowered on A and AAAA, the original saved 0600, the serial rises.
    let prepared = assert_ok(&rig.keyed("prepare", &["--ttl", "2"]));
    assert_eq!(prepared["changed"], true);
    assert_eq!(rig.ttls(), (2, 2));
    assert_eq!(rig.a(), OLD);
    let after_prepare = rig.bind.serial().unwrap();
    assert!(after_prepare > serial, "{after_prepare} > {serial}");
    assert_eq!(prepared["serial_after"], after_prepare);
    let mode = fs::metadata(rig.saved_state())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let saved: serde_json::Value =
        serde_json::from_slice(&fs::read(rig.saved_state()).unwrap()).unwrap();
    assert_eq!(saved["original"][0]["ttl"], 3600);
    assert!(saved["caches_expire_at"].as_u64().unwrap() > 0);
    // Again: nothing more.
    assert_eq!(
        assert_ok(&rig.keyed("prepare", &["--ttl", "2"]))["changed"],
        false
    );

    // verify before the switch: every server still answers the old address.
    let server = rig.bind.address();
    let port = rig.bind.port.to_string();
    let verify_args = [
        "--resolver",
        server.as_str(),
        "--ns-port",
        port.as_str(),
        "--verify-timeout",
        "1s",
    ];
    let early = rig.dns("verify", &verify_args);
    assert_eq!(early.status.code(), Some(1), "{}", stderr(&early));
    assert_eq!(json(&early)["ok"], false);

    // apply: refused while caches may hold the old TTL, allowed with --force.
    let error = error_of(&rig.keyed("apply", &[]));
    assert_eq!(error["kind"], "state_conflict", "{error}");
    assert!(error["message"].as_str().unwrap().contains("--force"));
    assert_eq!(rig.a(), OLD);
    let applied = assert_ok(&rig.keyed("apply", &["--force"]));
    assert_eq!(applied["changed"], true);
    assert_eq!(rig.a(), NEW);
    assert_eq!(rig.bind.dig(NAME, "AAAA").unwrap(), OLD_V6);
    assert!(rig.bind.serial().unwrap() > after_prepare);
    let after = &applied["after"][0];
    assert_eq!(after["kind"], "A");
    assert_eq!(after["addresses"][0], NEW);
    // Again: already so.
    assert_eq!(assert_ok(&rig.keyed("apply", &[]))["changed"], false);

    // verify: the NS set's server and the resolver, each its row.
    let verified = assert_ok(&rig.dns("verify", &verify_args));
    assert_eq!(verified["ok"], true, "{verified}");
    let rows = verified["servers"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{verified}");
    assert_eq!(rows[0]["role"], "authoritative");
    assert_eq!(rows[0]["server"], "ns1.example.test.");
    assert_eq!(rows[0]["address"], server.as_str());
    assert_eq!(rows[1]["role"], "resolver");
    for row in rows {
        assert_eq!(row["answer"][0], NEW, "{row}");
        assert_eq!(row["ok"], true);
    }

    // finish: the TTL is back, the address stays, the state is kept beside.
    let finished = assert_ok(&rig.keyed("finish", &[]));
    assert_eq!(finished["changed"], true);
    assert_eq!(rig.ttls(), (3600, 3600));
    assert_eq!(rig.a(), NEW);
    assert!(!rig.saved_state().exists());
    let kept: Vec<String> = fs::read_dir(rig.saved_state().parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("cutover-dns.finished."))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
}

#[test]
fn apply_waits_out_the_ttl_and_revert_restores_address_and_ttl() {
    let rig = rig(2);
    assert_ok(&rig.keyed("prepare", &["--ttl", "1"]));
    assert_eq!(rig.ttls(), (1, 1));
    let saved: serde_json::Value =
        serde_json::from_slice(&fs::read(rig.saved_state()).unwrap()).unwrap();
    let expire = saved["caches_expire_at"].as_u64().unwrap();
    // Past the old TTL of 2 s: no cache can hold it any more.
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= expire
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let applied = assert_ok(&rig.keyed("apply", &[]));
    assert_eq!(applied["changed"], true);
    assert_eq!(rig.a(), NEW);

    let reverted = assert_ok(&rig.keyed("revert", &[]));
    assert_eq!(reverted["changed"], true);
    assert_eq!(rig.a(), OLD);
    assert_eq!(rig.bind.dig(NAME, "AAAA").unwrap(), OLD_V6);
    assert_eq!(rig.ttls(), (2, 2));
    assert!(!rig.saved_state().exists());
    // Nothing left to revert.
    let error = error_of(&rig.keyed("revert", &[]));
    assert_eq!(error["kind"], "state_conflict");
}

#[test]
fn haproxy_has_nothing_to_prepare_and_changes_need_a_key() {
    let rig = rig(3600);
    let output = cmw_in(
        rig.root.path(),
        &[
            "--json",
            "cutover",
            "prepare",
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
        ],
    );
    assert_eq!(error_of(&output)["kind"], "bad_input");
    let error = error_of(&rig.dns("prepare", &[]));
    assert_eq!(error["kind"], "bad_input");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("--tsig-key-file"));
    rig.assert_untouched(3600, rig.bind.serial().unwrap());
}
