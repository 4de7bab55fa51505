//! Where every part of an instance lives on a server.
//!
//! [`InstanceLayout::resolve`] is a pure function from what was read off the
//! server ([`LayoutSources`]) to paths; [`read_layout_sources`] is the one
//! reading of those sources, through any [`ServerRead`] (this machine's disk
//! under a root, or a server an executor reaches). Data paths come from the instance
//! config when it sets them (under current or old directive names), because an
//! admin may have moved the database to another disk; the defaults are the
//! platform's. Every path is placed under the target root and never leaves it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::directives::Directives;
use crate::error::{Error, Result};
use crate::instance::InstanceName;
use crate::os::{OsFamily, Owner};
use crate::paths::{is_system_folder, join_default, under_root};
use crate::server::{NodeKind, ServerRead};
use crate::systemd::service_owner;

/// Config files in an instance's www folder that every version has.
pub const WWW_CONFIG_FILES: &[&str] = &[
    "adapterhost.yml",
    "apigateway.yml",
    "Ignite.config",
    "logs.config",
];

/// The log folder names the platform has used, newest first.
pub const LOG_FOLDER_NAMES: &[&str] = &["Logs", "Log"];

/// Where the folder holding the systemd units shipped by the platform is.
pub const SYSTEMD_UNIT_DIR: &str = "/usr/lib/systemd/system";

/// Where admins' unit overrides and drop-ins live; they win over [`SYSTEMD_UNIT_DIR`].
pub const SYSTEMD_OVERRIDE_DIR: &str = "/etc/systemd/system";

/// A path together with where it came from, so an admin can see why it is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutPath {
    /// The path under the target root.
    pub path: PathBuf,
    /// `default`, `existing folder`, or `<directive> in <file>`.
    pub origin: String,
}

/// A systemd unit of the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitFile {
    /// The unit name without `.service`, e.g. `comindwareprod`.
    pub name: String,
    /// The unit file under the target root.
    pub path: PathBuf,
}

/// What was read off a server to compute a layout. Everything is optional:
/// a new server has no instance yet, an old one may lack some files.
#[derive(Debug, Clone, Default)]
pub struct LayoutSources {
    /// Text of `/usr/share/comindware/configs/instance/<i>.yml`.
    pub instance_config: Option<String>,
    /// Text of `/var/www/<i>/adapterhost.yml`.
    pub adapterhost_config: Option<String>,
    /// Text of `comindware<i>.service` followed by its drop-ins, in systemd's order.
    pub service_units: Vec<String>,
    /// Which of [`LOG_FOLDER_NAMES`] exist in `/var/log/comindware/<i>/`.
    pub existing_log_folders: Vec<String>,
    /// Names of the files in `/var/www/<i>/`.
    pub www_file_names: Vec<String>,
    /// Where `/var/lib/comindware/<i>` points, when it is a symlink.
    pub data_root_link: Option<PathBuf>,
}

/// Every path of one instance on one server, under a target root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceLayout {
    /// The target root (`/` on a live server).
    pub root: PathBuf,
    /// The instance name.
    pub instance: InstanceName,
    /// The server's OS family.
    pub family: OsFamily,
    /// The instance config, `/usr/share/comindware/configs/instance/<i>.yml`.
    pub instance_config: PathBuf,
    /// `/var/lib/comindware/<i>`.
    pub data_root: PathBuf,
    /// Where `data_root` points when it is a symlink (often another disk).
    pub data_root_link: Option<PathBuf>,
    /// The database folder (`db.workDir`).
    pub database: LayoutPath,
    /// Uploaded files (`userStorage.localDisk.path`).
    pub streams: LayoutPath,
    /// Temporary storage (`tempStorage.localDisk.path`).
    pub temp: LayoutPath,
    /// Local working folder (`tempWorkingDir`).
    pub local_temp: LayoutPath,
    /// The platform's own backup folder (`backup.defaultFolder`), when set.
    pub backup_folder: Option<LayoutPath>,
    /// Binaries and service configs, `/var/www/<i>`.
    pub www: PathBuf,
    /// The config files in the www folder: the ones every version has, plus
    /// every `*.config`, `*.yml`, `*.json` found there (`Workers.config` on old versions).
    pub www_config_files: Vec<PathBuf>,
    /// `/var/www/<i>/data/Plugins/Agent/Agent.config`.
    pub agent_config: PathBuf,
    /// The family's nginx site file.
    pub nginx_site: PathBuf,
    /// `/etc/sysconfig/comindware<i>-env`.
    pub env_file: PathBuf,
    /// The log folder.
    pub log_dir: LayoutPath,
    /// The instance's systemd units.
    pub units: Vec<UnitFile>,
    /// Installed platform versions, `/var/www/.cmw_version`.
    pub versions_dir: PathBuf,
    /// Who owns the instance's data.
    pub data_owner: Owner,
    /// `User=/Group= of comindware<i>.service` or `default for <family>`.
    pub data_owner_origin: String,
}

/// The instance config, as a server path.
pub(crate) fn instance_config_path(instance: &InstanceName) -> PathBuf {
    PathBuf::from(format!("{INSTANCE_CONFIG_DIR}/{instance}.yml"))
}

/// The folder of the instance configs, one `<instance>.yml` each.
pub const INSTANCE_CONFIG_DIR: &str = "/usr/share/comindware/configs/instance";

/// An instance configured on a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfiguredInstance {
    /// Its name (the config file's name).
    pub name: String,
    /// The platform version its config names (`version:`), when it does.
    pub version: Option<String>,
}

/// The `version:` of an instance config's text.
pub fn config_version(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix("version:")?.trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// The instances configured on the server `read` reads, sorted by name: the
/// `<name>.yml` files of [`INSTANCE_CONFIG_DIR`] whose name is a valid
/// instance name. None (or no folder) is an empty list.
///
/// # Errors
/// What reading the folder or a config reports.
pub fn configured_instances(read: &dyn ServerRead) -> Result<Vec<ConfiguredInstance>> {
    if !read.exists(INSTANCE_CONFIG_DIR)? {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for name in read.names_of_kind(INSTANCE_CONFIG_DIR, NodeKind::File)? {
        let Some(instance) = name
            .strip_suffix(".yml")
            .and_then(|stem| InstanceName::new(stem).ok())
        else {
            continue;
        };
        let version = read
            .read_file(&instance_config_path(&instance).to_string_lossy())?
            .and_then(|bytes| config_version(&String::from_utf8_lossy(&bytes)));
        found.push(ConfiguredInstance {
            name: instance.to_string(),
            version,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Refuses an instance the server does not have, naming those it has.
///
/// # Errors
/// [`Error::CheckFailed`] listing the configured instances; what reading reports.
pub fn require_instance(read: &dyn ServerRead, instance: &InstanceName) -> Result<()> {
    if read.exists(&instance_config_path(instance).to_string_lossy())? {
        return Ok(());
    }
    let known: Vec<String> = configured_instances(read)?
        .into_iter()
        .map(|found| found.name)
        .collect();
    Err(Error::CheckFailed {
        what: format!("finding instance {instance}"),
        details: format!(
            "{} is missing; {}",
            instance_config_path(instance).display(),
            if known.is_empty() {
                format!("no instance is configured in {INSTANCE_CONFIG_DIR}")
            } else {
                format!("the instances here are: {}", known.join(", "))
            }
        ),
    })
}

fn data_root_path(instance: &InstanceName) -> PathBuf {
    PathBuf::from(format!("/var/lib/comindware/{instance}"))
}

/// The binaries and service configs folder, as a server path.
pub(crate) fn www_path(instance: &InstanceName) -> PathBuf {
    PathBuf::from(format!("/var/www/{instance}"))
}

/// The environment file, as a server path.
pub(crate) fn env_file_path(instance: &InstanceName) -> PathBuf {
    PathBuf::from(format!("/etc/sysconfig/comindware{instance}-env"))
}

fn log_parent_path(instance: &InstanceName) -> PathBuf {
    PathBuf::from(format!("/var/log/comindware/{instance}"))
}

/// The instance's unit names: the platform service, the API gateway and the adapter host.
pub fn unit_names(instance: &InstanceName) -> [String; 3] {
    [
        format!("comindware{instance}"),
        format!("apigateway{instance}"),
        format!("adapterhost{instance}"),
    ]
}

/// The configured folders whose content the tool moves, replaces or gives to
/// the data owner (a restore, a chown): these may not be system folders.
pub(crate) const CHANGED_BY_THE_TOOL: &[&str] = &["db.workDir", "userStorage.localDisk.path"];

/// [`Error::SystemFolder`] when `server_path` (already known to stay under
/// the root) is a system folder or directly inside one.
pub(crate) fn refuse_system_folder(server_path: &str, origin: &str) -> Result<()> {
    let normalized = under_root(Path::new("/"), server_path, origin)?;
    if is_system_folder(&normalized) {
        return Err(Error::SystemFolder {
            path: server_path.to_owned(),
            origin: origin.to_owned(),
        });
    }
    Ok(())
}

/// The log folder: `log.folder` from adapterhost.yml, else whichever of `Logs/`
/// or `Log/` exists (current docs' name first), else `Logs/`.
///
/// # Errors
/// [`Error::ConfigParse`] when adapterhost.yml is not YAML; [`Error::PathOutsideRoot`]
/// when `log.folder` is not an absolute path inside the root.
pub fn resolve_log_dir(
    root: &Path,
    instance: &InstanceName,
    adapterhost_config: Option<&str>,
    existing_log_folders: &[String],
) -> Result<LayoutPath> {
    let adapterhost_path = www_path(instance).join("adapterhost.yml");
    if let Some(text) = adapterhost_config {
        let directives = Directives::parse(text, &adapterhost_path)?;
        if let Some(folder) = directives.get("log.folder") {
            let origin = format!("log.folder in {}", adapterhost_path.display());
            let path = under_root(root, &folder, &origin)?;
            // A transfer moves the log folder's content aside.
            refuse_system_folder(&folder, &origin)?;
            return Ok(LayoutPath { path, origin });
        }
    }
    let parent = join_default(root, &log_parent_path(instance));
    if let Some(name) = LOG_FOLDER_NAMES.iter().find(|name| {
        existing_log_folders
            .iter()
            .any(|existing| existing == *name)
    }) {
        return Ok(LayoutPath {
            path: parent.join(name),
            origin: "existing folder".to_owned(),
        });
    }
    Ok(LayoutPath {
        path: parent.join(LOG_FOLDER_NAMES[0]),
        origin: "default".to_owned(),
    })
}

/// Reads what [`resolve_log_dir`] needs through `reader` and resolves the log
/// folder, its path placed under `root`.
///
/// # Errors
/// As [`resolve_log_dir`], and what the reader reports for an unreadable adapterhost.yml.
pub fn read_log_dir(
    reader: &dyn ServerRead,
    root: &Path,
    instance: &InstanceName,
) -> Result<LayoutPath> {
    let adapterhost =
        reader.read_text(&format!("{}/adapterhost.yml", www_path(instance).display()))?;
    let existing = existing_log_folders(reader, instance)?;
    resolve_log_dir(root, instance, adapterhost.as_deref(), &existing)
}

/// Which of [`LOG_FOLDER_NAMES`] are folders (links followed) on the server.
fn existing_log_folders(reader: &dyn ServerRead, instance: &InstanceName) -> Result<Vec<String>> {
    let folders = reader.names_of_kind(
        &log_parent_path(instance).to_string_lossy(),
        NodeKind::Folder,
    )?;
    Ok(LOG_FOLDER_NAMES
        .iter()
        .filter(|name| folders.iter().any(|found| found == *name))
        .map(|name| (*name).to_owned())
        .collect())
}

impl InstanceLayout {
    /// Computes the layout from what was read off the server. Pure: reads nothing.
    ///
    /// # Errors
    /// [`Error::ConfigParse`] for a config that is not YAML, [`Error::PathOutsideRoot`]
    /// for a configured path that is relative or climbs out of the root.
    pub fn resolve(
        root: &Path,
        instance: &InstanceName,
        family: OsFamily,
        sources: &LayoutSources,
    ) -> Result<Self> {
        let config_path = instance_config_path(instance);
        let directives = match &sources.instance_config {
            Some(text) => Directives::parse(text, &config_path)?,
            None => Directives::default(),
        };
        let data_root = data_root_path(instance);
        let configured = |current: &str, default: Option<PathBuf>| -> Result<Option<LayoutPath>> {
            if let Some((value, found_as)) = directives.get_current_or_renamed(current) {
                let origin = format!("{found_as} in {}", config_path.display());
                let path = under_root(root, &value, &origin)?;
                if CHANGED_BY_THE_TOOL.contains(&current) {
                    refuse_system_folder(&value, &origin)?;
                }
                return Ok(Some(LayoutPath { path, origin }));
            }
            Ok(default.map(|default| LayoutPath {
                path: join_default(root, &default),
                origin: "default".to_owned(),
            }))
        };
        let always = |path: Option<LayoutPath>| path.expect("a default was given");

        let www = www_path(instance);
        let mut www_config_files: Vec<PathBuf> = WWW_CONFIG_FILES
            .iter()
            .map(|name| join_default(root, &www.join(name)))
            .collect();
        for name in &sources.www_file_names {
            let is_config = [".config", ".yml", ".json"]
                .iter()
                .any(|extension| name.ends_with(extension));
            // A file name from a listing is one component; anything else is not ours to join.
            let is_plain_name =
                !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
            if is_config && is_plain_name {
                let path = join_default(root, &www.join(name));
                if !www_config_files.contains(&path) {
                    www_config_files.push(path);
                }
            }
        }
        www_config_files.sort();

        let (data_owner, data_owner_origin) = match service_owner(&sources.service_units) {
            Some(owner) => (
                owner,
                format!("User=/Group= of comindware{instance}.service"),
            ),
            None => (
                family.web_owner(),
                format!("default for the {family} family"),
            ),
        };

        // A relative link target is relative to the link's own folder, as the kernel reads it.
        let data_root_link = sources
            .data_root_link
            .as_ref()
            .map(|link| {
                let origin = format!("symlink {}", data_root.display());
                let server_target = data_root.parent().unwrap_or(Path::new("/")).join(link);
                let server_target = server_target.to_string_lossy();
                let placed = under_root(root, &server_target, &origin)?;
                refuse_system_folder(&server_target, &origin)?;
                Ok(placed)
            })
            .transpose()?;

        Ok(InstanceLayout {
            root: root.to_path_buf(),
            instance: instance.clone(),
            family,
            instance_config: join_default(root, &config_path),
            database: always(configured("db.workDir", Some(data_root.join("Database")))?),
            streams: always(configured(
                "userStorage.localDisk.path",
                Some(data_root.join("Streams")),
            )?),
            temp: always(configured(
                "tempStorage.localDisk.path",
                Some(data_root.join("Temp")),
            )?),
            local_temp: always(configured(
                "tempWorkingDir",
                Some(data_root.join("LocalTemp")),
            )?),
            backup_folder: configured("backup.defaultFolder", None)?,
            data_root: join_default(root, &data_root),
            data_root_link,
            agent_config: join_default(root, &www.join("data/Plugins/Agent/Agent.config")),
            www: join_default(root, &www),
            www_config_files,
            nginx_site: join_default(root, &family.nginx_site_path(instance)),
            env_file: join_default(root, &env_file_path(instance)),
            log_dir: resolve_log_dir(
                root,
                instance,
                sources.adapterhost_config.as_deref(),
                &sources.existing_log_folders,
            )?,
            units: unit_names(instance)
                .into_iter()
                .map(|name| UnitFile {
                    path: join_default(
                        root,
                        &Path::new(SYSTEMD_UNIT_DIR).join(format!("{name}.service")),
                    ),
                    name,
                })
                .collect(),
            versions_dir: join_default(root, Path::new("/var/www/.cmw_version")),
            data_owner,
            data_owner_origin,
        })
    }

    /// Reads the sources through `reader` and computes the layout, its paths
    /// placed under `root` (the disk's root for a [`crate::disk::Disk`], `/`
    /// for server paths through an executor).
    ///
    /// Missing files are normal (a new server has no instance config yet); a file
    /// that exists but cannot be read is an error.
    ///
    /// # Errors
    /// What the reader reports, and whatever [`InstanceLayout::resolve`] reports.
    pub fn read(
        reader: &dyn ServerRead,
        root: &Path,
        instance: &InstanceName,
        family: OsFamily,
    ) -> Result<Self> {
        let sources = read_layout_sources(reader, instance)?;
        InstanceLayout::resolve(root, instance, family, &sources)
    }
}

/// The one reading of everything [`InstanceLayout::resolve`] looks at, through
/// any way of reading a server.
///
/// # Errors
/// What the reader reports for a file or folder that exists but cannot be read.
pub fn read_layout_sources(
    reader: &dyn ServerRead,
    instance: &InstanceName,
) -> Result<LayoutSources> {
    let www = www_path(instance).to_string_lossy().into_owned();
    let service_name = format!("comindware{instance}.service");
    let mut service_units = Vec::new();
    let unit_text = match reader.read_text(&format!("{SYSTEMD_OVERRIDE_DIR}/{service_name}"))? {
        Some(text) => Some(text),
        None => reader.read_text(&format!("{SYSTEMD_UNIT_DIR}/{service_name}"))?,
    };
    service_units.extend(unit_text);
    // Drop-ins override User=/Group=, so they decide who owns the data.
    let drop_in_dir = format!("{SYSTEMD_OVERRIDE_DIR}/{service_name}.d");
    let mut drop_ins = reader.names_of_kind(&drop_in_dir, NodeKind::File)?;
    drop_ins.retain(|name| name.ends_with(".conf"));
    for name in drop_ins {
        service_units.extend(reader.read_text(&format!("{drop_in_dir}/{name}"))?);
    }
    Ok(LayoutSources {
        instance_config: reader.read_text(&instance_config_path(instance).to_string_lossy())?,
        adapterhost_config: reader.read_text(&format!("{www}/adapterhost.yml"))?,
        service_units,
        existing_log_folders: existing_log_folders(reader, instance)?,
        www_file_names: reader.names_of_kind(&www, NodeKind::File)?,
        data_root_link: reader
            .read_link(&data_root_path(instance).to_string_lossy())?
            .map(PathBuf::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::contract;
    use crate::Error;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    fn prod() -> InstanceName {
        InstanceName::new("prod").unwrap()
    }

    #[test]
    fn versions_are_read_from_instance_configs() {
        assert_eq!(
            config_version("# c\nclusterName: prod\nversion: \"4.7.2890.0\"\n").as_deref(),
            Some("4.7.2890.0")
        );
        assert_eq!(config_version("#version: 1\n"), None);
    }

    #[test]
    fn instances_are_listed_and_a_missing_one_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let disk = crate::disk::Disk::new(dir.path());
        assert_eq!(configured_instances(&disk).unwrap(), []);
        let error = require_instance(&disk, &prod()).unwrap_err();
        assert!(
            error.to_string().contains("no instance is configured"),
            "{error}"
        );
        let configs = dir.path().join("usr/share/comindware/configs/instance");
        std::fs::create_dir_all(&configs).unwrap();
        std::fs::write(configs.join("test.yml"), "version: 5.0.1.0\n").unwrap();
        std::fs::write(configs.join("prod.yml"), "clusterName: prod\n").unwrap();
        std::fs::write(configs.join("notes.txt"), "").unwrap();
        std::fs::write(configs.join("bad name.yml"), "").unwrap();
        assert_eq!(
            configured_instances(&disk).unwrap(),
            [
                ConfiguredInstance {
                    name: "prod".into(),
                    version: None
                },
                ConfiguredInstance {
                    name: "test".into(),
                    version: Some("5.0.1.0".into())
                }
            ]
        );
        assert!(require_instance(&disk, &prod()).is_ok());
        let error = require_instance(&disk, &InstanceName::new("prd").unwrap()).unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::CheckFailed);
        assert!(
            error
                .to_string()
                .contains("the instances here are: prod, test"),
            "{error}"
        );
    }

    #[test]
    fn the_reading_sees_drop_ins_links_and_only_files_in_www() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "usr/lib/systemd/system/comindwareprod.service",
            "[Service]\nUser=www-data\n",
        );
        write(
            "etc/systemd/system/comindwareprod.service.d/owner.conf",
            "[Service]\nUser=cmw\nGroup=cmw\n",
        );
        write("var/www/prod/adapterhost.yml", "clusterName: prod\n");
        std::fs::create_dir_all(dir.path().join("var/www/prod/data.yml")).unwrap();
        std::fs::create_dir_all(dir.path().join("var/log/comindware/prod/Log")).unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/comindware")).unwrap();
        std::os::unix::fs::symlink("/data/prod", dir.path().join("var/lib/comindware/prod"))
            .unwrap();
        let disk = crate::disk::Disk::new(dir.path());
        let sources = read_layout_sources(&disk, &prod()).unwrap();
        assert_eq!(sources.service_units.len(), 2);
        assert_eq!(sources.existing_log_folders, ["Log"]);
        assert_eq!(
            sources.www_file_names,
            ["adapterhost.yml"],
            "a folder named like a config file is not one"
        );
        assert_eq!(sources.data_root_link, Some(PathBuf::from("/data/prod")));
        let layout = InstanceLayout::read(&disk, Path::new("/"), &prod(), OsFamily::Deb).unwrap();
        assert_eq!(layout.data_owner.to_string(), "cmw:cmw");
        assert_eq!(layout.data_root_link, Some(PathBuf::from("/data/prod")));
    }

    #[test]
    fn folders_the_tool_changes_may_not_be_system_folders() {
        let resolve = |config: &str, adapterhost: Option<&str>| {
            InstanceLayout::resolve(
                Path::new("/"),
                &prod(),
                OsFamily::Deb,
                &LayoutSources {
                    instance_config: Some(config.to_owned()),
                    adapterhost_config: adapterhost.map(str::to_owned),
                    ..LayoutSources::default()
                },
            )
        };
        for config in [
            "db.workDir: /etc\n",
            "databasePath: /var/lib\n",
            "userStorage.localDisk.path: /home\n",
            "streamsPath: /data\n",
        ] {
            let error = resolve(config, None).unwrap_err();
            assert!(
                matches!(error, Error::SystemFolder { .. }),
                "{config}: {error}"
            );
        }
        let error = resolve("", Some("log.folder: /var/log\n")).unwrap_err();
        assert!(matches!(error, Error::SystemFolder { .. }), "{error}");
        // Folders the tool only reads or creates may be anywhere inside the root.
        let layout = resolve(
            "db.workDir: /data/prod/Database\nbackup.defaultFolder: /backup\ntempWorkingDir: /tmp\n",
            None,
        )
        .unwrap();
        assert_eq!(layout.database.path, Path::new("/data/prod/Database"));
    }

    #[test]
    fn defaults_follow_the_platform_docs() {
        let layout = InstanceLayout::resolve(
            Path::new("/"),
            &prod(),
            OsFamily::Deb,
            &LayoutSources::default(),
        )
        .unwrap();
        assert_eq!(
            layout.instance_config,
            Path::new("/usr/share/comindware/configs/instance/prod.yml")
        );
        assert_eq!(
            layout.database.path,
            Path::new("/var/lib/comindware/prod/Database")
        );
        assert_eq!(layout.database.origin, "default");
        assert_eq!(
            layout.streams.path,
            Path::new("/var/lib/comindware/prod/Streams")
        );
        assert_eq!(layout.temp.path, Path::new("/var/lib/comindware/prod/Temp"));
        assert_eq!(
            layout.local_temp.path,
            Path::new("/var/lib/comindware/prod/LocalTemp")
        );
        assert_eq!(layout.backup_folder, None);
        assert_eq!(
            layout.agent_config,
            Path::new("/var/www/prod/data/Plugins/Agent/Agent.config")
        );
        assert_eq!(
            layout.nginx_site,
            Path::new("/etc/nginx/sites-available/comindwareprod")
        );
        assert_eq!(
            layout.env_file,
            Path::new("/etc/sysconfig/comindwareprod-env")
        );
        assert_eq!(
            layout.log_dir.path,
            Path::new("/var/log/comindware/prod/Logs")
        );
        assert_eq!(
            layout
                .units
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>(),
            ["comindwareprod", "apigatewayprod", "adapterhostprod"]
        );
        assert_eq!(
            layout.units[0].path,
            Path::new("/usr/lib/systemd/system/comindwareprod.service")
        );
        assert_eq!(layout.versions_dir, Path::new("/var/www/.cmw_version"));
        assert_eq!(layout.data_owner, Owner::new("www-data", "www-data"));
        assert_eq!(layout.www_config_files.len(), WWW_CONFIG_FILES.len());
    }

    #[test]
    fn configured_paths_win_and_old_names_count() {
        let sources = LayoutSources {
            instance_config: Some(
                "# moved to the big disk\ndb.workDir: /data/cmw/db\n#userStorage.localDisk.path: /nope\n\
                 streamsPath: /data/cmw/streams\nbackup.defaultFolder: /backup\ntempWorkingDir: /tmp/cmw\n"
                    .to_owned(),
            ),
            ..LayoutSources::default()
        };
        let layout =
            InstanceLayout::resolve(Path::new("/mnt/old"), &prod(), OsFamily::Rpm, &sources)
                .unwrap();
        assert_eq!(layout.database.path, Path::new("/mnt/old/data/cmw/db"));
        assert!(layout.database.origin.starts_with("db.workDir in "));
        assert_eq!(layout.streams.path, Path::new("/mnt/old/data/cmw/streams"));
        assert!(layout.streams.origin.starts_with("streamsPath in "));
        assert_eq!(
            layout.backup_folder.unwrap().path,
            Path::new("/mnt/old/backup")
        );
        assert_eq!(layout.local_temp.path, Path::new("/mnt/old/tmp/cmw"));
        assert_eq!(
            layout.nginx_site,
            Path::new("/mnt/old/etc/nginx/conf.d/comindwareprod")
        );
        assert_eq!(layout.data_owner, Owner::new("nginx", "nginx"));
    }

    #[test]
    fn the_unit_decides_the_owner() {
        let sources = LayoutSources {
            service_units: vec!["[Service]\nUser=cbap\nGroup=cbap\n".to_owned()],
            ..LayoutSources::default()
        };
        let layout =
            InstanceLayout::resolve(Path::new("/"), &prod(), OsFamily::Alt, &sources).unwrap();
        assert_eq!(layout.data_owner, Owner::new("cbap", "cbap"));
        assert!(layout.data_owner_origin.contains("comindwareprod.service"));
    }

    #[test]
    fn log_folder_comes_from_adapterhost_then_existing_folders() {
        let root = Path::new("/r");
        let from_config = resolve_log_dir(
            root,
            &prod(),
            Some("log.folder: /srv/logs/prod\n"),
            &["Log".to_owned()],
        )
        .unwrap();
        assert_eq!(from_config.path, Path::new("/r/srv/logs/prod"));
        let old = resolve_log_dir(root, &prod(), Some("# none\n"), &["Log".to_owned()]).unwrap();
        assert_eq!(old.path, Path::new("/r/var/log/comindware/prod/Log"));
        assert_eq!(old.origin, "existing folder");
        let both =
            resolve_log_dir(root, &prod(), None, &["Log".to_owned(), "Logs".to_owned()]).unwrap();
        assert_eq!(both.path, Path::new("/r/var/log/comindware/prod/Logs"));
    }

    #[test]
    fn www_listing_adds_config_files_and_ignores_the_rest() {
        let sources = LayoutSources {
            www_file_names: vec![
                "Workers.config".into(),
                "appsettings.json".into(),
                "apigateway.yml".into(),
                "Comindware.dll".into(),
                "../escape.yml".into(),
            ],
            ..LayoutSources::default()
        };
        let layout =
            InstanceLayout::resolve(Path::new("/"), &prod(), OsFamily::Deb, &sources).unwrap();
        let names: Vec<_> = layout
            .www_config_files
            .iter()
            .map(|path| path.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Ignite.config",
                "Workers.config",
                "adapterhost.yml",
                "apigateway.yml",
                "appsettings.json",
                "logs.config"
            ]
        );
    }

    #[test]
    fn escaping_config_values_are_refused() {
        let sources = LayoutSources {
            instance_config: Some("db.workDir: /var/../../etc\n".to_owned()),
            ..LayoutSources::default()
        };
        let error =
            InstanceLayout::resolve(Path::new("/r"), &prod(), OsFamily::Deb, &sources).unwrap_err();
        assert!(matches!(error, Error::PathOutsideRoot { .. }));
        assert!(error.to_string().contains("db.workDir"), "{error}");
    }

    fn all_paths(layout: &InstanceLayout) -> Vec<&Path> {
        let mut paths = vec![
            layout.instance_config.as_path(),
            &layout.data_root,
            &layout.database.path,
            &layout.streams.path,
            &layout.temp.path,
            &layout.local_temp.path,
            &layout.www,
            &layout.agent_config,
            &layout.nginx_site,
            &layout.env_file,
            &layout.log_dir.path,
            &layout.versions_dir,
        ];
        paths.extend(layout.backup_folder.iter().map(|p| p.path.as_path()));
        paths.extend(layout.data_root_link.iter().map(PathBuf::as_path));
        paths.extend(layout.www_config_files.iter().map(PathBuf::as_path));
        paths.extend(layout.units.iter().map(|u| u.path.as_path()));
        paths
    }

    /// The directives a config may set a data path with: current name, old
    /// names (as the platform docs list them), and the folder under the data
    /// root used when none is set.
    const CONFIGURED: [(&str, &[&str], Option<&str>); 5] = [
        ("db.workDir", &["databasePath"], Some("Database")),
        (
            "userStorage.localDisk.path",
            &["streamsPath"],
            Some("Streams"),
        ),
        ("tempStorage.localDisk.path", &["tempPath"], Some("Temp")),
        ("tempWorkingDir", &[], Some("LocalTemp")),
        (
            "backup.defaultFolder",
            &[
                "backup.config.default.repository.localDisk.path",
                "backupPath",
            ],
            None,
        ),
    ];

    fn path_part() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => "[a-z][a-z0-9_-]{0,5}",
            1 => Just("..".to_owned()),
            1 => Just(".".to_owned()),
        ]
    }

    /// A path as an admin writes one in a config: mostly absolute, some with
    /// `.` or `..` (inside or climbing out), a few relative or blank (unset).
    fn configured_path() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::collection::vec(path_part(), 0..6)
                .prop_map(|parts| format!("/{}", parts.join("/"))),
            // Where admins put data: a folder of its own on a data disk.
            12 => proptest::collection::vec(path_part(), 0..3)
                .prop_map(|parts| format!("/data/cmw/{}", parts.join("/"))),
            1 => "[a-z]{1,6}(/[a-z]{1,6}){0,2}",
            1 => prop_oneof![Just(String::new()), Just("  ".to_owned())],
        ]
    }

    /// One directive's lines in the config as `(name, value)`, the current name
    /// first; an empty name stands for the current one.
    type Lines = Vec<(String, String)>;

    fn setting(old_names: &'static [&'static str]) -> BoxedStrategy<Lines> {
        let current = || configured_path().prop_map(|value| (String::new(), value));
        if old_names.is_empty() {
            return prop_oneof![
                4 => Just(Vec::new()),
                5 => current().prop_map(|line| vec![line]),
            ]
            .boxed();
        }
        let old = || {
            (proptest::sample::select(old_names), configured_path())
                .prop_map(|(name, value)| (name.to_owned(), value))
        };
        prop_oneof![
            4 => Just(Vec::new()),
            5 => current().prop_map(|line| vec![line]),
            2 => old().prop_map(|line| vec![line]),
            1 => (current(), old()).prop_map(|(current, old)| vec![current, old]),
        ]
        .boxed()
    }

    /// What a data-root link may hold: an absolute target on another disk, or a
    /// relative one, read from `/var/lib/comindware`, that climbs out of `/`
    /// once it goes up more than three levels.
    fn link_target() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => proptest::collection::vec(path_part(), 0..4)
                .prop_map(|parts| format!("/mnt/disk2/cmw/{}", parts.join("/"))),
            2 => (0..6usize, proptest::collection::vec(path_part(), 1..3))
                .prop_map(|(up, parts)| format!("{}{}", "../".repeat(up), parts.join("/"))),
        ]
    }

    #[derive(Debug, Clone)]
    struct Case {
        root: String,
        instance: InstanceName,
        family: OsFamily,
        /// The lines of each entry of [`CONFIGURED`].
        configured: Vec<Lines>,
        /// `None`: no adapterhost.yml; `Some(None)`: one without `log.folder`.
        log_folder: Option<Option<String>>,
        existing_log_folders: Vec<String>,
        data_root_link: Option<String>,
        www_file_names: Vec<String>,
    }

    fn case() -> impl Strategy<Value = Case> {
        let configured = (
            setting(CONFIGURED[0].1),
            setting(CONFIGURED[1].1),
            setting(CONFIGURED[2].1),
            setting(CONFIGURED[3].1),
            setting(CONFIGURED[4].1),
        )
            .prop_map(|(a, b, c, d, e)| vec![a, b, c, d, e]);
        let www_name = prop_oneof!["[A-Za-z]{1,8}\\.(config|yml|json|dll)", "[a-zA-Z./]{1,12}"];
        (
            prop_oneof![Just("/"), Just("/target/root"), Just("/mnt/old copy")],
            "[a-zA-Z0-9_][a-zA-Z0-9_-]{0,20}",
            0..OsFamily::ALL.len(),
            configured,
            prop_oneof![
                1 => Just(None),
                1 => Just(Some(None)),
                3 => configured_path().prop_map(|path| Some(Some(path))),
            ],
            proptest::sample::subsequence(LOG_FOLDER_NAMES.to_vec(), 0..=2).prop_shuffle(),
            proptest::option::weighted(0.7, link_target()),
            proptest::collection::vec(www_name, 0..5),
        )
            .prop_map(
                |(root, name, family, configured, log_folder, existing, link, www_file_names)| {
                    Case {
                        root: root.to_owned(),
                        instance: InstanceName::new(&name).unwrap(),
                        family: OsFamily::ALL[family],
                        configured,
                        log_folder,
                        existing_log_folders: existing.into_iter().map(str::to_owned).collect(),
                        data_root_link: link,
                        www_file_names,
                    }
                },
            )
    }

    fn yaml_line(name: &str, value: &str) -> String {
        format!("{name}: '{}'\n", value.replace('\'', "''"))
    }

    fn sources(case: &Case) -> LayoutSources {
        let mut config = String::from("# written by the property test\n");
        for ((current, ..), lines) in CONFIGURED.iter().zip(&case.configured) {
            for (name, value) in lines {
                config.push_str(&yaml_line(
                    if name.is_empty() { current } else { name },
                    value,
                ));
            }
        }
        LayoutSources {
            instance_config: Some(config),
            adapterhost_config: case.log_folder.as_ref().map(|folder| match folder {
                Some(folder) => yaml_line("log.folder", folder),
                None => "clusterName: prod\n".to_owned(),
            }),
            existing_log_folders: case.existing_log_folders.clone(),
            www_file_names: case.www_file_names.clone(),
            data_root_link: case.data_root_link.as_ref().map(PathBuf::from),
            ..LayoutSources::default()
        }
    }

    /// The config-supplied paths [`InstanceLayout::resolve`] must yield.
    #[derive(Debug)]
    struct Expected {
        configured: Vec<Option<LayoutPath>>,
        log_dir: LayoutPath,
        data_root_link: Option<PathBuf>,
        www_config_files: Vec<PathBuf>,
    }

    /// A path the contract must refuse: `(origin, server path)` as the error names them.
    type Refusal = (String, String);

    /// The layout contract, from the docs: a directive set under its current
    /// name wins over an old name, a blank value counts as unset, an unset one
    /// takes its default under the data root; a relative link target is read
    /// from the link's folder; `log.folder` wins over existing folders, `Logs`
    /// over `Log`. Every configured path is placed per [`contract::placed`], and
    /// the layout is refused when any one of them is refused.
    fn expected(case: &Case) -> std::result::Result<Expected, Vec<Refusal>> {
        let root = case.root.as_str();
        let instance = case.instance.as_str();
        let clean = |server_path: String| {
            PathBuf::from(contract::placed(root, &server_path).expect("a built-in path is clean"))
        };
        let mut refusals = Vec::new();
        // A folder the tool changes (the database, the streams, the logs, the
        // data root's target) may not be `/`, a top-level system folder, or
        // directly inside one of them or `/`.
        let system = |server_path: &str| {
            let normalized = contract::placed("/", server_path).unwrap_or_default();
            let parts: Vec<&str> = normalized
                .split('/')
                .filter(|part| !part.is_empty())
                .collect();
            const TOP: &[&str] = &[
                "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media",
                "mnt", "opt", "proc", "root", "run", "sbin", "snap", "srv", "sys", "tmp", "usr",
                "var",
            ];
            parts.len() <= 1 || (parts.len() == 2 && TOP.contains(&parts[0]))
        };
        let mut place = |origin: String, server_path: &str, guarded: bool| match contract::placed(
            root,
            server_path,
        ) {
            Some(_) if guarded && system(server_path) => {
                refusals.push((origin, server_path.to_owned()));
                None
            }
            Some(path) => Some(LayoutPath {
                path: PathBuf::from(path),
                origin,
            }),
            None => {
                refusals.push((origin, server_path.to_owned()));
                None
            }
        };

        let config_file = format!("/usr/share/comindware/configs/instance/{instance}.yml");
        let mut configured = Vec::new();
        for (index, ((current, _, default), lines)) in
            CONFIGURED.iter().zip(&case.configured).enumerate()
        {
            let set = lines.iter().find(|(_, value)| !value.trim().is_empty());
            configured.push(match set {
                Some((name, value)) => {
                    let name = if name.is_empty() {
                        current
                    } else {
                        name.as_str()
                    };
                    place(format!("{name} in {config_file}"), value, index < 2)
                }
                None => default.map(|folder| LayoutPath {
                    path: clean(format!("/var/lib/comindware/{instance}/{folder}")),
                    origin: "default".to_owned(),
                }),
            });
        }

        let set_log_folder = case
            .log_folder
            .iter()
            .flatten()
            .find(|folder| !folder.trim().is_empty());
        let log_dir = match set_log_folder {
            Some(folder) => place(
                format!("log.folder in /var/www/{instance}/adapterhost.yml"),
                folder,
                true,
            ),
            None => {
                let existing = ["Logs", "Log"]
                    .into_iter()
                    .find(|name| case.existing_log_folders.iter().any(|found| found == name));
                Some(LayoutPath {
                    path: clean(format!(
                        "/var/log/comindware/{instance}/{}",
                        existing.unwrap_or("Logs")
                    )),
                    origin: if existing.is_some() {
                        "existing folder"
                    } else {
                        "default"
                    }
                    .to_owned(),
                })
            }
        };

        let data_root_link = case.data_root_link.as_ref().map(|target| {
            let server_target = if target.starts_with('/') {
                target.clone()
            } else {
                format!("/var/lib/comindware/{target}")
            };
            place(
                format!("symlink /var/lib/comindware/{instance}"),
                &server_target,
                true,
            )
            .map(|placed| placed.path)
        });

        if !refusals.is_empty() {
            return Err(refusals);
        }
        let mut www_config_files: Vec<PathBuf> = WWW_CONFIG_FILES
            .iter()
            .map(|name| (*name).to_owned())
            .chain(
                case.www_file_names
                    .iter()
                    .filter(|name| {
                        let one_component =
                            !["", ".", ".."].contains(&name.as_str()) && !name.contains('/');
                        one_component
                            && [".config", ".yml", ".json"]
                                .iter()
                                .any(|end| name.ends_with(end))
                    })
                    .cloned(),
            )
            .map(|name| clean(format!("/var/www/{instance}/{name}")))
            .collect();
        www_config_files.sort();
        www_config_files.dedup();
        Ok(Expected {
            configured,
            log_dir: log_dir.expect("refusals were reported above"),
            data_root_link: data_root_link.map(|link| link.expect("refusals were reported above")),
            www_config_files,
        })
    }

    // A generator that drifts to all-accepted or all-refused would leave one side
    // of the property below unchecked while it still passes.
    #[test]
    fn generated_layouts_are_often_accepted_and_often_refused() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let cases = case();
        let accepted = (0..1000)
            .filter(|_| expected(&cases.new_tree(&mut runner).unwrap().current()).is_ok())
            .count();
        assert!((350..=650).contains(&accepted), "{accepted} of 1000");
    }

    proptest! {
        /// Property: resolve succeeds exactly when the contract accepts every
        /// configured path, then yields the paths the contract says; it fails
        /// naming one of the paths the contract refuses.
        #[test]
        fn configured_paths_follow_the_contract(case in case()) {
            let outcome = InstanceLayout::resolve(Path::new(&case.root), &case.instance, case.family, &sources(&case));
            match (outcome, expected(&case)) {
                (Ok(layout), Ok(expected)) => {
                    let configured = [&layout.database, &layout.streams, &layout.temp, &layout.local_temp];
                    for (got, want) in configured.into_iter().zip(&expected.configured) {
                        prop_assert_eq!(Some(got), want.as_ref());
                    }
                    prop_assert_eq!(&layout.backup_folder, &expected.configured[4]);
                    prop_assert_eq!(&layout.log_dir, &expected.log_dir);
                    prop_assert_eq!(&layout.data_root_link, &expected.data_root_link);
                    prop_assert_eq!(&layout.www_config_files, &expected.www_config_files);
                    let root = Path::new(&case.root);
                    for path in all_paths(&layout) {
                        prop_assert!(path.starts_with(root), "{}", path.display());
                        prop_assert!(path.components().all(|c| c != std::path::Component::ParentDir), "{}", path.display());
                    }
                }
                (Err(Error::PathOutsideRoot { path, origin, .. } | Error::SystemFolder { path, origin }), Err(refusals)) => {
                    prop_assert!(
                        refusals.contains(&(origin.clone(), path.clone())),
                        "refused {:?} from {:?}, the contract refuses {:?}", path, origin, refusals
                    );
                }
                (outcome, expected) => prop_assert!(
                    false,
                    "{:?}: got {:?}, the contract says {:?}", case, outcome, expected
                ),
            }
        }
    }
}
