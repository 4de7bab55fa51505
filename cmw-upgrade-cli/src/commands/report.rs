//! `cmw-upgrade report`: the support archive.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use cmw_upgrade_core::exec::utc_stamp;
use cmw_upgrade_core::executor::{CommandSpec, Executor, LocalExecutor};
use cmw_upgrade_core::procedure::state::RunState;
use cmw_upgrade_core::procedure::support::gather_support_files;
use cmw_upgrade_core::procedure::two_servers::Server;

use crate::args::{GlobalArgs, ReportArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::print_outcome;

pub fn run(global: &GlobalArgs, args: ReportArgs) -> Result<ExitStatus, CliError> {
    let store = super::state_store(global);
    let state = RunState::load(store.as_ref(), &args.instance)?;
    // A run from a control point upgraded another server: read it there.
    let remote = match state.as_ref().and_then(|state| state.servers.as_ref()) {
        Some(servers) => Some(Server::connect(&servers.settings.new)?),
        None => None,
    };
    let local = LocalExecutor::new(&global.root);
    let exec: &dyn Executor = match &remote {
        Some(server) => server.executor(),
        None => &local,
    };
    let files = gather_support_files(exec, &args.instance, state.as_ref())?;
    let name = format!(
        "cmw-upgrade-report-{}-{}",
        args.instance,
        utc_stamp(std::time::SystemTime::now())
    );
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(format!("{name}.tar.gz")));
    // tar runs from elsewhere: the archive's path must not depend on that.
    let output = if output.is_absolute() {
        output
    } else {
        std::env::current_dir()?.join(output)
    };
    // Staged in a private folder, packed by the real tar, removed after.
    let staging = cmw_upgrade_core::paths::private_temp_dir("cmw-upgrade-report")?;
    let packed = pack(&staging, &name, &files, &output);
    let _ = std::fs::remove_dir_all(&staging);
    packed?;
    if global.json {
        let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
        print_outcome(
            &serde_json::json!({ "archive": output, "files": names }),
            true,
            false,
        )?;
    } else {
        writeln!(
            crate::output::stdout(),
            "{} ({} files, secrets masked): send it to the platform's support.",
            output.display(),
            files.len()
        )?;
    }
    Ok(ExitStatus::Success)
}

fn pack(
    staging: &std::path::Path,
    name: &str,
    files: &[cmw_upgrade_core::procedure::support::SupportFile],
    output: &std::path::Path,
) -> Result<(), CliError> {
    let top = staging.join(name);
    for file in files {
        let path = top.join(&file.name);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(|source| CliError::WriteFile {
                path: folder.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, &file.bytes).map_err(|source| CliError::WriteFile {
            path: path.clone(),
            source,
        })?;
    }
    // Made 0600 before tar writes into it: masked or not, it is the admin's.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .map_err(|source| CliError::WriteFile {
            path: output.to_path_buf(),
            source,
        })?;
    let tar = CommandSpec::new(["tar", "-czf"])
        .args([output.to_string_lossy().into_owned()])
        .args([
            "-C".to_owned(),
            staging.to_string_lossy().into_owned(),
            name.to_owned(),
        ])
        .with_timeout(std::time::Duration::from_secs(600));
    let result = LocalExecutor::new("/").execute(&tar)?;
    if !result.success() {
        return Err(cmw_upgrade_core::Error::CommandFailed {
            command: tar.display(),
            status: format!("exit code {:?}", result.code),
            output: result.stderr.trim().to_owned(),
            hint: "check that the output's folder exists and is writable".to_owned(),
        }
        .into());
    }
    std::fs::set_permissions(output, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        CliError::WriteFile {
            path: output.to_path_buf(),
            source,
        }
    })?;
    Ok(())
}
