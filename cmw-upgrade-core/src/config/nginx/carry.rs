//! Carrying the site's own settings from an old block into its new match,
//! as edits of the new text: replaced directive spans, removed lines, and
//! lines inserted before a block's first `location` or its closing `}`.

use super::parse::Directive;
use super::roles::Server;
use crate::config::{Change, ChangeAction};

/// Whether a `server`-level directive is the site's own, carried from the old
/// file, the old value replacing the new one: its names, ports, TLS, body
/// size, proxy timeouts and logs. (`include`s are carried too, added beside
/// the new version's own; the legacy `ssl on;` becomes `ssl` on the listens.)
pub fn is_site_directive(name: &str) -> bool {
    matches!(
        name,
        "server_name" | "listen" | "client_max_body_size" | "access_log" | "error_log"
    ) || name.starts_with("ssl_")
        || (name.starts_with("proxy_") && name.ends_with("_timeout"))
}

/// `location` settings where the old value replaces the new one: how long
/// requests may take and how large uploads may be are the site's load, which
/// the admin tuned and the new version cannot know.
fn is_location_tuning(name: &str) -> bool {
    matches!(
        name,
        "client_max_body_size" | "client_body_timeout" | "client_body_buffer_size" | "send_timeout"
    ) || (name.starts_with("proxy_") && name.ends_with("_timeout"))
}

/// `location` settings carried only when the new location lacks them:
/// buffering and access control the admin added. When the new version sets
/// one itself, its value is functional (streaming answers need buffering
/// off) and stays; the admin is told.
fn is_location_addition(name: &str) -> bool {
    matches!(
        name,
        "proxy_buffering"
            | "proxy_request_buffering"
            | "proxy_buffer_size"
            | "proxy_buffers"
            | "proxy_busy_buffers_size"
            | "proxy_max_temp_file_size"
            | "auth_basic"
            | "auth_basic_user_file"
    )
}

/// What carrying produced for the new text.
#[derive(Debug, Default)]
pub(super) struct Carry {
    /// `(start, end, replacement)` on the new text; insertions have `start == end`.
    pub edits: Vec<(usize, usize, String)>,
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
}

/// A directive as it is carried: its raw arguments and its text.
struct Carried {
    raw_args: Vec<String>,
    text: String,
}

/// The two texts and how lines end in the new one.
pub(super) struct Texts<'a> {
    pub file: &'a str,
    pub old_file: &'a str,
    pub old: &'a str,
    pub new: &'a str,
    pub line_ending: &'a str,
}

/// The span removing `directive`: its whole line when it stands alone there,
/// else just its text.
pub(super) fn removal_span(text: &str, directive: &Directive) -> (usize, usize) {
    let line_start = text[..directive.start].rfind('\n').map_or(0, |n| n + 1);
    let line_end = text[directive.end..]
        .find('\n')
        .map_or(text.len(), |n| directive.end + n + 1);
    if text[line_start..directive.start].trim().is_empty()
        && text[directive.end..line_end].trim().is_empty()
    {
        (line_start, line_end)
    } else {
        (directive.start, directive.end)
    }
}

/// Where new lines go in a block.
struct Insertion {
    at: usize,
    /// The indentation of each inserted line; none when the place shares its
    /// line with other text, and the directives are put there one after another.
    indent: Option<String>,
}

impl Insertion {
    /// Before `at` in `block`: at the start of `at`'s line when only spaces
    /// precede it there, indented like `at` (a directive) or one level inside
    /// the block (its closing `}`).
    fn before(text: &str, block: &Directive, at: usize) -> Self {
        let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
        let before = &text[line_start..at];
        if !before.trim().is_empty() {
            return Insertion { at, indent: None };
        }
        let indent = if at == block.block_end {
            child_indent(text, block)
        } else {
            before.to_owned()
        };
        Insertion {
            at: line_start,
            indent: Some(indent),
        }
    }

    fn edit(&self, lines: &[String], line_ending: &str) -> (usize, usize, String) {
        let mut text = String::new();
        for line in lines {
            match &self.indent {
                Some(indent) => {
                    text.push_str(indent);
                    text.push_str(line);
                    text.push_str(line_ending);
                }
                None => {
                    text.push_str(line);
                    text.push(' ');
                }
            }
        }
        (self.at, self.at, text)
    }
}

/// The indentation of `block`'s directives, or one level more than its own.
fn child_indent(text: &str, block: &Directive) -> String {
    let indent_of = |offset: usize| {
        let line_start = text[..offset].rfind('\n').map_or(0, |n| n + 1);
        let indent = &text[line_start..offset];
        indent.trim().is_empty().then_some(indent)
    };
    let children = block.block.as_deref().unwrap_or_default();
    if let Some(indent) = children
        .iter()
        .filter_map(|child| indent_of(child.start))
        .find(|indent| !indent.is_empty())
    {
        return indent.to_owned();
    }
    let own = indent_of(block.start).unwrap_or_default();
    let unit = if own.contains('\t') { "\t" } else { "    " };
    format!("{own}{unit}")
}

impl Texts<'_> {
    fn carried(&self, directive: &Directive, legacy_ssl: bool) -> Carried {
        let text = &self.old[directive.start..directive.end];
        if directive.name == "listen"
            && legacy_ssl
            && !directive.args.iter().skip(1).any(|a| a == "ssl")
        {
            // `ssl on;` is gone from nginx 1.25: its meaning moves onto the listen.
            let split = directive.args_end - directive.start;
            let mut raw_args = directive.raw_args.clone();
            raw_args.push("ssl".to_owned());
            return Carried {
                raw_args,
                text: format!("{} ssl{}", &text[..split], &text[split..]),
            };
        }
        Carried {
            raw_args: directive.raw_args.clone(),
            text: text.to_owned(),
        }
    }
}

fn change(
    file: &str,
    key: String,
    action: ChangeAction,
    old: Option<String>,
    new: Option<String>,
) -> Change {
    Change {
        file: file.to_owned(),
        key,
        action,
        old,
        new,
        from: None,
    }
}

fn shown(items: &[Vec<String>]) -> Option<String> {
    (!items.is_empty()).then(|| {
        items
            .iter()
            .map(|args| args.join(" "))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

impl Carry {
    /// Makes the new block's `name` directives the old ones: the first new one
    /// replaced by all old ones, the others removed, or the old ones inserted.
    fn replace_named(
        &mut self,
        texts: &Texts<'_>,
        key: String,
        old_items: &[Carried],
        new_items: &[&Directive],
        pending: &mut Vec<String>,
    ) {
        let want: Vec<Vec<String>> = old_items.iter().map(|c| c.raw_args.clone()).collect();
        let have: Vec<Vec<String>> = new_items.iter().map(|d| d.raw_args.clone()).collect();
        let action = if want == have {
            ChangeAction::Kept
        } else if let Some(first) = new_items.first() {
            let line_start = texts.new[..first.start].rfind('\n').map_or(0, |n| n + 1);
            let indent = &texts.new[line_start..first.start];
            let separator = if indent.trim().is_empty() {
                format!("{}{indent}", texts.line_ending)
            } else {
                " ".to_owned()
            };
            let joined = old_items
                .iter()
                .map(|c| c.text.as_str())
                .collect::<Vec<_>>()
                .join(&separator);
            self.edits.push((first.start, first.end, joined));
            for extra in &new_items[1..] {
                let (start, end) = removal_span(texts.new, extra);
                self.edits.push((start, end, String::new()));
            }
            ChangeAction::Set
        } else {
            pending.extend(old_items.iter().map(|c| c.text.clone()));
            ChangeAction::Appended
        };
        self.changes
            .push(change(texts.file, key, action, shown(&have), shown(&want)));
    }

    /// Carries the server-level site directives and includes of `old` into `new`.
    pub fn server(&mut self, texts: &Texts<'_>, label: &str, old: &Server<'_>, new: &Server<'_>) {
        let (old_block, new_block) = (old.block(), new.block());
        // A new block with `ssl on;` of its own keeps that meaning for its listens.
        let legacy_ssl = old.legacy_ssl && !new.legacy_ssl;
        let mut pending = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for directive in old_block {
            if is_site_directive(&directive.name) && !names.contains(&directive.name.as_str()) {
                names.push(&directive.name);
            }
        }
        for name in names {
            let old_items: Vec<Carried> = old_block
                .iter()
                .filter(|d| d.name == name)
                .map(|d| texts.carried(d, legacy_ssl))
                .collect();
            let new_items: Vec<&Directive> = new_block.iter().filter(|d| d.name == name).collect();
            self.replace_named(
                texts,
                format!("{label}.{name}"),
                &old_items,
                &new_items,
                &mut pending,
            );
        }
        if old.legacy_ssl && !old_block.iter().any(|d| d.name == "listen") {
            self.warnings.push(format!(
                "{}:{}: `ssl on;` in a server block without `listen`: nginx served TLS on port 80 there; \
                 the new block keeps its own listen — add `ssl` to it by hand if that was meant",
                texts.old_file, old.directive.line
            ));
        }
        let new_includes: Vec<&Vec<String>> = new_block
            .iter()
            .filter(|d| d.name == "include")
            .map(|d| &d.raw_args)
            .collect();
        for include in old_block.iter().filter(|d| d.name == "include") {
            let key = format!("{label}.include {}", include.raw_args_text());
            let shown_args = Some(include.raw_args_text());
            if new_includes.contains(&&include.raw_args) {
                self.changes.push(change(
                    texts.file,
                    key,
                    ChangeAction::Kept,
                    shown_args.clone(),
                    shown_args,
                ));
            } else {
                pending.push(texts.old[include.start..include.end].to_owned());
                self.changes.push(change(
                    texts.file,
                    key,
                    ChangeAction::Appended,
                    None,
                    shown_args,
                ));
                self.warnings.push(format!(
                    "{}: `include {}` (old {}:{}) was carried into the site: the file it names must exist on the new server",
                    texts.file,
                    include.raw_args_text(),
                    texts.old_file,
                    include.line
                ));
            }
        }
        if !pending.is_empty() {
            // Before the first location, or before the closing brace.
            let at = new_block
                .iter()
                .find(|d| d.name == "location")
                .map_or(new.directive.block_end, |d| d.start);
            let insertion = Insertion::before(texts.new, new.directive, at);
            self.edits.push(insertion.edit(&pending, texts.line_ending));
        }
        self.locations(texts, label, old_block, new_block);
    }

    /// Carries each old `location`'s settings into the new location written the
    /// same way (modifier and path as written), nested locations too.
    fn locations(
        &mut self,
        texts: &Texts<'_>,
        label: &str,
        old_block: &[Directive],
        new_block: &[Directive],
    ) {
        let new_locations = locations(new_block);
        for (path, occurrence, old_index) in locations(old_block) {
            let old_location = &old_block[old_index];
            let matched = new_locations
                .iter()
                .find(|(p, o, _)| *p == path && *o == occurrence)
                .map(|(_, _, index)| &new_block[*index]);
            let key = format!("{label}.location {path}");
            match matched {
                Some(new_location) => {
                    self.location(texts, &key, old_location, new_location);
                    self.locations(
                        texts,
                        &key,
                        old_location.block.as_deref().unwrap_or_default(),
                        new_location.block.as_deref().unwrap_or_default(),
                    );
                }
                None => {
                    let settings: Vec<String> = old_location
                        .block
                        .iter()
                        .flatten()
                        .filter(|d| is_location_setting(&d.name))
                        .map(|d| format!("`{}`", &texts.old[d.start..d.end]))
                        .collect();
                    if !settings.is_empty() {
                        self.warnings.push(format!(
                            "{}:{}: `location {path}` sets {}; {} has no such location, so they were not carried — \
                             add them by hand where the new version serves that path",
                            texts.old_file,
                            old_location.line,
                            settings.join(", "),
                            texts.file
                        ));
                    }
                }
            }
        }
    }

    fn location(&mut self, texts: &Texts<'_>, key: &str, old: &Directive, new: &Directive) {
        let (old_block, new_block) = (
            old.block.as_deref().unwrap_or_default(),
            new.block.as_deref().unwrap_or_default(),
        );
        let mut pending = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for directive in old_block {
            let name = directive.name.as_str();
            if (is_location_tuning(name) || is_location_addition(name)) && !names.contains(&name) {
                names.push(name);
            }
        }
        for name in names {
            let old_items: Vec<&Directive> = old_block.iter().filter(|d| d.name == name).collect();
            let new_items: Vec<&Directive> = new_block.iter().filter(|d| d.name == name).collect();
            let key = format!("{key}.{name}");
            if is_location_tuning(name) {
                let carried: Vec<Carried> =
                    old_items.iter().map(|d| texts.carried(d, false)).collect();
                self.replace_named(texts, key, &carried, &new_items, &mut pending);
            } else {
                self.add_if_missing(texts, key, &old_items, &new_items, &mut pending);
            }
        }
        // Headers the admin added; a header the new version sets itself keeps its value.
        let header = |d: &Directive| d.args.first().map(|name| name.to_ascii_lowercase());
        for old_header in old_block.iter().filter(|d| d.name == "proxy_set_header") {
            let same: Vec<&Directive> = new_block
                .iter()
                .filter(|d| d.name == "proxy_set_header" && header(d) == header(old_header))
                .collect();
            let key = format!(
                "{key}.proxy_set_header {}",
                old_header.raw_args.first().map_or("", String::as_str)
            );
            self.add_if_missing(texts, key, &[old_header], &same, &mut pending);
        }
        // Access rules apply in order as a list: carried whole, into a location without its own.
        let (old_rules, new_rules) = (access_rules(old_block), access_rules(new_block));
        if !old_rules.is_empty() {
            let key = format!("{key}.allow/deny");
            self.add_if_missing(texts, key, &old_rules, &new_rules, &mut pending);
        }
        if !pending.is_empty() {
            let insertion = Insertion::before(texts.new, new, new.block_end);
            self.edits.push(insertion.edit(&pending, texts.line_ending));
        }
    }

    /// Carries `old` when the new location has nothing in its place (`new` is
    /// empty); when it has the same, nothing changes; else the new version's
    /// value stays and the admin is told.
    fn add_if_missing(
        &mut self,
        texts: &Texts<'_>,
        key: String,
        old: &[&Directive],
        new: &[&Directive],
        pending: &mut Vec<String>,
    ) {
        let raw = |items: &[&Directive]| -> Vec<Vec<String>> {
            items.iter().map(|d| d.raw_args.clone()).collect()
        };
        let value = shown(&raw(old));
        if new.is_empty() {
            pending.extend(old.iter().map(|d| texts.old[d.start..d.end].to_owned()));
            self.changes
                .push(change(texts.file, key, ChangeAction::Appended, None, value));
        } else if raw(old) == raw(new) {
            self.changes.push(change(
                texts.file,
                key,
                ChangeAction::Kept,
                value.clone(),
                value,
            ));
        } else {
            self.kept_new(texts, old, new);
        }
    }

    /// The new version sets a directive the old location set differently: its value stays.
    fn kept_new(&mut self, texts: &Texts<'_>, old: &[&Directive], new: &[&Directive]) {
        let text = |items: &[&Directive], source: &str| {
            items
                .iter()
                .map(|d| source[d.start..d.end].to_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        self.warnings.push(format!(
            "{}:{}: the new version sets `{}` where the old site had `{}` ({}:{}); the new value was kept — review it",
            texts.file,
            new[0].line,
            text(new, texts.new),
            text(old, texts.old),
            texts.old_file,
            old[0].line,
        ));
    }
}

/// Whether a `location` directive is one of the settings carried into the matching new location.
pub(super) fn is_location_setting(name: &str) -> bool {
    is_location_tuning(name)
        || is_location_addition(name)
        || matches!(name, "proxy_set_header" | "allow" | "deny")
}

fn access_rules(block: &[Directive]) -> Vec<&Directive> {
    block
        .iter()
        .filter(|d| d.name == "allow" || d.name == "deny")
        .collect()
}

/// A block's locations: the raw modifier and path, which occurrence of it
/// (nginx refuses duplicates, but the matching must not mix them up), and the index.
fn locations(block: &[Directive]) -> Vec<(String, usize, usize)> {
    let mut seen: Vec<(String, usize, usize)> = Vec::new();
    for (index, directive) in block.iter().enumerate() {
        if directive.name == "location" && directive.block.is_some() {
            let path = directive.raw_args_text();
            let occurrence = seen.iter().filter(|(p, _, _)| *p == path).count();
            seen.push((path, occurrence, index));
        }
    }
    seen
}
