//! Config migration on realistic server trees: 4.7 → 5.0 and 5.0 → newer.
//! `nginx -t` is the real nginx (installed by .ci/run).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cmw_upgrade_core::config::migrate::{
    apply_migration, plan_migration, MigrateOptions, MigrationPlan,
};
use cmw_upgrade_core::config::ChangeAction;
use cmw_upgrade_core::executor::{DryRun, Executor, LocalExecutor, Recording, ToolAction};
use cmw_upgrade_core::{InstanceName, OsFamily};
use cmw_upgrade_tests::{write_new_server, write_server, DatabaseSpec, ServerSpec};

const STAMP: &str = "20261125T070000Z";

struct Servers {
    old: tempfile::TempDir,
    new: tempfile::TempDir,
}

fn servers_47_to_50(family: OsFamily) -> Servers {
    let old = tempfile::tempdir().unwrap();
    let spec = ServerSpec {
        family,
        database: DatabaseSpec {
            entities: 1,
            files_per_group: 1,
            with_snapshot: false,
            ..DatabaseSpec::default()
        },
        ..ServerSpec::default()
    };
    write_server(old.path(), &spec).unwrap();
    let new = tempfile::tempdir().unwrap();
    write_new_server(new.path(), family, "prod", "5.0.1234.0", false).unwrap();
    Servers { old, new }
}

fn options() -> MigrateOptions {
    MigrateOptions {
        stamp: STAMP.to_owned(),
        ..MigrateOptions::default()
    }
}

fn plan(servers: &Servers, family: OsFamily, options: &MigrateOptions) -> MigrationPlan {
    let instance = InstanceName::new("prod").unwrap();
    plan_migration(
        servers.old.path(),
        servers.new.path(),
        &instance,
        family,
        options,
    )
    .unwrap()
}

fn read(root: &Path, server_path: &str) -> String {
    fs::read_to_string(root.join(server_path.trim_start_matches('/'))).unwrap()
}

fn change<'a>(
    plan: &'a MigrationPlan,
    file_end: &str,
    key: &str,
) -> &'a cmw_upgrade_core::config::Change {
    plan.report
        .changes
        .iter()
        .find(|c| c.file.ends_with(file_end) && c.key == key)
        .unwrap_or_else(|| {
            panic!(
                "no change for {key} in {file_end}: {:#?}",
                plan.report.changes
            )
        })
}

#[test]
fn from_4_7_to_5_0_every_file_gets_the_old_values() {
    let servers = servers_47_to_50(OsFamily::Deb);
    let plan = plan(&servers, OsFamily::Deb, &options());
    assert!(plan.report.errors.is_empty(), "{:#?}", plan.report.errors);

    // Instance config: renamed directives under current names, version never carried.
    assert_eq!(
        change(&plan, "prod.yml", "clusterName").action,
        ChangeAction::Kept
    );
    assert_eq!(
        change(&plan, "prod.yml", "nodeName").action,
        ChangeAction::Set
    );
    assert_eq!(
        change(&plan, "prod.yml", "journal.server").action,
        ChangeAction::Kept
    );
    let streams = change(&plan, "prod.yml", "userStorage.localDisk.path");
    assert_eq!(
        (streams.action, streams.from.as_deref()),
        (ChangeAction::Renamed, Some("streamsPath"))
    );
    let backup = change(&plan, "prod.yml", "backup.defaultFolder");
    assert_eq!(backup.action, ChangeAction::Renamed);
    assert!(plan.report.changes.iter().all(|c| c.key != "version"));
    // Workers.config (gone in 5.0) switches became instance directives.
    let listener = change(&plan, "prod.yml", "email.listenerEnabled");
    assert_eq!(listener.action, ChangeAction::Uncommented);
    assert_eq!(
        listener.from.as_deref(),
        Some("Workers.config EmailListener")
    );
    // A switch with no 5.0 equivalent is for a person to decide.
    assert!(plan
        .report
        .to_do
        .iter()
        .any(|note| note.code == "worker_switch"
            && note.key.as_deref() == Some("SyncThread")
            && note.file.ends_with("Workers.config")
            && note.action_needed));
    // Secrets never show.
    let password = change(&plan, "prod.yml", "journal.password");
    assert_eq!(
        (password.old.as_deref(), password.new.as_deref()),
        (Some("***"), Some("***"))
    );
    // Other files.
    assert_eq!(
        change(&plan, "comindwareprod-env", "JVM_OPTS").action,
        ChangeAction::Set
    );
    assert_eq!(
        change(&plan, "comindwareprod-env", "DOTNET_gcServer").action,
        ChangeAction::Uncommented
    );
    assert_eq!(
        change(&plan, "Ignite.config", "DataRegionConfiguration.maxSize").action,
        ChangeAction::Set
    );
    assert_eq!(
        change(&plan, "comindwareprod", "server.server_name").action,
        ChangeAction::Set
    );
    assert!(plan
        .report
        .to_do
        .iter()
        .any(|note| note.code == "file_differs"
            && note.file.ends_with("Agent.config")
            && note.message.contains("--take")));
    // Folders the config names that the new server lacks are listed with the data owner.
    let folders: Vec<&str> = plan
        .report
        .folders_to_create
        .iter()
        .map(|f| f.directive.as_str())
        .collect();
    assert!(folders.contains(&"backup.defaultFolder"), "{folders:?}");
    assert_eq!(plan.report.folders_to_create[0].owner.user, "www-data");

    // Diffs show the changes with secrets masked.
    for update in &plan.updates {
        let diff = update.masked_diff();
        assert!(
            diff.starts_with(&format!("--- a{}", update.server_path)),
            "{diff}"
        );
        for secret in ["journal-secret", "kafka-secret", "changeme"] {
            assert!(
                !diff.contains(secret),
                "{secret} leaked into the diff of {}",
                update.server_path
            );
        }
    }
    let json = serde_json::to_string(&plan.report).unwrap();
    for secret in ["journal-secret", "kafka-secret", "changeme"] {
        assert!(!json.contains(secret), "{secret} leaked into the report");
    }
    assert_eq!(plan.report.files.len(), 6, "{:?}", plan.report.files);
}

#[test]
fn applying_writes_all_files_with_backups_and_a_second_run_changes_nothing() {
    let servers = servers_47_to_50(OsFamily::Rpm);
    let root = servers.new.path();
    let instance_config = "/usr/share/comindware/configs/instance/prod.yml";
    let config_path = root.join(instance_config.trim_start_matches('/'));
    fs::set_permissions(&config_path, fs::Permissions::from_mode(0o640)).unwrap();
    let original = read(root, instance_config);

    let plan = plan(&servers, OsFamily::Rpm, &options());
    let written = apply_migration(&plan, &LocalExecutor::new("/"), STAMP).unwrap();
    assert_eq!(written.len(), plan.updates.len());

    let migrated = read(root, instance_config);
    assert!(migrated.contains("nodeName: cmw-node-01\n"));
    assert!(
        migrated.contains("journal.password: 'journal-secret'\n"),
        "quoting style of the new line kept"
    );
    assert!(migrated.contains("email.listenerEnabled: false\n"));
    assert!(
        migrated.contains("# Directives commented out keep their default value.\n"),
        "comments kept"
    );
    assert!(migrated.contains("version: 5.0.1234.0\n"));
    assert_eq!(
        fs::metadata(&config_path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let backup = format!("{instance_config}.cmw-upgrade.{STAMP}.bak");
    assert_eq!(read(root, &backup), original);
    assert!(written.iter().any(|w| w.backup == backup));
    let site = read(root, "/etc/nginx/conf.d/comindwareprod");
    assert!(
        site.contains("server_name cmw.example.org;") && site.contains("location /api/"),
        "{site}"
    );

    let again = plan_migration(
        servers.old.path(),
        root,
        &InstanceName::new("prod").unwrap(),
        OsFamily::Rpm,
        &options(),
    )
    .unwrap();
    assert!(again.report.errors.is_empty(), "{:?}", again.report.errors);
    assert!(
        again.updates.is_empty(),
        "second run would change {:?}",
        again.report.files
    );
    assert!(
        again
            .report
            .changes
            .iter()
            .all(|c| c.action == ChangeAction::Kept),
        "{:#?}",
        again
            .report
            .changes
            .iter()
            .filter(|c| c.action != ChangeAction::Kept)
            .collect::<Vec<_>>()
    );
}

#[test]
fn from_5_0_to_newer_carries_an_admin_s_tuning() {
    let old = tempfile::tempdir().unwrap();
    write_new_server(old.path(), OsFamily::Alt, "prod", "5.0.1234.0", true).unwrap();
    let new = tempfile::tempdir().unwrap();
    write_new_server(new.path(), OsFamily::Alt, "prod", "5.1.77.0", false).unwrap();
    let servers = Servers { old, new };
    let plan = plan(&servers, OsFamily::Alt, &options());
    assert!(plan.report.errors.is_empty(), "{:#?}", plan.report.errors);
    apply_migration(&plan, &LocalExecutor::new("/"), STAMP).unwrap();
    let root = servers.new.path();
    let config = read(root, "/usr/share/comindware/configs/instance/prod.yml");
    assert!(config.contains("version: 5.1.77.0\n"));
    assert!(config.contains("journal.server: http://journal.internal:9200\n"));
    assert!(config.contains("email.listenerEnabled: false\n"));
    assert!(!config.contains("#email.listenerEnabled"));
    assert!(read(root, "/var/www/prod/Ignite.config").contains("#{16L * 1024 * 1024 * 1024}"));
    assert!(read(root, "/etc/sysconfig/comindwareprod-env").contains("-Xmx24g"));
    let site = read(root, "/etc/nginx/sites-available.d/comindwareprod");
    assert!(
        site.contains("listen 8080;") && site.contains("client_max_body_size 500m;"),
        "{site}"
    );
    assert!(site.contains("# Comindware Platform 5.1.77.0"));
}

#[test]
fn any_error_means_nothing_is_written() {
    let servers = servers_47_to_50(OsFamily::Deb);
    let root = servers.new.path();
    // A broken new apigateway.yml: the instance config must not be written either.
    let gateway = root.join("var/www/prod/apigateway.yml");
    fs::write(&gateway, "cluster.name: prod\nmq.server: [unclosed\n").unwrap();
    let before = read(root, "/usr/share/comindware/configs/instance/prod.yml");
    let plan = plan(&servers, OsFamily::Deb, &options());
    assert!(plan.updates.is_empty());
    assert!(
        plan.report
            .errors
            .iter()
            .any(|e| e.starts_with("/var/www/prod/apigateway.yml:")),
        "{:?}",
        plan.report.errors
    );
    assert!(apply_migration(&plan, &LocalExecutor::new("/"), STAMP).is_err());
    assert_eq!(
        read(root, "/usr/share/comindware/configs/instance/prod.yml"),
        before
    );
}

#[test]
fn a_site_file_nginx_rejects_is_not_written() {
    let servers = servers_47_to_50(OsFamily::Deb);
    let old_site = servers
        .old
        .path()
        .join("etc/nginx/sites-available/comindwareprod");
    let text = fs::read_to_string(&old_site).unwrap().replace(
        "client_max_body_size 300m;",
        "client_max_body_size 300 megabytes;",
    );
    fs::write(&old_site, text).unwrap();
    let root = servers.new.path();
    let before_config = read(root, "/usr/share/comindware/configs/instance/prod.yml");
    let before_site = read(root, "/etc/nginx/sites-available/comindwareprod");
    let plan = plan(&servers, OsFamily::Deb, &options());
    let error = apply_migration(&plan, &LocalExecutor::new("/"), STAMP).unwrap_err();
    assert!(error.to_string().contains("nginx -t"), "{error}");
    assert!(
        error.to_string().contains("client_max_body_size"),
        "{error}"
    );
    assert!(error.to_string().contains("nothing was written"), "{error}");
    assert_eq!(
        read(root, "/usr/share/comindware/configs/instance/prod.yml"),
        before_config
    );
    assert_eq!(
        read(root, "/etc/nginx/sites-available/comindwareprod"),
        before_site
    );

    // A check mode, and so a plan, meets the same nginx -t refusal and writes nothing.
    let copy = root.join("mnt/old");
    fs::create_dir_all(&copy).unwrap();
    assert!(std::process::Command::new("cp")
        .args(["-a", "--no-target-directory"])
        .arg(servers.old.path())
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let plan = Recording::new(DryRun::new(LocalExecutor::new(root)));
    let report = plan
        .tool(&ToolAction::MigrateConfig {
            from: "/mnt/old".into(),
            instance: InstanceName::new("prod").unwrap(),
            family: OsFamily::Deb,
            fix: false,
            check: false,
        })
        .unwrap()
        .migrate()
        .unwrap()
        .unwrap();
    assert!(report.check, "the dry run ran it in check mode");
    assert!(
        report
            .errors
            .iter()
            .any(|error| error.contains("nginx -t") && error.contains("client_max_body_size")),
        "{:#?}",
        report.errors
    );
    assert_eq!(
        read(root, "/etc/nginx/sites-available/comindwareprod"),
        before_site
    );
}

#[test]
fn disagreeing_cluster_and_queue_settings_are_errors_unless_fixed() {
    let servers = servers_47_to_50(OsFamily::Deb);
    // The old gateway was misconfigured: it carries the wrong values over.
    let gateway = servers.old.path().join("var/www/prod/apigateway.yml");
    fs::write(&gateway, "# API gateway\ncluster.name: other\nmq.server: localhost:9092\nmq.group: wrong\nmq.node: cmw-node-01\nport: 5000\n").unwrap();
    let checked = plan(&servers, OsFamily::Deb, &options());
    assert!(checked.updates.is_empty());
    assert!(
        checked
            .report
            .errors
            .iter()
            .any(|e| e.contains("cluster.name") && e.contains("--fix")),
        "{:#?}",
        checked.report.errors
    );
    assert!(checked.report.errors.iter().any(|e| e.contains("mq.group")));

    let fixed = plan(
        &servers,
        OsFamily::Deb,
        &MigrateOptions {
            fix: true,
            ..options()
        },
    );
    assert!(fixed.report.errors.is_empty(), "{:#?}", fixed.report.errors);
    apply_migration(&fixed, &LocalExecutor::new("/"), STAMP).unwrap();
    let text = read(servers.new.path(), "/var/www/prod/apigateway.yml");
    assert!(
        text.contains("cluster.name: prod\n") && text.contains("mq.group: prod\n"),
        "{text}"
    );
}

#[test]
fn take_copies_a_whole_file_and_rejects_unknown_ones() {
    let servers = servers_47_to_50(OsFamily::Deb);
    let agent = "/var/www/prod/data/Plugins/Agent/Agent.config";
    let plan = plan(
        &servers,
        OsFamily::Deb,
        &MigrateOptions {
            take: vec![agent.to_owned()],
            ..options()
        },
    );
    assert_eq!(
        change(&plan, "Agent.config", "(whole file)").action,
        ChangeAction::Taken
    );
    apply_migration(&plan, &LocalExecutor::new("/"), STAMP).unwrap();
    assert_eq!(
        read(servers.new.path(), agent),
        read(servers.old.path(), agent)
    );

    let unknown = plan_migration(
        servers.old.path(),
        servers.new.path(),
        &InstanceName::new("prod").unwrap(),
        OsFamily::Deb,
        &MigrateOptions {
            take: vec!["/var/www/prod/nope.json".into()],
            ..options()
        },
    )
    .unwrap();
    assert!(unknown
        .report
        .errors
        .iter()
        .any(|e| e.contains("--take /var/www/prod/nope.json")));
}

#[test]
fn a_new_server_without_the_instance_is_an_error() {
    let servers = servers_47_to_50(OsFamily::Deb);
    fs::remove_file(servers.new.path().join("var/www/prod/adapterhost.yml")).unwrap();
    let plan = plan(&servers, OsFamily::Deb, &options());
    assert!(
        plan.report
            .errors
            .iter()
            .any(|e| e.contains("adapterhost.yml") && e.contains("instance_create.sh")),
        "{:?}",
        plan.report.errors
    );
}

#[test]
fn owners_are_kept() {
    use std::os::unix::fs::MetadataExt;
    let servers = servers_47_to_50(OsFamily::Deb);
    let path = servers.new.path().join("var/www/prod/apigateway.yml");
    // The tests run as root (as the tool does on a server), so a file can be given away.
    std::os::unix::fs::chown(&path, Some(4321), Some(4322)).unwrap();
    let plan = plan(&servers, OsFamily::Deb, &options());
    apply_migration(&plan, &LocalExecutor::new("/"), STAMP).unwrap();
    let metadata = fs::metadata(&path).unwrap();
    assert_eq!((metadata.uid(), metadata.gid()), (4321, 4322));
    assert!(
        read(servers.new.path(), "/var/www/prod/apigateway.yml").contains("mq.node: cmw-node-01")
    );
}

#[test]
fn a_failed_write_puts_back_the_files_already_replaced() {
    let servers = servers_47_to_50(OsFamily::Deb);
    let root = servers.new.path();
    let originals: Vec<(String, String)> = [
        "/etc/nginx/sites-available/comindwareprod",
        "/etc/sysconfig/comindwareprod-env",
        "/usr/share/comindware/configs/instance/prod.yml",
    ]
    .iter()
    .map(|path| (path.to_string(), read(root, path)))
    .collect();
    let plan = plan(&servers, OsFamily::Deb, &options());
    // Files are written in path order; a backup that already exists stops the third.
    let blocker = root.join(format!(
        "usr/share/comindware/configs/instance/prod.yml.cmw-upgrade.{STAMP}.bak"
    ));
    fs::write(&blocker, "an earlier backup, never overwritten").unwrap();
    let error = apply_migration(&plan, &LocalExecutor::new("/"), STAMP).unwrap_err();
    assert!(error.to_string().contains("already exists"), "{error}");
    for (path, original) in originals {
        assert_eq!(read(root, &path), original, "{path} was not put back");
    }
    assert_eq!(
        fs::read_to_string(&blocker).unwrap(),
        "an earlier backup, never overwritten"
    );
}

/// The old server's (or a bundle's) database path may not name a system
/// folder of the new server: the migration stops, nothing written.
#[test]
fn a_carried_database_path_naming_a_system_folder_stops_the_migration() {
    let servers = servers_47_to_50(OsFamily::Deb);
    let old_config = servers
        .old
        .path()
        .join("usr/share/comindware/configs/instance/prod.yml");
    let text = fs::read_to_string(&old_config).unwrap();
    let text = text
        .lines()
        .map(|line| {
            if line.starts_with("databasePath:") {
                "databasePath: /etc".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&old_config, format!("{text}\n")).unwrap();
    let plan = plan(&servers, OsFamily::Deb, &options());
    assert!(
        plan.report
            .errors
            .iter()
            .any(|error| error.contains("/etc") && error.contains("system folder")),
        "{:#?}",
        plan.report.errors
    );
    assert!(apply_migration(&plan, &LocalExecutor::new("/"), STAMP).is_err());
}
