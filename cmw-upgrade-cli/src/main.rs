//! `cmw-upgrade`: upgrade a Comindware Platform instance without stopping it.
//!
//! The binary only parses arguments, calls the core and prints; every decision
//! lives in `cmw-upgrade-core`.

mod args;
mod args_cutover;
mod commands;
mod error;
mod exit;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return argument_error(&error),
    };
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

/// A command line the parser refused: clap's message on stderr (help and
/// --version print as usual), and with `--json` anywhere on the line also
/// `{"ok": false, "error": {"kind": "bad_arguments", "message"}}` on stdout,
/// so a script reads every refusal the same way. Exit 2.
fn argument_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let _ = error.print();
    if std::env::args_os().any(|arg| arg == "--json") {
        let rendered = error.render().to_string();
        let message = rendered.trim().trim_start_matches("error: ");
        let document = serde_json::json!({
            "ok": false,
            "error": { "kind": "bad_arguments", "message": message },
        });
        let _ = output::print_json(&document);
    }
    exit::ExitStatus::BadInput.into()
}
