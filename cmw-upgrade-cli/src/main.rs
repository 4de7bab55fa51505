//! `cmw-upgrade`: upgrade a Comindware Platform instance without stopping it.
//!
//! The binary only parses arguments, calls the core and prints; every decision
//! lives in `cmw-upgrade-core`.

mod args;
mod commands;
mod error;
mod exit;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let json = cli.global.json;
    match commands::run(cli) {
        Ok(status) => status.into(),
        // `cmw-upgrade ... | head` closing the pipe early is not an error worth a message.
        Err(error::CliError::Output(io_error))
            if io_error.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            exit::ExitStatus::Success.into()
        }
        Err(error) => {
            output::print_error(&error, json);
            if error.kind() == cmw_upgrade_core::ErrorKind::Locked.as_str() {
                exit::ExitStatus::Locked.into()
            } else {
                exit::ExitStatus::BadInput.into()
            }
        }
    }
}
