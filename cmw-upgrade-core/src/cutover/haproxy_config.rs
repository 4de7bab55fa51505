//! The `disabled` flags of a backend's `server` lines in a HAProxy config,
//! read and rewritten format-preserving: a reload or restart then starts
//! with the servers as the runtime API left them.
//!
//! Only the flag token of the named servers changes (added after the line's
//! last word, before any comment, or removed with the blanks before it);
//! every other byte, CRLF and comments included, stays as it was.

use std::collections::BTreeMap;

/// HAProxy's section keywords: a line starting with one opens a section.
pub(super) const SECTION_KEYWORDS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "crt-store",
    "log-forward",
];

/// One line's words (byte spans) and where its comment starts.
pub(super) struct Line {
    pub(super) words: Vec<(usize, usize)>,
    /// Where the content ends: the comment's `#`, or the line's end
    /// without its `\n` / `\r\n`.
    pub(super) content_end: usize,
}

/// Splits a line the way HAProxy does: blanks separate words, quotes and
/// backslash escapes keep them together, an unquoted `#` starts a comment.
pub(super) fn split_line(line: &[u8]) -> Line {
    let mut end = line.len();
    if line[..end].ends_with(b"\n") {
        end -= 1;
    }
    if line[..end].ends_with(b"\r") {
        end -= 1;
    }
    let mut words = Vec::new();
    let mut index = 0;
    let mut content_end = end;
    while index < end {
        let byte = line[index];
        if byte == b' ' || byte == b'\t' {
            index += 1;
            continue;
        }
        if byte == b'#' {
            content_end = index;
            break;
        }
        let start = index;
        let mut quote: Option<u8> = None;
        while index < end {
            let byte = line[index];
            match quote {
                Some(open) if byte == open => quote = None,
                Some(b'"') if byte == b'\\' => index += 1,
                Some(_) => {}
                None if byte == b'\'' || byte == b'"' => quote = Some(byte),
                None if byte == b'\\' => index += 1,
                None if byte == b' ' || byte == b'\t' || byte == b'#' => break,
                None => {}
            }
            index += 1;
        }
        let stop = index.min(end);
        words.push((start, stop));
        index = stop;
    }
    Line { words, content_end }
}

pub(super) fn word(line: &[u8], span: (usize, usize)) -> &[u8] {
    &line[span.0..span.1]
}

/// The `server` lines of `backend` (a `backend` or `listen` section): for
/// each server, the index of its line in `lines`.
pub(super) fn server_lines(
    lines: &[&[u8]],
    backend: &str,
) -> Result<BTreeMap<String, usize>, String> {
    let mut in_backend = false;
    let mut in_defaults = false;
    let mut found_backend = false;
    let mut servers = BTreeMap::new();
    for (number, line) in lines.iter().enumerate() {
        let parsed = split_line(line);
        let Some(&first) = parsed.words.first() else {
            continue;
        };
        let keyword = word(line, first);
        if SECTION_KEYWORDS.iter().any(|k| k.as_bytes() == keyword) {
            let name = parsed.words.get(1).map(|&span| word(line, span));
            in_backend =
                (keyword == b"backend" || keyword == b"listen") && name == Some(backend.as_bytes());
            in_defaults = keyword == b"defaults";
            found_backend |= in_backend;
            continue;
        }
        // A server line's own flag then no longer says how the server starts.
        if (in_backend || in_defaults) && keyword == b"default-server" && has_disabled(line) {
            return Err(format!(
                "line {}: `default-server ... disabled` decides for every server without a \
                 flag of its own, and this tool only edits `server` lines: move `disabled` \
                 from default-server to the server lines that need it",
                number + 1
            ));
        }
        if in_backend && keyword == b"server" {
            if let Some(&name) = parsed.words.get(1) {
                let name = String::from_utf8_lossy(word(line, name)).into_owned();
                if servers.insert(name.clone(), number).is_some() {
                    return Err(format!(
                        "backend {backend} has two `server {name}` lines; HAProxy refuses that: \
                         fix the config first"
                    ));
                }
            }
        }
    }
    if !found_backend {
        return Err(format!(
            "the config has no `backend {backend}` or `listen {backend}` section; pass the \
             config file that defines it (--haproxy-config)"
        ));
    }
    Ok(servers)
}

pub(super) fn lines_of(text: &[u8]) -> Vec<&[u8]> {
    text.split_inclusive(|&byte| byte == b'\n').collect()
}

fn has_disabled(line: &[u8]) -> bool {
    let parsed = split_line(line);
    parsed
        .words
        .iter()
        .skip(2)
        .any(|&span| word(line, span) == b"disabled")
}

/// Whether each `server` line of `backend` carries the `disabled` flag.
///
/// # Errors
/// What is wrong, as text: no such backend, a server named twice.
pub fn disabled_flags(text: &[u8], backend: &str) -> Result<BTreeMap<String, bool>, String> {
    let lines = lines_of(text);
    Ok(server_lines(&lines, backend)?
        .into_iter()
        .map(|(name, number)| (name, has_disabled(lines[number])))
        .collect())
}

/// The config with each named server's `disabled` flag set as wanted
/// (`true`: disabled); every other byte as it was. A flag already as
/// wanted leaves its line alone, so a second run changes nothing.
///
/// # Errors
/// What is wrong, as text, naming what the backend has: no such backend or
/// server, a server named twice.
pub fn set_disabled_flags(
    text: &[u8],
    backend: &str,
    wanted: &BTreeMap<String, bool>,
) -> Result<Vec<u8>, String> {
    let lines = lines_of(text);
    let servers = server_lines(&lines, backend)?;
    let mut edits: BTreeMap<usize, bool> = BTreeMap::new();
    for (name, &disabled) in wanted {
        let Some(&number) = servers.get(name) else {
            return Err(format!(
                "backend {backend} in the config has no `server {name}` line; it has: {}",
                servers.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        };
        edits.insert(number, disabled);
    }
    let mut out = Vec::with_capacity(text.len() + 16 * edits.len());
    for (number, line) in lines.iter().enumerate() {
        match edits.get(&number) {
            Some(&disabled) if disabled != has_disabled(line) => {
                out.extend_from_slice(&rewrite_line(line, disabled));
            }
            _ => out.extend_from_slice(line),
        }
    }
    Ok(out)
}

/// One `server` line with its flag added or removed.
fn rewrite_line(line: &[u8], disabled: bool) -> Vec<u8> {
    let parsed = split_line(line);
    if disabled {
        // After the last word: the comment and its spacing stay where they are.
        let at = parsed
            .words
            .last()
            .map_or(parsed.content_end, |&(_, end)| end);
        let mut out = line[..at].to_vec();
        out.extend_from_slice(b" disabled");
        out.extend_from_slice(&line[at..]);
        return out;
    }
    let mut out = Vec::with_capacity(line.len());
    let mut copied = 0;
    for (index, &span) in parsed.words.iter().enumerate() {
        if index < 2 || word(line, span) != b"disabled" {
            continue;
        }
        // The word goes with the blanks before it (there is always a word before it).
        let previous_end = parsed.words[index - 1].1;
        out.extend_from_slice(&line[copied..previous_end]);
        copied = span.1;
    }
    out.extend_from_slice(&line[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CONFIG: &str = "global\n    stats socket /run/haproxy/admin.sock mode 660 level admin # the API\n\ndefaults\n    mode http\n\nbackend cmw\r\n    balance roundrobin\r\n    server old 10.0.0.5:80 check inter 2s   # the old server\r\n\tserver new 10.0.0.6:80 check disabled\r\n\nbackend other\n    server old 10.9.9.9:80 check\n";

    fn wanted(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
        pairs.iter().map(|&(n, d)| (n.to_owned(), d)).collect()
    }

    #[test]
    fn switches_the_flags_and_keeps_every_other_byte() {
        let out = set_disabled_flags(
            CONFIG.as_bytes(),
            "cmw",
            &wanted(&[("old", true), ("new", false)]),
        )
        .unwrap();
        let expected = CONFIG
            .replace(
                "check inter 2s   # the old",
                "check inter 2s disabled   # the old",
            )
            .replace("check disabled\r\n", "check\r\n");
        assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
        assert_eq!(
            disabled_flags(&out, "cmw").unwrap(),
            wanted(&[("new", false), ("old", true)])
        );
        // The other backend's `old` is another server.
        assert_eq!(
            disabled_flags(&out, "other").unwrap(),
            wanted(&[("old", false)])
        );
        let back =
            set_disabled_flags(&out, "cmw", &wanted(&[("old", false), ("new", true)])).unwrap();
        assert_eq!(String::from_utf8(back).unwrap(), CONFIG);
    }

    #[test]
    fn names_what_exists() {
        let error =
            set_disabled_flags(CONFIG.as_bytes(), "cmw", &wanted(&[("nwe", false)])).unwrap_err();
        assert!(
            error.contains("no `server nwe`") && error.contains("new, old"),
            "{error}"
        );
        let error = disabled_flags(CONFIG.as_bytes(), "cwm").unwrap_err();
        assert!(error.contains("no `backend cwm`"), "{error}");
    }

    #[test]
    fn a_disabled_default_server_is_refused() {
        let text =
            "defaults\n  default-server inter 1s disabled\nbackend cmw\n  server new 10.0.0.6:80\n";
        let error = disabled_flags(text.as_bytes(), "cmw").unwrap_err();
        assert!(error.starts_with("line 2: `default-server"), "{error}");
    }

    #[test]
    fn quoted_words_and_comments_are_not_flags() {
        let text = "listen cmw\n  server new 10.0.0.6:80 check # disabled\n  server old \"a b\":80 cookie 'x disabled'\n";
        assert_eq!(
            disabled_flags(text.as_bytes(), "cmw").unwrap(),
            wanted(&[("new", false), ("old", false)])
        );
        let out = set_disabled_flags(text.as_bytes(), "cmw", &wanted(&[("new", true)])).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            text.replace("check # disabled", "check disabled # disabled")
        );
    }

    fn blank() -> impl Strategy<Value = String> {
        prop::sample::select(vec![" ", "  ", "\t", " \t "]).prop_map(str::to_owned)
    }

    /// A config of random other lines around one backend's server lines.
    fn config() -> impl Strategy<Value = (String, Vec<bool>)> {
        let other = prop::sample::select(vec![
            "    mode http",
            "# a comment with server old x disabled",
            "",
            "    option httpchk GET /api/health",
            "    timeout server 30s # long",
            "\tbalance  roundrobin",
        ]);
        (
            prop::collection::vec(other, 0..4),
            prop::collection::vec((blank(), any::<bool>(), any::<bool>(), blank()), 1..4),
            any::<bool>(),
        )
            .prop_map(|(others, servers, crlf)| {
                let eol = if crlf { "\r\n" } else { "\n" };
                let mut text = format!("defaults{eol}{}{eol}backend be{eol}", others.join(eol));
                let mut flags = Vec::new();
                for (index, (indent, disabled, comment, gap)) in servers.into_iter().enumerate() {
                    let flag = if disabled { " disabled" } else { "" };
                    let comment = if comment {
                        format!("{gap}# s{index}")
                    } else {
                        String::new()
                    };
                    text.push_str(&format!(
                        "{indent}server s{index} 127.0.0.1:{}{gap}check{flag}{comment}{eol}",
                        8000 + index
                    ));
                    flags.push(disabled);
                }
                text.push_str(&others.join(eol));
                (text, flags)
            })
    }

    proptest! {
        #[test]
        fn only_the_flags_change((text, flags) in config(), wanted_flags in prop::collection::vec(any::<bool>(), 4)) {
            let wanted: BTreeMap<String, bool> = flags
                .iter()
                .enumerate()
                .map(|(index, _)| (format!("s{index}"), wanted_flags[index]))
                .collect();
            let out = set_disabled_flags(text.as_bytes(), "be", &wanted).unwrap();
            prop_assert_eq!(disabled_flags(&out, "be").unwrap(), wanted.clone());
            // Line by line: a line differs only if it is a server line whose flag changed,
            // and then only by the ` disabled` word.
            let before = lines_of(text.as_bytes());
            let after = lines_of(&out);
            prop_assert_eq!(before.len(), after.len());
            for (index, (old, new)) in before.iter().zip(&after).enumerate() {
                if old != new {
                    let server = (0..flags.len()).find(|&s| old.windows(3).any(|w| w == format!("s{s} ").as_bytes()));
                    prop_assert!(server.is_some(), "line {} changed: {:?}", index, String::from_utf8_lossy(new));
                    let longer = if old.len() > new.len() { old } else { new };
                    let shorter = if old.len() > new.len() { new } else { old };
                    prop_assert_eq!(longer.len() - shorter.len(), " disabled".len());
                }
            }
            // A second run changes nothing; going back restores every byte
            // when the original flags were written as this tool writes them.
            prop_assert_eq!(set_disabled_flags(&out, "be", &wanted).unwrap(), out.clone());
            let original: BTreeMap<String, bool> = flags
                .iter()
                .enumerate()
                .map(|(index, &disabled)| (format!("s{index}"), disabled))
                .collect();
            prop_assert_eq!(set_disabled_flags(&out, "be", &original).unwrap(), text.into_bytes());
        }
    }
}
