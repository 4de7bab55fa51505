//! The parser and the migration, on hand-written sites and generated ones.

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

/// A new version's typical site: one block proxying to the new backend.
const NEW_SITE: &str = "# Comindware 5.1 site\nserver {\n    listen 80;\n    server_name localhost;\n\n    location / {\n        proxy_pass http://127.0.0.1:8080;\n        proxy_set_header Host $host;\n    }\n    location ~ \\.php$ {\n        proxy_pass http://127.0.0.1:8081;\n    }\n}\n";

fn migrate(old: &str, new: &str) -> NginxMigration {
    let migration = migrate_nginx("site", old, new).unwrap();
    let again = migrate_nginx("site", old, &migration.text).unwrap();
    assert_eq!(again.text, migration.text, "a second run changes nothing");
    assert!(
        again.changes.iter().all(|c| c.action == ChangeAction::Kept),
        "{:?}",
        again.changes
    );
    migration
}

fn parse_error_line(result: Result<impl std::fmt::Debug>) -> (String, usize) {
    match result.unwrap_err() {
        Error::ConfigParse {
            path,
            line: Some(line),
            message,
        } => (format!("{}: {message}", path.display()), line),
        other => panic!("not a parse error with a line: {other:?}"),
    }
}

#[test]
fn a_backslash_before_any_character_is_read_as_nginx_does() {
    // A backslash before a multi-byte character (UTF-8 or a stand-in byte) is no escape.
    for text in ["a \"\\я\";", "a '\\\u{10FF90}';", "a \\я;", "a \"x\\"] {
        let _ = parse_nginx("site", text);
    }
    let tree = parse_nginx("site", "a \"\\я\" \\#b \"c\\\"d\" 'e\\'f' \\t;").unwrap();
    assert_eq!(tree[0].args, ["\\я", "\\#b", "c\"d", "e'f", "\t"]);
    assert_eq!(
        tree[0].raw_args,
        ["\"\\я\"", "\\#b", "\"c\\\"d\"", "'e\\'f'", "\\t"]
    );
    // Escaped delimiters stay inside the word; `}` never ends a word.
    let tree = parse_nginx("site", "location /\\{\\;\\}\\ #\\ ab {}\nreturn 200 a}b;\n").unwrap();
    assert_eq!(tree[0].raw_args, ["/\\{\\;\\}\\ #\\ ab"]);
    assert_eq!(tree[1].args, ["200", "a}b"]);
}

#[test]
fn regex_locations_keep_their_text() {
    let tree = parse_nginx("site", NEW_SITE).unwrap();
    let location = &tree[0].block.as_ref().unwrap()[3];
    assert_eq!(location.raw_args, ["~", "\\.php$"]);
    assert_eq!(location.args, ["~", "\\.php$"]);
    assert_eq!(location.line, 10);
    let quoted = parse_nginx("site", "location ~ \"^/a\\\\b;\" {}").unwrap();
    assert_eq!(quoted[0].raw_args, ["~", "\"^/a\\\\b;\""]);
    assert_eq!(quoted[0].args, ["~", "^/a\\b;"]);
}

#[test]
fn quotes_must_be_followed_by_a_space_as_in_nginx() {
    let (_, line) = parse_error_line(parse_nginx("site", "a\n\"b\"c;"));
    assert_eq!(line, 2);
    assert!(parse_nginx("site", "if ($a = \"b\") {}").is_ok());
}

#[test]
fn lua_blocks_are_refused_with_their_name_and_line() {
    let text = "server {\n    listen 80;\n    location / {\n        content_by_lua_block {\n            ngx.say(\"}\")\n        }\n    }\n}\n";
    for result in [
        parse_nginx("site", text).map(|_| ()),
        migrate_nginx("site", text, NEW_SITE).map(|_| ()),
        migrate_nginx("site", NEW_SITE, text).map(|_| ()),
    ] {
        let (message, line) = parse_error_line(result);
        assert_eq!(line, 4, "{message}");
        assert!(message.contains("content_by_lua_block"), "{message}");
        assert!(message.contains("by hand"), "{message}");
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = "a{".repeat(10_000);
    let (message, _) = parse_error_line(parse_nginx("site", &deep));
    assert!(message.contains("nested"), "{message}");
}

#[test]
fn legacy_ssl_on_moves_onto_the_carried_listens() {
    let old = "server {\n    listen 443;\n    listen [::]:443 default_server; # v6\n    ssl on;\n    server_name cmw.example.org;\n    ssl_certificate /etc/ssl/cmw.crt;\n    location / {\n        proxy_pass http://127.0.0.1:5000;\n    }\n}\n";
    let migration = migrate(old, NEW_SITE);
    let text = &migration.text;
    assert!(
        text.contains("    listen 443 ssl;\n    listen [::]:443 default_server ssl;\n    server_name cmw.example.org;\n"),
        "{text}"
    );
    assert!(!text.contains("ssl on"), "{text}");
    assert!(!text.contains("listen 80;"), "{text}");
    assert!(
        text.contains("    ssl_certificate /etc/ssl/cmw.crt;\n    location / {"),
        "{text}"
    );
}

#[test]
fn server_includes_are_carried_beside_the_new_ones() {
    let old = "server {\n    listen 80;\n    include /etc/nginx/snippets/cmw-headers.conf;\n    include snippets/common.conf;\n    location / {\n        proxy_pass http://127.0.0.1:5000;\n    }\n}\n";
    let new = NEW_SITE.replace(
        "    server_name localhost;\n",
        "    server_name localhost;\n    include snippets/common.conf;\n",
    );
    let migration = migrate(old, &new);
    assert!(
        migration
            .text
            .contains("    include snippets/common.conf;\n\n    include /etc/nginx/snippets/cmw-headers.conf;\n    location / {"),
        "{}",
        migration.text
    );
    assert_eq!(migration.text.matches("snippets/common.conf").count(), 1);
    assert!(migration
        .warnings
        .iter()
        .any(|w| w.contains("cmw-headers.conf") && w.contains("old site:3")));
}

#[test]
fn location_tuning_goes_into_the_location_written_the_same_way() {
    let old = "server {\n    listen 80;\n    location / {\n        proxy_pass http://127.0.0.1:5000;\n        proxy_read_timeout 600s;\n        client_max_body_size 1g;\n        proxy_set_header Host $http_host;\n        proxy_set_header X-Forwarded-Proto https;\n        proxy_buffering off;\n        allow 10.0.0.0/8;\n        deny all;\n    }\n    location ~ \\.php$ {\n        proxy_send_timeout 90s;\n    }\n    location ~ \\.PHP$ {\n        proxy_send_timeout 91s;\n    }\n    location /reports/ {\n        proxy_read_timeout 3600s;\n        proxy_pass http://127.0.0.1:5000;\n    }\n}\n";
    let migration = migrate(old, NEW_SITE);
    let text = &migration.text;
    assert!(
        text.contains("    location / {\n        proxy_pass http://127.0.0.1:8080;\n        proxy_set_header Host $host;\n        proxy_read_timeout 600s;\n        client_max_body_size 1g;\n        proxy_buffering off;\n        proxy_set_header X-Forwarded-Proto https;\n        allow 10.0.0.0/8;\n        deny all;\n    }\n"),
        "{text}"
    );
    assert!(
        text.contains("    location ~ \\.php$ {\n        proxy_pass http://127.0.0.1:8081;\n        proxy_send_timeout 90s;\n    }\n"),
        "{text}"
    );
    assert!(
        !text.contains("91s") && !text.contains("3600s") && !text.contains("5000"),
        "{text}"
    );
    let warned = |needle: &str| migration.warnings.iter().any(|w| w.contains(needle));
    assert!(
        warned("old site:16: `location ~ \\.PHP$` sets `proxy_send_timeout 91s;`;"),
        "{:?}",
        migration.warnings
    );
    assert!(
        warned("old site:19: `location /reports/`"),
        "{:?}",
        migration.warnings
    );
    // The new version's own Host header stays, and the admin is told.
    assert!(
        warned("proxy_set_header Host $host;"),
        "{:?}",
        migration.warnings
    );
}

#[test]
fn a_redirect_block_stays_a_redirect_whatever_its_position() {
    // The redirect comes first in the old file and in the new one it comes second.
    let old = "server {\n    listen 80;\n    server_name cmw.example.org;\n    return 301 https://$host$request_uri;\n}\nserver {\n    listen 443 ssl;\n    server_name cmw.example.org;\n    ssl_certificate /etc/ssl/cmw.crt;\n    client_max_body_size 1g;\n    location / {\n        proxy_pass http://127.0.0.1:5000;\n    }\n}\n";
    let new = "server {\n    listen 443 ssl;\n    server_name localhost;\n    location / {\n        proxy_pass http://127.0.0.1:8080;\n    }\n}\nserver {\n    listen 80;\n    server_name localhost;\n    return 301 https://$host$request_uri;\n}\n";
    let migration = migrate(old, new);
    let text = &migration.text;
    let (proxying, redirect) = text.split_once("}\nserver {").unwrap();
    assert!(
        proxying.contains("ssl_certificate /etc/ssl/cmw.crt;")
            && proxying.contains("client_max_body_size 1g;"),
        "{text}"
    );
    assert!(
        redirect.contains("listen 80;") && redirect.contains("server_name cmw.example.org;"),
        "{text}"
    );
    assert!(
        !redirect.contains("ssl_") && !redirect.contains("client_max_body_size"),
        "{text}"
    );
    assert!(migration.warnings.is_empty(), "{:?}", migration.warnings);

    // A new file with only a proxying block on 80 never takes the redirect's role.
    let migration = migrate(old, NEW_SITE);
    let (site, appended) = migration.text.split_once("# --- server blocks").unwrap();
    assert!(
        site.contains("listen 443 ssl;") && !site.contains("return 301"),
        "{site}"
    );
    assert!(appended.contains("return 301"), "{appended}");
}

#[test]
fn a_block_proxying_through_an_included_snippet_is_the_site() {
    let old = "server {\n    listen 80;\n    server_name cmw.example.org;\n    location / {\n        include snippets/cmw-proxy.conf;\n    }\n}\n";
    let migration = migrate(old, NEW_SITE);
    assert!(
        migration
            .text
            .contains("    server_name cmw.example.org;\n")
            && !migration.text.contains("# --- server blocks"),
        "{}",
        migration.text
    );
}

#[test]
fn two_blocks_of_one_role_are_refused_naming_both() {
    let old = "server {\n    listen 80;\n    server_name a.example.org;\n    location / { proxy_pass http://127.0.0.1:5000; }\n}\n\nserver {\n    listen 80;\n    server_name b.example.org;\n    location / { proxy_pass http://127.0.0.1:5001; }\n}\n";
    let (message, line) = parse_error_line(migrate_nginx("site", old, NEW_SITE));
    assert_eq!(line, 1, "{message}");
    assert!(
        message.starts_with("old site: two server blocks fit the role of site:2 (proxying"),
        "{message}"
    );
    assert!(message.contains("old site:1 (proxying server block, listen 80, server_name a.example.org) and old site:7 (proxying"), "{message}");
    // server_name decides when it can; the other old proxying block then has no place.
    let new = NEW_SITE.replace("server_name localhost;", "server_name b.example.org;");
    let result = migrate_nginx("site", old, &new);
    let (message, line) = parse_error_line(result);
    assert_eq!(line, 1, "{message}");
    assert!(
        message.contains("old site:1")
            && message.contains("no server block of the new file takes its role"),
        "{message}"
    );
    // Two new blocks of one role and no listen or name to tell them apart: refused the other way round.
    let old =
        "server {\n    listen 8443 ssl;\n    location / { proxy_pass http://127.0.0.1:5000; }\n}\n";
    let new = format!("{NEW_SITE}{}", NEW_SITE.replace("listen 80;", "listen 81;"));
    let (message, line) = parse_error_line(migrate_nginx("site", old, &new));
    assert_eq!(line, 2, "{message}");
    assert!(message.starts_with("site: two server blocks fit the role of old site:1 (proxying server block, listen 8443 ssl)"), "{message}");
    assert!(
        message.contains("site:2 (proxying") && message.contains("site:15 (proxying"),
        "{message}"
    );
}

#[test]
fn bytes_outside_the_edits_stay_whatever_the_encoding() {
    // cp1251 comments (as stand-ins), CRLF, tabs.
    let new_bytes = b"# \xD1\xE0\xE9\xF2 5.1\r\nserver {\r\n\tlisten 80;\t# \xEF\xEE\xF0\xF2\r\n\tserver_name localhost;\r\n\r\n\tlocation / {\r\n\t\tproxy_pass http://127.0.0.1:8080;\r\n\t}\r\n}\r\n";
    let old_bytes = b"server {\n    listen 8443 ssl; # \xF1\xF2\xE0\xF0\xFB\xE9\n    server_name cmw.example.org;\n    ssl_certificate /etc/ssl/\xEA.crt;\n    location / {\n        proxy_pass http://127.0.0.1:5000;\n        proxy_read_timeout 600s;\n    }\n}\n";
    let new = crate::config::raw_text::decode("site", new_bytes).unwrap();
    let old = crate::config::raw_text::decode("old site", old_bytes).unwrap();
    let migration = migrate(&old, &new);
    let bytes = crate::config::raw_text::encode(&migration.text);
    assert_eq!(
        bytes,
        b"# \xD1\xE0\xE9\xF2 5.1\r\nserver {\r\n\tlisten 8443 ssl;\t# \xEF\xEE\xF0\xF2\r\n\tserver_name cmw.example.org;\r\n\r\n\tssl_certificate /etc/ssl/\xEA.crt;\r\n\tlocation / {\r\n\t\tproxy_pass http://127.0.0.1:8080;\r\n\t\tproxy_read_timeout 600s;\r\n\t}\r\n}\r\n"
            .to_vec(),
        "{}",
        crate::config::raw_text::printable(&migration.text)
    );
    assert_outside_edits_kept(&new, &migration);
}

/// The oracle for byte preservation: the new text, cut at the reported
/// edits, must be the result cut at the same places.
fn assert_outside_edits_kept(new: &str, migration: &NginxMigration) {
    let mut rebuilt = String::new();
    let mut position = 0;
    for edit in &migration.edits {
        assert!(
            edit.start >= position && edit.end >= edit.start,
            "{:?}",
            migration.edits
        );
        rebuilt.push_str(&new[position..edit.start]);
        rebuilt.push_str(&edit.replacement);
        position = edit.end;
    }
    rebuilt.push_str(&new[position..]);
    assert_eq!(rebuilt, migration.text);
}

mod properties {
    use super::*;
    use crate::config::raw_text;
    use proptest::prelude::*;

    /// A parse error names a line the text has; anything else is a bug.
    fn assert_clean_error(
        error: &Error,
        old: &str,
        new: &str,
    ) -> std::result::Result<(), TestCaseError> {
        let Error::ConfigParse {
            path,
            line,
            message,
        } = error
        else {
            return Err(TestCaseError::fail(format!("not a parse error: {error:?}")));
        };
        let text = if path.to_str() == Some("old site") {
            old
        } else {
            new
        };
        let lines = text.matches('\n').count() + 1;
        prop_assert!(
            line.is_some_and(|line| (1..=lines).contains(&line)),
            "{error} (the text has {lines} lines)"
        );
        prop_assert!(!message.contains("please report"), "{error}");
        Ok(())
    }

    /// Pieces nginx syntax is made of, raw bytes among them, so arbitrary
    /// input reaches deep into the lexer and the migration.
    fn site_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"server".to_vec()),
            Just(b"location".to_vec()),
            Just(b"listen".to_vec()),
            Just(b" 443 ssl".to_vec()),
            Just(b"ssl on".to_vec()),
            Just(b"proxy_pass http://h".to_vec()),
            Just(b"return 301 x".to_vec()),
            Just(b"include a".to_vec()),
            Just(b"_by_lua_block".to_vec()),
            Just(b"proxy_read_timeout 1s".to_vec()),
            Just("я".as_bytes().to_vec()),
            prop::sample::select(b" \t\r\n;{}\"'\\$#~)(".to_vec()).prop_map(|b| vec![b]),
            (0x80u8..).prop_map(|b| vec![b]),
            any::<u8>().prop_map(|b| vec![b]),
        ];
        prop::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
    }

    #[derive(Debug, Clone)]
    enum Style {
        Bare,
        Double,
        Single,
    }

    #[derive(Debug, Clone)]
    struct Node {
        name: String,
        args: Vec<(String, Style)>,
        children: Option<Vec<Node>>,
    }

    fn render_arg((value, style): &(String, Style)) -> String {
        let bare_safe = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_alphanumeric() || "/._:-~^*=".contains(c));
        match style {
            Style::Bare if bare_safe => value.clone(),
            Style::Single => format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'")),
            // nginx reads `\t` and `\n` back as a tab and a line feed.
            _ => format!(
                "\"{}\"",
                value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\t', "\\t")
                    .replace('\n', "\\n")
            ),
        }
    }

    fn node() -> impl Strategy<Value = Node> {
        let value = "[a-z0-9/._:~^*=я\u{10FF90} ;{}\"'\\\\$#\t\n]{0,8}";
        let style = prop_oneof![Just(Style::Bare), Just(Style::Double), Just(Style::Single)];
        let leaf = ("[a-z_]{1,12}", prop::collection::vec((value, style), 0..4)).prop_map(
            |(name, args)| Node {
                name,
                args,
                children: None,
            },
        );
        leaf.prop_recursive(4, 40, 6, |inner| {
            (
                "[a-z_]{1,12}",
                prop::collection::vec(("[a-z0-9/.~]{1,6}", Just(Style::Bare)), 0..3),
                prop::collection::vec(inner, 0..6),
            )
                .prop_map(|(name, args, children)| Node {
                    name,
                    args,
                    children: Some(children),
                })
        })
    }

    fn separator() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            " ",
            "\t",
            "\n",
            "\r\n",
            "  ",
            " # c;}{\"'\n",
            "\n\t\t",
        ])
    }

    /// Renders nodes with the given separators (cycled).
    fn render(nodes: &[Node], separators: &[&str], next: &mut usize, out: &mut String) {
        let space = |out: &mut String, next: &mut usize| {
            out.push_str(separators[*next % separators.len()]);
            *next += 1;
        };
        for node in nodes {
            space(out, next);
            out.push_str(&node.name);
            for arg in &node.args {
                space(out, next);
                out.push_str(&render_arg(arg));
            }
            match &node.children {
                None => out.push(';'),
                Some(children) => {
                    space(out, next);
                    out.push('{');
                    render(children, separators, next, out);
                    space(out, next);
                    out.push('}');
                }
            }
        }
    }

    /// A directive tree without spans: what the generator meant and what the parser read.
    #[derive(Debug, PartialEq)]
    struct Tree(String, Vec<String>, Option<Vec<Tree>>);

    fn meant(nodes: &[Node]) -> Vec<Tree> {
        nodes
            .iter()
            .map(|n| {
                Tree(
                    n.name.clone(),
                    n.args.iter().map(|(value, _)| value.clone()).collect(),
                    n.children.as_deref().map(meant),
                )
            })
            .collect()
    }

    fn read(directives: &[Directive]) -> Vec<Tree> {
        directives
            .iter()
            .map(|d| Tree(d.name.clone(), d.args.clone(), d.block.as_deref().map(read)))
            .collect()
    }

    /// Each directive's raw arguments are the rendered ones, and its span starts with its name.
    fn raw_matches(directives: &[Directive], nodes: &[Node], text: &str) -> bool {
        directives.iter().zip(nodes).all(|(d, n)| {
            d.raw_args == n.args.iter().map(render_arg).collect::<Vec<_>>()
                && text[d.start..].starts_with(&n.name)
                && text[..d.end].ends_with(if n.children.is_some() { '}' } else { ';' })
                && raw_matches(
                    d.block.as_deref().unwrap_or_default(),
                    n.children.as_deref().unwrap_or_default(),
                    text,
                )
        })
    }

    /// A defect put into a well-formed text, and the line nginx would name.
    #[derive(Debug, Clone)]
    enum Defect {
        None,
        /// The text stops before the last closing brace.
        Unclosed,
        UnclosedQuote,
        StrayBrace,
        NoSemicolon,
    }

    fn lines_before(text: &str) -> usize {
        text.matches('\n').count() + 1
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Whatever the bytes, parsing and migrating either succeed, keeping
        /// every byte outside the edits, or fail with a line the text has.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in site_bytes()) {
            let Ok(text) = raw_text::decode("site", &bytes) else {
                // Only valid UTF-8 holding stand-in characters is refused before parsing.
                prop_assert!(std::str::from_utf8(&bytes).is_ok_and(raw_text::has_raw_bytes));
                return Ok(());
            };
            match parse_nginx("site", &text) {
                Ok(_) => {}
                Err(error) => assert_clean_error(&error, "", &text)?,
            }
            for (old, new) in [(text.as_str(), NEW_SITE), (NEW_SITE, text.as_str()), (text.as_str(), text.as_str())] {
                match migrate_nginx("site", old, new) {
                    Ok(migration) => {
                        assert_outside_edits_kept(new, &migration);
                        prop_assert!(parse_nginx("site", &migration.text).is_ok());
                        let again = migrate_nginx("site", old, &migration.text).unwrap();
                        prop_assert_eq!(&again.text, &migration.text);
                    }
                    Err(error) => assert_clean_error(&error, old, new)?,
                }
            }
        }

        /// A generated tree rendered to text reads back as that tree; with one
        /// defect put in, the parser fails on the line where the defect is.
        #[test]
        fn generated_configs_read_back_as_generated(
            nodes in prop::collection::vec(node(), 0..6),
            separators in prop::collection::vec(separator(), 1..8),
            defect in prop_oneof![
                4 => Just(Defect::None),
                1 => Just(Defect::Unclosed),
                1 => Just(Defect::UnclosedQuote),
                1 => Just(Defect::StrayBrace),
                1 => Just(Defect::NoSemicolon),
            ],
        ) {
            let mut text = String::new();
            render(&nodes, &separators, &mut 0, &mut text);
            let expected_error_line = match defect {
                Defect::None => None,
                Defect::Unclosed => match text.rfind('}') {
                    // Only a block's brace ends a text: the last `}` closes the last block.
                    Some(at) if nodes.last().is_some_and(|n| n.children.is_some()) => {
                        text.truncate(at);
                        Some(lines_before(&text))
                    }
                    _ => None,
                },
                Defect::UnclosedQuote => {
                    text.push_str("\nname \"unclosed");
                    Some(lines_before(&text))
                }
                Defect::StrayBrace => {
                    text.push_str("\n}");
                    Some(lines_before(&text))
                }
                Defect::NoSemicolon => {
                    text.push_str("\nname value\n");
                    Some(lines_before(&text))
                }
            };
            match (parse_nginx("site", &text), expected_error_line) {
                (Ok(directives), None) => {
                    prop_assert_eq!(read(&directives), meant(&nodes));
                    prop_assert!(raw_matches(&directives, &nodes, &text), "{:?}", directives);
                }
                (Err(Error::ConfigParse { line: Some(line), .. }), Some(expected)) => {
                    prop_assert_eq!(line, expected, "{}", text);
                }
                (result, expected) => {
                    prop_assert!(false, "{text:?}: {result:?}, expected an error on line {expected:?}");
                }
            }
        }
    }
}

mod generated_sites {
    use super::*;
    use proptest::prelude::*;

    /// An old site as admins have them: a proxying block with TLS (on the
    /// listen or by the legacy `ssl on;`), maybe a redirect block before or
    /// after it, and tuned locations.
    #[derive(Debug, Clone)]
    struct OldSite {
        port: u16,
        legacy_ssl: bool,
        name: &'static str,
        body_size: Option<&'static str>,
        include: bool,
        /// Per location (of `LOCATIONS`): a read timeout in seconds and an extra header.
        locations: Vec<(bool, Option<u16>, bool)>,
        redirect: Option<bool>,
    }

    const LOCATIONS: [&str; 4] = ["/", "~ \\.php$", "/api/", "= /health"];
    /// The locations the new version's site has.
    const NEW_LOCATIONS: [&str; 2] = ["/", "~ \\.php$"];

    fn old_site() -> impl Strategy<Value = OldSite> {
        (
            prop::sample::select(vec![443u16, 8443]),
            any::<bool>(),
            prop::sample::select(vec![
                "cmw.example.org",
                "cmw.example.org www.cmw.example.org",
                "_",
            ]),
            prop::option::of(prop::sample::select(vec!["300m", "1g", "\"2g\""])),
            any::<bool>(),
            prop::collection::vec(
                (any::<bool>(), prop::option::of(1u16..4000), any::<bool>()),
                4,
            ),
            prop::option::of(any::<bool>()),
        )
            .prop_map(
                |(port, legacy_ssl, name, body_size, include, mut locations, redirect)| {
                    // The site always proxies `/`.
                    locations[0].0 = true;
                    OldSite {
                        port,
                        legacy_ssl,
                        name,
                        body_size,
                        include,
                        locations,
                        redirect,
                    }
                },
            )
    }

    fn render_old(site: &OldSite) -> String {
        let mut main = format!(
            "server {{\n    listen {}{};\n",
            site.port,
            if site.legacy_ssl { "" } else { " ssl" }
        );
        if site.legacy_ssl {
            main.push_str("    ssl on;\n");
        }
        main.push_str(&format!(
            "    server_name {};\n    ssl_certificate /etc/ssl/cmw.crt;\n",
            site.name
        ));
        if let Some(size) = site.body_size {
            main.push_str(&format!("    client_max_body_size {size};\n"));
        }
        if site.include {
            main.push_str("    include snippets/cmw-headers.conf;\n");
        }
        for (path, (present, timeout, header)) in LOCATIONS.iter().zip(&site.locations) {
            if !present {
                continue;
            }
            main.push_str(&format!(
                "    location {path} {{\n        proxy_pass http://127.0.0.1:5000;\n"
            ));
            if let Some(seconds) = timeout {
                main.push_str(&format!("        proxy_read_timeout {seconds}s;\n"));
            }
            if *header {
                main.push_str("        proxy_set_header X-Site old;\n");
            }
            main.push_str("    }\n");
        }
        main.push_str("}\n");
        let redirect = "server {\n    listen 80;\n    server_name cmw.example.org;\n    return 301 https://$host$request_uri;\n}\n";
        match site.redirect {
            Some(true) => format!("{redirect}{main}"),
            Some(false) => format!("{main}{redirect}"),
            None => main,
        }
    }

    /// The new version's site in one of several writing styles.
    fn render_new(crlf: bool, tabs: bool, own_redirect: bool) -> String {
        let mut text = String::from("# new version\nserver {\n    listen 80;\n    server_name localhost;\n    client_max_body_size 100m;\n\n");
        for path in NEW_LOCATIONS {
            text.push_str(&format!("    location {path} {{\n        proxy_pass http://127.0.0.1:8080;\n        proxy_set_header Host $host;\n    }}\n"));
        }
        text.push_str("}\n");
        if own_redirect {
            text.push_str(
                "server {\n    listen 8000;\n    return 301 https://$host$request_uri;\n}\n",
            );
        }
        if tabs {
            text = text.replace("    ", "\t");
        }
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        text
    }

    fn directive_args(block: &[Directive], name: &str) -> Vec<Vec<String>> {
        block
            .iter()
            .filter(|d| d.name == name)
            .map(|d| d.raw_args.clone())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The oracle is the generator's own description of the old site.
        #[test]
        fn the_site_lands_in_the_proxying_block_and_the_redirect_stays_one(
            site in old_site(),
            crlf in any::<bool>(),
            tabs in any::<bool>(),
            own_redirect in any::<bool>(),
        ) {
            let old = render_old(&site);
            let new = render_new(crlf, tabs, own_redirect);
            let migration = migrate_nginx("site", &old, &new).unwrap();
            assert_outside_edits_kept(&new, &migration);
            let again = migrate_nginx("site", &old, &migration.text).unwrap();
            prop_assert_eq!(&again.text, &migration.text);

            let tree = parse_nginx("site", &migration.text).unwrap();
            let blocks: Vec<&[Directive]> = tree.iter().map(|d| d.block.as_deref().unwrap()).collect();
            let proxying: Vec<&[Directive]> = blocks.iter().copied().filter(|b| b.iter().any(|d| d.name == "location")).collect();
            prop_assert_eq!(proxying.len(), 1);
            let main = proxying[0];
            let port = site.port.to_string();
            prop_assert_eq!(directive_args(main, "listen"), vec![vec![port, "ssl".to_owned()]]);
            prop_assert!(main.iter().all(|d| d.name != "ssl"));
            let names: Vec<String> = site.name.split(' ').map(str::to_owned).collect();
            prop_assert_eq!(directive_args(main, "server_name"), vec![names]);
            let body = site.body_size.unwrap_or("100m").to_owned();
            prop_assert_eq!(directive_args(main, "client_max_body_size"), vec![vec![body]]);
            prop_assert_eq!(directive_args(main, "include").len(), usize::from(site.include));
            for (path, (present, timeout, header)) in LOCATIONS.iter().zip(&site.locations) {
                let location = main.iter().find(|d| d.name == "location" && d.raw_args_text() == *path);
                let carried = *present && (timeout.is_some() || *header);
                match location {
                    Some(location) => {
                        let block = location.block.as_deref().unwrap();
                        let want_timeout: Vec<Vec<String>> = timeout
                            .filter(|_| *present)
                            .map(|s| vec![format!("{s}s")])
                            .into_iter()
                            .collect();
                        prop_assert_eq!(directive_args(block, "proxy_read_timeout"), want_timeout);
                        prop_assert_eq!(directive_args(block, "proxy_set_header").len(), 1 + usize::from(*present && *header));
                        prop_assert_eq!(directive_args(block, "proxy_pass"), vec![vec!["http://127.0.0.1:8080".to_owned()]]);
                    }
                    None => {
                        let warned = migration.warnings.iter().any(|w| w.contains(&format!("`location {path}` sets")));
                        prop_assert_eq!(warned, carried, "{:?}", migration.warnings);
                    }
                }
            }
            // Every other block redirects and holds none of the site's proxy settings.
            for block in blocks.iter().filter(|b| !b.iter().any(|d| d.name == "location")) {
                prop_assert!(block.iter().any(|d| d.name == "return"));
                prop_assert!(block.iter().all(|d| !d.name.starts_with("ssl") && d.name != "client_max_body_size" && d.name != "include"));
            }
            // The old redirect takes the new version's redirect block when it has one, else is appended.
            let redirects = blocks.len() - 1;
            prop_assert_eq!(redirects, usize::from(own_redirect || site.redirect.is_some()));
            if site.redirect.is_some() {
                let redirect = blocks.iter().find(|b| !b.iter().any(|d| d.name == "location")).unwrap();
                prop_assert_eq!(directive_args(redirect, "listen"), vec![vec!["80".to_owned()]]);
                prop_assert_eq!(directive_args(redirect, "server_name"), vec![vec!["cmw.example.org".to_owned()]]);
            }
        }
    }
}
