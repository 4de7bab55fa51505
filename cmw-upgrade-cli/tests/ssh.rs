//! The ssh executor against a real OpenSSH server on loopback, with this
//! build's `cmw-upgrade agent` on the other side.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use cmw_upgrade_core::executor::{
    CommandSpec, Executor, NodeKind, Operation, Recording, ServerRead, SshExecutor, SshTarget,
    ToolAction,
};
use cmw_upgrade_core::{Error, ErrorKind};
use cmw_upgrade_tests::sshd::TestSshd;

const BINARY: &str = env!("CARGO_BIN_EXE_cmw-upgrade");

fn target(sshd: &TestSshd, agent: &[&str]) -> SshTarget {
    SshTarget {
        destination: sshd.destination(),
        port: sshd.port,
        identity_file: Some(sshd.identity_file()),
        known_hosts_file: Some(sshd.known_hosts_file()),
        agent: agent.iter().map(|arg| (*arg).to_owned()).collect(),
        // The agent is this build's: nothing to copy (tests/provision.rs copies).
        provision: false,
        ..SshTarget::new(sshd.destination())
    }
}

fn connect(sshd: &TestSshd) -> SshExecutor {
    SshExecutor::connect(target(sshd, &[BINARY, "agent"])).expect("connects to the test sshd")
}

#[test]
fn commands_and_files_go_over_one_master_connection() {
    let sshd = TestSshd::start().expect("sshd starts (openssh-server is installed by .ci/run)");
    let remote = connect(&sshd);
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("new server's /var/lib");
    let folder_text = folder.to_str().unwrap();

    // An argument that a shell would split or expand arrives as one word.
    let tricky = "a b; touch /tmp/cmw-upgrade-pwned $(id) 'q'";
    let output = remote
        .execute(
            &CommandSpec::new(["printf", "%s|", tricky, "$HOME"])
                .with_env("GREETING", "hi there")
                .in_folder("/"),
        )
        .unwrap();
    assert_eq!(output.stdout, format!("{tricky}|$HOME|"));
    assert!(!std::path::Path::new("/tmp/cmw-upgrade-pwned").exists());
    let output = remote
        .execute(
            &CommandSpec::new(["sh", "-c", "echo \"$GREETING\"; exit 7"])
                .with_env("GREETING", "hi there"),
        )
        .unwrap();
    assert_eq!(
        (output.code, output.stdout.as_str()),
        (Some(7), "hi there\n")
    );

    // Every command reuses the master: one TCP connection, so one client port.
    let connection = |_| {
        remote
            .execute(&CommandSpec::new(["sh", "-c", "echo $SSH_CONNECTION"]))
            .unwrap()
            .stdout
    };
    let seen: Vec<String> = (0..3).map(connection).collect();
    assert!(
        seen.iter().all(|line| line == &seen[0]) && !seen[0].trim().is_empty(),
        "{seen:?}"
    );

    let recording = Recording::new(&remote);
    let file = format!("{folder_text}/state.json");
    recording.create_dir_all(folder_text).unwrap();
    recording
        .write_file(&file, b"{\"step\": 1}\n", 0o600)
        .unwrap();
    assert_eq!(fs::read(&file).unwrap(), b"{\"step\": 1}\n");
    assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        recording.read_file(&file).unwrap().unwrap(),
        b"{\"step\": 1}\n"
    );
    assert_eq!(
        recording
            .read_file(&format!("{folder_text}/missing"))
            .unwrap(),
        None
    );
    assert!(recording.exists(&file).unwrap());
    std::os::unix::fs::symlink("state.json", folder.join("link.json")).unwrap();
    assert_eq!(
        recording
            .read_link(&format!("{folder_text}/link.json"))
            .unwrap()
            .as_deref(),
        Some("state.json")
    );
    assert_eq!(recording.read_link(&file).unwrap(), None, "not a link");
    let entries = recording.list_dir(folder_text).unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|entry| (entry.name.as_str(), entry.kind, entry.link))
            .collect::<Vec<_>>(),
        [
            ("link.json", NodeKind::File, true),
            ("state.json", NodeKind::File, false)
        ]
    );
    let copy = format!("{folder_text}/copy.json");
    recording.copy(&file, &copy).unwrap();
    assert!(
        recording.copy(&file, &copy).is_err(),
        "a copy never overwrites"
    );
    recording.chown_tree(folder_text, 33, 33).unwrap();
    assert_eq!(fs::metadata(&copy).unwrap().uid(), 33);
    recording
        .rename(&copy, &format!("{folder_text}/moved.json"))
        .unwrap();
    recording.remove(folder_text).unwrap();
    assert!(!folder.exists());
    assert_eq!(
        recording.remove("/var/../etc").unwrap_err().kind(),
        ErrorKind::PathOutsideRoot,
        "refused on the other side, kind kept"
    );
    let operations = recording.operations();
    assert!(matches!(&operations[0], Operation::CreateDir { path } if path == folder_text));
    assert_eq!(operations.len(), 8, "{operations:?}");

    let error = remote
        .execute(&CommandSpec::new(["sleep", "30"]).with_timeout(Duration::from_millis(300)))
        .unwrap_err();
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[test]
fn a_wrong_host_key_or_key_is_refused() {
    let sshd = TestSshd::start().unwrap();
    let empty = tempfile::NamedTempFile::new().unwrap();
    let mut wrong_host_key = target(&sshd, &[BINARY, "agent"]);
    wrong_host_key.known_hosts_file = Some(empty.path().to_path_buf());
    let error = SshExecutor::connect(wrong_host_key).unwrap_err();
    let message = error.to_string();
    assert_eq!(error.kind(), ErrorKind::CheckFailed, "{message}");
    assert!(
        message.contains("Host key verification failed")
            && message.contains("checking the host key")
            && message.contains("fix known_hosts"),
        "{message}"
    );
    let mut option_as_host = target(&sshd, &[BINARY, "agent"]);
    option_as_host.destination = "-oProxyCommand=sh".to_owned();
    assert_eq!(
        SshExecutor::connect(option_as_host).unwrap_err().kind(),
        ErrorKind::CheckFailed
    );
}

#[test]
fn a_missing_agent_is_named_and_tool_errors_keep_their_kind() {
    let sshd = TestSshd::start().unwrap();
    let error =
        SshExecutor::connect(target(&sshd, &["/nonexistent/cmw-upgrade", "agent"])).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("is cmw-upgrade installed on that server"),
        "{message}"
    );

    let remote = connect(&sshd);
    assert_eq!(remote.agent_version(), env!("CARGO_PKG_VERSION"));
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    fs::create_dir_all(bundle.join("database")).unwrap();
    fs::write(bundle.join("manifest.json"), "{not a manifest").unwrap();
    let error = remote
        .tool(&ToolAction::VerifyBundle {
            bundle: bundle.to_str().unwrap().to_owned(),
        })
        .unwrap_err();
    assert!(
        matches!(error, Error::Remote { .. }),
        "the other side's error: {error:?}"
    );
    assert_ne!(error.kind(), ErrorKind::Internal, "{error}");
    assert!(
        error.to_string().contains("manifest.json"),
        "the message names the file: {error}"
    );
    // The agent survives a failed action and answers the next one.
    let verdict = remote
        .tool(&ToolAction::Verdict {
            instance: None,
            log_dir: Some(work.path().to_str().unwrap().to_owned()),
            since: None,
        })
        .unwrap()
        .verdict()
        .unwrap()
        .unwrap();
    assert_eq!(verdict.verdict.as_str(), "not_started");
}

/// The run lock through the agent: a second holder is refused with the
/// first's pid, and the lock goes with its holder's session.
#[test]
fn the_run_lock_holds_across_the_wire_and_goes_with_its_session() {
    use cmw_upgrade_core::procedure::RunLock;
    use cmw_upgrade_core::InstanceName;

    let sshd = TestSshd::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().to_str().unwrap();
    let agent = [BINARY, "--root", root, "agent"];
    let first = SshExecutor::connect(target(&sshd, &agent)).unwrap();
    let second = SshExecutor::connect(target(&sshd, &agent)).unwrap();
    let prod = InstanceName::new("prod").unwrap();
    let held = RunLock::acquire(&first, &prod).unwrap();
    let error = RunLock::acquire(&second, &prod).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Locked, "{error}");
    assert!(
        error
            .to_string()
            .contains("locked by another cmw-upgrade run (process "),
        "{error}"
    );
    drop(held);
    drop(RunLock::acquire(&second, &prod).expect("released by unlock"));
    // A holder whose session ends (its connection dropped) leaves no lock behind.
    let _kept = RunLock::acquire(&first, &prod).unwrap();
    assert!(RunLock::acquire(&second, &prod).is_err());
    drop(_kept);
    let third = SshExecutor::connect(target(&sshd, &agent)).unwrap();
    std::mem::forget(RunLock::acquire(&third, &prod).unwrap());
    drop(third);
    assert!(
        RunLock::acquire(&second, &prod).is_ok(),
        "the agent's session ended, and its lock with it"
    );
}
