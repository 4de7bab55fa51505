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

/// One top-level directive line (and, for a block value, the lines that follow it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, e.g. `db.workDir`.
    pub key: String,
    /// Whether the line is commented out (`#key: value`).
    pub commented: bool,
    /// 1-based line number.
    pub line: usize,
    /// Byte offset where the line starts.
    pub line_start: usize,
    /// Byte offset where the line's content starts (after a BOM on the first line):
    /// the `#` of a commented entry, or the key.
    pub content_start: usize,
    /// Byte offset of the key (after `#` and spaces when commented).
    pub key_start: usize,
    /// Byte offset where the value's text starts.
    pub value_start: usize,
    /// Byte offset where the value's text ends (before a trailing comment); for a
    /// block value, the end of its last line (before the line end).
    pub value_end: usize,
    /// Whether the value is a block (list or mapping on the following lines).
    pub block: bool,
    /// Quoting of a scalar value.
    pub quote: Quote,
}

impl Entry {
    /// Byte offset just after the key's colon.
    pub fn after_colon(&self) -> usize {
        self.key_start + self.key.len() + 1
    }

    /// The value's raw text as written.
    pub fn raw_value<'a>(&self, text: &'a str) -> &'a str {
        &text[self.value_start..self.value_end]
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
        Some(b'"') => {
            let mut index = 1;
            while index < bytes.len() {
                match bytes[index] {
                    b'\\' => index += 2,
                    b'"' => return (index + 1, Quote::Double),
                    _ => index += 1,
                }
            }
            (bytes.len(), Quote::Double)
        }
        Some(b'\'') => {
            let mut index = 1;
            while index < bytes.len() {
                if bytes[index] == b'\'' {
                    if bytes.get(index + 1) == Some(&b'\'') {
                        index += 2;
                        continue;
                    }
                    return (index + 1, Quote::Single);
                }
                index += 1;
            }
            (bytes.len(), Quote::Single)
        }
        _ => {
            // A plain scalar ends at " #" (a comment) or at the end of the line.
            let mut end = bytes.len();
            for index in 0..bytes.len() {
                if bytes[index] == b'#' && index > 0 && matches!(bytes[index - 1], b' ' | b'\t') {
                    end = index;
                    break;
                }
            }
            (rest[..end].trim_end().len(), Quote::Plain)
        }
    }
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
            let line = &text[content_start..end];
            let (commented, key_offset) = if let Some(rest) = line.strip_prefix('#') {
                let spaces = rest.len() - rest.trim_start_matches(' ').len();
                (true, 1 + spaces.min(1))
            } else {
                (false, 0)
            };
            let candidate = &line[key_offset..];
            let key_len = candidate.bytes().take_while(|b| is_key_byte(*b)).count();
            let is_directive = key_len > 0
                && is_key_start(candidate.as_bytes()[0])
                && candidate.as_bytes().get(key_len) == Some(&b':')
                && matches!(
                    candidate.as_bytes().get(key_len + 1),
                    None | Some(b' ' | b'\t')
                );
            if !is_directive {
                index += 1;
                continue;
            }
            let key_start = content_start + key_offset;
            let after_colon = key_start + key_len + 1;
            let rest = &text[after_colon..end];
            let value_offset = rest.len() - rest.trim_start().len();
            let value_start = after_colon + value_offset;
            let rest = &text[value_start..end];
            let is_empty = rest.is_empty() || rest.starts_with('#');
            let mut entry = Entry {
                key: candidate[..key_len].to_owned(),
                commented,
                line: index + 1,
                line_start: start,
                content_start,
                key_start,
                value_start,
                value_end: value_start,
                block: false,
                quote: Quote::Plain,
            };
            index += 1;
            if is_empty && !commented {
                // A block value: the following indented lines or `- ` items.
                let mut last_end = None;
                while index < lines.len() {
                    let (line_start, line_end, _) = lines[index];
                    let line = &text[line_start..line_end];
                    let continues = line.starts_with(' ')
                        || line.starts_with('\t')
                        || line.starts_with("- ")
                        || line == "-";
                    if !continues || line.trim().is_empty() {
                        break;
                    }
                    last_end = Some(line_end);
                    index += 1;
                }
                if let Some(block_end) = last_end {
                    entry.block = true;
                    entry.value_start = end;
                    entry.value_end = block_end;
                }
            } else if !is_empty {
                let (length, quote) = scalar_extent(rest);
                entry.value_end = value_start + length;
                entry.quote = quote;
            }
            entries.push(entry);
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
            .find(|entry| !entry.commented && entry.key == key)
    }

    /// The first commented-out entry for a key, if any.
    pub fn commented(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|entry| entry.commented && entry.key == key)
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
    if matches!(
        first,
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
    ) {
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
