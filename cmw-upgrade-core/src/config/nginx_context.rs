//! Testing a candidate nginx site file with the real `nginx -t` as the new
//! server will load it: inside that server's own nginx configuration.
//!
//! A site tested alone passes or fails for the wrong reasons: it may use a
//! variable a `map` in `conf.d` defines (`$connection_upgrade`), include
//! `snippets/ssl.conf` or `proxy_params`, clash with another site, or name a
//! certificate the server does not have. So the server's `/etc/nginx/nginx.conf`
//! (under `--root`) and everything it includes are copied into a private temp
//! folder, with the candidate in place of the site file wherever nginx.conf
//! includes it, and nginx is pointed at the copy.
//!
//! The server's config is untrusted input, and `nginx -t` both reads and writes
//! files: every path in it is resolved inside the root (links and `..` never
//! leave it) and rewritten to its copy in the temp folder — included files and
//! the files nginx reads (certificates, keys, password files) are copied there;
//! what nginx creates or opens for writing (pid, logs, temp and cache folders)
//! is placed there; globs in `include` are expanded here, inside the root.
//! `user` is dropped (the test need not run as root or know that account) and
//! so is a `load_module` whose module file the root does not hold. nginx's own
//! compiled-in paths (`/run/nginx.pid`, `/var/log/nginx/...`, `/var/lib/nginx/...`)
//! are set into the temp folder when the config leaves them out, so nothing of
//! this machine outside the temp folder is touched. nginx's messages are given
//! back with the server's paths and without secret values.
//!
//! Without an nginx.conf under the root (nginx not installed there yet), the
//! site is tested alone in a minimal `http {}`, and the report says so.

// Writes only inside the private temp folder it creates (the copy nginx tests);
// everything under the root is read through the disk reader.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::nginx::{parse_nginx, Directive};
use super::raw_text;
use super::yaml_merge::apply_edits;
use crate::disk::{canonical_in_root, resolve_in_root, Disk};
use crate::error::{Error, Result};
use crate::exec::CommandRunner;
use crate::paths::{join_default, private_temp_dir};
use crate::secrets::is_secret_key;
use crate::server::{NodeKind, ServerRead};

/// The server's main config file.
pub const MAIN_CONFIG: &str = "/etc/nginx/nginx.conf";

/// The folder relative `include`s and certificate paths start from: the main
/// config's folder, as nginx's `-c` makes it.
const CONFIG_FOLDER: &str = "/etc/nginx";

/// nginx's compiled-in prefix on Debian, Astra, RHEL and ALT packages: where
/// relative `pid`, log, temp-folder and `load_module` paths start from.
const SERVER_PREFIX: &str = "/usr/share/nginx";

/// How deep includes may nest, and how many files a config may pull in: a
/// config that includes itself, or a glob over a huge tree, stops here.
const MAX_INCLUDE_DEPTH: usize = 32;
const MAX_FILES: usize = 2000;

/// Directives naming a file nginx reads while loading the config (relative
/// paths start at the config folder): the file is copied into the test folder.
const READ_FILES: &[&str] = &[
    "ssl_certificate",
    "ssl_certificate_key",
    "ssl_trusted_certificate",
    "ssl_client_certificate",
    "ssl_dhparam",
    "ssl_crl",
    "ssl_password_file",
    "ssl_stapling_file",
    "ssl_session_ticket_key",
    "auth_basic_user_file",
    "proxy_ssl_certificate",
    "proxy_ssl_certificate_key",
    "proxy_ssl_trusted_certificate",
    "proxy_ssl_crl",
    "proxy_ssl_password_file",
    "grpc_ssl_certificate",
    "grpc_ssl_certificate_key",
    "grpc_ssl_trusted_certificate",
    "grpc_ssl_crl",
    "grpc_ssl_password_file",
    "uwsgi_ssl_certificate",
    "uwsgi_ssl_certificate_key",
    "uwsgi_ssl_trusted_certificate",
    "uwsgi_ssl_crl",
    "uwsgi_ssl_password_file",
    // A module directive that reads a file at load time.
    "xml_entities",
    "geoip_country",
    "geoip_city",
    "geoip_org",
    "xslt_stylesheet",
];

/// Directives naming a file or folder nginx creates or opens for writing, even
/// under `-t` (relative paths start at the prefix): placed in the test folder.
const WRITTEN_PATHS: &[&str] = &[
    "pid",
    "lock_file",
    "error_log",
    "access_log",
    "client_body_temp_path",
    "proxy_temp_path",
    "fastcgi_temp_path",
    "uwsgi_temp_path",
    "scgi_temp_path",
    "proxy_cache_path",
    "fastcgi_cache_path",
    "uwsgi_cache_path",
    "scgi_cache_path",
    "working_directory",
];

/// The `http`-level paths nginx falls back to its compiled-in defaults for
/// (`/var/log/nginx/access.log`, `/var/lib/nginx/body`, ...) and opens or
/// creates under `-t`: set into the test folder when the config does not set them.
const HTTP_DEFAULTS: &[(&str, &str)] = &[
    ("access_log", "access.log"),
    ("client_body_temp_path", "body"),
    ("proxy_temp_path", "proxy"),
    ("fastcgi_temp_path", "fastcgi"),
    ("uwsgi_temp_path", "uwsgi"),
    ("scgi_temp_path", "scgi"),
];

/// Directives whose first argument names a header or parameter and the rest its
/// value: the value is secret when the name says so.
const NAMED_VALUES: &[&str] = &[
    "proxy_set_header",
    "grpc_set_header",
    "add_header",
    "fastcgi_param",
    "uwsgi_param",
    "scgi_param",
    "set",
];

/// Header names whose values are credentials.
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// The main config used when the root has no nginx.conf: the site alone.
const MINIMAL_MAIN: &str = "events {}\nhttp {\n}\n";

/// Tests `candidate` (the planned text of the site file `site`, a server path)
/// with the real `nginx -t` in the nginx configuration of the server under
/// `root`, in a private temp folder removed afterwards.
///
/// # Errors
/// [`Error::CheckFailed`] with nginx's words (server paths, secrets masked);
/// [`Error::ConfigParse`] when a file of the server's config cannot be read as
/// nginx config, includes itself or nests too deep; [`Error::CommandFailed`]
/// when nginx cannot be run; [`Error::Io`] when the copy cannot be made.
pub fn test_site_in_context(
    root: &Path,
    site: &str,
    candidate: &str,
    runner: &dyn CommandRunner,
) -> Result<()> {
    test_site_in_main_config(root, MAIN_CONFIG, site, candidate, runner)
}

/// [`test_site_in_context`] for an nginx whose main config is `main` (a
/// server path; relative `include`s start at its folder, as nginx's `-c` makes them).
///
/// # Errors
/// As [`test_site_in_context`].
pub fn test_site_in_main_config(
    root: &Path,
    main: &str,
    site: &str,
    candidate: &str,
    runner: &dyn CommandRunner,
) -> Result<()> {
    // A fresh private folder per test: parallel runs never share or remove each other's.
    let work = private_temp_dir("cmw-upgrade-nginx")?;
    let result = prepare_in(root, main, site, candidate, &work).and_then(|copy| {
        copy.write()?;
        copy.run(site, runner)
    });
    let _ = fs::remove_dir_all(&work);
    result
}

/// What testing `candidate` in the server's context will differ in from how
/// the server loads it (tested alone; not included by nginx.conf; a module
/// left out), for the plan's report. Reads only.
///
/// # Errors
/// As [`test_site_in_context`], for the server's config.
pub fn context_warnings(root: &Path, site: &str, candidate: &str) -> Result<Vec<String>> {
    // Nothing is written: any folder name serves to lay the copy out in memory.
    Ok(prepare(
        root,
        site,
        candidate,
        Path::new("/nonexistent/cmw-upgrade-nginx"),
    )?
    .warnings)
}

/// The copy of a server's nginx config, laid out in memory.
struct ContextCopy {
    /// The private temp folder.
    work: PathBuf,
    /// Where server paths are mirrored: `<work>/tree`.
    tree: PathBuf,
    /// The copy of nginx.conf.
    main: PathBuf,
    /// Files to write (their folders made): copy path → bytes.
    files: BTreeMap<PathBuf, Vec<u8>>,
    /// Folders to make, for what nginx creates inside them.
    folders: BTreeSet<PathBuf>,
    warnings: Vec<String>,
    /// Whether the root is this machine's own `/`: the nginx that tests is the
    /// server's own, and its compiled-in error log the server's.
    on_this_server: bool,
}

fn prepare(root: &Path, site: &str, candidate: &str, work: &Path) -> Result<ContextCopy> {
    prepare_in(root, MAIN_CONFIG, site, candidate, work)
}

fn prepare_in(
    root: &Path,
    main: &str,
    site: &str,
    candidate: &str,
    work: &Path,
) -> Result<ContextCopy> {
    let disk = Disk::new(root);
    let main_text = disk
        .read_file(main)?
        .map(|bytes| raw_text::decode(main, &bytes))
        .transpose()?;
    let in_context = main_text.is_some();
    let tree = work.join("tree");
    let mut walker = Walker {
        root,
        disk,
        main_config: main,
        config_folder: Path::new(main)
            .parent()
            .map_or(CONFIG_FOLDER.to_owned(), |folder| {
                folder.to_string_lossy().into_owned()
            }),
        site,
        site_resolved: resolve_in_root(root, &join_default(root, Path::new(site)), true).ok(),
        candidate,
        in_context,
        stack: Vec::new(),
        site_included: false,
        main_seen: BTreeSet::new(),
        http_seen: BTreeSet::new(),
        http_done: false,
        copy: ContextCopy {
            work: work.to_path_buf(),
            // Without the server's own, nginx's messages must not name a file it lacks.
            main: if in_context {
                mirror(&tree, main)
            } else {
                work.join("minimal-nginx.conf")
            },
            tree,
            files: BTreeMap::new(),
            folders: BTreeSet::new(),
            warnings: Vec::new(),
            on_this_server: root == Path::new("/"),
        },
    };
    if !in_context {
        walker.copy.warnings.push(format!(
            "{site}: the new server has no {main}, so `nginx -t` tested the site alone \
             in a minimal http {{}}, not as the server will load it; test it again once nginx \
             is installed there (nginx -t)"
        ));
    }
    let main_text = main_text.unwrap_or_else(|| MINIMAL_MAIN.to_owned());
    let mut text = walker.walk_file(main, &main_text, &mut Vec::new())?;
    if !walker.main_seen.contains("pid") {
        text.push_str(&format!(
            "\npid {};\n",
            quote(&walker.copy.work.join("nginx.pid").to_string_lossy())
        ));
    }
    if !walker.http_done {
        let additions = walker.http_additions(&mut vec!["http".to_owned()])?;
        text.push_str(&format!("\nhttp {{\n{additions}}}\n"));
    }
    let main = walker.copy.main.clone();
    walker.copy.files.insert(main, raw_text::encode(&text));
    Ok(walker.copy)
}

struct Walker<'a> {
    root: &'a Path,
    disk: Disk,
    /// The main config's server path.
    main_config: &'a str,
    /// Where relative `include`s and certificate paths start: the main config's folder.
    config_folder: String,
    site: &'a str,
    /// The site file's place under the root, its links resolved there.
    site_resolved: Option<PathBuf>,
    candidate: &'a str,
    /// Whether the server's own nginx.conf is tested (not the minimal one):
    /// then a folder missing on the server is missing in the copy too.
    in_context: bool,
    /// The files being walked, outermost first: an include cycle is refused.
    stack: Vec<String>,
    site_included: bool,
    main_seen: BTreeSet<String>,
    http_seen: BTreeSet<String>,
    http_done: bool,
    copy: ContextCopy,
}

impl Walker<'_> {
    /// The text of `file` (a server path) as the copy holds it: every path in
    /// it rewritten, every file it includes copied. `context`: the blocks
    /// around the place it is included at.
    fn walk_file(&mut self, file: &str, text: &str, context: &mut Vec<String>) -> Result<String> {
        let refuse = |message: String| Error::ConfigParse {
            path: file.into(),
            line: None,
            message,
        };
        if self.stack.iter().any(|open| open == file) {
            return Err(refuse(format!(
                "includes itself (through {}); nginx would never finish loading it — fix the include",
                self.stack.join(" → ")
            )));
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH || self.copy.files.len() >= MAX_FILES {
            return Err(refuse(format!(
                "includes nest deeper than {MAX_INCLUDE_DEPTH} levels or pull in more than \
                 {MAX_FILES} files; the config cannot be copied to test the site in it"
            )));
        }
        let directives = parse_nginx(file, text).map_err(|error| match error {
            Error::ConfigParse {
                path,
                line,
                message,
            } => Error::ConfigParse {
                path,
                line,
                message: format!(
                    "{message} (read as nginx config to test the new site in the server's \
                     nginx configuration; fix it, or the include that names it)"
                ),
            },
            other => other,
        })?;
        self.stack.push(file.to_owned());
        let mut edits = Vec::new();
        let walked = self.walk_block(file, text, &directives, context, &mut edits);
        self.stack.pop();
        walked?;
        Ok(apply_edits(text, &mut edits))
    }

    fn walk_block(
        &mut self,
        file: &str,
        text: &str,
        directives: &[Directive],
        context: &mut Vec<String>,
        edits: &mut Vec<(usize, usize, String)>,
    ) -> Result<()> {
        for directive in directives {
            let name = directive.name.as_str();
            match context.as_slice() {
                [] => {
                    self.main_seen.insert(name.to_owned());
                }
                [http] if http == "http" => {
                    self.http_seen.insert(name.to_owned());
                }
                _ => {}
            }
            self.note_secrets(directive);
            let replacement = match name {
                "include" if directive.block.is_none() => self.include(directive, context)?,
                "user" if context.is_empty() => Some(String::new()),
                "load_module" => Some(self.load_module(file, text, directive)?),
                _ if READ_FILES.contains(&name) => self.read_file(directive)?,
                _ if WRITTEN_PATHS.contains(&name) => self.written_path(directive),
                _ => None,
            };
            if let Some(replacement) = replacement {
                edits.push((directive.start, directive.end, replacement));
            }
            if let Some(block) = &directive.block {
                context.push(directive.name.clone());
                let walked = self.walk_block(file, text, block, context, edits);
                context.pop();
                walked?;
                if name == "http" && context.is_empty() && !self.http_done {
                    let additions = self.http_additions(&mut vec!["http".to_owned()])?;
                    edits.push((directive.block_end, directive.block_end, additions));
                }
            }
        }
        Ok(())
    }

    /// What the copy's `http {}` needs at its end: the compiled-in paths the
    /// config left out, and the site when nothing included it.
    fn http_additions(&mut self, context: &mut Vec<String>) -> Result<String> {
        self.http_done = true;
        let mut additions = String::from("\n# added by cmw-upgrade for `nginx -t`\n");
        for (directive, name) in HTTP_DEFAULTS {
            if !self.http_seen.contains(*directive) {
                let path = self.copy.work.join(name);
                additions.push_str(&format!(
                    "{directive} {};\n",
                    quote(&path.to_string_lossy())
                ));
            }
        }
        if !self.site_included {
            self.site_included = true;
            if self.in_context {
                self.copy.warnings.push(format!(
                    "{}: {main} does not include it (nor does anything it includes), \
                     so the server will not serve this site; `nginx -t` tested it placed at the \
                     end of http {{}} — enable the site (e.g. link it into \
                     /etc/nginx/sites-enabled) or include it from {main}",
                    self.site,
                    main = self.main_config
                ));
            }
            let site = self.site;
            let candidate = self.candidate;
            let text = self.walk_file(site, candidate, context)?;
            let copy = mirror(&self.copy.tree, site);
            additions.push_str(&format!("include {};\n", quote(&copy.to_string_lossy())));
            self.copy.files.insert(copy, raw_text::encode(&text));
        }
        Ok(additions)
    }

    /// An `include`: every file it names, copied (the candidate for the site
    /// file), each included by its copy's path.
    fn include(
        &mut self,
        directive: &Directive,
        context: &mut Vec<String>,
    ) -> Result<Option<String>> {
        let [argument] = directive.args.as_slice() else {
            return Ok(None); // nginx refuses it without reading anything.
        };
        let path = server_path(argument, &self.config_folder);
        let paths = if is_glob(argument) {
            self.expand(&path)?
        } else {
            vec![path]
        };
        let mut includes = Vec::new();
        for path in paths {
            let text = if self.is_site(&path) {
                self.site_included = true;
                Some(self.candidate.to_owned())
            } else {
                self.disk
                    .read_file(&path)?
                    .map(|bytes| raw_text::decode(&path, &bytes))
                    .transpose()?
            };
            let copy = mirror(&self.copy.tree, &path);
            // A file missing on the server stays missing: nginx names it.
            if let Some(text) = text {
                let rewritten = self.walk_file(&path, &text, context)?;
                self.copy
                    .files
                    .insert(copy.clone(), raw_text::encode(&rewritten));
            }
            includes.push(format!("include {};", quote(&copy.to_string_lossy())));
        }
        Ok(Some(includes.join(" ")))
    }

    /// A `load_module`: on the server itself, its own module file (copied);
    /// under another root the line is dropped with a warning — a module is
    /// code, and this machine's nginx (run as root) must never load code taken
    /// from another server's tree.
    fn load_module(&mut self, file: &str, text: &str, directive: &Directive) -> Result<String> {
        let Some(argument) = directive.args.first() else {
            return Ok(text[directive.start..directive.end].to_owned());
        };
        let path = server_path(argument, SERVER_PREFIX);
        if !self.copy.on_this_server {
            let line = text[..directive.start].matches('\n').count() + 1;
            self.copy.warnings.push(format!(
                "{file}:{line}: load_module {argument}: not loaded — the configuration is not \
                 this machine's (--root), and a module is code; `nginx -t` tested the site \
                 without that module"
            ));
            return Ok(String::new());
        }
        match self.disk.read_file(&path)? {
            Some(bytes) => {
                let copy = mirror(&self.copy.tree, &path);
                let rewritten = rewritten(directive, &copy);
                self.copy.files.insert(copy, bytes);
                Ok(rewritten)
            }
            None => {
                let line = text[..directive.start].matches('\n').count() + 1;
                self.copy.warnings.push(format!(
                    "{file}:{line}: load_module {argument}: the new server has no such module \
                     file; `nginx -t` tested the site without that module"
                ));
                Ok(String::new())
            }
        }
    }

    /// A file nginx reads while loading (a certificate, a key): copied when
    /// the root has it; missing, nginx names it.
    fn read_file(&mut self, directive: &Directive) -> Result<Option<String>> {
        let Some(argument) = directive.args.first() else {
            return Ok(None);
        };
        // Variables are resolved per request, `data:`/`engine:` are no files:
        // nothing is read at load time.
        if argument.contains('$')
            || argument.starts_with("data:")
            || argument.starts_with("engine:")
        {
            return Ok(None);
        }
        let path = server_path(argument, &self.config_folder);
        let copy = mirror(&self.copy.tree, &path);
        if let Some(bytes) = self.disk.read_file(&path)? {
            self.copy.files.insert(copy.clone(), bytes);
        }
        Ok(Some(rewritten(directive, &copy)))
    }

    /// A file or folder nginx creates or opens for writing: placed in the copy.
    fn written_path(&mut self, directive: &Directive) -> Option<String> {
        let argument = directive.args.first()?;
        let not_a_path = ["stderr", "off"].contains(&argument.as_str())
            || argument.starts_with("syslog:")
            || argument.starts_with("memory:");
        if not_a_path {
            return None;
        }
        let path = server_path(argument, SERVER_PREFIX);
        let copy = mirror(&self.copy.tree, &path);
        if let Some(parent) = Path::new(&path).parent() {
            // With the server's own config, a folder the server lacks is lacking
            // in the copy too: nginx fails there as it would on the server.
            let on_server = canonical_in_root(self.root, &join_default(self.root, parent))
                .is_ok_and(|found| found.is_dir());
            if on_server || !self.in_context {
                if let Some(folder) = copy.parent() {
                    self.copy.folders.insert(folder.to_path_buf());
                }
            }
        }
        Some(rewritten(directive, &copy))
    }

    /// The server paths a glob matches inside the root, sorted as nginx's glob
    /// sorts them; hidden names only when the pattern names the dot.
    fn expand(&self, pattern: &str) -> Result<Vec<String>> {
        let parts: Vec<&str> = pattern.split('/').filter(|part| !part.is_empty()).collect();
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let mut found = vec![String::new()];
        for (index, part) in parts.iter().enumerate() {
            let last = index + 1 == parts.len();
            let matcher = if is_glob(part) {
                glob::Pattern::new(part).ok()
            } else {
                None
            };
            let Some(matcher) = matcher else {
                for path in &mut found {
                    path.push('/');
                    path.push_str(part);
                }
                continue;
            };
            let mut next = Vec::new();
            for folder in &found {
                let listed = if folder.is_empty() { "/" } else { folder };
                for entry in self.disk.list_dir(listed)? {
                    if !matcher.matches_with(&entry.name, options) {
                        continue;
                    }
                    let path = format!("{folder}/{}", entry.name);
                    let wanted = if last {
                        // A link to the site file is it, even before the file exists.
                        entry.kind == NodeKind::File || (entry.link && self.is_site(&path))
                    } else {
                        entry.kind == NodeKind::Folder
                    };
                    if wanted {
                        next.push(path);
                    }
                }
                // The site file may not be there yet: once written, the glob takes it.
                if last {
                    if let Some((site_folder, site_name)) = self.site.rsplit_once('/') {
                        let absent = !next.iter().any(|path| path == self.site);
                        if absent
                            && site_folder == folder
                            && matcher.matches_with(site_name, options)
                        {
                            next.push(self.site.to_owned());
                        }
                    }
                }
            }
            found = next;
            if found.len() > MAX_FILES {
                break;
            }
        }
        found.sort();
        Ok(found)
    }

    /// Whether a server path leads (inside the root) to the site file.
    fn is_site(&self, path: &str) -> bool {
        self.site_resolved.is_some()
            && resolve_in_root(self.root, &join_default(self.root, Path::new(path)), true).ok()
                == self.site_resolved
    }

    /// Remembers the secret values a directive holds.
    fn note_secrets(&mut self, directive: &Directive) {
        let name = directive.name.as_str();
        let values: &[String] = if is_secret_key(name) || name.starts_with("secure_link") {
            &directive.args
        } else if NAMED_VALUES.contains(&name) && directive.args.len() > 1 {
            let key = directive.args[0]
                .trim_start_matches('$')
                .to_ascii_lowercase();
            if is_secret_key(&key) || SECRET_HEADERS.contains(&key.as_str()) {
                &directive.args[1..]
            } else {
                &[]
            }
        } else {
            &[]
        };
        for value in values {
            // Short values would mask ordinary words; a variable is no secret.
            // Remembered, they are masked by every printer: nginx's words here,
            // and the site's diff too.
            if !value.starts_with('$') {
                crate::secrets::remember(value);
            }
        }
    }
}

impl ContextCopy {
    /// Writes the copy into its private folder: files `0600`, folders `0700`.
    fn write(&self) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let make_folder = |folder: &Path| {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(folder)
                .map_err(|error| Error::io("create the folder", folder, error))
        };
        for folder in &self.folders {
            make_folder(folder)?;
        }
        for (path, bytes) in &self.files {
            if let Some(folder) = path.parent() {
                make_folder(folder)?;
            }
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut file| file.write_all(bytes))
                .map_err(|error| Error::io("write", path, error))?;
        }
        Ok(())
    }

    /// Runs `nginx -t` on the copy.
    fn run(&self, site: &str, runner: &dyn CommandRunner) -> Result<()> {
        let text = |path: &Path| path.to_string_lossy().into_owned();
        let argv: Vec<String> = vec![
            "nginx".into(),
            "-t".into(),
            "-p".into(),
            format!("{}/", text(&self.work)),
            "-c".into(),
            text(&self.main),
            // Before reading the config nginx opens its compiled-in error log.
            "-e".into(),
            text(&self.work.join("error.log")),
        ];
        let mut output = self.run_argv(&argv, site, runner)?;
        if !output.success()
            && output.stderr.contains("invalid option: \"e\"")
            && self.on_this_server
        {
            // nginx before 1.19.5 has no `-e`. On the server itself its
            // compiled-in error log is the server's own, which an admin's
            // `nginx -t` opens too; under another root it would be this
            // machine's, so there the refusal below stands.
            output = self.run_argv(&argv[..argv.len() - 2], site, runner)?;
        }
        if output.success() {
            return Ok(());
        }
        let mut details = self.shown(&output.stderr).trim().to_owned();
        if details.contains("invalid option: \"e\"") {
            details.push_str(
                " — this nginx is older than 1.19.5 and cannot be kept off its compiled-in \
                 error log outside the root; install nginx 1.19.5 or newer here, or run the \
                 migration on the server itself",
            );
        }
        Err(Error::CheckFailed {
            what: format!("`nginx -t` on the new {site} in the new server's nginx configuration"),
            details,
        })
    }

    fn run_argv(
        &self,
        argv: &[String],
        site: &str,
        runner: &dyn CommandRunner,
    ) -> Result<crate::exec::CommandOutput> {
        runner.run(argv).map_err(|error| match error {
            Error::CommandFailed {
                command,
                status,
                output,
                ..
            } => Error::CommandFailed {
                command,
                status,
                output,
                hint: format!("install nginx here: it checks the new {site} before it is written"),
            },
            other => other,
        })
    }

    /// nginx's words as the admin should read them: the copy's paths as the
    /// server's, the test folder named as such, secret values masked.
    fn shown(&self, message: &str) -> String {
        let shown = message
            .replace(&*self.tree.to_string_lossy(), "")
            .replace(&*self.work.to_string_lossy(), "(the test folder)");
        crate::secrets::mask(&shown).into_owned()
    }
}

/// A path argument as the server path nginx reads it: relative ones start at
/// `base`; `.` and `..` resolved as the kernel would (never above `/`).
fn server_path(argument: &str, base: &str) -> String {
    let joined = if argument.starts_with('/') {
        argument.to_owned()
    } else {
        format!("{base}/{argument}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Where the copy of a server path lives.
fn mirror(tree: &Path, server_path: &str) -> PathBuf {
    join_default(tree, Path::new(server_path))
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// The directive with its first argument replaced by `path`.
fn rewritten(directive: &Directive, path: &Path) -> String {
    let mut words = vec![directive.name.clone(), quote(&path.to_string_lossy())];
    words.extend(
        directive
            .args
            .iter()
            .skip(1)
            .map(|argument| quote(argument)),
    );
    format!("{};", words.join(" "))
}

/// An argument as nginx reads it back: bare when it can be, else double-quoted.
fn quote(argument: &str) -> String {
    let bare = !argument.is_empty()
        && !argument
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | ';' | '{' | '}' | '#' | '\\'));
    if bare {
        argument.to_owned()
    } else {
        format!(
            "\"{}\"",
            argument.replace('\\', "\\\\").replace('"', "\\\"")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_never_climb_above_the_top() {
        assert_eq!(
            server_path("proxy_params", CONFIG_FOLDER),
            "/etc/nginx/proxy_params"
        );
        assert_eq!(
            server_path("../../../../etc/passwd", CONFIG_FOLDER),
            "/etc/passwd"
        );
        assert_eq!(server_path("/etc/./nginx//x/../y", "/"), "/etc/nginx/y");
        assert_eq!(
            server_path("logs/error.log", SERVER_PREFIX),
            "/usr/share/nginx/logs/error.log"
        );
    }

    #[test]
    fn nginx_messages_name_server_paths_and_mask_secrets() {
        let root = tempfile::tempdir().unwrap();
        let site = "server {\n    listen 80;\n    location / {\n        \
                    proxy_set_header Authorization \"Basic c2VjcmV0OnBhc3N3b3Jk\";\n        \
                    proxy_set_header X-Api-Token tok-12345;\n        proxy_set_header Host $host;\n    }\n}\n";
        let work = Path::new("/tmp/cmw-upgrade-nginx-1-2");
        let copy = prepare(root.path(), "/etc/nginx/conf.d/site", site, work).unwrap();
        let message = "nginx: [emerg] invalid value \"Basic c2VjcmV0OnBhc3N3b3Jk\" in \
                       /tmp/cmw-upgrade-nginx-1-2/tree/etc/nginx/conf.d/site:4 (tok-12345)\n\
                       nginx: [alert] could not open /tmp/cmw-upgrade-nginx-1-2/error.log";
        assert_eq!(
            copy.shown(message),
            "nginx: [emerg] invalid value \"***\" in /etc/nginx/conf.d/site:4 (***)\n\
             nginx: [alert] could not open (the test folder)/error.log"
        );
        // The copy of the site is where the server keeps it; pid and logs are in the folder.
        let main = String::from_utf8(copy.files[&copy.main].clone()).unwrap();
        assert!(
            main.contains("include /tmp/cmw-upgrade-nginx-1-2/tree/etc/nginx/conf.d/site;"),
            "{main}"
        );
        assert!(
            main.contains("pid /tmp/cmw-upgrade-nginx-1-2/nginx.pid;"),
            "{main}"
        );
        assert!(main.contains("client_body_temp_path /tmp/cmw-upgrade-nginx-1-2/body;"));
    }

    /// An nginx older than 1.19.5: `-e` is an invalid option.
    struct NginxWithoutE(std::cell::RefCell<Vec<Vec<String>>>);

    impl CommandRunner for NginxWithoutE {
        fn run(&self, argv: &[String]) -> Result<crate::exec::CommandOutput> {
            self.0.borrow_mut().push(argv.to_vec());
            let has_e = argv.iter().any(|arg| arg == "-e");
            Ok(crate::exec::CommandOutput {
                code: Some(if has_e { 1 } else { 0 }),
                stdout: String::new(),
                stderr: if has_e {
                    "nginx: invalid option: \"e\"\n".to_owned()
                } else {
                    String::new()
                },
            })
        }
    }

    #[test]
    fn an_nginx_without_e_tests_on_the_server_itself_and_refuses_under_another_root() {
        let root = tempfile::tempdir().unwrap();
        let site = "server {\n    listen 80;\n}\n";
        let work = Path::new("/tmp/cmw-upgrade-nginx-3-4");
        let mut copy = prepare(root.path(), "/etc/nginx/conf.d/site", site, work).unwrap();
        let nginx = NginxWithoutE(Default::default());
        let error = copy
            .run("/etc/nginx/conf.d/site", &nginx)
            .unwrap_err()
            .to_string();
        assert!(error.contains("older than 1.19.5"), "{error}");
        assert_eq!(
            nginx.0.borrow().len(),
            1,
            "under another root: no second try"
        );

        copy.on_this_server = true;
        copy.run("/etc/nginx/conf.d/site", &nginx).unwrap();
        let runs = nginx.0.borrow();
        assert_eq!(runs.len(), 3);
        assert!(!runs[2].contains(&"-e".to_owned()), "{:?}", runs[2]);
        assert_eq!(runs[2][..], runs[1][..runs[1].len() - 2]);
    }

    #[test]
    fn arguments_are_quoted_only_when_needed() {
        assert_eq!(quote("/tmp/a/b.conf"), "/tmp/a/b.conf");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("x\"y\\z"), "\"x\\\"y\\\\z\"");
        assert_eq!(quote("${host}.log"), "\"${host}.log\"");
        assert_eq!(quote(""), "\"\"");
    }
}
