//! Helpers shared by the binary's integration tests.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::path::Path;
use std::process::{Command, Output};

use cmw_upgrade_tests::{write_server, ServerSpec};
use serde_json::Value;

pub fn cmw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cmw-upgrade"))
        .args(args)
        .output()
        .expect("the binary runs")
}

pub fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn server(spec: ServerSpec) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_server(dir.path(), &spec).unwrap();
    dir
}

/// Runs the binary with `--root` set to a server tree.
pub fn cmw_in(root: &Path, args: &[&str]) -> Output {
    let mut full = vec!["--root", root.to_str().unwrap()];
    full.extend_from_slice(args);
    cmw(&full)
}

/// `cmw-upgrade --root ROOT backup --instance prod --dest DEST`.
pub fn backup_bundle(root: &Path, dest: &Path) -> Output {
    cmw_in(
        root,
        &[
            "backup",
            "--instance",
            "prod",
            "--dest",
            dest.to_str().unwrap(),
        ],
    )
}
