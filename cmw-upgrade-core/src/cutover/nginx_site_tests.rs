use super::*;
use proptest::prelude::*;

const SITE: &str = "upstream cmw_backend {\r\n    server 10.0.0.5:8080 weight=2;   # the old server\r\n    server 10.0.0.7:8080 backup;\r\n}\r\nserver {\r\n    listen 80;\r\n    location / {\r\n        proxy_pass http://10.0.0.5:8080;  # direct\r\n        proxy_set_header Host $host;\r\n    }\r\n    location /api/ { proxy_pass \"http://10.0.0.5:8080/api/\"; }\r\n    location /other/ {\r\n        proxy_pass http://cmw_backend;\r\n    }\r\n}\r\n";

fn endpoint(text: &str) -> Endpoint {
    Endpoint::parse(text).unwrap()
}

#[test]
fn endpoints_parse_and_show() {
    assert_eq!(endpoint("10.0.0.5:8080").to_string(), "10.0.0.5:8080");
    assert_eq!(endpoint("[fd00::5]:80").host, "fd00::5");
    assert_eq!(endpoint("[fd00::5]:80").to_string(), "[fd00::5]:80");
    assert_eq!(endpoint("cmw-old.example.com:80").port, 80);
    for bad in ["10.0.0.5", "fd00::5:80", "a b:80", ":80", "x:0", "x:http"] {
        assert!(Endpoint::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn finds_every_upstream_address() {
    let places = upstream_addresses("cmw", SITE).unwrap();
    let shown: Vec<String> = places.iter().map(AddressPlace::describe).collect();
    assert_eq!(
        shown,
        [
            "upstream cmw_backend server 10.0.0.5:8080 (line 2)",
            "upstream cmw_backend server 10.0.0.7:8080 (line 3)",
            "proxy_pass 10.0.0.5:8080 (line 8)",
            "proxy_pass 10.0.0.5:8080 (line 11)",
            "proxy_pass cmw_backend:80 (line 13)",
        ]
    );
    assert_eq!(&SITE[places[2].start..places[2].end], "10.0.0.5:8080");
    assert_eq!(places[3].uri, "/api/");
}

#[test]
fn the_swap_changes_only_the_address_bytes() {
    let out = swap_address(
        "cmw",
        SITE,
        &endpoint("10.0.0.5:8080"),
        &endpoint("10.0.0.6:8080"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(out, SITE.replace("10.0.0.5:8080", "10.0.0.6:8080"));
    // Switched already: nothing to do; and back restores every byte.
    assert_eq!(
        swap_address(
            "cmw",
            &out,
            &endpoint("10.0.0.5:8080"),
            &endpoint("10.0.0.6:8080")
        )
        .unwrap(),
        None
    );
    let back = swap_address(
        "cmw",
        &out,
        &endpoint("10.0.0.6:8080"),
        &endpoint("10.0.0.5:8080"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(back, SITE);
    // A default port matches its written-out form.
    let bare = "server { location / { proxy_pass http://old.example/; } }";
    assert_eq!(
        swap_address(
            "s",
            bare,
            &endpoint("old.example:80"),
            &endpoint("10.0.0.6:8080")
        )
        .unwrap(),
        Some("server { location / { proxy_pass http://10.0.0.6:8080/; } }".to_owned())
    );
}

#[test]
fn an_address_not_there_names_what_is() {
    let error = swap_address(
        "cmw",
        SITE,
        &endpoint("10.0.0.9:8080"),
        &endpoint("10.0.0.6:8080"),
    )
    .unwrap_err();
    assert!(
        error.contains("no upstream address 10.0.0.9:8080")
            && error.contains("proxy_pass 10.0.0.5:8080 (line 8)"),
        "{error}"
    );
    let error = swap_address(
        "cmw",
        "server { listen 80; }",
        &endpoint("a:1"),
        &endpoint("b:1"),
    )
    .unwrap_err();
    assert!(
        error.contains("no upstream address (no `proxy_pass"),
        "{error}"
    );
}

fn how() -> ResolverDriven {
    ResolverDriven {
        name: "cmw-backend.example.test".into(),
        resolver: "127.0.0.1:5353".into(),
        valid: 1,
    }
}

#[test]
fn the_resolver_driven_rewrite_puts_the_name_before_each_proxy_pass() {
    let site = "server {\n    listen 80;\n    location / {\n        proxy_pass http://10.0.0.5:8080/;  # the old\n        proxy_set_header Host $host;\n    }\n    location /api/ { proxy_pass http://10.0.0.5:8080; }\n}\n";
    let out = resolver_driven("cmw", site, &endpoint("10.0.0.5:8080"), &how())
        .unwrap()
        .unwrap();
    assert_eq!(
        out,
        "server {\n    listen 80;\n    location / {\n        resolver 127.0.0.1:5353 valid=1s;\n        set $cmw_upgrade_upstream cmw-backend.example.test;\n        proxy_pass http://$cmw_upgrade_upstream:8080;  # the old\n        proxy_set_header Host $host;\n    }\n    location /api/ { resolver 127.0.0.1:5353 valid=1s; set $cmw_upgrade_upstream cmw-backend.example.test; proxy_pass http://$cmw_upgrade_upstream:8080; }\n}\n"
    );
    // Prepared already: nothing more.
    assert_eq!(
        resolver_driven("cmw", &out, &endpoint("10.0.0.5:8080"), &how()).unwrap(),
        None
    );
}

#[test]
fn the_resolver_driven_rewrite_refuses_what_would_change_meaning() {
    let error = resolver_driven("cmw", SITE, &endpoint("10.0.0.7:8080"), &how()).unwrap_err();
    assert!(
        error.contains("upstream block") && error.contains("--reload"),
        "{error}"
    );
    let uri = "server { location /a/ { proxy_pass http://10.0.0.5:8080/b/; } }";
    let error = resolver_driven("cmw", uri, &endpoint("10.0.0.5:8080"), &how()).unwrap_err();
    assert!(error.contains("\"/b/\""), "{error}");
    let mut bad = how();
    bad.name = "x; evil".into();
    assert!(
        resolver_driven("cmw", uri, &endpoint("10.0.0.5:8080"), &bad)
            .unwrap_err()
            .contains("not a DNS name")
    );
}

fn blank() -> impl Strategy<Value = String> {
    prop::sample::select(vec![" ", "  ", "\t", " \t "]).prop_map(str::to_owned)
}

/// A site of random other lines around proxy_pass and upstream server lines
/// naming the old address or others.
fn site() -> impl Strategy<Value = (String, usize)> {
    let other = prop::sample::select(vec![
        "listen 80;",
        "# proxy_pass http://10.0.0.5:8080; in a comment",
        "",
        "proxy_set_header Host $host;",
        "client_max_body_size 10m; # big",
        "add_header X-Note \"10.0.0.5:8080 stays\";",
    ]);
    (
        prop::collection::vec(other, 0..4),
        prop::collection::vec((blank(), any::<bool>(), any::<bool>(), blank(), 0..3usize), 1..5),
        any::<bool>(),
    )
        .prop_map(|(others, passes, crlf)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = format!("upstream be {{{eol}");
            let mut old_count = 0;
            let mut locations = String::new();
            for (index, (indent, in_upstream, quoted, gap, which)) in passes.into_iter().enumerate() {
                let address = ["10.0.0.5:8080", "10.0.0.7:8080", "10.0.0.8:81"][which];
                old_count += usize::from(which == 0);
                if in_upstream {
                    text.push_str(&format!("{indent}server{gap}{address} weight=1;{gap}# s{index}{eol}"));
                } else {
                    let target = if quoted {
                        format!("\"http://{address}\"")
                    } else {
                        format!("http://{address}/")
                    };
                    locations.push_str(&format!(
                        "{indent}location /l{index}/ {{{eol}{indent}{indent}proxy_pass{gap}{target};{eol}{indent}}}{eol}"
                    ));
                }
            }
            text.push_str(&format!("}}{eol}server {{{eol}"));
            for other in &others {
                text.push_str(&format!("    {other}{eol}"));
            }
            text.push_str(&locations);
            text.push_str(&format!("}}{eol}"));
            (text, old_count)
        })
}

proptest! {
    #[test]
    fn only_the_old_address_changes((text, old_count) in site()) {
        let old = endpoint("10.0.0.5:8080");
        let new = endpoint("10.0.0.6:9090");
        let result = swap_address("site", &text, &old, &new);
        if old_count == 0 {
            prop_assert!(result.is_err());
            return Ok(());
        }
        let out = result.unwrap().unwrap();
        let before = upstream_addresses("site", &text).unwrap();
        let after = upstream_addresses("site", &out).unwrap();
        prop_assert_eq!(before.len(), after.len());
        for (was, now) in before.iter().zip(&after) {
            let expected = if old.is(&was.host, was.port) { (new.host.as_str(), new.port) } else { (was.host.as_str(), was.port) };
            prop_assert_eq!((now.host.as_str(), now.port), expected);
            prop_assert_eq!(was.line, now.line);
        }
        // Outside the address spans every byte is as it was: cutting the
        // spans out of both texts leaves the same bytes.
        let cut = |text: &str, places: &[AddressPlace]| {
            let mut rest = String::new();
            let mut copied = 0;
            for place in places {
                rest.push_str(&text[copied..place.start]);
                copied = place.end;
            }
            rest.push_str(&text[copied..]);
            rest
        };
        prop_assert_eq!(cut(&text, &before), cut(&out, &after));
        // And back: the same bytes.
        prop_assert_eq!(swap_address("site", &out, &new, &old).unwrap().unwrap(), text);
    }
}
