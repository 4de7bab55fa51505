//! Values inside an XML file: how a file's bytes are encoded, which entities it
//! declares, and how a value is read (unescaped) and written (escaped for its
//! place and encoded for its file).
//!
//! Files reach the migration as [`raw_text`] strings: ASCII markup as it is,
//! every byte that is not UTF-8 as a stand-in. A single-byte encoding such as
//! windows-1251 therefore parses as it is, and only a value's own bytes need
//! decoding or encoding when it moves between files.

use std::collections::HashMap;

use encoding_rs::Encoding;

use super::super::raw_text;
use crate::error::{Error, Result};

/// Where a value sits, which decides how it is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// An attribute value between these quotes (`"` or `'`).
    Attribute(u8),
    /// Character data (`<value>…</value>`).
    Text,
    /// The inside of a CDATA section: written as it is.
    Cdata,
}

/// A general entity from a file's internal DOCTYPE subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// Plain text: its expansion.
    Text(String),
    /// External, or holding markup: the tool does not expand it.
    NotSimple,
}

fn refused(file: &str, message: String) -> Error {
    Error::ConfigParse {
        path: file.into(),
        line: Some(1),
        message,
    }
}

/// The `encoding` pseudo-attribute of an `<?xml …?>` declaration at the start.
fn declared_encoding(text: &str) -> Option<&str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let declaration = &text[..text.find("?>")?];
    if !declaration.starts_with("<?xml") {
        return None;
    }
    let after = &declaration[declaration.find("encoding")? + "encoding".len()..];
    let after = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &after[1..];
    Some(&value[..value.find(quote)?])
}

/// The encoding a file's bytes are in.
///
/// # Errors
/// [`Error::ConfigParse`] for UTF-16 or UTF-32 (detected on the bytes, with or
/// without a BOM or declaration), an unknown encoding label, or a multi-byte
/// encoding other than UTF-8: the tool edits only UTF-8 and single-byte files.
pub fn file_encoding(file: &str, text: &str) -> Result<&'static Encoding> {
    let convert =
        "convert it to UTF-8 (iconv -t UTF-8, and change its declaration) and run again, \
                   or carry the values by hand";
    // UTF-16 of ASCII is valid UTF-8 with NUL bytes, so it must be told on the bytes.
    let head: String = text.chars().take(4).collect();
    let head = raw_text::encode(&head);
    let utf16_bom = head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]);
    if utf16_bom || head.contains(&0) || text.contains('\0') {
        return Err(refused(
            file,
            format!(
                "is stored as UTF-16 or UTF-32 (NUL bytes or a UTF-16 byte order mark); {convert}"
            ),
        ));
    }
    if text.starts_with('\u{feff}') {
        return Ok(encoding_rs::UTF_8);
    }
    let Some(label) = declared_encoding(text) else {
        return Ok(encoding_rs::UTF_8);
    };
    let Some(encoding) = Encoding::for_label(label.as_bytes()) else {
        return Err(refused(
            file,
            format!("declares the encoding {label:?}, which the tool does not know; {convert}"),
        ));
    };
    if encoding == encoding_rs::UTF_8 || encoding.is_single_byte() {
        return Ok(encoding);
    }
    Err(refused(
        file,
        format!(
            "declares the encoding {label:?}, but its bytes are not that encoding, or it is a \
             multi-byte encoding the tool does not edit; {convert}"
        ),
    ))
}

/// General entities of a DOCTYPE's internal subset (`<!ENTITY name "text">`).
pub fn declared_entities(doctype: &str) -> HashMap<String, Entity> {
    let mut literals: Vec<(String, Option<String>)> = Vec::new();
    let mut rest = doctype;
    while let Some(at) = rest.find("<!ENTITY") {
        rest = &rest[at + "<!ENTITY".len()..];
        let body = rest.trim_start();
        if body.starts_with('%') {
            continue; // A parameter entity: never in a value.
        }
        let name_end = body.find(|c: char| c.is_whitespace()).unwrap_or(body.len());
        let name = body[..name_end].to_owned();
        let definition = body[name_end..].trim_start();
        let literal = definition
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .and_then(|quote| {
                let inner = &definition[1..];
                inner.find(quote).map(|end| inner[..end].to_owned())
            });
        literals.push((name, literal));
    }
    let raw: HashMap<String, Option<String>> = literals.into_iter().collect();
    raw.keys()
        .map(|name| (name.clone(), expand_entity(name, &raw, 0)))
        .collect()
}

fn expand_entity(name: &str, raw: &HashMap<String, Option<String>>, depth: usize) -> Entity {
    // Nested references are followed a few levels: deeper (or a loop) is not "simple".
    let Some(Some(literal)) = raw.get(name) else {
        return Entity::NotSimple;
    };
    if depth > 4 || literal.contains('<') || literal.contains('%') {
        return Entity::NotSimple;
    }
    let mut nested = HashMap::new();
    for reference in references(literal) {
        if predefined(reference).is_none() && !reference.starts_with('#') {
            nested.insert(
                reference.to_owned(),
                expand_entity(reference, raw, depth + 1),
            );
        }
    }
    match unescape(literal, &nested, None) {
        Ok(text) => Entity::Text(text),
        Err(_) => Entity::NotSimple,
    }
}

fn references(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices('&').filter_map(|(at, _)| {
        let rest = &text[at + 1..];
        rest.find(';').map(|end| &rest[..end])
    })
}

fn predefined(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

fn character_reference(reference: &str) -> Option<char> {
    let digits = reference.strip_prefix('#')?;
    let code = match digits.strip_prefix('x') {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    char::from_u32(code).filter(|c| *c != '\0')
}

/// Why a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// `&name;` that the file does not declare as plain text.
    Entity(String),
    /// A `&` that does not start a reference.
    BareAmpersand,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Entity(name) => write!(
                formatter,
                "uses the entity &{name}; which the file does not declare as plain text"
            ),
            Unreadable::BareAmpersand => write!(formatter, "holds a '&' that starts no reference"),
        }
    }
}

/// The value XML gives to `raw`: references resolved, and in an attribute
/// (`attribute_quote` given) literal line breaks and tabs read as spaces.
///
/// # Errors
/// [`Unreadable`] for an undeclared or not simple entity, or a bare `&`.
pub fn unescape(
    raw: &str,
    entities: &HashMap<String, Entity>,
    attribute_quote: Option<u8>,
) -> std::result::Result<String, Unreadable> {
    let raw = raw.replace("\r\n", "\n");
    let mut value = String::with_capacity(raw.len());
    let mut rest = raw.as_str();
    while let Some(at) = rest.find(['&', '\n', '\r', '\t']) {
        value.push_str(&rest[..at]);
        let marker = rest.as_bytes()[at];
        if marker != b'&' {
            value.push(if attribute_quote.is_some() {
                ' '
            } else if marker == b'\r' {
                '\n'
            } else {
                marker as char
            });
            rest = &rest[at + 1..];
            continue;
        }
        let after = &rest[at + 1..];
        let Some(end) = after.find(';') else {
            return Err(Unreadable::BareAmpersand);
        };
        let reference = &after[..end];
        if let Some(c) = predefined(reference).or_else(|| character_reference(reference)) {
            value.push(c);
        } else if reference.starts_with('#') || reference.is_empty() {
            return Err(Unreadable::BareAmpersand);
        } else {
            match entities.get(reference) {
                Some(Entity::Text(text)) => value.push_str(text),
                _ => return Err(Unreadable::Entity(reference.to_owned())),
            }
        }
        rest = &after[end + 1..];
    }
    value.push_str(rest);
    Ok(value)
}

/// Whether a character is one of [`raw_text`]'s stand-ins for bytes.
fn is_stand_in(c: char) -> bool {
    (0x10_FF80..=0x10_FFFF).contains(&u32::from(c))
}

/// `value` escaped for its place; `None` when a CDATA section cannot hold it.
pub fn escape(value: &str, kind: SlotKind) -> Option<String> {
    if kind == SlotKind::Cdata {
        return (!value.contains("]]>") && !value.chars().any(is_stand_in))
            .then(|| value.to_owned());
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match (c, kind) {
            ('&', _) => out.push_str("&amp;"),
            ('<', _) => out.push_str("&lt;"),
            ('>', _) => out.push_str("&gt;"),
            ('"', SlotKind::Attribute(b'"')) => out.push_str("&quot;"),
            ('\'', SlotKind::Attribute(b'\'')) => out.push_str("&apos;"),
            ('\n' | '\t', SlotKind::Attribute(_)) | ('\r', _) => {
                out.push_str(&format!("&#{};", u32::from(c)));
            }
            // Written as a reference, so it is never mistaken for a stand-in for a byte.
            (c, _) if is_stand_in(c) => out.push_str(&format!("&#x{:X};", u32::from(c))),
            (c, _) => out.push(c),
        }
    }
    Some(out)
}

/// Whether `raw`, as written in a slot of kind `from` of a file declaring
/// `from_entities`, means the same in a slot of kind `to` of a file declaring
/// `to_entities` (so it can be copied as it is).
pub fn portable(
    raw: &str,
    (from, from_entities): (SlotKind, &HashMap<String, Entity>),
    (to, to_entities): (SlotKind, &HashMap<String, Entity>),
) -> bool {
    let references_ok = references(raw).all(|reference| {
        predefined(reference).is_some()
            || character_reference(reference).is_some()
            || matches!(
                (from_entities.get(reference), to_entities.get(reference)),
                (Some(Entity::Text(a)), Some(Entity::Text(b))) if a == b
            )
    });
    let breaks = raw.contains(['\n', '\r', '\t']);
    let fits = match (from, to) {
        (SlotKind::Cdata, _) | (_, SlotKind::Cdata) => false,
        (SlotKind::Attribute(_), SlotKind::Attribute(quote)) => !raw.as_bytes().contains(&quote),
        (SlotKind::Text, SlotKind::Text) => true,
        (SlotKind::Text, SlotKind::Attribute(quote)) => !raw.as_bytes().contains(&quote) && !breaks,
        (SlotKind::Attribute(_), SlotKind::Text) => !breaks,
    };
    fits && references_ok
}

/// A value's text from its raw span: the span's bytes decoded from the file's
/// encoding; `None` when they are not valid in it.
pub fn decode_span(raw: &str, encoding: &'static Encoding) -> Option<String> {
    let bytes = raw_text::encode(raw);
    encoding
        .decode_without_bom_handling_and_without_replacement(&bytes)
        .map(|text| text.into_owned())
}

/// `escaped` (ASCII markup and characters) as raw text of a file in `encoding`;
/// `None` when a character has no byte there and the place cannot take a
/// character reference instead.
pub fn encode_for(escaped: &str, encoding: &'static Encoding, kind: SlotKind) -> Option<String> {
    if encoding == encoding_rs::UTF_8 {
        return Some(escaped.to_owned());
    }
    let (bytes, _, unmappable) = encoding.encode(escaped);
    // Unmappable characters come out as `&#NNNN;`: a character reference, fine outside CDATA.
    if unmappable && kind == SlotKind::Cdata {
        return None;
    }
    raw_text::decode("", &bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_entities() -> HashMap<String, Entity> {
        HashMap::new()
    }

    #[test]
    fn references_resolve_and_attributes_normalise_breaks() {
        let entities = declared_entities(
            " beans [ <!ENTITY home \"/opt/&sub;\"> <!ENTITY sub 'cmw'> <!ENTITY ext SYSTEM \"x.xml\"> <!ENTITY % p \"q\"> ]",
        );
        assert_eq!(entities.get("home"), Some(&Entity::Text("/opt/cmw".into())));
        assert_eq!(entities.get("ext"), Some(&Entity::NotSimple));
        assert!(!entities.contains_key("%"));
        assert_eq!(
            unescape("&home;/a&amp;b&#x41;&#66;\r\nc", &entities, Some(b'"')).unwrap(),
            "/opt/cmw/a&bAB c"
        );
        assert_eq!(unescape("a\r\nb", &entities, None).unwrap(), "a\nb");
        assert_eq!(
            unescape("&ext;", &entities, None),
            Err(Unreadable::Entity("ext".into()))
        );
        assert_eq!(
            unescape("&custom;", &no_entities(), None),
            Err(Unreadable::Entity("custom".into()))
        );
        assert_eq!(
            unescape("a & b", &no_entities(), None),
            Err(Unreadable::BareAmpersand)
        );
    }

    #[test]
    fn escaping_fits_the_place() {
        let value = "a\"b'c<&>\n";
        assert_eq!(
            escape(value, SlotKind::Attribute(b'"')).unwrap(),
            "a&quot;b'c&lt;&amp;&gt;&#10;"
        );
        assert_eq!(
            escape(value, SlotKind::Attribute(b'\'')).unwrap(),
            "a\"b&apos;c&lt;&amp;&gt;&#10;"
        );
        assert_eq!(
            escape(value, SlotKind::Text).unwrap(),
            "a\"b'c&lt;&amp;&gt;\n"
        );
        assert_eq!(escape("x]]>", SlotKind::Cdata), None);
        for kind in [
            SlotKind::Attribute(b'"'),
            SlotKind::Attribute(b'\''),
            SlotKind::Text,
        ] {
            let quote = match kind {
                SlotKind::Attribute(quote) => Some(quote),
                _ => None,
            };
            assert_eq!(
                unescape(&escape(value, kind).unwrap(), &no_entities(), quote).unwrap(),
                value
            );
        }
    }

    #[test]
    fn encodings_are_told_on_the_bytes() {
        let utf16: Vec<u8> = "<?xml version=\"1.0\"?><beans/>"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let text = raw_text::decode("f", &utf16).unwrap();
        assert!(file_encoding("f", &text)
            .unwrap_err()
            .to_string()
            .contains("UTF-16"));
        let with_bom = raw_text::decode("f", &[&[0xFF, 0xFE][..], &utf16].concat()).unwrap();
        assert!(file_encoding("f", &with_bom).is_err());
        let declared = "<?xml version='1.0' encoding='windows-1251'?><beans/>";
        assert_eq!(
            file_encoding("f", declared).unwrap(),
            encoding_rs::WINDOWS_1251
        );
        assert_eq!(file_encoding("f", "<beans/>").unwrap(), encoding_rs::UTF_8);
        assert!(file_encoding("f", "<?xml version=\"1.0\" encoding=\"UTF-16\"?><beans/>").is_err());
        assert!(
            file_encoding("f", "<?xml version=\"1.0\" encoding=\"no-such\"?><beans/>").is_err()
        );
        assert!(file_encoding(
            "f",
            "<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><beans/>"
        )
        .is_err());
    }

    #[test]
    fn values_cross_encodings() {
        // "Сайт" in windows-1251, as raw text.
        let raw = raw_text::decode("f", b"\xD1\xE0\xE9\xF2").unwrap();
        let value = decode_span(&raw, encoding_rs::WINDOWS_1251).unwrap();
        assert_eq!(value, "Сайт");
        assert_eq!(
            raw_text::encode(
                &encode_for(&value, encoding_rs::WINDOWS_1251, SlotKind::Text).unwrap()
            ),
            b"\xD1\xE0\xE9\xF2"
        );
        // A character windows-1251 lacks becomes a character reference, but never in CDATA.
        assert_eq!(
            encode_for("€ 日", encoding_rs::WINDOWS_1251, SlotKind::Text)
                .map(|t| raw_text::encode(&t)),
            Some(b"\x88 &#26085;".to_vec())
        );
        assert_eq!(
            encode_for("日", encoding_rs::WINDOWS_1251, SlotKind::Cdata),
            None
        );
        assert_eq!(decode_span(&raw, encoding_rs::UTF_8), None);
    }
}
