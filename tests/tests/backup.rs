//! Backup bundles through the core API: round trip, damage, drift, symlinks,
//! snapshots, disk full, and the `.cdbbz` import.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use cmw_upgrade_core::backup::{
    self, partial_path, BackupMethod, BackupOptions, Manifest, Progress, RestoreOptions,
};
use cmw_upgrade_core::executor::LocalExecutor;
use cmw_upgrade_core::{Error, ErrorKind, InstanceName, OsFamily};
use cmw_upgrade_tests::{web_user_id, write_new_server, write_server, DatabaseSpec, ServerSpec};

fn prod() -> InstanceName {
    InstanceName::new("prod").unwrap()
}

fn database_of(root: &Path) -> PathBuf {
    root.join("var/lib/comindware/prod/Database")
}

/// An old Astra server whose database belongs to www-data, with varied modes
/// and links inside (one of them a loop).
fn old_server(root: &Path) {
    write_server(
        root,
        &ServerSpec {
            database: DatabaseSpec {
                entities: 4,
                files_per_group: 3,
                bytes_per_file: 70_000,
                ..DatabaseSpec::default()
            },
            ..ServerSpec::default()
        },
    )
    .unwrap();
    let database = database_of(root);
    fs::create_dir_all(database.join("Scripts")).unwrap();
    fs::write(database.join("Scripts/OnSave.cs"), "// script\n").unwrap();
    fs::set_permissions(
        database.join("Scripts/OnSave.cs"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    fs::set_permissions(database.join("Scripts"), fs::Permissions::from_mode(0o750)).unwrap();
    symlink("../db", database.join("Scripts/db-link")).unwrap();
    symlink("loop-b", database.join("loop-a")).unwrap();
    symlink("loop-a", database.join("loop-b")).unwrap();
    let id = web_user_id("www-data");
    chown_tree(&database, id);
}

fn chown_tree(folder: &Path, id: u32) {
    std::os::unix::fs::lchown(folder, Some(id), Some(id)).unwrap();
    for entry in fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        std::os::unix::fs::lchown(&path, Some(id), Some(id)).unwrap();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            chown_tree(&path, id);
        }
    }
}

/// Everything about a tree a restore must reproduce: kind, content (or link
/// target), mode, owner and modification time of every entry.
fn tree_state(folder: &Path) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let metadata = fs::symlink_metadata(&path).unwrap();
            let content = if metadata.is_dir() {
                pending.push(path.clone());
                "dir".to_owned()
            } else if metadata.is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else {
                blake3::hash(&fs::read(&path).unwrap()).to_hex().to_string()
            };
            let mtime = format!("{}.{}", metadata.mtime(), metadata.mtime_nsec());
            state.insert(
                path.strip_prefix(folder).unwrap().display().to_string(),
                format!(
                    "{content} {:o} {}:{} {mtime}",
                    metadata.mode() & 0o7777,
                    metadata.uid(),
                    metadata.gid()
                ),
            );
        }
    }
    state
}

fn options(root: &Path, destination: &Path) -> BackupOptions {
    BackupOptions {
        root: root.to_path_buf(),
        instance: prod(),
        family: OsFamily::Deb,
        destination: destination.to_path_buf(),
        method: BackupMethod::Copy,
        with_streams: false,
        control_script: None,
        check_space: true,
    }
}

fn restore_into(
    bundle: PathBuf,
    root: &Path,
    family: OsFamily,
    replace: bool,
) -> cmw_upgrade_core::Result<backup::RestoreReport> {
    backup::restore(
        &RestoreOptions {
            bundle,
            root: root.to_path_buf(),
            instance: prod(),
            family,
            replace,
        },
        &Progress::default(),
    )
}

fn run_backup(options: &BackupOptions) -> cmw_upgrade_core::Result<backup::BackupReport> {
    backup::backup(options, &LocalExecutor::new("/"), &Progress::default())
}

#[test]
fn backup_verify_restore_gives_back_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    let database = database_of(&old);
    let before = tree_state(&database);
    let bundle = dir.path().join("bundle");

    let report = run_backup(&BackupOptions {
        with_streams: true,
        ..options(&old, &bundle)
    })
    .unwrap();
    assert_eq!(report.bundle, bundle);
    assert!(report.consistency.contains("crash-consistent"));
    assert!(!partial_path(&bundle).exists());
    assert_eq!(tree_state(&database), before, "the source is only read");

    // Nothing in the bundle is reachable by other users; configs are private.
    assert_eq!(fs::metadata(&bundle).unwrap().mode() & 0o777, 0o700);
    let env = bundle.join("config/etc/sysconfig/comindwareprod-env");
    assert_eq!(fs::metadata(&env).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        fs::metadata(bundle.join("manifest.json")).unwrap().mode() & 0o777,
        0o600
    );
    for config in [
        "config/var/www/prod/Workers.config",
        "config/var/www/prod/adapterhost.yml",
        "config/var/www/prod/data/Plugins/Agent/Agent.config",
        "config/etc/nginx/sites-available/comindwareprod",
        "config/usr/share/comindware/configs/instance/prod.yml",
        "config/usr/lib/systemd/system/comindwareprod.service",
        "config/usr/lib/systemd/system/apigatewayprod.service",
        "config/usr/lib/systemd/system/adapterhostprod.service",
        "streams/2026/11/3f/stream-0001.bin",
    ] {
        assert!(bundle.join(config).is_file(), "{config}");
    }

    let manifest = Manifest::read(&bundle).unwrap();
    assert_eq!(manifest.instance.as_deref(), Some("prod"));
    assert_eq!(manifest.os_family.as_deref(), Some("deb"));
    assert_eq!(manifest.platform_version.as_deref(), Some("4.7.2890.0"));
    assert_eq!(manifest.method, BackupMethod::Copy);
    let link = manifest
        .files
        .iter()
        .find(|entry| entry.path == "database/loop-a")
        .unwrap();
    assert_eq!(link.target.as_deref(), Some("loop-b"));
    let script = manifest
        .files
        .iter()
        .find(|entry| entry.path == "database/Scripts/OnSave.cs")
        .unwrap();
    assert_eq!((script.mode, script.uid), (0o640, web_user_id("www-data")));
    assert_eq!(
        script.blake3.as_deref(),
        Some(blake3::hash(b"// script\n").to_hex().as_str())
    );

    let verified = backup::verify_bundle(&bundle, &Progress::default()).unwrap();
    assert!(verified.ok, "{verified:?}");

    // The new server's instance already has a (fresh) database.
    let new = dir.path().join("new");
    write_new_server(&new, OsFamily::Deb, "prod", "5.0.1234.0", false).unwrap();
    fs::create_dir_all(database_of(&new).join("db")).unwrap();
    fs::write(database_of(&new).join("db/fresh.bin"), "new install").unwrap();
    let restore = |replace| restore_into(bundle.clone(), &new, OsFamily::Deb, replace);
    assert!(matches!(restore(false), Err(Error::AlreadyExists { .. })));
    assert!(
        database_of(&new).join("db/fresh.bin").exists(),
        "refused means untouched"
    );
    let restored = restore(true).unwrap();
    assert_eq!(restored.owner, "www-data:www-data");
    assert_eq!(tree_state(&database_of(&new)), before);
    let aside = restored.parts[0].moved_aside.clone().unwrap();
    assert_eq!(
        fs::read_to_string(aside.join("db/fresh.bin")).unwrap(),
        "new install"
    );
    assert_eq!(restored.parts[1].part, "streams");
    assert!(new
        .join("var/lib/comindware/prod/Streams/2026/11/3f/stream-0001.bin")
        .is_file());
    let leftovers: Vec<_> = fs::read_dir(new.join("var/lib/comindware/prod"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("cmw-upgrade-restore"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn restore_gives_the_database_to_the_data_owner_of_the_target_family() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    let bundle = dir.path().join("bundle");
    run_backup(&options(&old, &bundle)).unwrap();
    let new = dir.path().join("new");
    write_new_server(&new, OsFamily::Alt, "prod", "5.0.1234.0", false).unwrap();
    let report = restore_into(bundle, &new, OsFamily::Alt, false).unwrap();
    let id = web_user_id("_nginx");
    assert_eq!((report.uid, report.gid), (id, id));
    for (path, state) in tree_state(&database_of(&new)) {
        assert!(state.contains(&format!(" {id}:{id} ")), "{path}: {state}");
    }
}

#[test]
fn verify_finds_corrupted_missing_and_extra_files() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    let bundle = dir.path().join("bundle");
    run_backup(&options(&old, &bundle)).unwrap();
    let manifest = Manifest::read(&bundle).unwrap();
    let mut parts = manifest
        .files
        .iter()
        .filter(|entry| entry.path.ends_with(".bin") && entry.size > 0);
    let corrupted = parts.next().unwrap().path.clone();
    let missing = parts.next().unwrap().path.clone();
    // Same size, one byte different: only the hash can tell.
    let mut bytes = fs::read(bundle.join(&corrupted)).unwrap();
    bytes[100] ^= 1;
    fs::write(bundle.join(&corrupted), bytes).unwrap();
    fs::remove_file(bundle.join(&missing)).unwrap();
    fs::write(bundle.join("database/stray.tmp"), "x").unwrap();
    let report = backup::verify_bundle(&bundle, &Progress::default()).unwrap();
    assert!(!report.ok);
    assert_eq!(report.changed, [corrupted]);
    assert_eq!(report.missing, [missing]);
    assert_eq!(report.extra, ["database/stray.tmp"]);

    // A damaged bundle is never restored.
    let new = dir.path().join("new");
    write_new_server(&new, OsFamily::Deb, "prod", "5.0.1234.0", false).unwrap();
    let error = restore_into(bundle.clone(), &new, OsFamily::Deb, true).unwrap_err();
    assert!(matches!(error, Error::BundleDamaged { .. }), "{error}");
    assert_eq!(fs::read_dir(database_of(&new)).unwrap().count(), 0);
}

#[test]
fn drift_lists_what_the_old_instance_changed_after_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    let bundle = dir.path().join("bundle");
    run_backup(&options(&old, &bundle)).unwrap();
    let database = database_of(&old);
    let clean = backup::bundle_drift(&bundle, &database, true, &Progress::default()).unwrap();
    assert!(
        clean.changed.is_empty() && clean.added.is_empty() && clean.removed.is_empty(),
        "{clean:?}"
    );

    let wal = fs::read_dir(database.join("db/wal"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let wal_file = fs::read_dir(&wal).unwrap().next().unwrap().unwrap().path();
    fs::OpenOptions::new()
        .append(true)
        .open(&wal_file)
        .unwrap()
        .write_all(b"more")
        .unwrap();
    fs::write(database.join("db/new-segment.bin"), "new").unwrap();
    fs::remove_file(database.join("Scripts/OnSave.cs")).unwrap();
    // Same size and time, other content: only --deep sees it.
    let marshaller = fs::read_dir(database.join("db/marshaller"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let metadata = fs::metadata(&marshaller).unwrap();
    let mut bytes = fs::read(&marshaller).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&marshaller, bytes).unwrap();
    fs::File::options()
        .write(true)
        .open(&marshaller)
        .unwrap()
        .set_modified(metadata.modified().unwrap())
        .unwrap();

    let relative = |path: &Path| path.strip_prefix(&database).unwrap().display().to_string();
    let shallow = backup::bundle_drift(&bundle, &database, false, &Progress::default()).unwrap();
    assert_eq!(shallow.changed, [relative(&wal_file)]);
    assert_eq!(shallow.added, ["db/new-segment.bin"]);
    assert_eq!(shallow.removed, ["Scripts/OnSave.cs"]);
    let deep = backup::bundle_drift(&bundle, &database, true, &Progress::default()).unwrap();
    let mut expected = vec![relative(&wal_file), relative(&marshaller)];
    expected.sort();
    assert_eq!(deep.changed, expected);
}

#[test]
fn a_database_behind_a_symlink_is_copied_and_a_link_loop_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    // /var/lib/comindware/prod -> /data/disk2/prod, as when the data lives on another disk.
    let data_root = old.join("var/lib/comindware/prod");
    let other_disk = old.join("data/disk2/prod");
    fs::create_dir_all(other_disk.parent().unwrap()).unwrap();
    fs::rename(&data_root, &other_disk).unwrap();
    // The link holds the server's own path, as on the server: inside the root,
    // it leads into the copy, never to this machine's /data.
    symlink("/data/disk2/prod", &data_root).unwrap();
    let before = tree_state(&other_disk.join("Database"));
    let bundle = dir.path().join("bundle");
    run_backup(&options(&old, &bundle)).unwrap();
    let manifest = Manifest::read(&bundle).unwrap();
    assert_eq!(
        Path::new(&manifest.sources.database),
        fs::canonicalize(other_disk.join("Database")).unwrap()
    );
    assert_eq!(
        manifest
            .files
            .iter()
            .filter(|entry| entry.path.starts_with("database/db/"))
            .count(),
        before.keys().filter(|path| path.starts_with("db/")).count()
    );

    // Now the data root is a link loop: a clear error, nothing written.
    fs::remove_file(&data_root).unwrap();
    let loop_b = old.join("var/lib/comindware/loop");
    symlink("/var/lib/comindware/loop", &data_root).unwrap();
    symlink("/var/lib/comindware/prod", &loop_b).unwrap();
    let looped = dir.path().join("looped");
    let error = run_backup(&options(&old, &looped)).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("symbolic links"), "{message}");
    assert!(message.contains("Database"), "{message}");
    assert!(!looped.exists() && !partial_path(&looped).exists());
}

#[test]
fn a_bundle_is_never_written_inside_the_database_or_over_another_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    let inside = database_of(&old).join("backup");
    assert!(matches!(
        run_backup(&options(&old, &inside)),
        Err(Error::CheckFailed { .. })
    ));
    assert!(!inside.exists());
    let existing = dir.path().join("existing");
    fs::create_dir(&existing).unwrap();
    assert!(matches!(
        run_backup(&options(&old, &existing)),
        Err(Error::AlreadyExists { .. })
    ));
}

#[test]
fn snapshot_method_runs_control_sh_and_stores_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    let database = database_of(&old);
    // A stand-in for Ignite's control.sh: writes the snapshot where Ignite does.
    let script = old.join("var/www/prod/ignite/bin/control.sh");
    fs::create_dir_all(script.parent().unwrap()).unwrap();
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1 $2\" = \"--snapshot create\" ] || exit 64\nmkdir -p '{db}/snapshots/'\"$3\"/db\necho consistent > '{db}/snapshots/'\"$3\"/db/part-0.bin\necho \"Command [SNAPSHOT] finished with code: 0\"\n",
            db = database.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = dir.path().join("bundle");
    let report = run_backup(&BackupOptions {
        method: BackupMethod::Snapshot,
        ..options(&old, &bundle)
    })
    .unwrap();
    let name = report.snapshot.clone().unwrap();
    assert!(name.starts_with("cmw_upgrade_"), "{name}");
    assert_eq!(
        fs::read_to_string(bundle.join(format!("database/snapshots/{name}/db/part-0.bin")))
            .unwrap(),
        "consistent\n"
    );
    let manifest = Manifest::read(&bundle).unwrap();
    assert_eq!(manifest.method, BackupMethod::Snapshot);
    assert_eq!(manifest.snapshot.as_deref(), Some(name.as_str()));

    // A failing snapshot command stops everything before anything is written.
    fs::write(
        &script,
        "#!/bin/sh\necho 'Cluster is inactive' >&2\nexit 3\n",
    )
    .unwrap();
    let failed = dir.path().join("failed");
    let error = run_backup(&BackupOptions {
        method: BackupMethod::Snapshot,
        ..options(&old, &failed)
    })
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("exit code 3") && message.contains("Cluster is inactive"),
        "{message}"
    );
    assert!(!failed.exists() && !partial_path(&failed).exists());
}

/// A tmpfs of `size` mounted at a new folder; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the tests run as root in CI)"
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_refused_up_front_or_cleaned_up_after() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    let small = Tmpfs::mount(&dir.path().join("small"), "1m");
    let bundle = small.0.join("bundle");
    let error = run_backup(&options(&old, &bundle)).unwrap_err();
    match &error {
        Error::NotEnoughSpace {
            needed,
            data,
            available,
            ..
        } => {
            assert!(needed > data && data > available, "{error}");
        }
        other => panic!("expected NotEnoughSpace, got {other}"),
    }
    assert_eq!(
        fs::read_dir(&small.0).unwrap().count(),
        0,
        "nothing written"
    );

    // Without the check, the copy itself runs into the full disk.
    let error = run_backup(&BackupOptions {
        check_space: false,
        ..options(&old, &bundle)
    })
    .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("No space left on device"), "{message}");
    assert!(
        message.contains("bundle.partial/"),
        "names the path: {message}"
    );
    assert_eq!(
        fs::read_dir(&small.0).unwrap().count(),
        0,
        "the partial bundle is removed"
    );
}

#[test]
fn special_files_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    // A FIFO (or socket) in the database folder cannot be copied as data.
    let fifo = database_of(&old).join("ignite.sock");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let bundle = dir.path().join("bundle");
    let report = run_backup(&options(&old, &bundle)).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|warning| warning.contains("ignite.sock")),
        "{:?}",
        report.warnings
    );
}

fn write_cdbbz(path: &Path, entries: &[(&str, &[u8])]) {
    let mut writer = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (name, content) in entries {
        if name.ends_with('/') {
            writer.add_directory(*name, options).unwrap();
        } else {
            writer.start_file(*name, options).unwrap();
            writer.write_all(content).unwrap();
        }
    }
    writer.finish().unwrap();
}

#[test]
fn a_platform_backup_is_imported_and_restorable() {
    let dir = tempfile::tempdir().unwrap();
    let cdbbz = dir.path().join("prod-2026-11-24.cdbbz");
    let partition = vec![42u8; 300_000];
    write_cdbbz(
        &cdbbz,
        &[
            ("Database/", b""),
            (
                "Database/db/node00/cacheGroup-Account/part-0.bin",
                &partition,
            ),
            ("Database/db/marshaller/1.classname0", b"Account"),
            ("Scripts/OnSave.cs", b"// script\n"),
            ("Streams/2026/11/file.bin", b"uploaded"),
            ("History/h.json", b"{}"),
            ("readme.txt", b"skipped"),
        ],
    );
    let bundle = dir.path().join("imported");
    let report =
        backup::import_cdbbz(&cdbbz, &bundle, Some("prod"), true, &Progress::default()).unwrap();
    assert_eq!(report.method, BackupMethod::Import);
    assert_eq!(report.files, 5);
    assert!(report
        .warnings
        .iter()
        .any(|warning| warning.contains("readme.txt")));
    assert_eq!(
        fs::read(bundle.join("database/db/node00/cacheGroup-Account/part-0.bin")).unwrap(),
        partition
    );
    assert_eq!(
        fs::read_to_string(bundle.join("database/Scripts/OnSave.cs")).unwrap(),
        "// script\n"
    );
    assert_eq!(
        fs::read_to_string(bundle.join("streams/2026/11/file.bin")).unwrap(),
        "uploaded"
    );
    assert!(bundle.join("history/h.json").is_file());
    assert_eq!(fs::metadata(&bundle).unwrap().mode() & 0o777, 0o700);
    assert!(
        backup::verify_bundle(&bundle, &Progress::default())
            .unwrap()
            .ok
    );

    let new = dir.path().join("new");
    write_new_server(&new, OsFamily::Rpm, "prod", "5.0.1234.0", false).unwrap();
    restore_into(bundle, &new, OsFamily::Rpm, false).unwrap();
    let restored = database_of(&new).join("Scripts/OnSave.cs");
    assert_eq!(fs::read_to_string(&restored).unwrap(), "// script\n");
    assert_eq!(fs::metadata(&restored).unwrap().uid(), web_user_id("nginx"));
}

#[test]
fn an_import_that_would_escape_the_bundle_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cdbbz = dir.path().join("evil.cdbbz");
    write_cdbbz(
        &cdbbz,
        &[
            ("Database/db/a.bin", b"a"),
            ("Database/../../escaped.txt", b"x"),
        ],
    );
    let bundle = dir.path().join("imported");
    let error =
        backup::import_cdbbz(&cdbbz, &bundle, None, true, &Progress::default()).unwrap_err();
    assert!(matches!(error, Error::CheckFailed { .. }), "{error}");
    assert!(!bundle.exists() && !partial_path(&bundle).exists());
    assert!(!dir.path().join("escaped.txt").exists());
    let not_a_zip = dir.path().join("plain.cdbbz");
    fs::write(&not_a_zip, "not a zip").unwrap();
    let error =
        backup::import_cdbbz(&not_a_zip, &bundle, None, true, &Progress::default()).unwrap_err();
    assert!(error.to_string().contains("plain.cdbbz"), "{error}");
}

/// A bundle of the old fixture server, and a new server to restore it into.
fn bundle_and_new_server(dir: &Path) -> (PathBuf, PathBuf) {
    let old = dir.join("old");
    old_server(&old);
    let bundle = dir.join("bundle");
    run_backup(&options(&old, &bundle)).unwrap();
    let new = dir.join("new");
    write_new_server(&new, OsFamily::Deb, "prod", "5.0.1234.0", false).unwrap();
    (bundle, new)
}

/// Sets `db.workDir` in the new server's instance config.
fn set_work_dir(new: &Path, work_dir: &str) {
    let config = new.join("usr/share/comindware/configs/instance/prod.yml");
    let text: String = fs::read_to_string(&config)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("db.workDir"))
        .map(|line| format!("{line}\n"))
        .collect();
    fs::write(&config, format!("{text}db.workDir: {work_dir}\n")).unwrap();
}

/// A database path that names a system folder (from a carried config, a
/// bundle) never makes a restore move that folder aside, even with --replace.
#[test]
fn a_database_path_naming_a_system_folder_is_refused_before_anything_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, new) = bundle_and_new_server(dir.path());
    fs::create_dir_all(new.join("etc/ssh")).unwrap();
    fs::write(new.join("etc/ssh/sshd_config"), "PermitRootLogin no\n").unwrap();
    for bad in ["/etc", "/var/lib", "/data", "/", "/usr/../etc"] {
        set_work_dir(&new, bad);
        let before = tree_state(&new.join("etc"));
        let error = restore_into(bundle.clone(), &new, OsFamily::Deb, true).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::SystemFolder, "{bad}: {error}");
        assert!(error.to_string().contains("db.workDir"), "{error}");
        assert_eq!(
            tree_state(&new.join("etc")),
            before,
            "{bad}: /etc untouched"
        );
    }
}

/// A `control.sh` the service account could have written is never run as root.
#[test]
fn a_control_script_others_can_write_is_not_run_as_root() {
    use std::os::unix::fs::chown;
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    let folder = old.join("var/www/prod/ignite/bin");
    let script = folder.join("control.sh");
    let ran = dir.path().join("ran-as-root");
    fs::create_dir_all(&folder).unwrap();
    fs::write(&script, format!("#!/bin/sh\ntouch '{}'\n", ran.display())).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let attempt = |case: &str| {
        let bundle = dir.path().join(format!("bundle-{case}"));
        let error = run_backup(&BackupOptions {
            method: BackupMethod::Snapshot,
            ..options(&old, &bundle)
        })
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::CheckFailed, "{case}: {error}");
        assert!(error.to_string().contains("as root"), "{case}: {error}");
        assert!(!ran.exists(), "{case}: the script ran");
        assert!(!bundle.exists() && !partial_path(&bundle).exists());
    };
    // Owned by the service account.
    chown(&script, Some(33), Some(33)).unwrap();
    attempt("owner");
    chown(&script, Some(0), Some(0)).unwrap();
    // Writable by its group.
    fs::set_permissions(&script, fs::Permissions::from_mode(0o775)).unwrap();
    attempt("group-writable");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    // Root's file in a folder the service account owns (it could swap the file).
    chown(&folder, Some(33), Some(33)).unwrap();
    attempt("folder");
    chown(&folder, Some(0), Some(0)).unwrap();
    // A link to it is not the file itself.
    let link_folder = old.join("var/www/prod/a");
    fs::create_dir_all(&link_folder).unwrap();
    std::os::unix::fs::symlink(&script, link_folder.join("control.sh")).unwrap();
    let bundle = dir.path().join("bundle-link");
    let error = run_backup(&BackupOptions {
        method: BackupMethod::Snapshot,
        control_script: Some(PathBuf::from("/var/www/prod/a/control.sh")),
        ..options(&old, &bundle)
    })
    .unwrap_err();
    assert!(error.to_string().contains("not a regular file"), "{error}");
    assert!(!ran.exists());
}

/// A platform backup with two entries of one name is refused, not half-imported.
#[test]
fn a_platform_backup_with_a_duplicate_entry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cdbbz = dir.path().join("twice.cdbbz");
    write_cdbbz(
        &cdbbz,
        &[
            ("Database/", b""),
            ("Database/db/part-a.bin", b"first"),
            ("Database/db/part-b.bin", b"second"),
        ],
    );
    // The zip writer refuses duplicates; rename the second entry in place
    // (same length, in its local header and the central directory).
    let bytes = fs::read(&cdbbz).unwrap();
    let (from, to) = (b"Database/db/part-b.bin", b"Database/db/part-a.bin");
    let mut patched = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index..].starts_with(from) {
            patched.extend_from_slice(to);
            index += from.len();
        } else {
            patched.push(bytes[index]);
            index += 1;
        }
    }
    fs::write(&cdbbz, patched).unwrap();
    let bundle = dir.path().join("imported");
    let error = backup::import_cdbbz(&cdbbz, &bundle, Some("prod"), true, &Progress::default())
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CheckFailed, "{error}");
    assert!(error.to_string().contains("more than once"), "{error}");
    assert!(!bundle.exists() && !partial_path(&bundle).exists());
}

/// A non-empty folder that is not an Ignite database is never replaced, even
/// with --replace: a wrong db.workDir stops the restore.
#[test]
fn a_folder_that_is_not_a_database_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, new) = bundle_and_new_server(dir.path());
    set_work_dir(&new, "/home/admin/documents");
    let documents = new.join("home/admin/documents");
    fs::create_dir_all(&documents).unwrap();
    fs::write(documents.join("thesis.odt"), "years of work").unwrap();
    let error = restore_into(bundle, &new, OsFamily::Deb, true).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CheckFailed, "{error}");
    assert!(
        error.to_string().contains("not an Ignite database"),
        "{error}"
    );
    assert_eq!(
        fs::read_to_string(documents.join("thesis.odt")).unwrap(),
        "years of work"
    );
    assert_eq!(
        fs::read_dir(new.join("home/admin")).unwrap().count(),
        1,
        "nothing moved aside"
    );
}

/// A file written while it is copied is copied again; one that keeps changing
/// is named in the report and in the manifest's consistency statement, never
/// passed off as a consistent copy.
#[test]
fn a_file_that_keeps_changing_while_copied_is_named_not_passed_as_consistent() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    let busy = database_of(&old).join("db/busy.wal");
    fs::write(&busy, vec![7u8; 16 << 20]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let busy = busy.clone();
        std::thread::spawn(move || {
            let mut file = fs::OpenOptions::new().append(true).open(busy).unwrap();
            // Without a pause: on a busy machine a writer that sleeps between
            // writes can miss every copy attempt, and the file looks stable.
            while !stop.load(Ordering::Relaxed) {
                file.write_all(b"x").unwrap();
            }
        })
    };
    // The writer is writing before the backup starts.
    while fs::metadata(&busy).unwrap().len() == 16 << 20 {
        std::thread::yield_now();
    }
    let bundle = dir.path().join("bundle");
    let report = run_backup(&options(&old, &bundle));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let report = report.unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|warning| warning.contains("db/busy.wal") && warning.contains("kept changing")),
        "{:?}",
        report.warnings
    );
    assert!(
        report.consistency.contains("not consistent for 1 file"),
        "{}",
        report.consistency
    );
    let manifest = Manifest::read(&bundle).unwrap();
    assert!(
        manifest.consistency.contains("database/db/busy.wal"),
        "{}",
        manifest.consistency
    );
    assert!(
        backup::verify_bundle(&bundle, &Progress::default())
            .unwrap()
            .ok,
        "what was copied matches its manifest"
    );
}

/// Two backups to one destination at once: the second refuses, and the
/// first's work in progress is not removed as a leftover.
#[test]
fn a_second_backup_to_the_same_place_refuses_while_the_first_writes() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    let bundle = dir.path().join("bundle");
    // The first backup's partial bundle, held as a running backup holds it.
    let partial = backup::PartialBundle::create(&bundle).unwrap();
    fs::write(
        partial.path().join("in-progress.bin"),
        "the first run's bytes",
    )
    .unwrap();
    let error = run_backup(&options(&old, &bundle)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AlreadyExists, "{error}");
    assert!(
        error
            .to_string()
            .contains("another cmw-upgrade is writing there now"),
        "{error}"
    );
    assert_eq!(
        fs::read_to_string(partial.path().join("in-progress.bin")).unwrap(),
        "the first run's bytes"
    );
    // A leftover of a run that died holds no lock and is replaced (the kill -9
    // test of the command line shows that); this one is still held.
    drop(partial);
    run_backup(&options(&old, &bundle)).unwrap();
}

/// A read-only file system (a remounted disk) under a backup's destination or
/// a restore's target: a clear error naming the place, nothing left half-done.
#[test]
fn a_read_only_destination_or_target_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, new) = bundle_and_new_server(dir.path());
    let readonly = Tmpfs::mount(&dir.path().join("ro"), "4m");
    assert!(Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&readonly.0)
        .status()
        .unwrap()
        .success());
    let old = dir.path().join("old");
    let error = run_backup(&options(&old, &readonly.0.join("bundle"))).unwrap_err();
    assert!(error.to_string().contains("ro/bundle"), "{error}");
    assert_eq!(fs::read_dir(&readonly.0).unwrap().count(), 0);

    // The instance's data on the read-only disk: the restore stops before it
    // touches the current database.
    let data = new.join("var/lib/comindware/prod");
    let current = data.join("Database/db");
    fs::create_dir_all(&current).unwrap();
    fs::write(current.join("fresh.bin"), "fresh").unwrap();
    let frozen = Tmpfs::mount(&dir.path().join("frozen"), "4m");
    assert!(Command::new("cp")
        .args(["-a", "--no-target-directory"])
        .arg(&data)
        .arg(&frozen.0)
        .status()
        .unwrap()
        .success());
    fs::remove_dir_all(&data).unwrap();
    std::os::unix::fs::symlink("/frozen", &data).unwrap();
    fs::create_dir_all(new.join("frozen")).unwrap();
    assert!(Command::new("mount")
        .args(["--bind"])
        .arg(&frozen.0)
        .arg(new.join("frozen"))
        .status()
        .unwrap()
        .success());
    let bind = Tmpfs(new.join("frozen"));
    assert!(Command::new("mount")
        .args(["-o", "remount,ro,bind"])
        .arg(&bind.0)
        .status()
        .unwrap()
        .success());
    let error = restore_into(bundle, &new, OsFamily::Deb, true).unwrap_err();
    assert!(error.to_string().contains("frozen"), "{error}");
    assert_eq!(
        fs::read_to_string(new.join("frozen/Database/db/fresh.bin")).unwrap(),
        "fresh",
        "the current database is untouched"
    );
    drop(bind);
}

/// A file name that is not UTF-8 (names are bytes on Linux) is named, with its
/// folder, in the error: the manifest cannot record it, so nothing is written.
#[test]
fn a_file_name_that_is_not_utf8_is_named() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_server(&old);
    let name = std::ffi::OsStr::from_bytes(b"part-\xff.bin");
    fs::write(database_of(&old).join("db").join(name), "x").unwrap();
    let bundle = dir.path().join("bundle");
    let error = run_backup(&options(&old, &bundle)).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("db/part-"), "{message}");
    assert!(message.contains("UTF-8"), "{message}");
    assert!(!bundle.exists() && !partial_path(&bundle).exists());
}
