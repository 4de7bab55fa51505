//! Printing: JSON for scripts, aligned text for people, errors on stderr.

use std::io::{self, Write};

use serde::Serialize;

use crate::error::CliError;

/// Prints a value as one pretty JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value).map_err(io::Error::from)?;
    writeln!(stdout)?;
    Ok(())
}

/// Prints an error: always as text on stderr, and with --json also as
/// `{"error": {"kind", "message"}}` on stdout so scripts see why nothing else came.
pub fn print_error(error: &CliError, json: bool) {
    eprintln!("error: {error}");
    if json {
        let document = serde_json::json!({
            "error": { "kind": error.kind(), "message": error.to_string() }
        });
        println!("{document}");
    }
}

pub use cmw_upgrade_core::units::human_bytes;

/// One carried configuration value as `file: key = new (from old_key)`;
/// `removed` stands for a value the migration drops.
pub fn change_line(change: &cmw_upgrade_core::config::Change, removed: &str) -> String {
    let from = change
        .from
        .as_deref()
        .map(|from| format!(" (from {from})"))
        .unwrap_or_default();
    let new = change.new.as_deref().unwrap_or(removed);
    format!("{}: {} = {new}{from}", change.file, change.key)
}

/// A duration as `1h02m03s`, `4m05s` or `7s`.
pub fn human_duration(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}h{minutes:02}m{seconds:02}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(
            human_duration(std::time::Duration::from_secs(3723)),
            "1h02m03s"
        );
        assert_eq!(human_duration(std::time::Duration::from_secs(65)), "1m05s");
        assert_eq!(human_duration(std::time::Duration::from_secs(7)), "7s");
    }
}
