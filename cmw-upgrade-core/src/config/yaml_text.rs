//! Editing the platform's YAML configs as text, so that everything but the
//! changed values stays byte-identical: comments, order, blank lines, quoting.
//!
//! The files hold flat dotted keys at top level (`db.workDir: /var/lib/...`),
//! heavy comments, directives disabled as comments (`#journal.enabled: false`),
//! and a few list values. [`YamlText::parse`] finds every top-level directive,
//! active or commented, with the byte spans of its value; the migration replaces
//! only those spans.

use yaml_serde::Value;

/// How a scalar is quoted in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// Plain: `key: value`.
    Plain,
    /// `key: 'value'`.
    Single,
    /// `key: "value"`.
    Double,
}

/// The form a directive's value takes in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Nothing after the colon (a null, or with a tag an empty scalar).
    Empty,
    /// A plain or quoted scalar on the key's line.
    Scalar,
    /// A plain or quoted scalar that goes on over the following lines.
    MultiLine,
    /// A literal (`|`) or folded (`>`) block scalar: its header and its lines.
    BlockScalar,
    /// A flow sequence or mapping (`[a, b]`, `{a: 1}`), on one or more lines.
    Flow,
    /// A list or mapping on the following lines.
    Collection,
    /// An alias (`*name`) of an anchor elsewhere in the file.
    Alias,
}

/// One top-level directive (the key's line and the lines its value goes on over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key as YAML reads it (unquoted), e.g. `db.workDir`.
    pub key: String,
    /// Whether YAML reads the key as a string (`1`, `true`, `null` are not).
    pub key_is_text: bool,
    /// Whether the line is commented out (`#key: value`).
    pub commented: bool,
    /// 1-based line number of the key.
    pub line: usize,
    /// Byte offset where the line starts.
    pub line_start: usize,
    /// Byte offset where the line's content starts (after a BOM on the first line):
    /// the `#` of a commented entry, or the key.
    pub content_start: usize,
    /// Byte offset of the key (after `#` and spaces when commented; its opening
    /// quote when quoted).
    pub key_start: usize,
    /// Byte offset of the colon that ends the key.
    pub colon: usize,
    /// Byte offset where the value's text starts (its anchor or tag, if any); for
    /// a list or mapping on the following lines, the end of the key's line.
    pub value_start: usize,
    /// Byte offset where the value's text ends (before a trailing comment); for a
    /// value on several lines, the end of its last line (before the line end).
    pub value_end: usize,
    /// Whether the value goes on past the key's line.
    pub block: bool,
    /// The value's form.
    pub kind: ValueKind,
    /// Whether the value has an anchor (`&name`) or a tag (`!tag`).
    pub properties: bool,
    /// Quoting of a scalar value.
    pub quote: Quote,
    /// A comment on the line where a one-line value ends, or on the key's line
    /// of a value on the following lines: `(start of '#', end of the comment)`.
    pub comment: Option<(usize, usize)>,
}

impl Entry {
    /// Byte offset just after the key's colon.
    pub fn after_colon(&self) -> usize {
        self.colon + 1
    }

    /// The value's raw text as written.
    pub fn raw_value<'a>(&self, text: &'a str) -> &'a str {
        &text[self.value_start..self.value_end]
    }

    /// Whether the value is nothing or a one-line plain or quoted scalar without
    /// anchor or tag: another scalar can take its place in its quoting style.
    pub fn is_simple(&self) -> bool {
        matches!(self.kind, ValueKind::Empty | ValueKind::Scalar) && !self.properties
    }
}

/// A parsed config text: its directives with their spans.
#[derive(Debug, Clone)]
pub struct YamlText<'a> {
    text: &'a str,
    entries: Vec<Entry>,
    line_ending: &'static str,
}

fn is_key_start(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-')
}

fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t')
}

/// Characters that cannot start a plain scalar (YAML's indicators).
fn is_indicator(byte: u8) -> bool {
    matches!(
        byte,
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    )
}

/// Splits text into lines as `(start, end_without_line_ending, next_line_start)`.
fn line_spans(text: &str) -> Vec<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let newline = memchr::memchr(b'\n', &bytes[start..]).map(|index| start + index);
        let next = newline.map_or(bytes.len(), |index| index + 1);
        let mut end = newline.unwrap_or(bytes.len());
        if end > start && bytes[end - 1] == b'\r' {
            end -= 1;
        }
        spans.push((start, end, next));
        start = next;
    }
    spans
}

/// Where a scalar value ends, and how it is quoted, given the text after `key:`.
fn scalar_extent(rest: &str) -> (usize, Quote) {
    let bytes = rest.as_bytes();
    match bytes.first() {
        Some(b'"' | b'\'') => match quoted_end(rest, 0) {
            Some(end) => (end, quote_of(bytes[0])),
            None => (bytes.len(), quote_of(bytes[0])),
        },
        _ => (plain_end(rest), Quote::Plain),
    }
}

fn quote_of(byte: u8) -> Quote {
    match byte {
        b'"' => Quote::Double,
        b'\'' => Quote::Single,
        _ => Quote::Plain,
    }
}

/// The length of a plain scalar's text on one line: up to a ` #` comment, without
/// trailing white space.
fn plain_end(rest: &str) -> usize {
    let end = comment_start(rest, 0).unwrap_or(rest.len());
    rest[..end].trim_end().len()
}

/// The offset of a `#` that starts a comment (preceded by white space or at
/// `from` itself, the start of a token), if any.
fn comment_start(line: &str, from: usize) -> Option<usize> {
    let bytes = line.as_bytes();
    (from..bytes.len())
        .find(|&index| bytes[index] == b'#' && (index == from || is_blank(bytes[index - 1])))
}

/// The offset just after the quote that closes the quoted scalar opening at
/// `open` (which may be on a later line), or `None` when it is not closed.
fn quoted_end(text: &str, open: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let quote = bytes[open];
    let mut index = open + 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' if quote == b'"' => index += 2,
            byte if byte == quote => {
                if quote == b'\'' && bytes.get(index + 1) == Some(&b'\'') {
                    index += 2;
                    continue;
                }
                return Some(index + 1);
            }
            _ => index += 1,
        }
    }
    None
}

/// The offset just after the bracket that closes the flow collection opening at
/// `open`, skipping quoted scalars and comments; `None` when it is not closed.
fn flow_end(text: &str, open: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut index = open;
    while index < bytes.len() {
        let byte = bytes[index];
        let token_start = index == open
            || matches!(
                bytes[index - 1],
                b'[' | b'{' | b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' | b'?'
            );
        match byte {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(index + 1);
                }
            }
            b'"' | b'\'' if token_start => {
                index = quoted_end(text, index)?;
                continue;
            }
            b'#' if index > open && matches!(bytes[index - 1], b' ' | b'\t' | b'\n' | b'\r') => {
                index = memchr::memchr(b'\n', &bytes[index..]).map_or(bytes.len(), |n| index + n);
                continue;
            }
            _ => {}
        }
        index += 1;
    }
    None
}

/// The key at the start of a top-level line: `(length of its text as written,
/// offset of its colon)`. Plain keys may have spaces before the colon; quoted
/// keys are on one line.
fn key_extent(line: &str) -> Option<(usize, usize)> {
    let bytes = line.as_bytes();
    let first = *bytes.first()?;
    let is_colon_at = |index: usize| {
        bytes.get(index) == Some(&b':') && bytes.get(index + 1).is_none_or(|b| is_blank(*b))
    };
    if matches!(first, b'"' | b'\'') {
        let end = quoted_end(line, 0)?;
        let colon = end + line[end..].len() - line[end..].trim_start_matches([' ', '\t']).len();
        return is_colon_at(colon).then_some((end, colon));
    }
    let starts_plain = !is_blank(first)
        && (!is_indicator(first)
            || (matches!(first, b'-' | b'?' | b':')
                && bytes.get(1).is_some_and(|b| !b.is_ascii_whitespace())));
    let document_marker = (line.starts_with("---") || line.starts_with("..."))
        && bytes.get(3).is_none_or(|b| b.is_ascii_whitespace());
    if !starts_plain || document_marker {
        return None;
    }
    for index in 0..bytes.len() {
        if bytes[index] == b'#' && index > 0 && is_blank(bytes[index - 1]) {
            return None;
        }
        if is_colon_at(index) {
            return Some((line[..index].trim_end().len(), index));
        }
    }
    None
}

/// The key as YAML reads it (as the key of a mapping, where `a::` means `a:`),
/// and whether that is a string.
fn key_meaning(raw: &str) -> Option<(String, bool)> {
    let mapping = yaml_serde::from_str::<yaml_serde::Mapping>(&format!("{raw}: 0")).ok()?;
    match mapping.keys().next()? {
        Value::String(key) => Some((key.clone(), true)),
        Value::Null | Value::Bool(_) | Value::Number(_) => Some((raw.to_owned(), false)),
        _ => None,
    }
}

/// The lines after `first` that belong to a value, as the index of the last one:
/// those `belongs` accepts, with blank lines (and, where `comments_between`,
/// comment lines at the margin) between them.
fn last_continuation(
    text: &str,
    lines: &[(usize, usize, usize)],
    first: usize,
    comments_between: bool,
    belongs: impl Fn(&str) -> bool,
) -> Option<usize> {
    let mut last = None;
    for (index, &(start, end, _)) in lines.iter().enumerate().skip(first) {
        let line = &text[start..end];
        if line.trim().is_empty() || (comments_between && line.starts_with('#')) {
            continue;
        }
        if !belongs(line) {
            break;
        }
        last = Some(index);
    }
    last
}

/// The index of the line holding byte `offset`, searching from `from`.
fn line_of(lines: &[(usize, usize, usize)], from: usize, offset: usize) -> usize {
    (from..lines.len())
        .find(|&index| offset <= lines[index].1)
        .unwrap_or(lines.len().saturating_sub(1))
}

/// A comment after `from` on the line ending at `end`, if the rest is one.
fn trailing_comment(text: &str, from: usize, end: usize) -> Option<(usize, usize)> {
    let rest = &text[from.min(end)..end];
    let trimmed = rest.trim_start_matches([' ', '\t']);
    trimmed
        .starts_with('#')
        .then(|| (end - trimmed.len(), from + rest.trim_end().len()))
}

/// A commented-out directive (`#key: value`, `# key: value`) on one line.
fn commented_entry(
    text: &str,
    index: usize,
    line_start: usize,
    content_start: usize,
    end: usize,
) -> Option<Entry> {
    let line = &text[content_start..end];
    let rest = line.strip_prefix('#')?;
    let key_offset = 1 + usize::from(rest.starts_with(' '));
    let candidate = &line[key_offset..];
    let key_len = candidate.bytes().take_while(|b| is_key_byte(*b)).count();
    let is_directive = key_len > 0
        && is_key_start(candidate.as_bytes()[0])
        && candidate.as_bytes().get(key_len) == Some(&b':')
        && candidate
            .as_bytes()
            .get(key_len + 1)
            .is_none_or(|b| is_blank(*b));
    if !is_directive {
        return None;
    }
    let (key, key_is_text) = key_meaning(&candidate[..key_len])?;
    let key_start = content_start + key_offset;
    let colon = key_start + key_len;
    let after = &text[colon + 1..end];
    let value_start = colon + 1 + after.len() - after.trim_start().len();
    let rest = &text[value_start..end];
    let (length, quote) = if rest.is_empty() || rest.starts_with('#') {
        (0, Quote::Plain)
    } else {
        scalar_extent(rest)
    };
    Some(Entry {
        key,
        key_is_text,
        commented: true,
        line: index + 1,
        line_start,
        content_start,
        key_start,
        colon,
        value_start,
        value_end: value_start + length,
        block: false,
        kind: if length == 0 {
            ValueKind::Empty
        } else {
            ValueKind::Scalar
        },
        properties: false,
        quote,
        comment: None,
    })
}

/// An active top-level directive starting on line `index`, with the index of the
/// first line after it.
fn active_entry(
    text: &str,
    lines: &[(usize, usize, usize)],
    index: usize,
    content_start: usize,
) -> Option<(Entry, usize)> {
    let bytes = text.as_bytes();
    let (line_start, end, _) = lines[index];
    let (key_len, colon_offset) = key_extent(&text[content_start..end])?;
    let (key, key_is_text) = key_meaning(&text[content_start..content_start + key_len])?;
    let colon = content_start + colon_offset;
    let skip_blanks = |mut position: usize| {
        while position < end && is_blank(bytes[position]) {
            position += 1;
        }
        position
    };
    let value_start = skip_blanks(colon + 1);
    // An anchor and a tag may come before the value itself.
    let mut position = value_start;
    let mut properties_end = value_start;
    while position < end && matches!(bytes[position], b'&' | b'!') {
        while position < end && !is_blank(bytes[position]) {
            position += 1;
        }
        properties_end = position;
        position = skip_blanks(position);
    }
    let properties = properties_end > value_start;
    let mut entry = Entry {
        key,
        key_is_text,
        commented: false,
        line: index + 1,
        line_start,
        content_start,
        key_start: content_start,
        colon,
        value_start,
        value_end: properties_end,
        block: false,
        kind: ValueKind::Empty,
        properties,
        quote: Quote::Plain,
        comment: None,
    };
    let mut next = index + 1;
    let indented = |line: &str| line.starts_with([' ', '\t']);
    match bytes.get(position).filter(|_| position < end) {
        None | Some(b'#') => {
            entry.comment = trailing_comment(text, position, end);
            // A list or mapping on the following lines; a list may start at the margin.
            let item = |line: &str| {
                indented(line) || line == "-" || line.starts_with("- ") || line.starts_with("-\t")
            };
            if let Some(last) = last_continuation(text, lines, index + 1, true, item) {
                entry.kind = ValueKind::Collection;
                entry.block = true;
                if !properties {
                    entry.value_start = end;
                }
                entry.value_end = lines[last].1;
                next = last + 1;
            }
        }
        Some(b'|' | b'>') => {
            entry.kind = ValueKind::BlockScalar;
            let mut header_end = position + 1;
            while header_end < end && matches!(bytes[header_end], b'0'..=b'9' | b'+' | b'-') {
                header_end += 1;
            }
            entry.value_end = header_end;
            entry.comment = trailing_comment(text, header_end, end);
            // Its lines are indented; blank lines belong to it wherever they are.
            if let Some(last) =
                last_continuation(text, lines, index + 1, false, |line| line.starts_with(' '))
            {
                entry.block = true;
                entry.value_end = lines[last].1;
                next = last + 1;
            }
        }
        Some(&open @ (b'"' | b'\'' | b'[' | b'{')) => {
            entry.kind = if matches!(open, b'[' | b'{') {
                ValueKind::Flow
            } else {
                entry.quote = quote_of(open);
                ValueKind::Scalar
            };
            let close = if entry.kind == ValueKind::Flow {
                flow_end(text, position)
            } else {
                quoted_end(text, position)
            };
            // Unclosed: the YAML parser rejects the file; the span ends with the line.
            let close = close.unwrap_or(end);
            let last = line_of(lines, index, close);
            let last_end = lines[last].1;
            if last > index {
                entry.block = true;
                if entry.kind == ValueKind::Scalar {
                    entry.kind = ValueKind::MultiLine;
                }
            }
            entry.value_end = close;
            entry.comment = trailing_comment(text, close, last_end);
            next = last + 1;
        }
        Some(b'*') => {
            entry.kind = ValueKind::Alias;
            let mut alias_end = position;
            while alias_end < end && !is_blank(bytes[alias_end]) {
                alias_end += 1;
            }
            entry.value_end = alias_end;
            entry.comment = trailing_comment(text, alias_end, end);
        }
        Some(_) => {
            entry.kind = ValueKind::Scalar;
            entry.value_end = position + plain_end(&text[position..end]);
            entry.comment = trailing_comment(text, entry.value_end, end);
            if entry.comment.is_none() {
                // A plain scalar goes on over indented lines, up to a comment.
                let continues = |line: &str| indented(line) && !line.trim_start().starts_with('#');
                if let Some(last) = last_continuation(text, lines, index + 1, false, continues) {
                    let (last_start, last_end, _) = lines[last];
                    let line = &text[last_start..last_end];
                    let content = line.len() - line.trim_start().len();
                    entry.kind = ValueKind::MultiLine;
                    entry.block = true;
                    entry.value_end = last_start + content + plain_end(&line[content..]);
                    entry.comment = trailing_comment(text, entry.value_end, last_end);
                    next = last + 1;
                }
            }
        }
    }
    Some((entry, next))
}

impl<'a> YamlText<'a> {
    /// Finds the top-level directives of a config text. Never fails: lines that are
    /// not directives are left alone (the YAML parser judges validity separately).
    pub fn parse(text: &'a str) -> Self {
        let lines = line_spans(text);
        let crlf = lines
            .iter()
            .filter(|(_, end, next)| *next > *end + 1)
            .count();
        let line_ending = if crlf * 2 > lines.len() && crlf > 0 {
            "\r\n"
        } else {
            "\n"
        };
        let mut entries = Vec::new();
        let mut index = 0;
        while index < lines.len() {
            let (start, end, _) = lines[index];
            let mut content_start = start;
            if start == 0 && text.starts_with('\u{feff}') {
                content_start += '\u{feff}'.len_utf8();
            }
            if let Some(entry) = commented_entry(text, index, start, content_start, end) {
                entries.push(entry);
                index += 1;
            } else if let Some((entry, next)) = active_entry(text, &lines, index, content_start) {
                entries.push(entry);
                index = next;
            } else {
                index += 1;
            }
        }
        YamlText {
            text,
            entries,
            line_ending,
        }
    }

    /// All directives, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The active (uncommented) entry for a key, if any.
    pub fn active(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|entry| !entry.commented && entry.key_is_text && entry.key == key)
    }

    /// The first commented-out entry for a key, if any.
    pub fn commented(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|entry| entry.commented && entry.key_is_text && entry.key == key)
    }

    /// The text this was parsed from.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// `\r\n` when most lines end so, else `\n`.
    pub fn line_ending(&self) -> &'static str {
        self.line_ending
    }
}

/// Whether a plain (unquoted) scalar would be read as something other than this
/// string by a YAML 1.1 or 1.2 reader: booleans (`yes`, `on`, `y`), nulls, numbers
/// (`0755`, `1e3`, `1:20`), or text that YAML reads as syntax (`a: b`, ` #`, leading
/// indicators, surrounding spaces).
pub fn needs_quotes(value: &str) -> bool {
    if value.is_empty() || value != value.trim() {
        return true;
    }
    let lower = value.to_ascii_lowercase();
    const SPECIAL_WORDS: &[&str] = &[
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", ".nan", ".inf", "-.inf",
        "+.inf",
    ];
    if SPECIAL_WORDS.contains(&lower.as_str()) {
        return true;
    }
    // Anything number-like in YAML 1.1 (octal 0755, sexagesimal 1:20, 1_000, 0x1F, 1e3).
    let first = value.as_bytes()[0];
    if first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.') {
        let number_like = value.bytes().all(|b| {
            b.is_ascii_hexdigit()
                || matches!(b, b'.' | b'_' | b':' | b'+' | b'-' | b'x' | b'X' | b'o')
        });
        if number_like {
            return true;
        }
    }
    if is_indicator(first) {
        return true;
    }
    value.contains(": ")
        || value.contains(" #")
        || value.ends_with(':')
        || value.contains('\t')
        || value.contains('\n')
        || value.contains('\r')
}

/// Writes a string as a double-quoted YAML scalar.
pub fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a string as a single-quoted YAML scalar, or `None` if it cannot be
/// (single quotes cannot hold line breaks faithfully).
pub fn single_quoted(value: &str) -> Option<String> {
    if value.contains(['\n', '\r']) || value.chars().any(char::is_control) {
        return None;
    }
    Some(format!("'{}'", value.replace('\'', "''")))
}

/// Renders a value carried from an old file into the quoting style of the line it
/// goes to, without changing its meaning.
///
/// `old_raw` is the value as written in the old file and `old_value` what it means.
/// Non-strings keep their old text. A string is written in the target line's
/// style, except where YAML 1.1 and 1.2 readers would disagree about it (`yes`,
/// `0755`, `a: b # c`): then a plain old value keeps its exact text (so the
/// platform reads it as it did before) and a quoted one stays quoted.
pub fn render_value(old_raw: &str, old_value: &Value, target_style: Quote) -> String {
    let Value::String(text) = old_value else {
        return old_raw.to_owned();
    };
    if needs_quotes(text) {
        let old_is_quoted = old_raw.starts_with('"') || old_raw.starts_with('\'');
        return match target_style {
            Quote::Plain => old_raw.to_owned(),
            _ if !old_is_quoted => old_raw.to_owned(),
            Quote::Double => double_quoted(text),
            Quote::Single => single_quoted(text).unwrap_or_else(|| double_quoted(text)),
        };
    }
    match target_style {
        Quote::Double => double_quoted(text),
        Quote::Single => single_quoted(text).unwrap_or_else(|| double_quoted(text)),
        Quote::Plain => text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TEXT: &str = "# header: not a directive\n\u{0023}db.name: commented\ndb.name: prod # inline\nport: \"8080\"\nname: 'it''s'\nservices:\n  - web\n  - api\n\n#journal.enabled: false\n# tempPath: /x\nempty:\nnested:\n  a: 1\nlast: value";

    #[test]
    fn directives_and_spans() {
        let parsed = YamlText::parse(TEXT);
        let keys: Vec<(&str, bool)> = parsed
            .entries()
            .iter()
            .map(|entry| (entry.key.as_str(), entry.commented))
            .collect();
        assert_eq!(
            keys,
            [
                ("header", true),
                ("db.name", true),
                ("db.name", false),
                ("port", false),
                ("name", false),
                ("services", false),
                ("journal.enabled", true),
                ("tempPath", true),
                ("empty", false),
                ("nested", false),
                ("last", false),
            ]
        );
        let active = parsed.active("db.name").unwrap();
        assert_eq!(active.raw_value(TEXT), "prod");
        assert_eq!(active.line, 3);
        assert_eq!(parsed.active("port").unwrap().raw_value(TEXT), "\"8080\"");
        assert_eq!(parsed.active("port").unwrap().quote, Quote::Double);
        assert_eq!(parsed.active("name").unwrap().raw_value(TEXT), "'it''s'");
        let services = parsed.active("services").unwrap();
        assert!(services.block);
        assert_eq!(services.raw_value(TEXT), "\n  - web\n  - api");
        assert_eq!(
            parsed.commented("journal.enabled").unwrap().raw_value(TEXT),
            "false"
        );
        assert_eq!(parsed.commented("tempPath").unwrap().raw_value(TEXT), "/x");
        assert_eq!(parsed.active("empty").unwrap().raw_value(TEXT), "");
        assert_eq!(parsed.active("last").unwrap().raw_value(TEXT), "value");
        assert_eq!(parsed.line_ending(), "\n");
    }

    #[test]
    fn every_value_form_has_its_span() {
        let text = "\"q.key\" : 'v'  # c\nk2 : plain text\n  going on\nlit: |-2  # header\n   a\n\n  b\nx: 1\nmsg: \"a\n  b\" # after\nflow: [a, {b: c},\n  d]\nmap: {a: 1}\nanchored: &a !!str v\nalias: *a\nlist: # about\n- x\n# between\n- y\n#commented: 1\n";
        let parsed = YamlText::parse(text);
        let found: Vec<(&str, ValueKind, &str)> = parsed
            .entries()
            .iter()
            .filter(|entry| !entry.commented)
            .map(|entry| (entry.key.as_str(), entry.kind, entry.raw_value(text)))
            .collect();
        assert_eq!(
            found,
            [
                ("q.key", ValueKind::Scalar, "'v'"),
                ("k2", ValueKind::MultiLine, "plain text\n  going on"),
                ("lit", ValueKind::BlockScalar, "|-2  # header\n   a\n\n  b"),
                ("x", ValueKind::Scalar, "1"),
                ("msg", ValueKind::MultiLine, "\"a\n  b\""),
                ("flow", ValueKind::Flow, "[a, {b: c},\n  d]"),
                ("map", ValueKind::Flow, "{a: 1}"),
                ("anchored", ValueKind::Scalar, "&a !!str v"),
                ("alias", ValueKind::Alias, "*a"),
                ("list", ValueKind::Collection, "\n- x\n# between\n- y"),
            ]
        );
        let comment = |key: &str| {
            let entry = parsed.active(key).unwrap();
            entry.comment.map(|(start, end)| &text[start..end])
        };
        assert_eq!(comment("q.key"), Some("# c"));
        assert_eq!(comment("lit"), Some("# header"));
        assert_eq!(comment("msg"), Some("# after"));
        assert_eq!(comment("list"), Some("# about"));
        assert!(parsed.active("anchored").unwrap().properties);
        assert!(!parsed.active("anchored").unwrap().is_simple());
        assert_eq!(parsed.commented("commented").unwrap().line, 20);
        assert!(yaml_serde::from_str::<Value>(text).is_ok());
    }

    #[test]
    fn crlf_and_bom() {
        let text = "\u{feff}a: 1\r\nb: \"x\"\r\n";
        let parsed = YamlText::parse(text);
        assert_eq!(parsed.line_ending(), "\r\n");
        assert_eq!(parsed.active("a").unwrap().raw_value(text), "1");
        assert_eq!(parsed.active("b").unwrap().raw_value(text), "\"x\"");
    }

    #[test]
    fn values_that_yaml_1_1_misreads_are_quoted() {
        for value in [
            "yes", "On", "0755", "a: b # c", "1:20", "null", "~", "", " x", "-x", "1e3", "0x1F",
            "*ref", "true",
        ] {
            assert!(needs_quotes(value), "{value:?}");
        }
        for value in [
            "prod",
            "/var/lib/x",
            "http://host:9200",
            "s3cr3t",
            "a-b",
            "journal user",
        ] {
            assert!(!needs_quotes(value), "{value:?}");
        }
    }

    fn meaning(scalar: &str) -> Value {
        let mapping: Value = yaml_serde::from_str(&format!("k: {scalar}")).unwrap();
        mapping.get("k").unwrap().clone()
    }

    proptest! {
        /// Rendering keeps the meaning, whatever the target style.
        #[test]
        fn rendering_keeps_the_meaning(text in "[ -~]{0,20}", style in 0..3usize) {
            let style = [Quote::Plain, Quote::Single, Quote::Double][style];
            let raw = double_quoted(&text);
            let value = meaning(&raw);
            prop_assert_eq!(&value, &Value::String(text.clone()));
            let rendered = render_value(&raw, &value, style);
            prop_assert_eq!(meaning(&rendered), value);
        }

        /// Parsing never panics and spans stay on char boundaries.
        #[test]
        fn parse_never_panics(text in "\\PC{0,200}") {
            let parsed = YamlText::parse(&text);
            for entry in parsed.entries() {
                let _ = entry.raw_value(&text);
            }
        }
    }
}
