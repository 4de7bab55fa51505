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
