//! Undoing a run.

use super::*;

/// Copies the instance's log folder into the bundle's `upgrade-logs/<stamp>`.
pub(super) fn keep_logs(exec: &dyn Executor, settings: &UpgradeSettings) -> Result<String> {
    let layout = layout(exec, settings)?;
    // Beside the data they explain; in the run's own folder when the bundle is gone.
    let keeper = if exec.exists(&settings.bundle)? {
        settings.bundle.clone()
    } else {
        work_dir(&settings.instance)
    };
    let folder = format!("{keeper}/{}", crate::backup::manifest::KEPT_LOGS_FOLDER);
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
    let mut not_done: Vec<String> = Vec::new();
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
        if exec.exists(&format!("{}/manifest.json", settings.bundle))? {
            exec.tool(&ToolAction::Restore {
                bundle: settings.bundle.clone(),
                instance: instance.clone(),
                family: settings.family,
            })?;
        } else {
            // Everything else is still undone; the database is left as it is.
            not_done.push(format!(
                "the database was not restored: the bundle {} is gone (the new instance's \
                 database stays in place, stopped); bring the bundle back and run the rollback \
                 again, or restore it by hand with: cmw-upgrade restore BUNDLE --instance {instance} --replace",
                settings.bundle
            ));
        }
    }
    let previous = state.artifact("previous_version").map(str::to_owned);
    let restored = data_moved && not_done.is_empty();
    let done = match previous {
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
                "Version {previous} of {instance} is back on this server, {}. Keep DNS and the \
                 upstream proxy on the old server.",
                if restored {
                    "on the database from the bundle (the upgraded one is kept beside it)"
                } else {
                    "on the database it has now"
                }
            ))
        }
        None if created => Ok(format!(
            "{instance} is stopped on this server{}. The old server was never changed by this run: \
             keep DNS and the upstream proxy on it (check that it answers). For the platform's \
             support, gather the kept logs and the run with: cmw-upgrade report --instance \
             {instance}; run the upgrade again to try again.",
            if restored {
                ", with the bundle's database back in place (the upgraded one moved aside)"
            } else {
                ""
            }
        )),
        None => Ok("No instance was created on this server; nothing else to undo. The old server was never changed by this run.".to_owned()),
    };
    if not_done.is_empty() {
        return done;
    }
    // What could be done is done; the rollback is not complete, and says why.
    Err(Error::StepFailed {
        instance: instance.to_string(),
        step: "rollback".to_owned(),
        details: format!(
            "{} Not done: {}",
            done.unwrap_or_else(|error| error.to_string()),
            not_done.join("; ")
        ),
    })
}
