//! The whole config migration: plan every file, check the result, then write
//! all files or none.
//!
//! Old files come from a folder that mirrors the old server's absolute paths
//! (the form a backup bundle stores them in); new files are the new instance's
//! real files under the target root. [`plan_migration`] reads only;
//! [`apply_migration`] tests the nginx site with the real `nginx -t`, keeps every
//! original as `<file>.cmw-upgrade.<stamp>.bak`, and replaces files atomically.

// Lists the old server's www folder and reads back its own backups to undo a failed write.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::env_file::{migrate_env, secret_spans as env_secret_spans};
use super::nginx::migrate_nginx;
use super::nginx_context::{context_warnings, test_site_in_context};
use super::secrets::mask_spans;
use super::xml::{map_workers_config, migrate_ignite, secret_spans as xml_secret_spans};
use super::yaml_merge::{migrate_yaml, secret_spans as yaml_secret_spans, ExtraValue};
use super::yaml_text::{double_quoted, needs_quotes, YamlText};
use super::{raw_text, Change, ChangeAction};
use crate::atomic::{backup_copy, write_atomic, FileAttributes};
use crate::directives::Directives;
use crate::disk::read_optional_bytes;
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::exec::CommandRunner;
use crate::instance::InstanceName;
use crate::layout::{
    env_file_path, instance_config_path, read_layout_sources, refuse_system_folder, www_path,
    CHANGED_BY_THE_TOOL,
};
use crate::os::{OsFamily, Owner};
use crate::paths::{join_default, under_root};
use crate::server::ServerRead;
use crate::systemd::service_owner;

/// What the caller asks for beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// Server paths of files to take whole from the old server instead of merging.
    pub take: Vec<String>,
    /// Apply the evident fix when a check fails, instead of reporting an error.
    pub fix: bool,
    /// A timestamp for backup names and the appended blocks' headers.
    pub stamp: String,
    /// For a plan made before the new instance exists: a file the new server
    /// does not have yet is taken as empty, so the report shows every value
    /// that will be carried into it. Never for a migration that writes.
    pub preview_missing: bool,
}

/// A folder the instance config names that does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderToCreate {
    /// The folder (server path).
    pub path: String,
    /// The directive that names it.
    pub directive: String,
    /// Who must own it: the instance's data owner.
    pub owner: Owner,
}

/// A file written by [`apply_migration`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenFile {
    /// The file (server path).
    pub file: String,
    /// Where the original was kept (server path).
    pub backup: String,
}

/// Something the migration cannot decide and a person must: kept apart from
/// the warnings so it reaches the run's report, `status` and the final
/// summary under "To do by hand", not only the progress on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandNote {
    /// The file concerned (a server path).
    pub file: String,
    /// The setting, when one is concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What kind of decision: `worker_switch` (a Workers.config switch with no
    /// 5.0 equivalent), `file_differs` (a file the tool does not migrate differs
    /// between the servers), `file_only_on_old` (it exists only on the old one).
    pub code: String,
    /// What to decide, and how.
    pub message: String,
    /// Always true: a person must act (for scripts filtering notes).
    pub action_needed: bool,
}

impl HandNote {
    fn new(file: &str, key: Option<&str>, code: &str, message: String) -> HandNote {
        HandNote {
            file: file.to_owned(),
            key: key.map(str::to_owned),
            code: code.to_owned(),
            message,
            action_needed: true,
        }
    }
}

/// The migration's report: the JSON the CLI prints and Python returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    /// Every directive's fate.
    pub changes: Vec<Change>,
    /// What the admin should review.
    pub warnings: Vec<String>,
    /// What a person must decide (also in the run's report and `status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_do: Vec<HandNote>,
    /// What stops the migration; when not empty, nothing is written.
    pub errors: Vec<String>,
    /// Folders the instance config names that do not exist yet.
    pub folders_to_create: Vec<FolderToCreate>,
    /// Files that change (server paths).
    pub files: Vec<String>,
    /// Files written, with their backups (empty in check mode).
    pub written: Vec<WrittenFile>,
    /// True when nothing was written because this was a check.
    pub check: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Yaml,
    Env,
    Xml,
    Nginx,
    Other,
}

/// One file the migration rewrites.
#[derive(Debug, Clone)]
pub struct FileUpdate {
    /// The file (server path).
    pub server_path: String,
    /// The file under the root.
    pub target: PathBuf,
    before: String,
    /// The text to write.
    pub after: String,
    kind: FileKind,
}

impl FileUpdate {
    /// A unified diff of the change, with every secret value shown as `***`.
    pub fn masked_diff(&self) -> String {
        let mask = |text: &str| {
            let mut spans = match self.kind {
                FileKind::Yaml => yaml_secret_spans(text),
                FileKind::Env => env_secret_spans(text),
                FileKind::Xml => xml_secret_spans(text),
                FileKind::Nginx | FileKind::Other => Vec::new(),
            };
            // Masked while the text still holds the bytes as read (a remembered
            // cp1251 secret matches there), then bytes that are not UTF-8 are
            // shown as `\xNN`, never as stand-ins.
            let masked = mask_spans(text, &mut spans);
            raw_text::printable(&crate::secrets::mask(&masked)).into_owned()
        };
        let before = mask(&self.before);
        let after = mask(&self.after);
        let diff = similar::TextDiff::from_lines(&before, &after)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("a{}", self.server_path),
                &format!("b{}", self.server_path),
            )
            .to_string();
        // The spans catch secrets by position; the one masking function catches
        // them by value and shape (a `--take`n file, a URL, a JVM option).
        crate::secrets::mask(&diff).into_owned()
    }
}

/// Everything the migration would do.
#[derive(Debug, Clone, Default)]
pub struct MigrationPlan {
    /// The report.
    pub report: MigrationReport,
    /// The files to rewrite, in a stable order (empty when the report has errors).
    pub updates: Vec<FileUpdate>,
    /// The new server's root: the nginx site is tested in its nginx configuration.
    root: PathBuf,
}

/// Directives naming folders the instance needs.
const FOLDER_DIRECTIVES: &[&str] = &[
    "db.workDir",
    "userStorage.localDisk.path",
    "tempStorage.localDisk.path",
    "tempWorkingDir",
    "backup.defaultFolder",
];

/// Settings that must agree across files: (instance directive, file in the www
/// folder, its directive, whether the file must set it).
const AGREEMENTS: &[(&str, &str, &str, bool)] = &[
    ("clusterName", "apigateway.yml", "cluster.name", true),
    ("clusterName", "adapterhost.yml", "clusterName", true),
    ("mq.server", "apigateway.yml", "mq.server", false),
    ("mq.server", "adapterhost.yml", "mq.server", false),
    ("mq.group", "apigateway.yml", "mq.group", false),
    ("mq.group", "adapterhost.yml", "mq.group", false),
    ("mq.node", "apigateway.yml", "mq.node", false),
    ("mq.node", "adapterhost.yml", "mq.node", false),
];

struct Planner<'a> {
    from: &'a Path,
    root: &'a Path,
    options: &'a MigrateOptions,
    report: MigrationReport,
    texts: BTreeMap<String, (String, String, FileKind)>,
    old_texts: BTreeMap<String, Option<String>>,
}

impl Planner<'_> {
    /// The old server's file, cached.
    fn old_file(&mut self, server_path: &str) -> Result<Option<String>> {
        if let Some(text) = self.old_texts.get(server_path) {
            return Ok(text.clone());
        }
        let text = read_optional_bytes(&join_default(self.from, Path::new(server_path)))?
            .map(|bytes| raw_text::decode(&format!("old {server_path}"), &bytes))
            .transpose()?;
        if let Some(text) = &text {
            crate::secrets::remember_config(server_path, text);
        }
        self.old_texts.insert(server_path.to_owned(), text.clone());
        Ok(text)
    }

    /// The new file as planned so far (or as on disk).
    fn current(&self, server_path: &str) -> Result<Option<String>> {
        if let Some((_, after, _)) = self.texts.get(server_path) {
            return Ok(Some(after.clone()));
        }
        // Through the disk reader: inside the root, a copy's links lead into the copy.
        let text = Disk::new(self.root)
            .read_file(server_path)?
            .map(|bytes| raw_text::decode(server_path, &bytes))
            .transpose()?;
        if let Some(text) = &text {
            crate::secrets::remember_config(server_path, text);
        }
        Ok(text)
    }

    fn record(&mut self, server_path: &str, after: String, kind: FileKind) -> Result<()> {
        let before = match self.texts.remove(server_path) {
            Some((before, _, _)) => before,
            None => self.current(server_path)?.unwrap_or_default(),
        };
        self.texts
            .insert(server_path.to_owned(), (before, after, kind));
        Ok(())
    }

    /// Reads the pair of files; reports why a migration of this file cannot happen.
    fn pair(&mut self, server_path: &str) -> Result<Option<(Option<String>, String)>> {
        let new = self.current(server_path)?;
        let old = self.old_file(server_path)?;
        match new {
            None if old.is_some() && self.options.preview_missing => {
                self.report.warnings.push(format!(
                    "{server_path}: not on this server yet (create-instance makes it); \
                     shown: what will be carried into it"
                ));
                Ok(Some((old, String::new())))
            }
            None => {
                if old.is_some() {
                    self.report.errors.push(format!(
                        "{server_path}: the new instance has no such file; create the instance (instance_create.sh) before migrating"
                    ));
                }
                Ok(None)
            }
            Some(new) => {
                if old.is_none() {
                    self.report.warnings.push(format!(
                        "{server_path}: the old server's files have no such file; nothing carried into it"
                    ));
                }
                Ok(Some((old, new)))
            }
        }
    }

    /// Takes the old file whole when asked; returns whether it did. `kind`:
    /// what checks it (a taken nginx site goes through `nginx -t` as a migrated one).
    fn take_if_asked(&mut self, server_path: &str, kind: FileKind) -> Result<bool> {
        if !self.options.take.iter().any(|taken| taken == server_path) {
            return Ok(false);
        }
        match self.old_file(server_path)? {
            Some(old) => {
                let unchanged = self.current(server_path)?.as_deref() == Some(old.as_str());
                if !unchanged {
                    self.record(server_path, old, kind)?;
                }
                self.report.changes.push(Change {
                    file: server_path.to_owned(),
                    key: "(whole file)".to_owned(),
                    action: if unchanged {
                        ChangeAction::Kept
                    } else {
                        ChangeAction::Taken
                    },
                    old: None,
                    new: None,
                    from: Some("--take".to_owned()),
                });
            }
            None => self.report.errors.push(format!(
                "--take {server_path}: the old server's files have no such file"
            )),
        }
        Ok(true)
    }

    fn migrate_yaml_file(&mut self, server_path: &str, extra: &[ExtraValue]) -> Result<()> {
        if self.take_if_asked(server_path, FileKind::Other)? {
            return Ok(());
        }
        let Some((old, new)) = self.pair(server_path)? else {
            return Ok(());
        };
        match migrate_yaml(
            server_path,
            old.as_deref(),
            &new,
            extra,
            &self.options.stamp,
        ) {
            Ok(migration) => {
                self.report.changes.extend(migration.changes);
                self.report.warnings.extend(migration.warnings);
                if migration.text != new {
                    self.record(server_path, migration.text, FileKind::Yaml)?;
                }
            }
            Err(error) => self.report.errors.push(error.to_string()),
        }
        Ok(())
    }
}

/// The instance config, www folder and env file, as server path strings.
fn server_paths(instance: &InstanceName) -> (String, String, String) {
    let text = |path: PathBuf| path.to_string_lossy().into_owned();
    (
        text(instance_config_path(instance)),
        text(www_path(instance)),
        text(env_file_path(instance)),
    )
}

/// Plans the migration of every config file. Reads only.
///
/// Parse errors and failed checks go into the report's `errors` (and then no
/// file is planned for writing); only unreadable files are returned as errors.
///
/// # Errors
/// [`Error::Io`] when a file exists but cannot be read.
pub fn plan_migration(
    from: &Path,
    root: &Path,
    instance: &InstanceName,
    family: OsFamily,
    options: &MigrateOptions,
) -> Result<MigrationPlan> {
    let (instance_config, www, env_file) = server_paths(instance);
    let mut planner = Planner {
        from,
        root,
        options,
        report: MigrationReport::default(),
        texts: BTreeMap::new(),
        old_texts: BTreeMap::new(),
    };

    // Workers.config is gone since 5.0: its switches become instance directives.
    let workers = format!("{www}/Workers.config");
    let mut worker_directives = Vec::new();
    if let Some(old_workers) = planner.old_file(&workers)? {
        if planner.current(&workers)?.is_none() {
            match map_workers_config(&workers, &old_workers) {
                Ok(mapping) => {
                    worker_directives = mapping.directives;
                    for (switch, message) in mapping.by_hand {
                        planner.report.to_do.push(HandNote::new(
                            &workers,
                            Some(&switch),
                            "worker_switch",
                            message,
                        ));
                    }
                }
                Err(error) => planner.report.errors.push(error.to_string()),
            }
        }
    }
    planner.migrate_yaml_file(&instance_config, &worker_directives)?;
    for name in ["apigateway.yml", "adapterhost.yml"] {
        planner.migrate_yaml_file(&format!("{www}/{name}"), &[])?;
    }

    if !planner.take_if_asked(&env_file, FileKind::Other)? {
        if let Some((Some(old), new)) = planner.pair(&env_file)? {
            match migrate_env(&env_file, &old, &new, &options.stamp) {
                Ok(migration) => {
                    planner.report.changes.extend(migration.changes);
                    planner.report.warnings.extend(migration.warnings);
                    if migration.text != new {
                        planner.record(&env_file, migration.text, FileKind::Env)?;
                    }
                }
                Err(error) => planner.report.errors.push(error.to_string()),
            }
        }
    }

    let ignite = format!("{www}/Ignite.config");
    if !planner.take_if_asked(&ignite, FileKind::Other)? {
        if let Some((Some(old), new)) = planner.pair(&ignite)? {
            match migrate_ignite(&ignite, &old, &new) {
                Ok(migration) => {
                    planner.report.changes.extend(migration.changes);
                    planner.report.warnings.extend(migration.warnings);
                    if migration.text != new {
                        planner.record(&ignite, migration.text, FileKind::Xml)?;
                    }
                }
                Err(error) => planner.report.errors.push(error.to_string()),
            }
        }
    }

    // The old server may be of another family: its site file is wherever it exists.
    let new_site = family
        .nginx_site_path(instance)
        .to_string_lossy()
        .into_owned();
    let mut old_site_path = None;
    for candidate in OsFamily::ALL {
        let path = candidate
            .nginx_site_path(instance)
            .to_string_lossy()
            .into_owned();
        if planner.old_file(&path)?.is_some() {
            old_site_path = Some(path);
            break;
        }
    }
    if !planner.take_if_asked(&new_site, FileKind::Nginx)? {
        match (old_site_path, planner.current(&new_site)?) {
            (Some(old_path), Some(new)) => {
                let old = planner.old_file(&old_path)?.unwrap_or_default();
                match migrate_nginx(&new_site, &old, &new) {
                    Ok(migration) => {
                        planner.report.changes.extend(migration.changes);
                        planner.report.warnings.extend(migration.warnings);
                        if migration.text != new {
                            planner.record(&new_site, migration.text, FileKind::Nginx)?;
                        }
                    }
                    Err(error) => planner.report.errors.push(error.to_string()),
                }
            }
            // The new site comes with the instance: a plan made before it
            // exists can only say the old one's settings will be carried.
            (Some(_), None) if options.preview_missing => planner.report.warnings.push(format!(
                "{new_site}: not on this server yet (create-instance makes it); the old site's \
                 server_name, listen, ssl and timeouts will be carried into it"
            )),
            (Some(_), None) => planner.report.errors.push(format!(
                "{new_site}: the new instance has no nginx site file; create the instance before migrating"
            )),
            (None, _) => planner
                .report
                .warnings
                .push(format!("{new_site}: the old server's files have no nginx site file; nothing carried")),
        }
    }

    other_files(&mut planner, &www, &workers)?;
    for taken in &options.take {
        if planner.old_file(taken)?.is_none()
            && !planner
                .report
                .errors
                .iter()
                .any(|e| e.contains(taken.as_str()))
        {
            planner.report.errors.push(format!(
                "--take {taken}: the old server's files have no such file"
            ));
        }
    }

    if !planner.old_texts.values().any(Option::is_some) {
        return Err(no_old_files(from, &instance_config, &www));
    }
    check_result(&mut planner, instance, family, &instance_config, &www)?;

    let mut plan = MigrationPlan {
        report: planner.report,
        updates: Vec::new(),
        root: root.to_path_buf(),
    };
    if plan.report.errors.is_empty() {
        for (server_path, (before, after, kind)) in planner.texts {
            if before == after {
                continue;
            }
            plan.report.files.push(server_path.clone());
            plan.updates.push(FileUpdate {
                target: Disk::new(root).place(&server_path)?,
                server_path,
                before,
                after,
                kind,
            });
        }
        nginx_context_findings(&mut plan)?;
    }
    Ok(plan)
}

/// The error for a `from` folder that holds none of the old server's files:
/// a typo, or the bundle's root given instead of its `config/`.
fn no_old_files(from: &Path, instance_config: &str, www: &str) -> Error {
    let hint = if from.join("manifest.json").is_file() && from.join("config").is_dir() {
        format!(
            "it is a bundle: give its config folder, {}",
            from.join("config").display()
        )
    } else if !from.exists() {
        "it does not exist".to_owned()
    } else {
        "give the bundle's config/ folder (the old server's files at their absolute paths)"
            .to_owned()
    };
    Error::CheckFailed {
        what: format!("reading the old server's files in {}", from.display()),
        details: format!(
            "none is there (expected e.g. {}{instance_config} or {}{www}/Ignite.config); {hint}",
            from.display(),
            from.display()
        ),
    }
}

/// What the report must say about how each nginx site will be tested (alone,
/// or placed where nginx.conf does not include it); a server config that
/// cannot be copied to test in stops the migration as the gate would.
fn nginx_context_findings(plan: &mut MigrationPlan) -> Result<()> {
    let mut errors = Vec::new();
    for update in plan.updates.iter().filter(|u| u.kind == FileKind::Nginx) {
        match context_warnings(&plan.root, &update.server_path, &update.after) {
            Ok(warnings) => plan.report.warnings.extend(warnings),
            Err(error @ (Error::ConfigParse { .. } | Error::PathOutsideRoot { .. })) => {
                errors.push(error.to_string());
            }
            Err(error) => return Err(error),
        }
    }
    if !errors.is_empty() {
        plan.report.errors.extend(errors);
        plan.report.files.clear();
        plan.updates.clear();
    }
    Ok(())
}

/// Other `*.config`, `*.yml`, `*.json` files and `Agent.config`: reported when they
/// differ; taken whole only when asked.
fn other_files(planner: &mut Planner<'_>, www: &str, workers: &str) -> Result<()> {
    let handled = ["adapterhost.yml", "apigateway.yml", "Ignite.config"];
    let old_www = join_default(planner.from, Path::new(www));
    let mut names: Vec<String> = match fs::read_dir(&old_www) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_file())
            .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
            .filter(|name| {
                [".config", ".yml", ".json"]
                    .iter()
                    .any(|ext| name.ends_with(ext))
            })
            .filter(|name| !handled.contains(&name.as_str()))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    let mut paths: Vec<String> = names
        .into_iter()
        .map(|name| format!("{www}/{name}"))
        .collect();
    paths.push(format!("{www}/data/Plugins/Agent/Agent.config"));
    for path in paths {
        if planner.take_if_asked(&path, FileKind::Other)? {
            continue;
        }
        let Some(old) = planner.old_file(&path)? else {
            continue;
        };
        match planner.current(&path)? {
            None if path == workers => {}
            None => planner.report.to_do.push(HandNote::new(
                &path,
                None,
                "file_only_on_old",
                format!(
                    "{path}: exists only on the old server; not copied (take it with --take \
                     {path} if the new version uses it)"
                ),
            )),
            Some(new) if new != old => planner.report.to_do.push(HandNote::new(
                &path,
                None,
                "file_differs",
                format!(
                    "{path}: differs between the old and the new server; review it, or take the \
                     old one whole with --take {path}"
                ),
            )),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The value of a directive's line as raw YAML text, for writing it elsewhere.
fn raw_value(text: &str, key: &str) -> Option<String> {
    let parsed = YamlText::parse(text);
    let entry = parsed.active(key)?;
    (!entry.block).then(|| entry.raw_value(text).to_owned())
}

fn as_yaml_scalar(value: &str) -> String {
    if needs_quotes(value) {
        double_quoted(value)
    } else {
        value.to_owned()
    }
}

/// Checks the planned result: the database and license bindings, the cluster and
/// message-queue settings across the three YAML files, and the folders.
fn check_result(
    planner: &mut Planner<'_>,
    instance: &InstanceName,
    family: OsFamily,
    instance_config: &str,
    www: &str,
) -> Result<()> {
    let Some(result_text) = planner.current(instance_config)? else {
        return Ok(());
    };
    let Ok(result) = Directives::parse(&result_text, Path::new(instance_config)) else {
        return Ok(()); // Already reported as a parse error.
    };
    let old = match planner.old_file(instance_config)? {
        Some(text) => Directives::parse(&text, Path::new(instance_config)).unwrap_or_default(),
        None => Directives::default(),
    };
    // (file, key, wanted raw value, problem)
    let mut problems: Vec<(String, String, String, String)> = Vec::new();
    for (key, why) in [
        (
            "db.name",
            "the copied database is bound to it and would not be found",
        ),
        ("nodeName", "license keys are bound to it"),
    ] {
        if let Some((wanted, _)) = old.get_current_or_renamed(key) {
            if result.get(key).as_deref() != Some(wanted.as_str()) {
                problems.push((
                    instance_config.to_owned(),
                    key.to_owned(),
                    as_yaml_scalar(&wanted),
                    format!("{instance_config}: {key} must stay {wanted:?} as on the old instance ({why})"),
                ));
            }
        }
    }
    for (reference_key, file, key, required) in AGREEMENTS {
        let Some(reference) = result.get(reference_key) else {
            continue;
        };
        let wanted =
            raw_value(&result_text, reference_key).unwrap_or_else(|| as_yaml_scalar(&reference));
        let path = format!("{www}/{file}");
        let Some(text) = planner.current(&path)? else {
            continue;
        };
        let Ok(directives) = Directives::parse(&text, Path::new(&path)) else {
            continue;
        };
        let problem = match directives.get(key) {
            Some(value) if value != reference => {
                format!("{path}: {key} is {value:?} but the instance's {reference_key} is {reference:?}; they must agree")
            }
            None if *required => {
                format!("{path}: {key} is not set; it must equal the instance's {reference_key} {reference:?}")
            }
            _ => continue,
        };
        problems.push((path, (*key).to_owned(), wanted, problem));
    }
    for (path, key, wanted, message) in problems {
        if !planner.options.fix {
            planner
                .report
                .errors
                .push(format!("{message}; run with --fix to set it"));
            continue;
        }
        let text = planner.current(&path)?.unwrap_or_default();
        let fix = [ExtraValue {
            key: key.clone(),
            raw: wanted,
            from: "--fix".to_owned(),
        }];
        match migrate_yaml(&path, None, &text, &fix, &planner.options.stamp) {
            Ok(migration) => {
                planner.report.changes.extend(migration.changes);
                planner.record(&path, migration.text, FileKind::Yaml)?;
            }
            Err(error) => planner.report.errors.push(error.to_string()),
        }
    }

    let sources = read_layout_sources(&Disk::new(planner.root), instance)?;
    let owner = service_owner(&sources.service_units).unwrap_or_else(|| family.web_owner());
    for directive in FOLDER_DIRECTIVES {
        let Some(folder) = result.get(directive) else {
            continue;
        };
        // A database path carried from the old server (or its bundle) must not
        // make the transfer move a system folder of this one aside.
        if CHANGED_BY_THE_TOOL.contains(directive) {
            if let Err(error) =
                refuse_system_folder(&folder, &format!("{directive} in {instance_config}"))
            {
                planner.report.errors.push(error.to_string());
                continue;
            }
        }
        match under_root(
            planner.root,
            &folder,
            &format!("{directive} in {instance_config}"),
        ) {
            Ok(path) if !path.is_dir() => planner.report.folders_to_create.push(FolderToCreate {
                path: folder,
                directive: (*directive).to_owned(),
                owner: owner.clone(),
            }),
            Ok(_) => {}
            Err(error) => planner.report.errors.push(error.to_string()),
        }
    }
    Ok(())
}

/// The error a migration whose report holds errors stops with (nothing is
/// written then); `None` when it has none. `from` is what was given as the
/// old server's files (a bundle, or its `config/`), for the command to see them.
pub fn migration_refusal(
    report: &MigrationReport,
    from: &str,
    instance: &InstanceName,
) -> Option<Error> {
    (!report.errors.is_empty()).then(|| Error::CheckFailed {
        what: "the config migration".to_owned(),
        details: format!(
            "{}; see them with: cmw-upgrade config migrate --from {from} --instance {instance} --check (--fix applies the evident fixes)",
            report.errors.join("; ")
        ),
    })
}

/// The checks a planned migration must pass before anything is written: each
/// nginx site to write (migrated, or taken with `--take`) through the real
/// `nginx -t`, in a private temp copy of the new server's nginx configuration
/// (so a check mode and a plan run it too, changing nothing).
///
/// # Errors
/// [`Error::CheckFailed`] with nginx's words; [`Error::CommandFailed`] when
/// nginx cannot be run; what [`test_site_in_context`] says.
pub fn gate_migration(plan: &MigrationPlan, runner: &dyn CommandRunner) -> Result<()> {
    for update in plan
        .updates
        .iter()
        .filter(|update| update.kind == FileKind::Nginx)
    {
        test_site_in_context(&plan.root, &update.server_path, &update.after, runner)?;
    }
    Ok(())
}

/// What a check mode checks: what the run would check before writing (the
/// candidate site through `nginx -t` in the server's context). A refusal
/// becomes an error of the report, as a parse error is; nothing is written.
pub fn check_migration(plan: &mut MigrationPlan, runner: &dyn CommandRunner) {
    if plan.report.errors.is_empty() {
        if let Err(error) = gate_migration(plan, runner) {
            plan.report.errors.push(error.to_string());
        }
    }
    plan.report.check = true;
}

/// Writes a plan: nginx test first, then every file with a backup, atomically.
/// A failure while writing puts back the files already replaced.
///
/// # Errors
/// [`Error::CheckFailed`] when the plan has errors or `nginx -t` rejects the
/// site file (nothing written); [`Error::Io`] when a write fails (originals restored).
pub fn apply_migration(
    plan: &MigrationPlan,
    runner: &dyn CommandRunner,
    stamp: &str,
) -> Result<Vec<WrittenFile>> {
    if !plan.report.errors.is_empty() {
        return Err(Error::CheckFailed {
            what: "the config migration".to_owned(),
            details: plan.report.errors.join("; "),
        });
    }
    gate_migration(plan, runner)?;
    let mut written: Vec<(WrittenFile, PathBuf, PathBuf)> = Vec::new();
    for update in &plan.updates {
        let backup_name = format!("{}.cmw-upgrade.{stamp}.bak", update.server_path);
        let backup_path = PathBuf::from(format!(
            "{}.cmw-upgrade.{stamp}.bak",
            update.target.display()
        ));
        let step = (|| {
            let attributes = FileAttributes::of(&update.target)?;
            backup_copy(&update.target, &backup_path)?;
            write_atomic(&update.target, &raw_text::encode(&update.after), attributes)
        })();
        if let Err(error) = step {
            // Put back what was already replaced, from the backups just made.
            for (_, target, backup) in written.iter().rev() {
                if let (Ok(content), Ok(attributes)) =
                    (fs::read(backup), FileAttributes::of(backup))
                {
                    let _ = write_atomic(target, &content, attributes);
                }
            }
            return Err(error);
        }
        written.push((
            WrittenFile {
                file: update.server_path.clone(),
                backup: backup_name,
            },
            update.target.clone(),
            backup_path,
        ));
    }
    Ok(written.into_iter().map(|(file, _, _)| file).collect())
}
