//! `cmw-upgrade detect`.

use std::io::{self, Write};
use std::path::Path;

use cmw_upgrade_core::disk::Disk;
use cmw_upgrade_core::os::{detect_os_family_from, OS_RELEASE_PATHS};
use cmw_upgrade_core::{detect_os_family, InstanceLayout, InstanceName, OsFamily, OsInfo};
use serde::Serialize;

use crate::args::{DetectArgs, GlobalArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::print_outcome;

#[derive(Serialize)]
struct DetectReport {
    family: OsFamily,
    distro: Option<String>,
    pretty_name: Option<String>,
    version_id: Option<String>,
    family_source: &'static str,
    web_owner: cmw_upgrade_core::Owner,
    nginx_site_dir: &'static str,
    package_install: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layout: Option<InstanceLayout>,
}

fn read_os_info(global: &GlobalArgs, args: &DetectArgs) -> Result<Option<OsInfo>, CliError> {
    if let Some(path) = &args.os_release {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadArgument {
            path: path.clone(),
            source,
        })?;
        return Ok(Some(detect_os_family(&text)?));
    }
    // Through the disk reader: under --root, the copy's links lead into the copy.
    match detect_os_family_from(&Disk::new(&global.root))? {
        Some(os) => Ok(Some(os)),
        None if args.family.is_some() => Ok(None),
        None => Err(cmw_upgrade_core::Error::NoOsRelease {
            tried: OS_RELEASE_PATHS
                .iter()
                .map(|relative| global.root.join(relative))
                .collect(),
        }
        .into()),
    }
}

pub fn run(global: &GlobalArgs, args: DetectArgs) -> Result<ExitStatus, CliError> {
    // With --family the os-release file is informative only: an unknown distro is fine.
    let os = match read_os_info(global, &args) {
        Ok(os) => os,
        Err(_) if args.family.is_some() => None,
        Err(error) => return Err(error),
    };
    let (family, family_source) = match (args.family, &os) {
        (Some(family), _) => (family, "--family"),
        (None, Some(os)) => (os.family, "os-release"),
        (None, None) => {
            unreachable!("read_os_info returns an error without os-release or --family")
        }
    };
    let disk = Disk::new(&global.root);
    if let Some(instance) = &args.instance {
        cmw_upgrade_core::layout::require_instance(&disk, instance)?;
    }
    let layout = args
        .instance
        .as_ref()
        .map(|instance| disk.layout(instance, family))
        .transpose()?;
    let report = DetectReport {
        family,
        distro: os.as_ref().map(|os| os.distro.clone()),
        pretty_name: os.as_ref().and_then(|os| os.pretty_name.clone()),
        version_id: os.as_ref().and_then(|os| os.version_id.clone()),
        family_source,
        web_owner: family.web_owner(),
        nginx_site_dir: family.nginx_site_dir(),
        package_install: family
            .local_package_install_argv(&[format!("<*.{}>", family.package_extension())]),
        layout,
    };
    if global.json {
        print_outcome(&report, true, false)?;
    } else {
        print_text(&mut crate::output::stdout(), &report)?;
    }
    Ok(ExitStatus::Success)
}

fn print_text(out: &mut impl Write, report: &DetectReport) -> io::Result<()> {
    let distro = match (&report.pretty_name, &report.distro) {
        (Some(pretty), Some(id)) => format!(" ({id}: {pretty})"),
        (None, Some(id)) => format!(" ({id})"),
        _ => String::new(),
    };
    writeln!(
        out,
        "OS family               {}{distro}, from {}",
        report.family, report.family_source
    )?;
    writeln!(out, "web server user         {}", report.web_owner)?;
    writeln!(out, "nginx site folder       {}", report.nginx_site_dir)?;
    writeln!(
        out,
        "install packages        {}",
        report.package_install.join(" ")
    )?;
    let Some(layout) = &report.layout else {
        return Ok(());
    };
    writeln!(out)?;
    writeln!(out, "Instance {}", layout.instance)?;
    show(out, "instance config", &layout.instance_config, None)?;
    show(out, "data folder", &layout.data_root, None)?;
    if let Some(link) = &layout.data_root_link {
        writeln!(out, "  {:<22}{}", "  links to", link.display())?;
    }
    show(
        out,
        "database",
        &layout.database.path,
        Some(layout.database.origin.as_str()),
    )?;
    show(
        out,
        "uploaded files",
        &layout.streams.path,
        Some(layout.streams.origin.as_str()),
    )?;
    show(
        out,
        "temp",
        &layout.temp.path,
        Some(layout.temp.origin.as_str()),
    )?;
    show(
        out,
        "local temp",
        &layout.local_temp.path,
        Some(layout.local_temp.origin.as_str()),
    )?;
    if let Some(backup) = &layout.backup_folder {
        show(
            out,
            "backup folder",
            &backup.path,
            Some(backup.origin.as_str()),
        )?;
    }
    show(out, "binaries", &layout.www, None)?;
    for file in &layout.www_config_files {
        show(out, "  config", file, None)?;
    }
    show(out, "Agent.config", &layout.agent_config, None)?;
    show(out, "nginx site", &layout.nginx_site, None)?;
    show(out, "env file", &layout.env_file, None)?;
    show(
        out,
        "logs",
        &layout.log_dir.path,
        Some(layout.log_dir.origin.as_str()),
    )?;
    for unit in &layout.units {
        show(out, &format!("unit {}", unit.name), &unit.path, None)?;
    }
    show(out, "versions", &layout.versions_dir, None)?;
    writeln!(
        out,
        "  {:<22}{}  ({})",
        "data owner", layout.data_owner, layout.data_owner_origin
    )
}

/// One layout line: label, path, `[missing]` when absent, and where it came from.
fn show(out: &mut impl Write, label: &str, path: &Path, origin: Option<&str>) -> io::Result<()> {
    let exists = if path.exists() { "" } else { "  [missing]" };
    match origin {
        Some(origin) if origin != "default" => {
            writeln!(out, "  {label:<22}{}{exists}  ({origin})", path.display())
        }
        _ => writeln!(out, "  {label:<22}{}{exists}", path.display()),
    }
}

/// One line of `cmw-upgrade instances`.
#[derive(Serialize)]
struct InstanceLine {
    name: String,
    version: Option<String>,
    /// `active`, `inactive` or `unknown` (systemd could not be asked).
    service: &'static str,
}

/// `cmw-upgrade instances`: the instances configured on this server, with
/// their versions and whether their service runs.
pub fn instances(global: &GlobalArgs) -> Result<ExitStatus, CliError> {
    use cmw_upgrade_core::backup::ServiceState;
    let disk = Disk::new(&global.root);
    let runner = cmw_upgrade_core::executor::LocalExecutor::new(&global.root);
    let lines: Vec<InstanceLine> = cmw_upgrade_core::layout::configured_instances(&disk)?
        .into_iter()
        .map(|found| {
            let service = match InstanceName::new(&found.name)
                .map(|name| super::backup::service_state(&runner, &name))
            {
                Ok(ServiceState::Running) => "active",
                Ok(ServiceState::Stopped) => "inactive",
                _ => "unknown",
            };
            InstanceLine {
                name: found.name,
                version: found.version,
                service,
            }
        })
        .collect();
    if global.json {
        print_outcome(&serde_json::json!({ "instances": lines }), true, false)?;
        return Ok(ExitStatus::Success);
    }
    let mut out = crate::output::stdout();
    if lines.is_empty() {
        writeln!(
            out,
            "No instance is configured here ({} is empty or missing).",
            cmw_upgrade_core::layout::INSTANCE_CONFIG_DIR
        )?;
    }
    for line in &lines {
        writeln!(
            out,
            "{:<20} {:<14} {}",
            line.name,
            line.version.as_deref().unwrap_or("?"),
            line.service
        )?;
    }
    Ok(ExitStatus::Success)
}
