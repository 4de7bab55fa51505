//! The example server shipped in `examples/server` (used by the README's first
//! command) is exactly what the fixture generator writes, and behaves as documented.

use std::fs;
use std::path::{Path, PathBuf};

use cmw_upgrade_core::{prune_caches, upgrade_verdict, InstanceName, OsFamily, Verdict};
use cmw_upgrade_tests::{write_new_server, write_server, ServerSpec};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/server")
}

fn new_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/new-server")
}

fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.push((relative, fs::read(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_shipped_example_matches_its_generator() {
    let generated = tempfile::tempdir().unwrap();
    write_server(generated.path(), &ServerSpec::default()).unwrap();
    let expected = files(generated.path());
    let shipped = files(&example());
    let names = |list: &[(String, Vec<u8>)]| {
        list.iter()
            .map(|(name, _)| name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&shipped), names(&expected), "regenerate with: cargo run -p cmw-upgrade-benches --bin cmw-upgrade-fixtures -- server examples/server");
    for ((name, shipped), (_, expected)) in shipped.iter().zip(&expected) {
        assert!(
            shipped == expected,
            "{name} differs from the generator's output"
        );
    }
}

#[test]
fn the_shipped_new_server_matches_its_generator() {
    let generated = tempfile::tempdir().unwrap();
    write_new_server(generated.path(), OsFamily::Deb, "prod", "5.0.1234.0", false).unwrap();
    assert!(
        files(&new_example()) == files(generated.path()),
        "regenerate with: cargo run -p cmw-upgrade-benches --bin cmw-upgrade-fixtures -- new-server examples/new-server deb"
    );
}

#[test]
fn the_example_config_migration_plans_cleanly() {
    use cmw_upgrade_core::config::migrate::{plan_migration, MigrateOptions};
    let instance = InstanceName::new("prod").unwrap();
    let options = MigrateOptions {
        stamp: "now".into(),
        ..MigrateOptions::default()
    };
    let plan = plan_migration(
        &example(),
        &new_example(),
        &instance,
        OsFamily::Deb,
        &options,
    )
    .unwrap();
    assert!(plan.report.errors.is_empty(), "{:?}", plan.report.errors);
    assert_eq!(plan.report.files.len(), 6);
}

#[test]
fn the_example_upgrade_succeeded_and_has_caches_to_prune() {
    let root = example();
    let instance = InstanceName::new("prod").unwrap();
    let layout = cmw_upgrade_core::disk::Disk::new(&root)
        .layout(&instance, OsFamily::Deb)
        .unwrap();
    assert_eq!(
        upgrade_verdict(&layout.log_dir.path).unwrap().verdict,
        Verdict::Succeeded
    );
    let report = prune_caches(&layout.database.path, true).unwrap();
    assert_eq!(report.removed.len(), 16);
    assert!(report
        .removed
        .iter()
        .all(|path| path.starts_with("db/node00-")));
}
