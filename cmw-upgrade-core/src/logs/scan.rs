//! A forward, incremental scan of one log file for error records.
//!
//! The scanner is fed the file's bytes in order, in chunks of any size, and
//! remembers where it stopped; waiting on a log therefore reads only what was
//! appended since the last poll. It keeps the head of the last record so a
//! watcher can tell whether the upgrade completed without re-reading the file.
//!
//! Speed matters: upgrade logs reach gigabytes. The keyword search runs over a
//! lowercased copy of each chunk with a SIMD substring search, and lines are
//! found with `memchr`; per line the work is a few byte comparisons.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::record::{
    is_error_level, is_whole_word_at, parse_record_start, ErrorReason, Since, ERROR_KEYWORD,
};
use crate::error::{Error, Result};

/// How much of the last record is kept; completion markers sit in its first line.
pub const LAST_RECORD_CAP: usize = 64 * 1024;

/// How many error records one file reports in full; the rest are counted.
pub const MAX_REPORTED_ERRORS: usize = 1000;

/// How many bytes of a message are reported.
const MESSAGE_CAP: usize = 500;

/// How much a file read takes at once.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// One error record found in a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The log file's name.
    pub file: String,
    /// 1-based line where the record starts.
    pub line: u64,
    /// The level as written (empty for lines before the first record).
    pub level: String,
    /// Why it counts.
    pub reason: ErrorReason,
    /// The first line of its message.
    pub message: String,
}

/// The last record of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastRecord {
    /// 1-based line where it starts, when known (a backward read does not count lines).
    pub line: Option<u64>,
    /// Its text, at most [`LAST_RECORD_CAP`] bytes, lines joined with `\n`.
    pub text: String,
}

impl LastRecord {
    /// Builds a last record from raw bytes: lossy UTF-8, CRLF folded, trailing line ends dropped.
    pub(crate) fn from_bytes(line: Option<u64>, bytes: &[u8]) -> Self {
        let bytes = &bytes[..bytes.len().min(LAST_RECORD_CAP)];
        let text = String::from_utf8_lossy(bytes)
            .replace("\r\n", "\n")
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        LastRecord { line, text }
    }

    /// The first line of the record.
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
}

/// The record being read: everything needed to report it if it turns out to be an error.
#[derive(Debug, Clone, Default)]
struct OpenRecord {
    line: u64,
    /// The level word, kept inline: one allocation per record would dominate the scan.
    level: LevelWord,
    /// Already reported, so further keyword hits in it are not reported again.
    flagged: bool,
    /// The head of the record's bytes, up to [`LAST_RECORD_CAP`].
    head: Vec<u8>,
}

/// A level word (at most 16 ASCII letters, as [`parse_record_start`] accepts) without allocating.
#[derive(Debug, Clone, Copy, Default)]
struct LevelWord {
    bytes: [u8; 16],
    len: u8,
}

impl LevelWord {
    fn new(level: &[u8]) -> Self {
        let mut word = LevelWord::default();
        let len = level.len().min(word.bytes.len());
        word.bytes[..len].copy_from_slice(&level[..len]);
        word.len = len as u8;
        word
    }

    fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

/// Incremental error scan of one log file.
#[derive(Debug, Clone)]
pub struct LogScanner {
    file: String,
    offset: u64,
    lines: u64,
    current: Option<OpenRecord>,
    errors: Vec<ErrorRecord>,
    errors_total: u64,
    /// Scratch space for [`find_keyword_candidates`], kept between chunks.
    lowered: Vec<u8>,
    hits: Vec<usize>,
    /// Records written before this belong to an earlier attempt: not counted.
    since: Option<Since>,
}

impl LogScanner {
    /// A scanner for a file reported under `file` (its name).
    pub fn new(file: impl Into<String>) -> Self {
        LogScanner {
            file: file.into(),
            offset: 0,
            lines: 0,
            current: None,
            errors: Vec::new(),
            errors_total: 0,
            lowered: Vec::new(),
            hits: Vec::new(),
            since: None,
        }
    }

    /// The same scanner counting only records written at or after `since`.
    #[must_use]
    pub fn since(mut self, since: Option<Since>) -> Self {
        self.since = since;
        self
    }

    /// Bytes consumed so far (always at a line boundary, or at the end after [`Self::finish`]).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Error records found so far (at most [`MAX_REPORTED_ERRORS`]).
    pub fn errors(&self) -> &[ErrorRecord] {
        &self.errors
    }

    /// All error records found so far, reported or not.
    pub fn errors_total(&self) -> u64 {
        self.errors_total
    }

    /// The last record seen so far.
    pub fn last_record(&self) -> Option<LastRecord> {
        self.current
            .as_ref()
            .map(|record| LastRecord::from_bytes(Some(record.line), &record.head))
    }

    /// Consumes the complete lines at the start of `bytes`, which must continue the
    /// file exactly where the previous call stopped. Returns how many bytes were
    /// consumed; the rest (a line still being written) is to be passed again.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let consumed = match memchr::memrchr(b'\n', bytes) {
            Some(last_newline) => last_newline + 1,
            None => 0,
        };
        self.process(&bytes[..consumed]);
        consumed
    }

    /// Consumes `bytes` as the end of the file: a last line without `\n` counts too.
    pub fn finish(&mut self, bytes: &[u8]) {
        let consumed = self.feed(bytes);
        if consumed < bytes.len() {
            self.process(&bytes[consumed..]);
        }
    }

    /// Processes whole lines (the last may lack its `\n` only when called from `finish`).
    fn process(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        let mut hit_positions = std::mem::take(&mut self.hits);
        find_keyword_candidates(chunk, &mut self.lowered, &mut hit_positions);
        let mut hits = hit_positions.iter().copied().peekable();

        // Where the current record starts inside this chunk, if it does.
        let mut record_start_in_chunk: Option<usize> = None;
        let mut line_start = 0;
        let skip_bom = self.offset == 0 && chunk.starts_with(UTF8_BOM);
        while line_start < chunk.len() {
            let line_end_with_newline = memchr::memchr(b'\n', &chunk[line_start..])
                .map_or(chunk.len(), |index| line_start + index + 1);
            let mut content_end = line_end_with_newline;
            if content_end > line_start && chunk[content_end - 1] == b'\n' {
                content_end -= 1;
            }
            if content_end > line_start && chunk[content_end - 1] == b'\r' {
                content_end -= 1;
            }
            let content_start = if skip_bom && line_start == 0 {
                UTF8_BOM.len().min(content_end)
            } else {
                line_start
            };
            let line = &chunk[content_start..content_end];
            self.lines += 1;

            if let Some(start) = parse_record_start(line) {
                // The record this one replaces is finished; only the open one keeps a head.
                let level = start.level(line);
                let mut record = OpenRecord {
                    line: self.lines,
                    level: LevelWord::new(level),
                    ..OpenRecord::default()
                };
                record_start_in_chunk = Some(content_start);
                // An earlier attempt's record: marked as if reported, so it never is.
                if self.since.is_some_and(|since| since.is_after_record(line)) {
                    record.flagged = true;
                } else if is_error_level(level) {
                    record.flagged = true;
                    self.report(&record, ErrorReason::Level, start.message(line));
                }
                self.current = Some(record);
            } else if self.current.is_none() {
                // Lines before the first record form a record of their own
                // (of unknown time: an earlier attempt's when a moment is given).
                self.current = Some(OpenRecord {
                    line: self.lines,
                    flagged: self.since.is_some(),
                    ..OpenRecord::default()
                });
                record_start_in_chunk = Some(content_start);
            }

            // Keyword hits in this line.
            while let Some(&hit) = hits.peek() {
                if hit >= content_end {
                    break;
                }
                hits.next();
                if hit < content_start {
                    continue;
                }
                let is_flagged = self.current.as_ref().is_some_and(|record| record.flagged);
                if is_flagged || !is_whole_word_at(line, hit - content_start, ERROR_KEYWORD.len()) {
                    continue;
                }
                let mut record = self.current.take().expect("a record is open");
                record.flagged = true;
                // The record's first line is in this chunk, or else in the head kept from earlier ones.
                let first_line = match record_start_in_chunk {
                    Some(start) => first_line_of(&chunk[start..]),
                    None => first_line_of(&record.head),
                };
                let message = parse_record_start(first_line)
                    .map_or(first_line.trim_ascii(), |start| start.message(first_line));
                self.report(&record, ErrorReason::Keyword, message);
                self.current = Some(record);
            }
            line_start = line_end_with_newline;
        }
        self.keep_head_of_open_record(chunk, record_start_in_chunk);
        self.offset += chunk.len() as u64;
        // Keep the allocation for the next chunk, but not the contents: clones stay cheap.
        hit_positions.clear();
        self.hits = hit_positions;
    }

    /// Copies the part of the record still open at the end of `chunk` into its head.
    fn keep_head_of_open_record(&mut self, chunk: &[u8], record_start_in_chunk: Option<usize>) {
        let Some(record) = self.current.as_mut() else {
            return;
        };
        let from = match record_start_in_chunk {
            Some(start) => {
                record.head.clear();
                start
            }
            None => 0,
        };
        let room = LAST_RECORD_CAP.saturating_sub(record.head.len());
        let part = &chunk[from..];
        record.head.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn report(&mut self, record: &OpenRecord, reason: ErrorReason, message: &[u8]) {
        self.errors_total += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            let message = &message[..message.len().min(MESSAGE_CAP)];
            self.errors.push(ErrorRecord {
                file: self.file.clone(),
                line: record.line,
                level: record.level.as_str().to_owned(),
                reason,
                message: String::from_utf8_lossy(message).trim_end().to_owned(),
            });
        }
    }

    /// Reads `path` from where the scanner stopped to its current end.
    ///
    /// With `at_end`, a last line without `\n` is consumed too (the file is complete);
    /// without it, that line is left for the next call (it may still be being written).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened or read.
    pub fn scan_file(&mut self, path: &Path, at_end: bool) -> Result<()> {
        let mut file =
            crate::disk::open_regular(path).map_err(|error| Error::io("open", path, error))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|error| Error::io("read", path, error))?;
        let mut buffer = vec![0u8; READ_CHUNK];
        let mut filled = 0;
        loop {
            let read = file
                .read(&mut buffer[filled..])
                .map_err(|error| Error::io("read", path, error))?;
            filled += read;
            if read == 0 {
                if at_end {
                    self.finish(&buffer[..filled]);
                }
                return Ok(());
            }
            if filled == buffer.len() {
                let consumed = self.feed(&buffer[..filled]);
                if consumed == 0 {
                    // One line longer than the buffer: grow rather than split it.
                    buffer.resize(buffer.len() * 2, 0);
                    continue;
                }
                buffer.copy_within(consumed..filled, 0);
                filled -= consumed;
            }
        }
    }
}

/// How much is lowercased at a time: small enough to stay in the CPU cache while searched.
const KEYWORD_WINDOW: usize = 64 * 1024;

/// Finds every position of `error` in any case in `chunk`, in order.
///
/// Each window is folded to lowercase with `| 0x20`, which is exact for the
/// letters of `error` (only `E`/`e`, `R`/`r`, `O`/`o` map onto them), and searched
/// with a SIMD substring search while it is still in cache. Windows overlap by
/// the keyword's length less one, so a word across a window edge is found once.
fn find_keyword_candidates(chunk: &[u8], lowered: &mut Vec<u8>, hits: &mut Vec<usize>) {
    let finder = keyword_finder();
    let overlap = ERROR_KEYWORD.len() - 1;
    let mut start = 0;
    while start < chunk.len() {
        let end = (start + KEYWORD_WINDOW + overlap).min(chunk.len());
        lowered.clear();
        lowered.extend(chunk[start..end].iter().map(|byte| byte | 0x20));
        for position in finder.find_iter(lowered) {
            if position < KEYWORD_WINDOW {
                hits.push(start + position);
            }
        }
        start += KEYWORD_WINDOW;
    }
    lowered.clear();
}

fn keyword_finder() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    FINDER.get_or_init(|| memchr::memmem::Finder::new(ERROR_KEYWORD))
}

fn first_line_of(bytes: &[u8]) -> &[u8] {
    let end = memchr::memchr(b'\n', bytes).unwrap_or(bytes.len());
    let line = &bytes[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Scans a whole file once and returns the scanner (errors and last record).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub fn scan_log_file(path: &Path, file_label: &str) -> Result<LogScanner> {
    scan_log_file_since(path, file_label, None)
}

/// [`scan_log_file`] counting only records written at or after `since`.
///
/// # Errors
/// As [`scan_log_file`].
pub fn scan_log_file_since(
    path: &Path,
    file_label: &str,
    since: Option<Since>,
) -> Result<LogScanner> {
    let mut scanner = LogScanner::new(file_label).since(since);
    scanner.scan_file(path, true)?;
    Ok(scanner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(text: &[u8]) -> LogScanner {
        let mut scanner = LogScanner::new("t.log");
        scanner.finish(text);
        scanner
    }

    const LOG: &str = "2026-11-24 10:00:00,001 INFO a b c 'Upgrade started'\n\
2026-11-24 10:00:01,002 Warn a b c 'slow'\n\
2026-11-24 10:00:02,003 ERROR a b c 'Cannot migrate'\n\
   at Foo.Bar()\n\
   at Foo.Baz() error inside trace\n\
2026-11-24 10:00:03,004 Info a b c 'ErrorHandler registered, onError hook'\n\
2026-11-24 10:00:04,005 Info a b c 'Validation error: field X'\n\
2026-11-24 10:00:05,006 Info a b c 'step done'\n\
System.Exception: Error in step\n\
2026-11-24 10:00:06,007 fatal a b c 'crash'\n\
2026-11-24 10:00:07,008 Info a b c 'Upgrade completed'\n";

    #[test]
    fn errors_are_found_by_level_and_keyword_once_per_record() {
        let scanner = scan(LOG.as_bytes());
        let found: Vec<_> = scanner
            .errors()
            .iter()
            .map(|e| (e.line, e.level.as_str(), e.reason))
            .collect();
        assert_eq!(
            found,
            [
                (3, "ERROR", ErrorReason::Level),
                (7, "Info", ErrorReason::Keyword),
                (8, "Info", ErrorReason::Keyword),
                (10, "fatal", ErrorReason::Level),
            ]
        );
        assert_eq!(scanner.errors()[0].message, "a b c 'Cannot migrate'");
        assert_eq!(scanner.errors()[2].message, "a b c 'step done'");
        assert_eq!(scanner.errors_total(), 4);
        let last = scanner.last_record().unwrap();
        assert_eq!(last.line, Some(11));
        assert!(last.text.ends_with("'Upgrade completed'"));
    }

    #[test]
    fn crlf_bom_and_invalid_utf8_do_not_break_parsing() {
        let text = b"\xef\xbb\xbf2026-11-24 10:00:00,001 Error x \xff\xfe bad\r\n2026-11-24 10:00:01,001 INFO done\r\n";
        let scanner = scan(text);
        assert_eq!(scanner.errors().len(), 1);
        assert_eq!(scanner.errors()[0].line, 1);
        assert_eq!(scanner.errors()[0].level, "Error");
        assert_eq!(
            scanner.last_record().unwrap().text,
            "2026-11-24 10:00:01,001 INFO done"
        );
    }

    #[test]
    fn lines_before_the_first_record_form_a_record() {
        let scanner = scan(b"garbage error here\nmore\n2026-11-24 10:00:00,001 INFO ok\n");
        assert_eq!(scanner.errors().len(), 1);
        assert_eq!(scanner.errors()[0].line, 1);
        assert_eq!(scanner.errors()[0].level, "");
        assert_eq!(scanner.errors()[0].message, "garbage error here");
    }

    #[test]
    fn partial_lines_wait_for_their_end() {
        let mut scanner = LogScanner::new("t.log");
        let consumed =
            scanner.feed(b"2026-11-24 10:00:00,001 INFO one\n2026-11-24 10:00:01,001 ERR");
        assert_eq!(consumed, 33);
        assert!(scanner.errors().is_empty());
        scanner.finish(b"2026-11-24 10:00:01,001 ERROR two\n");
        assert_eq!(scanner.errors().len(), 1);
        assert_eq!(scanner.errors()[0].line, 2);
    }

    #[test]
    fn many_errors_are_counted_but_not_all_kept() {
        let text = "2026-11-24 10:00:00,001 ERROR x\n".repeat(MAX_REPORTED_ERRORS + 5);
        let scanner = scan(text.as_bytes());
        assert_eq!(scanner.errors().len(), MAX_REPORTED_ERRORS);
        assert_eq!(scanner.errors_total(), MAX_REPORTED_ERRORS as u64 + 5);
    }

    fn log_line() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => ("[A-Za-z]{3,6}", "[ -~]{0,30}").prop_map(|(level, message)| format!("2026-11-24 10:00:00,001 {level} {message}")),
            1 => "[ -~]{0,30}",
            1 => Just("  at x.y() error".to_owned()),
            1 => Just(String::new()),
        ]
    }

    proptest! {
        /// Feeding a log in chunks of any size finds exactly what one pass finds.
        #[test]
        fn chunking_does_not_change_the_result(
            lines in proptest::collection::vec(log_line(), 0..30),
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(0usize..2000, 0..6),
        ) {
            let end = if crlf { "\r\n" } else { "\n" };
            let text = lines.join(end);
            let whole = scan(text.as_bytes());

            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (text.len() + 1)).collect();
            cuts.sort();
            let mut pieces = LogScanner::new("t.log");
            let mut pending: Vec<u8> = Vec::new();
            let mut previous = 0;
            for cut in cuts {
                pending.extend_from_slice(&text.as_bytes()[previous..cut]);
                previous = cut;
                let consumed = pieces.feed(&pending);
                pending.drain(..consumed);
            }
            pending.extend_from_slice(&text.as_bytes()[previous..]);
            pieces.finish(&pending);

            prop_assert_eq!(whole.errors(), pieces.errors());
            prop_assert_eq!(whole.last_record(), pieces.last_record());
        }
    }
}
