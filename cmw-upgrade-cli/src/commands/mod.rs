//! One module per command; each returns the exit status its outcome means.

mod detect;
mod logs;
mod prune;

use crate::args::{Cli, Command, LogsCommand};
use crate::error::CliError;
use crate::exit::ExitStatus;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitStatus, CliError> {
    match cli.command {
        Command::Detect(args) => detect::run(&cli.global, args),
        Command::Logs(LogsCommand::Verdict(args)) => logs::verdict(&cli.global, args),
        Command::PruneCaches(args) => prune::run(&cli.global, args),
    }
}
