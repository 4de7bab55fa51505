//! Helpers shared by the binary's integration tests.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
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

/// A folder for bundles inside the server tree `root` (`<root>/srv/backups`,
/// created): under `--root` every server path of the command line is placed
/// under the root, so a bundle a test makes with `--root` lives in the tree.
pub fn backups_in(root: &Path) -> PathBuf {
    let folder = root.join("srv/backups");
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// The server path (as `--root root` reads it) of `host`, a path in the tree.
pub fn server_path_of(root: &Path, host: &Path) -> String {
    let inside = host
        .strip_prefix(root)
        .unwrap_or_else(|_| panic!("{} is not inside {}", host.display(), root.display()));
    format!("/{}", inside.display())
}

/// `cmw-upgrade --root ROOT backup --instance prod --dest DEST`, DEST a path in
/// the tree (see [`backups_in`]).
pub fn backup_bundle(root: &Path, dest: &Path) -> Output {
    cmw_in(
        root,
        &[
            "backup",
            "--instance",
            "prod",
            "--dest",
            &server_path_of(root, dest),
        ],
    )
}

/// [`backup_bundle`] into the tree, then the bundle moved to `dest`, a folder
/// of the test's outside it (as an admin carries a bundle elsewhere).
pub fn backup_bundle_to(root: &Path, dest: &Path) -> Output {
    let made = backups_in(root).join(dest.file_name().unwrap());
    let output = backup_bundle(root, &made);
    if output.status.success() {
        std::fs::rename(&made, dest).unwrap();
    }
    output
}

/// Every file under `folder`: relative path → content (links as `-> target`).
pub fn tree(folder: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(folder)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let metadata = fs::symlink_metadata(&path).unwrap();
            if metadata.file_type().is_symlink() {
                found.insert(
                    relative,
                    format!("-> {}", fs::read_link(&path).unwrap().display()),
                );
            } else if metadata.is_dir() {
                found.insert(relative + "/", String::new());
                pending.push(path);
            } else {
                found.insert(
                    relative,
                    String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned(),
                );
            }
        }
    }
    found
}

/// Fails naming only the entries that differ (a whole tree is too long to read).
pub fn assert_same_tree(
    after: &BTreeMap<String, String>,
    before: &BTreeMap<String, String>,
    what: &str,
) {
    let differing: Vec<&String> = after
        .keys()
        .chain(before.keys())
        .filter(|key| after.get(*key) != before.get(*key))
        .collect();
    assert!(differing.is_empty(), "{what}: {differing:?}");
}

/// The simulated instance's database folder under `root`.
pub fn database(root: &Path) -> PathBuf {
    root.join("var/lib/comindware/prod/Database")
}

/// What an upgraded simulated server under `root` looks like (the database,
/// the migrated configs with this simulation's ports named, and each step's
/// status from the run state kept under `state_root`), to compare two runs.
pub fn final_state(root: &Path, state_root: &Path, setup: &Value) -> BTreeMap<String, String> {
    let port = setup["port"].to_string();
    let backend = fs::read_to_string(root.join("../sim/backend-port")).unwrap();
    // The migration stamps the block it appends with the time.
    let unstamped = |text: String| -> String {
        text.lines()
            .map(|line| {
                if line.contains("by cmw-upgrade 20") {
                    "# stamp"
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut state: BTreeMap<String, String> = tree(&database(root))
        .into_iter()
        .map(|(path, content)| (format!("Database/{path}"), content))
        .collect();
    let family: cmw_upgrade_core::OsFamily = setup["family"].as_str().unwrap().parse().unwrap();
    let site = family
        .nginx_site_path(&cmw_upgrade_core::InstanceName::new("prod").unwrap())
        .to_string_lossy()
        .trim_start_matches('/')
        .to_owned();
    for file in [
        "usr/share/comindware/configs/instance/prod.yml",
        site.as_str(),
        "etc/sysconfig/comindwareprod-env",
        "var/www/prod/adapterhost.yml",
        "var/www/prod/apigateway.yml",
        "var/www/prod/Ignite.config",
    ] {
        let text = fs::read_to_string(root.join(file)).unwrap();
        let text = text
            .replace(&port, "PORT")
            .replace(backend.trim(), "BACKEND");
        state.insert(file.to_owned(), unstamped(text));
    }
    let run_state: Value = serde_json::from_slice(
        &fs::read(state_root.join("var/lib/cmw-upgrade/prod/state.json")).unwrap(),
    )
    .unwrap();
    for step in run_state["steps"].as_array().unwrap() {
        state.insert(format!("step {}", step["name"]), step["status"].to_string());
    }
    state
}
