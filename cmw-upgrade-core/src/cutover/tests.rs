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
            Step::SaveState { .. } => "save".to_owned(),
            Step::SetState { server, state, .. } => format!("{server} {state}"),
            Step::WaitUp { server } => format!("up {server}"),
            Step::Drain { servers, .. } => format!("drain-wait {}", servers.join(",")),
            Step::PersistConfig { .. } => "config".to_owned(),
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
        steps[2].display("/run/haproxy/admin.sock"),
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
