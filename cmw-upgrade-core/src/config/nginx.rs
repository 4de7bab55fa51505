//! The nginx site file: a small parser with byte spans, and carrying the site's
//! own directives from the old `server` block into the new version's file.
//!
//! The new version's `location`s and everything else in its file stay as they
//! are; the site's own settings (names, ports, TLS, body size, proxy timeouts,
//! logs) come from the old file. The result is checked with the real `nginx -t`
//! before it replaces anything, in the new server's own nginx configuration
//! (see [`super::nginx_context`]).

use super::yaml_merge::apply_edits;
use super::{Change, ChangeAction};
use crate::error::{Error, Result};

/// A directive: `name args;` or `name args { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The directive name.
    pub name: String,
    /// Its arguments, unquoted.
    pub args: Vec<String>,
    /// Byte offset of the name.
    pub start: usize,
    /// Byte offset just after the closing `;` or `}`.
    pub end: usize,
    /// The directives inside its block, if it has one.
    pub block: Option<Vec<Directive>>,
    /// Byte offset just before the block's closing `}`.
    pub block_end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Semicolon,
    Open,
    Close,
}

fn tokenize(file: &str, text: &str) -> Result<Vec<(Token, usize, usize)>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    let error = |at: usize, message: &str| Error::ConfigParse {
        path: file.into(),
        line: Some(text[..at.min(text.len())].matches('\n').count() + 1),
        message: message.to_owned(),
    };
    while index < bytes.len() {
        let byte = bytes[index];
        match byte {
            b' ' | b'\t' | b'\r' | b'\n' => index += 1,
            b'#' => {
                index = memchr::memchr(b'\n', &bytes[index..]).map_or(bytes.len(), |n| index + n);
            }
            b';' => {
                tokens.push((Token::Semicolon, index, index + 1));
                index += 1;
            }
            b'{' => {
                tokens.push((Token::Open, index, index + 1));
                index += 1;
            }
            b'}' => {
                tokens.push((Token::Close, index, index + 1));
                index += 1;
            }
            b'"' | b'\'' => {
                let start = index;
                index += 1;
                let mut word = String::new();
                loop {
                    match bytes.get(index) {
                        None => return Err(error(start, "a quoted string is not closed")),
                        Some(b'\\') if index + 1 < bytes.len() => {
                            word.push(bytes[index + 1] as char);
                            index += 2;
                        }
                        Some(&quote) if quote == byte => {
                            index += 1;
                            break;
                        }
                        Some(_) => {
                            let next = text[index..].chars().next().expect("inside the text");
                            word.push(next);
                            index += next.len_utf8();
                        }
                    }
                }
                tokens.push((Token::Word(word), start, index));
            }
            _ => {
                let start = index;
                while index < bytes.len() {
                    let byte = bytes[index];
                    // `${var}` is part of a word, not a block.
                    if byte == b'{' && index > start && bytes[index - 1] == b'$' {
                        index = memchr::memchr(b'}', &bytes[index..])
                            .map_or(bytes.len(), |n| index + n + 1);
                        continue;
                    }
                    if matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b'}') {
                        break;
                    }
                    index += 1;
                }
                tokens.push((Token::Word(text[start..index].to_owned()), start, index));
            }
        }
    }
    Ok(tokens)
}

/// Parses a site file into directives with byte spans.
///
/// # Errors
/// [`Error::ConfigParse`] with the line for unbalanced braces, a missing `;`, or an
/// unclosed quote.
pub fn parse_nginx(file: &str, text: &str) -> Result<Vec<Directive>> {
    let tokens = tokenize(file, text)?;
    let mut position = 0;
    let directives = parse_block(file, text, &tokens, &mut position, false)?;
    Ok(directives)
}

fn parse_block(
    file: &str,
    text: &str,
    tokens: &[(Token, usize, usize)],
    position: &mut usize,
    nested: bool,
) -> Result<Vec<Directive>> {
    let error = |at: usize, message: &str| Error::ConfigParse {
        path: file.into(),
        line: Some(text[..at.min(text.len())].matches('\n').count() + 1),
        message: message.to_owned(),
    };
    let mut directives = Vec::new();
    while *position < tokens.len() {
        let (token, start, _) = &tokens[*position];
        match token {
            Token::Close if nested => return Ok(directives),
            Token::Close => return Err(error(*start, "unexpected \"}\"")),
            Token::Semicolon | Token::Open => {
                return Err(error(*start, "a directive name is missing"))
            }
            Token::Word(name) => {
                let name = name.clone();
                let start = *start;
                *position += 1;
                let mut args = Vec::new();
                loop {
                    let Some((token, at, end)) = tokens.get(*position) else {
                        return Err(error(
                            text.len(),
                            "unexpected end of file, expecting \";\" or \"}\"",
                        ));
                    };
                    match token {
                        Token::Word(word) => {
                            args.push(word.clone());
                            *position += 1;
                        }
                        Token::Semicolon => {
                            *position += 1;
                            directives.push(Directive {
                                name,
                                args,
                                start,
                                end: *end,
                                block: None,
                                block_end: *end,
                            });
                            break;
                        }
                        Token::Open => {
                            *position += 1;
                            let inner = parse_block(file, text, tokens, position, true)?;
                            let Some((Token::Close, close, close_end)) = tokens.get(*position)
                            else {
                                return Err(error(*at, "this block is not closed"));
                            };
                            let (close, close_end) = (*close, *close_end);
                            *position += 1;
                            directives.push(Directive {
                                name,
                                args,
                                start,
                                end: close_end,
                                block: Some(inner),
                                block_end: close,
                            });
                            break;
                        }
                        Token::Close => {
                            return Err(error(*at, "unexpected \"}\", expecting \";\""))
                        }
                    }
                }
            }
        }
    }
    if nested {
        return Err(error(text.len(), "unexpected end of file, expecting \"}\""));
    }
    Ok(directives)
}

/// Whether a `server`-level directive is the site's own, carried from the old file.
pub fn is_site_directive(name: &str) -> bool {
    matches!(
        name,
        "server_name" | "listen" | "client_max_body_size" | "access_log" | "error_log"
    ) || name.starts_with("ssl_")
        || (name.starts_with("proxy_") && name.ends_with("_timeout"))
}

fn servers(directives: &[Directive]) -> Vec<&Directive> {
    // A site file holds `server` blocks, possibly wrapped in `http` by hand.
    let mut found = Vec::new();
    for directive in directives {
        if directive.name == "server" && directive.block.is_some() {
            found.push(directive);
        } else if let Some(block) = &directive.block {
            found.extend(servers(block));
        }
    }
    found
}

/// The arguments of every directive named `name` in a block, in order.
fn args_named<'a>(block: &'a [Directive], name: &str) -> Vec<&'a Vec<String>> {
    block
        .iter()
        .filter(|directive| directive.name == name)
        .map(|directive| &directive.args)
        .collect()
}

/// The start of the line holding `offset`, and the indentation before it.
fn line_indent(text: &str, offset: usize) -> (usize, &str) {
    let line_start = text[..offset].rfind('\n').map_or(0, |n| n + 1);
    let indent = &text[line_start..offset];
    if indent.trim().is_empty() {
        (line_start, indent)
    } else {
        (offset, "")
    }
}

/// The result of migrating a site file.
#[derive(Debug, Clone)]
pub struct NginxMigration {
    /// The new text (to be checked with `nginx -t` before it is written).
    pub text: String,
    /// What changed, per directive name.
    pub changes: Vec<Change>,
    /// What the admin should review.
    pub warnings: Vec<String>,
}

/// Carries the site's own directives from each old `server` block into the
/// matching (same position) new one; extra old `server` blocks are appended.
///
/// # Errors
/// [`Error::ConfigParse`] when either file does not parse.
pub fn migrate_nginx(file: &str, old_text: &str, new_text: &str) -> Result<NginxMigration> {
    let old_tree = parse_nginx(&format!("old {file}"), old_text)?;
    let new_tree = parse_nginx(file, new_text)?;
    let old_servers = servers(&old_tree);
    let new_servers = servers(&new_tree);
    let line_ending = if new_text.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    for (server_index, (old_server, new_server)) in old_servers.iter().zip(&new_servers).enumerate()
    {
        let old_block = old_server.block.as_deref().unwrap_or_default();
        let new_block = new_server.block.as_deref().unwrap_or_default();
        let label = |name: &str| {
            if old_servers.len() > 1 {
                format!("server[{}].{name}", server_index + 1)
            } else {
                format!("server.{name}")
            }
        };
        let mut names: Vec<&str> = Vec::new();
        for directive in old_block.iter().chain(new_block) {
            if is_site_directive(&directive.name) && !names.contains(&directive.name.as_str()) {
                names.push(&directive.name);
            }
        }
        // Where new directives go when the new block lacks them: before the first location.
        let insert_at = new_block
            .iter()
            .find(|directive| directive.name == "location")
            .map_or(new_server.block_end, |directive| directive.start);
        let (insert_line, insert_indent) = line_indent(new_text, insert_at);
        let default_indent = new_block
            .first()
            .map(|directive| line_indent(new_text, directive.start).1)
            .filter(|indent| !indent.is_empty())
            .unwrap_or("    ");
        for name in names {
            let old_items: Vec<&Directive> = old_block.iter().filter(|d| d.name == name).collect();
            let new_items: Vec<&Directive> = new_block.iter().filter(|d| d.name == name).collect();
            if old_items.is_empty() {
                continue; // The new version's own setting stays.
            }
            let shown = |items: &[&Directive]| -> Option<String> {
                (!items.is_empty()).then(|| {
                    items
                        .iter()
                        .map(|d| d.args.join(" "))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            };
            let change = |action| Change {
                file: file.to_owned(),
                key: label(name),
                action,
                old: shown(&new_items),
                new: shown(&old_items),
                from: None,
            };
            if args_named(old_block, name) == args_named(new_block, name) {
                changes.push(change(ChangeAction::Kept));
                continue;
            }
            let old_texts: Vec<&str> = old_items
                .iter()
                .map(|d| &old_text[d.start..d.end])
                .collect();
            if let Some(first) = new_items.first() {
                let (_, indent) = line_indent(new_text, first.start);
                let indent = if indent.is_empty() {
                    default_indent
                } else {
                    indent
                };
                edits.push((
                    first.start,
                    first.end,
                    old_texts.join(&format!("{line_ending}{indent}")),
                ));
                for extra in &new_items[1..] {
                    // Remove the whole line of a directive the old file does not have.
                    let (line_start, _) = line_indent(new_text, extra.start);
                    let line_end = new_text[extra.end..]
                        .find('\n')
                        .map_or(extra.end, |n| extra.end + n + 1);
                    edits.push((line_start, line_end, String::new()));
                }
                changes.push(change(ChangeAction::Set));
            } else {
                let indent = if insert_line == insert_at {
                    default_indent
                } else {
                    insert_indent
                };
                let mut lines = String::new();
                for text in &old_texts {
                    lines.push_str(indent);
                    lines.push_str(text);
                    lines.push_str(line_ending);
                }
                if insert_line == insert_at {
                    // The closing brace shares its line with something: start a line.
                    lines.insert_str(0, line_ending);
                }
                edits.push((insert_line, insert_line, lines));
                changes.push(change(ChangeAction::Appended));
            }
        }
    }
    // Insertions at the same place keep their order: sort is stable by start.
    let mut text = apply_edits(new_text, &mut edits);
    if old_servers.len() > new_servers.len() {
        if !text.ends_with('\n') {
            text.push_str(line_ending);
        }
        text.push_str(&format!("{line_ending}# --- server blocks carried over from the old site file by cmw-upgrade ---{line_ending}"));
        for (offset, extra) in old_servers[new_servers.len()..].iter().enumerate() {
            text.push_str(&old_text[extra.start..extra.end]);
            text.push_str(line_ending);
            changes.push(Change {
                file: file.to_owned(),
                key: format!("server[{}]", new_servers.len() + offset + 1),
                action: ChangeAction::Appended,
                old: None,
                new: Some(extra.args.join(" ")),
                from: None,
            });
        }
        warnings.push(format!(
            "{file}: the old file has {} server blocks and the new one {}; the extra old blocks were appended whole — review them",
            old_servers.len(),
            new_servers.len()
        ));
    }
    // The result must parse, and its server blocks must hold the old site directives.
    let check = parse_nginx(file, &text)?;
    let checked_servers = servers(&check);
    for (old_server, new_server) in old_servers.iter().zip(&checked_servers) {
        for name in old_server
            .block
            .iter()
            .flatten()
            .map(|d| d.name.as_str())
            .filter(|n| is_site_directive(n))
        {
            let old_block = old_server.block.as_deref().unwrap_or_default();
            let new_block = new_server.block.as_deref().unwrap_or_default();
            let (want, have) = (args_named(old_block, name), args_named(new_block, name));
            if want != have {
                return Err(Error::ConfigParse {
                    path: file.into(),
                    line: None,
                    message: format!("{name} did not come out as in the old file; nothing was written — please report this"),
                });
            }
        }
    }
    Ok(NginxMigration {
        text,
        changes,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "server {\n    listen 443 ssl;\n    server_name cmw.example.org www.cmw.example.org;\n    ssl_certificate /etc/ssl/cmw.crt;\n    ssl_certificate_key /etc/ssl/cmw.key;\n    client_max_body_size 300m;\n    proxy_read_timeout 600s;\n    access_log /var/log/nginx/cmw.access.log;\n\n    location / {\n        proxy_pass http://127.0.0.1:5000; # old backend\n    }\n}\nserver {\n    listen 80;\n    return 301 https://$host$request_uri;\n}\n";
    const NEW: &str = "# Comindware 5.0 site\nserver {\n    listen 80;\n    server_name localhost;\n    client_max_body_size 100m;\n\n    location / {\n        proxy_pass http://127.0.0.1:8080;\n        proxy_set_header Host $host;\n    }\n    location /api/ {\n        proxy_pass \"http://127.0.0.1:8081\";\n    }\n}\n";

    #[test]
    fn parses_blocks_quotes_and_comments() {
        let tree = parse_nginx("site", NEW).unwrap();
        assert_eq!(tree.len(), 1);
        let server = tree[0].block.as_ref().unwrap();
        let names: Vec<_> = server.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "listen",
                "server_name",
                "client_max_body_size",
                "location",
                "location"
            ]
        );
        let api = &server[4].block.as_ref().unwrap()[0];
        assert_eq!(api.args, ["http://127.0.0.1:8081"]);
        assert_eq!(&NEW[server[0].start..server[0].end], "listen 80;");
        let vars = parse_nginx("s", "set $x ${host}_a;\n").unwrap();
        assert_eq!(vars[0].args, ["$x", "${host}_a"]);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line) in [
            ("server {\n listen 80\n}\n", 3),
            ("server {\n", 2),
            ("}\n", 1),
            ("a \"b;\n", 1),
        ] {
            let error = parse_nginx("site", text).unwrap_err();
            assert!(
                error.to_string().starts_with(&format!("site:{line}:")),
                "{text:?}: {error}"
            );
        }
    }

    #[test]
    fn site_directives_move_and_new_locations_stay() {
        let migration = migrate_nginx("site", OLD, NEW).unwrap();
        let text = &migration.text;
        assert!(text.starts_with("# Comindware 5.0 site\nserver {\n    listen 443 ssl;\n    server_name cmw.example.org www.cmw.example.org;\n    client_max_body_size 300m;\n\n    ssl_certificate /etc/ssl/cmw.crt;\n    ssl_certificate_key /etc/ssl/cmw.key;\n    proxy_read_timeout 600s;\n    access_log /var/log/nginx/cmw.access.log;\n    location / {\n        proxy_pass http://127.0.0.1:8080;"), "{text}");
        assert!(text.contains("location /api/ {"));
        assert!(!text.contains("5000"));
        assert!(text.contains("return 301 https://$host$request_uri;"));
        assert_eq!(migration.warnings.len(), 1);
        let again = migrate_nginx("site", OLD, text).unwrap();
        assert_eq!(&again.text, text, "a second run changes nothing");
        assert!(
            again.changes.iter().all(|c| c.action == ChangeAction::Kept),
            "{:?}",
            again.changes
        );
    }

    #[test]
    fn site_directive_names() {
        for name in [
            "listen",
            "server_name",
            "ssl_protocols",
            "proxy_read_timeout",
            "proxy_connect_timeout",
            "access_log",
        ] {
            assert!(is_site_directive(name), "{name}");
        }
        for name in [
            "location",
            "proxy_pass",
            "proxy_set_header",
            "root",
            "proxy_timeout_x",
        ] {
            assert!(!is_site_directive(name), "{name}");
        }
    }
}
