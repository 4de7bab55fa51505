//! What the platform's support asks for after a failed upgrade, gathered in
//! one go: the run state and its transcript, the upgrade verdict, the config
//! migration's report, the instance's logs (and those a rollback kept), the
//! versions, the OS and its family — every secret masked.
//!
//! Everything is read through the executor, so the same gathering works on
//! this server or on a new server reached from a control point. A part that
//! cannot be read does not stop the rest: the summary says what is missing
//! and why.

use serde::Serialize;

use super::state::RunState;
use crate::error::Result;
use crate::executor::{Executor, ToolAction};
use crate::instance::InstanceName;
use crate::layout::{configured_instances, read_log_dir};
use crate::secrets::{mask, mask_json};
use crate::server::NodeKind;

/// The most of one log kept (its end): support reads the last records.
pub const LOG_TAIL_BYTES: usize = 8 << 20;

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportFile {
    /// Its path inside the archive (`logs/upgrade20261128.log`).
    pub name: String,
    /// Its content, secrets masked.
    pub bytes: Vec<u8>,
}

/// What the archive's `summary.json` says.
#[derive(Debug, Clone, Serialize)]
struct Summary<'a> {
    tool_version: &'a str,
    instance: &'a str,
    /// The files gathered.
    files: Vec<String>,
    /// What could not be gathered, and why.
    missing: Vec<String>,
}

/// Gathers the support files of `instance` on the server `exec` reaches,
/// with the run's `state` when one is recorded. Never fails for a part that
/// cannot be read: the summary lists it.
///
/// # Errors
/// [`crate::Error::Internal`] when the summary does not serialize.
pub fn gather_support_files(
    exec: &dyn Executor,
    instance: &InstanceName,
    state: Option<&RunState>,
) -> Result<Vec<SupportFile>> {
    let mut files = Vec::new();
    let mut missing = Vec::new();
    let mut json = |name: &str, value: std::result::Result<serde_json::Value, String>| match value {
        Ok(mut value) => {
            mask_json(&mut value);
            let mut bytes = serde_json::to_vec_pretty(&value).unwrap_or_default();
            bytes.push(b'\n');
            files.push(SupportFile {
                name: name.to_owned(),
                bytes,
            });
        }
        Err(why) => missing.push(format!("{name}: {}", mask(&why))),
    };
    match state {
        Some(state) => json("state.json", as_json(state)),
        None => json("state.json", Err("no run is recorded".to_owned())),
    }
    let detected = exec
        .tool(&ToolAction::Detect {
            instance: Some(instance.clone()),
            family: None,
        })
        .map_err(|error| error.to_string());
    let family = detected
        .as_ref()
        .ok()
        .and_then(|outcome| outcome.clone().detect().ok().flatten())
        .map(|found| found.family);
    json(
        "detect.json",
        detected.and_then(|outcome| as_json(&outcome)),
    );
    json(
        "instances.json",
        configured_instances(exec)
            .map_err(|error| error.to_string())
            .and_then(|found| as_json(&found)),
    );
    json(
        "verdict.json",
        exec.tool(&ToolAction::Verdict {
            instance: Some(instance.clone()),
            log_dir: None,
            since: None,
        })
        .map_err(|error| error.to_string())
        .and_then(|outcome| as_json(&outcome)),
    );
    let bundle = state
        .and_then(|state| state.settings.as_ref())
        .map(|settings| settings.bundle.clone());
    match (bundle, family) {
        (Some(bundle), Some(family)) => json(
            "migration.json",
            exec.tool(&ToolAction::MigrateConfig {
                from: format!("{bundle}/config"),
                instance: instance.clone(),
                family,
                fix: false,
                check: true,
            })
            .map_err(|error| error.to_string())
            .and_then(|outcome| as_json(&outcome)),
        ),
        _ => json(
            "migration.json",
            Err("no bundle recorded, or the family is unknown".to_owned()),
        ),
    }

    // The logs: the instance's folder now, and those a rollback kept.
    let mut folders = Vec::new();
    match read_log_dir(exec, std::path::Path::new("/"), instance) {
        Ok(log_dir) => folders.push((
            "logs".to_owned(),
            log_dir.path.to_string_lossy().into_owned(),
        )),
        Err(error) => missing.push(format!("logs: {}", mask(&error.to_string()))),
    }
    if let Some(kept) = state.and_then(|state| state.artifact("kept_logs")) {
        folders.push(("kept-logs".to_owned(), kept.to_owned()));
    }
    for (prefix, folder) in folders {
        // The log folder is the service account's: a link it planted there
        // (to /etc/shadow, a key) is not followed into the archive.
        let names: Vec<String> = match exec.list_dir(&folder) {
            Ok(entries) => entries
                .into_iter()
                .filter(|entry| entry.kind == NodeKind::File && !entry.link)
                .map(|entry| entry.name)
                .collect(),
            Err(error) => {
                missing.push(format!("{prefix}: {}", mask(&error.to_string())));
                continue;
            }
        };
        for name in names.into_iter().filter(|name| name.ends_with(".log")) {
            match exec.read_file(&format!("{folder}/{name}")) {
                Ok(Some(bytes)) => {
                    let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
                    let text = String::from_utf8_lossy(&bytes[start..]);
                    files.push(SupportFile {
                        name: format!("{prefix}/{name}"),
                        bytes: mask(&text).into_owned().into_bytes(),
                    });
                }
                Ok(None) => {}
                Err(error) => {
                    missing.push(format!("{prefix}/{name}: {}", mask(&error.to_string())))
                }
            }
        }
    }

    let summary = Summary {
        tool_version: crate::VERSION,
        instance: instance.as_str(),
        files: files.iter().map(|file| file.name.clone()).collect(),
        missing,
    };
    let mut bytes =
        serde_json::to_vec_pretty(&summary).map_err(|error| crate::Error::Internal {
            details: format!("the summary does not serialize: {error}"),
        })?;
    bytes.push(b'\n');
    files.insert(
        0,
        SupportFile {
            name: "summary.json".to_owned(),
            bytes,
        },
    );
    Ok(files)
}

/// A report as a JSON value, or why it is not one.
fn as_json<T: Serialize>(value: &T) -> std::result::Result<serde_json::Value, String> {
    serde_json::to_value(value).map_err(|error| error.to_string())
}
