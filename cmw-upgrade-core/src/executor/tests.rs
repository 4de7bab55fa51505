use super::*;
use crate::exec::CommandRunner;
use crate::Error;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

#[test]
fn commands_get_env_cwd_stdin_and_a_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("opt/cmw")).unwrap();
    let local = LocalExecutor::new(dir.path());
    let mut spec = CommandSpec::new([
        "sh",
        "-c",
        "pwd; echo \"$GREETING\"; cat; echo oops >&2; exit 3",
    ])
    .in_folder("/opt/cmw")
    .with_env("GREETING", "hello");
    spec.stdin = Some(b"from stdin\n".to_vec());
    let output = local.execute(&spec).unwrap();
    assert_eq!(output.code, Some(3));
    assert_eq!(
        output.stdout,
        format!(
            "{}\nhello\nfrom stdin\n",
            fs::canonicalize(dir.path().join("opt/cmw"))
                .unwrap()
                .display()
        )
    );
    assert_eq!(output.stderr, "oops\n");

    let started = Instant::now();
    let error = local
        .execute(&CommandSpec::new(["sleep", "30"]).with_timeout(Duration::from_millis(200)))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(error.to_string().contains("timed out"), "{error}");
    let error = local
        .execute(&CommandSpec::new(["/no/such/program"]))
        .unwrap_err();
    assert!(error.to_string().contains("did not start"), "{error}");
}

#[test]
fn display_quotes_and_masks_secrets() {
    let spec = CommandSpec::new(["instance_create.sh", "-n=prod", "a b", "it's"])
        .with_env("DB_PASSWORD", "hunter2")
        .in_folder("/opt/CMW dist");
    assert_eq!(
        spec.display(),
        "(cd '/opt/CMW dist' && DB_PASSWORD=*** instance_create.sh -n=prod 'a b' 'it'\\''s')"
    );
}

#[test]
fn paths_stay_under_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalExecutor::new(dir.path());
    for bad in ["relative/path", "/var/../etc/passwd", "/var/lib/\0x"] {
        assert!(
            matches!(
                local.write_file(bad, b"x", 0o600),
                Err(Error::PathOutsideRoot { .. })
            ),
            "{bad}"
        );
    }
    local.create_dir_all("/var/lib/cmw").unwrap();
    local
        .write_file("/var/lib/cmw/state.json", b"{}", 0o600)
        .unwrap();
    assert_eq!(
        fs::read(dir.path().join("var/lib/cmw/state.json")).unwrap(),
        b"{}"
    );
    assert_eq!(
        fs::metadata(dir.path().join("var/lib/cmw/state.json"))
            .unwrap()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(local.read_file("/var/lib/cmw/missing").unwrap(), None);
}

#[test]
fn copy_rename_remove_and_chown_do_not_follow_links() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep.txt"), "keep").unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("data/db")).unwrap();
    fs::write(root.join("data/db/part.bin"), "p").unwrap();
    fs::set_permissions(
        root.join("data/db/part.bin"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    symlink(&outside, root.join("data/escape")).unwrap();
    let local = LocalExecutor::new(&root);
    local.copy("/data", "/copy").unwrap();
    assert_eq!(
        fs::metadata(root.join("copy/db/part.bin")).unwrap().mode() & 0o777,
        0o640
    );
    assert!(fs::symlink_metadata(root.join("copy/escape"))
        .unwrap()
        .is_symlink());
    assert!(matches!(
        local.copy("/data", "/copy"),
        Err(Error::AlreadyExists { .. })
    ));
    local.chown_tree("/copy", 33, 33).unwrap();
    assert_eq!(
        fs::metadata(root.join("copy/db/part.bin")).unwrap().uid(),
        33
    );
    assert_eq!(
        fs::metadata(outside.join("keep.txt")).unwrap().uid(),
        0,
        "the link's target is not chowned"
    );
    local.rename("/copy", "/moved").unwrap();
    local.remove("/moved").unwrap();
    local.remove("/moved").unwrap();
    assert!(!root.join("moved").exists());
    assert_eq!(
        fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "keep",
        "links are not followed"
    );
}

#[test]
fn chown_refuses_a_link_at_the_top_and_changes_a_single_file_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep.txt"), "keep").unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("data")).unwrap();
    symlink(&outside, root.join("data/Database")).unwrap();
    fs::write(root.join("data/file.bin"), "f").unwrap();
    let local = LocalExecutor::new(&root);
    let owner = |path: &std::path::Path| fs::symlink_metadata(path).unwrap().uid();
    let before = owner(&outside.join("keep.txt"));
    let error = local.chown_tree("/data/Database", 33, 33).unwrap_err();
    assert!(matches!(error, Error::CheckFailed { .. }), "{error}");
    assert!(error.to_string().contains("symbolic link"), "{error}");
    assert_eq!(
        owner(&outside.join("keep.txt")),
        before,
        "nothing was followed"
    );
    if rustix::process::geteuid().is_root() {
        local.chown_tree("/data/file.bin", 33, 33).unwrap();
        assert_eq!(owner(&root.join("data/file.bin")), 33);
    }
}

#[test]
fn a_recorded_dry_run_lists_everything_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc/os-release"), "ID=astra\n").unwrap();
    let plan = Recording::new(DryRun::new(LocalExecutor::new(dir.path())));
    assert_eq!(
        plan.read_file("/etc/os-release").unwrap().unwrap(),
        b"ID=astra\n"
    );
    plan.create_dir_all("/var/lib/cmw-upgrade/prod").unwrap();
    let output = Executor::execute(
        &plan,
        &CommandSpec::new(["systemctl", "stop", "comindwareprod"]),
    )
    .unwrap();
    assert!(output.success());
    plan.write_file("/var/lib/cmw-upgrade/prod/state.json", b"{}", 0o600)
        .unwrap();
    plan.remove("/etc/os-release").unwrap();
    assert!(
        matches!(plan.remove("/../etc"), Err(Error::PathOutsideRoot { .. })),
        "a dry run refuses what the real run would"
    );
    let lines: Vec<String> = plan.operations().iter().map(Operation::display).collect();
    assert_eq!(
        lines,
        [
            "mkdir -p /var/lib/cmw-upgrade/prod",
            "systemctl stop comindwareprod",
            "write /var/lib/cmw-upgrade/prod/state.json (2 bytes, mode 0600)",
            "rm -rf /etc/os-release",
            "rm -rf /../etc",
        ]
    );
    assert!(dir.path().join("etc/os-release").exists());
    assert!(!dir.path().join("var").exists());
    assert_eq!(plan.take_operations().len(), 5);
    assert!(plan.operations().is_empty());
    // Code written for CommandRunner runs through any executor.
    let runner: &dyn CommandRunner = &plan;
    assert!(runner
        .run(&["nginx".into(), "-t".into()])
        .unwrap()
        .success());
}

#[test]
fn a_transcript_says_how_each_operation_ended_and_a_plan_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalExecutor::new(dir.path());
    let transcript = Recording::new(&local);
    transcript
        .execute(&CommandSpec::new(["sh", "-c", "exit 3"]))
        .unwrap();
    transcript.execute(&CommandSpec::new(["true"])).unwrap();
    assert!(transcript
        .execute(&CommandSpec::new(["/no/such/program"]))
        .is_err());
    assert!(transcript.rename("/missing", "/elsewhere").is_err());
    let outcomes: Vec<Option<OpOutcome>> = transcript
        .take_operations()
        .into_iter()
        .map(|recorded| recorded.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            Some(OpOutcome::Exited { code: Some(3) }),
            Some(OpOutcome::Ok),
            Some(OpOutcome::Failed {
                kind: "command_failed".into()
            }),
            Some(OpOutcome::Failed { kind: "io".into() }),
        ]
    );
    let plan = Recording::new(DryRun::new(&local));
    plan.execute(&CommandSpec::new(["sh", "-c", "exit 3"]))
        .unwrap();
    let recorded = plan.take_operations();
    assert_eq!(recorded[0].outcome, None, "a plan ran nothing");
    assert_eq!(recorded[0].display(), "sh -c 'exit 3'");
    let json = serde_json::to_value(Recorded {
        operation: Operation::Run {
            command: "systemctl is-active x".into(),
        },
        outcome: Some(OpOutcome::Exited { code: Some(3) }),
    })
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!({"op": "run", "command": "systemctl is-active x", "outcome": {"result": "exited", "code": 3}})
    );
}

#[test]
fn a_dry_run_runs_what_only_looks_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Recording::new(DryRun::new(LocalExecutor::new(dir.path())));
    let looked = plan
        .execute(&CommandSpec::new(["sh", "-c", "echo looked; exit 3"]).read_only())
        .unwrap();
    assert_eq!((looked.code, looked.stdout.as_str()), (Some(3), "looked\n"));
    let marker = dir.path().join("changed");
    let acted = plan
        .execute(&CommandSpec::new(["touch", marker.to_str().unwrap()]))
        .unwrap();
    assert!(
        acted.success() && !marker.exists(),
        "an effect is only shown"
    );
    assert_eq!(plan.operations().len(), 2, "both are in the plan");
}
