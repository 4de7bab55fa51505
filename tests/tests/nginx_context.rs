//! `nginx -t` on a candidate site in the new server's own nginx configuration:
//! the real nginx against realistic Debian and RHEL trees under a root, a
//! hostile tree, and this machine's nginx paths never touched.
//!
//! The trees name their pid, log and temp paths with a per-test tag (not the
//! stock `/run/nginx.pid`), so that "this machine's file was never created" is
//! checked on names nothing else on the machine uses.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use cmw_upgrade_core::config::migrate::{apply_migration, plan_migration, MigrateOptions};
use cmw_upgrade_core::config::nginx_context::{context_warnings, test_site_in_context};
use cmw_upgrade_core::config::ChangeAction;
use cmw_upgrade_core::exec::{CommandOutput, CommandRunner};
use cmw_upgrade_core::executor::LocalExecutor;
use cmw_upgrade_core::{InstanceName, OsFamily};
use cmw_upgrade_tests::{write_new_server, write_server, ServerSpec};

const DEB_SITE: &str = "/etc/nginx/sites-available/comindwareprod";
const RPM_SITE: &str = "/etc/nginx/conf.d/comindwareprod";

/// A throwaway self-signed certificate and its key (P-256), for `nginx -t` to load.
const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIBijCCATGgAwIBAgIUeQ6F9orQ44ZdRw1zcBfndNHDZ50wCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPY213LmV4YW1wbGUub3JnMCAXDTI2MTEyODA4NTIzMFoYDzIx
MjYxMTA0MDg1MjMwWjAaMRgwFgYDVQQDDA9jbXcuZXhhbXBsZS5vcmcwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAASj1JvAcURM3VmcbqKFSfpMsf1z8Aqgro6HoQXh
fDFo2EYHG18gl8HU4UkIbVwZjxGqqbJYp6dkwebTnhjq1IHUo1MwUTAdBgNVHQ4E
FgQUVzP+hBD6EyMzxG1kPGoA9KCyLC4wHwYDVR0jBBgwFoAUVzP+hBD6EyMzxG1k
PGoA9KCyLC4wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiBtLMIf
J4U3IetjTHw45O/CRlvqj906dequYlApTsIckQIgMSN9YaMXzS1D0n5HtgVb/xoK
DC+g71mYxLCkSFPHCEU=
-----END CERTIFICATE-----
";
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfF8eWAcNpEE0V/zi
bqS9vIp+9TjtNbIT01p+3N7B3bChRANCAASj1JvAcURM3VmcbqKFSfpMsf1z8Aqg
ro6HoQXhfDFo2EYHG18gl8HU4UkIbVwZjxGqqbJYp6dkwebTnhjq1IHU
-----END PRIVATE KEY-----
";

/// The map that gives sites `$connection_upgrade` for websockets.
const WEBSOCKET_MAP: &str =
    "map $http_upgrade $connection_upgrade {\n    default upgrade;\n    ''      close;\n}\n";

/// The folders nginx's package makes for its pid, logs and temp files.
const NGINX_FOLDERS: [&str; 3] = ["/run", "/var/log/nginx", "/var/lib/nginx"];

fn write(root: &Path, server_path: &str, text: &str) {
    let path = root.join(server_path.trim_start_matches('/'));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn folder(root: &Path, server_path: &str) {
    fs::create_dir_all(root.join(server_path.trim_start_matches('/'))).unwrap();
}

fn link(root: &Path, server_path: &str, target: &str) {
    let path = root.join(server_path.trim_start_matches('/'));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    symlink(target, path).unwrap();
}

/// A tag for this test's pid, log and temp names.
fn tag(test: &str) -> String {
    format!("cmwctx-{}-{test}", std::process::id())
}

/// Every path below `folder` (links not followed), relative to it.
fn listing(folder: &Path) -> BTreeSet<String> {
    fn walk(top: &Path, folder: &Path, found: &mut BTreeSet<String>) {
        let Ok(entries) = fs::read_dir(folder) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            found.insert(path.strip_prefix(top).unwrap().display().to_string());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                walk(top, &path, found);
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(folder, folder, &mut found);
    found
}

/// This machine's paths a tagged tree names: none may exist after a test.
fn host_paths(tag: &str) -> Vec<String> {
    vec![
        format!("/run/{tag}.pid"),
        format!("/var/log/nginx/{tag}.access.log"),
        format!("/var/log/nginx/{tag}.error.log"),
        format!("/var/log/nginx/{tag}-cmw.access.log"),
        format!("/var/lib/nginx/{tag}-body"),
        format!("/var/lib/nginx/{tag}-proxy"),
    ]
}

fn assert_host_untouched(tag: &str) {
    for path in host_paths(tag) {
        assert!(
            fs::symlink_metadata(&path).is_err(),
            "{path} was created on this machine"
        );
    }
}

/// The real nginx; after each run, what it left in the folder it was given as
/// its prefix (`-p`), the only folder it may write in.
#[derive(Default)]
struct Watching {
    created: RefCell<BTreeSet<String>>,
}

impl CommandRunner for Watching {
    fn run(&self, argv: &[String]) -> cmw_upgrade_core::Result<CommandOutput> {
        let output = LocalExecutor::new("/").run(argv);
        if let Some(at) = argv.iter().position(|arg| arg == "-p") {
            *self.created.borrow_mut() = listing(Path::new(&argv[at + 1]));
        }
        output
    }
}

impl Watching {
    fn assert_created(&self, paths: &[String]) {
        let created = self.created.borrow();
        for path in paths {
            assert!(created.contains(path), "{path} not in {created:#?}");
        }
    }
}

/// A root laid out by `tree` with this test's tag, and what it holds.
fn laid_out(test: &str, tree: fn(&Path, &str)) -> (String, tempfile::TempDir, BTreeSet<String>) {
    let tag = tag(test);
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &tag);
    let before = listing(dir.path());
    (tag, dir, before)
}

/// Debian's stock layout: modules-enabled, conf.d, sites-enabled links into
/// sites-available, snippets, proxy_params; `$connection_upgrade` from a map in conf.d.
fn debian_tree(root: &Path, tag: &str) {
    write(
        root,
        "/etc/nginx/nginx.conf",
        &format!(
            "user www-data;\nworker_processes auto;\npid /run/{tag}.pid;\n\
             include /etc/nginx/modules-enabled/*.conf;\n\n\
             events {{\n\tworker_connections 768;\n}}\n\n\
             http {{\n\tsendfile on;\n\ttcp_nopush on;\n\ttypes_hash_max_size 2048;\n\
             \tinclude /etc/nginx/mime.types;\n\tdefault_type application/octet-stream;\n\n\
             \tssl_protocols TLSv1.2 TLSv1.3;\n\tssl_prefer_server_ciphers on;\n\n\
             \taccess_log /var/log/nginx/{tag}.access.log;\n\terror_log /var/log/nginx/{tag}.error.log;\n\
             \tclient_body_temp_path /var/lib/nginx/{tag}-body;\n\tproxy_temp_path /var/lib/nginx/{tag}-proxy;\n\n\
             \tgzip on;\n\n\tinclude /etc/nginx/conf.d/*.conf;\n\tinclude /etc/nginx/sites-enabled/*;\n}}\n"
        ),
    );
    write(
        root,
        "/etc/nginx/mime.types",
        "types {\n    text/html html htm;\n    text/css css;\n    application/javascript js;\n    application/json json;\n}\n",
    );
    write(
        root,
        "/etc/nginx/modules-enabled/50-mod-http-geoip2.conf",
        "load_module modules/ngx_http_geoip2_module.so;\n",
    );
    write(root, "/etc/nginx/conf.d/websocket.conf", WEBSOCKET_MAP);
    write(
        root,
        "/etc/nginx/proxy_params",
        "proxy_set_header Host $http_host;\nproxy_set_header X-Real-IP $remote_addr;\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\nproxy_set_header X-Forwarded-Proto $scheme;\n",
    );
    write(
        root,
        "/etc/nginx/snippets/ssl.conf",
        "ssl_certificate /etc/ssl/certs/cmw.pem;\nssl_certificate_key /etc/ssl/private/cmw.key;\n\
         ssl_session_cache shared:SSL:10m;\n",
    );
    write(root, "/etc/ssl/certs/cmw.pem", CERTIFICATE);
    write(root, "/etc/ssl/private/cmw.key", KEY);
    write(
        root,
        "/etc/nginx/sites-available/default",
        "server {\n\tlisten 80 default_server;\n\tlisten [::]:80 default_server;\n\troot /var/www/html;\n\
         \tserver_name _;\n\tlocation / {\n\t\ttry_files $uri $uri/ =404;\n\t}\n}\n",
    );
    link(
        root,
        "/etc/nginx/sites-enabled/default",
        "/etc/nginx/sites-available/default",
    );
    write(
        root,
        DEB_SITE,
        "server {\n    listen 80;\n    server_name localhost;\n}\n",
    );
    link(root, "/etc/nginx/sites-enabled/comindwareprod", DEB_SITE);
    for path in NGINX_FOLDERS {
        folder(root, path);
    }
}

/// The new version's site as migrated: TLS from a snippet, proxy_params, websockets.
fn site(tag: &str) -> String {
    format!(
        "server {{\n    listen 443 ssl;\n    server_name cmw.example.org;\n    include snippets/ssl.conf;\n\
         \x20   client_max_body_size 300m;\n    access_log /var/log/nginx/{tag}-cmw.access.log;\n\n\
         \x20   location / {{\n        include proxy_params;\n        proxy_http_version 1.1;\n\
         \x20       proxy_set_header Upgrade $http_upgrade;\n        proxy_set_header Connection $connection_upgrade;\n\
         \x20       proxy_pass http://127.0.0.1:8080;\n    }}\n}}\n"
    )
}

#[test]
fn a_debian_site_passes_in_its_servers_context_and_fails_alone() {
    let (tag, dir, before) = laid_out("deb", debian_tree);
    let root = dir.path();
    let runner = Watching::default();
    test_site_in_context(root, DEB_SITE, &site(&tag), &runner).unwrap();
    assert_eq!(listing(root), before, "nothing under the root changed");
    assert_host_untouched(&tag);
    // What nginx created went into its private copy, at the server's paths.
    runner.assert_created(&[
        format!("tree/run/{tag}.pid"),
        format!("tree/var/log/nginx/{tag}.access.log"),
        format!("tree/var/log/nginx/{tag}.error.log"),
        format!("tree/var/log/nginx/{tag}-cmw.access.log"),
        format!("tree/var/lib/nginx/{tag}-body"),
        "tree/etc/nginx/sites-enabled/comindwareprod".to_owned(),
        "tree/etc/ssl/private/cmw.key".to_owned(),
        // Left to nginx's compiled-in /var/lib/nginx/fastcgi, it would create that.
        "fastcgi".to_owned(),
    ]);
    let created = runner.created.borrow().clone();
    assert!(
        !created.iter().any(|path| path.ends_with(".so")),
        "{created:#?}"
    );
    let warnings = context_warnings(root, DEB_SITE, &site(&tag)).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("/etc/nginx/modules-enabled/50-mod-http-geoip2.conf:1")
            // Under --root a module is never loaded: it is code from another tree.
            && warnings[0].contains("ngx_http_geoip2_module.so: not loaded"),
        "{warnings:#?}"
    );

    // The old way: the site alone, where `$connection_upgrade` means nothing.
    fs::remove_file(root.join("etc/nginx/nginx.conf")).unwrap();
    let before = listing(root);
    let error = test_site_in_context(root, DEB_SITE, &site(&tag), &runner)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("unknown \"connection_upgrade\" variable") && error.contains("nginx -t"),
        "{error}"
    );
    assert!(!error.contains("cmw-upgrade-nginx"), "{error}");
    assert!(!error.contains(&*root.to_string_lossy()), "{error}");
    assert_eq!(listing(root), before);
    assert_host_untouched(&tag);
    let warnings = context_warnings(root, DEB_SITE, &site(&tag)).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("tested the site alone") && w.contains("/etc/nginx/nginx.conf")),
        "{warnings:#?}"
    );
}

#[test]
fn a_missing_certificate_key_fails_in_context_named_by_its_server_path() {
    let tag = tag("nokey");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    debian_tree(root, &tag);
    fs::remove_file(root.join("etc/ssl/private/cmw.key")).unwrap();
    let error = test_site_in_context(root, DEB_SITE, &site(&tag), &LocalExecutor::new("/"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"/etc/ssl/private/cmw.key\"") && error.contains("nothing was written"),
        "{error}"
    );
    assert!(!error.contains("cmw-upgrade-nginx"), "{error}");
    assert_host_untouched(&tag);
}

/// RHEL's stock nginx.conf: conf.d/*.conf, modules from /usr/share/nginx,
/// a default server inside nginx.conf, no temp paths set.
fn rhel_tree(root: &Path, tag: &str) {
    write(
        root,
        "/etc/nginx/nginx.conf",
        &format!(
            "user nginx;\nworker_processes auto;\nerror_log /var/log/nginx/{tag}.error.log;\npid /run/{tag}.pid;\n\n\
             include /usr/share/nginx/modules/*.conf;\n\nevents {{\n    worker_connections 1024;\n}}\n\n\
             http {{\n    log_format  main  '$remote_addr - $remote_user [$time_local] \"$request\" '\n\
             \x20                     '$status $body_bytes_sent \"$http_referer\" '\n\
             \x20                     '\"$http_user_agent\" \"$http_x_forwarded_for\"';\n\n\
             \x20   access_log  /var/log/nginx/{tag}.access.log  main;\n\n    sendfile            on;\n\
             \x20   keepalive_timeout   65;\n    types_hash_max_size 4096;\n\n\
             \x20   include             /etc/nginx/mime.types;\n    default_type        application/octet-stream;\n\n\
             \x20   include /etc/nginx/conf.d/*.conf;\n\n    server {{\n        listen       80;\n\
             \x20       listen       [::]:80;\n        server_name  _;\n        root         /usr/share/nginx/html;\n\n\
             \x20       include /etc/nginx/default.d/*.conf;\n    }}\n}}\n"
        ),
    );
    write(
        root,
        "/etc/nginx/mime.types",
        "types {\n    text/html html;\n    application/json json;\n}\n",
    );
    write(
        root,
        "/usr/share/nginx/modules/mod-stream.conf",
        "load_module \"/usr/lib64/nginx/modules/ngx_stream_module.so\";\n",
    );
    write(root, "/etc/nginx/conf.d/websocket.conf", WEBSOCKET_MAP);
    write(
        root,
        "/etc/nginx/conf.d/status.conf",
        "server {\n    listen 127.0.0.1:8081 default_server;\n    location /status { stub_status; }\n}\n",
    );
    folder(root, "/etc/nginx/default.d");
    for path in NGINX_FOLDERS {
        folder(root, path);
    }
}

/// A site without TLS for the RHEL tree, using the map from conf.d.
fn plain_site(tag: &str, listen: &str) -> String {
    format!(
        "server {{\n    listen {listen};\n    server_name cmw.example.org;\n    access_log /var/log/nginx/{tag}-cmw.access.log;\n\
         \x20   location / {{\n        proxy_set_header Connection $connection_upgrade;\n        proxy_pass http://127.0.0.1:8080;\n    }}\n}}\n"
    )
}

#[test]
fn a_rhel_site_outside_conf_d_globs_is_tested_in_http_and_said_so() {
    let (tag, dir, before) = laid_out("rpm", rhel_tree);
    let root = dir.path();
    let runner = Watching::default();
    let candidate = plain_site(&tag, "443");
    // conf.d/comindwareprod has no `.conf`: nginx.conf's glob does not take it.
    // It passes though `user nginx;` names an account this machine lacks (dropped).
    test_site_in_context(root, RPM_SITE, &candidate, &runner).unwrap();
    runner.assert_created(&[
        format!("tree/var/log/nginx/{tag}-cmw.access.log"),
        "tree/etc/nginx/conf.d/comindwareprod".to_owned(),
        "body".to_owned(),
        "proxy".to_owned(),
        "tree/etc/nginx/conf.d/websocket.conf".to_owned(),
    ]);
    let warnings = context_warnings(root, RPM_SITE, &candidate).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with(RPM_SITE) && w.contains("does not include it")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("/usr/share/nginx/modules/mod-stream.conf:1")),
        "{warnings:#?}"
    );

    // Named `.conf`, the glob takes it: no warning, and a clash with another
    // site of the server fails in context though the site alone is fine.
    let named = "/etc/nginx/conf.d/comindwareprod.conf";
    let warnings = context_warnings(root, named, &candidate).unwrap();
    assert!(
        !warnings.iter().any(|w| w.contains("does not include it")),
        "{warnings:#?}"
    );
    let clashing = plain_site(&tag, "127.0.0.1:8081 default_server");
    let error = test_site_in_context(root, named, &clashing, &runner)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("duplicate default server") && error.contains(named),
        "{error}"
    );
    assert_eq!(listing(root), before);
    assert_host_untouched(&tag);
}

/// A tree whose config points out of the root every way it can: links
/// (absolute, relative, to a folder), `..` in an include, `/etc/passwd`, and
/// pid and log paths climbing out. Outside the root sits a folder whose files
/// would fail the test if read, and which must stay as it is.
#[test]
fn a_hostile_tree_never_leads_outside_the_root() {
    let tag = tag("hostile");
    let outside = tempfile::tempdir().unwrap();
    let outside_path = outside.path().to_string_lossy().into_owned();
    write(
        outside.path(),
        "/evil.conf",
        "this is not nginx config at all\n",
    );
    let outside_before = listing(outside.path());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "/etc/nginx/nginx.conf",
        &format!(
            "pid /run/{tag}.pid;\nevents {{}}\nhttp {{\n    access_log /var/log/nginx/{tag}.access.log;\n\
             \x20   include /etc/nginx/conf.d/*.conf;\n    include /etc/nginx/escape-folder/*.conf;\n\
             \x20   include /etc/nginx/sites-enabled/*;\n}}\n"
        ),
    );
    let climbing = format!("../../../../../../../../..{outside_path}/evil.conf");
    link(
        root,
        "/etc/nginx/conf.d/absolute.conf",
        &format!("{outside_path}/evil.conf"),
    );
    link(root, "/etc/nginx/conf.d/relative.conf", &climbing);
    link(root, "/etc/nginx/escape-folder", &outside_path);
    write(root, DEB_SITE, "server {\n    listen 80;\n}\n");
    link(root, "/etc/nginx/sites-enabled/comindwareprod", DEB_SITE);
    for path in ["/run", "/var/log/nginx"] {
        folder(root, path);
    }
    let candidate = plain_site(&tag, "80").replace("$connection_upgrade", "upgrade");
    let before = listing(root);
    let runner = LocalExecutor::new("/");

    // Inside the root none of the links leads anywhere: nothing read, the site passes.
    test_site_in_context(root, DEB_SITE, &candidate, &runner).unwrap();

    // `..` in an include stops at the root's top: a file the root does not have.
    let main = root.join("etc/nginx/nginx.conf");
    let stock = fs::read_to_string(&main).unwrap();
    fs::write(
        &main,
        stock.replace("http {\n", &format!("http {{\n    include {climbing};\n")),
    )
    .unwrap();
    let error = test_site_in_context(root, DEB_SITE, &candidate, &runner)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("open() \"{outside_path}/evil.conf\" failed"))
            && error.contains("No such file"),
        "{error}"
    );

    // `/etc/passwd` is the root's, not this machine's: missing there, nginx says so.
    fs::write(
        &main,
        stock.replace("events {}", "include /etc/passwd;\nevents {}"),
    )
    .unwrap();
    let error = test_site_in_context(root, DEB_SITE, &candidate, &runner)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("open() \"/etc/passwd\" failed") && error.contains("No such file"),
        "{error}"
    );
    // The root's own is read, refused as nginx config, its content not shown.
    write(
        root,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
    );
    let error = test_site_in_context(root, DEB_SITE, &candidate, &runner)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("/etc/passwd:"), "{error}");
    assert!(!error.contains("root:x"), "{error}");
    fs::remove_file(root.join("etc/passwd")).unwrap();

    // Paths nginx writes, climbing out, land in the copy; the root lacks their
    // folders, so nginx fails there as the server would, and writes nothing outside.
    fs::write(
        &main,
        stock
            .replace(
                &format!("pid /run/{tag}.pid;"),
                &format!("pid ../../../../../../../..{outside_path}/nginx.pid;"),
            )
            .replace(
                &format!("/var/log/nginx/{tag}.access.log"),
                &format!("{outside_path}/access.log"),
            ),
    )
    .unwrap();
    let error = test_site_in_context(root, DEB_SITE, &candidate, &runner)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("\"{outside_path}/")) && error.contains("failed"),
        "{error}"
    );
    assert!(!error.contains("cmw-upgrade-nginx"), "{error}");

    fs::write(&main, stock).unwrap();
    assert_eq!(listing(root), before);
    assert_eq!(listing(outside.path()), outside_before);
    assert_eq!(
        fs::read_to_string(outside.path().join("evil.conf")).unwrap(),
        "this is not nginx config at all\n"
    );
    assert_host_untouched(&tag);
}

#[test]
fn an_include_cycle_is_refused_naming_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "/etc/nginx/nginx.conf",
        "events {}\nhttp {\n    include /etc/nginx/conf.d/*.conf;\n}\n",
    );
    write(
        root,
        "/etc/nginx/conf.d/a.conf",
        "include /etc/nginx/conf.d/b.inc;\n",
    );
    write(root, "/etc/nginx/conf.d/b.inc", "include conf.d/a.conf;\n");
    let error = test_site_in_context(root, DEB_SITE, "server {}\n", &LocalExecutor::new("/"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/etc/nginx/conf.d/a.conf") && error.contains("includes itself"),
        "{error}"
    );
}

const STAMP: &str = "20261128T090000Z";

/// An old 4.7 server and a new 5.0 one with a Debian nginx tree.
fn servers(tag: &str) -> (tempfile::TempDir, tempfile::TempDir) {
    let old = tempfile::tempdir().unwrap();
    write_server(old.path(), &ServerSpec::default()).unwrap();
    let new = tempfile::tempdir().unwrap();
    write_new_server(new.path(), OsFamily::Deb, "prod", "5.0.1234.0", false).unwrap();
    let site = fs::read_to_string(new.path().join(DEB_SITE.trim_start_matches('/'))).unwrap();
    debian_tree(new.path(), tag);
    write(new.path(), DEB_SITE, &site);
    (old, new)
}

#[test]
fn config_migrate_tests_a_migrated_and_a_taken_site_in_context() {
    let tag = tag("migrate");
    let (old, new) = servers(&tag);
    let instance = InstanceName::new("prod").unwrap();
    let options = MigrateOptions {
        stamp: STAMP.to_owned(),
        ..MigrateOptions::default()
    };
    let plan = plan_migration(old.path(), new.path(), &instance, OsFamily::Deb, &options).unwrap();
    assert!(plan.report.errors.is_empty(), "{:#?}", plan.report.errors);
    assert!(
        !plan
            .report
            .warnings
            .iter()
            .any(|w| w.contains("tested the site alone") || w.contains("does not include it")),
        "{:#?}",
        plan.report.warnings
    );
    assert!(plan.report.files.iter().any(|file| file == DEB_SITE));
    apply_migration(&plan, &LocalExecutor::new("/"), STAMP).unwrap();

    // Taken whole, a site nginx rejects is not written: it passed unchecked before.
    let (old, new) = servers(&tag);
    let old_site = old.path().join(DEB_SITE.trim_start_matches('/'));
    let broken = fs::read_to_string(&old_site).unwrap().replace(
        "client_max_body_size 300m;",
        "client_max_body_size 300 megabytes;",
    );
    fs::write(&old_site, broken).unwrap();
    let take = MigrateOptions {
        take: vec![DEB_SITE.to_owned()],
        ..options.clone()
    };
    let before = fs::read_to_string(new.path().join(DEB_SITE.trim_start_matches('/'))).unwrap();
    let plan = plan_migration(old.path(), new.path(), &instance, OsFamily::Deb, &take).unwrap();
    assert!(plan
        .report
        .changes
        .iter()
        .any(|c| c.file == DEB_SITE && c.action == ChangeAction::Taken));
    let error = apply_migration(&plan, &LocalExecutor::new("/"), STAMP)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("nginx -t")
            && error.contains("client_max_body_size")
            && error.contains("/etc/nginx/sites-enabled/comindwareprod"),
        "{error}"
    );
    assert_eq!(
        fs::read_to_string(new.path().join(DEB_SITE.trim_start_matches('/'))).unwrap(),
        before
    );
    // A sound one is taken and written.
    let (old, new) = servers(&tag);
    let plan = plan_migration(old.path(), new.path(), &instance, OsFamily::Deb, &take).unwrap();
    apply_migration(&plan, &LocalExecutor::new("/"), STAMP).unwrap();
    assert_eq!(
        fs::read_to_string(new.path().join(DEB_SITE.trim_start_matches('/'))).unwrap(),
        fs::read_to_string(old.path().join(DEB_SITE.trim_start_matches('/'))).unwrap()
    );
    assert_host_untouched(&tag);
}
