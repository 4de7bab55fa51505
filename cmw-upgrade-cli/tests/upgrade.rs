//! The whole procedure, end to end, on simulated servers: each family, each
//! failure mode, kill -9 at every step boundary, plan, status and the lock.

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use util::{assert_same_tree, database, json, stderr, stdout, tree};

const STEPS: [&str; 12] = [
    "verify-bundle",
    "prerequisites",
    "install-version",
    "create-instance",
    "migrate-config",
    "smoke-check",
    "transfer-data",
    "wait-upgrade",
    "backup-upgraded",
    "prune-caches",
    "replace-database",
    "final-check",
];

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cmw-upgrade"))
}

fn demo(dir: &Path, extra: &[&str]) -> (Output, Value) {
    let output = bin()
        .args(["demo", "--json", "--upgrade-time", "1s", "--keep"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let report = json(&output);
    (output, report)
}

fn commands(report: &Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|step| step["commands"].as_array().unwrap().iter())
        .map(|command| command.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn upgrades_on_each_family_with_its_own_commands() {
    for (family, install, owner) in [
        ("deb", "dpkg -i librdkafka1_2.3.0-1_amd64.deb", 33),
        ("rpm", "rpm -i librdkafka-2.3.0-1.el8.x86_64.rpm", 995),
        (
            "alt",
            "apt-get install -y ./librdkafka-2.3.0-alt1.x86_64.rpm",
            996,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (output, report) = demo(dir.path(), &["--family", family]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{family}: {}",
            stderr(&output)
        );
        assert_eq!(report["outcome"], "upgraded");
        assert_eq!(report["family"], family);
        let names: Vec<&str> = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["name"].as_str().unwrap())
            .collect();
        assert_eq!(names[0], "backup-old-server");
        assert_eq!(names[1..], STEPS);
        assert!(report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|step| step["status"] == "done" && step["seconds"].as_f64().is_some()));
        let transcript = commands(&report);
        let has = |needle: &str| transcript.iter().any(|command| command.contains(needle));
        assert!(has(install), "{family}: {transcript:#?}");
        let site_dir = match family {
            "deb" => "/etc/nginx/sites-available",
            "rpm" => "/etc/nginx/conf.d",
            _ => "/etc/nginx/sites-available.d",
        };
        assert!(has(&format!(
            "chown -R -h {owner}:{owner} /var/lib/comindware/prod/Database"
        )));
        assert!(has("bash instance_create.sh -n=prod -p="));
        assert!(has("-v=5.0.1234.0"));
        // The gateway failed its first start: the tool restarted it, as the platform's procedure says.
        assert!(has("systemctl restart apigatewayprod"));
        assert!(has("nginx -t") && has("nginx -s reload"));
        assert!(has(
            "cmw-upgrade prune-caches /var/lib/comindware/prod/Database.cmw-upgrade-pruned"
        ));

        let new_root = dir.path().join("new-server");
        let site = fs::read_to_string(
            new_root
                .join(site_dir.trim_start_matches('/'))
                .join("comindwareprod"),
        )
        .unwrap();
        assert!(site.contains("server_name cmw.example.org"), "{site}");
        let db = tree(&database(&new_root));
        assert_eq!(db[".cmw-sim-version"], "5.0.1234.0\n");
        assert!(!db
            .keys()
            .any(|path| path.ends_with("/metastorage/") && !path.starts_with("snapshots")));
        assert!(db.keys().any(|path| path.contains("cacheGroup-Account/")));
        let owner_of =
            |path: &Path| std::os::unix::fs::MetadataExt::uid(&fs::metadata(path).unwrap());
        assert_eq!(owner_of(&database(&new_root).join("db")), owner);
        // The old server was only read.
        let old = tree(&database(&dir.path().join("old-server")));
        assert_eq!(old[".cmw-sim-version"], "4.7.2890.0\n");
        let state: Value = serde_json::from_slice(
            &fs::read(new_root.join("var/lib/cmw-upgrade/prod/state.json")).unwrap(),
        )
        .unwrap();
        assert!(state["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|step| step["status"] == "done"));
    }
}

#[test]
fn each_failure_mode_ends_in_a_clean_rollback() {
    for failure in ["error", "hang", "crash"] {
        let dir = tempfile::tempdir().unwrap();
        let (output, report) = demo(dir.path(), &["--fail-upgrade", failure]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{failure}: {}",
            stderr(&output)
        );
        assert_eq!(report["outcome"], "rolled_back");
        let steps = report["steps"].as_array().unwrap();
        let wait = steps
            .iter()
            .find(|step| step["name"] == "wait-upgrade")
            .unwrap();
        assert_eq!(wait["status"], "failed", "{failure}");
        let error = wait["error"].as_str().unwrap();
        assert_eq!(
            wait["error_kind"], "step_failed",
            "the kind is recorded for scripts"
        );
        assert!(
            error.contains("cmw-upgrade rollback --instance prod"),
            "{error}"
        );
        let expected = match failure {
            "error" => "hold an error",
            "hang" => "no verdict after",
            _ => "stopped while upgrading",
        };
        assert!(error.contains(expected), "{failure}: {error}");
        assert_eq!(steps.last().unwrap()["name"], "rollback");
        assert_eq!(steps.last().unwrap()["status"], "done");

        // The new server holds the old data again; the bundle still verifies
        // and holds the failed upgrade's logs; the old server is untouched.
        let new_root = dir.path().join("new-server");
        let old_root = dir.path().join("old-server");
        let bundle = new_root.join("mnt/cmw-backup/prod-4.7.2890.0");
        assert_eq!(tree(&database(&new_root)), tree(&bundle.join("database")));
        assert_eq!(tree(&database(&old_root)), tree(&bundle.join("database")));
        let kept = fs::read_dir(bundle.join("upgrade-logs")).unwrap().count();
        assert_eq!(kept, 1, "{failure}");
        let verify = bin()
            .args(["backup", "verify"])
            .arg(&bundle)
            .output()
            .unwrap();
        assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
        // The half-upgraded database was moved aside, not deleted.
        let data_root = new_root.join("var/lib/comindware/prod");
        assert!(fs::read_dir(&data_root).unwrap().any(|entry| entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("Database.before-restore-")));
    }
}

/// A simulation laid out by `demo --setup-only`, whose processes stop on drop.
struct Rehearsal {
    dir: tempfile::TempDir,
    setup: Value,
}

impl Rehearsal {
    fn new() -> Rehearsal {
        let dir = tempfile::tempdir().unwrap();
        let output = bin()
            .args([
                "demo",
                "--setup-only",
                "--json",
                "--upgrade-time",
                "1s",
                "--keep",
            ])
            .arg(dir.path().join("sim"))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        Rehearsal {
            setup: json(&output),
            dir,
        }
    }

    fn root(&self) -> PathBuf {
        PathBuf::from(self.setup["root"].as_str().unwrap())
    }

    /// `cmw-upgrade --root <new server> <verb>` with the stand-ins on PATH.
    fn plain(&self, verb: &str) -> Command {
        let mut command = bin();
        command
            .env("PATH", self.setup["path"].as_str().unwrap())
            .arg("--root")
            .arg(self.root())
            .arg(verb);
        command
    }

    /// `plan` or `run` with the simulation's options.
    fn command(&self, verb: &str) -> Command {
        let mut command = self.plain(verb);
        for key in ["instance", "bundle", "distribution", "prerequisites"] {
            command
                .arg(format!("--{key}"))
                .arg(self.setup[key].as_str().unwrap());
        }
        command
            .args(["--port", &self.setup["port"].to_string()])
            .args(["--upgrade-timeout", "30s", "--health-timeout", "30s"]);
        command
    }

    /// `rollback --instance prod --yes --json` plus `extra`, which must succeed.
    fn rollback_with(&self, extra: &[&str]) -> Output {
        let rollback = self
            .plain("rollback")
            .args(["--instance", "prod", "--yes", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(rollback.status.code(), Some(0), "{}", stderr(&rollback));
        rollback
    }

    fn rollback(&self) -> Output {
        self.rollback_with(&[])
    }

    fn run(&self, kill_at: Option<&str>) -> Output {
        let mut command = self.command("run");
        if let Some(point) = kill_at {
            command.env("CMW_UPGRADE_KILL_AT", point);
        }
        command.output().unwrap()
    }

    /// What the upgraded server looks like, with this simulation's ports named.
    fn final_state(&self) -> BTreeMap<String, String> {
        util::final_state(&self.root(), &self.root(), &self.setup)
    }
}

impl Drop for Rehearsal {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(self.setup["programs"].as_str().unwrap()).join("systemctl"))
            .args(["stop", "comindwareprod", "nginx"])
            .env("PATH", self.setup["path"].as_str().unwrap())
            .output();
    }
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the kill hook: cargo test --features cmw-upgrade-cli/test-hooks (bash .ci/run does)"
)]
fn kill_9_at_every_step_boundary_then_rerun_gives_the_same_end() {
    let reference = Rehearsal::new();
    let output = reference.run(None);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let expected = reference.final_state();
    drop(reference);

    let points: Vec<String> = STEPS
        .iter()
        .flat_map(|step| [format!("{step}:start"), format!("{step}:end")])
        .collect();
    for chunk in points.chunks(6) {
        let handles: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|point| {
                std::thread::spawn(move || {
                    let rehearsal = Rehearsal::new();
                    let killed = rehearsal.run(Some(&point));
                    assert_eq!(
                        killed.status.signal(),
                        Some(9),
                        "{point}: {}",
                        stderr(&killed)
                    );
                    let status = rehearsal
                        .plain("status")
                        .args(["--instance", "prod"])
                        .output()
                        .unwrap();
                    // Killed after the last step is saved done, the run is complete.
                    let finished = point == "final-check:end";
                    assert_eq!(status.status.code() == Some(0), finished, "{point}");
                    let rerun = rehearsal.run(None);
                    assert_eq!(
                        rerun.status.code(),
                        Some(0),
                        "{point}: {}{}",
                        stdout(&rerun),
                        stderr(&rerun)
                    );
                    (point, rehearsal.final_state())
                })
            })
            .collect();
        for handle in handles {
            let (point, state) = handle.join().unwrap();
            let differences: Vec<&String> = expected
                .keys()
                .chain(state.keys())
                .filter(|key| expected.get(*key) != state.get(*key))
                .collect();
            assert!(
                differences.is_empty(),
                "{point}: differs in {differences:?}"
            );
        }
    }
}

#[test]
fn plan_shows_every_step_and_changes_nothing() {
    let rehearsal = Rehearsal::new();
    let before = tree(&rehearsal.root());
    let output = rehearsal.command("plan").arg("--json").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan = json(&output);
    let steps = plan["steps"].as_array().unwrap();
    let names: Vec<&str> = steps
        .iter()
        .map(|step| step["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, STEPS);
    let all: Vec<&str> = steps
        .iter()
        .flat_map(|step| step["commands"].as_array().unwrap())
        .map(|command| command.as_str().unwrap())
        .collect();
    for needle in [
        "tar -xf /opt/distr/5.0-release-ru-5.0.77.prerequisites.astra.tar.gz -C /var/lib/cmw-upgrade/prod/dist",
        "dpkg -i '<the *.deb files unpacked there>'",
        "bash version_install.sh",
        "bash instance_create.sh -n=prod",
        "cmw-upgrade config migrate --from /mnt/cmw-backup/prod-4.7.2890.0/config --instance prod --family deb",
        "systemctl stop comindwareprod",
        "cmw-upgrade restore /mnt/cmw-backup/prod-4.7.2890.0 --instance prod --replace --family deb",
        "chown -R -h 33:33 /var/lib/comindware/prod/Database",
    ] {
        assert!(all.iter().any(|command| command.contains(needle)), "{needle} not in {all:#?}");
    }
    assert_eq!(
        plan["old_server"][0],
        "cmw-upgrade backup --instance prod --dest /mnt/cmw-backup/prod-4.7.2890.0"
    );
    // The migration's preview: every directive the bundle's config carries,
    // under its current name with the old one it comes from, secrets masked.
    let migrate = steps
        .iter()
        .find(|step| step["name"] == "migrate-config")
        .unwrap();
    assert!(
        migrate["note"].is_null(),
        "the plan meets no failure: {}",
        migrate["note"]
    );
    let changes = migrate["findings"][0]["changes"].as_array().unwrap();
    let change = |key: &str| {
        changes
            .iter()
            .find(|change| change["key"] == key)
            .unwrap_or_else(|| panic!("{key} not in {changes:#?}"))
    };
    assert_eq!(change("journal.server")["from"], "elasticsearchUri");
    assert_eq!(change("journal.server")["new"], "http://localhost:9200");
    assert_eq!(change("db.workDir")["from"], "databasePath");
    assert_eq!(change("journal.password")["new"], "***");
    assert!(
        !stdout(&output).contains("journal-secret") && !stdout(&output).contains("kafka-secret"),
        "no secret in the plan"
    );
    assert_same_tree(&tree(&rehearsal.root()), &before, "plan changed the server");
    // A typo in an input is refused before anything, by plan as by run: exit 2,
    // nothing recorded, so the corrected command just works.
    for verb in ["plan", "run"] {
        let typo = rehearsal
            .plain(verb)
            .args([
                "--json",
                "--instance",
                "prod",
                "--bundle",
                rehearsal.setup["bundle"].as_str().unwrap(),
                "--distribution",
                "/opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz",
                "--prerequisites",
                "/opt/distr/5.0-release-ru-5.0.78.prerequisites.astra.tar.gz",
            ])
            .output()
            .unwrap();
        assert_eq!(typo.status.code(), Some(2), "{verb}: {}", stderr(&typo));
        let error = json(&typo);
        assert_eq!(error["error"]["kind"], "check_failed", "{verb}: {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("5.0.78.prerequisites.astra.tar.gz does not exist"),
            "{verb}: {error}"
        );
        assert!(
            !rehearsal
                .root()
                .join("var/lib/cmw-upgrade/prod/state.json")
                .exists(),
            "{verb} recorded nothing"
        );
    }
    let other_family = rehearsal
        .plain("plan")
        .args([
            "--instance",
            "prod",
            "--bundle",
            rehearsal.setup["bundle"].as_str().unwrap(),
            "--distribution",
            "/opt/distr/5.0-release-ru-5.0.1234.0.redos.tar.gz",
            "--prerequisites",
            rehearsal.setup["prerequisites"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(other_family.status.code(), Some(2));
    assert!(
        stderr(&other_family).contains("is for redos (rpm family)"),
        "{}",
        stderr(&other_family)
    );
    // Tarballs of two releases, and a version that is not newer than the
    // bundle's data, are refused the same way (the names are read first).
    for (distribution, prerequisites, expected) in [
        (
            "/opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz",
            "/opt/distr/5.1-release-ru-5.1.3.prerequisites.astra.tar.gz",
            "take both from the same release",
        ),
        (
            "/opt/distr/4.7-release-ru-4.7.2890.0.astra.tar.gz",
            "/opt/distr/4.7-release-ru-4.7.1.prerequisites.astra.tar.gz",
            "an upgrade goes to a newer version",
        ),
    ] {
        for (from, to) in [
            ("5.0-release-ru-5.0.1234.0.astra", distribution),
            ("5.0-release-ru-5.0.77.prerequisites.astra", prerequisites),
        ] {
            let from = rehearsal.root().join(format!("opt/distr/{from}.tar.gz"));
            let to = rehearsal.root().join(to.trim_start_matches('/'));
            if from != to && !to.exists() {
                fs::copy(&from, &to).unwrap();
            }
        }
        let refused = rehearsal
            .plain("plan")
            .args([
                "--instance",
                "prod",
                "--bundle",
                rehearsal.setup["bundle"].as_str().unwrap(),
                "--distribution",
                distribution,
                "--prerequisites",
                prerequisites,
            ])
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(stderr(&refused).contains(expected), "{}", stderr(&refused));
    }
    let before = tree(&rehearsal.root());
    assert_same_tree(&tree(&rehearsal.root()), &before, "plan changed the server");
    let text = rehearsal.command("plan").output().unwrap();
    assert!(
        stdout(&text).contains("journal.server = http://localhost:9200 (from elasticsearchUri)"),
        "{}",
        stdout(&text)
    );
    // An old config the migration cannot read stops the plan's migrate-config
    // step with the very error the run would stop on.
    let old_config = rehearsal.root().join(format!(
        "{}/config/usr/share/comindware/configs/instance/prod.yml",
        rehearsal.setup["bundle"]
            .as_str()
            .unwrap()
            .trim_start_matches('/')
    ));
    fs::write(&old_config, "clusterName: [unclosed\n").unwrap();
    let broken = json(&rehearsal.command("plan").arg("--json").output().unwrap());
    let note = broken["steps"][4]["note"].as_str().unwrap_or_default();
    assert_eq!(broken["steps"][4]["name"], "migrate-config");
    assert!(note.contains("the config migration failed"), "{note}");
    assert!(
        stdout(&text).contains("6. smoke-check"),
        "{}",
        stdout(&text)
    );
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs the kill hook: cargo test --features cmw-upgrade-cli/test-hooks (bash .ci/run does)"
)]
fn status_lock_and_rollback_commands() {
    let rehearsal = Rehearsal::new();
    let none = rehearsal
        .plain("status")
        .args(["--instance", "prod"])
        .output();
    let none = none.unwrap();
    // Not started: the code of "not finished", not of a mistake.
    assert_eq!(none.status.code(), Some(3), "{}", stderr(&none));
    assert!(stdout(&none).contains("no run of prod is recorded"));
    // A second run while the first works is refused as busy (4), naming the holder.
    let mut slow = rehearsal.command("run");
    slow.env("CMW_UPGRADE_KILL_AT", "final-check:start");
    let mut child = slow.spawn().unwrap();
    let state_file = rehearsal.root().join("var/lib/cmw-upgrade/prod/state.json");
    while !state_file.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = rehearsal.run(None);
    assert_eq!(second.status.code(), Some(4), "{}", stderr(&second));
    assert!(
        stderr(&second).contains(&child.id().to_string()),
        "{}",
        stderr(&second)
    );
    let killed = child.wait().unwrap();
    assert_eq!(killed.signal(), Some(9));
    let status = rehearsal
        .plain("status")
        .args(["--instance", "prod"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(3), "{}", stdout(&status));
    assert!(stdout(&status).contains("final-check"));
    let rollback = rehearsal.rollback();
    let report = json(&rollback);
    assert!(report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|step| step["status"] == "rolled_back"));
    let bundle = rehearsal
        .root()
        .join("mnt/cmw-backup/prod-4.7.2890.0/database");
    assert_eq!(tree(&database(&rehearsal.root())), tree(&bundle));
}

#[test]
fn rollback_brings_a_replaced_version_back() {
    let rehearsal = Rehearsal::new();
    let root = rehearsal.root();
    let setup = &rehearsal.setup;
    // This server already runs instance prod on 4.7 (installed from the
    // distribution's scripts), and the upgrade will fail.
    let unpacked = rehearsal.dir.path().join("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    let tar = Command::new("tar")
        .arg("-xf")
        .arg(
            root.join(
                setup["distribution"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('/'),
            ),
        )
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(tar.success());
    let old = root.join("var/www/.cmw_version/4.7.2890.0");
    fs::create_dir_all(old.parent().unwrap()).unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(unpacked.join("CMW_astra_5.0.1234.0"))
        .arg(&old)
        .status()
        .unwrap();
    assert!(copied.success());
    fs::write(old.join("VERSION"), "4.7.2890.0\n").unwrap();
    let port = format!("-p={}", setup["port"]);
    let created = Command::new("bash")
        .args(["instance_create.sh", "-n=prod", &port, "-v=4.7.2890.0"])
        .current_dir(old.join("scripts"))
        .env("PATH", setup["path"].as_str().unwrap())
        .output()
        .unwrap();
    // (The simulation's gateway fails its first start; the run restarts it later.)
    assert!(
        stdout(&created).contains("Final status."),
        "{}",
        stdout(&created)
    );
    // Its own database is empty (no data version): the new version starts clean on it.
    fs::remove_file(database(&root).join(".cmw-sim-version")).unwrap();
    let sim = root.join("../sim");
    fs::write(sim.join("failure"), "error\n").unwrap();

    let run = rehearsal.run(None);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("runs version 4.7.2890.0 here; it is replaced"),
        "{}",
        stderr(&run)
    );
    let rollback = rehearsal.rollback();
    let report = json(&rollback);
    let transcript: Vec<&str> = report["rollback"]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|operation| operation["command"].as_str().unwrap_or(""))
        .collect();
    let position = |needle: &str| {
        transcript
            .iter()
            .position(|command| command.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {transcript:#?}"))
    };
    assert!(position("cmw-upgrade restore") < position("bash instance_delete.sh -n=prod"));
    assert!(
        position("bash instance_delete.sh -n=prod") < position("bash instance_create.sh -n=prod")
    );
    assert!(
        transcript
            .iter()
            .any(|command| command.ends_with("-v=4.7.2890.0)")),
        "{transcript:#?}"
    );
    let config =
        fs::read_to_string(root.join("usr/share/comindware/configs/instance/prod.yml")).unwrap();
    assert!(config.contains("version: 4.7.2890.0"), "{config}");
    let bundle = root.join("mnt/cmw-backup/prod-4.7.2890.0/database");
    assert_eq!(tree(&database(&root)), tree(&bundle));
    // The old version runs again, on the old data: no upgrade, healthy.
    let check = rehearsal
        .plain("check")
        .args(["--instance", "prod", "--url"])
        .arg(format!("http://127.0.0.1:{}/api/health", setup["port"]))
        .output()
        .unwrap();
    let mut healthy = check.status.code() == Some(0);
    for _ in 0..50 {
        if healthy {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        healthy = rehearsal
            .plain("check")
            .args(["--instance", "prod", "--url"])
            .arg(format!("http://127.0.0.1:{}/api/health", setup["port"]))
            .output()
            .unwrap()
            .status
            .code()
            == Some(0);
    }
    assert!(healthy, "{}", stdout(&check));
}

/// The same procedure driven over ssh, with this build's agent on the other
/// side (the test sshd on loopback, the agent rooted at the simulated new
/// server), ends in the same state as the local run.
#[test]
fn the_whole_run_over_ssh_ends_as_the_local_run() {
    use cmw_upgrade_core::executor::{Recording, SshExecutor, SshTarget};
    use cmw_upgrade_core::procedure::{run_upgrade, UpgradeSettings};
    use cmw_upgrade_core::{InstanceName, OsFamily};

    let local = Rehearsal::new();
    let output = local.run(None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let expected = local.final_state();

    let remote = Rehearsal::new();
    let sshd = cmw_upgrade_tests::sshd::TestSshd::start()
        .expect("sshd starts (openssh-server is installed by .ci/run)");
    let root = remote.root();
    let agent = vec![
        "env".to_owned(),
        format!("PATH={}", remote.setup["path"].as_str().unwrap()),
        env!("CARGO_BIN_EXE_cmw-upgrade").to_owned(),
        "--root".to_owned(),
        root.to_str().unwrap().to_owned(),
        "agent".to_owned(),
    ];
    let ssh = SshExecutor::connect(SshTarget {
        destination: sshd.destination(),
        port: sshd.port,
        identity_file: Some(sshd.identity_file()),
        known_hosts_file: Some(sshd.known_hosts_file()),
        agent,
        ..SshTarget::new(sshd.destination())
    })
    .expect("connects and greets the agent");
    let text = |key: &str| remote.setup[key].as_str().unwrap().to_owned();
    let settings = UpgradeSettings {
        instance: InstanceName::new(&text("instance")).unwrap(),
        family: OsFamily::Deb,
        bundle: text("bundle"),
        distribution: text("distribution"),
        prerequisites: text("prerequisites"),
        port: u16::try_from(remote.setup["port"].as_u64().unwrap()).unwrap(),
        upgrade_timeout_seconds: 30,
        health_timeout_seconds: 30,
        fix_config: false,
    };
    let recorder = Recording::new(&ssh);
    let report = run_upgrade(&recorder, &settings, &mut |_| {}).unwrap();
    assert_eq!(
        report.outcome,
        "upgraded",
        "{}",
        serde_json::to_string_pretty(&report.steps).unwrap()
    );
    assert_eq!(remote.final_state(), expected);
    // Every operation of the transcript says how it ended.
    for step in &report.steps {
        for recorded in &step.commands {
            assert!(
                recorded.outcome.is_some(),
                "{}: {} has no outcome",
                step.name,
                recorded.operation.display()
            );
        }
    }
    // The transcript shows the tool's own actions as the commands an admin would type.
    let transcript = serde_json::to_string(&report.steps).unwrap();
    assert!(transcript.contains("cmw-upgrade restore"), "{transcript}");
}

/// A retry after a rollback must not read the first attempt's "completed"
/// records as this attempt's: otherwise the wait ends at once, and the
/// "upgraded" backup is taken of a database still being upgraded.
#[test]
fn a_retry_after_rollback_does_not_read_the_earlier_attempts_logs() {
    let rehearsal = Rehearsal::new();
    let first = rehearsal.run(None);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    // A finished run may have traffic on it: refused without --force, and a
    // rollback off a terminal needs --yes; neither changes anything.
    let state = fs::read(rehearsal.root().join("var/lib/cmw-upgrade/prod/state.json")).unwrap();
    for (args, expected) in [
        (&["--yes"][..], "--force"),
        (&["--force"][..], "pass --yes"),
    ] {
        let refused = rehearsal
            .plain("rollback")
            .args(["--instance", "prod"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(stderr(&refused).contains(expected), "{}", stderr(&refused));
        assert_eq!(
            fs::read(rehearsal.root().join("var/lib/cmw-upgrade/prod/state.json")).unwrap(),
            state
        );
    }
    rehearsal.rollback_with(&["--force"]);
    // This attempt's service boots for a while before it writes anything, and
    // its upgrade takes a while: a stale verdict would not wait for either.
    fs::write(rehearsal.root().join("../sim/upgrade-seconds"), "3\n").unwrap();
    fs::write(rehearsal.root().join("../sim/start-delay-seconds"), "2\n").unwrap();
    let retry = rehearsal.command("run").arg("--json").output().unwrap();
    let report = json(&retry);
    assert_eq!(retry.status.code(), Some(0), "{report:#}");
    let step = |name: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|step| step["name"] == name)
            .unwrap()
            .clone()
    };
    let waited = step("wait-upgrade")["seconds"].as_f64().unwrap();
    assert!(waited >= 1.5, "the wait read old records: {waited}s");
    // What was backed up as upgraded is upgraded.
    let work = rehearsal.root().join("var/lib/cmw-upgrade/prod");
    let newest = fs::read_dir(&work)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("upgraded-") && !name.ends_with(".partial"))
        .max()
        .unwrap();
    assert_eq!(
        fs::read_to_string(work.join(newest).join("database/.cmw-sim-version")).unwrap(),
        "5.0.1234.0\n"
    );
    // The first attempt's logs are kept beside the log folder, not deleted.
    let logs = rehearsal.root().join("var/log/comindware/prod");
    let kept_ontology_logs = fs::read_dir(&logs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("Logs.before-")
        })
        .flat_map(|folder| fs::read_dir(folder).unwrap())
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("UpgradeOntology")
        })
        .count();
    assert!(kept_ontology_logs >= 1, "the earlier logs are kept");
}

/// After a finished run, `cleanup` lists what it kept with sizes, asks (or
/// needs --yes), removes it, and keeps the old server's bundle unless asked.
#[test]
fn cleanup_removes_what_a_finished_run_kept() {
    let rehearsal = Rehearsal::new();
    let early = rehearsal
        .plain("cleanup")
        .args(["--instance", "prod", "--yes"])
        .output()
        .unwrap();
    assert_eq!(
        early.status.code(),
        Some(2),
        "no run yet: {}",
        stderr(&early)
    );
    let run = rehearsal.run(None);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let listed = rehearsal
        .plain("cleanup")
        .args(["--instance", "prod", "--list", "--json"])
        .output()
        .unwrap();
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let listed = json(&listed);
    let removable: Vec<String> = listed["removable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        removable.iter().any(|path| path.contains("/upgraded-"))
            && removable.iter().any(|path| path.ends_with("/dist")),
        "{removable:?}"
    );
    let bundle = rehearsal.setup["bundle"].as_str().unwrap();
    assert_eq!(listed["kept"][0]["path"], bundle);
    let unconfirmed = rehearsal
        .plain("cleanup")
        .args(["--instance", "prod"])
        .output()
        .unwrap();
    assert_eq!(unconfirmed.status.code(), Some(2));
    assert!(stderr(&unconfirmed).contains("pass --yes"));
    let root = rehearsal.root();
    for path in &removable {
        assert!(root.join(path.trim_start_matches('/')).exists(), "{path}");
    }
    let removed = rehearsal
        .plain("cleanup")
        .args(["--instance", "prod", "--yes"])
        .output()
        .unwrap();
    assert_eq!(removed.status.code(), Some(0), "{}", stderr(&removed));
    for path in &removable {
        assert!(!root.join(path.trim_start_matches('/')).exists(), "{path}");
    }
    assert!(root.join(bundle.trim_start_matches('/')).exists());
    let with_bundle = rehearsal
        .plain("cleanup")
        .args(["--instance", "prod", "--yes", "--include-bundle"])
        .output()
        .unwrap();
    assert_eq!(
        with_bundle.status.code(),
        Some(0),
        "{}",
        stderr(&with_bundle)
    );
    assert!(!root.join(bundle.trim_start_matches('/')).exists());
    // What the rehearsal started stops with `demo --teardown`.
    let site = format!("127.0.0.1:{}", rehearsal.setup["port"]);
    assert!(std::net::TcpStream::connect(&site).is_ok(), "the site runs");
    let teardown = bin()
        .args(["demo", "--teardown"])
        .arg(rehearsal.dir.path().join("sim"))
        .output()
        .unwrap();
    assert_eq!(teardown.status.code(), Some(0), "{}", stderr(&teardown));
    assert!(stdout(&teardown).contains("Stopped nginx, comindwareprod"));
    assert!(
        std::net::TcpStream::connect(&site).is_err(),
        "nginx stopped"
    );
}
