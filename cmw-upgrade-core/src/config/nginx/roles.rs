//! Which old `server` block is which new one: matched by role, never by position.
//!
//! A block's role is what it does (proxies the site, only redirects, or
//! something else), the ports it listens on with or without TLS, and its
//! names. A redirect-only block is never matched to a proxying one. When the
//! role leaves two candidates, the migration refuses and names both: carrying
//! a site's names, ports and certificates into the wrong block would serve
//! the site on the wrong address.

use super::parse::Directive;
use crate::error::{Error, Result};

/// What a server block does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Some location (or the block itself) passes requests to a backend.
    Proxies,
    /// Nothing proxies and the block answers with a redirect.
    Redirects,
    /// Anything else: static files, fixed answers.
    Other,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Proxies => "proxying",
            Kind::Redirects => "redirect-only",
            Kind::Other => "non-proxying",
        }
    }
}

/// A port a block listens on, and whether with TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listen {
    pub port: String,
    pub ssl: bool,
}

/// A `server` block and its role.
#[derive(Debug)]
pub(super) struct Server<'a> {
    pub directive: &'a Directive,
    pub kind: Kind,
    pub listens: Vec<Listen>,
    pub names: Vec<String>,
    /// The block has the legacy `ssl on;`: every listen of it is TLS.
    pub legacy_ssl: bool,
}

impl Server<'_> {
    pub fn block(&self) -> &[Directive] {
        self.directive.block.as_deref().unwrap_or_default()
    }

    /// How the admin recognises the block: its line, role, ports and names.
    pub fn describe(&self, file: &str) -> String {
        let listens: Vec<String> = self
            .listens
            .iter()
            .map(|listen| {
                if listen.ssl {
                    format!("{} ssl", listen.port)
                } else {
                    listen.port.clone()
                }
            })
            .collect();
        let mut text = format!(
            "{file}:{} ({} server block, listen {}",
            self.directive.line,
            self.kind.describe(),
            listens.join(", ")
        );
        if !self.names.is_empty() {
            text.push_str(&format!(", server_name {}", self.names.join(" ")));
        }
        text.push(')');
        text
    }
}

fn is_pass(name: &str) -> bool {
    matches!(
        name,
        "proxy_pass" | "fastcgi_pass" | "uwsgi_pass" | "scgi_pass" | "grpc_pass" | "memcached_pass"
    )
}

/// Whether anything in `block` passes requests on. An `include` inside a
/// location counts: the snippet it names is where sites keep their proxying.
fn proxies(block: &[Directive], in_location: bool) -> bool {
    block.iter().any(|directive| {
        is_pass(&directive.name)
            || (in_location && directive.name == "include")
            || directive
                .block
                .as_deref()
                .is_some_and(|inner| proxies(inner, in_location || directive.name == "location"))
    })
}

fn is_redirect(directive: &Directive) -> bool {
    match directive.name.as_str() {
        "return" => match directive.args.first().map(String::as_str) {
            Some("301" | "302" | "303" | "307" | "308") => true,
            Some(url) => url.starts_with("http://") || url.starts_with("https://"),
            None => false,
        },
        "rewrite" => directive
            .args
            .get(2)
            .is_some_and(|flag| flag == "permanent" || flag == "redirect"),
        _ => false,
    }
}

fn redirects(block: &[Directive]) -> bool {
    block.iter().any(|directive| {
        is_redirect(directive) || directive.block.as_deref().is_some_and(redirects)
    })
}

/// The port of a `listen` address: `443`, `10.0.0.1:443`, `[::]:443`,
/// `unix:/path`; a bare host listens on 80.
fn listen_port(address: &str) -> String {
    if address.starts_with("unix:") || address.bytes().all(|b| b.is_ascii_digit()) {
        return address.to_owned();
    }
    match address.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']')) =>
        {
            port.to_owned()
        }
        _ => "80".to_owned(),
    }
}

fn server_role(directive: &Directive) -> Server<'_> {
    let block = directive.block.as_deref().unwrap_or_default();
    let legacy_ssl = block
        .iter()
        .any(|d| d.name == "ssl" && d.args.first().is_some_and(|a| a == "on"));
    let mut listens: Vec<Listen> = block
        .iter()
        .filter(|d| d.name == "listen")
        .filter_map(|d| {
            let address = d.args.first()?;
            Some(Listen {
                port: listen_port(address),
                ssl: legacy_ssl || d.args[1..].iter().any(|a| a == "ssl"),
            })
        })
        .collect();
    if listens.is_empty() {
        // nginx's default when a block says nothing (run as root).
        listens.push(Listen {
            port: "80".to_owned(),
            ssl: legacy_ssl,
        });
    }
    let names = block
        .iter()
        .filter(|d| d.name == "server_name")
        .flat_map(|d| d.raw_args.iter().cloned())
        .collect();
    let kind = if proxies(block, false) {
        Kind::Proxies
    } else if redirects(block) {
        Kind::Redirects
    } else {
        Kind::Other
    };
    Server {
        directive,
        kind,
        listens,
        names,
        legacy_ssl,
    }
}

/// The `server` blocks of a site file, possibly wrapped in `http` by hand.
pub(super) fn servers(directives: &[Directive]) -> Vec<Server<'_>> {
    let mut found = Vec::new();
    for directive in directives {
        match &directive.block {
            Some(_) if directive.name == "server" => found.push(server_role(directive)),
            // `upstream` blocks hold `server` lines, not blocks; other blocks may wrap servers.
            Some(block) => found.extend(servers(block)),
            None => {}
        }
    }
    found
}

fn shares_listen(a: &Server<'_>, b: &Server<'_>) -> bool {
    a.listens.iter().any(|listen| b.listens.contains(listen))
}

fn shares_name(a: &Server<'_>, b: &Server<'_>) -> bool {
    a.names.iter().any(|name| b.names.contains(name))
}

/// The old and new files' blocks, with their texts for telling copies apart.
pub(super) struct Sides<'s, 'a> {
    pub file: &'s str,
    pub old_file: &'s str,
    pub old: &'s [Server<'a>],
    pub new: &'s [Server<'a>],
    pub old_text: &'s str,
    pub new_text: &'s str,
}

impl Sides<'_, '_> {
    fn same_text(&self, old: usize, new: usize) -> bool {
        let (o, n) = (self.old[old].directive, self.new[new].directive);
        self.old_text[o.start..o.end] == self.new_text[n.start..n.end]
    }

    /// Refuses when two blocks of one file fit the role of one block of the
    /// other: `old_side` says which file the two candidates are in.
    fn refuse(&self, candidates: [usize; 2], target: usize, old_side: bool) -> Error {
        let (side, file, other, other_file) = if old_side {
            (self.old, self.old_file, self.new, self.file)
        } else {
            (self.new, self.file, self.old, self.old_file)
        };
        Error::ConfigParse {
            path: file.into(),
            line: Some(side[candidates[0]].directive.line),
            message: format!(
                "two server blocks fit the role of {}: {} and {}; nothing was carried — give \
                 the blocks distinct listen ports or server_name, or carry the site by hand",
                other[target].describe(other_file),
                side[candidates[0]].describe(file),
                side[candidates[1]].describe(file),
            ),
        }
    }

    /// Narrows candidates for `new`: by name, then to byte-identical copies.
    fn narrow(&self, new: usize, candidates: Vec<usize>) -> std::result::Result<usize, Vec<usize>> {
        if let [only] = candidates[..] {
            return Ok(only);
        }
        let named: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&old| shares_name(&self.old[old], &self.new[new]))
            .collect();
        if let [only] = named[..] {
            return Ok(only);
        }
        let pool = if named.is_empty() { candidates } else { named };
        // Identical blocks carry nothing into each other, whichever is picked.
        pool.iter()
            .copied()
            .find(|&old| self.same_text(old, new))
            .ok_or(pool)
    }

    /// For each new block, the old block it takes its settings from.
    ///
    /// First by shared listen port (with TLS or not) within the same kind,
    /// then server_name; what is left is matched when each kind has one block
    /// left on each side.
    pub fn match_blocks(&self) -> Result<Vec<Option<usize>>> {
        let mut pairs: Vec<Option<usize>> = vec![None; self.new.len()];
        let mut taken: Vec<Option<usize>> = vec![None; self.old.len()];
        for (new_index, new) in self.new.iter().enumerate() {
            let candidates: Vec<usize> = (0..self.old.len())
                .filter(|&old| {
                    taken[old].is_none()
                        && self.old[old].kind == new.kind
                        && shares_listen(&self.old[old], new)
                })
                .collect();
            if candidates.is_empty() {
                continue;
            }
            match self.narrow(new_index, candidates) {
                Ok(old) => {
                    pairs[new_index] = Some(old);
                    taken[old] = Some(new_index);
                }
                Err(pool) => return Err(self.refuse([pool[0], pool[1]], new_index, true)),
            }
        }
        for kind in [Kind::Proxies, Kind::Redirects, Kind::Other] {
            let rest_new: Vec<usize> = (0..self.new.len())
                .filter(|&n| pairs[n].is_none() && self.new[n].kind == kind)
                .collect();
            let rest_old: Vec<usize> = (0..self.old.len())
                .filter(|&o| taken[o].is_none() && self.old[o].kind == kind)
                .collect();
            match (&rest_new[..], &rest_old[..]) {
                (_, []) | ([], _) => {}
                ([new], [old]) => {
                    pairs[*new] = Some(*old);
                    taken[*old] = Some(*new);
                }
                (_, [old]) => return Err(self.refuse([rest_new[0], rest_new[1]], *old, false)),
                _ => {
                    for &new in &rest_new {
                        let free: Vec<usize> = rest_old
                            .iter()
                            .copied()
                            .filter(|&o| taken[o].is_none())
                            .collect();
                        match self.narrow(new, free) {
                            Ok(old) => {
                                pairs[new] = Some(old);
                                taken[old] = Some(new);
                            }
                            Err(pool) if pool.len() >= 2 => {
                                return Err(self.refuse([pool[0], pool[1]], new, true))
                            }
                            Err(_) => {}
                        }
                    }
                }
            }
        }
        Ok(pairs)
    }
}
