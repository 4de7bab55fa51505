//! The nginx site file: a parser with byte spans, and carrying the site's own
//! settings from the old `server` blocks into the new version's file.
//!
//! The new version's `location`s and everything else in its file stay as they
//! are; the site's own settings come from the old file: names, ports, TLS,
//! body size, proxy timeouts, logs and includes at the server level, and the
//! admin's tuning of each location the new file also has (see [`carry`]).
//! Blocks are matched by role, never by position ([`roles`]). Only the spans
//! that change are edited: every other byte of the new file stays as it was.
//! The result is checked with the real `nginx -t` before it replaces
//! anything, in the new server's own nginx configuration (see
//! [`super::nginx_context`]).

mod carry;
mod parse;
mod roles;
#[cfg(test)]
mod tests;

pub use carry::is_site_directive;
pub use parse::{parse_nginx, Directive};

use super::{Change, ChangeAction};
use crate::error::{Error, Result};
use carry::{Carry, Texts};
use roles::{servers, Kind, Sides};

/// One edit of the new file: the bytes `start..end` became `replacement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxEdit {
    /// Byte offset in the new file where the edit starts.
    pub start: usize,
    /// Byte offset in the new file where it ends (`start` for an insertion).
    pub end: usize,
    /// What stands there now.
    pub replacement: String,
}

/// The result of migrating a site file.
#[derive(Debug, Clone)]
pub struct NginxMigration {
    /// The new text (to be checked with `nginx -t` before it is written).
    pub text: String,
    /// What changed, per directive.
    pub changes: Vec<Change>,
    /// What the admin should review.
    pub warnings: Vec<String>,
    /// The edits of the new file, in order; every byte outside them is kept.
    /// Old blocks appended whole come after the end of the new file.
    pub edits: Vec<NginxEdit>,
}

/// The migration of parsed texts, before it is applied.
struct Plan {
    carry: Carry,
    /// Old blocks without a counterpart, appended whole.
    appended: Vec<String>,
}

fn plan(file: &str, old_file: &str, old_text: &str, new_text: &str) -> Result<Plan> {
    let old_tree = parse_nginx(old_file, old_text)?;
    let new_tree = parse_nginx(file, new_text)?;
    let (old_servers, new_servers) = (servers(&old_tree), servers(&new_tree));
    let sides = Sides {
        file,
        old_file,
        old: &old_servers,
        new: &new_servers,
        old_text,
        new_text,
    };
    let pairs = sides.match_blocks()?;
    let texts = Texts {
        file,
        old_file,
        old: old_text,
        new: new_text,
        line_ending: if new_text.contains("\r\n") {
            "\r\n"
        } else {
            "\n"
        },
    };
    let mut carry = Carry::default();
    for (new_index, old_index) in pairs.iter().enumerate() {
        let Some(old_index) = *old_index else {
            continue;
        };
        let label = if new_servers.len() > 1 {
            format!("server[{}]", new_index + 1)
        } else {
            "server".to_owned()
        };
        carry.server(
            &texts,
            &label,
            &old_servers[old_index],
            &new_servers[new_index],
        );
    }
    let mut appended = Vec::new();
    for (old_index, old) in old_servers.iter().enumerate() {
        if pairs.contains(&Some(old_index)) {
            continue;
        }
        if old.kind == Kind::Proxies {
            // Appended whole it would proxy to the old version's backend paths.
            let proxying: Vec<usize> = (0..new_servers.len())
                .filter(|&n| new_servers[n].kind == Kind::Proxies)
                .collect();
            return Err(Error::ConfigParse {
                path: old_file.into(),
                line: Some(old.directive.line),
                message: format!(
                    "{} proxies the site, but no server block of the new file takes its role{}; \
                     nothing was carried — merge this block into the new file by hand",
                    old.describe(old_file),
                    if proxying.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (the new proxying blocks at {} carry other old blocks)",
                            proxying
                                .iter()
                                .map(|&n| format!("{file}:{}", new_servers[n].directive.line))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
            });
        }
        appended.push(without_legacy_ssl(old_file, old_text, old)?);
        carry.changes.push(Change {
            file: file.to_owned(),
            key: format!("server (old line {})", old.directive.line),
            action: ChangeAction::Appended,
            old: None,
            new: Some(old.describe(old_file)),
            from: None,
        });
        carry.warnings.push(format!(
            "{file}: the new file has no block in the role of {}; it was appended whole — review it",
            old.describe(old_file)
        ));
    }
    Ok(Plan { carry, appended })
}

/// An old block's text without the `ssl` directive (gone from nginx 1.25),
/// `ssl on;` put on its listens instead.
fn without_legacy_ssl(
    old_file: &str,
    old_text: &str,
    server: &roles::Server<'_>,
) -> Result<String> {
    let block = server.directive;
    let mut edits = Vec::new();
    for directive in server.block() {
        if directive.name == "ssl" {
            let (start, end) = carry::removal_span(old_text, directive);
            edits.push((start - block.start, end - block.start, String::new()));
        } else if directive.name == "listen"
            && server.legacy_ssl
            && !directive.args.iter().skip(1).any(|a| a == "ssl")
        {
            let at = directive.args_end - block.start;
            edits.push((at, at, " ssl".to_owned()));
        }
    }
    apply(old_file, &old_text[block.start..block.end], &mut edits)
}

/// Applies edits that must not overlap (each starts at or after the end of the one before).
fn apply(file: &str, text: &str, edits: &mut [(usize, usize, String)]) -> Result<String> {
    edits.sort_by_key(|(start, end, _)| (*start, *end));
    let mut out = String::with_capacity(text.len() + 256);
    let mut position = 0;
    for (start, end, replacement) in edits.iter() {
        if *start < position || !text.is_char_boundary(*start) || !text.is_char_boundary(*end) {
            return Err(Error::ConfigParse {
                path: file.into(),
                line: None,
                message:
                    "two edits of the site file overlap; nothing was written — please report this"
                        .to_owned(),
            });
        }
        out.push_str(&text[position..*start]);
        out.push_str(replacement);
        position = *end;
    }
    out.push_str(&text[position..]);
    Ok(out)
}

/// Carries the site's own settings from each old `server` block into the new
/// block of the same role; old redirect-only and non-proxying blocks without
/// a counterpart are appended whole.
///
/// # Errors
/// [`Error::ConfigParse`] when either file does not parse (or holds a block of
/// another language, such as `content_by_lua_block`), when two blocks fit one
/// role (both named), or when an old proxying block has no counterpart.
pub fn migrate_nginx(file: &str, old_text: &str, new_text: &str) -> Result<NginxMigration> {
    let old_file = format!("old {file}");
    let Plan { carry, appended } = plan(file, &old_file, old_text, new_text)?;
    let Carry {
        mut edits,
        changes,
        warnings,
    } = carry;
    let mut text = apply(file, new_text, &mut edits)?;
    let line_ending = if new_text.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut edits: Vec<NginxEdit> = edits
        .into_iter()
        .map(|(start, end, replacement)| NginxEdit {
            start,
            end,
            replacement,
        })
        .collect();
    if !appended.is_empty() {
        let tail = super::marked_tail(
            &text,
            line_ending,
            &format!(
                "{line_ending}# --- server blocks carried over from the old site file by cmw-upgrade ---"
            ),
            appended,
        );
        text.push_str(&tail);
        edits.push(NginxEdit {
            start: new_text.len(),
            end: new_text.len(),
            replacement: tail,
        });
    }
    // The result must parse and hold the old site's settings: migrating it
    // again must find nothing left to carry.
    let again = plan(file, &old_file, old_text, &text).map_err(|error| Error::ConfigParse {
        path: file.into(),
        line: None,
        message: format!(
            "the migrated site file does not read back ({error}); nothing was written — please report this"
        ),
    })?;
    if !again.carry.edits.is_empty() || !again.appended.is_empty() {
        return Err(Error::ConfigParse {
            path: file.into(),
            line: None,
            message: format!(
                "{} did not come out as in the old file; nothing was written — please report this",
                again
                    .carry
                    .changes
                    .iter()
                    .find(|change| change.action != ChangeAction::Kept)
                    .map_or("a server block", |change| change.key.as_str())
            ),
        });
    }
    Ok(NginxMigration {
        text,
        changes,
        warnings,
        edits,
    })
}
