//! The shape of one platform log record, byte-level and allocation-free.
//!
//! A record starts with its time and level (`YYYY-MM-DD HH:MM:SS,mmm LEVEL`,
//! and the other layouts [`parse_record_start`] lists); every other line
//! continues the record before it (stack traces, long messages). The code works
//! on bytes so that invalid UTF-8 in a message never stops the parse.

use serde::{Deserialize, Serialize};

/// What the start line of a record holds, as offsets into that line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStart {
    /// Where the level word starts.
    pub level_start: usize,
    /// Where the level word ends.
    pub level_end: usize,
}

impl RecordStart {
    /// The level word of `line`, as written.
    pub fn level<'a>(&self, line: &'a [u8]) -> &'a [u8] {
        &line[self.level_start..self.level_end]
    }

    /// The message part of `line`: everything after the level, trimmed.
    pub fn message<'a>(&self, line: &'a [u8]) -> &'a [u8] {
        // NLog's `|Logger|message` after the level: the `|` is a separator, not text.
        let rest = line[self.level_end..].trim_ascii();
        rest.strip_prefix(b"|").unwrap_or(rest)
    }
}

/// A moment in the logs' own clock (`YYYY-MM-DD HH:MM:SS`, the server's local
/// time as records write it): records before it belong to an earlier attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since([u8; 19]);

impl Since {
    /// Before any record: every dated log counts, every record in it too.
    pub const EARLIEST: Since = Since(*b"0000-01-01 00:00:00");

    /// Reads `YYYY-MM-DD HH:MM:SS` (or with `T` between date and time).
    ///
    /// # Errors
    /// A message saying the form expected.
    pub fn parse(text: &str) -> std::result::Result<Since, String> {
        let bytes = text.trim().as_bytes();
        let shaped = bytes.len() == 19
            && bytes.iter().enumerate().all(|(index, byte)| match index {
                4 | 7 => *byte == b'-',
                10 => *byte == b' ' || *byte == b'T',
                13 | 16 => *byte == b':',
                _ => byte.is_ascii_digit(),
            });
        if !shaped {
            return Err(format!(
                "{text:?} is not a time as the logs write it: YYYY-MM-DD HH:MM:SS (the server's local time)"
            ));
        }
        let mut moment = [0u8; 19];
        moment.copy_from_slice(bytes);
        moment[10] = b' ';
        Ok(Since(moment))
    }

    /// The moment as written, `YYYY-MM-DD HH:MM:SS`.
    pub fn as_str(&self) -> &str {
        // Only ASCII was accepted.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The day, `YYYY-MM-DD`.
    pub fn date(&self) -> &str {
        // Only ASCII digits and `-` were accepted into the first ten bytes.
        std::str::from_utf8(&self.0[..10]).unwrap_or("")
    }

    /// Whether the record starting on `line` was written before this moment;
    /// a line that does not start a record (no time) counts as before.
    pub fn is_after_record(&self, line: &[u8]) -> bool {
        if parse_record_start(line).is_none() {
            return true;
        }
        let mut stamp = [0u8; 19];
        stamp.copy_from_slice(&line[..19]);
        stamp[10] = b' ';
        stamp < self.0
    }
}

/// Parses the start of a record, or returns `None` for a continuation line.
///
/// A record starts with its time: `YYYY-MM-DD HH:MM:SS` (`T` or a space between
/// date and time), `,` or `.` and one to nine fraction digits, and optionally a
/// zone (`Z`, `+03:00`, `-0500`). The level word (ASCII letters, in any case)
/// follows in one of the layouts the platform's loggers write:
///
/// - log4net `%date %level`: `2026-11-27 10:15:02,123 ERROR message`;
/// - log4net `%date [%thread] %level`: `2026-11-27 10:15:02,123 [12] ERROR message`;
/// - NLog `${longdate}|${level}|`: `2026-11-27 10:15:02.1234|ERROR|Logger|message`;
/// - ISO 8601 with a zone: `2026-11-27T10:15:02.123+03:00 ERROR message`.
pub fn parse_record_start(line: &[u8]) -> Option<RecordStart> {
    // "2026-11-24 10:23:45," is 20 bytes; the separators are checked first because
    // they reject continuation lines fastest, and this runs for every line of a log.
    if line.len() < 22
        || line[4] != b'-'
        || line[7] != b'-'
        || line[13] != b':'
        || line[16] != b':'
        || !(line[10] == b' ' || line[10] == b'T')
        || !(line[19] == b',' || line[19] == b'.')
    {
        return None;
    }
    const DIGIT_POSITIONS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if !DIGIT_POSITIONS
        .iter()
        .all(|&index| line[index].is_ascii_digit())
    {
        return None;
    }
    let fraction_digits = line[20..].iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=9).contains(&fraction_digits) {
        return None;
    }
    let mut position = 20 + fraction_digits;
    position += zone_len(&line[position..]);
    let piped = line.get(position) == Some(&b'|');
    if piped {
        position += 1;
    } else {
        let spaces = blank_len(&line[position..]);
        if spaces == 0 {
            return None;
        }
        position += spaces;
        let thread = thread_len(&line[position..]);
        if thread > 0 {
            let spaces = blank_len(&line[position + thread..]);
            if spaces == 0 {
                return None;
            }
            position += thread + spaces;
        }
    }
    let level_len = line[position..]
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    if !(1..=16).contains(&level_len) {
        return None;
    }
    let level_end = position + level_len;
    match line.get(level_end) {
        None | Some(b' ' | b'\t' | b'\r') => {}
        Some(b'|') if piped => {}
        Some(_) => return None,
    }
    Some(RecordStart {
        level_start: position,
        level_end,
    })
}

/// How many spaces and tabs `text` starts with.
fn blank_len(text: &[u8]) -> usize {
    text.iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count()
}

/// The length of the zone that `text` starts with: `Z`, `+HH:MM` or `+HHMM` (or `-`), else 0.
fn zone_len(text: &[u8]) -> usize {
    let digits = |range: std::ops::Range<usize>| {
        text.get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    match text.first() {
        Some(b'Z') => 1,
        Some(b'+' | b'-') if digits(1..3) && text.get(3) == Some(&b':') && digits(4..6) => 6,
        Some(b'+' | b'-') if digits(1..5) => 5,
        _ => 0,
    }
}

/// The longest thread name log4net's `[%thread]` is taken to write, brackets included.
const THREAD_CAP: usize = 128;

/// The length of the bracketed thread (`[12]`, `[Worker 3]`) that `text` starts with, else 0.
fn thread_len(text: &[u8]) -> usize {
    if text.first() != Some(&b'[') {
        return 0;
    }
    let window = &text[..text.len().min(THREAD_CAP)];
    memchr::memchr(b']', window).map_or(0, |close| close + 1)
}

/// Whether a level word is an error level (`Error` or `Fatal`, any case).
pub fn is_error_level(level: &[u8]) -> bool {
    level.eq_ignore_ascii_case(b"error") || level.eq_ignore_ascii_case(b"fatal")
}

/// Why a record counts as an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorReason {
    /// Its level is `Error` or `Fatal`.
    Level,
    /// Its text holds the whole word `error`.
    Keyword,
}

impl ErrorReason {
    /// `level` or `keyword`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Level => "level",
            ErrorReason::Keyword => "keyword",
        }
    }
}

/// The word the platform's procedure procedure searches logs for.
pub const ERROR_KEYWORD: &[u8] = b"error";

/// Decodes the character that starts at `position`, if it is valid UTF-8.
fn char_at(text: &[u8], position: usize) -> Option<char> {
    let lead = *text.get(position)?;
    let len = match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return None,
    };
    let bytes = text.get(position..position + len)?;
    std::str::from_utf8(bytes).ok()?.chars().next()
}

/// Decodes the character that ends just before `position`.
fn char_before(text: &[u8], position: usize) -> Option<char> {
    let mut start = position.checked_sub(1)?;
    while start > 0 && position - start < 4 && (text[start] & 0xc0) == 0x80 {
        start -= 1;
    }
    char_at(text, start).filter(|c| start + c.len_utf8() == position)
}

fn is_word_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Whether the five bytes at `position` (already known to spell `error` in some
/// case) form a whole word: no letter, digit or `_` on either side.
pub fn is_whole_word_at(text: &[u8], position: usize, word_len: usize) -> bool {
    !is_word_char(char_before(text, position)) && !is_word_char(char_at(text, position + word_len))
}

/// Whether `text` holds `error` as a whole word, in any case.
///
/// `ErrorHandler`, `onError`, `errors` and `error_code` do not count;
/// `Error:`, `(error)` and `ERROR` do.
pub fn contains_error_word(text: &[u8]) -> bool {
    let lowered = text.to_ascii_lowercase();
    memchr::memmem::find_iter(&lowered, ERROR_KEYWORD)
        .any(|position| is_whole_word_at(text, position, ERROR_KEYWORD.len()))
}

/// Whether `haystack` contains `needle`, ignoring ASCII case.
pub fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn record_starts_are_recognised() {
        let line = b"2026-11-24 10:23:45,123 INFO 7f0c guid admin 10.0.0.1 /api 200 12 'started'";
        let start = parse_record_start(line).unwrap();
        assert_eq!(start.level(line), b"INFO");
        assert!(start.message(line).starts_with(b"7f0c"));
        for ok in [
            &b"2026-11-24 10:23:45,123 error"[..],
            b"2026-11-24T10:23:45.1 Fatal x",
            b"2026-11-24 10:23:45,123456 Warn\r",
            b"2026-11-24 10:23:45,123\tDebug\tx",
        ] {
            assert!(
                parse_record_start(ok).is_some(),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
    }

    #[test]
    fn log4net_nlog_and_zoned_layouts_give_level_and_message() {
        for (line, level, message) in [
            (
                "2026-11-27 10:15:02,123 [12] ERROR Upgrade.Step - failed",
                "ERROR",
                "Upgrade.Step - failed",
            ),
            (
                "2026-11-27 10:15:02,123 [Worker 3] INFO  Upgrade - ok",
                "INFO",
                "Upgrade - ok",
            ),
            (
                "2026-11-27 10:15:02.1234|ERROR|Comindware.Upgrade|cannot migrate",
                "ERROR",
                "Comindware.Upgrade|cannot migrate",
            ),
            ("2026-11-27 10:15:02.1234|Info|L|x", "Info", "L|x"),
            ("2026-11-27 10:15:02.1234|Fatal", "Fatal", ""),
            (
                "2026-11-27T10:15:02.123+03:00 ERROR zoned",
                "ERROR",
                "zoned",
            ),
            ("2026-11-27T10:15:02.123-0500 Warn x", "Warn", "x"),
            ("2026-11-27T10:15:02.123Z error utc", "error", "utc"),
            (
                "2026-11-27T10:15:02.123+03:00 [7] Fatal both",
                "Fatal",
                "both",
            ),
        ] {
            let start = parse_record_start(line.as_bytes()).expect(line);
            assert_eq!(start.level(line.as_bytes()), level.as_bytes(), "{line}");
            assert_eq!(start.message(line.as_bytes()), message.as_bytes(), "{line}");
        }
        for line in [
            "2026-11-27 10:15:02,123 [12]ERROR no space after the thread",
            "2026-11-27 10:15:02,123 [12 ERROR unclosed thread",
            "2026-11-27 10:15:02.1234|ERROR-x|L|m",
            "2026-11-27 10:15:02,123 ERROR|x",
            "2026-11-27T10:15:02.123+3:00 ERROR short zone",
            "2026-11-27T10:15:02.123+03:00ERROR glued",
            "2026-11-27 10:15:02.1234||ERROR|L|m",
        ] {
            assert!(parse_record_start(line.as_bytes()).is_none(), "{line}");
        }
    }

    #[test]
    fn continuation_lines_are_not_record_starts() {
        for line in [
            &b"   at Comindware.Platform.Run()"[..],
            b"",
            b"2026-11-24",
            b"2026-11-24 10:23:45 INFO no fraction",
            b"2026-11-24 10:23:45,123",
            b"2026-11-24 10:23:45,123 ",
            b"2026-11-24 10:23:45,123 123",
            b"2026-11-24 10:23:45,123 INFO: colon",
            b"26-11-24 10:23:45,123 INFO x",
            b"2026/11/24 10:23:45,123 INFO x",
        ] {
            assert!(
                parse_record_start(line).is_none(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn error_levels_in_any_case() {
        for level in ["Error", "ERROR", "error", "Fatal", "FATAL"] {
            assert!(is_error_level(level.as_bytes()));
        }
        for level in ["Warn", "Info", "Errors", "Err"] {
            assert!(!is_error_level(level.as_bytes()));
        }
    }

    #[test]
    fn error_keyword_must_be_a_whole_word() {
        for yes in [
            "Error",
            "an error occurred",
            "ERROR: x",
            "(eRRor)",
            "«error»",
            "ошибка error ошибка",
            "x-error-y",
            "error.",
        ] {
            assert!(contains_error_word(yes.as_bytes()), "{yes}");
        }
        for no in [
            "ErrorHandler",
            "onError",
            "errors",
            "error_code",
            "_error",
            "ошибкаerror",
            "error2",
            "no problem",
            "Terror",
        ] {
            assert!(!contains_error_word(no.as_bytes()), "{no}");
        }
        assert!(contains_error_word(b"\xff error \xfe"));
        // Bytes that are not UTF-8 are not letters, so they separate words.
        assert!(contains_error_word(b"\xfferror\xfe"));
    }

    #[test]
    fn case_insensitive_contains() {
        assert!(contains_ignore_ascii_case(
            "x Upgrade Completed.",
            "upgrade completed"
        ));
        assert!(!contains_ignore_ascii_case("Upgrade", "Upgrade completed"));
    }

    proptest! {
        #[test]
        fn record_start_parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse_record_start(&line);
            let _ = contains_error_word(&line);
        }

        #[test]
        fn any_valid_header_is_a_record_start(
            year in 1000u32..9999, month in 1u32..12, day in 1u32..28,
            hour in 0u32..23, minute in 0u32..59, second in 0u32..59, millis in 0u32..999,
            level in "[A-Za-z]{1,16}", message in "[ -~]{0,40}",
        ) {
            let line = format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02},{millis:03} {level} {message}");
            let start = parse_record_start(line.as_bytes()).unwrap();
            prop_assert_eq!(start.level(line.as_bytes()), level.as_bytes());
        }

        /// `error` surrounded by non-word characters is always found.
        #[test]
        fn keyword_between_separators_is_found(
            before in "[ .,:;()\\[\\]'\"-]{0,3}", after in "[ .,:;()\\[\\]'\"-]{0,3}",
            case_mask in 0u8..32,
        ) {
            let word: String = "error".chars().enumerate()
                .map(|(i, c)| if case_mask & (1 << i) != 0 { c.to_ascii_uppercase() } else { c })
                .collect();
            let text = format!("{before}{word}{after}");
            prop_assert!(contains_error_word(text.as_bytes()));
        }
    }
}
