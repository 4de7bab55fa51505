//! One module per command; each returns the exit status its outcome means.

mod config;
mod detect;
mod logs;
mod prune;

use crate::args::{Cli, Command, ConfigCommand, LogsCommand};
use crate::error::CliError;
use crate::exit::ExitStatus;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitStatus, CliError> {
    match cli.command {
        Command::Detect(args) => detect::run(&cli.global, args),
        Command::Logs(LogsCommand::Verdict(args)) => logs::verdict(&cli.global, args),
        Command::PruneCaches(args) => prune::run(&cli.global, args),
        Command::Config(ConfigCommand::Migrate(args)) => config::migrate(&cli.global, args),
    }
}

/// The family of the server under `root`: the override, or its os-release.
fn family_of_root(
    root: &std::path::Path,
    family: Option<cmw_upgrade_core::OsFamily>,
) -> Result<cmw_upgrade_core::OsFamily, CliError> {
    if let Some(family) = family {
        return Ok(family);
    }
    let tried = vec![root.join("etc/os-release"), root.join("usr/lib/os-release")];
    for path in &tried {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(cmw_upgrade_core::detect_os_family(&text)?.family);
        }
    }
    Err(CliError::NoOsRelease { tried })
}
