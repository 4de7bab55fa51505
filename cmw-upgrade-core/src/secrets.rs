//! Which values are secrets, and hiding them in everything the tool prints.
//!
//! Two rules, one function ([`mask`]) that every printer calls — the CLI's
//! stdout and stderr, its JSON, the Python module's results and exceptions,
//! the run state, the agent's reports:
//! - **By value.** Every config the tool reads (YAML, env files, Spring XML)
//!   hands its secret values to [`remember_config`]; from then on each of those
//!   values is masked wherever it shows up (a diff line, a parse error quoting
//!   the file, a value reached through a YAML alias, a JSON string).
//! - **By shape.** Text that names a secret next to its value is masked even
//!   when the value was never read: `https://user:pass@host`, `-Dx.password=…`
//!   in JVM options, `DB_PASSWORD=…`, `token: …`, `"apiKey": "…"`.
//!
//! A key is secret when any segment of its path (split at `.`, `/`, `:`)
//! contains one of [`SECRET_WORDS`], case and `_`/`-` ignored:
//! `journal.password`, `s3.main.secretKey`, `DB_PASSWORD`, `auth.credentials.user`.

use std::borrow::Cow;
use std::sync::RwLock;

use yaml_serde::Value;

/// Words that make a key segment secret (lowercase, without `_` and `-`).
pub const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "privatekey",
    "accesskey",
    "apikey",
];

/// What is printed instead of a secret value.
pub const MASK: &str = "***";

/// Values shorter than this are masked only where a secret key names them: masked
/// everywhere, a one- to three-character value would wipe unrelated text.
const SHORTEST_REMEMBERED: usize = 4;

fn is_secret_segment(segment: &str) -> bool {
    let folded: String = segment
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SECRET_WORDS.iter().any(|word| folded.contains(word))
}

/// Whether a directive, variable or property holds a secret: any segment of
/// its path contains a [`SECRET_WORDS`] word (`journal.password`, `DB_PASSWORD`,
/// `s3.main.accessKey`, `auth.credentials.user`).
pub fn is_secret_key(key: &str) -> bool {
    key.split(['.', '/', ':']).any(is_secret_segment)
}

/// A value as it may be shown: masked for secret keys.
pub fn shown(key: &str, value: Option<&str>) -> Option<String> {
    value.map(|value| {
        if is_secret_key(key) {
            MASK.to_owned()
        } else {
            value.to_owned()
        }
    })
}

/// The secret values a YAML text sets, found line by line (so a file that
/// does not parse still gives them up), with the tag that may precede a
/// value (`!!int hunter2`) and without quotes.
fn yaml_line_values(text: &str) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_start_matches("- ");
        let key = key.trim_matches(|c| c == '"' || c == '\'');
        if key.starts_with('#') || !is_secret_key(key) {
            continue;
        }
        let mut value = value.trim();
        if let Some(comment) = value.find(" #") {
            value = value[..comment].trim_end();
        }
        // `!!int secret` or `!custom secret`: the tag goes with the value.
        let untagged = match value.strip_prefix('!') {
            Some(rest) => rest
                .split_once(' ')
                .map_or("", |(_, rest)| rest.trim_start()),
            None => value,
        };
        for candidate in [
            value,
            untagged,
            untagged.trim_matches(|c| c == '"' || c == '\''),
        ] {
            // An anchor, alias or block indicator is not the value itself.
            let structural =
                candidate.starts_with(['&', '*', '|', '>', '{', '[']) || candidate.is_empty();
            if !structural && !values.iter().any(|known| known == candidate) {
                values.push(candidate.to_owned());
            }
        }
    }
    values
}

/// `message` with every secret value of the YAML `text` it is about replaced
/// by [`MASK`], with the tag that may precede it (`!!int hunter2`): a parse
/// error quotes the value it could not read, and the admin's terminal, the
/// JSON output and the run state must never show it.
pub fn mask_secret_values(text: &str, message: &str) -> String {
    let mut values = yaml_line_values(text);
    // Longest first, so a value holding another is masked whole.
    values.sort_by_key(|value| std::cmp::Reverse(value.len()));
    let mut masked = message.to_owned();
    for value in values {
        masked = masked.replace(&value, MASK);
    }
    mask(&masked).into_owned()
}

/// Secret values read so far by this process, longest first.
static REMEMBERED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Masks `value` wherever it is printed from now on (with each of its lines,
/// for a multi-line value). Short values are left to the shape rules.
pub fn remember(value: &str) {
    let value = value.trim();
    let mut parts = vec![value];
    if value.contains('\n') {
        parts.extend(value.lines().map(str::trim));
    }
    let mut remembered = REMEMBERED
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for part in parts {
        // A number or a JSON literal, masked everywhere, would corrupt sizes,
        // counts and JSON documents; next to its key it is masked still.
        let plain_value = part
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
            || matches!(part, "true" | "false" | "null");
        if part.chars().count() >= SHORTEST_REMEMBERED
            && !plain_value
            && !remembered.iter().any(|known| known == part)
        {
            remembered.push(part.to_owned());
        }
    }
    remembered.sort_by_key(|value| std::cmp::Reverse(value.len()));
}

/// Remembers the secret values of a config file, read as the kind its name
/// says: `*.yml`/`*.yaml` as YAML (nested and flow mappings, aliases resolved),
/// `*.config`/`*.xml` as Spring XML properties and attributes, anything else
/// as an environment file (`NAME=value`, `export NAME="value"`).
pub fn remember_config(file_name: &str, text: &str) {
    let lower = file_name.to_ascii_lowercase();
    if lower.ends_with(".yml") || lower.ends_with(".yaml") {
        remember_yaml(text);
    } else if lower.ends_with(".config") || lower.ends_with(".xml") {
        remember_xml(text);
    } else if !lower.ends_with(".json") {
        remember_env(text);
    }
    // Any file may hold a URL with a password or JVM options: the shape rules
    // mask those wherever they are printed, so nothing more to remember.
}

/// Remembers every value under a secret key path of a YAML text.
pub fn remember_yaml(text: &str) {
    remember_yaml_lines(text);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Ok(value) = yaml_serde::from_str::<Value>(text) {
        remember_yaml_tree(&value);
    }
}

/// Remembers the secret values a YAML text sets, line by line: what a parser
/// of the text would find may never come, when the text does not parse.
pub fn remember_yaml_lines(text: &str) {
    for value in yaml_line_values(text) {
        remember(&value);
    }
}

/// Remembers every value under a secret key path of a parsed YAML document.
/// Aliases are resolved by the parser: a value reached through `*pw` from a
/// secret key is found under that key's path.
pub fn remember_yaml_tree(value: &Value) {
    remember_yaml_value(value, false);
}

fn remember_yaml_value(value: &Value, under_secret: bool) {
    match value {
        Value::Mapping(mapping) => {
            for (key, item) in mapping {
                let key_is_secret = match key {
                    Value::String(key) => is_secret_key(key),
                    _ => false,
                };
                remember_yaml_value(item, under_secret || key_is_secret);
            }
        }
        Value::Sequence(items) => {
            for item in items {
                remember_yaml_value(item, under_secret);
            }
        }
        Value::Tagged(tagged) => remember_yaml_value(&tagged.value, under_secret),
        Value::String(text) if under_secret => remember(text),
        Value::Number(number) if under_secret => remember(&number.to_string()),
        _ => {}
    }
}

/// Remembers the values of secret variables in an environment file.
pub fn remember_env(text: &str) {
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.starts_with('#') || !is_secret_key(name.trim()) {
            continue;
        }
        let value = value.trim();
        remember(value);
        remember(&shell_word(value));
    }
}

/// A shell word's value: `'…'` literal, `"…"` with `\\` escapes, bare
/// backslash escapes, the parts joined (`'it'\\''s'` is `it's`); stops at an
/// unquoted blank or `#`.
fn shell_word(word: &str) -> String {
    let mut value = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => value.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(next @ ('$' | '`' | '"' | '\\')) => value.push(next),
                            Some(next) => {
                                value.push('\\');
                                value.push(next);
                            }
                            None => value.push('\\'),
                        },
                        c => value.push(c),
                    }
                }
            }
            '\\' => value.extend(chars.next()),
            c if c.is_whitespace() || c == '#' => break,
            c => value.push(c),
        }
    }
    value
}

/// Remembers secret values of a Spring XML file: `<property name="…password"
/// value="…"/>`, its `<value>` child, and any attribute named as a secret.
pub fn remember_xml(text: &str) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    // Inside a secret `<property>`: its `<value>` text is the secret.
    let mut secret_property = false;
    let mut in_value = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(element) | Event::Empty(element)) => {
                let attributes: Vec<(String, String)> = element
                    .attributes()
                    .flatten()
                    .map(|attribute| {
                        let value = attribute
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map_or_else(|_| attribute.value.to_string(), Cow::into_owned);
                        (attribute.key.as_ref().to_owned(), value)
                    })
                    .collect();
                let named_secret = attributes
                    .iter()
                    .any(|(key, value)| key == "name" && is_secret_key(value));
                for (key, value) in &attributes {
                    if (key == "value" && named_secret) || is_secret_key(key) {
                        remember(value);
                    }
                }
                match element.local_name().as_ref() {
                    "property" => secret_property = named_secret,
                    "value" => in_value = true,
                    _ => {}
                }
            }
            Ok(Event::End(element)) => match element.local_name().as_ref() {
                "property" => secret_property = false,
                "value" => in_value = false,
                _ => {}
            },
            Ok(Event::Text(content)) if secret_property && in_value => {
                let value: &str = &content;
                remember(value);
            }
            Ok(Event::CData(content)) if secret_property && in_value => {
                let value: &str = &content;
                remember(value);
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Every secret in `text` replaced by [`MASK`]: the values remembered from the
/// configs read so far (as written and as JSON escapes them), then what the
/// shape rules find. The one masking function every printer calls.
pub fn mask(text: &str) -> Cow<'_, str> {
    let mut masked = Cow::Borrowed(text);
    {
        let remembered = REMEMBERED
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for value in remembered.iter() {
            if masked.contains(value.as_str()) {
                masked = Cow::Owned(masked.replace(value.as_str(), MASK));
            }
            let escaped = serde_json::to_string(value).unwrap_or_default();
            let escaped = &escaped[1..escaped.len().saturating_sub(1).max(1)];
            if escaped != value && masked.contains(escaped) {
                masked = Cow::Owned(masked.replace(escaped, MASK));
            }
        }
    }
    match mask_shapes(&masked) {
        Cow::Borrowed(_) => masked,
        Cow::Owned(owned) => Cow::Owned(owned),
    }
}

/// Every string inside a JSON value passed through [`mask`]: for reports that
/// cross a boundary as data (the agent's answers) rather than as printed text.
pub fn mask_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let Cow::Owned(masked) = mask(text) {
                *text = masked;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_json),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(mask_json),
        _ => {}
    }
}

/// Where a value that follows a secret name ends: at blanks, quotes, a
/// backslash (a JSON escape) and the separators of lists and query strings.
fn value_end(text: &str, from: usize) -> usize {
    let mut chars = text[from..].char_indices();
    while let Some((at, c)) = chars.next() {
        if c == '\\' {
            // An escaped character (`\"` in JSON, `\\` in a shell word) is part
            // of the value: stopping there would show its rest.
            chars.next();
            continue;
        }
        if c.is_whitespace() || "\"',;&}])<>".contains(c) {
            return from + at;
        }
    }
    text.len()
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// The shape rules: URL userinfo, and `name=value` / `name: value` where the
/// name is a secret key (JVM `-D` options, env lines, query strings, YAML and
/// JSON fields).
fn mask_shapes(text: &str) -> Cow<'_, str> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    // `scheme://user:password@host`: the password, or a lone user part (a token).
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let authority_start = search + found + 3;
        let authority_end = text[authority_start..]
            .find(|c: char| c.is_whitespace() || "/?#\"<>\\".contains(c))
            .map_or(text.len(), |n| authority_start + n);
        let authority = &text[authority_start..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            let secret_start = userinfo.find(':').map_or(0, |colon| colon + 1);
            if secret_start < userinfo.len() && userinfo[secret_start..] != *MASK {
                spans.push((authority_start + secret_start, authority_start + at));
            }
        }
        search = authority_end.max(authority_start);
    }
    // `name=value`, `name: value`, `"name": "value"`.
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let c = bytes[index];
        if c != b'=' && c != b':' {
            index += 1;
            continue;
        }
        // The name before it, past one closing quote.
        let mut name_end = index;
        if name_end > 0 && matches!(bytes[name_end - 1], b'"' | b'\'') {
            name_end -= 1;
        }
        let name_start = text[..name_end]
            .char_indices()
            .rev()
            .find(|&(_, c)| !is_name_char(c))
            .map_or(0, |(at, c)| at + c.len_utf8());
        let name = &text[name_start..name_end];
        let mut value_start = index + 1;
        if c == b':' {
            // `name: value` needs the blank; `host:port` and `://` are not names.
            if bytes.get(value_start) != Some(&b' ') {
                index += 1;
                continue;
            }
        }
        while bytes.get(value_start) == Some(&b' ') {
            value_start += 1;
        }
        // A file name in a path (`…/secret.key: Permission denied`) names no value.
        let in_path = text[..name_start].ends_with('/');
        if name.is_empty() || in_path || !is_secret_key(name.trim_start_matches('-')) {
            index += 1;
            continue;
        }
        let quoted = matches!(bytes.get(value_start), Some(b'"' | b'\''));
        if quoted {
            value_start += 1;
        }
        let end = value_end(text, value_start);
        if end > value_start && text[value_start..end] != *MASK {
            spans.push((value_start, end));
        }
        index = end.max(index + 1);
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    // Spans may overlap (a URL inside a secret's value): merge them.
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Cow::Owned(mask_spans(text, &mut merged))
}

/// Replaces the given byte spans of `text` with [`MASK`]; spans must not overlap.
pub fn mask_spans(text: &str, spans: &mut [(usize, usize)]) -> String {
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut position = 0;
    for &(start, end) in spans.iter() {
        if start < position || end < start || end > text.len() {
            continue;
        }
        out.push_str(&text[position..start]);
        out.push_str(MASK);
        position = end;
    }
    out.push_str(&text[position..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_parse_error_never_shows_a_secret_or_its_tag() {
        for text in [
            "journal.password: !!int hunter2\n",
            "journal.password: !!int 'hunter2'\n",
            "mq.sasl.password: \"hunter2\"\nbroken: [\n",
            "s3.main.secretKey: hunter2 # the key\nbroken: {\n",
        ] {
            let error = crate::directives::parse_mapping(text, std::path::Path::new("/x.yml"))
                .unwrap_err()
                .to_string();
            assert!(!error.contains("hunter2"), "{text:?}: {error}");
        }
        assert_eq!(
            mask_secret_values(
                "user: admin\npassword: !!str s3cr3t\n",
                "bad !!str s3cr3t near admin"
            ),
            "bad *** near admin"
        );
    }

    #[test]
    fn secret_keys() {
        for key in [
            "journal.password",
            "mq.sasl.password",
            "auth.openId.clientSecret",
            "s3.backup.secretKey",
            "s3.main.accessKey",
            "DB_PASSWORD",
            "ldap.bindPassword",
            "api.token",
            "auth.credentials.user",
            "tls.private_key",
            "X-API-KEY",
            "AWS_ACCESS_KEY_ID",
            "db/passwd",
            // Masking a policy's number is the price of a rule without exceptions.
            "passwordPolicy.minLength",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "journal.user",
            "db.name",
            "s3.main.bucket",
            "keyStore",
            "privateRepo",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn shapes_are_masked_without_knowing_the_value() {
        for (text, want) in [
            (
                "journal.server: https://elastic:Pa55word@es:9200/x",
                "journal.server: https://elastic:***@es:9200/x",
            ),
            (
                "git https://ghp_abcdef@github.com/x",
                "git https://***@github.com/x",
            ),
            ("'https://u:it's;ok@h/'", "'https://u:***@h/'"),
            (
                "JAVA_OPTS=\"-Xmx2g -Djavax.net.ssl.trustStorePassword=changeit -Dfoo=bar\"",
                "JAVA_OPTS=\"-Xmx2g -Djavax.net.ssl.trustStorePassword=*** -Dfoo=bar\"",
            ),
            (
                "export DB_PASSWORD='s3cr3t-value'",
                "export DB_PASSWORD='***'",
            ),
            (
                "{\"apiKey\": \"abc123\", \"user\": \"bob\"}",
                "{\"apiKey\": \"***\", \"user\": \"bob\"}",
            ),
            (
                "+journal.password: hunter22 # set by hand",
                "+journal.password: *** # set by hand",
            ),
            ("GET /x?token=abcdef&page=2", "GET /x?token=***&page=2"),
        ] {
            assert_eq!(mask(text), want, "{text}");
        }
        for plain in [
            "listen 127.0.0.1:8080; server_name a.example:443",
            "journal.server: http://es:9200",
            "db.name: cmw",
            "journal.password: ***",
            "error: /etc/x.yml:3: the password is missing",
            "cannot read /srv/db/marshaller/secret.bin: Permission denied (os error 13)",
        ] {
            assert_eq!(mask(plain), plain);
        }
    }

    #[test]
    fn numbers_stay_and_escapes_do_not_cut_a_value_short() {
        // A secret-named number is masked next to its key, never in counts.
        remember_yaml("auth:\n  tokenLifetime: 360017\n");
        assert_eq!(mask("\"bytes\": 13600171"), "\"bytes\": 13600171");
        assert_eq!(mask("tokenLifetime: 360017"), "tokenLifetime: ***");
        assert_eq!(
            mask("{\"password\": \"ab\\\"cdefgh\"}"),
            "{\"password\": \"***\"}"
        );
        assert_eq!(
            mask("-Djournal.password=p\\w0rd -Dx=y"),
            "-Djournal.password=*** -Dx=y"
        );
    }

    #[test]
    fn values_read_from_configs_are_masked_wherever_they_show() {
        remember_yaml(
            "defaults:\n  pw: &pw Zq-yaml-alias-1\njournal:\n  password: *pw\n\
             mq: {sasl: {password: \"Zq flow 2\"}}\nauth.credentials:\n  - Zq-list-3\n\
             s3.main.secretKey: |\n  Zq-block-4\n  Zq-block-5\n",
        );
        remember_env("# comment\nexport API_TOKEN=\"Zq-env-6\"\nUSER=bob\n");
        remember_xml(
            "<beans><bean><property name=\"sslKeyStorePassword\" value=\"Zq-xml-7\"/>\
             <property name=\"trustPassword\"><value>Zq-xml-8</value></property>\
             <property name=\"name\" value=\"Zq-not-a-secret\"/></bean></beans>",
        );
        let printed = "alias Zq-yaml-alias-1, flow Zq flow 2, list Zq-list-3, \
             block Zq-block-4 Zq-block-5, env Zq-env-6, xml Zq-xml-7 Zq-xml-8, Zq-not-a-secret";
        let masked = mask(printed);
        assert_eq!(
            masked,
            "alias ***, flow ***, list ***, block *** ***, env ***, xml *** ***, Zq-not-a-secret"
        );
        // In JSON, a value with quotes or backslashes is escaped: masked too.
        remember("Zq\"quote\\9");
        let json = serde_json::to_string(&"say Zq\"quote\\9").unwrap();
        assert_eq!(mask(&json), "\"say ***\"");
        // Too short to mask everywhere; its key still masks it.
        remember("abc");
        assert_eq!(mask("abc token=abc"), "abc token=***");
    }

    #[test]
    fn masking() {
        assert_eq!(
            mask_spans("a: x\nb: yy\n", &mut [(8, 10), (3, 4)]),
            "a: ***\nb: ***\n"
        );
        assert_eq!(shown("journal.password", Some("x")).as_deref(), Some(MASK));
        assert_eq!(shown("db.name", Some("x")).as_deref(), Some("x"));
    }

    /// A distinct secret: a prefix no other test prints, then arbitrary characters
    /// (quotes, backslashes, blanks, Cyrillic) that YAML, JSON and XML must escape.
    fn secret_value() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]{6}[A-Za-z0-9 \"'\\\\$%&<>!?#:=,;пароль-]{0,12}[A-Za-z0-9]{2}"
            .prop_map(|tail| format!("Zs{tail}"))
    }

    fn xml_escaped(value: &str) -> String {
        value
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }

    proptest! {
        /// The oracle is the secret itself: once its file is read, no printed
        /// form of any text holding it — plain, inside JSON, in a diff — shows it.
        #[test]
        fn a_secret_read_from_any_config_never_appears_in_output(
            secret in secret_value(),
            shape in 0..8usize,
            noise in "[a-z .:=/\n]{0,40}",
        ) {
            let quoted = serde_json::to_string(&secret).unwrap();
            let (file, text) = match shape {
                0 => ("i.yml", format!("journal.password: {quoted}\n")),
                1 => ("i.yml", format!("journal:\n  sasl:\n    password: {quoted}\n")),
                2 => ("i.yml", format!("mq: {{sasl: {{password: {quoted}}}}}\n")),
                3 => ("i.yml", format!("base: &b {quoted}\napi:\n  token: *b\n")),
                4 => ("i.yml", format!("auth.credentials:\n  - {quoted}\n")),
                5 => ("env", format!("export DB_PASSWORD={}\n", shell_quoted(&secret))),
                6 => ("Ignite.config", format!(
                    "<beans><bean><property name=\"sslKeyStorePassword\" value=\"{}\"/></bean></beans>",
                    xml_escaped(&secret))),
                _ => ("Ignite.config", format!(
                    "<beans><property name=\"password\"><value>{}</value></property></beans>",
                    xml_escaped(&secret))),
            };
            remember_config(file, &text);
            for printed in [
                format!("{noise}{secret}{noise}"),
                serde_json::to_string(&format!("{noise}{secret}")).unwrap(),
                serde_json::to_string_pretty(&serde_json::json!({"diff": format!("+{noise}{secret}\n")})).unwrap(),
            ] {
                let masked = mask(&printed);
                prop_assert!(!masked.contains(&secret), "{masked}");
            }
        }

        /// Shapes need no reading first: a URL's password and a JVM option.
        #[test]
        fn secrets_in_urls_and_jvm_options_never_appear(
            secret in "Zu[A-Za-z0-9._~!$*+%-]{4,16}",
            name in r"(javax\.net\.ssl\.keyStorePassword|db\.password|app\.secretKey|api_token)",
        ) {
            for printed in [
                format!("journal.server: https://elastic:{secret}@es:9200"),
                format!("JAVA_OPTS=\"-Xms1g -D{name}={secret} -Dx=y\""),
                serde_json::to_string(&format!("-D{name}={secret}")).unwrap(),
            ] {
                let masked = mask(&printed);
                prop_assert!(!masked.contains(&secret), "{masked}");
                prop_assert!(masked.contains(MASK), "{masked}");
            }
        }

        /// Masking never panics, and text with no secret name, URL or
        /// remembered value comes back unchanged.
        #[test]
        fn masking_leaves_innocent_text_alone(text in "[a-z0-9 .,/\n-]{0,80}") {
            prop_assert_eq!(mask(&text), text.as_str());
        }
    }

    fn shell_quoted(value: &str) -> String {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}
