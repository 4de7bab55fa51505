//! The upstream address of an nginx site file, found and rewritten
//! format-preserving: pure functions over the text.
//!
//! An address is the `host:port` of a `proxy_pass http(s)://host:port/...`
//! or the first word of a `server host:port ...;` inside an `upstream` block.
//! Only the bytes of the address that moves change (and, for the
//! resolver-driven upstream, the lines put before its `proxy_pass`); every
//! other byte, comments, quotes and CRLF included, stays as it was.

use serde::{Deserialize, Serialize};

use crate::config::nginx::{parse_nginx, Directive};

/// `host:port` as the admin gives it (`--old 10.0.0.5:8080`, `[fd00::5]:8080`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// A host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `HOST:PORT` or `[IPV6]:PORT`.
    ///
    /// # Errors
    /// A sentence saying what is expected.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let expected = || format!("{text:?} is not HOST:PORT (IPv6: [ADDR]:PORT)");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(expected)?;
            (host, port)
        } else {
            text.rsplit_once(':').ok_or_else(expected)?
        };
        let port: u16 = port.parse().map_err(|_| expected())?;
        let plain = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !plain || port == 0 || (host.contains(':') && !text.starts_with('[')) {
            return Err(expected());
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }

    pub(crate) fn is(&self, host: &str, port: u16) -> bool {
        self.host
            .eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']'))
            && self.port == port
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(formatter, "[{}]:{}", self.host, self.port)
        } else {
            write!(formatter, "{}:{}", self.host, self.port)
        }
    }
}

/// Where an upstream address is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPlace {
    /// `proxy_pass` or `server` (of an `upstream` block).
    pub directive: &'static str,
    /// The `upstream` block's name, for a `server`.
    pub upstream: Option<String>,
    /// 1-based line.
    pub line: usize,
    /// Byte span of `host[:port]` in the text.
    pub start: usize,
    /// End of that span.
    pub end: usize,
    /// The host as written.
    pub host: String,
    /// The port (the scheme's default when none is written).
    pub port: u16,
    /// For a `proxy_pass`: the URI after the address (`/`, `/api/`, empty).
    pub uri: String,
    /// For a `proxy_pass`: where its argument ends, its closing quote excluded.
    pub argument_end: usize,
}

impl AddressPlace {
    /// How the place is named to the admin: `proxy_pass 10.0.0.5:8080 (line 7)`.
    pub fn describe(&self) -> String {
        let shown = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        match &self.upstream {
            Some(name) => format!("upstream {name} server {shown} (line {})", self.line),
            None => format!("{} {shown} (line {})", self.directive, self.line),
        }
    }
}

/// The variable the resolver-driven `proxy_pass` names its host by.
pub const UPSTREAM_VARIABLE: &str = "$cmw_upgrade_upstream";

/// Every upstream address of a site file, in order.
///
/// # Errors
/// The parser's message when the text is not nginx config.
pub fn upstream_addresses(file: &str, text: &str) -> Result<Vec<AddressPlace>, String> {
    let directives = parse_nginx(file, text).map_err(|error| error.to_string())?;
    let mut places = Vec::new();
    collect(text, &directives, None, &mut places);
    Ok(places)
}

fn collect(
    text: &str,
    directives: &[Directive],
    upstream: Option<&str>,
    places: &mut Vec<AddressPlace>,
) {
    for directive in directives {
        match (directive.name.as_str(), upstream) {
            ("proxy_pass", None) => places.extend(proxy_pass_place(text, directive)),
            ("server", Some(name)) if directive.block.is_none() => {
                places.extend(upstream_server_place(text, directive, name));
            }
            _ => {}
        }
        if let Some(block) = &directive.block {
            let inner = (directive.name == "upstream")
                .then(|| directive.args.first().map(String::as_str))
                .flatten();
            collect(text, block, inner.or(upstream), places);
        }
    }
}

/// Where each raw argument of a directive starts: the lexer's tokens again,
/// spaces and comments between them skipped.
fn argument_starts(text: &str, directive: &Directive) -> Option<Vec<usize>> {
    let bytes = text.as_bytes();
    let mut at = directive.start;
    // The name: a bare word (a quoted name is no directive any module knows).
    while let Some(&byte) = bytes.get(at) {
        if byte.is_ascii_whitespace() || byte == b';' || byte == b'{' {
            break;
        }
        at += 1;
    }
    let mut starts = Vec::new();
    for raw in &directive.raw_args {
        loop {
            match bytes.get(at) {
                Some(byte) if byte.is_ascii_whitespace() => at += 1,
                Some(b'#') => {
                    at = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |n| at + n);
                }
                _ => break,
            }
        }
        if !text[at..].starts_with(raw.as_str()) {
            return None;
        }
        starts.push(at);
        at += raw.len();
    }
    Some(starts)
}

/// `host[:port]` at the start of `text`: its length, host and port (`None`:
/// not an address — a variable, a UNIX socket).
fn split_authority(text: &str, default_port: u16) -> Option<(usize, String, u16)> {
    if text.starts_with("unix:") || text.contains('$') {
        return None;
    }
    let length = text.find('/').unwrap_or(text.len());
    let authority = &text[..length];
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let port = match &authority[close + 1..] {
            "" => default_port,
            rest => rest.strip_prefix(':')?.parse().ok()?,
        };
        (authority[1..close].to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (authority.to_owned(), default_port),
        }
    };
    (!host.is_empty()).then_some((length, host, port))
}

fn quoted(raw: &str) -> usize {
    usize::from(raw.starts_with('"') || raw.starts_with('\''))
}

fn proxy_pass_place(text: &str, directive: &Directive) -> Option<AddressPlace> {
    let [raw] = directive.raw_args.as_slice() else {
        return None;
    };
    let start = *argument_starts(text, directive)?.first()?;
    let open = quoted(raw);
    let inner = &raw[open..raw.len() - open];
    let (scheme, rest) = inner.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (length, host, port) = split_authority(rest, default_port)?;
    let address_start = start + open + scheme.len() + 3;
    Some(AddressPlace {
        directive: "proxy_pass",
        upstream: None,
        line: directive.line,
        start: address_start,
        end: address_start + length,
        host,
        port,
        uri: rest[length..].to_owned(),
        argument_end: start + raw.len() - open,
    })
}

fn upstream_server_place(
    text: &str,
    directive: &Directive,
    upstream: &str,
) -> Option<AddressPlace> {
    let raw = directive.raw_args.first()?;
    if quoted(raw) == 1 || raw.contains('\\') {
        return None;
    }
    let start = *argument_starts(text, directive)?.first()?;
    let (length, host, port) = split_authority(raw, 80)?;
    if length != raw.len() {
        return None;
    }
    Some(AddressPlace {
        directive: "server",
        upstream: Some(upstream.to_owned()),
        line: directive.line,
        start,
        end: start + length,
        host,
        port,
        uri: String::new(),
        argument_end: start + length,
    })
}

fn listing(places: &[AddressPlace]) -> String {
    if places.is_empty() {
        "no upstream address (no `proxy_pass http://HOST:PORT` and no `server` in an `upstream` block)"
            .to_owned()
    } else {
        places
            .iter()
            .map(AddressPlace::describe)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The site with every upstream address `old` replaced by `new`; `None`
/// when `old` is not there and `new` is (switched already). Every other byte
/// stays as it was.
///
/// # Errors
/// A sentence naming the addresses the site has when `old` is not one of
/// them, or the parser's message.
pub fn swap_address(
    file: &str,
    text: &str,
    old: &Endpoint,
    new: &Endpoint,
) -> Result<Option<String>, String> {
    let places = upstream_addresses(file, text)?;
    let moving: Vec<&AddressPlace> = places
        .iter()
        .filter(|place| old.is(&place.host, place.port))
        .collect();
    if moving.is_empty() {
        if places.iter().any(|place| new.is(&place.host, place.port)) {
            return Ok(None);
        }
        return Err(format!(
            "{file} has no upstream address {old}; it has {}; pass one of them as --old",
            listing(&places)
        ));
    }
    Ok(Some(replace_places(text, &moving, &new.to_string())))
}

/// `text` with the address at each place (in order) replaced by `replacement`.
pub(crate) fn replace_places(text: &str, places: &[&AddressPlace], replacement: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16 * places.len());
    let mut copied = 0;
    for place in places {
        out.push_str(&text[copied..place.start]);
        out.push_str(replacement);
        copied = place.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// What the resolver-driven upstream needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolverDriven {
    /// The DNS name nginx resolves for the upstream (its A record names the
    /// old server now; the dns method moves it).
    pub name: String,
    /// The DNS server nginx asks (`ADDR:PORT`, IPv6 in brackets).
    pub resolver: String,
    /// How long nginx keeps an answer, in seconds (`valid=`).
    pub valid: u32,
}

/// The site with each `proxy_pass` to `old` made resolver-driven: `resolver
/// … valid=…;` and `set $cmw_upgrade_upstream NAME;` put before it, and its
/// address replaced by `$cmw_upgrade_upstream:PORT` — a variable makes nginx
/// resolve the name at request time, every `valid` seconds, so a DNS change
/// moves traffic with no reload. `None` when the site is so already.
///
/// # Errors
/// A sentence when `old` is not in a `proxy_pass` (named what is there), is
/// in an `upstream` block (whose servers open-source nginx before 1.27.3
/// resolves only at load), or when a `proxy_pass` cannot take a variable
/// without changing what it sends (a URI other than its location's prefix).
pub fn resolver_driven(
    file: &str,
    text: &str,
    old: &Endpoint,
    how: &ResolverDriven,
) -> Result<Option<String>, String> {
    let host_ok = !how.name.is_empty()
        && how
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    if !host_ok {
        return Err(format!(
            "{:?} is not a DNS name; pass the name nginx resolves for the upstream as --upstream-name",
            how.name
        ));
    }
    let directives = parse_nginx(file, text).map_err(|error| error.to_string())?;
    let places = upstream_addresses(file, text)?;
    let moving: Vec<&AddressPlace> = places
        .iter()
        .filter(|place| old.is(&place.host, place.port))
        .collect();
    if moving.is_empty() {
        if text.contains(UPSTREAM_VARIABLE) {
            return Ok(None);
        }
        return Err(format!(
            "{file} has no upstream address {old}; it has {}; pass one of them as --old",
            listing(&places)
        ));
    }
    if let Some(place) = moving.iter().find(|place| place.upstream.is_some()) {
        return Err(format!(
            "{file}: {} is a server of an upstream block, which nginx resolves only when it \
             loads the config; switch it with `--reload` instead (the address swapped, one \
             reload), or make the location `proxy_pass http://{old}` first",
            place.describe()
        ));
    }
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for place in moving {
        let (location, proxy_pass) =
            enclosing_location(&directives, place.start).ok_or_else(|| {
                format!(
                    "{file}: {} is not directly in a `location` block (in an `if` or at the \
                     server level); make it resolver-driven by hand, or switch with `--reload`",
                    place.describe()
                )
            })?;
        if location
            .block
            .iter()
            .flatten()
            .any(|directive| directive.name == "resolver")
        {
            return Err(format!(
                "{file}: the location of {} has its own `resolver` already; set it to the \
                 upstream name's DNS server with `valid={}s` by hand, or switch with `--reload`",
                place.describe(),
                how.valid
            ));
        }
        if !place.uri.is_empty() && !uri_is_the_prefix(location, &place.uri) {
            return Err(format!(
                "{file}: {} sends the URI {:?}; with a variable in proxy_pass nginx would send \
                 that URI for every request instead of replacing the location's prefix; switch \
                 with `--reload`, or rewrite the location by hand",
                place.describe(),
                place.uri
            ));
        }
        edits.push((
            place.start,
            place.argument_end,
            format!("{UPSTREAM_VARIABLE}:{}", place.port),
        ));
        let line_start = text[..proxy_pass.start].rfind('\n').map_or(0, |at| at + 1);
        let indent = &text[line_start..proxy_pass.start];
        let lines = [
            format!("resolver {} valid={}s;", how.resolver, how.valid),
            format!("set {UPSTREAM_VARIABLE} {};", how.name),
        ];
        let inserted = if indent.chars().all(|c| c == ' ' || c == '\t') {
            lines
                .iter()
                .map(|line| format!("{indent}{line}{eol}"))
                .collect::<String>()
        } else {
            lines.iter().map(|line| format!("{line} ")).collect()
        };
        let at = if indent.chars().all(|c| c == ' ' || c == '\t') {
            line_start
        } else {
            proxy_pass.start
        };
        edits.push((at, at, inserted));
    }
    edits.sort_by_key(|(start, end, _)| (*start, *end));
    let mut out = String::with_capacity(text.len() + 128);
    let mut copied = 0;
    for (start, end, replacement) in edits {
        out.push_str(&text[copied..start]);
        out.push_str(&replacement);
        copied = end;
    }
    out.push_str(&text[copied..]);
    Ok(Some(out))
}

/// The `location` whose own directives hold the `proxy_pass` at `offset`.
fn enclosing_location(directives: &[Directive], offset: usize) -> Option<(&Directive, &Directive)> {
    for directive in directives {
        let Some(block) = &directive.block else {
            continue;
        };
        if offset < directive.start || offset >= directive.end {
            continue;
        }
        if directive.name == "location" {
            if let Some(proxy_pass) = block.iter().find(|inner| {
                inner.name == "proxy_pass" && inner.start <= offset && offset < inner.end
            }) {
                return Some((directive, proxy_pass));
            }
        }
        return enclosing_location(block, offset);
    }
    None
}

/// Whether a `proxy_pass` URI is its prefix location's own path: then
/// nginx sends the request's URI unchanged, with or without the URI.
fn uri_is_the_prefix(location: &Directive, uri: &str) -> bool {
    match location.args.as_slice() {
        [prefix] => prefix == uri,
        [modifier, prefix] if modifier == "^~" => prefix == uri,
        _ => false,
    }
}

#[cfg(test)]
#[path = "nginx_site_tests.rs"]
mod tests;
