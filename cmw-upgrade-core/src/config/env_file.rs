//! Carrying variables from an old environment file (`KEY=VALUE` lines, as systemd's
//! `EnvironmentFile=` reads them) into the new one, keeping its text otherwise.

use super::secrets::{is_secret_key, shown};
use super::yaml_merge::apply_edits;
use super::{Change, ChangeAction};

/// A `KEY=VALUE` line, active or commented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvLine {
    /// The variable name.
    pub key: String,
    /// Whether the line is commented out.
    pub commented: bool,
    /// Where the line's content starts (the `#` of a commented line).
    pub content_start: usize,
    /// Where the value starts (after `=`).
    pub value_start: usize,
    /// Where the value ends (before trailing white space and the line end).
    pub value_end: usize,
}

/// Finds the `KEY=VALUE` lines, with an optional `export ` and leading white space.
pub fn parse_env(text: &str) -> Vec<EnvLine> {
    let mut lines = Vec::new();
    let mut start = 0;
    for raw in text.split_inclusive('\n') {
        let line_start = start;
        start += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let indent = line.len() - line.trim_start().len();
        let content_start = line_start + indent;
        let mut rest = line.trim_start();
        let commented = rest.starts_with('#');
        if commented {
            rest = rest[1..].trim_start();
        }
        if let Some(after) = rest.strip_prefix("export") {
            if after.starts_with([' ', '\t']) {
                rest = after.trim_start();
            }
        }
        let Some((key, _)) = rest.split_once('=') else {
            continue;
        };
        let is_name = !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !key.as_bytes()[0].is_ascii_digit();
        if !is_name {
            continue;
        }
        let value_start = line_start + (line.len() - rest.len()) + key.len() + 1;
        let value_end = line_start + line.trim_end().len().max(value_start - line_start);
        lines.push(EnvLine {
            key: key.to_owned(),
            commented,
            content_start,
            value_start,
            value_end,
        });
    }
    lines
}

/// The result of migrating an environment file.
#[derive(Debug, Clone)]
pub struct EnvMigration {
    /// The new text.
    pub text: String,
    /// What changed.
    pub changes: Vec<Change>,
}

/// Carries every variable set in `old_text` into `new_text`: replaced in place,
/// uncommented, or appended; variables only the new file has are kept.
pub fn migrate_env(file: &str, old_text: &str, new_text: &str, stamp: &str) -> EnvMigration {
    let old = parse_env(old_text);
    let new = parse_env(new_text);
    let line_ending = if new_text.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut edits = Vec::new();
    let mut appended = Vec::new();
    let mut changes = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    // The last assignment wins in an environment file, so carry the last one.
    for line in old.iter().rev().filter(|line| !line.commented) {
        if seen.contains(&line.key.as_str()) {
            continue;
        }
        seen.push(&line.key);
        let value = &old_text[line.value_start..line.value_end];
        let change = |action, before: Option<&str>| Change {
            file: file.to_owned(),
            key: line.key.clone(),
            action,
            old: shown(&line.key, before),
            new: shown(&line.key, Some(value)),
            from: None,
        };
        if let Some(target) = new.iter().rev().find(|n| !n.commented && n.key == line.key) {
            let before = &new_text[target.value_start..target.value_end];
            if before == value {
                changes.push(change(ChangeAction::Kept, Some(before)));
            } else {
                edits.push((target.value_start, target.value_end, value.to_owned()));
                changes.push(change(ChangeAction::Set, Some(before)));
            }
        } else if let Some(target) = new.iter().find(|n| n.commented && n.key == line.key) {
            let assignment = &old_text[line.value_start - line.key.len() - 1..line.value_end];
            let export = if old_text[line.content_start..line.value_start].contains("export") {
                "export "
            } else {
                ""
            };
            edits.push((
                target.content_start,
                target.value_end,
                format!("{export}{assignment}"),
            ));
            changes.push(change(ChangeAction::Uncommented, None));
        } else {
            appended.push(old_text[line.content_start..line.value_end].to_owned());
            changes.push(change(ChangeAction::Appended, None));
        }
    }
    changes.reverse();
    appended.reverse();
    let mut text = apply_edits(new_text, &mut edits);
    if !appended.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push_str(line_ending);
        }
        text.push_str(&format!(
            "# --- carried over from the old instance by cmw-upgrade {stamp} ---{line_ending}"
        ));
        for line in appended {
            text.push_str(&line);
            text.push_str(line_ending);
        }
    }
    EnvMigration { text, changes }
}

/// The spans of secret values in an environment file, for masking diffs.
pub fn secret_spans(text: &str) -> Vec<(usize, usize)> {
    parse_env(text)
        .into_iter()
        .filter(|line| is_secret_key(&line.key))
        .map(|line| (line.value_start, line.value_end))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "# JVM\nJVM_OPTS=\"-Xms512m -Xmx16g\"\nexport DOTNET_gcServer=1\nDB_PASSWORD=s3cret\nOLD_ONLY='x y'\n";
    const NEW: &str = "# generated for 5.0\nJVM_OPTS=\"-Xms512m -Xmx4g\"\n#export DOTNET_gcServer=0\nNEW_ONLY=1\nDB_PASSWORD=changeme\n";

    #[test]
    fn variables_are_carried_and_new_ones_kept() {
        let migration = migrate_env("env", OLD, NEW, "now");
        assert_eq!(
            migration.text,
            "# generated for 5.0\nJVM_OPTS=\"-Xms512m -Xmx16g\"\nexport DOTNET_gcServer=1\nNEW_ONLY=1\nDB_PASSWORD=s3cret\n\
             # --- carried over from the old instance by cmw-upgrade now ---\nOLD_ONLY='x y'\n"
        );
        let actions: Vec<_> = migration
            .changes
            .iter()
            .map(|c| (c.key.as_str(), c.action))
            .collect();
        assert_eq!(
            actions,
            [
                ("JVM_OPTS", ChangeAction::Set),
                ("DOTNET_gcServer", ChangeAction::Uncommented),
                ("DB_PASSWORD", ChangeAction::Set),
                ("OLD_ONLY", ChangeAction::Appended),
            ]
        );
        assert_eq!(migration.changes[2].new.as_deref(), Some("***"));
        let again = migrate_env("env", OLD, &migration.text, "later");
        assert_eq!(again.text, migration.text);
        assert!(again.changes.iter().all(|c| c.action == ChangeAction::Kept));
    }

    #[test]
    fn crlf_and_odd_lines() {
        let parsed = parse_env("A=1\r\n  export B = x\r\n=bad\n1X=no\nnot a line\n");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].key, "A");
        let migration = migrate_env("env", "A=2\nC=3\n", "A=1\r\n", "now");
        assert_eq!(
            migration.text,
            "A=2\r\n# --- carried over from the old instance by cmw-upgrade now ---\r\nC=3\r\n"
        );
    }
}
