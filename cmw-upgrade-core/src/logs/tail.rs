//! Finding the last record of a log by reading backwards from its end.
//!
//! A caller that needs only the last record of a log that may be gigabytes
//! long (not its errors) reads the file from the end in small blocks until a
//! line that starts a record is found; the cost depends on the size of the last
//! record, not of the file. It reads UTF-8 text only; the verdict, which scans
//! every file forward anyway, takes the last record from that scan, which
//! decodes UTF-16 and compressed parts too.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::record::parse_record_start;
use super::scan::{LastRecord, LAST_RECORD_CAP};
use crate::error::{Error, Result};

/// How much is read per step backwards.
pub const TAIL_BLOCK: usize = 64 * 1024;

/// How much of the line that continues past a block is kept to judge its start;
/// a record header is well under this.
const LINE_HEAD_CAP: usize = 4096;

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// The last record of the log at `path`, or `None` for an empty file.
///
/// Lines before the first record count as a record of their own, as in the
/// forward scan, so a log without any record header still has a last record.
///
/// # Errors
/// [`Error::Io`] when the file cannot be opened or read.
pub fn last_record(path: &Path) -> Result<Option<LastRecord>> {
    let read_error = |error| Error::io("read", path, error);
    let mut file =
        crate::disk::open_regular(path).map_err(|error| Error::io("open", path, error))?;
    let len = file.metadata().map_err(read_error)?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut block_end = len;
    // The head of the line that starts in the block after the current one.
    let mut following_line_head: Vec<u8> = Vec::new();
    let mut buffer: Vec<u8> = Vec::with_capacity(TAIL_BLOCK + LINE_HEAD_CAP);
    let record_start = loop {
        let block_start = block_end.saturating_sub(TAIL_BLOCK as u64);
        let block_len = (block_end - block_start) as usize;
        buffer.clear();
        buffer.resize(block_len, 0);
        file.seek(SeekFrom::Start(block_start))
            .map_err(read_error)?;
        file.read_exact(&mut buffer).map_err(read_error)?;
        buffer.extend_from_slice(&following_line_head);

        let found = memchr::memrchr_iter(b'\n', &buffer[..block_len]).find_map(|newline| {
            let start = newline + 1;
            is_record_start_at(&buffer, start).then_some(block_start + start as u64)
        });
        if let Some(start) = found {
            break start;
        }
        if block_start == 0 {
            // The first line starts a record, or the lines before the first record do.
            break 0;
        }
        let first_line_end = memchr::memchr(b'\n', &buffer).unwrap_or(buffer.len());
        following_line_head = buffer[..first_line_end.min(LINE_HEAD_CAP)].to_vec();
        block_end = block_start;
    };

    file.seek(SeekFrom::Start(record_start))
        .map_err(read_error)?;
    let mut text = Vec::new();
    file.take(LAST_RECORD_CAP as u64 + UTF8_BOM.len() as u64)
        .read_to_end(&mut text)
        .map_err(read_error)?;
    let text = if record_start == 0 {
        text.strip_prefix(UTF8_BOM).unwrap_or(&text)
    } else {
        &text
    };
    Ok(Some(LastRecord::from_bytes(None, text)))
}

fn is_record_start_at(buffer: &[u8], start: usize) -> bool {
    let rest = &buffer[start..];
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    let line = &rest[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    parse_record_start(line).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::scan::LogScanner;
    use proptest::prelude::*;
    use std::io::Write;

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    #[test]
    fn finds_the_last_record_with_its_continuation_lines() {
        let file = write(b"2026-11-24 10:00:00,001 INFO one\n2026-11-24 10:00:01,001 ERROR two\n  at X()\n  at Y()\n");
        let last = last_record(file.path()).unwrap().unwrap();
        assert_eq!(
            last.text,
            "2026-11-24 10:00:01,001 ERROR two\n  at X()\n  at Y()"
        );
        assert_eq!(last.first_line(), "2026-11-24 10:00:01,001 ERROR two");
    }

    #[test]
    fn empty_and_headerless_files() {
        assert_eq!(last_record(write(b"").path()).unwrap(), None);
        let headerless = last_record(write(b"\xef\xbb\xbfjust text\nmore\n").path()).unwrap();
        assert_eq!(headerless.unwrap().text, "just text\nmore");
    }

    #[test]
    fn a_last_record_longer_than_a_block_is_found() {
        let mut text =
            b"2026-11-24 10:00:00,001 INFO first\n2026-11-24 10:00:01,001 INFO Upgrade completed\n"
                .to_vec();
        for index in 0..20_000 {
            text.extend_from_slice(format!("   at Frame{index}()\n").as_bytes());
        }
        let last = last_record(write(&text).path()).unwrap().unwrap();
        assert_eq!(
            last.first_line(),
            "2026-11-24 10:00:01,001 INFO Upgrade completed"
        );
    }

    #[test]
    fn a_header_split_across_blocks_is_recognised() {
        // Put the last header so that it straddles the block boundary.
        let tail = "2026-11-24 10:00:01,001 INFO last\n";
        let filler_len = TAIL_BLOCK + 10 - tail.len();
        let mut text = b"2026-11-24 10:00:00,001 INFO first\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', filler_len));
        text.push(b'\n');
        let header_at = text.len();
        text.extend_from_slice(tail.as_bytes());
        text.extend_from_slice(&b"y".repeat(TAIL_BLOCK - 20));
        assert!(header_at < text.len() - TAIL_BLOCK && text.len() - TAIL_BLOCK < header_at + 30);
        let last = last_record(write(&text).path()).unwrap().unwrap();
        assert_eq!(last.first_line(), "2026-11-24 10:00:01,001 INFO last");
    }

    fn log_text() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            3 => "[A-Za-z]{1,6} [ -~]{0,20}".prop_map(|rest| format!("2026-11-24 10:00:00,001 {rest}").into_bytes()),
            2 => proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..40),
            1 => Just(Vec::new()),
        ];
        (
            any::<bool>(),
            proptest::collection::vec(line, 0..40),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(bom, lines, crlf, trailing)| {
                let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
                let mut text = if bom { UTF8_BOM.to_vec() } else { Vec::new() };
                text.extend(lines.join(end));
                if trailing {
                    text.extend_from_slice(end);
                }
                text
            })
    }

    proptest! {
        /// Reading backwards finds the same last record as reading the whole file forwards.
        #[test]
        fn backward_read_agrees_with_forward_scan(text in log_text()) {
            let file = write(&text);
            let mut scanner = LogScanner::new("t.log");
            scanner.finish(&text);
            let forward = scanner.last_record().map(|record| record.text);
            let backward = last_record(file.path()).unwrap().map(|record| record.text);
            prop_assert_eq!(forward, backward);
        }
    }
}
