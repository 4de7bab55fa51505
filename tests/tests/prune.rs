//! Cache pruning on real folder trees: what is selected, what is left alone, links.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use cmw_upgrade_core::prune::{plan_prune, prune_caches};
use cmw_upgrade_core::ErrorKind;
use cmw_upgrade_tests::{write_ignite_database, DatabaseSpec};

fn database(spec: &DatabaseSpec) -> (tempfile::TempDir, cmw_upgrade_tests::DatabaseSummary) {
    let dir = tempfile::tempdir().unwrap();
    let summary = write_ignite_database(&dir.path().join("Database"), spec).unwrap();
    (dir, summary)
}

fn tree(root: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            paths.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            }
        }
    }
    paths.sort();
    paths
}

#[test]
fn check_lists_exactly_the_old_caches_and_changes_nothing() {
    let spec = DatabaseSpec {
        node_folders: 2,
        ..DatabaseSpec::default()
    };
    let (dir, summary) = database(&spec);
    let target = dir.path().join("Database");
    let before = tree(&target);
    let report = prune_caches(&target, true).unwrap();
    assert!(report.check);
    assert_eq!(report.removed, summary.prunable);
    assert_eq!(report.bytes_freed, summary.prunable_bytes);
    assert_eq!(report.node_folders.len(), 2);
    assert_eq!(tree(&target), before, "check mode must not change anything");
}

#[test]
fn pruning_removes_the_caches_and_keeps_data_wal_and_snapshots() {
    let (dir, summary) = database(&DatabaseSpec::default());
    let target = dir.path().join("Database");
    let report = prune_caches(&target, false).unwrap();
    assert!(!report.check);
    assert_eq!(report.removed, summary.prunable);
    assert_eq!(report.bytes_freed, summary.prunable_bytes);
    let after = tree(&target);
    for removed in &summary.prunable {
        assert!(!after.contains(removed), "{removed} is still there");
    }
    let node = summary.node_folders[0].to_string_lossy().into_owned();
    for kept in [
        format!("{node}/cacheGroup-Account/part-0.bin"),
        format!("{node}/lock"),
        "db/marshaller/-1234567.classname0".to_owned(),
        "Scripts/README.txt".to_owned(),
    ] {
        assert!(after.contains(&kept), "{kept} was removed");
    }
    assert!(after.iter().any(|path| path.starts_with("db/wal/node00")));
    // Node folders inside snapshots/ are backups: untouched.
    assert!(after.iter().any(|path| path.starts_with("snapshots/")
        && path.ends_with("cacheGroup-AccountValue/part-0.bin")));
    assert!(after
        .iter()
        .any(|path| path.starts_with("snapshots/") && path.ends_with("/cp")));

    // A second run finds the node folder again and has nothing left to remove.
    let again = prune_caches(&target, false).unwrap();
    assert!(again.removed.is_empty());
    assert_eq!(again.bytes_freed, 0);
}

#[test]
fn links_are_removed_as_links_and_never_followed() {
    let (dir, summary) = database(&DatabaseSpec {
        with_snapshot: false,
        ..DatabaseSpec::default()
    });
    let target = dir.path().join("Database");
    let node = target.join(&summary.node_folders[0]);
    // Precious data outside the target, reachable through links from inside it.
    let outside = dir.path().join("outside");
    fs::create_dir_all(outside.join("cp")).unwrap();
    fs::write(outside.join("precious.bin"), b"keep me").unwrap();
    fs::write(outside.join("cp/marker"), b"keep me too").unwrap();
    // 1. A link whose own name matches a pattern: removed as a link.
    symlink(&outside, node.join("cacheGroup-LinkedValue")).unwrap();
    // 2. A link inside a folder being removed: the folder goes, the link target stays.
    symlink(&outside, node.join("cacheGroup-AccountValue/escape")).unwrap();
    // 3. A link to a folder that looks like a node folder: not descended into.
    symlink(&outside, target.join("db/linked-node")).unwrap();
    fs::create_dir_all(outside.join("cacheGroup-Foo")).unwrap();

    let plan = plan_prune(&target).unwrap();
    let linked = plan
        .entries
        .iter()
        .find(|entry| entry.path.ends_with("cacheGroup-LinkedValue"))
        .unwrap();
    assert_eq!(linked.kind, cmw_upgrade_core::prune::EntryKind::Symlink);
    assert!(plan
        .node_folders
        .iter()
        .all(|folder| !folder.starts_with("db/linked-node")));

    prune_caches(&target, false).unwrap();
    assert!(fs::symlink_metadata(node.join("cacheGroup-LinkedValue")).is_err());
    assert!(!node.join("cacheGroup-AccountValue").exists());
    assert_eq!(fs::read(outside.join("precious.bin")).unwrap(), b"keep me");
    assert_eq!(fs::read(outside.join("cp/marker")).unwrap(), b"keep me too");
    assert!(outside.join("cacheGroup-Foo").is_dir());
}

#[test]
fn a_folder_without_node_folders_is_an_error_not_a_success() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("Streams/2026")).unwrap();
    fs::write(dir.path().join("Streams/2026/a.bin"), b"x").unwrap();
    let error = prune_caches(dir.path(), true).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoIgniteNodeFolder);
    assert!(error.to_string().contains("Database folder"), "{error}");

    let file = dir.path().join("Streams/2026/a.bin");
    assert_eq!(
        prune_caches(&file, true).unwrap_err().kind(),
        ErrorKind::NotAFolder
    );
    let missing = dir.path().join("missing");
    assert_eq!(
        prune_caches(&missing, true).unwrap_err().kind(),
        ErrorKind::Io
    );
}

#[test]
fn only_snapshots_means_no_node_folder() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("snapshots/s1/db/node00");
    fs::create_dir_all(node.join("cacheGroup-Keys")).unwrap();
    let error = prune_caches(dir.path(), true).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoIgniteNodeFolder);
    assert!(node.join("cacheGroup-Keys").is_dir());
}

#[test]
fn a_linked_target_is_followed_once() {
    // /var/lib/comindware/<i> is often a link to another disk: the named target is followed.
    let (dir, summary) = database(&DatabaseSpec {
        with_snapshot: false,
        ..DatabaseSpec::default()
    });
    let link = dir.path().join("Database-link");
    symlink(dir.path().join("Database"), &link).unwrap();
    let report = prune_caches(&link, false).unwrap();
    assert_eq!(report.removed, summary.prunable);
}
