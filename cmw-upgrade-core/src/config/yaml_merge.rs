//! Carrying directive values from an old YAML config into the new one's text.
//!
//! The new file's text stays as it is except where a value changes: a key set in
//! the old file replaces the value on its line in the new file; a commented-out
//! `#key:` line is uncommented; a key the new file lacks is appended in a marked
//! block at the end. Old directive names are written under their current names;
//! `version` belongs to the new install and is never carried.
//!
//! A one-line scalar takes the quoting of the line it goes to; any other value
//! (a block scalar, a quoted or plain scalar over several lines, a flow or block
//! collection, an anchored value) moves as written, and where that would not
//! mean the same in its new place (an alias, a block scalar keeping its final
//! line ends) it is written as one flow line instead. The result is parsed
//! again and must mean exactly the intended mapping; and, as an independent
//! check, every key the YAML parser reads in the old file must hold its old
//! value in the result. Otherwise nothing is written, and the error names the
//! file and line (of the original file) the value could not be carried from.

use yaml_serde::{Mapping, Value};

use super::secrets::{is_secret_key, shown};
use super::yaml_text::{
    double_quoted, needs_quotes, render_value, Entry, Quote, ValueKind, YamlText,
};
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
/// As [`crate::directives::parse_mapping`]; where the YAML parser names no line
/// or the mapping's first line for a repeated key, the line is found in the text.
pub fn parse_mapping(text: &str, file: &str) -> Result<Mapping> {
    crate::directives::parse_mapping(text, std::path::Path::new(file)).map_err(
        |error| match error {
            Error::ConfigParse {
                path,
                line,
                message,
            } => {
                let line = better_error_line(text, &message).or(line);
                Error::ConfigParse {
                    path,
                    line,
                    message,
                }
            }
            other => other,
        },
    )
}

/// The line the parser's complaint is about, where its own is missing or is the
/// start of the mapping: a repeated key's second line, a second document's start.
fn better_error_line(text: &str, message: &str) -> Option<usize> {
    if message.contains("duplicate entry") {
        let parsed = YamlText::parse(text);
        let active: Vec<_> = parsed.entries().iter().filter(|e| !e.commented).collect();
        return active
            .iter()
            .enumerate()
            .find(|(index, entry)| active[..*index].iter().any(|e| e.key == entry.key))
            .map(|(_, entry)| entry.line);
    }
    if message.contains("more than one document") {
        let mut content_seen = false;
        for (index, line) in text.lines().enumerate() {
            let marker = line.starts_with("---") || line.starts_with("...");
            if marker && content_seen {
                return Some(index + 1);
            }
            let trimmed = line.trim_start_matches('\u{feff}').trim();
            if !marker
                && !trimmed.is_empty()
                && !trimmed.starts_with('#')
                && !trimmed.starts_with('%')
            {
                content_seen = true;
            }
        }
    }
    None
}

/// One value to carry into the new file.
struct Carried {
    key: String,
    from_key: String,
    /// The value's text after the colon as written (for a value on several lines:
    /// with its lines, in the new file's line ends).
    raw: String,
    /// For a one-line scalar without anchor or tag: its text, which can be
    /// re-quoted in the style of the line it goes to.
    scalar: Option<String>,
    /// The old value's form.
    kind: ValueKind,
    value: Value,
    from_description: Option<String>,
    /// The file and line that set the value, for errors.
    origin: (String, Option<usize>),
}

/// Text of a value for the report: a one-line value as written; a list or
/// mapping as `(list or mapping)`; another value over several lines as one
/// quoted line.
fn report_text(raw: &str, value: Option<&Value>) -> String {
    match value {
        Some(Value::Sequence(_) | Value::Mapping(_)) => "(list or mapping)".to_owned(),
        Some(value) if raw.trim().contains(['\n', '\r']) => {
            flow_text(value).unwrap_or_else(|| raw.trim().to_owned())
        }
        _ => raw.trim().to_owned(),
    }
}

/// A value written as one line of YAML (flow style), where it can be: for a value
/// whose text as written cannot be moved (an alias, a block scalar whose kept
/// line ends depend on what follows it).
pub fn flow_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => double_quoted(text),
        Value::Sequence(items) => format!(
            "[{}]",
            items
                .iter()
                .map(flow_text)
                .collect::<Option<Vec<_>>>()?
                .join(", ")
        ),
        Value::Mapping(mapping) => format!(
            "{{{}}}",
            mapping
                .iter()
                .map(|(key, value)| {
                    let complex = matches!(key, Value::Sequence(_) | Value::Mapping(_));
                    let explicit = if complex { "? " } else { "" };
                    Some(format!(
                        "{explicit}{}: {}",
                        flow_text(key)?,
                        flow_text(value)?
                    ))
                })
                .collect::<Option<Vec<_>>>()?
                .join(", ")
        ),
        Value::Tagged(_) => return None,
    })
}

/// A key as written at the start of a line: plain where YAML reads that as the
/// same string, else double-quoted.
fn key_text(key: &str) -> String {
    let plain = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'))
        && !needs_quotes(key);
    if plain {
        key.to_owned()
    } else {
        double_quoted(key)
    }
}

/// Migrates one YAML config. `old_text` is the old server's file (if it had one);
/// `extra` are values from elsewhere, which the old file's own values override.
///
/// Nothing the old file sets is lost silently: every key its YAML parser reads
/// must hold its old value in the result (under its current name), or this fails
/// naming the old file's line.
///
/// # Errors
/// [`Error::ConfigParse`] when a file is not YAML, when an old value cannot be
/// carried (its file and line), or when the edited text would not mean what was
/// intended (then nothing must be written).
pub fn migrate_yaml(
    file: &str,
    old_text: Option<&str>,
    new_text: &str,
    extra: &[ExtraValue],
    stamp: &str,
) -> Result<YamlMigration> {
    let old_file = format!("old {file}");
    let old_meaning = match old_text {
        Some(text) => parse_mapping(text, &old_file)?,
        None => Mapping::new(),
    };
    let new_meaning = parse_mapping(new_text, file)?;
    let new = YamlText::parse(new_text);
    let line_ending = new.line_ending();
    let mut warnings = Vec::new();

    // What to carry: every active old directive under its current name.
    let mut carried: Vec<Carried> = Vec::new();
    if let Some(old_text) = old_text {
        let old = YamlText::parse(old_text);
        for entry in old.entries().iter().filter(|entry| !entry.commented) {
            if NEVER_CARRIED.contains(&entry.key.as_str()) || !entry.key_is_text {
                continue;
            }
            // A key the scanner misread is not in the mapping: the final check names it.
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
            if let Some(first) = carried.iter().find(|c| c.key == key) {
                if first.value != *value {
                    warnings.push(format!(
                        "{file}: the old file sets both {} and {}, old names of {key}; {}'s value was carried",
                        first.from_key, entry.key, first.from_key
                    ));
                }
                continue;
            }
            let raw = old_text[entry.after_colon()..entry.value_end]
                .replace("\r\n", "\n")
                .replace('\n', line_ending);
            carried.push(Carried {
                from_key: entry.key.clone(),
                key,
                raw,
                scalar: entry
                    .is_simple()
                    .then(|| entry.raw_value(old_text).to_owned()),
                kind: entry.kind,
                value: value.clone(),
                from_description: None,
                origin: (old_file.clone(), Some(entry.line)),
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
            raw: format!(" {}", extra.raw),
            scalar: Some(extra.raw.clone()),
            kind: ValueKind::Scalar,
            value,
            from_description: Some(extra.from.clone()),
            origin: (
                file.to_owned(),
                new.active(&extra.key).map(|entry| entry.line),
            ),
        });
    }

    for c in &carried {
        let Some(entry) = new.active(&c.key) else {
            if new_meaning.contains_key(c.key.as_str()) {
                return Err(Error::ConfigParse {
                    path: file.into(),
                    line: Some(line_of_key(new_text, &Value::String(c.key.clone()))),
                    message: format!(
                        "{}: set here in a form this tool does not edit (an explicit `?` key, a key with an anchor or tag, \
                         or a flow mapping); nothing was written — write it as `key: value` at the start of a line, or set it by hand",
                        c.key
                    ),
                });
            }
            continue;
        };
        if new_meaning.get(c.key.as_str()) == Some(&c.value) {
            continue;
        }
        if let Some(anchor) = referenced_anchor(new_text, entry) {
            return Err(Error::ConfigParse {
                path: file.into(),
                line: Some(entry.line),
                message: format!(
                    "{}: other values refer to this value's anchor (*{anchor}), so carrying the old value would change them too; \
                     nothing was written — write the value in place of each *{anchor} in the new file, or set it by hand",
                    c.key
                ),
            });
        }
    }

    let mut intended = new_meaning.clone();
    for c in &carried {
        intended.insert(Value::String(c.key.clone()), c.value.clone());
    }

    // First every value as written; values whose text did not carry their
    // meaning (an alias, kept line ends of a block scalar) again as one flow line.
    let mut as_flow: Vec<&str> = Vec::new();
    loop {
        let (text, changes) = compose(
            file,
            new_text,
            &new,
            &new_meaning,
            &carried,
            &as_flow,
            stamp,
        );
        let result = parse_mapping(&text, file).ok();
        let differing: Vec<&Value> = match &result {
            Some(result) => intended
                .iter()
                .filter(|(key, value)| result.get(*key) != Some(*value))
                .map(|(key, _)| key)
                .chain(result.keys().filter(|key| !intended.contains_key(*key)))
                .collect(),
            None => Vec::new(),
        };
        let failing: Vec<&Carried> = match &result {
            Some(_) => carried
                .iter()
                .filter(|c| {
                    differing
                        .iter()
                        .any(|key| key.as_str() == Some(c.key.as_str()))
                })
                .collect(),
            // The text does not parse: suspect the values moved as written on several lines.
            None if carried.iter().any(|c| c.scalar.is_none()) => {
                carried.iter().filter(|c| c.scalar.is_none()).collect()
            }
            None => carried.iter().collect(),
        };
        if result.is_some() && differing.is_empty() {
            if let Some(result) = &result {
                check_nothing_lost(file, old_text, &old_meaning, result)?;
            }
            return Ok(YamlMigration {
                text,
                changes,
                warnings,
            });
        }
        let retry: Vec<&str> = failing
            .iter()
            .filter(|c| !as_flow.contains(&c.key.as_str()) && flow_text(&c.value).is_some())
            .map(|c| c.key.as_str())
            .collect();
        if retry.is_empty() {
            let (path, line, what) = match failing.first() {
                Some(c) => (c.origin.0.clone(), c.origin.1, c.key.clone()),
                None => {
                    let key = differing
                        .first()
                        .and_then(|key| key.as_str())
                        .unwrap_or_default()
                        .to_owned();
                    let line = new.active(&key).map(|entry| entry.line);
                    (file.to_owned(), line, key)
                }
            };
            return Err(Error::ConfigParse {
                path: path.into(),
                line,
                message: format!(
                    "{what}: the value cannot be carried into {file} without changing what the file means; \
                     nothing was written — set it by hand in the new file, or take the old file whole with --take {file}"
                ),
            });
        }
        as_flow.extend(retry);
    }
}

/// The independent check that nothing the old file sets was left behind: every
/// key YAML reads in the old file holds its old value in the result, under its
/// current name.
fn check_nothing_lost(
    file: &str,
    old_text: Option<&str>,
    old_meaning: &Mapping,
    result: &Mapping,
) -> Result<()> {
    let Some(old_text) = old_text else {
        return Ok(());
    };
    for (key, value) in old_meaning {
        let refuse = |why: String| {
            Error::ConfigParse {
            path: format!("old {file}").into(),
            line: Some(line_of_key(old_text, key)),
            message: format!("{why}; nothing was written — set it by hand in the new file, or take the old file whole with --take {file}"),
        }
        };
        let Some(name) = key.as_str() else {
            return Err(refuse(format!(
                "the key {} is not a name (YAML reads it as {}), so it cannot be carried",
                flow_text(key).unwrap_or_default(),
                kind_of(key)
            )));
        };
        if NEVER_CARRIED.contains(&name) {
            continue;
        }
        let current = current_name(name);
        // The old file also sets the current name, or an earlier old name of it:
        // that one was carried (and warned about).
        let carried_instead = old_meaning
            .keys()
            .take_while(|other| *other != key)
            .any(|other| {
                other
                    .as_str()
                    .is_some_and(|other| current_name(other) == current)
            });
        if current != name && (old_meaning.contains_key(current) || carried_instead) {
            continue;
        }
        if result.get(current) != Some(value) {
            return Err(refuse(format!(
                "{name} is set here but was not carried: its key or value is written in a form this tool does not edit"
            )));
        }
    }
    Ok(())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The line of the old file that sets a key: the directive's line where the
/// scanner found it, else the first line holding the key's text, else line 1.
fn line_of_key(text: &str, key: &Value) -> usize {
    let parsed = YamlText::parse(text);
    let found = parsed.entries().iter().find(|entry| {
        !entry.commented
            && match key.as_str() {
                Some(name) => entry.key_is_text && entry.key == name,
                None => yaml_serde::from_str::<Value>(&entry.key).ok().as_ref() == Some(key),
            }
    });
    if let Some(entry) = found {
        return entry.line;
    }
    let needle = key
        .as_str()
        .map(str::to_owned)
        .or_else(|| flow_text(key))
        .unwrap_or_default();
    text.lines()
        .position(|line| !needle.is_empty() && line.contains(&needle))
        .map_or(1, |index| index + 1)
}

/// The edits of one carried value to an active line of the new file.
fn replace_active(
    c: &Carried,
    entry: &Entry,
    one_line: Option<&str>,
    new_text: &str,
) -> (usize, usize, String) {
    let comment = entry.comment.map(|(start, end)| &new_text[start..end]);
    // Where the line's own comment goes when the value's text around it changes.
    let end = entry
        .comment
        .map_or(entry.value_end, |(_, end)| end.max(entry.value_end));
    match one_line {
        Some(scalar) if entry.is_simple() => {
            let style = if entry.kind == ValueKind::Empty {
                Quote::Plain
            } else {
                entry.quote
            };
            let mut replacement = render_value(scalar, &c.value, style);
            if entry.value_start == entry.after_colon() {
                replacement.insert(0, ' ');
            }
            if entry.kind == ValueKind::Empty && comment.is_some() {
                replacement.push(' ');
            }
            (entry.value_start, entry.value_end, replacement)
        }
        Some(scalar) => {
            let mut replacement = format!(" {}", render_value(scalar, &c.value, Quote::Plain));
            if let Some(comment) = comment {
                replacement.push_str("  ");
                replacement.push_str(comment);
            }
            (entry.after_colon(), end, replacement)
        }
        None => (
            entry.after_colon(),
            end,
            with_comment(&c.raw, c.kind, comment),
        ),
    }
}

/// A value's text with a comment of the line it replaces: on the key's line of
/// a block (unless it has its own), after the value otherwise.
fn with_comment(raw: &str, kind: ValueKind, comment: Option<&str>) -> String {
    let Some(comment) = comment else {
        return raw.to_owned();
    };
    if matches!(kind, ValueKind::BlockScalar | ValueKind::Collection) {
        let head_end = raw.find(['\r', '\n']).unwrap_or(raw.len());
        if raw[..head_end].contains('#') {
            return raw.to_owned();
        }
        return format!("{}  {comment}{}", &raw[..head_end], &raw[head_end..]);
    }
    format!("{raw}  {comment}")
}

/// Where the last line starts when it is a document end marker (`...`) with
/// nothing but blank lines and comments after it.
fn document_end(text: &str) -> Option<usize> {
    let mut offset = text.len();
    for line in text.split_inclusive('\n').rev() {
        offset -= line.len();
        let content = line.trim_end();
        if content == "..." || content.starts_with("... ") || content.starts_with("...\t") {
            return Some(offset);
        }
        if !(content.is_empty() || content.starts_with('#')) {
            return None;
        }
    }
    None
}

/// Whether the text's last directive is a block scalar that keeps its final
/// line ends (`|+`, `>+`), which reach up to the next line at the margin.
fn ends_with_kept_block_scalar(text: &YamlText<'_>) -> bool {
    text.entries()
        .iter()
        .rev()
        .find(|entry| !entry.commented)
        .is_some_and(|entry| {
            entry.kind == ValueKind::BlockScalar && {
                let header = &text.text()[entry.value_start..entry.value_end];
                header.lines().next().is_some_and(|line| line.contains('+'))
            }
        })
}

/// An anchor on the new file's value for `key` that other values refer to:
/// replacing that value would change theirs too. Returns the anchor's name.
fn referenced_anchor<'t>(text: &'t str, entry: &Entry) -> Option<&'t str> {
    let value = &text[entry.value_start..entry.value_end];
    let outside = [&text[..entry.value_start], &text[entry.value_end..]];
    value
        .split(|c: char| c.is_whitespace() || matches!(c, '[' | '{' | ','))
        .filter_map(|token| token.strip_prefix('&'))
        .filter(|name| !name.is_empty())
        .find(|name| {
            let alias = format!("*{name}");
            outside.iter().any(|part| part.contains(&alias))
        })
}

/// The new text with the carried values, and the report of what was done;
/// `as_flow` names the values to write as one flow line instead of as written.
fn compose(
    file: &str,
    new_text: &str,
    new: &YamlText<'_>,
    new_meaning: &Mapping,
    carried: &[Carried],
    as_flow: &[&str],
    stamp: &str,
) -> (String, Vec<Change>) {
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut appended: Vec<String> = Vec::new();
    let mut changes = Vec::new();
    let line_ending = new.line_ending();
    for c in carried {
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
            new: shown(&c.key, Some(&report_text(&c.raw, Some(&c.value)))),
            from: from.clone(),
        };
        let flow = as_flow
            .contains(&c.key.as_str())
            .then(|| flow_text(&c.value))
            .flatten();
        let one_line = flow.as_deref().or(c.scalar.as_deref());
        if let Some(entry) = new.active(&c.key) {
            let before = report_text(
                &new_text[entry.after_colon()..entry.value_end],
                new_meaning.get(c.key.as_str()),
            );
            if new_meaning.get(c.key.as_str()) == Some(&c.value) {
                changes.push(change(ChangeAction::Kept, Some(before)));
                continue;
            }
            edits.push(replace_active(c, entry, one_line, new_text));
            changes.push(change(ChangeAction::Set, Some(before)));
        } else if let (Some(entry), Some(scalar)) = (new.commented(&c.key), one_line) {
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
                render_value(scalar, &c.value, style)
            );
            edits.push((entry.content_start, entry.value_end, replacement));
            changes.push(change(ChangeAction::Uncommented, None));
        } else {
            let value = match one_line {
                Some(scalar) => format!(" {}", render_value(scalar, &c.value, Quote::Plain)),
                None => c.raw.clone(),
            };
            appended.push(format!("{}:{value}", key_text(&c.key)));
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
            // After a document end marker (`...`) a line would start another document.
            None if document_end(&text).is_some() => {
                let at = document_end(&text).unwrap_or(text.len());
                let block = format!(
                    "{APPENDED_BLOCK_START} {stamp} ---{line_ending}{lines}{APPENDED_BLOCK_END}{line_ending}"
                );
                text.insert_str(at, &block);
            }
            None => {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push_str(line_ending);
                }
                // A block scalar that keeps its line ends (`|+`) would take in a blank line.
                if !ends_with_kept_block_scalar(new) {
                    text.push_str(line_ending);
                }
                text.push_str(&format!("{APPENDED_BLOCK_START} {stamp} ---{line_ending}"));
                text.push_str(&lines);
                text.push_str(APPENDED_BLOCK_END);
                text.push_str(line_ending);
            }
        }
    }
    (text, changes)
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

    fn carried(old: &str, new: &str) -> String {
        let migration = migrate(old, new);
        let mut intended = parse_mapping(new, "new").unwrap();
        for (key, value) in parse_mapping(old, "old").unwrap() {
            intended.insert(key, value);
        }
        assert_eq!(parse_mapping(&migration.text, "result").unwrap(), intended);
        migration.text
    }

    fn refusal(old: &str, new: &str) -> (String, Option<usize>) {
        match migrate_yaml("f.yml", Some(old), new, &[], "now").unwrap_err() {
            Error::ConfigParse { path, line, .. } => (path.display().to_string(), line),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn two_old_names_of_one_directive_carry_the_first_with_a_warning() {
        let migration = migrate(
            "backupPath: /b1\nbackup.config.default.repository.localDisk.path: /b2\n",
            "backup.defaultFolder: /x\n",
        );
        assert_eq!(migration.text, "backup.defaultFolder: /b1\n");
        assert_eq!(migration.warnings.len(), 1, "{:?}", migration.warnings);
    }

    #[test]
    fn quoted_keys_and_a_space_before_the_colon() {
        assert_eq!(
            carried(
                "\"journal.password\": s3cret\n'a.b' : yes-no\n",
                "journal.password: x  # set me\n\"a.b\" : 'z'\n"
            ),
            "journal.password: s3cret  # set me\n\"a.b\" : 'yes-no'\n"
        );
        let text = carried("\"odd: key\": 1\n", "a: 2\n");
        assert!(text.contains("\n\"odd: key\": 1\n"), "{text}");
    }

    #[test]
    fn block_scalars_as_values_and_as_targets() {
        assert_eq!(
            carried(
                "cert: |-\n  line one\n  line two\nz: 1\n",
                "cert: none  # the certificate\nz: 1\n"
            ),
            "cert: |-  # the certificate\n  line one\n  line two\nz: 1\n"
        );
        assert_eq!(
            carried(
                "cert: plain\n",
                "cert: >2\n   indented\n  text\n\nnext: 1\n"
            ),
            "cert: plain\n\nnext: 1\n"
        );
        // Kept line ends depend on what follows: carried as one quoted line.
        assert_eq!(
            carried("motd: >+\n  hi\n\nz: 1\n", "motd: x\nz: 1\n"),
            "motd: \"hi\\n\\n\"\nz: 1\n"
        );
    }

    #[test]
    fn quoted_values_over_several_lines_and_flow_collections() {
        assert_eq!(
            carried("msg: \"a\n  b\"\n", "msg: 'x'  # note\n"),
            "msg: \"a\n  b\"  # note\n"
        );
        assert_eq!(
            carried("msg: 'it''s\n  long'\n", "msg: x\n"),
            "msg: 'it''s\n  long'\n"
        );
        assert_eq!(
            carried("hosts: [a, b]\n", "hosts:\n  - c\nz: 1\n"),
            "hosts: [a, b]\nz: 1\n"
        );
        assert_eq!(
            carried("hosts:\n  - a\n", "hosts: {c: 1}  # list\nz: 1\n"),
            "hosts:  # list\n  - a\nz: 1\n"
        );
    }

    #[test]
    fn anchors_and_aliases() {
        // The alias would come before its anchor: both written as values.
        let text = carried("base: &b /data\ncopy: *b\n", "copy: /y\n");
        assert!(text.starts_with("copy: /data\n"), "{text}");
        // An anchor in the new file that another value refers to is not replaced.
        let (path, line) = refusal("base: /data\n", "# cfg\nbase: &b /x\ncopy: *b\n");
        assert_eq!((path.as_str(), line), ("f.yml", Some(2)));
    }

    #[test]
    fn crlf_old_values_over_several_lines_take_the_new_files_line_ends() {
        let text = carried("a: |\r\n  x\r\n  y\r\n", "a: 1\nb: 2\n");
        assert_eq!(text, "a: |\n  x\n  y\nb: 2\n");
        let text = carried("a: |\n  x\n", "\u{feff}a: 1\r\nb: 2\r\n");
        assert_eq!(text, "\u{feff}a: |\r\n  x\r\nb: 2\r\n");
    }

    #[test]
    fn an_empty_value_with_a_comment_gets_the_old_value_before_it() {
        assert_eq!(
            carried("a: 5\n", "a:  # unset\nb:\n"),
            "a:  5 # unset\nb:\n"
        );
        assert_eq!(carried("b: 5\n", "a: 1\nb:\n"), "a: 1\nb: 5\n");
    }

    #[test]
    fn what_cannot_be_carried_is_refused_naming_the_original_line() {
        // (old text, new text, the file and line named)
        let cases = [
            // An explicit key on line 3 of the old file.
            ("a: 1\n# c\n? b\n: 2\n", "a: 0\n", "old f.yml", 3),
            // A key YAML reads as a number.
            ("a: 1\n1: x\n", "a: 0\n", "old f.yml", 2),
            // A repeated key: its second line.
            ("a: 1\nb: 2\na: 3\n", "a: 0\n", "old f.yml", 3),
            // The new file's key in a flow mapping.
            ("a: 1\n", "# new\n{a: 0}\n", "f.yml", 2),
            // A second document.
            ("a: 1\n---\nb: 2\n", "a: 0\n", "old f.yml", 2),
        ];
        for (old, new, path, line) in cases {
            assert_eq!(refusal(old, new), (path.to_owned(), Some(line)), "{old:?}");
        }
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
