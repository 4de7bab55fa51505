//! The nginx site parser and migration on real-world configs
//! (`tests/corpus/nginx/`, see its SOURCE.md): each one parses or is refused
//! with a line; each one with `server` blocks, as the old site against a
//! typical new version's site, is migrated — the result parses, holds the old
//! site's directives, keeps every byte outside the edits, and passes the real
//! `nginx -t` whenever the old blocks did — or refused with a message that
//! names a line; and migrated onto itself it comes back byte for byte.

// It reads the repository's corpus and writes nginx's test files in a temp folder, not a server.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::{Path, PathBuf};

use cmw_upgrade_core::config::nginx::{
    is_site_directive, migrate_nginx, parse_nginx, Directive, NginxMigration,
};
use cmw_upgrade_core::config::nginx_context::test_site_in_context;
use cmw_upgrade_core::config::raw_text;
use cmw_upgrade_core::executor::LocalExecutor;
use cmw_upgrade_core::Error;

/// A new version's site as the platform's packages write it.
const NEW_SITE: &str = "# Comindware Platform 5.1 site\nserver {\n    listen 80;\n    server_name localhost;\n    client_max_body_size 100m;\n\n    location / {\n        proxy_pass http://127.0.0.1:8080;\n        proxy_set_header Host $host;\n    }\n}\n";

fn corpus_files(folder: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            corpus_files(&path, found);
        } else if !matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("LICENSE" | "NOTICE" | "SOURCE.md")
        ) {
            found.push(path);
        }
    }
}

fn corpus() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/nginx");
    let mut files = Vec::new();
    corpus_files(&root, &mut files);
    files.sort();
    assert!(files.len() >= 40, "the corpus is at {}", root.display());
    files
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            let text = raw_text::decode(&name, &fs::read(&path).unwrap()).unwrap();
            (name, text)
        })
        .collect()
}

/// The line of a clean refusal, checked to exist in the file it names.
fn refusal_line(error: &Error, files: &[(&str, &str)]) -> usize {
    let Error::ConfigParse {
        path,
        line: Some(line),
        message,
    } = error
    else {
        panic!("not a refusal naming a line: {error:?}");
    };
    let (_, text) = files
        .iter()
        .find(|(name, _)| Path::new(name) == path)
        .unwrap_or_else(|| panic!("{error}: names no file of the migration"));
    assert!(
        (1..=text.matches('\n').count() + 1).contains(line),
        "{error}: no such line"
    );
    assert!(!message.contains("please report"), "{error}");
    *line
}

fn server_blocks(directives: &[Directive]) -> Vec<&Directive> {
    let mut found = Vec::new();
    for directive in directives {
        match &directive.block {
            Some(_) if directive.name == "server" => found.push(directive),
            Some(block) => found.extend(server_blocks(block)),
            None => {}
        }
    }
    found
}

/// Every server-level site directive and include of the old file, as the
/// result must hold it: raw arguments, with `ssl` on the listens of a block
/// that had the legacy `ssl on;`.
fn site_directives(tree: &[Directive]) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for server in server_blocks(tree) {
        let block = server.block.as_deref().unwrap_or_default();
        let legacy_ssl = block.iter().any(|d| d.name == "ssl" && d.args == ["on"]);
        for directive in block {
            if !is_site_directive(&directive.name) && directive.name != "include" {
                continue;
            }
            let mut raw = directive.raw_args.clone();
            if directive.name == "listen"
                && legacy_ssl
                && !directive.args[1..].contains(&"ssl".to_owned())
            {
                raw.push("ssl".to_owned());
            }
            found.push((directive.name.clone(), raw));
        }
    }
    found
}

fn assert_outside_edits_kept(new: &str, migration: &NginxMigration) {
    let mut rebuilt = String::new();
    let mut position = 0;
    for edit in &migration.edits {
        assert!(edit.start >= position, "{:?}", migration.edits);
        rebuilt.push_str(&new[position..edit.start]);
        rebuilt.push_str(&edit.replacement);
        position = edit.end;
    }
    rebuilt.push_str(&new[position..]);
    assert_eq!(rebuilt, migration.text);
}

/// The new server's nginx configuration as Debian ships it, with the map
/// the platform's sites use.
const DEBIAN_NGINX_CONF: &str = "user www-data;\nworker_processes auto;\npid /run/nginx.pid;\n\
events { worker_connections 768; }\nhttp {\n    include /etc/nginx/mime.types;\n    \
default_type application/octet-stream;\n    access_log /var/log/nginx/access.log;\n    \
error_log /var/log/nginx/error.log;\n    \
map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n    \
include /etc/nginx/conf.d/*.conf;\n    include /etc/nginx/sites-enabled/*;\n}\n";

const SITE: &str = "/etc/nginx/sites-available/comindwareprod";

/// Whether the real nginx accepts `site` as a server would load it: through
/// the same in-context test `config migrate` runs, on a root holding Debian's
/// nginx configuration with the site enabled.
fn nginx_accepts(site: &str) -> Result<(), String> {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/nginx");
    for folder in ["sites-available", "sites-enabled", "conf.d"] {
        fs::create_dir_all(etc.join(folder)).unwrap();
    }
    for folder in ["var/log/nginx", "run"] {
        fs::create_dir_all(root.path().join(folder)).unwrap();
    }
    fs::write(etc.join("nginx.conf"), DEBIAN_NGINX_CONF).unwrap();
    fs::write(etc.join("mime.types"), "types { text/html html; }\n").unwrap();
    fs::write(
        root.path().join(SITE.trim_start_matches('/')),
        raw_text::encode(site),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../sites-available/comindwareprod",
        etc.join("sites-enabled/comindwareprod"),
    )
    .unwrap();
    test_site_in_context(root.path(), SITE, site, &LocalExecutor::new("/"))
        .map_err(|error| error.to_string())
}

#[derive(Default, Debug)]
struct Tally {
    parsed: Vec<String>,
    refused_to_parse: Vec<String>,
    migrated: Vec<String>,
    refused_to_migrate: Vec<String>,
    checked_by_nginx: Vec<String>,
}

#[test]
fn every_corpus_config_parses_or_is_refused_and_migrates_or_is_refused() {
    let mut tally = Tally::default();
    for (name, text) in corpus() {
        let tree = match parse_nginx(&name, &text) {
            Ok(tree) => {
                tally.parsed.push(name.clone());
                tree
            }
            Err(error) => {
                refusal_line(&error, &[(&name, &text)]);
                tally.refused_to_parse.push(format!("{error}"));
                continue;
            }
        };
        // Onto itself: nothing to carry, not a byte changed.
        let same = migrate_nginx("site", &text, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(same.text, text, "{name}");
        assert!(same.edits.is_empty(), "{name}: {:?}", same.edits);

        if server_blocks(&tree).is_empty() {
            continue;
        }
        let migration = match migrate_nginx("site", &text, NEW_SITE) {
            Ok(migration) => migration,
            Err(error) => {
                refusal_line(&error, &[("old site", &text), ("site", NEW_SITE)]);
                tally.refused_to_migrate.push(format!("{name}: {error}"));
                continue;
            }
        };
        let result = parse_nginx("site", &migration.text).unwrap_or_else(|e| {
            panic!("{name}: the result does not parse: {e}\n{}", migration.text)
        });
        let held = site_directives(&result);
        for wanted in site_directives(&tree) {
            assert!(
                held.contains(&wanted),
                "{name}: {wanted:?} missing from\n{}",
                migration.text
            );
        }
        assert!(
            server_blocks(&result)
                .iter()
                .flat_map(|s| s.block.iter().flatten())
                .all(|d| d.name != "ssl"),
            "{name}: `ssl` written\n{}",
            migration.text
        );
        assert_outside_edits_kept(NEW_SITE, &migration);
        let again = migrate_nginx("site", &text, &migration.text).unwrap();
        assert_eq!(
            again.text, migration.text,
            "{name}: a second run changes the site"
        );

        // Differential check with the real nginx: when the old file's server
        // blocks alone pass `nginx -t`, the migrated site must pass too.
        let old_blocks: String = server_blocks(&tree)
            .iter()
            .map(|s| format!("{}\n", &text[s.start..s.end]))
            .collect();
        if nginx_accepts(&old_blocks).is_ok() {
            if let Err(nginx_says) = nginx_accepts(&migration.text) {
                panic!(
                    "{name}: nginx rejects the migrated site:\n{nginx_says}\n{}",
                    migration.text
                );
            }
            tally.checked_by_nginx.push(name.clone());
        }
        tally.migrated.push(name);
    }
    eprintln!("{tally:#?}");
    // What the corpus holds on purpose, so the test cannot pass by refusing everything.
    for expected in [
        "own/legacy-ssl-on-crlf-cp1251.conf",
        "own/letsencrypt-redirect.conf",
        "own/upstream-tabs-include.conf",
        "nginx-tests/proxy.conf",
        "crossplane/simple/nginx.conf",
    ] {
        assert!(
            tally.migrated.iter().any(|n| n == expected),
            "{expected}: {tally:#?}"
        );
    }
    for (expected, why) in [
        (
            "crossplane/lua-block-simple/nginx.conf:2:",
            "init_by_lua_block",
        ),
        (
            "crossplane/missing-semicolon/broken-above.conf:5:",
            "expecting \";\"",
        ),
        ("own/lua-auth.conf:5:", "access_by_lua_block"),
    ] {
        assert!(
            tally
                .refused_to_parse
                .iter()
                .any(|e| e.starts_with(expected) && e.contains(why)),
            "{expected}: {tally:#?}"
        );
    }
    assert!(
        tally
            .refused_to_migrate
            .iter()
            .any(|e| e.starts_with("own/two-sites-one-port.conf")
                && e.contains("old site:2 (proxying")
                && e.contains("old site:10 (proxying")),
        "{tally:#?}"
    );
    assert!(tally.checked_by_nginx.len() >= 10, "{tally:#?}");
}

#[test]
fn a_legacy_tls_site_lands_on_443_with_ssl_and_its_redirect_stays_a_redirect() {
    let (_, old) = corpus()
        .into_iter()
        .find(|(name, _)| name == "own/legacy-ssl-on-crlf-cp1251.conf")
        .unwrap();
    let migration = migrate_nginx("site", &old, NEW_SITE).unwrap();
    let text = &migration.text;
    let (site, appended) = text.split_once("# --- server blocks").unwrap();
    assert!(
        site.contains("    listen 443 ssl;\n    server_name cmw.example.org;\n"),
        "{text}"
    );
    assert!(site.contains("        proxy_read_timeout 600s;\n        proxy_set_header X-Forwarded-Proto https;\n    }"), "{text}");
    assert!(
        !site.contains("return 301") && !site.contains("listen 80"),
        "{text}"
    );
    assert!(
        appended.contains("listen 80;\r\n    server_name cmw.example.org;\r\n    return 301"),
        "{text}"
    );
    assert!(!appended.contains("ssl"), "{text}");
    // The certificate line's cp1251 comment is not carried: comments after a
    // directive stay in the old file; the directive itself is.
    assert!(
        site.contains("ssl_certificate /etc/ssl/certs/cmw.crt;\n"),
        "{text}"
    );
}
