//! The steps themselves, and the rollback. Every effect goes through the
//! executor; reads go through it too, so a dry run plans from the real server.

use std::path::Path;
use std::time::{Duration, Instant};

use super::dist::{PlatformTarball, PrerequisitesTarball};
use super::state::{RunState, StepStatus, STATE_ROOT};
use super::{Event, EventSink, UpgradeSettings};
use crate::accounts::resolve_owner;
use crate::error::{Error, Result};
use crate::exec::{utc_stamp, CommandOutput};
use crate::executor::{CommandSpec, Executor, ToolAction};
use crate::instance::InstanceName;
use crate::layout::{InstanceLayout, SYSTEMD_OVERRIDE_DIR, SYSTEMD_UNIT_DIR};
use crate::logs::Verdict;
use crate::script_output::{
    parse_instance_create_output, parse_prerequisites_list, parse_version_list,
};
use crate::server::NodeKind;

/// How long the platform's scripts may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a systemctl or nginx command may run.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How often waiting polls.
const POLL: Duration = Duration::from_millis(500);

/// The command that undoes a run of `instance`.
pub fn rollback_command(instance: &InstanceName) -> String {
    format!("cmw-upgrade rollback --instance {instance}")
}

/// One step at work: where its effects go, where its state is saved, and
/// where it tells what it does.
pub(crate) struct Step<'a> {
    /// Every effect goes here (a recorder, so the transcript lists it).
    exec: &'a dyn Executor,
    /// Where the run state is saved (not part of the transcript).
    store: &'a dyn Executor,
    settings: &'a UpgradeSettings,
    state: &'a mut RunState,
    index: usize,
    events: EventSink<'a>,
}

impl<'a> Step<'a> {
    /// A step at `index` of `state`.
    pub(super) fn new(
        exec: &'a dyn Executor,
        store: &'a dyn Executor,
        settings: &'a UpgradeSettings,
        state: &'a mut RunState,
        index: usize,
        events: EventSink<'a>,
    ) -> Self {
        Step {
            exec,
            store,
            settings,
            state,
            index,
            events,
        }
    }
}

/// What a step does, as the step table holds it.
pub(crate) type StepFn = fn(&mut Step<'_>) -> Result<()>;

fn work_dir(instance: &InstanceName) -> String {
    format!("{STATE_ROOT}/{instance}")
}

fn dist_dir(instance: &InstanceName) -> String {
    format!("{}/dist", work_dir(instance))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn failed(spec: &CommandSpec, output: &CommandOutput, hint: &str) -> Error {
    Error::CommandFailed {
        command: spec.display(),
        status: match output.code {
            Some(code) => format!("exit code {code}"),
            None => "killed by a signal".to_owned(),
        },
        output: tail(&format!("{}{}", output.stdout, output.stderr), 15),
        hint: hint.to_owned(),
    }
}

fn check_failed(what: &str, details: String) -> Error {
    Error::CheckFailed {
        what: what.to_owned(),
        details,
    }
}

/// Runs a command that must succeed.
fn run_ok(exec: &dyn Executor, spec: CommandSpec, hint: &str) -> Result<CommandOutput> {
    let output = exec.execute(&spec)?;
    if output.success() {
        Ok(output)
    } else {
        Err(failed(&spec, &output, hint))
    }
}

fn systemctl(exec: &dyn Executor, verb: &str, units: &[String]) -> Result<()> {
    let spec = CommandSpec::new(["systemctl", verb])
        .args(units.iter().cloned())
        .with_timeout(SERVICE_TIMEOUT);
    run_ok(
        exec,
        spec,
        "see `systemctl status` and `journalctl -u` of the unit, fix it, and rerun",
    )
    .map(drop)
}

fn is_active(exec: &dyn Executor, unit: &str) -> Result<bool> {
    let spec = CommandSpec::new(["systemctl", "is-active", unit]).with_timeout(SERVICE_TIMEOUT);
    Ok(exec.execute(&spec)?.success())
}

fn script(folder: &str, name: &str, args: &[String]) -> CommandSpec {
    CommandSpec::new(["bash", name])
        .args(args.iter().cloned())
        .in_folder(folder)
        .with_timeout(SCRIPT_TIMEOUT)
}

/// The instance's layout as server paths, read through the executor.
fn layout(exec: &dyn Executor, settings: &UpgradeSettings) -> Result<InstanceLayout> {
    InstanceLayout::read(exec, Path::new("/"), &settings.instance, settings.family)
}

fn server_path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The `version:` of an instance config text.
fn config_version(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix("version:")?.trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// The installed version of the instance, when it exists on this server.
fn installed_version(exec: &dyn Executor, instance: &InstanceName) -> Result<Option<String>> {
    let path = format!("/usr/share/comindware/configs/instance/{instance}.yml");
    Ok(exec
        .read_file(&path)?
        .and_then(|bytes| config_version(&String::from_utf8_lossy(&bytes))))
}

/// The instance's services that exist here, and nginx.
fn instance_units(exec: &dyn Executor, instance: &InstanceName) -> Result<Vec<String>> {
    let mut units = vec![
        format!("comindware{instance}"),
        format!("apigateway{instance}"),
    ];
    let adapterhost = format!("adapterhost{instance}");
    let unit_exists = |name: &str| -> Result<bool> {
        Ok(exec.exists(&format!("{SYSTEMD_UNIT_DIR}/{name}.service"))?
            || exec.exists(&format!("{SYSTEMD_OVERRIDE_DIR}/{name}.service"))?)
    };
    if unit_exists(&adapterhost)? {
        units.push(adapterhost);
    }
    units.push("nginx".to_owned());
    Ok(units)
}

fn all_active(exec: &dyn Executor, units: &[String]) -> Result<()> {
    if exec.is_dry_run() {
        for unit in units {
            is_active(exec, unit)?;
        }
        return Ok(());
    }
    let mut inactive = Vec::new();
    for unit in units {
        if !is_active(exec, unit)? {
            inactive.push(unit.clone());
        }
    }
    if inactive.is_empty() {
        Ok(())
    } else {
        Err(check_failed(
            "checking the services",
            format!(
                "not active: {}; see `systemctl status {}` and its journal",
                inactive.join(", "),
                inactive[0]
            ),
        ))
    }
}

/// `instance_create.sh`, then a restart of every service it reports FAILED.
fn create_instance_with(
    exec: &dyn Executor,
    scripts: &str,
    instance: &InstanceName,
    port: u16,
    version: &str,
) -> Result<()> {
    let spec = script(
        scripts,
        "instance_create.sh",
        &[
            format!("-n={instance}"),
            format!("-p={port}"),
            format!("-v={version}"),
        ],
    );
    let output = exec.execute(&spec)?;
    if exec.is_dry_run() {
        return Ok(());
    }
    let report = parse_instance_create_output(&output.stdout);
    if report.final_status.is_none() {
        return Err(failed(
            &spec,
            &output,
            "instance_create.sh did not finish; read its output above, fix the cause, rerun",
        ));
    }
    // The platform's procedure: a FAILED service gets `systemctl restart`.
    for unit in report.units_to_restart(instance) {
        systemctl(exec, "restart", &[unit])?;
    }
    Ok(())
}

impl Step<'_> {
    fn exec(&self) -> &dyn Executor {
        self.exec
    }

    fn dry(&self) -> bool {
        self.exec.is_dry_run()
    }

    fn instance(&self) -> &InstanceName {
        &self.settings.instance
    }

    /// Records an artifact of this step and saves the state at once, so a
    /// crash right after keeps it.
    fn remember(&mut self, key: &str, value: &str) -> Result<()> {
        self.state.steps[self.index]
            .artifacts
            .insert(key.to_owned(), value.to_owned());
        self.state.save(self.store)
    }

    /// An artifact any step recorded, or `make()` recorded now for this step.
    fn artifact_or(&mut self, key: &str, make: impl FnOnce() -> String) -> Result<String> {
        if let Some(value) = self.state.artifact(key) {
            return Ok(value.to_owned());
        }
        let value = make();
        self.remember(key, &value)?;
        Ok(value)
    }

    fn note(&mut self, text: String) {
        (self.events)(&Event::Note { text });
    }

    pub(crate) fn verify_bundle(&mut self) -> Result<()> {
        let bundle = self.settings.bundle.clone();
        let manifest_path = format!("{bundle}/manifest.json");
        let manifest = self.exec().read_file(&manifest_path)?;
        let Some(manifest) = manifest else {
            return Err(check_failed(
                "finding the old server's bundle",
                format!(
                    "no {manifest_path}; make it on the old server with: cmw-upgrade backup --instance {} --dest DIR, then bring DIR here",
                    self.instance()
                ),
            ));
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&manifest).map_err(|error| Error::BundleDamaged {
                bundle: bundle.clone().into(),
                details: format!("manifest.json does not parse: {error}"),
            })?;
        if let Some(owner) = manifest.get("instance").and_then(serde_json::Value::as_str) {
            if owner != self.instance().as_str() {
                return Err(check_failed(
                    "checking the bundle",
                    format!(
                        "{bundle} is a backup of instance {owner}, not {}",
                        self.instance()
                    ),
                ));
            }
        }
        if let Some(version) = manifest
            .get("platform_version")
            .and_then(serde_json::Value::as_str)
        {
            self.remember("old_version", version)?;
        }
        let report = self
            .exec()
            .tool(&ToolAction::VerifyBundle {
                bundle: bundle.clone(),
            })?
            .verify()?;
        match report {
            Some(report) if !report.ok => Err(Error::BundleDamaged {
                bundle: bundle.into(),
                details: format!(
                    "missing {:?}, changed {:?}, extra {:?}; make a new backup on the old server",
                    report.missing, report.changed, report.extra
                ),
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn prerequisites(&mut self) -> Result<()> {
        let tarball = PrerequisitesTarball::parse(&self.settings.prerequisites)?;
        let dist = self.unpack(&self.settings.prerequisites, "the prerequisites tarball")?;
        let librd = tarball.librdkafka_dir(&dist);
        let extension = format!(".{}", self.settings.family.package_extension());
        let mut packages: Vec<String> = self
            .exec()
            .names_of_kind(&librd, NodeKind::File)?
            .into_iter()
            .filter(|name| name.ends_with(&extension))
            .collect();
        if packages.is_empty() {
            if !self.dry() {
                return Err(check_failed(
                    "installing librdkafka",
                    format!("no *{extension} in {librd}: is this the prerequisites tarball for this OS?"),
                ));
            }
            packages.push(format!("<the *{extension} files unpacked there>"));
        }
        if self.settings.family == crate::os::OsFamily::Alt {
            // apt-get takes local files only as paths.
            for package in &mut packages {
                *package = format!("./{package}");
            }
        }
        let install = CommandSpec::new(self.settings.family.local_package_install_argv(&packages))
            .in_folder(librd)
            .with_timeout(SCRIPT_TIMEOUT);
        let output = self.exec().execute(&install)?;
        if !output.success() && !already_installed(&output) {
            return Err(failed(
                &install,
                &output,
                "read the package tool's message, fix it, rerun",
            ));
        }
        let list = script(&tarball.scripts_dir(&dist), "prerequisites_list.sh", &[]);
        let output = run_ok(self.exec(), list.clone(), "run it by hand to see why")?;
        if self.dry() {
            return Ok(());
        }
        let rows = parse_prerequisites_list(&output.stdout);
        let missing: Vec<String> = rows
            .iter()
            .filter(|row| !row.ok)
            .map(|row| format!("{} ({})", row.software, row.status))
            .collect();
        if rows.is_empty() || !missing.is_empty() {
            return Err(check_failed(
                "checking the prerequisites",
                if rows.is_empty() {
                    format!(
                        "{} printed no Status | Software | Version table",
                        list.display()
                    )
                } else {
                    format!(
                        "not in place: {}; install them from the prerequisites tarball",
                        missing.join(", ")
                    )
                },
            ));
        }
        Ok(())
    }

    /// Unpacks a tarball into the run's `dist` folder (with the real tar) and returns it.
    fn unpack(&self, tarball: &str, what: &str) -> Result<String> {
        self.require_file(tarball, what)?;
        let dist = dist_dir(self.instance());
        self.exec().create_dir_all(&dist)?;
        let unpack = CommandSpec::new(["tar", "-xf"])
            .path_arg(tarball)
            .args(["-C"])
            .path_arg(dist.clone())
            .with_timeout(SCRIPT_TIMEOUT);
        run_ok(
            self.exec(),
            unpack,
            "is the tarball complete? download it again",
        )?;
        Ok(dist)
    }

    fn require_file(&self, path: &str, what: &str) -> Result<()> {
        if self.dry() || self.exec().exists(path)? {
            Ok(())
        } else {
            Err(check_failed(
                &format!("finding {what}"),
                format!("{path} does not exist"),
            ))
        }
    }

    pub(crate) fn install_version(&mut self) -> Result<()> {
        let tarball = PlatformTarball::parse(&self.settings.distribution)?;
        let dist = self.unpack(&self.settings.distribution, "the platform tarball")?;
        let scripts = tarball.scripts_dir(&dist);
        if !self.dry() && !self.exec().exists(&scripts)? {
            return Err(check_failed(
                "unpacking the platform",
                format!("{scripts} is not in the tarball: is it the platform tarball for this OS?"),
            ));
        }
        self.remember("version", &tarball.version)?;
        run_ok(
            self.exec(),
            script(&scripts, "version_install.sh", &[]),
            "read the script's output, fix the cause, rerun",
        )?;
        let listed = run_ok(
            self.exec(),
            script(&scripts, "version_list.sh", &[]),
            "run it by hand",
        )?;
        if !self.dry() && !parse_version_list(&listed.stdout).contains(&tarball.version) {
            return Err(check_failed(
                "checking the installed versions",
                format!(
                    "version_list.sh does not list {}:\n{}",
                    tarball.version,
                    tail(&listed.stdout, 10)
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn create_instance(&mut self) -> Result<()> {
        let tarball = PlatformTarball::parse(&self.settings.distribution)?;
        let scripts = tarball.scripts_dir(&dist_dir(self.instance()));
        let instance = self.instance().clone();
        let existing = installed_version(self.exec(), &instance)?;
        if let Some(existing) = existing.filter(|version| *version != tarball.version) {
            // Another version of the instance lives here: remember it before
            // anything changes, so a rollback can bring it back.
            if self.state.artifact("previous_version").is_none() {
                self.remember("previous_version", &existing)?;
            }
            self.note(format!(
                "instance {instance} runs version {existing} here; it is replaced (its data is kept)"
            ));
            run_ok(
                self.exec(),
                script(&scripts, "instance_delete.sh", &[format!("-n={instance}")]),
                "read the script's output, fix the cause, rerun",
            )?;
        }
        if installed_version(self.exec(), &instance)?.as_deref() != Some(tarball.version.as_str())
            || self.dry()
        {
            create_instance_with(
                self.exec(),
                &scripts,
                &instance,
                self.settings.port,
                &tarball.version,
            )?;
        } else {
            // Created by an earlier, interrupted run: make sure it runs.
            let units = instance_units(self.exec(), &instance)?;
            systemctl(self.exec(), "start", &units)?;
        }
        let units = instance_units(self.exec(), &instance)?;
        all_active(self.exec(), &units)
    }

    pub(crate) fn migrate_config(&mut self) -> Result<()> {
        let instance = self.instance().clone();
        let report = self
            .exec()
            .tool(&ToolAction::MigrateConfig {
                from: format!("{}/config", self.settings.bundle),
                instance: instance.clone(),
                family: self.settings.family,
                fix: self.settings.fix_config,
                check: false,
            })?
            .migrate()?
            .unwrap_or_default();
        for written in &report.written {
            let key = format!("original:{}", written.file);
            if self.state.artifact(&key).is_none() {
                self.remember(&key, &written.backup)?;
            }
        }
        for warning in &report.warnings {
            self.note(format!("config: {warning}"));
        }
        run_ok(
            self.exec(),
            CommandSpec::new(["nginx", "-t"]).with_timeout(SERVICE_TIMEOUT),
            "the site file was checked alone; another site breaks the config: fix it, rerun",
        )?;
        run_ok(
            self.exec(),
            CommandSpec::new(["nginx", "-s", "reload"]).with_timeout(SERVICE_TIMEOUT),
            "is nginx running? systemctl start nginx, rerun",
        )?;
        let units: Vec<String> = instance_units(self.exec(), &instance)?
            .into_iter()
            .filter(|unit| unit != "nginx")
            .collect();
        systemctl(self.exec(), "restart", &units)?;
        all_active(self.exec(), &units)
    }

    fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/health", self.settings.port)
    }

    /// Polls the smoke check until it passes or the time is up.
    fn wait_healthy(&mut self, what: &str) -> Result<()> {
        let action = ToolAction::Check {
            instance: self.instance().clone(),
            url: self.health_url(),
        };
        let limit = self.settings.health_timeout();
        let started = Instant::now();
        loop {
            let Some(report) = self.exec().tool(&action)?.check()? else {
                return Ok(());
            };
            if report.ok {
                return Ok(());
            }
            let detail = match (report.status, &report.unreachable) {
                (Some(status), _) => format!("HTTP {status}"),
                (None, Some(reason)) => reason.clone(),
                (None, None) => "no answer".to_owned(),
            };
            let errors = report.heartbeat_errors.len();
            if started.elapsed() >= limit || errors > 0 {
                return Err(check_failed(
                    what,
                    format!(
                        "{} answered {detail}; {errors} error records in the heartbeat logs{}",
                        self.health_url(),
                        report
                            .heartbeat_errors
                            .first()
                            .map(|first| format!(" (first: {first})"))
                            .unwrap_or_default()
                    ),
                ));
            }
            (self.events)(&Event::Waiting {
                what: "the site to answer".to_owned(),
                elapsed: started.elapsed().as_secs_f64(),
                limit: limit.as_secs_f64(),
                detail,
            });
            std::thread::sleep(POLL);
        }
    }

    pub(crate) fn smoke_check(&mut self) -> Result<()> {
        self.wait_healthy("the new instance's smoke check")
    }

    pub(crate) fn transfer_data(&mut self) -> Result<()> {
        let instance = self.instance().clone();
        systemctl(self.exec(), "stop", &[format!("comindware{instance}")])?;
        let report = self
            .exec()
            .tool(&ToolAction::Restore {
                bundle: self.settings.bundle.clone(),
                instance: instance.clone(),
                family: self.settings.family,
            })?
            .restore()?;
        if let Some(aside) = report
            .as_ref()
            .and_then(|report| report.parts.first())
            .and_then(|part| part.moved_aside.as_ref())
        {
            self.remember("clean_database_aside", &server_path(aside))?;
        }
        systemctl(self.exec(), "start", &[format!("comindware{instance}")])?;
        all_active(self.exec(), &[format!("comindware{instance}")])
    }

    pub(crate) fn wait_upgrade(&mut self) -> Result<()> {
        let instance = self.instance().clone();
        let unit = format!("comindware{instance}");
        let limit = self.settings.upgrade_timeout();
        let started = Instant::now();
        let problem = loop {
            let report = self
                .exec()
                .tool(&ToolAction::Verdict {
                    instance: Some(instance.clone()),
                    log_dir: None,
                })?
                .verdict()?;
            let Some(report) = report else {
                is_active(self.exec(), &unit)?;
                return Ok(());
            };
            let verdict = report.verdict.as_str();
            match report.verdict {
                Verdict::Succeeded => return Ok(()),
                Verdict::Failed => {
                    let first = report
                        .errors
                        .first()
                        .map(|error| format!("{}:{}: {}", error.file, error.line, error.message))
                        .unwrap_or_default();
                    break format!("the upgrade logs hold an error ({first})");
                }
                Verdict::InProgress | Verdict::NotStarted => {}
            }
            if !is_active(self.exec(), &unit)? {
                break format!(
                    "{unit} stopped while upgrading (verdict: {verdict}); see journalctl -u {unit}"
                );
            }
            if started.elapsed() >= limit {
                break format!(
                    "no verdict after {}s (still {verdict}); the upgrade hangs or needs more time (--upgrade-timeout)",
                    limit.as_secs()
                );
            }
            (self.events)(&Event::Waiting {
                what: "the data-structure upgrade".to_owned(),
                elapsed: started.elapsed().as_secs_f64(),
                limit: limit.as_secs_f64(),
                detail: verdict.to_owned(),
            });
            std::thread::sleep(POLL);
        };
        // The platform's procedure: do not continue; stop, keep the logs for support.
        let _ = systemctl(self.exec(), "stop", std::slice::from_ref(&unit));
        let kept = keep_logs(self.exec(), self.settings)?;
        self.remember("kept_logs", &kept)?;
        // Not a check that left things as they were: the instance was stopped
        // and its logs copied, so the kind says a step failed after effects.
        Err(Error::StepFailed {
            instance: instance.to_string(),
            step: "wait-upgrade".to_owned(),
            details: format!(
                "the data-structure upgrade: {problem}. The instance is stopped; its logs are kept \
                 in {kept}. The old server is unchanged and still serves. Roll back with: {}",
                rollback_command(&instance)
            ),
        })
    }

    pub(crate) fn backup_upgraded(&mut self) -> Result<()> {
        let instance = self.instance().clone();
        let stamp = utc_stamp(std::time::SystemTime::now());
        let dest = self.artifact_or("upgraded_bundle", || {
            format!("{}/upgraded-{stamp}", work_dir(&instance))
        })?;
        // Stopped first: a plain copy of a stopped database is consistent.
        systemctl(self.exec(), "stop", &[format!("comindware{instance}")])?;
        if self.exec().exists(&format!("{dest}/manifest.json"))? {
            // Finished by an interrupted run: it must still verify.
            let report = self
                .exec()
                .tool(&ToolAction::VerifyBundle {
                    bundle: dest.clone(),
                })?
                .verify()?;
            if report.is_none_or(|report| report.ok) {
                return Ok(());
            }
            return Err(Error::BundleDamaged {
                bundle: dest.into(),
                details: "the upgraded backup no longer verifies; move it away and rerun"
                    .to_owned(),
            });
        }
        self.exec().create_dir_all(&work_dir(&instance))?;
        self.exec().tool(&ToolAction::Backup {
            instance,
            family: self.settings.family,
            dest,
        })?;
        Ok(())
    }

    fn database_path(&self) -> Result<String> {
        Ok(server_path(
            &layout(self.exec(), self.settings)?.database.path,
        ))
    }

    pub(crate) fn prune_caches(&mut self) -> Result<()> {
        let bundle = self
            .state
            .artifact("upgraded_bundle")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}/upgraded-<stamp>", work_dir(self.instance())));
        let pruned = format!("{}.cmw-upgrade-pruned", self.database_path()?);
        // A copy left by an interrupted run may be incomplete; it is the tool's
        // own copy of a verified bundle, so it is made again.
        self.exec().remove(&pruned)?;
        self.exec().copy(&format!("{bundle}/database"), &pruned)?;
        let report = self
            .exec()
            .tool(&ToolAction::PruneCaches {
                database: pruned,
                check: false,
            })?
            .prune()?;
        if report.is_some_and(|report| report.node_folders.is_empty()) {
            return Err(check_failed(
                "pruning the caches",
                "no Ignite node folder (one holding cacheGroup-* folders) in the upgraded backup"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    pub(crate) fn replace_database(&mut self) -> Result<()> {
        let instance = self.instance().clone();
        let layout = layout(self.exec(), self.settings)?;
        let database = server_path(&layout.database.path);
        let pruned = format!("{database}.cmw-upgrade-pruned");
        let stamp = utc_stamp(std::time::SystemTime::now());
        systemctl(self.exec(), "stop", &[format!("comindware{instance}")])?;
        if self.exec().exists(&pruned)? || self.dry() {
            if self.exec().exists(&database)? {
                let aside = self.artifact_or("upgraded_database_aside", || {
                    format!("{database}.upgraded-{stamp}")
                })?;
                let aside = if self.exec().exists(&aside)? {
                    format!("{aside}-{stamp}")
                } else {
                    aside
                };
                self.exec().rename(&database, &aside)?;
            }
            self.exec().rename(&pruned, &database)?;
        } else if !self.exec().exists(&database)? {
            return Err(check_failed(
                "replacing the database",
                format!("neither {pruned} nor {database} exists; rerun from prune-caches"),
            ));
        }
        let (uid, gid) = resolve_owner(self.exec(), &layout.data_owner)?;
        self.exec().chown_tree(&database, uid, gid)?;
        systemctl(self.exec(), "start", &[format!("comindware{instance}")])?;
        all_active(self.exec(), &[format!("comindware{instance}")])
    }

    pub(crate) fn final_check(&mut self) -> Result<()> {
        let instance = self.instance().clone();
        self.wait_healthy("the final check")?;
        let report = self
            .exec()
            .tool(&ToolAction::Verdict {
                instance: Some(instance.clone()),
                log_dir: None,
            })?
            .verdict()?;
        if let Some(report) = report.filter(|report| report.verdict != Verdict::Succeeded) {
            return Err(check_failed(
                "the final check",
                format!("the upgrade verdict is now {}", report.verdict.as_str()),
            ));
        }
        let units = instance_units(self.exec(), &instance)?;
        all_active(self.exec(), &units)
    }
}

/// `dpkg -i`/`rpm -i` of packages already there is not a failure to stop on.
fn already_installed(output: &CommandOutput) -> bool {
    let text = format!("{}{}", output.stdout, output.stderr);
    text.contains("is already installed")
}

/// Copies the instance's log folder into the bundle's `upgrade-logs/<stamp>`.
fn keep_logs(exec: &dyn Executor, settings: &UpgradeSettings) -> Result<String> {
    let layout = layout(exec, settings)?;
    let folder = format!(
        "{}/{}",
        settings.bundle,
        crate::backup::manifest::KEPT_LOGS_FOLDER
    );
    let kept = format!("{folder}/{}", utc_stamp(std::time::SystemTime::now()));
    exec.create_dir_all(&folder)?;
    exec.copy(&server_path(&layout.log_dir.path), &kept)?;
    Ok(kept)
}

fn status_of(state: &RunState, name: &str) -> StepStatus {
    state
        .steps
        .iter()
        .find(|step| step.name == name)
        .map(|step| step.status)
        .unwrap_or(StepStatus::Pending)
}

/// The rollback itself; returns what the admin should know.
pub(super) fn rollback(
    exec: &dyn Executor,
    settings: &UpgradeSettings,
    state: &mut RunState,
    events: EventSink<'_>,
) -> Result<String> {
    let instance = &settings.instance;
    let unit = format!("comindware{instance}");
    let started = |name: &str| {
        !matches!(
            status_of(state, name),
            StepStatus::Pending | StepStatus::RolledBack
        )
    };
    let created = started("create-instance");
    let data_moved = started("transfer-data");
    if created {
        // A unit that was never created cannot be stopped; that is fine here.
        let stop =
            CommandSpec::new(["systemctl", "stop", unit.as_str()]).with_timeout(SERVICE_TIMEOUT);
        exec.execute(&stop)?;
    }
    if data_moved {
        if state.artifact("kept_logs").is_none() {
            let kept = keep_logs(exec, settings)?;
            events(&Event::Note {
                text: format!("logs kept in {kept}"),
            });
        }
        exec.tool(&ToolAction::Restore {
            bundle: settings.bundle.clone(),
            instance: instance.clone(),
            family: settings.family,
        })?;
    }
    let previous = state.artifact("previous_version").map(str::to_owned);
    match previous {
        Some(previous) => {
            let tarball = PlatformTarball::parse(&settings.distribution)?;
            let scripts = tarball.scripts_dir(&dist_dir(instance));
            run_ok(
                exec,
                script(&scripts, "instance_delete.sh", &[format!("-n={instance}")]),
                "read the script's output, fix the cause, rerun the rollback",
            )?;
            create_instance_with(exec, &scripts, instance, settings.port, &previous)?;
            let units = instance_units(exec, instance)?;
            systemctl(exec, "start", &units)?;
            all_active(exec, &units)?;
            Ok(format!(
                "Version {previous} of {instance} is back on this server, on the database from the bundle \
                 (the upgraded one is kept beside it). Keep DNS and the upstream proxy on the old server."
            ))
        }
        None if created => Ok(format!(
            "{instance} is stopped on this server{}. The old server was never changed and still serves: \
             keep DNS and the upstream proxy on it. Send the kept logs to support; rerun `cmw-upgrade run` to try again.",
            if data_moved {
                ", with the bundle's database back in place (the upgraded one moved aside)"
            } else {
                ""
            }
        )),
        None => Ok("No instance was created on this server; nothing else to undo. The old server still serves.".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_instance_configs() {
        assert_eq!(
            config_version("# c\nclusterName: prod\nversion: \"4.7.2890.0\"\n").as_deref(),
            Some("4.7.2890.0")
        );
        assert_eq!(config_version("#version: 1\n"), None);
    }

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 3), "");
    }
}
