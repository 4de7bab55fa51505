//! Server trees for the simulator, the tests, the benchmarks and the shipped
//! example: instance layouts as the platform's documentation describes them,
//! Ignite databases with node folders and cache groups, and platform logs in
//! the real record format.
//!
//! Everything is deterministic (no randomness without a seed), so a fixture
//! written twice is byte-identical and the shipped example can be checked
//! against its generator.
//!
//! ```no_run
//! use cmw_upgrade_sim::fixtures::{write_server, ServerSpec};
//! let root = tempfile::tempdir().unwrap();
//! write_server(root.path(), &ServerSpec::default()).unwrap();
//! ```

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use cmw_upgrade_core::OsFamily;

/// Where the upgrade logs of a fixture stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeLogState {
    /// No upgrade log at all.
    NotStarted,
    /// Both logs written, completion records missing.
    InProgress,
    /// Both logs end with their completion records.
    Succeeded,
    /// The upgrade log holds an error record and a stack trace.
    Failed,
}

/// What kind of server tree to write.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// OS family: decides os-release, nginx site path and web user.
    pub family: OsFamily,
    /// Instance name.
    pub instance: String,
    /// Platform version written into the instance config.
    pub platform_version: String,
    /// State of the upgrade logs.
    pub upgrade_logs: UpgradeLogState,
    /// Name of the log folder: `Logs` (current docs) or `Log` (the seed).
    pub log_folder_name: String,
    /// The Ignite database to lay out.
    pub database: DatabaseSpec,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            family: OsFamily::Deb,
            instance: "prod".to_owned(),
            platform_version: "4.7.2890.0".to_owned(),
            upgrade_logs: UpgradeLogState::Succeeded,
            log_folder_name: "Logs".to_owned(),
            database: DatabaseSpec::default(),
        }
    }
}

/// Shape of an Ignite persistence folder.
#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    /// Node folders under `db/`.
    pub node_folders: usize,
    /// Entities; each gets a kept cache group and four old-format ones.
    pub entities: usize,
    /// Partition files in each cache group.
    pub files_per_group: usize,
    /// Bytes in each partition file.
    pub bytes_per_file: usize,
    /// Also write a snapshot under `snapshots/` (which must never be pruned).
    pub with_snapshot: bool,
}

impl Default for DatabaseSpec {
    fn default() -> Self {
        DatabaseSpec {
            node_folders: 1,
            entities: 3,
            files_per_group: 2,
            bytes_per_file: 64,
            with_snapshot: true,
        }
    }
}

/// Names of the entities used for cache groups (cycled, with a number when exhausted).
const ENTITIES: &[&str] = &[
    "Account",
    "Attribute",
    "Container",
    "Record",
    "Process",
    "Task",
    "Document",
    "Role",
    "Template",
    "Dataset",
    "Form",
    "Toolbar",
    "Trigger",
    "Journal",
    "Message",
];

/// What [`write_ignite_database`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseSummary {
    /// Node folders, relative to the database folder.
    pub node_folders: Vec<PathBuf>,
    /// Entries the pruning must remove, relative to the database folder, sorted.
    pub prunable: Vec<String>,
    /// Bytes of regular files in the prunable entries.
    pub prunable_bytes: u64,
    /// Regular files written in all.
    pub files: u64,
    /// Bytes written in all.
    pub bytes: u64,
}

fn node_id(index: usize) -> String {
    format!(
        "node{index:02}-3f2a9c1e-7b4d-4e21-9a8f-{:012x}",
        0x5eed + index
    )
}

fn write_bytes(path: &Path, len: usize, seed: usize) -> io::Result<()> {
    let mut content = Vec::with_capacity(len);
    let mut state = (seed as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1);
    while content.len() < len {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        content.extend_from_slice(&state.to_le_bytes());
    }
    content.truncate(len);
    fs::write(path, content)
}

/// Writes an Ignite persistence tree into `database` (the `Database` folder):
/// `db/<node>/cacheGroup-*`, `db/wal/<node>/*.wal`, `db/marshaller`, and
/// optionally a snapshot holding a full copy of node folders.
///
/// # Errors
/// Any I/O error while writing.
pub fn write_ignite_database(database: &Path, spec: &DatabaseSpec) -> io::Result<DatabaseSummary> {
    let mut summary = DatabaseSummary::default();
    let mut seed = 0usize;
    let mut node_roots = vec![database.join("db")];
    if spec.with_snapshot {
        node_roots.push(database.join("snapshots/snapshot_2026-11-20/db"));
    }
    for (root_index, node_root) in node_roots.iter().enumerate() {
        let is_live = root_index == 0;
        for node in 0..spec.node_folders {
            let node_name = node_id(node);
            let node_folder = node_root.join(&node_name);
            let relative_node = node_folder
                .strip_prefix(database)
                .expect("under the database")
                .to_path_buf();
            if is_live {
                summary.node_folders.push(relative_node.clone());
            }
            let mut groups: Vec<(String, bool)> = Vec::new();
            for entity_index in 0..spec.entities {
                let base = ENTITIES[entity_index % ENTITIES.len()];
                let entity = if entity_index < ENTITIES.len() {
                    base.to_owned()
                } else {
                    format!("{base}{}", entity_index / ENTITIES.len())
                };
                groups.push((format!("cacheGroup-{entity}"), false));
                groups.push((format!("cacheGroup-{entity}-TableIdentity"), true));
                groups.push((format!("cacheGroup-{entity}-TableIdentityReplicated"), true));
                groups.push((format!("cacheGroup-{entity}Value"), true));
                groups.push((format!("cacheGroup-{entity}ValueReplicated"), true));
            }
            groups.push(("cacheGroup-Keys".to_owned(), true));
            groups.push(("cache-ignite-sys-cache".to_owned(), true));
            groups.push(("metastorage".to_owned(), true));
            for (group, prunable) in &groups {
                let folder = node_folder.join(group);
                fs::create_dir_all(&folder)?;
                let mut group_bytes = 0u64;
                for part in 0..spec.files_per_group {
                    seed += 1;
                    write_bytes(
                        &folder.join(format!("part-{part}.bin")),
                        spec.bytes_per_file,
                        seed,
                    )?;
                    group_bytes += spec.bytes_per_file as u64;
                }
                summary.files += spec.files_per_group as u64;
                summary.bytes += group_bytes;
                if *prunable && is_live {
                    summary
                        .prunable
                        .push(relative_node.join(group).to_string_lossy().into_owned());
                    summary.prunable_bytes += group_bytes;
                }
            }
            // Checkpoint markers: `cp` holds small files named by timestamps.
            let cp = node_folder.join("cp");
            fs::create_dir_all(&cp)?;
            for marker in ["1732440000000-START.bin", "1732440000000-END.bin"] {
                write_bytes(&cp.join(marker), 16, seed)?;
                summary.files += 1;
                summary.bytes += 16;
            }
            if is_live {
                summary
                    .prunable
                    .push(relative_node.join("cp").to_string_lossy().into_owned());
                summary.prunable_bytes += 32;
            }
            fs::write(node_folder.join("lock"), b"")?;
            summary.files += 1;
        }
    }
    for node in 0..spec.node_folders {
        let wal = database.join("db/wal").join(node_id(node));
        fs::create_dir_all(&wal)?;
        write_bytes(&wal.join("0000000000000000.wal"), 256, node)?;
        summary.files += 1;
        summary.bytes += 256;
    }
    fs::create_dir_all(database.join("db/marshaller"))?;
    fs::write(
        database.join("db/marshaller/-1234567.classname0"),
        b"Comindware.Model.Record",
    )?;
    summary.files += 1;
    summary.bytes += 23;
    fs::create_dir_all(database.join("Scripts"))?;
    fs::write(database.join("Scripts/README.txt"), b"user scripts\n")?;
    summary.files += 1;
    summary.bytes += 13;
    summary.prunable.sort();
    Ok(summary)
}

/// One log record in the platform's format.
pub fn log_record(time: &str, level: &str, message: &str) -> String {
    format!(
        "2026-11-24 {time},{millis:03} {level} 8c1f0d4e-52aa-4b7e-9d7f-0a1b2c3d4e5f system 127.0.0.1 /upgrade 200 {duration} '{message}'\n",
        millis = time.len() * 37 % 1000,
        duration = message.len() * 3,
    )
}

/// The text of `UpgradeOntology.log` and `upgrade<date>.log` for a state.
pub fn upgrade_logs(state: UpgradeLogState) -> Vec<(String, String)> {
    if state == UpgradeLogState::NotStarted {
        return Vec::new();
    }
    let mut ontology = String::new();
    ontology += &log_record("10:00:01", "INFO", "Upgrade of ontology started");
    ontology += &log_record(
        "10:00:05",
        "INFO",
        "Applying ontology patch 1 of 3: ErrorHandler registry",
    );
    ontology += &log_record(
        "10:00:09",
        "Warn",
        "Attribute 'legacyId' is deprecated, onError callbacks kept",
    );
    ontology += &log_record("10:00:12", "INFO", "Applying ontology patch 3 of 3");
    let mut upgrade = String::new();
    upgrade += &log_record(
        "10:00:15",
        "INFO",
        "Upgrade started: 4.7.2890.0 -> 5.0.1234.0",
    );
    upgrade += &log_record("10:01:40", "INFO", "Migrated 125000 records, 0 errors");
    upgrade += &log_record("10:02:10", "Debug", "Обновление индексов завершено");
    match state {
        UpgradeLogState::Succeeded => {
            ontology += &log_record(
                "10:00:14",
                "INFO",
                "Upgrade of ontology completed successfully",
            );
            upgrade += &log_record("10:03:00", "INFO", "Upgrade completed");
        }
        UpgradeLogState::Failed => {
            ontology += &log_record(
                "10:00:14",
                "INFO",
                "Upgrade of ontology completed successfully",
            );
            upgrade += &log_record(
                "10:02:30",
                "ERROR",
                "Data upgrade step 'MigrateStreams' failed: stream 42 not found",
            );
            upgrade += "   at Comindware.Platform.Upgrade.MigrateStreams()\r\n   at Comindware.Platform.Upgrade.Run()\n";
            upgrade += &log_record("10:02:31", "INFO", "Upgrade stopped");
        }
        UpgradeLogState::InProgress | UpgradeLogState::NotStarted => {}
    }
    vec![
        ("UpgradeOntology.log".to_owned(), ontology),
        ("upgrade2026-11-24.log".to_owned(), upgrade),
    ]
}

/// `logs.config` as both versions ship it.
const LOGS_CONFIG: &str = "<log4net>\n  <root><level value=\"INFO\"/></root>\n</log4net>\n";

pub(crate) fn os_release(family: OsFamily) -> &'static str {
    match family {
        OsFamily::Deb => "PRETTY_NAME=\"Astra Linux\"\nNAME=\"Astra Linux\"\nID=astra\nID_LIKE=debian\nVERSION_ID=1.7_x86-64\n",
        OsFamily::Rpm => "NAME=\"RED OS\"\nVERSION=\"7.3.4 (MUROM)\"\nID=\"redos\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"7.3.4\"\nPRETTY_NAME=\"RED OS MUROM (7.3.4)\"\n",
        OsFamily::Alt => "NAME=\"ALT Server\"\nVERSION=\"10.1\"\nID=altlinux\nVERSION_ID=10.1\nPRETTY_NAME=\"ALT Server 10.1 (Mendelevium)\"\n",
    }
}

/// Numeric ids of the web users in the fixtures' `/etc/passwd` and `/etc/group`.
pub const WEB_USER_IDS: [(&str, u32); 3] = [("www-data", 33), ("nginx", 995), ("_nginx", 996)];

/// Writes `/etc/passwd` and `/etc/group` with root and the three families' web users.
pub(crate) fn write_accounts(root: &Path) -> io::Result<()> {
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/bash\n");
    let mut group = String::from("root:x:0:\n");
    for (name, id) in WEB_USER_IDS {
        passwd.push_str(&format!(
            "{name}:x:{id}:{id}:{name}:/var/www:/usr/sbin/nologin\n"
        ));
        group.push_str(&format!("{name}:x:{id}:\n"));
    }
    write_file(root, "/etc/passwd", &passwd)?;
    write_file(root, "/etc/group", &group)
}

/// The numeric id of a fixture web user (`www-data`, `nginx`, `_nginx`).
///
/// # Panics
/// For any other name.
pub fn web_user_id(name: &str) -> u32 {
    WEB_USER_IDS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, id)| *id)
        .expect("a fixture web user")
}

pub(crate) fn write_file(root: &Path, server_path: &str, content: &str) -> io::Result<()> {
    let path = root.join(server_path.trim_start_matches('/'));
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, content)
}

/// Writes a whole old-version server: os-release, instance config with old
/// directive names and comments, www configs, env file, nginx site, systemd
/// unit, an Ignite database, and upgrade logs.
///
/// # Errors
/// Any I/O error while writing.
pub fn write_server(root: &Path, spec: &ServerSpec) -> io::Result<DatabaseSummary> {
    let i = spec.instance.as_str();
    let owner = spec.family.web_owner();
    let site = spec.family.nginx_site_dir();
    write_file(root, "/etc/os-release", os_release(spec.family))?;
    write_accounts(root)?;
    write_file(
        root,
        &format!("/usr/share/comindware/configs/instance/{i}.yml"),
        &format!(
            "# Comindware Business Application Platform: instance configuration\n\
             # Written by instance_create.sh; values below were tuned by the admin.\n\
             \n\
             # Cluster and node identity (license keys are bound to nodeName)\n\
             instanceName: {i}\n\
             nodeName: cmw-node-01\n\
             version: {version}\n\
             \n\
             # Database\n\
             databaseName: {i}\n\
             databasePath: /var/lib/comindware/{i}/Database\n\
             #db.workDir: /var/lib/comindware/{i}/Database\n\
             \n\
             # Files\n\
             streamsPath: /var/lib/comindware/{i}/Streams\n\
             tempPath: /var/lib/comindware/{i}/Temp\n\
             tempWorkingDir: /var/lib/comindware/{i}/LocalTemp\n\
             backupPath: /var/backups/comindware/{i}\n\
             \n\
             # Journal\n\
             elasticsearchUri: http://localhost:9200\n\
             journal.user: elastic\n\
             journal.password: \"journal-secret\"\n\
             #journal.enabled: false\n\
             \n\
             # Message queue\n\
             mq.server: localhost:9092\n\
             mq.group: {i}\n\
             mq.node: cmw-node-01\n\
             mq.sasl.password: \"kafka-secret\"\n\
             \n\
             services:\n  - web\n  - api\n",
            version = spec.platform_version
        ),
    )?;
    write_file(
        root,
        &format!("/var/www/{i}/adapterhost.yml"),
        &format!(
            "# Adapter host\nclusterName: {i}\nmq.server: localhost:9092\nmq.group: {i}\nmq.node: cmw-node-01\n\
             log.folder: /var/log/comindware/{i}/{log}\n",
            log = spec.log_folder_name
        ),
    )?;
    write_file(
        root,
        &format!("/var/www/{i}/apigateway.yml"),
        &format!("# API gateway\ncluster.name: {i}\nmq.server: localhost:9092\nmq.group: {i}\nmq.node: cmw-node-01\nport: 5000\n"),
    )?;
    write_file(
        root,
        &format!("/var/www/{i}/Ignite.config"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<beans xmlns=\"http://www.springframework.org/schema/beans\">\n  \
         <bean class=\"org.apache.ignite.configuration.DataRegionConfiguration\">\n    \
         <property name=\"maxSize\" value=\"#{8L * 1024 * 1024 * 1024}\"/>\n    \
         <property name=\"checkpointPageBufferSize\" value=\"#{1L * 1024 * 1024 * 1024}\"/>\n  \
         </bean>\n</beans>\n",
    )?;
    write_file(root, &format!("/var/www/{i}/logs.config"), LOGS_CONFIG)?;
    write_file(
        root,
        &format!("/var/www/{i}/Workers.config"),
        "<WorkerEngine>\n  <RebuildThreadWorker>true</RebuildThreadWorker>\n  <EmailListener>false</EmailListener>\n  \
         <NotificationWorker>true</NotificationWorker>\n  <SyncThread>false</SyncThread>\n</WorkerEngine>\n",
    )?;
    write_file(
        root,
        &format!("/var/www/{i}/data/Plugins/Agent/Agent.config"),
        "<Agent>\n  <Enabled>true</Enabled>\n</Agent>\n",
    )?;
    write_file(
        root,
        &format!("/etc/sysconfig/comindware{i}-env"),
        "# JVM settings for Ignite\nJVM_OPTS=\"-Xms512m -Xmx16g -XX:+UseG1GC\"\nexport DOTNET_gcServer=1\n",
    )?;
    write_file(
        root,
        &format!("{site}/comindware{i}"),
        &format!(
            "server {{\n    listen 80;\n    server_name cmw.example.org;\n    client_max_body_size 300m;\n    \
             access_log /var/log/nginx/comindware{i}.access.log;\n\n    location / {{\n        \
             proxy_pass http://127.0.0.1:5000;\n        proxy_read_timeout 600s;\n    }}\n}}\n"
        ),
    )?;
    write_file(
        root,
        &format!("/usr/lib/systemd/system/comindware{i}.service"),
        &format!(
            "[Unit]\nDescription=Comindware Business Application Platform ({i})\nAfter=network.target kafka.service\n\n\
             [Service]\nType=simple\nUser={user}\nGroup={group}\nEnvironmentFile=/etc/sysconfig/comindware{i}-env\n\
             ExecStart=/usr/bin/dotnet /var/www/{i}/Comindware.Platform.Host.dll\nRestart=on-failure\n\n\
             [Install]\nWantedBy=multi-user.target\n",
            user = owner.user,
            group = owner.group
        ),
    )?;
    for unit in ["apigateway", "adapterhost"] {
        write_file(
            root,
            &format!("/usr/lib/systemd/system/{unit}{i}.service"),
            &format!("[Unit]\nDescription={unit} ({i})\n\n[Service]\nUser={}\nExecStart=/usr/bin/dotnet /var/www/{i}/{unit}.dll\n", owner.user),
        )?;
    }
    write_file(
        root,
        &format!("/var/lib/comindware/{i}/Streams/2026/11/3f/stream-0001.bin"),
        "uploaded file\n",
    )?;
    let summary = write_ignite_database(
        &root.join(format!("var/lib/comindware/{i}/Database")),
        &spec.database,
    )?;
    let log_dir = format!("/var/log/comindware/{i}/{}", spec.log_folder_name);
    write_file(
        root,
        &format!("{log_dir}/heartbeat_2026-11-24.log"),
        &log_record("09:59:00", "INFO", "heartbeat"),
    )?;
    for (name, content) in upgrade_logs(spec.upgrade_logs) {
        write_file(root, &format!("{log_dir}/{name}"), &content)?;
    }
    fs::create_dir_all(root.join(log_dir.trim_start_matches('/')))?;
    Ok(summary)
}

/// What [`write_big_log`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BigLogSummary {
    /// Bytes written.
    pub bytes: u64,
    /// Lines written.
    pub lines: u64,
    /// Error records written (level Error).
    pub error_records: u64,
}

/// Writes a large upgrade log of at least `target_bytes`: mostly Info/Debug
/// records, some multi-line stack traces, messages mentioning `ErrorHandler` and
/// `errors` (which must not count), one Error record every `error_every` records
/// (`0` for none), ending with `Upgrade completed`.
///
/// # Errors
/// Any I/O error while writing.
pub fn write_big_log(
    path: &Path,
    target_bytes: u64,
    error_every: u64,
) -> io::Result<BigLogSummary> {
    let mut out = BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
    let mut summary = BigLogSummary::default();
    let mut record = 0u64;
    let mut write = |text: &str, summary: &mut BigLogSummary| -> io::Result<()> {
        out.write_all(text.as_bytes())?;
        summary.bytes += text.len() as u64;
        summary.lines += text.matches('\n').count() as u64;
        Ok(())
    };
    while summary.bytes < target_bytes {
        record += 1;
        let seconds = record % 86_400;
        let time = format!(
            "{:02}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        );
        let text = if error_every > 0 && record.is_multiple_of(error_every) {
            summary.error_records += 1;
            log_record(&time, "ERROR", &format!("Cannot convert record {record}"))
        } else {
            match record % 7 {
                0 => log_record(&time, "DEBUG", &format!("Converted batch {record}: 500 records, 0 errors")),
                1 => log_record(&time, "INFO", &format!("ErrorHandler checked object {record}")),
                2 => format!(
                    "{}   at Comindware.Platform.Upgrade.Step{record}.Run()\n   at Comindware.Platform.Upgrade.Runner.Execute()\n",
                    log_record(&time, "Warn", "Slow conversion, retrying")
                ),
                3 => log_record(&time, "INFO", "Обработка записей продолжается"),
                _ => log_record(&time, "INFO", &format!("Upgrading object {record} of class Record")),
            }
        };
        write(&text, &mut summary)?;
    }
    write(
        &log_record("23:59:59", "INFO", "Upgrade completed"),
        &mut summary,
    )?;
    out.flush()?;
    Ok(summary)
}

/// Writes the config files of a freshly created new-version instance (as
/// `instance_create.sh` leaves them: defaults, heavy comments, services switches
/// commented out, no `Workers.config`). With `tuned`, the files carry an admin's
/// changes instead, to stand for a 5.0 server being upgraded to a newer version.
///
/// # Errors
/// Any I/O error while writing.
pub fn write_new_server(
    root: &Path,
    family: OsFamily,
    instance: &str,
    version: &str,
    tuned: bool,
) -> io::Result<()> {
    let i = instance;
    let site = family.nginx_site_dir();
    let owner = family.web_owner();
    let (node, password, journal, listener, max_size, jvm, listen, server_name, body) = if tuned {
        (
            "cmw-node-01",
            "\"tuned-secret\"",
            "http://journal.internal:9200",
            "email.listenerEnabled: false",
            "16L",
            "-Xms1g -Xmx24g",
            "8080",
            "cmw.example.org",
            "500m",
        )
    } else {
        (
            "cmw-node-02",
            "'changeme'",
            "http://localhost:9200",
            "#email.listenerEnabled: true",
            "4L",
            "-Xms512m -Xmx4g",
            "80",
            "localhost",
            "100m",
        )
    };
    write_file(root, "/etc/os-release", os_release(family))?;
    write_accounts(root)?;
    write_file(
        root,
        &format!("/usr/share/comindware/configs/instance/{i}.yml"),
        &format!(
            "# Comindware Platform {version}: instance configuration\n\
             # Directives commented out keep their default value.\n\
             \n\
             # Cluster and node identity\n\
             clusterName: {i}\n\
             nodeName: {node}\n\
             version: {version}\n\
             \n\
             # Database: the data is bound to db.name\n\
             db.name: {i}\n\
             db.workDir: /var/lib/comindware/{i}/Database\n\
             \n\
             # Files\n\
             #userStorage.localDisk.path: /var/lib/comindware/{i}/Streams\n\
             tempStorage.localDisk.path: /var/lib/comindware/{i}/Temp\n\
             \n\
             # Journal\n\
             journal.server: {journal}\n\
             journal.user: elastic\n\
             journal.password: {password}\n\
             \n\
             # Message queue\n\
             mq.server: localhost:9092\n\
             mq.group: {i}\n\
             mq.node: {node}\n\
             \n\
             # Services (all enabled by default)\n\
             {listener}\n\
             #notifications.enabled: true\n\
             #search.rebuildingEnabled: true\n\
             \n\
             services:\n  - web\n"
        ),
    )?;
    write_file(
        root,
        &format!("/var/www/{i}/adapterhost.yml"),
        &format!("# Adapter host {version}\nclusterName: {i}\nmq.server: localhost:9092\nmq.group: {i}\nmq.node: {node}\nlog.folder: /var/log/comindware/{i}/Logs\n"),
    )?;
    write_file(
        root,
        &format!("/var/www/{i}/apigateway.yml"),
        &format!("# API gateway {version}\ncluster.name: {i}\nmq.server: localhost:9092\nmq.group: {i}\nmq.node: {node}\nport: 5000\n"),
    )?;
    write_file(
        root,
        &format!("/var/www/{i}/Ignite.config"),
        &format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- Ignite settings for {version} -->\n<beans xmlns=\"http://www.springframework.org/schema/beans\">\n  \
             <bean class=\"org.apache.ignite.configuration.DataRegionConfiguration\">\n    \
             <property name=\"maxSize\" value=\"#{{{max_size} * 1024 * 1024 * 1024}}\"/>\n    \
             <property name=\"checkpointPageBufferSize\" value=\"#{{1L * 1024 * 1024 * 1024}}\"/>\n    \
             <property name=\"persistenceEnabled\" value=\"true\"/>\n  \
             </bean>\n</beans>\n"
        ),
    )?;
    write_file(root, &format!("/var/www/{i}/logs.config"), LOGS_CONFIG)?;
    write_file(
        root,
        &format!("/var/www/{i}/data/Plugins/Agent/Agent.config"),
        &format!("<Agent>\n  <Enabled>true</Enabled>\n  <Version>{version}</Version>\n</Agent>\n"),
    )?;
    write_file(
        root,
        &format!("/etc/sysconfig/comindware{i}-env"),
        &format!("# JVM settings for Ignite ({version})\nJVM_OPTS=\"{jvm} -XX:+UseG1GC\"\n#export DOTNET_gcServer=0\n"),
    )?;
    write_file(
        root,
        &format!("{site}/comindware{i}"),
        &format!(
            "# Comindware Platform {version}\nserver {{\n    listen {listen};\n    server_name {server_name};\n    client_max_body_size {body};\n\n    \
             location / {{\n        proxy_pass http://127.0.0.1:5000;\n        proxy_set_header Host $host;\n    }}\n\n    \
             location /api/ {{\n        proxy_pass http://127.0.0.1:5001;\n    }}\n}}\n"
        ),
    )?;
    write_file(
        root,
        &format!("/usr/lib/systemd/system/comindware{i}.service"),
        &format!("[Unit]\nDescription=Comindware Platform ({i})\n\n[Service]\nUser={}\nGroup={}\nExecStart=/usr/bin/dotnet /var/www/{i}/Comindware.Platform.Host.dll\n", owner.user, owner.group),
    )?;
    fs::create_dir_all(root.join(format!("var/lib/comindware/{i}/Database")))?;
    fs::create_dir_all(root.join(format!("var/lib/comindware/{i}/Temp")))?;
    Ok(())
}
