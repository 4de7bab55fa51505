//! The steps themselves, and the rollback. Every effect goes through the
//! executor; reads go through it too, so a dry run plans from the real server.
//!
//! One file per group of steps, in the order they run: [`install`] (the
//! bundle, the prerequisites, the version, the instance), [`service`] (its
//! config and health), [`data`] (moving the data over and upgrading it), and
//! [`rollback`].

use std::path::Path;
use std::time::{Duration, Instant};

use super::dist::{PlatformTarball, PrerequisitesTarball};
use super::state::{RunState, StepStatus, STATE_ROOT};
use super::{Event, EventSink, UpgradeSettings};
use crate::accounts::resolve_owner;
use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::exec::{utc_stamp, CommandOutput};
use crate::executor::{CommandSpec, Executor, ToolAction};
use crate::instance::InstanceName;
use crate::layout::{config_version, InstanceLayout, SYSTEMD_OVERRIDE_DIR, SYSTEMD_UNIT_DIR};
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
    /// Checked in the waits, which may last hours.
    cancel: &'a Cancel,
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
        cancel: &'a Cancel,
    ) -> Self {
        Step {
            exec,
            store,
            settings,
            state,
            index,
            events,
            cancel,
        }
    }

    /// [`Error::Cancelled`] once the run was asked to stop: the waits call it
    /// between polls, where stopping changes nothing on the server.
    fn check_cancelled(&self, waiting_for: &str) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled {
                left: format!(
                    "stopped while waiting for {waiting_for}; this step starts over when the \
                     same command runs again, or undo with: {}",
                    rollback_command(self.instance())
                ),
            });
        }
        Ok(())
    }
}

/// What a step does, as the step table holds it.
pub(crate) type StepFn = fn(&mut Step<'_>) -> Result<()>;

fn work_dir(instance: &InstanceName) -> String {
    format!("{STATE_ROOT}/{instance}")
}

pub(in crate::procedure) fn dist_dir(instance: &InstanceName) -> String {
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

pub(super) fn check_failed(what: &str, details: String) -> Error {
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
    let spec = CommandSpec::new(["systemctl", "is-active", unit])
        .with_timeout(SERVICE_TIMEOUT)
        .read_only();
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

    /// The upgrade verdict from the instance's logs; `None` in a dry run.
    fn verdict(&self) -> Result<Option<crate::logs::UpgradeVerdict>> {
        self.exec()
            .tool(&ToolAction::Verdict {
                instance: Some(self.instance().clone()),
                log_dir: None,
                // The log folder was emptied (its content set aside) before the
                // service started on the transferred data: every dated log in it
                // is this run's, and a run across midnight writes two.
                since: Some(crate::logs::Since::EARLIEST.as_str().to_owned()),
            })?
            .verdict()
    }

    fn note(&mut self, text: String) {
        (self.events)(&Event::Note { text });
    }
}

mod data;
mod install;
pub(super) use install::read_bundle_manifest;
mod rollback;
mod service;

use rollback::keep_logs;
pub(super) use rollback::rollback;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 3), "");
    }
}
