//! One module per command; each returns the exit status its outcome means.

mod backup;
mod config;
mod demo;
mod demo_ssh;
mod detect;
mod logs;
mod prune;
mod transfer;
mod two_servers;
mod upgrade;

use crate::args::{BundleCommand, Cli, Command, ConfigCommand, LogsCommand};
use crate::error::CliError;
use crate::exit::ExitStatus;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitStatus, CliError> {
    match cli.command {
        Command::Detect(args) => detect::run(&cli.global, args),
        Command::Logs(LogsCommand::Verdict(args)) => logs::verdict(&cli.global, args),
        Command::PruneCaches(args) => prune::run(&cli.global, args),
        Command::Config(ConfigCommand::Migrate(args)) => config::migrate(&cli.global, args),
        Command::Backup(args) => backup::run(&cli.global, args),
        Command::Restore(args) => backup::restore(&cli.global, args),
        Command::Plan(args) => upgrade::plan(&cli.global, args),
        Command::Run(args) => upgrade::run(&cli.global, args),
        Command::Status(args) => upgrade::status(&cli.global, args),
        Command::Rollback(args) => upgrade::rollback(&cli.global, args),
        Command::Upgrade(args) => two_servers::upgrade(&cli.global, args),
        Command::Check(args) => upgrade::check(&cli.global, args),
        Command::Demo(args) => demo::run(&cli.global, args),
        Command::SimulatedService(args) => demo::simulated_service(&cli.global, args),
        Command::Agent => agent(&cli.global),
        Command::Bundle(BundleCommand::Transfer(args)) => transfer::transfer(&cli.global, args),
        Command::BundleSend(args) => transfer::send(&cli.global, args),
        Command::BundleReceive(args) => transfer::receive(&cli.global, args),
        Command::Completions(args) => completions(args),
        Command::Man(args) => man(args),
    }
}

/// Prints a completion script for the shell.
fn completions(args: crate::args::CompletionsArgs) -> Result<ExitStatus, CliError> {
    use clap::CommandFactory;
    let mut command = crate::args::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, "cmw-upgrade", &mut out);
    Ok(ExitStatus::Success)
}

/// Prints the main man page, or writes one page per visible command into a folder.
fn man(args: crate::args::ManArgs) -> Result<ExitStatus, CliError> {
    use clap::CommandFactory;
    let command = crate::args::Cli::command();
    let Some(dir) = args.dir else {
        clap_mangen::Man::new(command).render(&mut std::io::stdout().lock())?;
        return Ok(ExitStatus::Success);
    };
    std::fs::create_dir_all(&dir).map_err(|source| CliError::WriteFile {
        path: dir.clone(),
        source,
    })?;
    // `generate_to` names each page after its command path: cmw-upgrade-logs-verdict.1.
    let mut command = command;
    command.build();
    let mut pending = vec![command];
    while let Some(command) = pending.pop() {
        pending.extend(
            command
                .get_subcommands()
                .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
                .cloned(),
        );
        let name = command
            .get_display_name()
            .unwrap_or_else(|| command.get_name())
            .to_owned();
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        std::fs::write(&path, page).map_err(|source| CliError::WriteFile { path, source })?;
    }
    Ok(ExitStatus::Success)
}

/// Serves the agent protocol on stdin and stdout until stdin ends.
fn agent(global: &crate::args::GlobalArgs) -> Result<ExitStatus, CliError> {
    let local = cmw_upgrade_core::executor::LocalExecutor::new(&global.root);
    let stdin = std::io::stdin().lock();
    // The protocol's own channel: file contents travel here and must arrive
    // as they are; what the controller prints from them is masked there.
    let stdout = std::io::stdout().lock();
    cmw_upgrade_core::executor::agent::serve(&local, stdin, stdout)?;
    Ok(ExitStatus::Success)
}

/// The family of the server under `root`: the override, or its os-release.
fn family_of_root(
    root: &std::path::Path,
    family: Option<cmw_upgrade_core::OsFamily>,
) -> Result<cmw_upgrade_core::OsFamily, CliError> {
    if let Some(family) = family {
        return Ok(family);
    }
    match cmw_upgrade_core::os::detect_os_family_from(&cmw_upgrade_core::disk::Disk::new(root))? {
        Some(os) => Ok(os.family),
        None => Err(cmw_upgrade_core::Error::NoOsRelease {
            tried: cmw_upgrade_core::os::OS_RELEASE_PATHS
                .iter()
                .map(|relative| root.join(relative))
                .collect(),
        }
        .into()),
    }
}
