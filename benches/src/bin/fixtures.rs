//! Writes fixtures for the comparison scripts and the shipped example.
//!
//! ```text
//! cmw-upgrade-fixtures server DIR [deb|rpm|alt]          a whole old-version server tree
//! cmw-upgrade-fixtures new-server DIR [FAMILY] [VERSION] [tuned]  a new instance's config files
//! cmw-upgrade-fixtures database DIR ENTITIES FILES BYTES  an Ignite Database folder
//! cmw-upgrade-fixtures log FILE BYTES [ERROR_EVERY]       a big upgrade log
//! ```
//! Prints one line of facts about what it wrote.

use std::path::PathBuf;
use std::process::ExitCode;

use cmw_upgrade_core::OsFamily;
use cmw_upgrade_tests::{
    write_big_log, write_ignite_database, write_new_server, write_server, DatabaseSpec, ServerSpec,
};

const USAGE: &str = "usage:\n  cmw-upgrade-fixtures server DIR [deb|rpm|alt]\n  cmw-upgrade-fixtures new-server DIR [deb|rpm|alt] [VERSION] [tuned]\n  cmw-upgrade-fixtures database DIR ENTITIES FILES_PER_GROUP BYTES_PER_FILE\n  cmw-upgrade-fixtures log FILE BYTES [ERROR_EVERY]";

fn number(text: Option<&String>, what: &str) -> Result<u64, String> {
    text.ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("{what} must be a whole number"))
}

fn run(args: &[String]) -> Result<String, String> {
    let io = |error: std::io::Error| error.to_string();
    match args.first().map(String::as_str) {
        Some("server") => {
            let dir = PathBuf::from(args.get(1).ok_or("missing DIR")?);
            let family = match args.get(2) {
                Some(text) => text.parse::<OsFamily>()?,
                None => OsFamily::Deb,
            };
            let summary = write_server(
                &dir,
                &ServerSpec {
                    family,
                    ..ServerSpec::default()
                },
            )
            .map_err(io)?;
            Ok(format!(
                "server written: {} database files, {} prunable entries",
                summary.files,
                summary.prunable.len()
            ))
        }
        Some("new-server") => {
            let dir = PathBuf::from(args.get(1).ok_or("missing DIR")?);
            let family = args
                .get(2)
                .map_or(Ok(OsFamily::Deb), |text| text.parse::<OsFamily>())?;
            let version = args.get(3).map_or("5.0.1234.0", String::as_str);
            let tuned = args.get(4).is_some_and(|flag| flag == "tuned");
            write_new_server(&dir, family, "prod", version, tuned).map_err(io)?;
            Ok(format!("new {version} server written for instance prod"))
        }
        Some("database") => {
            let dir = PathBuf::from(args.get(1).ok_or("missing DIR")?);
            let spec = DatabaseSpec {
                node_folders: 1,
                entities: number(args.get(2), "ENTITIES")? as usize,
                files_per_group: number(args.get(3), "FILES_PER_GROUP")? as usize,
                bytes_per_file: number(args.get(4), "BYTES_PER_FILE")? as usize,
                with_snapshot: false,
            };
            let summary = write_ignite_database(&dir, &spec).map_err(io)?;
            Ok(format!(
                "database written: {} files, {} bytes; {} prunable entries holding {} bytes",
                summary.files,
                summary.bytes,
                summary.prunable.len(),
                summary.prunable_bytes
            ))
        }
        Some("log") => {
            let file = PathBuf::from(args.get(1).ok_or("missing FILE")?);
            let bytes = number(args.get(2), "BYTES")?;
            let error_every = match args.get(3) {
                Some(_) => number(args.get(3), "ERROR_EVERY")?,
                None => 0,
            };
            let summary = write_big_log(&file, bytes, error_every).map_err(io)?;
            Ok(format!(
                "log written: {} bytes, {} lines, {} error records",
                summary.bytes, summary.lines, summary.error_records
            ))
        }
        _ => Err(USAGE.to_owned()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}
