//! Bringing the agent to a server over ssh when it is missing or does not
//! fit, against a real OpenSSH server on loopback: the copy lands in a
//! private folder (a temporary one here, `/var/lib/cmw-upgrade/bin` for
//! real), is checked by its checksum there, and unsafe folders are refused.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cmw_upgrade_core::executor::{CommandSpec, Executor, SshExecutor, SshTarget};
use cmw_upgrade_core::ErrorKind;
use cmw_upgrade_tests::sshd::TestSshd;

const BINARY: &str = env!("CARGO_BIN_EXE_cmw-upgrade");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A target whose agent is not installed, copying this build's binary into `bin`.
fn missing_agent(sshd: &TestSshd, bin: &Path) -> SshTarget {
    SshTarget {
        port: sshd.port,
        identity_file: Some(sshd.identity_file()),
        known_hosts_file: Some(sshd.known_hosts_file()),
        agent: vec!["/nonexistent/cmw-upgrade".to_owned(), "agent".to_owned()],
        provision: true,
        provision_dir: bin.to_str().unwrap().to_owned(),
        local_binary: Some(PathBuf::from(BINARY)),
        ..SshTarget::new(sshd.destination())
    }
}

/// `<temp>/state/bin`, not created yet.
fn bin_folder(work: &tempfile::TempDir) -> PathBuf {
    work.path().join("state").join("bin")
}

#[test]
fn a_missing_agent_is_copied_there_and_answers() {
    let sshd = TestSshd::start().expect("sshd starts (openssh-server is installed by .ci/run)");
    let work = tempfile::tempdir().unwrap();
    let bin = bin_folder(&work);
    let remote = SshExecutor::connect(missing_agent(&sshd, &bin)).expect("copies and connects");
    let provisioned = remote.provisioned().expect("it was copied").clone();
    assert!(provisioned.copied);
    let copy = bin.join("cmw-upgrade");
    assert_eq!(provisioned.path, copy.to_str().unwrap());
    // The tool's other commands there (a bundle transfer's) run the copy too.
    assert_eq!(
        remote.tool_argv(&["bundle-send", "/b"]).unwrap(),
        [copy.to_str().unwrap(), "bundle-send", "/b"]
    );
    let output = remote
        .command(&remote.tool_argv(&["--version"]).unwrap())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(VERSION),
        "{output:?}"
    );
    let note = provisioned.note();
    assert!(
        note.starts_with(&format!("copied cmw-upgrade {VERSION} (sha256 "))
            && note.ends_with(&format!("to {}:{}", sshd.destination(), copy.display())),
        "{note}"
    );
    // The checksum is sha256sum's.
    let output = std::process::Command::new("sha256sum")
        .arg(BINARY)
        .output()
        .unwrap();
    let expected = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        Some(provisioned.sha256.as_str()),
        expected.split_whitespace().next()
    );
    assert_eq!(fs::read(&copy).unwrap(), fs::read(BINARY).unwrap());
    assert_eq!(fs::metadata(&copy).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(fs::metadata(&bin).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(
        fs::metadata(bin.parent().unwrap()).unwrap().mode() & 0o7777,
        0o700,
        "a created state folder is private too"
    );
    assert!(!bin.join(".cmw-upgrade.tmp").exists());
    // The agent started from the copy answers.
    assert_eq!(remote.agent_version(), VERSION);
    let output = remote
        .execute(&CommandSpec::new(["echo", "from the copy"]))
        .unwrap();
    assert_eq!(output.stdout, "from the copy\n");
    drop(remote);

    // The next connection finds the same binary there and copies nothing.
    let again = SshExecutor::connect(missing_agent(&sshd, &bin)).unwrap();
    let provisioned = again.provisioned().unwrap();
    assert!(!provisioned.copied, "{provisioned:?}");
    assert!(provisioned.note().starts_with("found the same cmw-upgrade"));

    // Turned off, a missing agent is an error that says so.
    let mut off = missing_agent(&sshd, &bin);
    off.provision = false;
    let message = SshExecutor::connect(off).unwrap_err().to_string();
    assert!(
        message.contains("is cmw-upgrade installed on that server"),
        "{message}"
    );
}

#[test]
fn a_copy_whose_checksum_differs_there_is_refused_and_not_executable() {
    // A `sha256sum` first on the sessions' PATH that prints another sum.
    let fake = tempfile::tempdir().unwrap();
    let script = fake.path().join("sha256sum");
    fs::write(
        &script,
        "#!/bin/sh\necho \"0000000000000000000000000000000000000000000000000000000000000000  $2\"\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let sshd = TestSshd::start_with(&format!(
        "SetEnv PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        fake.path().display()
    ))
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let bin = bin_folder(&work);
    let error = SshExecutor::connect(missing_agent(&sshd, &bin)).unwrap_err();
    let message = error.to_string();
    assert_eq!(error.kind(), ErrorKind::CheckFailed, "{message}");
    assert!(
        message.contains("its sha256 there is 0000000000000000")
            && message.contains("it was removed"),
        "{message}"
    );
    let left: Vec<_> = fs::read_dir(&bin)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing is left there: {left:?}");
}

#[test]
fn a_bin_folder_another_account_could_change_is_refused() {
    let sshd = TestSshd::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bin = bin_folder(&work);
    fs::create_dir_all(bin.parent().unwrap()).unwrap();

    // A symlink planted where the folder goes.
    let elsewhere = work.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &bin).unwrap();
    let error = SshExecutor::connect(missing_agent(&sshd, &bin)).unwrap_err();
    let message = error.to_string();
    assert_eq!(error.kind(), ErrorKind::CheckFailed, "{message}");
    assert!(message.contains("is a symlink"), "{message}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);

    // A folder of another account (www-data, uid 33).
    fs::remove_file(&bin).unwrap();
    fs::create_dir(&bin).unwrap();
    std::os::unix::fs::chown(&bin, Some(33), Some(33)).unwrap();
    let message = SshExecutor::connect(missing_agent(&sshd, &bin))
        .unwrap_err()
        .to_string();
    assert!(message.contains("is owned by uid 33"), "{message}");
    assert_eq!(fs::read_dir(&bin).unwrap().count(), 0);

    // A folder above it that another account may write to.
    fs::remove_dir(&bin).unwrap();
    let state = bin.parent().unwrap();
    fs::set_permissions(state, fs::Permissions::from_mode(0o777)).unwrap();
    let message = SshExecutor::connect(missing_agent(&sshd, &bin))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&format!("{} (above", state.display())),
        "{message}"
    );
    assert!(!bin.exists(), "nothing was created");
}

#[test]
fn a_host_key_that_does_not_match_writes_nothing() {
    let sshd = TestSshd::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    // known_hosts with another server's key for this address.
    let other = work.path().join("other_key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let public = fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut fields = public.split_whitespace();
    let known_hosts = work.path().join("known_hosts");
    fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    let bin = bin_folder(&work);
    let mut target = missing_agent(&sshd, &bin);
    target.known_hosts_file = Some(known_hosts);
    let error = SshExecutor::connect(target).unwrap_err();
    let message = error.to_string();
    assert_eq!(error.kind(), ErrorKind::CheckFailed, "{message}");
    assert!(
        message.contains("checking the host key of") && message.contains("nothing was sent"),
        "{message}"
    );
    assert!(!bin.parent().unwrap().exists(), "nothing was written");
}

/// An agent of another protocol: it refuses this one's greeting, as every
/// agent does with a protocol it does not speak.
fn old_agent(work: &Path) -> PathBuf {
    let script = work.join("old-agent");
    fs::write(
        &script,
        "#!/bin/sh\nread -r line\necho '{\"ok\":false,\"error\":{\"kind\":\"bad_request\",\
         \"message\":\"protocol 1 is not spoken here: this agent (cmw-upgrade 0.0.1) speaks \
         protocol 0; install the same cmw-upgrade version on both sides\"}}'\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn an_agent_of_another_protocol_is_replaced_or_named() {
    let sshd = TestSshd::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bin = bin_folder(&work);
    let mut target = missing_agent(&sshd, &bin);
    target.agent[0] = old_agent(work.path()).to_str().unwrap().to_owned();

    let mut kept = target.clone();
    kept.provision = false;
    let error = SshExecutor::connect(kept).unwrap_err();
    let message = error.to_string();
    assert_eq!(error.kind(), ErrorKind::CheckFailed, "{message}");
    assert!(
        message.contains("cmw-upgrade 0.0.1")
            && message.contains(&format!("this is cmw-upgrade {VERSION} speaking protocol")),
        "both versions are named: {message}"
    );
    assert!(!bin.exists());

    let remote = SshExecutor::connect(target).expect("replaced by a copy of this binary");
    assert!(remote.provisioned().unwrap().copied);
    assert_eq!(remote.agent_version(), VERSION);
}

#[test]
fn the_preflight_report_of_a_server_reads_only() {
    use cmw_upgrade_core::executor::preflight::PreflightRequest;
    use cmw_upgrade_core::InstanceName;

    let sshd = TestSshd::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bin = bin_folder(&work);
    let remote = SshExecutor::connect(missing_agent(&sshd, &bin)).unwrap();
    let folder = work.path().to_str().unwrap().to_owned();
    let not_yet = work.path().join("backups/not yet made");
    let request = PreflightRequest {
        folders: vec![folder.clone(), not_yet.to_str().unwrap().to_owned()],
        min_free_bytes: Some(1),
        instance: Some(InstanceName::new("preflightnosuch").unwrap()),
    };
    let before: Vec<_> = fs::read_dir(work.path()).unwrap().collect();
    let report = remote.preflight(&request);
    let checks: Vec<(&str, bool)> = report
        .checks
        .iter()
        .map(|check| (check.name.as_str(), check.ok))
        .collect();
    assert_eq!(
        checks,
        [
            ("agent", true),
            ("root", true),
            ("os", true),
            ("free_space", true),
            ("free_space", true),
            ("instance", false)
        ],
        "{report:#?}"
    );
    assert_eq!(report.agent_version.as_deref(), Some(VERSION));
    assert!(report.checks[0].detail.contains("copied cmw-upgrade"));
    assert!(report.root && report.uid == Some(0));
    assert!(report.family.is_some());
    assert_eq!(report.free_space[0].measured, folder);
    assert_eq!(
        report.free_space[1].measured, folder,
        "its nearest existing parent"
    );
    assert!(report.free_space[0].available_bytes > 0);
    assert_eq!(report.instance_exists, Some(false));
    let failed: Vec<_> = report.failed().collect();
    assert!(
        failed[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("check the instance name"),
        "{failed:?}"
    );
    assert!(!report.ok());
    assert!(!not_yet.exists(), "nothing was created");
    assert_eq!(fs::read_dir(work.path()).unwrap().count(), before.len());

    // Too little space is a failed check that says what to do.
    let report = remote.preflight(&PreflightRequest {
        folders: vec![folder],
        min_free_bytes: Some(u64::MAX),
        instance: None,
    });
    let space = report.failed().next().unwrap();
    assert_eq!(space.name, "free_space");
    assert!(space.fix.as_deref().unwrap().contains("free space there"));
    // The report is JSON for a caller.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["checks"][0]["name"], "agent");
}
