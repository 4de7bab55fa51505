//! Carrying variables from an old environment file (`KEY=VALUE` lines, as systemd's
//! `EnvironmentFile=` reads them, with the shell's `export`) into the new one,
//! keeping its text otherwise.
//!
//! Values may be quoted (`"..."` with backslash escapes, `'...'` literal), may go
//! on over several lines (inside quotes, or after a trailing backslash), and the
//! last assignment of a name wins. After the edits, what the result sets is read
//! again and compared with what the old and new files set: a value that did not
//! arrive is an error, and nothing is written.

use std::collections::BTreeMap;

use super::secrets::{is_secret_key, shown};
use super::yaml_merge::apply_edits;
use super::{Change, ChangeAction};
use crate::error::{Error, Result};

/// A `KEY=VALUE` line, active or commented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvLine {
    /// The variable name.
    pub key: String,
    /// Whether the line is commented out.
    pub commented: bool,
    /// 1-based line number.
    pub line: usize,
    /// Where the line's content starts (the `#` of a commented line).
    pub content_start: usize,
    /// Where the value starts (after `=`).
    pub value_start: usize,
    /// Where the value ends (before trailing white space and the line end; for a
    /// value over several lines, on its last line).
    pub value_end: usize,
}

fn is_name(key: &str) -> bool {
    !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !key.as_bytes()[0].is_ascii_digit()
}

/// Reads a value starting at `start` as systemd does: returns what it means and
/// where its text ends (before trailing white space). Quotes and a trailing
/// backslash carry it over line ends; an unclosed quote runs to the end.
pub fn read_value(text: &str, start: usize) -> (String, usize) {
    let mut value = String::new();
    // The length of `value` up to its last character that was quoted or not blank.
    let mut kept = 0;
    let mut end = start;
    let mut chars = text[start..]
        .char_indices()
        .map(|(i, c)| (start + i, c))
        .peekable();
    let line_break = |chars: &mut std::iter::Peekable<_>, c: char| -> bool {
        if c == '\r' {
            if let Some(&(_, '\n')) = chars.peek() {
                chars.next();
                return true;
            }
        }
        c == '\n'
    };
    while let Some((index, c)) = chars.next() {
        match c {
            '\n' => break,
            '\r' if matches!(chars.peek(), Some(&(_, '\n'))) => break,
            '"' | '\'' => {
                let quote = c;
                end = text.len();
                while let Some((inner, c)) = chars.next() {
                    // A CRLF line end inside quotes means one line break, as an LF does.
                    if c == '\r' && matches!(chars.peek(), Some(&(_, '\n'))) {
                        continue;
                    }
                    if c == quote {
                        end = inner + 1;
                        break;
                    }
                    if c == '\\' && quote == '"' {
                        match chars.next() {
                            Some((_, next)) if line_break(&mut chars, next) => {}
                            Some((_, next @ ('"' | '\\' | '`' | '$'))) => value.push(next),
                            Some((_, next)) => {
                                value.push('\\');
                                value.push(next);
                            }
                            None => value.push('\\'),
                        }
                        continue;
                    }
                    value.push(c);
                }
                kept = value.len();
            }
            '\\' => match chars.next() {
                Some((_, next)) if line_break(&mut chars, next) => {}
                Some((next_index, next)) => {
                    value.push(next);
                    kept = value.len();
                    end = next_index + next.len_utf8();
                }
                None => {
                    value.push('\\');
                    kept = value.len();
                    end = index + 1;
                }
            },
            // Blanks before the value are not part of it.
            ' ' | '\t' if value.is_empty() && end == start => {}
            ' ' | '\t' => value.push(c),
            c => {
                value.push(c);
                kept = value.len();
                end = index + c.len_utf8();
            }
        }
    }
    value.truncate(kept);
    (value, end)
}

/// The offset of the line end at or after `offset`, and of the next line's start.
fn line_end(text: &str, offset: usize) -> (usize, usize) {
    match memchr::memchr(b'\n', &text.as_bytes()[offset..]) {
        Some(index) => {
            let newline = offset + index;
            let end = if newline > offset && text.as_bytes()[newline - 1] == b'\r' {
                newline - 1
            } else {
                newline
            };
            (end, newline + 1)
        }
        None => (text.len(), text.len()),
    }
}

/// One line's assignment: whether commented, the name and where the value starts.
fn assignment(text: &str, line_start: usize, end: usize) -> Option<(bool, usize, String, usize)> {
    let line = &text[line_start..end];
    let indent = line.len() - line.trim_start().len();
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
    let (key, _) = rest.split_once('=')?;
    if !is_name(key) {
        return None;
    }
    let value_start = end - rest.len() + key.len() + 1;
    Some((commented, line_start + indent, key.to_owned(), value_start))
}

/// Finds the `KEY=VALUE` lines, with an optional `export ` and leading white space.
/// The lines a value goes on over are its own (never read as assignments).
pub fn parse_env(text: &str) -> Vec<EnvLine> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut number = 1;
    while start < text.len() {
        let (end, next) = line_end(text, start);
        let mut next = next;
        if let Some((commented, content_start, key, value_start)) = assignment(text, start, end) {
            let value_end = if commented {
                // A commented line is one line, whatever it holds.
                value_start + text[value_start..end].trim_end().len()
            } else {
                read_value(text, value_start).1.max(value_start)
            };
            lines.push(EnvLine {
                key,
                commented,
                line: number,
                content_start,
                value_start,
                value_end,
            });
            if value_end > end {
                next = line_end(text, value_end).1;
            }
        }
        number += text[start..next].matches('\n').count();
        start = next;
    }
    lines
}

/// What an environment file sets: each name's value (the last assignment wins)
/// and the line that set it; and the lines that are neither assignments,
/// comments nor blank, which systemd would not read as assignments either.
pub fn env_values(text: &str) -> (BTreeMap<String, (String, usize)>, Vec<usize>) {
    let mut values = BTreeMap::new();
    let mut not_understood = Vec::new();
    let mut start = 0;
    let mut number = 1;
    while start < text.len() {
        let (end, mut next) = line_end(text, start);
        let line = text[start..end].trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            // A comment or a blank line.
        } else if let Some((_, _, key, value_start)) = assignment(text, start, end) {
            let (value, value_end) = read_value(text, value_start);
            values.insert(key, (value, number));
            if value_end > end {
                next = line_end(text, value_end).1;
            }
        } else {
            not_understood.push(number);
        }
        number += text[start..next].matches('\n').count();
        start = next;
    }
    (values, not_understood)
}

/// The result of migrating an environment file.
#[derive(Debug, Clone)]
pub struct EnvMigration {
    /// The new text.
    pub text: String,
    /// What changed.
    pub changes: Vec<Change>,
    /// What the admin should look at: old lines that set nothing.
    pub warnings: Vec<String>,
}

/// Carries every variable set in `old_text` into `new_text`: replaced in place,
/// uncommented, or appended; variables only the new file has are kept.
///
/// # Errors
/// [`Error::ConfigParse`] naming the old file's line of a value the result would
/// not hold, or the new file's line of a value it would lose (nothing must be written).
pub fn migrate_env(
    file: &str,
    old_text: &str,
    new_text: &str,
    stamp: &str,
) -> Result<EnvMigration> {
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
        // A value over several lines takes the new file's line ends.
        let value = old_text[line.value_start..line.value_end]
            .replace("\r\n", "\n")
            .replace('\n', line_ending);
        let value = value.as_str();
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
            let export = if old_text[line.content_start..line.value_start].contains("export") {
                "export "
            } else {
                ""
            };
            edits.push((
                target.content_start,
                target.value_end,
                format!("{export}{}={value}", line.key),
            ));
            changes.push(change(ChangeAction::Uncommented, None));
        } else {
            let assignment = &old_text[line.content_start..line.value_start];
            appended.push(format!("{assignment}{value}"));
            changes.push(change(ChangeAction::Appended, None));
        }
    }
    changes.reverse();
    appended.reverse();
    let mut text = apply_edits(new_text, &mut edits);
    if !appended.is_empty() {
        let tail = super::marked_tail(
            &text,
            line_ending,
            &format!("# --- carried over from the old instance by cmw-upgrade {stamp} ---"),
            appended,
        );
        text.push_str(&tail);
    }
    let (old_values, not_understood) = env_values(old_text);
    let warnings = not_understood
        .iter()
        .map(|line| {
            format!(
                "old {file}:{line}: not a `NAME=value` assignment, so not carried; if the service needs it, add it to the new file by hand"
            )
        })
        .collect();
    check_result(
        file,
        &old_values,
        &env_values(new_text).0,
        &env_values(&text).0,
    )?;
    Ok(EnvMigration {
        text,
        changes,
        warnings,
    })
}

/// The independent check: the result sets every old value, and the new file's
/// value for each name the old file does not set.
fn check_result(
    file: &str,
    old: &BTreeMap<String, (String, usize)>,
    new: &BTreeMap<String, (String, usize)>,
    result: &BTreeMap<String, (String, usize)>,
) -> Result<()> {
    let lost = old
        .iter()
        .map(|(key, value)| (key, value, format!("old {file}")))
        .chain(
            new.iter()
                .filter(|(key, _)| !old.contains_key(*key))
                .map(|(key, value)| (key, value, file.to_owned())),
        )
        .find(|(key, (value, _), _)| result.get(*key).map(|(v, _)| v) != Some(value));
    match lost {
        None => Ok(()),
        Some((key, (_, line), path)) => Err(Error::ConfigParse {
            path: path.into(),
            line: Some(*line),
            message: format!(
                "{key}: the edited {file} would not set this value; nothing was written — set it by hand, or take the old file whole with --take {file}"
            ),
        }),
    }
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
    use proptest::prelude::*;

    const OLD: &str = "# JVM\nJVM_OPTS=\"-Xms512m -Xmx16g\"\nexport DOTNET_gcServer=1\nDB_PASSWORD=s3cret\nOLD_ONLY='x y'\n";
    const NEW: &str = "# generated for 5.0\nJVM_OPTS=\"-Xms512m -Xmx4g\"\n#export DOTNET_gcServer=0\nNEW_ONLY=1\nDB_PASSWORD=changeme\n";

    #[test]
    fn variables_are_carried_and_new_ones_kept() {
        let migration = migrate_env("env", OLD, NEW, "now").unwrap();
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
        let again = migrate_env("env", OLD, &migration.text, "later").unwrap();
        assert_eq!(again.text, migration.text);
        assert!(again.changes.iter().all(|c| c.action == ChangeAction::Kept));
    }

    #[test]
    fn crlf_and_odd_lines() {
        let parsed = parse_env("A=1\r\n  export B = x\r\n=bad\n1X=no\nnot a line\n");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].key, "A");
        let migration = migrate_env("env", "A=2\nC=3\n", "A=1\r\n", "now").unwrap();
        assert_eq!(
            migration.text,
            "A=2\r\n# --- carried over from the old instance by cmw-upgrade now ---\r\nC=3\r\n"
        );
    }

    fn values(text: &str) -> Vec<(String, String)> {
        env_values(text)
            .0
            .into_iter()
            .map(|(key, (value, _))| (key, value))
            .collect()
    }

    #[test]
    fn values_read_as_systemd_does() {
        let text = "# c\n; also a comment\nexport A=\"x \\\"y\\\" $z\"\nB='a\\b\n  c'\nC=one \\\n  two   \nD=x # not a comment\nE=\"1\"2'3'\nF=\nA=last\n";
        assert_eq!(
            values(text),
            [
                ("A", "last"),
                ("B", "a\\b\n  c"),
                ("C", "one   two"),
                ("D", "x # not a comment"),
                ("E", "123"),
                ("F", ""),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        let lines: Vec<(String, usize)> = parse_env(text)
            .into_iter()
            .map(|l| (l.key, l.line))
            .collect();
        assert_eq!(
            lines,
            [
                ("A", 3),
                ("B", 4),
                ("C", 6),
                ("D", 8),
                ("E", 9),
                ("F", 10),
                ("A", 11)
            ]
            .map(|(k, n)| (k.to_owned(), n))
        );
    }

    #[test]
    fn values_over_several_lines_and_the_last_assignment_are_carried() {
        let old = "JVM_OPTS=\"-Xms1g\n  -Xmx8g\"\nX=1\nX=2\nCONT=a \\\n  b\n";
        let new = "JVM_OPTS=\"-Xmx4g\"\nX=0\nNEW=1\n#CONT=\n";
        let migration = migrate_env("env", old, new, "now").unwrap();
        assert_eq!(
            migration.text,
            "JVM_OPTS=\"-Xms1g\n  -Xmx8g\"\nX=2\nNEW=1\nCONT=a \\\n  b\n"
        );
        // A value over lines moves to a CRLF file with its line ends.
        let migration = migrate_env("env", old, "X=0\r\n", "now").unwrap();
        assert!(
            !migration.text.replace("\r\n", "").contains('\n'),
            "{:?}",
            migration.text
        );
    }

    #[test]
    fn lines_that_set_nothing_are_warned_about_with_their_old_line() {
        let migration = migrate_env("env", "A=1\nexport B = 2\n", "A=0\n", "now").unwrap();
        assert_eq!(migration.text, "A=1\n");
        assert_eq!(migration.warnings.len(), 1);
        assert!(
            migration.warnings[0].starts_with("old env:2:"),
            "{:?}",
            migration.warnings
        );
    }

    #[test]
    fn a_result_that_would_not_hold_a_value_is_refused_naming_the_line() {
        let old = values("A=1\n");
        let new = values("A=0\nB=2\n");
        let to_map = |pairs: Vec<(String, String)>| -> BTreeMap<String, (String, usize)> {
            pairs
                .into_iter()
                .enumerate()
                .map(|(index, (k, v))| (k, (v, index + 1)))
                .collect()
        };
        let result = to_map(values("A=1\n"));
        let error = check_result("env", &to_map(old), &to_map(new), &result).unwrap_err();
        assert_eq!(
            error.to_string().split(": ").next(),
            Some("env:2"),
            "{error}"
        );
    }

    #[derive(Debug, Clone)]
    enum Style {
        Plain(String),
        Double(String),
        Single(String),
        Continued(String, String),
        DoubleLines(String, String),
    }

    fn style() -> impl Strategy<Value = Style> {
        prop_oneof![
            "[a-z0-9/._=-]{0,8}".prop_map(Style::Plain),
            "[ -~]{0,10}".prop_map(Style::Double),
            "[ -&(-~]{0,10}".prop_map(Style::Single),
            ("[a-z]{1,5}", "[a-z]{1,5}").prop_map(|(a, b)| Style::Continued(a, b)),
            ("[a-z]{1,5}", "[a-z]{1,5}").prop_map(|(a, b)| Style::DoubleLines(a, b)),
        ]
    }

    /// (name index, style, export, form: 0 assignment, 1 commented out, 2 comment line)
    fn env() -> impl Strategy<Value = Vec<(usize, Style, bool, u8)>> {
        proptest::collection::vec((0..4usize, style(), any::<bool>(), 0u8..3), 0..8)
    }

    /// The text and what it sets, by the generator's own rules.
    fn render(items: &[(usize, Style, bool, u8)], end: &str) -> (String, Vec<(String, String)>) {
        let names = ["JVM_OPTS", "DB_PASSWORD", "A_1", "_X"];
        let mut text = String::new();
        let mut model = BTreeMap::new();
        for (name, style, export, form) in items {
            let name = names[*name];
            let (written, value) = match style {
                Style::Plain(v) => (v.clone(), v.clone()),
                Style::Double(v) => {
                    let escaped: String = v
                        .chars()
                        .flat_map(|c| match c {
                            '"' | '\\' | '`' | '$' => vec!['\\', c],
                            c => vec![c],
                        })
                        .collect();
                    (format!("\"{escaped}\""), v.clone())
                }
                Style::Single(v) => (format!("'{v}'"), v.clone()),
                Style::Continued(a, b) => (format!("{a}\\{end}{b}"), format!("{a}{b}")),
                Style::DoubleLines(a, b) => (format!("\"{a}{end}{b}\""), format!("{a}\n{b}")),
            };
            let export = if *export { "export " } else { "" };
            match form {
                1 => text.push_str(&format!("#{name}=x{end}")),
                2 => text.push_str(&format!("# about {name}{end}")),
                _ => {
                    text.push_str(&format!("{export}{name}={written}{end}"));
                    model.insert(name.to_owned(), value);
                }
            }
        }
        (text, model.into_iter().collect())
    }

    proptest! {
        /// The result sets what the generator says (the new file's values
        /// overridden by the old one's), or the migration refuses naming a line.
        #[test]
        fn carried_as_the_model_says(old in env(), new in env(), crlf in any::<bool>()) {
            let (old_text, old_model) = render(&old, "\n");
            let (new_text, new_model) = render(&new, if crlf { "\r\n" } else { "\n" });
            prop_assert_eq!(values(&old_text), old_model.clone());
            let mut expected: BTreeMap<String, String> = new_model.into_iter().collect();
            expected.extend(old_model);
            match migrate_env("env", &old_text, &new_text, "now") {
                Ok(migration) => {
                    prop_assert_eq!(values(&migration.text), expected.into_iter().collect::<Vec<_>>());
                    let again = migrate_env("env", &old_text, &migration.text, "now").unwrap();
                    prop_assert_eq!(again.text, migration.text);
                }
                Err(Error::ConfigParse { line: Some(line), .. }) => {
                    prop_assert!(line >= 1 && line <= old_text.lines().count().max(new_text.lines().count()));
                }
                Err(other) => prop_assert!(false, "{}", other),
            }
        }

        /// Arbitrary text never makes it panic.
        #[test]
        fn never_panics(old in "\\PC{0,120}|[A-Z_=\"'\\\\# \\n\\r]{0,80}", new in "\\PC{0,120}|[A-Z_=\"'\\\\# \\n\\r]{0,80}") {
            let _ = migrate_env("env", &old, &new, "now");
        }
    }
}
