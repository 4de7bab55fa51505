//! The whole upgrade from a control point: two real sshd on loopback, each
//! with its own host key and its own simulated server root for the agent.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cmw_upgrade_tests::sshd::TestSshd;
use serde_json::Value;
use util::{json, stderr, stdout};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cmw-upgrade"))
}

/// A simulation (`demo --setup-only`) behind two sshd, and a control point
/// with its own state folder.
struct TwoServers {
    dir: tempfile::TempDir,
    setup: Value,
    old: TestSshd,
    new: TestSshd,
}

impl TwoServers {
    fn new(family: &str) -> TwoServers {
        let dir = tempfile::tempdir().unwrap();
        let output = bin()
            .args(["demo", "--setup-only", "--json", "--upgrade-time", "1s"])
            .args(["--family", family, "--keep"])
            .arg(dir.path().join("sim"))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let setup = json(&output);
        let path = format!(
            "SetEnv PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            setup["programs"].as_str().unwrap()
        );
        let old = TestSshd::start_with(&path).expect("sshd starts");
        let new = TestSshd::start_with(&path).expect("sshd starts");
        // One key and one known_hosts file reach both.
        new.authorize(&old.identity_file().with_extension("pub"))
            .unwrap();
        let known = format!(
            "{}{}",
            fs::read_to_string(old.known_hosts_file()).unwrap(),
            fs::read_to_string(new.known_hosts_file()).unwrap()
        );
        fs::write(dir.path().join("known_hosts"), known).unwrap();
        fs::create_dir_all(dir.path().join("control")).unwrap();
        TwoServers {
            dir,
            setup,
            old,
            new,
        }
    }

    fn text(&self, key: &str) -> String {
        self.setup[key].as_str().unwrap().to_owned()
    }

    fn control(&self) -> PathBuf {
        self.dir.path().join("control")
    }

    fn old_root(&self) -> PathBuf {
        PathBuf::from(self.text("old_root"))
    }

    fn new_root(&self) -> PathBuf {
        PathBuf::from(self.text("root"))
    }

    /// `cmw-upgrade --root <control point> upgrade …` reaching both servers.
    fn upgrade(&self, extra: &[&str]) -> Command {
        let mut command = bin();
        command
            .arg("--root")
            .arg(self.control())
            .arg("upgrade")
            .args([
                "--old",
                &format!("{}:{}", self.old.destination(), self.old.port),
            ])
            .args([
                "--new",
                &format!("{}:{}", self.new.destination(), self.new.port),
            ])
            .arg("--old-root")
            .arg(self.old_root())
            .arg("--new-root")
            .arg(self.new_root())
            .args(["--remote-cmw-upgrade", env!("CARGO_BIN_EXE_cmw-upgrade")])
            .arg("--identity-file")
            .arg(self.old.identity_file())
            .arg("--known-hosts")
            .arg(self.dir.path().join("known_hosts"))
            .args(["--instance", "prod"])
            .args(["--distribution", &self.text("distribution")])
            .args(["--prerequisites", &self.text("prerequisites")])
            .args(["--port", &self.setup["port"].to_string()])
            .args(["--upgrade-timeout", "30s", "--health-timeout", "30s"])
            .args(["--bundle-dir", "/var/backups/cmw"])
            .args(extra);
        command
    }

    fn state(&self) -> Option<Value> {
        let path = self.control().join("var/lib/cmw-upgrade/prod/state.json");
        fs::read(path)
            .ok()
            .map(|bytes| serde_json::from_slice(&bytes).unwrap())
    }
}

impl Drop for TwoServers {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(&self.text("programs")).join("systemctl"))
            .args(["stop", "comindwareprod", "nginx"])
            .env("PATH", self.text("path"))
            .output();
    }
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

#[test]
fn the_whole_upgrade_from_a_control_point() {
    let servers = TwoServers::new("deb");
    let plan = run(&mut servers.upgrade(&["--plan"]));
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
    println!("{}", stdout(&plan));
    assert!(servers.state().is_none(), "a plan records nothing");
    let output = run(&mut servers.upgrade(&[]));
    println!("{}\n{}", stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(0));
}

/// Copies the bundle the old server made to the same path on the new one,
/// as shared storage mounted on both would show it.
fn share_bundle(servers: &TwoServers) -> String {
    let state = servers.state().unwrap();
    let bundle = state["settings"]["bundle"].as_str().unwrap().to_owned();
    let relative = bundle.trim_start_matches('/');
    let to = servers.new_root().join(relative);
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    let status = Command::new("cp")
        .args(["-a", "--no-target-directory"])
        .arg(servers.old_root().join(relative))
        .arg(&to)
        .status()
        .unwrap();
    assert!(status.success());
    bundle
}

#[test]
fn a_bundle_on_shared_storage_is_used_in_place() {
    let servers = TwoServers::new("deb");
    let killed = run(servers
        .upgrade(&[])
        .env("CMW_UPGRADE_KILL_AT", "transfer-bundle:start"));
    assert_eq!(killed.status.code(), None, "{}", stderr(&killed));
    share_bundle(&servers);
    let output = run(&mut servers.upgrade(&["--json"]));
    println!("{}", stderr(&output));
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}
