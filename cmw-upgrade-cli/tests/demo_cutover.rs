//! `demo --cutover haproxy`: the rehearsal ends with the switch through a
//! real HAProxy on loopback, under the built-in probe, with no failed request.

mod util;

use util::{cmw, json, stderr, stdout};

#[test]
fn the_rehearsal_ends_with_the_switch_under_the_probe() {
    let output = cmw(&[
        "--json",
        "demo",
        "--cutover",
        "haproxy",
        "--upgrade-time",
        "1s",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["ok"], true);
    assert_eq!(report["outcome"], "upgraded");
    let cutover = &report["cutover"];
    assert_eq!(cutover["method"], "haproxy");
    assert_eq!(cutover["failed"], 0, "{cutover}");
    assert!(cutover["requests"].as_u64().unwrap() > 100, "{cutover}");
    // Each answer named its server (HAProxy's X-Served-By): old before, new after.
    assert_eq!(
        cutover["servers_before"],
        serde_json::json!(["old"]),
        "{cutover}"
    );
    assert_eq!(
        cutover["servers_after"],
        serde_json::json!(["new"]),
        "{cutover}"
    );
    assert!(cutover["moved_after_ms"].as_u64().is_some(), "{cutover}");
    for key in [
        "p50_ms_before",
        "p50_ms_after",
        "p95_ms_before",
        "p95_ms_after",
    ] {
        assert!(cutover[key].as_f64().unwrap() > 0.0, "{key}: {cutover}");
    }
    assert!(cutover["steps"][3]
        .as_str()
        .unwrap()
        .contains("set server cmw/new state ready"));
}

#[test]
fn the_text_report_tells_the_switch() {
    let output = cmw(&["demo", "--cutover", "haproxy", "--upgrade-time", "1s"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("cut-over (haproxy) through http://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains(" 0 failed; p50/p95 before "), "{text}");
}

#[test]
fn cutover_is_refused_with_setup_only() {
    let output = cmw(&[
        "demo",
        "--cutover",
        "haproxy",
        "--setup-only",
        "--keep",
        "/nonexistent-dir",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn the_nginx_reload_switch_is_measured_and_its_count_reported() {
    let output = cmw(&[
        "--json",
        "demo",
        "--cutover",
        "nginx",
        "--upgrade-time",
        "1s",
    ]);
    // The reload path may lose requests: they are counted, the demo still succeeds.
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cutover = &json(&output)["cutover"];
    assert_eq!(cutover["method"], "nginx");
    assert!(cutover["failed"].as_u64().is_some(), "{cutover}");
    assert!(cutover["requests"].as_u64().unwrap() > 100, "{cutover}");
    // Answers named by the upstream's address: one before, the new one among those after.
    let before = cutover["servers_before"].as_array().unwrap();
    let after = cutover["servers_after"].as_array().unwrap();
    assert_eq!(before.len(), 1, "{cutover}");
    assert!(
        after.iter().any(|server| !before.contains(server)),
        "{cutover}"
    );
    assert!(cutover["moved_after_ms"].as_u64().is_some(), "{cutover}");
    assert!(cutover["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|step| step.as_str().unwrap().ends_with("-s reload")));
}

#[test]
fn the_dns_switch_moves_traffic_with_no_reload_and_no_failed_request() {
    let output = cmw(&["--json", "demo", "--cutover", "dns", "--upgrade-time", "1s"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cutover = &json(&output)["cutover"];
    assert_eq!(cutover["method"], "dns");
    assert_eq!(cutover["failed"], 0, "{cutover}");
    assert!(cutover["requests"].as_u64().unwrap() > 100, "{cutover}");
    // Old site on 127.0.0.2, the new one on 127.0.0.1: the name moved between them.
    let before = cutover["servers_before"].as_array().unwrap();
    assert_eq!(before.len(), 1, "{cutover}");
    assert!(
        before[0].as_str().unwrap().starts_with("127.0.0.2:"),
        "{cutover}"
    );
    let after = cutover["servers_after"].as_array().unwrap();
    assert!(
        after
            .iter()
            .any(|server| server.as_str().unwrap().starts_with("127.0.0.1:")),
        "{cutover}"
    );
    assert!(cutover["moved_after_ms"].as_u64().is_some(), "{cutover}");
    let steps: Vec<&str> = cutover["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step.as_str().unwrap())
        .collect();
    // One reload, in prepare, before the switch; the switch is the signed update.
    assert_eq!(
        steps
            .iter()
            .filter(|step| step.ends_with("-s reload"))
            .count(),
        1,
        "{steps:?}"
    );
    assert!(
        steps.last().unwrap().starts_with("swap the address"),
        "{steps:?}"
    );
}
