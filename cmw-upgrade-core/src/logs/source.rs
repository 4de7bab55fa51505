//! How a log file's bytes become the UTF-8 text the scanner reads.
//!
//! Platform logs are UTF-8, but a log copied from a Windows server or written
//! by another logger configuration can be UTF-16 (with a byte-order mark), and
//! rotated parts can be gzip-compressed. Both are decoded while streaming, a
//! chunk at a time. What cannot be read as text (a UTF-32 byte-order mark, or
//! NUL bytes in the first line without any byte-order mark) is an error naming
//! the file: a verdict that silently read nothing would wait for ever.

use std::io::{self, Read};

use super::scan::READ_CHUNK as READ_LEN;

/// The gzip magic number.
const GZIP_MAGIC: &[u8] = b"\x1f\x8b";

/// How much of a file's start is looked at to tell its encoding.
pub(crate) const SNIFF_LEN: usize = 1024;

/// The fewest bytes that tell a byte-order mark apart (UTF-32 LE starts like UTF-16 LE).
pub(crate) const BOM_SNIFF_MIN: usize = 4;

/// The text encodings a log is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextEncoding {
    /// UTF-8, with or without a byte-order mark (invalid bytes are kept as they are).
    Utf8,
    /// UTF-16 after an `FF FE` byte-order mark.
    Utf16Le,
    /// UTF-16 after an `FE FF` byte-order mark.
    Utf16Be,
}

impl TextEncoding {
    /// The byte-order mark's length in the file, dropped before decoding
    /// (a UTF-8 one is kept: the scanner skips it, as any reader of the file does).
    pub(crate) fn bom_len(self) -> usize {
        match self {
            TextEncoding::Utf8 => 0,
            TextEncoding::Utf16Le | TextEncoding::Utf16Be => 2,
        }
    }

    /// How many bytes of the file `text` (UTF-8 this module decoded, cut at
    /// character boundaries) was decoded from.
    pub(crate) fn source_len(self, text: &[u8]) -> u64 {
        match self {
            TextEncoding::Utf8 => text.len() as u64,
            TextEncoding::Utf16Le | TextEncoding::Utf16Be => String::from_utf8_lossy(text)
                .chars()
                .map(|c| 2 * c.len_utf16() as u64)
                .sum(),
        }
    }
}

/// Whether a file's first bytes are gzip's.
pub(crate) fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(GZIP_MAGIC)
}

/// Tells the encoding from the first bytes of a log's text (at most
/// [`SNIFF_LEN`] are looked at; fewer when the file is shorter).
///
/// # Errors
/// Why the text cannot be read, and what to do, for an [`io::ErrorKind::InvalidData`] error.
pub(crate) fn sniff_encoding(head: &[u8]) -> io::Result<TextEncoding> {
    let unreadable = |what: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{what}; the verdict reads logs written in UTF-8 or UTF-16 (with a byte-order \
                 mark): convert it (e.g. iconv -f UTF-32 -t UTF-8, iconv -f UTF-16LE -t UTF-8) \
                 and run again, or move it out of the log folder and read it by hand"
            ),
        ))
    };
    if head.starts_with(b"\x00\x00\xfe\xff") || head.starts_with(b"\xff\xfe\x00\x00") {
        return unreadable("it starts with a UTF-32 byte-order mark");
    }
    if head.starts_with(b"\xff\xfe") {
        return Ok(TextEncoding::Utf16Le);
    }
    if head.starts_with(b"\xfe\xff") {
        return Ok(TextEncoding::Utf16Be);
    }
    let head = &head[..head.len().min(SNIFF_LEN)];
    let first_line = &head[..memchr::memchr(b'\n', head).unwrap_or(head.len())];
    if memchr::memchr(0, first_line).is_some() {
        return unreadable(
            "its first line holds NUL bytes and it has no byte-order mark: it is binary data, \
             or text in UTF-16 or UTF-32 without a byte-order mark",
        );
    }
    Ok(TextEncoding::Utf8)
}

/// Turns a reader's bytes into UTF-8 text, a read at a time: UTF-8 as it is,
/// UTF-16 through a [`Utf16Decoder`].
pub(crate) enum Transcoder {
    Utf8,
    Utf16 { decoder: Utf16Decoder, raw: Vec<u8> },
}

impl Transcoder {
    pub(crate) fn new(encoding: TextEncoding) -> Self {
        match encoding {
            TextEncoding::Utf8 => Transcoder::Utf8,
            TextEncoding::Utf16Le | TextEncoding::Utf16Be => Transcoder::Utf16 {
                decoder: Utf16Decoder::new(encoding == TextEncoding::Utf16Be),
                raw: vec![0; READ_LEN],
            },
        }
    }

    /// Decodes bytes already read, appending to `text`.
    pub(crate) fn decode(&mut self, bytes: &[u8], text: &mut Vec<u8>) {
        match self {
            Transcoder::Utf8 => text.extend_from_slice(bytes),
            Transcoder::Utf16 { decoder, .. } => decoder.decode(bytes, text),
        }
    }

    /// Reads once from `reader`, appending the text to `text`; returns how many
    /// bytes were read (0 at the end).
    pub(crate) fn read_into(
        &mut self,
        reader: &mut dyn Read,
        text: &mut Vec<u8>,
    ) -> io::Result<usize> {
        match self {
            Transcoder::Utf8 => {
                let filled = text.len();
                text.resize(filled + READ_LEN, 0);
                let read = reader.read(&mut text[filled..]);
                text.truncate(filled + *read.as_ref().unwrap_or(&0));
                read
            }
            Transcoder::Utf16 { decoder, raw } => {
                let read = reader.read(raw)?;
                decoder.decode(&raw[..read], text);
                Ok(read)
            }
        }
    }

    /// Bytes read but not yet turned into text.
    pub(crate) fn pending_len(&self) -> u64 {
        match self {
            Transcoder::Utf8 => 0,
            Transcoder::Utf16 { decoder, .. } => decoder.pending_len(),
        }
    }

    /// Ends the text (see [`Utf16Decoder::finish`]).
    pub(crate) fn finish(&mut self, text: &mut Vec<u8>) {
        if let Transcoder::Utf16 { decoder, .. } = self {
            decoder.finish(text);
        }
    }
}

/// A streaming UTF-16 to UTF-8 decoder: input may be cut anywhere, even inside
/// a code unit or a surrogate pair. Unpaired surrogates become U+FFFD, which is
/// one code unit too, so [`TextEncoding::source_len`] still counts right.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Utf16Decoder {
    big_endian: bool,
    /// The first byte of a code unit whose second byte has not come yet.
    odd_byte: Option<u8>,
    /// A high surrogate waiting for its low half.
    high_surrogate: Option<u16>,
}

impl Utf16Decoder {
    pub(crate) fn new(big_endian: bool) -> Self {
        Utf16Decoder {
            big_endian,
            odd_byte: None,
            high_surrogate: None,
        }
    }

    /// Decodes `input`, appending UTF-8 to `out`.
    pub(crate) fn decode(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        if let Some(first) = self.odd_byte {
            let Some((&second, rest)) = input.split_first() else {
                return;
            };
            self.odd_byte = None;
            self.unit(self.join(first, second), out);
            input = rest;
        }
        let mut pairs = input.chunks_exact(2);
        for pair in &mut pairs {
            self.unit(self.join(pair[0], pair[1]), out);
        }
        self.odd_byte = pairs.remainder().first().copied();
    }

    /// Bytes taken in but not yet decoded (half a unit, half a pair).
    pub(crate) fn pending_len(&self) -> u64 {
        u64::from(self.odd_byte.is_some()) + 2 * u64::from(self.high_surrogate.is_some())
    }

    /// Ends the text: what is pending is a cut-off character, written as U+FFFD.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.high_surrogate.take().is_some() {
            push_char(char::REPLACEMENT_CHARACTER, out);
        }
        if self.odd_byte.take().is_some() {
            push_char(char::REPLACEMENT_CHARACTER, out);
        }
    }

    fn join(&self, first: u8, second: u8) -> u16 {
        if self.big_endian {
            u16::from_be_bytes([first, second])
        } else {
            u16::from_le_bytes([first, second])
        }
    }

    fn unit(&mut self, unit: u16, out: &mut Vec<u8>) {
        if unit < 0x80 && self.high_surrogate.is_none() {
            out.push(unit as u8);
            return;
        }
        if let Some(high) = self.high_surrogate.take() {
            if (0xdc00..0xe000).contains(&unit) {
                let code =
                    0x10000 + ((u32::from(high) - 0xd800) << 10) + (u32::from(unit) - 0xdc00);
                push_char(
                    char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER),
                    out,
                );
                return;
            }
            push_char(char::REPLACEMENT_CHARACTER, out);
        }
        match unit {
            0xd800..=0xdbff => self.high_surrogate = Some(unit),
            _ => push_char(
                char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER),
                out,
            ),
        }
    }
}

fn push_char(c: char, out: &mut Vec<u8>) {
    let mut buffer = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn byte_order_marks_and_binary_heads() {
        for (head, encoding) in [
            (&b"2026-11-24 x\n"[..], TextEncoding::Utf8),
            (b"\xef\xbb\xbfx", TextEncoding::Utf8),
            (b"", TextEncoding::Utf8),
            (b"\xff\xfe2\x00", TextEncoding::Utf16Le),
            (b"\xfe\xff\x002", TextEncoding::Utf16Be),
            // NUL bytes after the first line are a damaged tail, not an encoding.
            (b"text\n\x00\x00", TextEncoding::Utf8),
        ] {
            assert_eq!(sniff_encoding(head).unwrap(), encoding, "{head:?}");
        }
        for (head, says) in [
            (&b"\xff\xfe\x00\x002\x00\x00\x00"[..], "UTF-32"),
            (b"\x00\x00\xfe\xff\x00\x00\x002", "UTF-32"),
            (b"2\x000\x002\x006\x00", "NUL bytes"),
            (b"\x00\x00\x00\x00", "NUL bytes"),
        ] {
            let error = sniff_encoding(head).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert!(error.to_string().contains(says), "{error}");
            assert!(error.to_string().contains("iconv"), "{error}");
        }
    }

    fn decode_in_pieces(bytes: &[u8], big_endian: bool, cuts: &[usize]) -> Vec<u8> {
        let mut decoder = Utf16Decoder::new(big_endian);
        let mut out = Vec::new();
        let mut previous = 0;
        for &cut in cuts {
            let cut = cut.clamp(previous, bytes.len());
            decoder.decode(&bytes[previous..cut], &mut out);
            previous = cut;
        }
        decoder.decode(&bytes[previous..], &mut out);
        decoder.finish(&mut out);
        out
    }

    proptest! {
        /// Decoding in pieces cut anywhere gives what the standard library's
        /// lossy UTF-16 decoding gives for the whole, and the source length
        /// of the text is the number of bytes it came from.
        #[test]
        fn utf16_decodes_like_the_standard_library(
            units in proptest::collection::vec(prop_oneof![
                4 => 0u16..0x80,
                2 => any::<u16>(),
                1 => 0xd800u16..0xe000,
            ], 0..60),
            big_endian in any::<bool>(),
            mut cuts in proptest::collection::vec(0usize..130, 0..6),
        ) {
            cuts.sort_unstable();
            let bytes: Vec<u8> = units
                .iter()
                .flat_map(|unit| if big_endian { unit.to_be_bytes() } else { unit.to_le_bytes() })
                .collect();
            let decoded = decode_in_pieces(&bytes, big_endian, &cuts);
            let expected: String = char::decode_utf16(units.iter().copied())
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect();
            prop_assert_eq!(&decoded, expected.as_bytes());
            let encoding = if big_endian { TextEncoding::Utf16Be } else { TextEncoding::Utf16Le };
            prop_assert_eq!(encoding.source_len(&decoded), bytes.len() as u64);
        }
    }
}
