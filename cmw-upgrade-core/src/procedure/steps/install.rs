//! Before the data: the bundle verified, the prerequisites, the new version, the instance.

use super::*;

/// The bundle's manifest, read and parsed, refused when it is missing or
/// belongs to another instance. Both the preflight and the step ask this.
pub(in crate::procedure) fn read_bundle_manifest(
    exec: &dyn Executor,
    settings: &UpgradeSettings,
) -> Result<serde_json::Value> {
    let manifest_path = format!("{}/manifest.json", settings.bundle);
    let Some(manifest) = exec.read_file(&manifest_path)? else {
        return Err(check_failed(
            "finding the old server's bundle",
            format!(
                "no {manifest_path}; make it on the old server with: cmw-upgrade backup \
                 --instance {} --dest DIR, then bring DIR here",
                settings.instance
            ),
        ));
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|error| Error::BundleDamaged {
            bundle: settings.bundle.clone().into(),
            details: format!("manifest.json does not parse: {error}"),
        })?;
    if let Some(owner) = manifest
        .get("instance")
        .and_then(serde_json::Value::as_str)
        .filter(|owner| *owner != settings.instance.as_str())
    {
        return Err(check_failed(
            "checking the bundle",
            format!(
                "{} is a backup of instance {owner}, not {}",
                settings.bundle, settings.instance
            ),
        ));
    }
    Ok(manifest)
}

impl Step<'_> {
    pub(crate) fn verify_bundle(&mut self) -> Result<()> {
        let bundle = self.settings.bundle.clone();
        let manifest = read_bundle_manifest(self.exec(), self.settings)?;
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

    /// The tarballs are inputs, there before the run: a plan checks them too.
    fn require_file(&self, path: &str, what: &str) -> Result<()> {
        if self.exec().exists(path)? {
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
}

/// `dpkg -i`/`rpm -i` of packages already there is not a failure to stop on.
fn already_installed(output: &CommandOutput) -> bool {
    let text = format!("{}{}", output.stdout, output.stderr);
    text.contains("is already installed")
}
