//! Carrying an old instance's config values into a new instance's files.
//!
//! Each file kind has a pure migration over texts (`yaml_merge`, `env_file`,
//! `ignite`, `workers`, `nginx`); [`migrate`] plans all files together and
//! writes them all or none.

pub mod env_file;
pub mod migrate;
pub mod nginx;
pub mod nginx_context;
pub mod raw_text;
// Secrets are a domain fact every layer masks with; kept here under their old path.
pub use crate::secrets;
pub mod xml;
pub mod yaml_merge;
pub mod yaml_text;

use serde::{Deserialize, Serialize};

/// What a migration appends at the end of `text`: a line break if the file
/// lacks its last one, the `marker` comment line, then each item on its own
/// line — so the admin sees at once what the tool added.
pub(crate) fn marked_tail(
    text: &str,
    line_ending: &str,
    marker: &str,
    items: impl IntoIterator<Item = String>,
) -> String {
    let mut tail = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        tail.push_str(line_ending);
    }
    tail.push_str(marker);
    tail.push_str(line_ending);
    for item in items {
        tail.push_str(&item);
        tail.push_str(line_ending);
    }
    tail
}

/// What the migration did with one directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// The value on the new file's line was replaced.
    Set,
    /// Carried from an old directive name to its current name.
    Renamed,
    /// A commented-out line in the new file was enabled with the old value.
    Uncommented,
    /// The new file lacked the directive; it was added in a marked block at the end.
    Appended,
    /// The new file already had the old value.
    Kept,
    /// A whole file was taken from the old server (`--take`).
    Taken,
}

/// One directive's fate in the migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The new instance's file (server path).
    pub file: String,
    /// The directive, under its current name.
    pub key: String,
    /// What was done.
    pub action: ChangeAction,
    /// The value the new file had before (none when absent or commented out); `***` for secrets.
    pub old: Option<String>,
    /// The value after the migration; `***` for secrets.
    pub new: Option<String>,
    /// Where the value came from when not from the same key of the same file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}
