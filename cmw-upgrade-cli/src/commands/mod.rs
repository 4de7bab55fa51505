//! One module per command; each returns the exit status its outcome means.

mod backup;
mod cleanup;
mod config;
mod cutover;
mod cutover_around;
mod cutover_probe;
mod cutover_proxy;
mod demo;
mod demo_cutover;
mod demo_ssh;
mod detect;
mod logs;
mod prune;
mod report;
mod transfer;
mod two_servers;
mod upgrade;

use crate::args::{BundleCommand, Cli, Command, ConfigCommand, CutoverCommand, LogsCommand};
use crate::error::CliError;
use crate::exit::ExitStatus;

/// The commands that change a live server's files, services and owners:
/// as another user they would fail half-way, so they say so first, before
/// anything (as apt's "are you root?"). Under `--root DIR` (a copy, a test
/// tree) a user who owns the tree may run them.
fn require_root(cli: &Cli) -> Result<(), CliError> {
    let what = match &cli.command {
        Command::Run(_) => "run",
        Command::Restore(_) => "restore",
        Command::Rollback(_) => "rollback",
        Command::Demo(_) => "demo",
        _ => return Ok(()),
    };
    let live =
        cli.global.root == std::path::Path::new("/") || matches!(cli.command, Command::Demo(_));
    if live && !cmw_upgrade_core::accounts::running_as_root() {
        return Err(cmw_upgrade_core::Error::CheckFailed {
            what: format!("starting `cmw-upgrade {what}`"),
            details: format!(
                "it needs root (are you root?): it changes files, owners and services that \
                 belong to root and the platform's account; run it as root, e.g. sudo \
                 cmw-upgrade {what} …"
            ),
        }
        .into());
    }
    Ok(())
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitStatus, CliError> {
    // What another cmw-upgrade reads keeps its paths as they are.
    if !matches!(
        cli.command,
        Command::Agent | Command::BundleSend(_) | Command::BundleReceive(_)
    ) && cli.global.root != std::path::Path::new("/")
    {
        crate::output::show_paths_as_under(&cli.global.root);
    }
    require_root(&cli)?;
    match cli.command {
        Command::Detect(args) => detect::run(&cli.global, args),
        Command::Instances => detect::instances(&cli.global),
        Command::Cleanup(args) => cleanup::run(&cli.global, args),
        Command::Report(args) => report::run(&cli.global, args),
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
        Command::Cutover(CutoverCommand::Plan(args)) => cutover::plan(&cli.global, args),
        Command::Cutover(CutoverCommand::Apply(args)) => cutover::apply(&cli.global, args),
        Command::Cutover(CutoverCommand::Verify(args)) => cutover::verify(&cli.global, args),
        Command::Cutover(CutoverCommand::Prepare(args)) => cutover::prepare(&cli.global, args),
        Command::Cutover(CutoverCommand::Finish(args)) => cutover::finish(&cli.global, args),
        Command::Cutover(CutoverCommand::Revert(args)) => cutover::revert(&cli.global, args),
        Command::Cutover(CutoverCommand::HaproxyCommand(args)) => {
            cutover::haproxy_command(&cli.global, args)
        }
        Command::Cutover(CutoverCommand::Reach(args)) => cutover::reach(&cli.global, args),
        Command::Cutover(CutoverCommand::ForwardOld(args)) => {
            cutover_around::forward_old(&cli.global, args)
        }
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

/// Where this machine's run state is kept: `--state DIR`, or the tool's
/// folder under `--root`.
fn state_store(global: &crate::args::GlobalArgs) -> Box<dyn cmw_upgrade_core::executor::Executor> {
    match &global.state {
        Some(folder) => Box::new(cmw_upgrade_core::procedure::state::StateFolder::new(folder)),
        None => Box::new(cmw_upgrade_core::executor::LocalExecutor::new(&global.root)),
    }
}

/// `--state` is for runs driven from a control point; a run on the server
/// itself keeps its state beside what it changes.
fn refuse_state_folder(global: &crate::args::GlobalArgs) -> Result<(), CliError> {
    if global.state.is_some() {
        return Err(cmw_upgrade_core::Error::BadRequest {
            details: "--state keeps the state of a run driven from a control point (cmw-upgrade \
                      upgrade); a run on this server keeps it in /var/lib/cmw-upgrade under --root"
                .to_owned(),
        }
        .into());
    }
    Ok(())
}

/// Asks `question` on a terminal (yes/no, no by default); elsewhere only
/// `yes` (`--yes`) agrees. `Err` says why not, naming `what` it would do.
fn confirm(yes: bool, question: &str, what: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "{what}; pass --yes to confirm it when not on a terminal"
        ));
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return Err("no answer".to_owned());
    }
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err("not confirmed".to_owned())
    }
}

/// A path named on the command line for the server the command acts on:
/// placed under `--root` as [`cmw_upgrade_core::paths::server_path_argument`]
/// says (as given under `/`).
fn server_arg(
    global: &crate::args::GlobalArgs,
    path: &std::path::Path,
    option: &str,
) -> Result<std::path::PathBuf, CliError> {
    Ok(cmw_upgrade_core::paths::server_path_argument(
        &global.root,
        path,
        option,
    )?)
}

/// `--root R ` (shell-quoted, with the trailing space) for a command the
/// output suggests, when the command ran under a root; nothing under `/`.
fn root_option(global: &crate::args::GlobalArgs) -> String {
    if global.root == std::path::Path::new("/") {
        String::new()
    } else {
        format!(
            "--root {} ",
            cmw_upgrade_core::executor::shell_quote(&global.root.to_string_lossy())
        )
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
