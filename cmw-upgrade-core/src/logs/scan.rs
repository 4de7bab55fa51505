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

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

use super::record::{
    is_error_level, is_whole_word_at, parse_record_start, ErrorReason, Since, ERROR_KEYWORD,
};
use super::source::{is_gzip, sniff_encoding, TextEncoding, Transcoder, BOM_SNIFF_MIN, SNIFF_LEN};
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

/// How much of a line without its end is taken at once: a longer line (a
/// message of hundreds of megabytes, a tail of NUL bytes after a crash) is
/// read in pieces of about this size, so memory stays bounded.
const LONG_LINE_PIECE: usize = READ_CHUNK / 2;

/// The smallest piece: a record's header and the part of its message that is
/// reported always fit in the first piece of its line, so cutting never changes them.
#[cfg(test)]
const MIN_LONG_LINE_PIECE: usize = 1024;

/// How many bytes after a piece's cut stay unconsumed: enough to see the keyword
/// and the character after it whole when the keyword crosses the cut.
const PIECE_LOOKAHEAD: usize = 16;

/// The bytes before a cut that a word check may look back on (one UTF-8 character).
const WORD_CONTEXT: usize = 4;

/// Incremental error scan of one log file.
#[derive(Debug, Clone)]
pub struct LogScanner {
    file: String,
    /// Bytes of the file read and consumed by [`Self::scan_file`].
    file_offset: u64,
    /// Bytes of text consumed (after decoding).
    text_offset: u64,
    /// How the file's bytes are read, once its start was seen.
    encoding: Option<TextEncoding>,
    /// A compressed file, read whole once: nothing is appended to it.
    complete: bool,
    lines: u64,
    current: Option<OpenRecord>,
    /// The consumed text ends inside a line (a piece of a long line).
    mid_line: bool,
    /// The last bytes of that piece, for a word check across the cut.
    piece_end: [u8; WORD_CONTEXT],
    long_line_piece: usize,
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
            file_offset: 0,
            text_offset: 0,
            encoding: None,
            complete: false,
            lines: 0,
            current: None,
            mid_line: false,
            piece_end: [0; WORD_CONTEXT],
            long_line_piece: LONG_LINE_PIECE,
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

    /// The same scanner cutting lines longer than `piece` bytes (at least
    /// [`MIN_LONG_LINE_PIECE`]) into pieces, as it does lines of [`LONG_LINE_PIECE`].
    #[cfg(test)]
    fn with_long_line_piece(mut self, piece: usize) -> Self {
        self.long_line_piece = piece.max(MIN_LONG_LINE_PIECE);
        self
    }

    /// Bytes of the file consumed so far by [`Self::scan_file`] (a compressed
    /// file's whole length once read).
    pub fn offset(&self) -> u64 {
        self.file_offset
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
    /// text exactly where the previous call stopped. Returns how many bytes were
    /// consumed; the rest (a line still being written) is to be passed again.
    ///
    /// A line without its end that is longer than a piece is consumed in part,
    /// so the caller never needs to hold a whole long line.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        if let Some(last_newline) = memchr::memrchr(b'\n', bytes) {
            let consumed = last_newline + 1;
            self.process(bytes, consumed);
            return consumed;
        }
        if bytes.len() < self.long_line_piece {
            return 0;
        }
        // Cut at a character boundary, so decoded text maps back to its bytes
        // and no character is split between a record's head and the rest.
        let mut cut = bytes.len() - PIECE_LOOKAHEAD;
        for _ in 0..3 {
            if (bytes[cut] & 0xc0) != 0x80 {
                break;
            }
            cut -= 1;
        }
        self.process(bytes, cut);
        cut
    }

    /// Consumes `bytes` as the end of the text: a last line without `\n` counts too.
    pub fn finish(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        loop {
            let consumed = self.feed(rest);
            if consumed == 0 {
                break;
            }
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            self.process(rest, rest.len());
        }
    }

    /// Processes `bytes[..end]`: whole lines, except that the last may lack its
    /// `\n` (a piece of a long line, or the end of the text from `finish`).
    /// Bytes from `end` on are only looked at, to judge a word that crosses `end`.
    fn process(&mut self, bytes: &[u8], end: usize) {
        if end == 0 {
            return;
        }
        let chunk = &bytes[..end];
        let view_end = bytes.len().min(end + PIECE_LOOKAHEAD);
        let mut hit_positions = std::mem::take(&mut self.hits);
        // A keyword that starts before `end` is found whole, even when it crosses it.
        let search_end = bytes.len().min(end + ERROR_KEYWORD.len() - 1);
        find_keyword_candidates(&bytes[..search_end], &mut self.lowered, &mut hit_positions);
        let mut hits = hit_positions.iter().copied().peekable();

        // Where the current record starts inside this chunk, if it does.
        let mut record_start_in_chunk: Option<usize> = None;
        let mut line_start = 0;
        let skip_bom = self.text_offset == 0 && chunk.starts_with(UTF8_BOM);
        let mut continues_line = self.mid_line;
        while line_start < end {
            let newline = memchr::memchr(b'\n', &chunk[line_start..]);
            let line_end_with_newline = newline.map_or(end, |index| line_start + index + 1);
            let mut content_end = line_end_with_newline;
            if newline.is_some() {
                content_end -= 1;
                if content_end > line_start && chunk[content_end - 1] == b'\r' {
                    content_end -= 1;
                }
            }
            let content_start = if skip_bom && line_start == 0 {
                UTF8_BOM.len().min(content_end)
            } else {
                line_start
            };
            // What a word check may see of this line: past a cut, the bytes after it.
            let view = if newline.is_none() {
                &bytes[content_start..view_end]
            } else {
                &chunk[content_start..content_end]
            };
            let line = &chunk[content_start..content_end];
            if !continues_line {
                self.start_line(line, content_start, &mut record_start_in_chunk);
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
                if is_flagged || !self.is_whole_word(view, hit - content_start, continues_line) {
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
            continues_line = false;
            line_start = line_end_with_newline;
        }
        self.mid_line = chunk.last() != Some(&b'\n');
        if self.mid_line {
            let context = &chunk[chunk.len().saturating_sub(WORD_CONTEXT)..];
            self.piece_end = [0; WORD_CONTEXT];
            self.piece_end[WORD_CONTEXT - context.len()..].copy_from_slice(context);
        }
        self.keep_head_of_open_record(chunk, record_start_in_chunk);
        self.text_offset += chunk.len() as u64;
        // Keep the allocation for the next chunk, but not the contents: clones stay cheap.
        hit_positions.clear();
        self.hits = hit_positions;
    }

    /// Counts a new line and opens the record it starts (or, before the first
    /// record, the record of lines without one).
    fn start_line(
        &mut self,
        line: &[u8],
        content_start: usize,
        record_start_in_chunk: &mut Option<usize>,
    ) {
        self.lines += 1;
        if let Some(start) = parse_record_start(line) {
            // The record this one replaces is finished; only the open one keeps a head.
            let level = start.level(line);
            let mut record = OpenRecord {
                line: self.lines,
                level: LevelWord::new(level),
                ..OpenRecord::default()
            };
            *record_start_in_chunk = Some(content_start);
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
            *record_start_in_chunk = Some(content_start);
        }
    }

    /// Whether the keyword at `at` in `view` is a whole word; at the start of a
    /// line's continuation, the character before it ended the previous piece.
    fn is_whole_word(&self, view: &[u8], at: usize, continues_line: bool) -> bool {
        if !continues_line || at >= WORD_CONTEXT {
            return is_whole_word_at(view, at, ERROR_KEYWORD.len());
        }
        let mut joined = [0u8; 2 * WORD_CONTEXT + 2 * ERROR_KEYWORD.len()];
        let taken = view.len().min(at + ERROR_KEYWORD.len() + WORD_CONTEXT);
        joined[..WORD_CONTEXT].copy_from_slice(&self.piece_end);
        joined[WORD_CONTEXT..WORD_CONTEXT + taken].copy_from_slice(&view[..taken]);
        is_whole_word_at(
            &joined[..WORD_CONTEXT + taken],
            WORD_CONTEXT + at,
            ERROR_KEYWORD.len(),
        )
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
    /// A gzip-compressed file is read whole, once: it is a finished part of a log.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened, read or decompressed, or
    /// is not text it can decode (the message names the file and what to do).
    pub fn scan_file(&mut self, path: &Path, at_end: bool) -> Result<()> {
        if self.complete {
            return Ok(());
        }
        let read_error = |error| Error::io("read", path, error);
        let mut file =
            crate::disk::open_regular(path).map_err(|error| Error::io("open", path, error))?;
        if self.file_offset == 0 {
            let mut magic = [0u8; 2];
            let magic_len = read_up_to(&mut file, &mut magic).map_err(read_error)?;
            file.seek(SeekFrom::Start(0)).map_err(read_error)?;
            if is_gzip(&magic[..magic_len]) {
                let length = file.metadata().map_err(read_error)?.len();
                let mut decompressed = MultiGzDecoder::new(file);
                // A read error here is the decompression's; a decode error stays one.
                self.read_text(&mut decompressed, path, true)
                    .map_err(|error| match error {
                        Error::Io {
                            action: "read",
                            source,
                            ..
                        } => decompress_error(path, source),
                        other => other,
                    })?;
                self.file_offset = length;
                self.complete = true;
                return Ok(());
            }
        }
        file.seek(SeekFrom::Start(self.file_offset))
            .map_err(read_error)?;
        let consumed = self.read_text(&mut file, path, at_end)?;
        self.file_offset += consumed;
        Ok(())
    }

    /// Reads text from `reader` to its end, decoding it, and feeds it through.
    /// Returns how many of the reader's bytes were consumed (the bytes of a line
    /// left for the next call, and of a character cut by the end, are not).
    fn read_text(&mut self, reader: &mut dyn Read, path: &Path, at_end: bool) -> Result<u64> {
        let read_error = |error| Error::io("read", path, error);
        let mut head = Vec::new();
        if self.encoding.is_none() {
            // The file's start tells its encoding; wait for enough of it.
            head.resize(SNIFF_LEN, 0);
            let head_len = read_up_to(reader, &mut head).map_err(read_error)?;
            head.truncate(head_len);
            if head_len < BOM_SNIFF_MIN && !at_end {
                return Ok(0);
            }
            let encoding =
                sniff_encoding(&head).map_err(|error| Error::io("decode", path, error))?;
            self.encoding = Some(encoding);
        }
        let encoding = self.encoding.unwrap_or(TextEncoding::Utf8);
        let mut transcoder = Transcoder::new(encoding);
        let mut text: Vec<u8> = Vec::with_capacity(READ_CHUNK * 2);
        transcoder.decode(&head[encoding.bom_len().min(head.len())..], &mut text);
        let mut read_total = head.len() as u64;
        loop {
            let read = transcoder
                .read_into(reader, &mut text)
                .map_err(read_error)?;
            read_total += read as u64;
            if read == 0 || text.len() >= READ_CHUNK {
                let consumed = self.feed(&text);
                text.drain(..consumed);
            }
            if read == 0 {
                break;
            }
        }
        if at_end {
            transcoder.finish(&mut text);
            self.finish(&text);
            text.clear();
        }
        Ok(read_total - encoding.source_len(&text) - transcoder.pending_len())
    }
}

/// Reads until `buffer` is full or the reader ends; returns how much was read.
fn read_up_to(reader: &mut dyn Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

fn decompress_error(path: &Path, source: io::Error) -> Error {
    Error::io(
        "decompress",
        path,
        io::Error::new(
            source.kind(),
            format!(
                "{source}; the compressed part is damaged or still being written: check it \
                 with gzip -t, and run again once logrotate is done"
            ),
        ),
    )
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

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        file
    }

    fn scanned(bytes: &[u8]) -> Result<LogScanner> {
        let file = write(bytes);
        let mut scanner = LogScanner::new("t.log");
        scanner.scan_file(file.path(), true)?;
        Ok(scanner)
    }

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        let mut bytes = if big_endian {
            b"\xfe\xff".to_vec()
        } else {
            b"\xff\xfe".to_vec()
        };
        for unit in text.encode_utf16() {
            bytes.extend(if big_endian {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            });
        }
        bytes
    }

    #[test]
    fn utf16_logs_read_as_their_utf8_text() {
        let text = format!("{LOG}2026-11-24 10:00:08,009 Info ошибка «error» 😀\r\n");
        let expected = scan(text.as_bytes());
        for big_endian in [false, true] {
            let scanner = scanned(&utf16(&text, big_endian)).unwrap();
            assert_eq!(scanner.errors(), expected.errors(), "{big_endian}");
            assert_eq!(scanner.last_record(), expected.last_record());
            assert_eq!(scanner.errors().last().unwrap().line, 12);
        }
    }

    #[test]
    fn a_utf16_log_read_while_it_grows_is_read_once() {
        let text = format!("{LOG}2026-11-24 10:00:08,009 Info ошибка 😀 error\n");
        let bytes = utf16(&text, false);
        let expected = scan(text.as_bytes());
        // Cut inside a line, inside a surrogate pair and inside a code unit.
        let pair_at = bytes.len() - 2 * " error\n".len() - 3;
        for cut in [3, bytes.len() / 2, bytes.len() / 2 + 1, pair_at] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.log");
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let mut scanner = LogScanner::new("t.log");
            scanner.scan_file(&path, false).unwrap();
            assert!(scanner.offset() <= cut as u64);
            std::fs::write(&path, &bytes).unwrap();
            scanner.scan_file(&path, true).unwrap();
            assert_eq!(scanner.errors(), expected.errors(), "cut at {cut}");
            assert_eq!(
                scanner.last_record(),
                expected.last_record(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_gzip_part_reads_as_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log.1");
        std::fs::write(&path, LOG).unwrap();
        let status = std::process::Command::new("gzip")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let gz = dir.path().join("t.log.1.gz");
        let mut scanner = LogScanner::new("t.log.1.gz");
        scanner.scan_file(&gz, false).unwrap();
        let expected = scan(LOG.as_bytes());
        assert_eq!(scanner.errors().len(), expected.errors().len());
        assert_eq!(scanner.errors()[0].line, 3);
        assert_eq!(scanner.last_record(), expected.last_record());
        // Read once: a second call adds nothing.
        scanner.scan_file(&gz, true).unwrap();
        assert_eq!(scanner.errors_total(), expected.errors_total());
        assert_eq!(scanner.offset(), std::fs::metadata(&gz).unwrap().len());

        let mut damaged = std::fs::read(&gz).unwrap();
        damaged.truncate(damaged.len() - 12);
        std::fs::write(&gz, &damaged).unwrap();
        let error = LogScanner::new("x").scan_file(&gz, true).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("cannot decompress") && message.contains("t.log.1.gz"),
            "{message}"
        );
        assert!(message.contains("gzip -t"), "{message}");
    }

    #[test]
    fn unreadable_encodings_are_errors_naming_the_file() {
        for bytes in [
            &b"\xff\xfe\x00\x002\x00\x00\x000\x00\x00\x00"[..],
            b"\x00\x00\xfe\xff\x00\x00\x002",
            b"2\x000\x002\x006\x00-\x001\x001\x00",
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00",
        ] {
            let file = write(bytes);
            let error = LogScanner::new("t.log")
                .scan_file(file.path(), true)
                .unwrap_err();
            assert_eq!(error.kind(), crate::error::ErrorKind::Io);
            let message = error.to_string();
            assert!(message.starts_with("cannot decode "), "{message}");
            assert!(
                message.contains(&file.path().display().to_string()),
                "{message}"
            );
        }
    }

    #[test]
    fn a_long_line_is_reported_with_a_bounded_prefix() {
        // One record of 3 MiB on a single line, its keyword at the very end, then
        // a continuation line of 1 MiB of NUL bytes: more than any buffer holds.
        let mut text =
            b"2026-11-24 10:00:00,001 INFO first\n2026-11-24 10:00:01,001 Warn ".to_vec();
        text.extend(std::iter::repeat_n(b'x', 3 << 20));
        text.extend_from_slice(b" error\n");
        text.extend(std::iter::repeat_n(0u8, 1 << 20));
        let scanner = scanned(&text).unwrap();
        assert_eq!(scanner.errors().len(), 1);
        let error = &scanner.errors()[0];
        assert_eq!((error.line, error.reason), (2, ErrorReason::Keyword));
        assert_eq!(error.message.len(), MESSAGE_CAP);
        let last = scanner.last_record().unwrap();
        assert_eq!(last.line, Some(2));
        assert!(last.text.len() <= LAST_RECORD_CAP, "{}", last.text.len());
        assert!(last
            .first_line()
            .starts_with("2026-11-24 10:00:01,001 Warn xxx"));
        // The NUL tail is counted as the line it is, not as many.
        let more =
            scanned(&[&text[..], b"\n2026-11-24 10:00:02,001 ERROR after"].concat()).unwrap();
        assert_eq!(more.errors()[1].line, 4);
    }

    fn long_log_line() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            4 => "[a-z]{1,12}",
            1 => Just("error".to_owned()),
            1 => Just("ERROR".to_owned()),
            1 => Just("ошибка".to_owned()),
            1 => Just("«error»".to_owned()),
            1 => Just("_error".to_owned()),
        ];
        let separator = prop_oneof![Just(" "), Just(""), Just("-"), Just("\u{a0}")];
        let text = proptest::collection::vec((word, separator), 0..300).prop_map(|words| {
            words
                .into_iter()
                .map(|(word, sep)| word + sep)
                .collect::<String>()
        });
        prop_oneof![
            2 => ("[A-Za-z]{3,6}", text.clone()).prop_map(|(level, message)| format!("2026-11-24 10:00:00,001 {level} {message}")),
            2 => text,
            1 => Just(String::new()),
        ]
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

        /// Cutting long lines into pieces (here of about 1 KiB, fed in
        /// chunks of any size) finds exactly what reading each line whole finds.
        #[test]
        fn long_lines_cut_into_pieces_give_the_same_result(
            lines in proptest::collection::vec(long_log_line(), 0..12),
            piece in MIN_LONG_LINE_PIECE..MIN_LONG_LINE_PIECE + 200,
            cuts in proptest::collection::vec(0usize..20_000, 0..8),
        ) {
            let text = lines.join("\n");
            let whole = scan(text.as_bytes());
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (text.len() + 1)).collect();
            cuts.sort();
            let mut pieces = LogScanner::new("t.log").with_long_line_piece(piece);
            let mut pending: Vec<u8> = Vec::new();
            let mut previous = 0;
            for cut in cuts {
                pending.extend_from_slice(&text.as_bytes()[previous..cut]);
                previous = cut;
                loop {
                    let consumed = pieces.feed(&pending);
                    pending.drain(..consumed);
                    if consumed == 0 {
                        break;
                    }
                }
                prop_assert!(pending.len() < piece);
            }
            pending.extend_from_slice(&text.as_bytes()[previous..]);
            pieces.finish(&pending);
            prop_assert_eq!(whole.errors(), pieces.errors());
            prop_assert_eq!(whole.last_record(), pieces.last_record());
        }
    }
}
