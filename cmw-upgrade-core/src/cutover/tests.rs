use super::haproxy::OperationalState;
use super::*;

fn row(name: &str, admin: AdminState) -> ServerState {
    ServerState {
        backend: "cmw".into(),
        name: name.into(),
        address: "10.0.0.5".into(),
        port: Some(80),
        operational: if admin == AdminState::Maint {
            OperationalState::Stopped
        } else {
            OperationalState::Running
        },
        admin,
        admin_bits: 0,
    }
}

fn options(config: Option<&str>) -> CutoverOptions {
    CutoverOptions {
        instance: InstanceName::new("prod").unwrap(),
        target: HaproxyTarget {
            socket: "/run/haproxy/admin.sock".into(),
            backend: "cmw".into(),
            old_server: "old".into(),
            new_server: "new".into(),
            config: config.map(str::to_owned),
        },
        drain: Duration::from_secs(10),
        up_limit: Duration::from_secs(30),
        stamp: "20261128T113000Z".into(),
    }
}

fn kinds(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|step| match step {
            Step::CheckReachable { server, .. } => format!("reach {server}"),
            Step::CheckConfig { .. } => "check config".to_owned(),
            Step::SaveState { .. } => "save".to_owned(),
            Step::SetState { server, state, .. } => format!("{server} {state}"),
            Step::WaitUp { server } => format!("up {server}"),
            Step::Drain { servers, .. } => format!("drain-wait {}", servers.join(",")),
            Step::PersistConfig { .. } => "config".to_owned(),
            Step::WriteServerState { .. } => "state file".to_owned(),
        })
        .collect()
}

#[test]
fn apply_brings_the_new_server_up_before_the_old_one_leaves() {
    let rows = [row("old", AdminState::Ready), row("new", AdminState::Maint)];
    let steps = plan_apply(&rows, &options(Some("/etc/haproxy/haproxy.cfg")), true).unwrap();
    assert_eq!(
        kinds(&steps),
        [
            "reach new",
            "check config",
            "save",
            "new ready",
            "up new",
            "old drain",
            "drain-wait old",
            "old maint",
            "config"
        ]
    );
    assert_eq!(
        steps[3].display("/run/haproxy/admin.sock"),
        "echo 'set server cmw/new state ready' | socat stdio /run/haproxy/admin.sock"
    );
}

#[test]
fn a_second_apply_only_checks() {
    let rows = [row("old", AdminState::Maint), row("new", AdminState::Ready)];
    let steps = plan_apply(&rows, &options(None), false).unwrap();
    assert_eq!(kinds(&steps), ["reach new", "up new"]);
}

#[test]
fn revert_restores_the_saved_states_in_the_same_order() {
    let saved = SavedState {
        format: SAVED_FORMAT,
        method: "haproxy".into(),
        saved_at: "x".into(),
        target: options(Some("/etc/haproxy/haproxy.cfg")).target,
        servers: vec![row("old", AdminState::Ready), row("new", AdminState::Maint)],
        config_disabled: BTreeMap::from([("old".into(), false), ("new".into(), true)]),
    };
    let rows = [row("old", AdminState::Maint), row("new", AdminState::Ready)];
    let steps = plan_revert(&rows, &saved, Duration::from_secs(5)).unwrap();
    assert_eq!(
        kinds(&steps),
        [
            "check config",
            "old ready",
            "up old",
            "new drain",
            "drain-wait new",
            "new maint",
            "config"
        ]
    );
}

#[test]
fn wrong_names_say_what_exists() {
    let rows = [row("old", AdminState::Ready), row("new", AdminState::Maint)];
    let mut wrong = options(None);
    wrong.target.new_server = "nwe".into();
    let error = plan_apply(&rows, &wrong, true).unwrap_err();
    assert_eq!(error.kind(), crate::ErrorKind::BadInput);
    let message = error.to_string();
    assert!(
        message.contains("\"nwe\"") && message.contains("old, new"),
        "{message}"
    );
    wrong.target.new_server = "old".into();
    assert_eq!(
        plan_apply(&rows, &wrong, true).unwrap_err().kind(),
        crate::ErrorKind::BadInput
    );
}

/// A stand-in runtime API on a UNIX socket under `root`: answers `show`
/// with a captured state dump and `set` with an empty line, and keeps every
/// command it got.
fn fake_runtime_api(root: &std::path::Path) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::{BufRead, Write};
    std::fs::create_dir_all(root.join("run")).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(root.join("run/admin.sock")).unwrap();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = std::sync::Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut line = String::new();
            std::io::BufReader::new(&stream)
                .read_line(&mut line)
                .unwrap();
            let command = line.trim().to_owned();
            let answer = if command.starts_with("show servers state") {
                "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_port\n3 cmw 1 old 127.0.0.1 2 0 8081\n3 cmw 2 new 127.0.0.1 0 5 8082\n\n"
            } else {
                "\n"
            };
            keep.lock().unwrap().push(command);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    received
}

#[test]
fn every_executor_carries_the_runtime_api() {
    use crate::executor::{DryRun, LocalExecutor, Operation, Recording};
    let dir = tempfile::tempdir().unwrap();
    let received = fake_runtime_api(dir.path());
    let local = LocalExecutor::new(dir.path());

    let rows = Runtime::new(&local, "/run/admin.sock")
        .servers_state("cmw")
        .unwrap();
    assert_eq!(rows[1].admin, AdminState::Maint);

    // A dry run reads but never sets.
    let dry = DryRun::new(&local);
    let runtime = Runtime::new(&dry, "/run/admin.sock");
    assert_eq!(runtime.servers_state("cmw").unwrap().len(), 2);
    runtime.set_state("cmw", "new", AdminState::Ready).unwrap();
    assert!(!received
        .lock()
        .unwrap()
        .iter()
        .any(|command| command.starts_with("set")));

    // A transcript shows the command an admin can paste.
    let recording = Recording::new(&local);
    Runtime::new(&recording, "/run/admin.sock")
        .set_state("cmw", "new", AdminState::Ready)
        .unwrap();
    assert_eq!(
        recording.operations(),
        [Operation::Tool {
            command: "cmw-upgrade cutover haproxy-command --haproxy-socket /run/admin.sock \
                      'set server cmw/new state ready'"
                .into()
        }]
    );
    assert_eq!(
        received.lock().unwrap().last().map(String::as_str),
        Some("set server cmw/new state ready")
    );

    // The agent answers it on another server.
    let request = r#"{"protocol":1,"action":{"kind":"haproxy_command","socket":"/run/admin.sock","command":"show servers state cmw"}}"#;
    let mut output = Vec::new();
    crate::executor::agent::serve(&local, format!("{request}\n").as_bytes(), &mut output).unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["outcome"]["kind"], "haproxy_answer");
    assert!(answer["outcome"]["answer"]
        .as_str()
        .unwrap()
        .contains("3 cmw 2 new"));

    // One command at a time: no second one smuggled in.
    let error = Runtime::new(&local, "/run/admin.sock")
        .command("show info\nshutdown sessions server cmw/old")
        .unwrap_err();
    assert_eq!(error.kind(), crate::ErrorKind::BadRequest);
    // No socket: says what to check.
    let error = Runtime::new(&local, "/run/none.sock")
        .command("show info")
        .unwrap_err();
    assert_eq!(error.kind(), crate::ErrorKind::CommandFailed);
    assert!(error.to_string().contains("stats socket"), "{error}");
}
