//! Config files as text without losing a byte, whatever their encoding.
//!
//! Admins' files are not always UTF-8: an nginx site or an Ignite.config saved
//! on a Windows desktop carries cp1251 comments. The migration edits a few
//! spans and must give back every other byte exactly as it was, so a file is
//! read as text in which each byte that is not part of valid UTF-8 becomes one
//! stand-in character from the end of Unicode's last private-use plane
//! (U+10FF80 + the byte's low seven bits, for bytes 0x80..=0xFF — only those
//! can be invalid). Writing turns each stand-in back into its byte.
//!
//! A file that is valid UTF-8 and holds stand-in characters of its own would be
//! ambiguous: it is refused rather than read wrongly (no real config holds
//! characters from that plane).

use crate::error::{Error, Result};

/// The first stand-in character: U+10FF80 stands for byte 0x80.
const STAND_IN_BASE: u32 = 0x10_FF80;

/// Why a file holding characters of the stand-ins' range is refused.
const STAND_IN_CLASH: &str = "holds characters from Unicode's last private-use plane \
     (U+10FF80..U+10FFFF), which this tool uses for bytes that are not UTF-8; edit this file by hand";

fn stand_in(byte: u8) -> char {
    // Only bytes >= 0x80 can start or sit in an invalid sequence.
    char::from_u32(STAND_IN_BASE + u32::from(byte - 0x80)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn stood_in_byte(c: char) -> Option<u8> {
    let code = u32::from(c);
    (STAND_IN_BASE..=STAND_IN_BASE + 0x7F)
        .contains(&code)
        .then(|| 0x80 + (code - STAND_IN_BASE) as u8)
}

/// Whether a text read by [`decode`] came from bytes that are not all UTF-8.
pub fn has_raw_bytes(text: &str) -> bool {
    text.chars().any(|c| stood_in_byte(c).is_some())
}

/// Reads `bytes` as text: valid UTF-8 as it is, every other byte as its stand-in.
///
/// # Errors
/// [`Error::ConfigParse`] when the file is valid UTF-8 but already holds
/// stand-in characters (it could not be written back unchanged).
pub fn decode(file: &str, bytes: &[u8]) -> Result<String> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Some(at) = text.find(|c| stood_in_byte(c).is_some()) {
            return Err(Error::ConfigParse {
                path: file.into(),
                line: Some(text[..at].matches('\n').count() + 1),
                message: STAND_IN_CLASH.to_owned(),
            });
        }
        return Ok(text.to_owned());
    }
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        // A real character from the stand-ins' range would come back as a byte.
        if let Some(at) = chunk.valid().find(|c| stood_in_byte(c).is_some()) {
            let line = text.matches('\n').count() + chunk.valid()[..at].matches('\n').count() + 1;
            return Err(Error::ConfigParse {
                path: file.into(),
                line: Some(line),
                message: STAND_IN_CLASH.to_owned(),
            });
        }
        text.push_str(chunk.valid());
        text.extend(chunk.invalid().iter().map(|&byte| stand_in(byte)));
    }
    Ok(text)
}

/// The bytes of a text read by [`decode`] (edited or not): stand-ins become
/// their bytes again, everything else is UTF-8.
pub fn encode(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut buffer = [0; 4];
    for c in text.chars() {
        match stood_in_byte(c) {
            Some(byte) => bytes.push(byte),
            None => bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes()),
        }
    }
    bytes
}

/// A text read by [`decode`] as it may be shown: stand-ins as `\xNN`.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !has_raw_bytes(text) {
        return text.into();
    }
    text.chars()
        .map(|c| match stood_in_byte(c) {
            Some(byte) => format!("\\x{byte:02X}"),
            None => c.to_string(),
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cp1251_comments_come_back_byte_for_byte() {
        // "# Сайт" in cp1251, then an ASCII directive.
        let bytes = b"# \xD1\xE0\xE9\xF2\nlisten 80;\n";
        let text = decode("site", bytes).unwrap();
        assert!(text.ends_with("\nlisten 80;\n"));
        assert!(has_raw_bytes(&text));
        assert_eq!(printable(&text), "# \\xD1\\xE0\\xE9\\xF2\nlisten 80;\n");
        let edited = text.replace("listen 80;", "listen 443 ssl;");
        assert_eq!(encode(&edited), b"# \xD1\xE0\xE9\xF2\nlisten 443 ssl;\n");
    }

    #[test]
    fn utf8_stays_as_it_is_and_stand_ins_of_its_own_are_refused() {
        let text = decode("site", "# Сайт\n".as_bytes()).unwrap();
        assert_eq!(text, "# Сайт\n");
        assert!(!has_raw_bytes(&text));
        let error = decode("site", "a\nb \u{10FF90}\n".as_bytes()).unwrap_err();
        assert!(error.to_string().starts_with("site:2:"), "{error}");
        // Mixed with bytes that are not UTF-8 it is refused too, never changed.
        let mut mixed = b"\xff\n".to_vec();
        mixed.extend_from_slice("\u{10FF90}".as_bytes());
        let error = decode("site", &mixed).unwrap_err();
        assert!(error.to_string().starts_with("site:2:"), "{error}");
    }

    proptest! {
        /// The oracle is the input itself: whatever the bytes, they come back.
        #[test]
        fn any_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            match decode("f", &bytes) {
                Ok(text) => prop_assert_eq!(encode(&text), bytes),
                Err(_) => {
                    // Only text holding a real stand-in-range character is refused.
                    let holds_one = bytes
                        .utf8_chunks()
                        .any(|chunk| has_raw_bytes(chunk.valid()));
                    prop_assert!(holds_one);
                }
            }
        }

        #[test]
        fn mixed_text_round_trips(
            parts in proptest::collection::vec(
                prop_oneof!["[a-zа-я #;{}\n]{0,8}".prop_map(String::into_bytes),
                            proptest::collection::vec(0x80u8.., 1..4)], 0..12)
        ) {
            let bytes: Vec<u8> = parts.concat();
            let text = decode("f", &bytes).unwrap();
            prop_assert_eq!(encode(&text), bytes);
        }
    }
}
