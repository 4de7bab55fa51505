//! The data: moved over, upgraded by the platform, backed up, pruned, put in place.

use super::*;

impl Step<'_> {
    /// Refuses, with the numbers, a copy of `source` to `target` that the
    /// file system of `target` cannot hold (checked before anything is copied).
    fn ensure_room(&self, target: &str, source: &str) -> Result<()> {
        let Some(bytes) = crate::executor::preflight::size_of(self.exec(), source) else {
            return Ok(());
        };
        let Some(space) = crate::executor::preflight::free_space_of(self.exec(), target) else {
            return Ok(());
        };
        // The same margin as a backup's: a block per file is not known here.
        let needed = crate::backup::bundle::space_needed(bytes, 0, 4096);
        if space.available_bytes < needed {
            return Err(Error::NotEnoughSpace {
                path: std::path::PathBuf::from(&space.measured),
                needed,
                data: bytes,
                available: space.available_bytes,
            });
        }
        Ok(())
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
        self.set_earlier_logs_aside()?;
        systemctl(self.exec(), "start", &[format!("comindware{instance}")])?;
        all_active(self.exec(), &[format!("comindware{instance}")])
    }

    /// Moves what the log folder holds into `<log folder>.before-<stamp>`
    /// beside it (kept, never deleted), so the verdict reads only what the
    /// upgrade of this transfer writes: an earlier attempt's "completed"
    /// records (a retry after a rollback) must not pass for this one's.
    /// The folder itself stays, with its owner, for the service to write in.
    fn set_earlier_logs_aside(&mut self) -> Result<()> {
        let log_dir = server_path(&layout(self.exec(), self.settings)?.log_dir.path);
        let names = self.exec().list_dir(&log_dir)?;
        let stamp = utc_stamp(std::time::SystemTime::now());
        let aside =
            self.artifact_or("earlier_logs_aside", || format!("{log_dir}.before-{stamp}"))?;
        if names.is_empty() {
            return Ok(());
        }
        self.exec().create_dir_all(&aside)?;
        for entry in names {
            // A rerun after a crash mid-move finds some names taken: never overwrite.
            let mut target = format!("{aside}/{}", entry.name);
            let mut copy = 1;
            while self.exec().exists(&target)? {
                target = format!("{aside}/{}.{copy}", entry.name);
                copy += 1;
            }
            self.exec()
                .rename(&format!("{log_dir}/{}", entry.name), &target)?;
        }
        Ok(())
    }

    pub(crate) fn wait_upgrade(&mut self) -> Result<()> {
        let instance = self.instance().clone();
        let unit = format!("comindware{instance}");
        let limit = self.settings.upgrade_timeout();
        // A rerun after a failed or timed-out wait finds the instance stopped
        // (that failure stopped it): start it once and go on waiting.
        if !self.dry() && !is_active(self.exec(), &unit)? {
            self.note(format!(
                "{unit} is not running (an earlier attempt stopped it); starting it to go on waiting"
            ));
            systemctl(self.exec(), "start", std::slice::from_ref(&unit))?;
        }
        let started = Instant::now();
        let problem = loop {
            self.check_cancelled("the data-structure upgrade")?;
            let Some(report) = self.verdict()? else {
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
        // Logs kept by an earlier attempt of this step stay where they are.
        let kept = match self.state.artifact("kept_logs") {
            Some(kept) => kept.to_owned(),
            None => {
                let kept = keep_logs(self.exec(), self.settings)?;
                self.remember("kept_logs", &kept)?;
                kept
            }
        };
        // Not a check that left things as they were: the instance was stopped
        // and its logs copied, so the kind says a step failed after effects.
        Err(Error::StepFailed {
            instance: instance.to_string(),
            step: "wait-upgrade".to_owned(),
            details: format!(
                "the data-structure upgrade: {problem}. The instance is stopped; its logs are kept \
                 in {kept}. The old server was not changed by this run. Roll back with: {}",
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
            // The instance is stopped: a copy is consistent.
            method: crate::backup::manifest::BackupMethod::Copy,
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
        if !self.dry() {
            self.ensure_room(&pruned, &format!("{bundle}/database"))?;
        }
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
}
