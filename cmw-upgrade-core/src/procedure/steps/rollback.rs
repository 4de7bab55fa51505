//! Undoing a run.

use super::*;

/// Copies the instance's log folder into the bundle's `upgrade-logs/<stamp>`.
pub(super) fn keep_logs(exec: &dyn Executor, settings: &UpgradeSettings) -> Result<String> {
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
pub(in crate::procedure) fn rollback(
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
