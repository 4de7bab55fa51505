//! Printing: JSON for scripts, aligned text for people, errors on stderr.
//!
//! Everything goes out through [`stdout`] and [`stderr`], which pass each line
//! through the core's one masking function: a secret read from any config
//! (or shaped like one: a URL's password, `-D…password=…`) never reaches the
//! terminal, a log or a script, whatever message carried it. Under
//! `--root DIR` they also show every path in DIR as the server's path
//! (`DIR/var/lib/x` as `/var/lib/x`), and a JSON report names DIR once, as
//! `"root"`: the paths are the ones the admin typed and will find on the server.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::OnceLock;

use cmw_upgrade_core::secrets::mask;
use serde::Serialize;

use crate::error::CliError;

/// A writer that masks secrets, a line at a time (a secret never spans lines;
/// a progress line ending in `\r` is a line too).
pub struct Masked<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> Masked<W> {
    fn new(inner: W) -> Self {
        Masked {
            inner,
            pending: Vec::new(),
        }
    }

    fn write_masked(&mut self, upto: usize) -> io::Result<()> {
        let line: Vec<u8> = self.pending.drain(..upto).collect();
        let text = String::from_utf8_lossy(&line);
        self.inner
            .write_all(as_server_paths(&mask(&text)).as_bytes())
    }
}

impl<W: Write> Write for Masked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.write_masked(end + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_masked(self.pending.len())?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for Masked<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The `--root` whose paths are shown as the server's, when it is not `/`.
static SERVER_ROOT: OnceLock<String> = OnceLock::new();

/// Shows paths under `root` as the server's from now on (when `root` is not
/// `/`). Not for the agent and the bundle stream, whose answers are read by
/// another cmw-upgrade and must keep the paths as they are.
pub fn show_paths_as_under(root: &std::path::Path) {
    let text = root.to_string_lossy();
    let text = text.trim_end_matches('/');
    if !text.is_empty() {
        let _ = SERVER_ROOT.set(text.to_owned());
    }
}

/// A character that continues a path: a root found right after one is part
/// of another path (`/work/examples/server` is not `examples/server`).
fn continues_path(character: char) -> bool {
    character.is_alphanumeric() || "._-/~+@".contains(character)
}

/// `text` with every path in the shown root written as the server's path.
pub fn as_server_paths(text: &str) -> Cow<'_, str> {
    match SERVER_ROOT.get() {
        Some(root) => server_paths_in(text, root),
        None => Cow::Borrowed(text),
    }
}

/// `text` with every path in `root` (`ROOT/...`, where a path starts)
/// written as the server's path. The root alone is left as it is: in a
/// sentence it is a word (`--root old` prints "the old server"), and the
/// command line that names it (`--root R`) must stay as typed.
fn server_paths_in<'a>(text: &'a str, root: &str) -> Cow<'a, str> {
    let prefix = format!("{root}/");
    if !text.contains(&prefix) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, _) in text.match_indices(&prefix) {
        if start < copied {
            continue;
        }
        let starts_path = text[..start]
            .chars()
            .next_back()
            .is_none_or(|before| !continues_path(before));
        if starts_path {
            shown.push_str(&text[copied..start]);
            // Keep the slash: `ROOT/var` is `/var`.
            copied = start + root.len();
        }
    }
    shown.push_str(&text[copied..]);
    Cow::Owned(shown)
}

/// Every string of a JSON document with its paths shown as the server's,
/// and the root named once (`"root"`) in a report object.
fn show_server_paths(document: &mut serde_json::Value) {
    fn walk(value: &mut serde_json::Value, root: &str) {
        match value {
            serde_json::Value::String(text) => {
                // A value that is a path (no sentence around it) may be the
                // root itself: the server's `/`.
                let path_text = text.trim_end_matches('/');
                if path_text == root && !path_text.is_empty() {
                    *text = "/".to_owned();
                } else if let Cow::Owned(shown) = server_paths_in(text, root) {
                    *text = shown;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| walk(item, root)),
            serde_json::Value::Object(fields) => {
                fields.values_mut().for_each(|item| walk(item, root))
            }
            _ => {}
        }
    }
    let Some(root) = SERVER_ROOT.get() else {
        return;
    };
    walk(document, root);
    if let serde_json::Value::Object(fields) = document {
        // The report's top level names the --root as given.
        fields.insert("root".to_owned(), serde_json::Value::String(root.clone()));
    }
}

/// Whether stderr is a terminal that takes escape sequences: a redrawn
/// progress line and a coloured "error:". `TERM=dumb` (an editor's shell, a
/// serial console) and `NO_COLOR` (https://no-color.org) get plain lines.
pub fn stderr_is_styled_terminal() -> bool {
    use std::io::IsTerminal;
    io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        && std::env::var_os("TERM").is_none_or(|term| term != "dumb")
}

/// Standard output, secrets masked.
pub fn stdout() -> Masked<io::StdoutLock<'static>> {
    Masked::new(io::stdout().lock())
}

/// Standard error, secrets masked.
pub fn stderr() -> Masked<io::StderrLock<'static>> {
    Masked::new(io::stderr().lock())
}

/// Prints a value as one pretty JSON document on stdout.
///
/// Secrets are masked in its strings, value by value, so the document stays
/// valid JSON whatever a secret looks like (never `"bytes": 1***1`).
pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let mut document = serde_json::to_value(value).map_err(io::Error::from)?;
    cmw_upgrade_core::secrets::mask_json(&mut document);
    show_server_paths(&mut document);
    let text = serde_json::to_string_pretty(&document).map_err(io::Error::from)?;
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Prints a command's JSON report with the two keys every report has first:
/// `ok` (the command did what was asked, and the answer is good news) and
/// `changed` (this call changed the server), then the report's own fields.
pub fn print_outcome<T: Serialize>(value: &T, ok: bool, changed: bool) -> Result<(), CliError> {
    let fields = serde_json::to_value(value).map_err(io::Error::from)?;
    let mut document = serde_json::Map::new();
    document.insert("ok".to_owned(), ok.into());
    document.insert("changed".to_owned(), changed.into());
    match fields {
        serde_json::Value::Object(fields) => {
            for (key, value) in fields {
                if key != "ok" && key != "changed" {
                    document.insert(key, value);
                }
            }
        }
        other => {
            document.insert("result".to_owned(), other);
        }
    }
    print_json(&serde_json::Value::Object(document))
}

/// Prints an error: always as text on stderr, and with --json also as
/// `{"ok": false, "error": {"kind", "message"}}` on stdout so scripts see why
/// nothing else came. (No `changed`: an error may come after a change; its
/// message says what is left.)
pub fn print_error(error: &CliError, json: bool) {
    let label = if stderr_is_styled_terminal() {
        "\x1b[1;31merror:\x1b[0m"
    } else {
        "error:"
    };
    let _ = writeln!(stderr(), "{label} {error}");
    if json {
        let mut document = serde_json::json!({
            "ok": false,
            "error": { "kind": error.kind(), "message": error.to_string() }
        });
        cmw_upgrade_core::secrets::mask_json(&mut document);
        show_server_paths(&mut document);
        let _ = writeln!(io::stdout().lock(), "{document}");
    }
}

pub use cmw_upgrade_core::units::human_bytes;

/// The "To do by hand" block of a summary: what a person must decide, one
/// line each; nothing when there is nothing.
pub fn print_to_do(
    out: &mut impl Write,
    to_do: &[cmw_upgrade_core::config::migrate::HandNote],
) -> io::Result<()> {
    if to_do.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nTo do by hand:")?;
    for note in to_do {
        writeln!(out, "  - {}", note.message)?;
    }
    Ok(())
}

/// One carried configuration value as `file: key = new (from old_key)`;
/// `removed` stands for a value the migration drops.
pub fn change_line(change: &cmw_upgrade_core::config::Change, removed: &str) -> String {
    let from = change
        .from
        .as_deref()
        .map(|from| format!(" (from {from})"))
        .unwrap_or_default();
    let new = change.new.as_deref().unwrap_or(removed);
    format!("{}: {} = {new}{from}", change.file, change.key)
}

/// A progress line for long copies: `label  42%  1.2 GiB / 3.0 GiB  10/20 files
/// 95 MiB/s  ETA 20s`, the rate over `elapsed`.
pub fn copy_progress_line(
    label: &str,
    (done_bytes, total_bytes): (u64, u64),
    (done_files, total_files): (u64, u64),
    elapsed: std::time::Duration,
) -> String {
    let rate = done_bytes as f64 / elapsed.as_secs_f64().max(0.001);
    let remaining = total_bytes.saturating_sub(done_bytes) as f64;
    let eta = if rate > 0.0 {
        human_duration(std::time::Duration::from_secs_f64(remaining / rate))
    } else {
        "?".to_owned()
    };
    format!(
        "{label:<9} {:>3}%  {} / {}  {done_files}/{total_files} files  {}/s  ETA {eta}",
        done_bytes * 100 / total_bytes.max(1),
        human_bytes(done_bytes),
        human_bytes(total_bytes),
        human_bytes(rate as u64),
    )
}

/// A duration as `1h02m03s`, `4m05s` or `7s`.
pub fn human_duration(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}h{minutes:02}m{seconds:02}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(
            human_duration(std::time::Duration::from_secs(3723)),
            "1h02m03s"
        );
        assert_eq!(human_duration(std::time::Duration::from_secs(65)), "1m05s");
        assert_eq!(human_duration(std::time::Duration::from_secs(7)), "7s");
    }
}

#[cfg(test)]
mod server_path_tests {
    use super::server_paths_in;

    #[test]
    fn paths_in_the_root_are_shown_as_the_server_s() {
        let root = "/tmp/copy";
        for (text, shown) in [
            ("/tmp/copy/var/lib/x", "/var/lib/x"),
            ("bundle \"/tmp/copy/srv/b\": ok", "bundle \"/srv/b\": ok"),
            // The root alone is a word, or the --root of a hint: as it is.
            ("/tmp/copy", "/tmp/copy"),
            (
                "cmw-upgrade --root /tmp/copy backup verify /tmp/copy/b",
                "cmw-upgrade --root /tmp/copy backup verify /b",
            ),
            ("at /tmp/copy.", "at /tmp/copy."),
            ("/tmp/copy2/x and /tmp/copyx", "/tmp/copy2/x and /tmp/copyx"),
            ("/other/tmp/copy/x", "/other/tmp/copy/x"),
            ("a=/tmp/copy/a, b=/tmp/copy/b", "a=/a, b=/b"),
        ] {
            assert_eq!(server_paths_in(text, root), shown, "{text}");
        }
        // A relative, word-like root: only its paths change, never its words.
        for (text, shown) in [
            (
                "reading the old server's files",
                "reading the old server's files",
            ),
            ("old/srv/b and bold/x and old", "/srv/b and bold/x and old"),
        ] {
            assert_eq!(server_paths_in(text, "old"), shown, "{text}");
        }
        assert_eq!(
            server_paths_in("examples/server/var/x", "examples/server"),
            "/var/x"
        );
        assert_eq!(
            server_paths_in("/work/examples/server/var", "examples/server"),
            "/work/examples/server/var"
        );
    }
}
