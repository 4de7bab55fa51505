//! The new instance's config carried over, and its health.

use super::*;
use crate::config::migrate::migration_refusal;

impl Step<'_> {
    pub(crate) fn migrate_config(&mut self) -> Result<()> {
        let instance = self.instance().clone();
        let from = format!("{}/config", self.settings.bundle);
        let report = self
            .exec()
            .tool(&ToolAction::MigrateConfig {
                from: from.clone(),
                instance: instance.clone(),
                family: self.settings.family,
                fix: self.settings.fix_config,
                check: false,
            })?
            .migrate()?
            .unwrap_or_default();
        // A plan gets the migration's check-mode report: its errors are what
        // the run would stop on, so the plan stops on them too.
        if let Some(refusal) = migration_refusal(&report, &from, &instance) {
            return Err(refusal);
        }
        for written in &report.written {
            let key = format!("original:{}", written.file);
            if self.state.artifact(&key).is_none() {
                self.remember(&key, &written.backup)?;
            }
        }
        for warning in &report.warnings {
            self.note(format!("config: {warning}"));
        }
        if !report.to_do.is_empty() {
            for note in &report.to_do {
                self.note(format!("to do by hand: {}", note.message));
                if !self.state.to_do.contains(note) {
                    self.state.to_do.push(note.clone());
                }
            }
            self.state.save(self.store)?;
        }
        run_ok(
            self.exec(),
            // Not read-only for a plan: nginx -t makes its pid file and temp
            // folders when they are missing. A plan tests the migrated site
            // alone, on a temp copy, in the migration's check mode.
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
            self.check_cancelled("the site to answer")?;
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

    pub(crate) fn final_check(&mut self) -> Result<()> {
        let instance = self.instance().clone();
        self.wait_healthy("the final check")?;
        if let Some(report) = self
            .verdict()?
            .filter(|report| report.verdict != Verdict::Succeeded)
        {
            return Err(check_failed(
                "the final check",
                format!("the upgrade verdict is now {}", report.verdict.as_str()),
            ));
        }
        let units = instance_units(self.exec(), &instance)?;
        all_active(self.exec(), &units)
    }
}
