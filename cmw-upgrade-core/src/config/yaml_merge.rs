//! Carrying directive values from an old YAML config into the new one's text.
//!
//! The new file's text stays as it is except where a value changes: a key set in
//! the old file replaces the value on its line in the new file; a commented-out
//! `#key:` line is uncommented; a key the new file lacks is appended in a marked
//! block at the end. Old directive names are written under their current names;
//! `version` belongs to the new install and is never carried. The result is
//! parsed again and must mean exactly the intended mapping, or nothing is written.

use yaml_serde::{Mapping, Value};

use super::secrets::{is_secret_key, shown};
use super::yaml_text::{render_value, Quote, YamlText};
use super::{Change, ChangeAction};
use crate::directives::RENAMED_DIRECTIVES;
use crate::error::{Error, Result};

/// Directives that belong to the new install and are never carried.
pub const NEVER_CARRIED: &[&str] = &["version"];

/// The first line of a block of appended directives.
pub const APPENDED_BLOCK_START: &str = "# --- carried over from the old instance by cmw-upgrade";
/// The last line of a block of appended directives.
pub const APPENDED_BLOCK_END: &str = "# --- end of values carried over by cmw-upgrade ---";

/// A value to write that does not come from the old file of the same name
/// (e.g. a `Workers.config` switch mapped to an instance directive).
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraValue {
    /// The directive to set.
    pub key: String,
    /// Its value, as YAML text.
    pub raw: String,
    /// Where it came from, for the report.
    pub from: String,
}

/// The result of migrating one YAML file.
#[derive(Debug, Clone)]
pub struct YamlMigration {
    /// The new text.
    pub text: String,
    /// What changed (and what was already right).
    pub changes: Vec<Change>,
    /// What the admin should look at.
    pub warnings: Vec<String>,
}

/// The current name of a directive.
pub fn current_name(key: &str) -> &str {
    RENAMED_DIRECTIVES
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| new)
}

/// Parses a config's meaning as a top-level mapping; `file` labels errors.
///
/// # Errors
/// As [`crate::directives::parse_mapping`].
pub fn parse_mapping(text: &str, file: &str) -> Result<Mapping> {
    crate::directives::parse_mapping(text, std::path::Path::new(file))
}

/// One value to carry into the new file.
struct Carried {
    key: String,
    from_key: String,
    /// The value's text after the colon, as written (for blocks: the following lines).
    raw: String,
    value: Value,
    block: bool,
    from_description: Option<String>,
}

/// Text of a value for the report: the raw scalar, trimmed; `(list)` for blocks.
fn report_text(raw: &str, block: bool) -> String {
    if block {
        "(list or mapping)".to_owned()
    } else {
        raw.trim().to_owned()
    }
}

/// Migrates one YAML config. `old_text` is the old server's file (if it had one);
/// `extra` are values from elsewhere, which the old file's own values override.
///
/// # Errors
/// [`Error::ConfigParse`] when a file is not YAML, or when the edited text does not
/// mean what was intended (then nothing must be written).
pub fn migrate_yaml(
    file: &str,
    old_text: Option<&str>,
    new_text: &str,
    extra: &[ExtraValue],
    stamp: &str,
) -> Result<YamlMigration> {
    let old_meaning = match old_text {
        Some(text) => parse_mapping(text, &format!("old {file}"))?,
        None => Mapping::new(),
    };
    let new_meaning = parse_mapping(new_text, file)?;
    let new = YamlText::parse(new_text);
    let mut warnings = Vec::new();

    // What to carry: every active old directive under its current name.
    let mut carried: Vec<Carried> = Vec::new();
    if let Some(old_text) = old_text {
        let old = YamlText::parse(old_text);
        for entry in old.entries().iter().filter(|entry| !entry.commented) {
            if NEVER_CARRIED.contains(&entry.key.as_str()) {
                continue;
            }
            let Some(value) = old_meaning.get(entry.key.as_str()) else {
                continue;
            };
            let key = current_name(&entry.key).to_owned();
            if key != entry.key && old.active(&key).is_some() {
                warnings.push(format!(
                    "{file}: the old file sets both {} and its current name {key}; {key} was carried",
                    entry.key
                ));
                continue;
            }
            if carried.iter().any(|c| c.key == key) {
                continue;
            }
            let raw = if entry.block {
                old_text[entry.after_colon()..entry.value_end].to_owned()
            } else {
                entry.raw_value(old_text).to_owned()
            };
            carried.push(Carried {
                from_key: entry.key.clone(),
                key,
                raw,
                value: value.clone(),
                block: entry.block,
                from_description: None,
            });
        }
    }
    for extra in extra {
        if carried.iter().any(|c| c.key == extra.key) {
            warnings.push(format!(
                "{file}: {} is set in the old file and also by {}; the old file's value was kept",
                extra.key, extra.from
            ));
            continue;
        }
        let value = parse_mapping(&format!("k: {}", extra.raw), &extra.from)?
            .get("k")
            .cloned()
            .unwrap_or(Value::Null);
        carried.push(Carried {
            key: extra.key.clone(),
            from_key: extra.key.clone(),
            raw: extra.raw.clone(),
            value,
            block: false,
            from_description: Some(extra.from.clone()),
        });
    }

    let mut intended = new_meaning.clone();
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut appended: Vec<String> = Vec::new();
    let mut changes = Vec::new();
    let line_ending = new.line_ending();
    for c in &carried {
        intended.insert(Value::String(c.key.clone()), c.value.clone());
        let renamed = c.from_key != c.key;
        let from = c
            .from_description
            .clone()
            .or_else(|| renamed.then(|| c.from_key.clone()));
        let change = |action: ChangeAction, old: Option<String>| Change {
            file: file.to_owned(),
            key: c.key.clone(),
            action: if renamed && action != ChangeAction::Kept {
                ChangeAction::Renamed
            } else {
                action
            },
            old: shown(&c.key, old.as_deref()),
            new: shown(&c.key, Some(&report_text(&c.raw, c.block))),
            from: from.clone(),
        };
        // Old text of a block value uses the old file's line ends; use the new file's.
        let block_raw = || c.raw.replace("\r\n", "\n").replace('\n', line_ending);
        if let Some(entry) = new.active(&c.key) {
            let current = new_meaning.get(c.key.as_str());
            let before = report_text(
                if entry.block {
                    &new_text[entry.after_colon()..entry.value_end]
                } else {
                    entry.raw_value(new_text)
                },
                entry.block,
            );
            if current == Some(&c.value) {
                changes.push(change(ChangeAction::Kept, Some(before)));
                continue;
            }
            let (start, replacement) = if c.block || entry.block {
                let replacement = if c.block {
                    block_raw()
                } else {
                    format!(" {}", render_value(&c.raw, &c.value, Quote::Plain))
                };
                (entry.after_colon(), replacement)
            } else {
                (
                    entry.value_start,
                    render_value(&c.raw, &c.value, entry.quote),
                )
            };
            edits.push((start, entry.value_end, replacement));
            changes.push(change(ChangeAction::Set, Some(before)));
        } else if let Some(entry) = new.commented(&c.key).filter(|_| !c.block) {
            let spacing = &new_text[entry.after_colon()..entry.value_start];
            let spacing = if spacing.is_empty() { " " } else { spacing };
            let style = if entry.value_end > entry.value_start {
                entry.quote
            } else {
                Quote::Plain
            };
            let replacement = format!(
                "{}:{spacing}{}",
                c.key,
                render_value(&c.raw, &c.value, style)
            );
            edits.push((entry.content_start, entry.value_end, replacement));
            changes.push(change(ChangeAction::Uncommented, None));
        } else {
            let line = if c.block {
                format!("{}:{}", c.key, block_raw())
            } else {
                format!(
                    "{}: {}",
                    c.key,
                    render_value(&c.raw, &c.value, Quote::Plain)
                )
            };
            appended.push(line);
            changes.push(change(ChangeAction::Appended, None));
        }
    }

    let mut text = apply_edits(new_text, &mut edits);
    if !appended.is_empty() {
        let mut lines = appended.join(line_ending);
        lines.push_str(line_ending);
        match text.find(APPENDED_BLOCK_END) {
            // A block from an earlier run: add to it rather than starting another.
            Some(end_marker) => text.insert_str(end_marker, &lines),
            None => {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push_str(line_ending);
                }
                text.push_str(line_ending);
                text.push_str(&format!("{APPENDED_BLOCK_START} {stamp} ---{line_ending}"));
                text.push_str(&lines);
                text.push_str(APPENDED_BLOCK_END);
                text.push_str(line_ending);
            }
        }
    }

    let result_meaning = parse_mapping(&text, file)?;
    if result_meaning != intended {
        let differing: Vec<String> = intended
            .iter()
            .filter(|(key, value)| result_meaning.get(*key) != Some(*value))
            .filter_map(|(key, _)| key.as_str().map(str::to_owned))
            .collect();
        return Err(Error::ConfigParse {
            path: file.into(),
            line: None,
            message: format!(
                "the edited file would not mean what was intended (keys: {}); nothing was written — please report this",
                differing.join(", ")
            ),
        });
    }
    Ok(YamlMigration {
        text,
        changes,
        warnings,
    })
}

/// Applies non-overlapping `(start, end, replacement)` edits to a text.
pub(crate) fn apply_edits(text: &str, edits: &mut [(usize, usize, String)]) -> String {
    edits.sort_by_key(|(start, _, _)| *start);
    let mut out = String::with_capacity(text.len() + 64);
    let mut position = 0;
    for (start, end, replacement) in edits.iter() {
        out.push_str(&text[position..*start]);
        out.push_str(replacement);
        position = *end;
    }
    out.push_str(&text[position..]);
    out
}

/// The spans of secret values in a YAML text, for masking diffs.
pub fn secret_spans(text: &str) -> Vec<(usize, usize)> {
    YamlText::parse(text)
        .entries()
        .iter()
        .filter(|entry| is_secret_key(&entry.key) && entry.value_end > entry.value_start)
        .map(|entry| (entry.value_start, entry.value_end))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OLD: &str = "# old 4.7 config\ninstanceName: prod\nversion: 4.7.2890.0\ndatabaseName: prod\ndb.workDir: /data/db\nnodeName: node-7\njournal.password: \"old-secret\"\nmq.group: prod\nservices:\n  - web\n  - api\nlegacy.flag: yes\n";
    const NEW: &str = "# 5.0 instance config\n# cluster\nclusterName: fresh\nversion: 5.0.1234.0\n\n# database\ndb.name: fresh   # bound to the data\n#db.workDir: /var/lib/comindware/fresh/Database\nnodeName: node-7\njournal.password: 'changeme'\nmq.group: fresh\nservices:\n  - web\n";

    fn migrate(old: &str, new: &str) -> YamlMigration {
        migrate_yaml("/x/prod.yml", Some(old), new, &[], "2026-11-25").unwrap()
    }

    fn action(migration: &YamlMigration, key: &str) -> ChangeAction {
        migration
            .changes
            .iter()
            .find(|c| c.key == key)
            .unwrap()
            .action
    }

    #[test]
    fn values_move_into_the_new_text_and_nothing_else_changes() {
        let migration = migrate(OLD, NEW);
        let text = &migration.text;
        assert!(text.starts_with("# 5.0 instance config\n# cluster\nclusterName: prod\nversion: 5.0.1234.0\n\n# database\ndb.name: prod   # bound to the data\ndb.workDir: /data/db\nnodeName: node-7\njournal.password: 'old-secret'\nmq.group: prod\nservices:\n  - web\n  - api\n"), "{text}");
        assert!(text.contains(APPENDED_BLOCK_START));
        assert!(text.contains("legacy.flag: yes\n"));
        assert_eq!(action(&migration, "clusterName"), ChangeAction::Renamed);
        assert_eq!(action(&migration, "db.name"), ChangeAction::Renamed);
        assert_eq!(action(&migration, "db.workDir"), ChangeAction::Uncommented);
        assert_eq!(action(&migration, "nodeName"), ChangeAction::Kept);
        assert_eq!(action(&migration, "mq.group"), ChangeAction::Set);
        assert_eq!(action(&migration, "legacy.flag"), ChangeAction::Appended);
        assert!(migration.changes.iter().all(|c| c.key != "version"));
        let secret = migration
            .changes
            .iter()
            .find(|c| c.key == "journal.password")
            .unwrap();
        assert_eq!(secret.old.as_deref(), Some("***"));
        assert_eq!(secret.new.as_deref(), Some("***"));
    }

    #[test]
    fn a_second_run_changes_nothing() {
        let first = migrate(OLD, NEW);
        let second = migrate(OLD, &first.text);
        assert_eq!(second.text, first.text);
        assert!(
            second
                .changes
                .iter()
                .all(|c| c.action == ChangeAction::Kept),
            "{:?}",
            second.changes
        );
    }

    #[test]
    fn crlf_files_get_crlf_lines() {
        let new = NEW.replace('\n', "\r\n");
        let migration = migrate(OLD, &new);
        assert!(
            !migration.text.replace("\r\n", "").contains('\n'),
            "{:?}",
            migration.text
        );
    }

    #[test]
    fn a_bom_stays_first() {
        let migration = migrate("a: 2\nb: 3\n", "\u{feff}# cfg\na: 1\n#b: 0\n");
        assert_eq!(migration.text, "\u{feff}# cfg\na: 2\nb: 3\n");
    }

    #[test]
    fn misreadable_values_are_quoted() {
        let migration = migrate(
            "a: 'yes'\nb: '0755'\nc: 'x: y # z'\n",
            "a: no\nb: 1\n#c: q\n",
        );
        assert!(migration.text.contains("a: 'yes'"), "{}", migration.text);
        assert!(migration.text.contains("b: '0755'"), "{}", migration.text);
        assert!(
            migration.text.contains("c: 'x: y # z'"),
            "{}",
            migration.text
        );
    }

    #[test]
    fn extra_values_are_set_unless_the_old_file_sets_them() {
        let extra = [
            ExtraValue {
                key: "email.listenerEnabled".into(),
                raw: "false".into(),
                from: "Workers.config EmailListener".into(),
            },
            ExtraValue {
                key: "mq.group".into(),
                raw: "other".into(),
                from: "Workers.config X".into(),
            },
        ];
        let migration = migrate_yaml("f.yml", Some(OLD), NEW, &extra, "now").unwrap();
        assert!(migration.text.contains("email.listenerEnabled: false"));
        assert!(migration.text.contains("mq.group: prod"));
        assert_eq!(migration.warnings.len(), 1);
        let change = migration
            .changes
            .iter()
            .find(|c| c.key == "email.listenerEnabled")
            .unwrap();
        assert_eq!(change.from.as_deref(), Some("Workers.config EmailListener"));
    }

    #[test]
    fn broken_yaml_names_the_file() {
        let error =
            migrate_yaml("/x/apigateway.yml", Some("a: 1\n"), "a: [\n", &[], "now").unwrap_err();
        assert!(
            error.to_string().starts_with("/x/apigateway.yml:"),
            "{error}"
        );
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z/._-]{0,11}",
            "[0-9]{1,5}",
            Just("true".to_owned()),
            "[ -~]{0,12}"
                .prop_map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))),
            "[a-z :#]{0,12}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        ]
    }

    fn config() -> impl Strategy<Value = Vec<(String, String, u8)>> {
        // (key, value, form): form 0 active, 1 commented, 2 comment line before
        proptest::collection::vec(("[a-e]\\.[a-c]", scalar(), 0u8..3), 0..8)
    }

    fn render(entries: &[(String, String, u8)], crlf: bool) -> String {
        let end = if crlf { "\r\n" } else { "\n" };
        let mut seen = std::collections::HashSet::new();
        let mut text = String::from("# a config");
        text.push_str(end);
        for (key, value, form) in entries {
            match form {
                1 => text.push_str(&format!("#{key}: {value}{end}")),
                2 => text.push_str(&format!("# about {key}{end}")),
                _ => {
                    if seen.insert(key.clone()) {
                        text.push_str(&format!("{key}: {value}{end}"));
                    }
                }
            }
        }
        text
    }

    proptest! {
        /// The migration is idempotent, keeps every comment line of the new file, and
        /// the result means the new file overridden by the old file's values.
        #[test]
        fn migration_properties(old in config(), new in config(), crlf in any::<bool>()) {
            let old_text = render(&old, false);
            let new_text = render(&new, crlf);
            let migration = migrate_yaml("f.yml", Some(&old_text), &new_text, &[], "now").unwrap();

            let again = migrate_yaml("f.yml", Some(&old_text), &migration.text, &[], "now").unwrap();
            prop_assert_eq!(&again.text, &migration.text);

            for line in new_text.lines().filter(|line| line.starts_with("# ")) {
                prop_assert!(migration.text.lines().any(|l| l == line), "lost {:?}", line);
            }

            let mut intended = parse_mapping(&new_text, "n").unwrap();
            for (key, value) in parse_mapping(&old_text, "o").unwrap() {
                intended.insert(key, value);
            }
            prop_assert_eq!(parse_mapping(&migration.text, "r").unwrap(), intended);
        }
    }
}
