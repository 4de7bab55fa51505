//! OS families, told from the text of `/etc/os-release`.
//!
//! The platform's procedure differs by family only: where the nginx site file
//! lives, which tool installs local packages, and which user the web server
//! (and by default the platform) runs as.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::instance::InstanceName;

/// The three families the platform ships distributions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFamily {
    /// Astra Linux, Ubuntu, Debian.
    Deb,
    /// RED OS, Rocky and other RHEL-likes.
    Rpm,
    /// Alt Server / Alt Linux: uses apt-get, but on rpm packages and with its own paths.
    Alt,
}

/// A user and group pair, as `chown` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// User name.
    pub user: String,
    /// Group name.
    pub group: String,
}

impl Owner {
    /// Builds an owner from two names.
    pub fn new(user: impl Into<String>, group: impl Into<String>) -> Self {
        Owner {
            user: user.into(),
            group: group.into(),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.user, self.group)
    }
}

/// Distribution ids that decide the family, checked against `ID` first and then
/// against each word of `ID_LIKE`. Alt is listed first so that nothing else claims it.
const FAMILY_BY_ID: &[(&str, OsFamily)] = &[
    ("altlinux", OsFamily::Alt),
    ("alt", OsFamily::Alt),
    ("astra", OsFamily::Deb),
    ("ubuntu", OsFamily::Deb),
    ("debian", OsFamily::Deb),
    ("redos", OsFamily::Rpm),
    ("rocky", OsFamily::Rpm),
    ("rhel", OsFamily::Rpm),
    ("centos", OsFamily::Rpm),
    ("fedora", OsFamily::Rpm),
    ("almalinux", OsFamily::Rpm),
    ("ol", OsFamily::Rpm),
];

impl OsFamily {
    /// All families, in documentation order.
    pub const ALL: [OsFamily; 3] = [OsFamily::Deb, OsFamily::Rpm, OsFamily::Alt];

    /// The short lowercase name: `deb`, `rpm` or `alt`.
    pub fn as_str(self) -> &'static str {
        match self {
            OsFamily::Deb => "deb",
            OsFamily::Rpm => "rpm",
            OsFamily::Alt => "alt",
        }
    }

    /// The folder that holds nginx site files, as an absolute path on the server.
    pub fn nginx_site_dir(self) -> &'static str {
        match self {
            OsFamily::Deb => "/etc/nginx/sites-available",
            OsFamily::Rpm => "/etc/nginx/conf.d",
            OsFamily::Alt => "/etc/nginx/sites-available.d",
        }
    }

    /// The instance's nginx site file, as an absolute path on the server.
    pub fn nginx_site_path(self, instance: &InstanceName) -> PathBuf {
        PathBuf::from(self.nginx_site_dir()).join(format!("comindware{instance}"))
    }

    /// The argv that installs local package files (`*.deb` or `*.rpm`) on this family.
    ///
    /// The files are passed as separate arguments, never through a shell glob.
    pub fn local_package_install_argv<S: AsRef<str>>(self, package_files: &[S]) -> Vec<String> {
        let mut argv: Vec<String> = match self {
            OsFamily::Deb => vec!["dpkg".into(), "-i".into()],
            OsFamily::Rpm => vec!["rpm".into(), "-i".into()],
            OsFamily::Alt => vec!["apt-get".into(), "install".into(), "-y".into()],
        };
        argv.extend(package_files.iter().map(|file| file.as_ref().to_owned()));
        argv
    }

    /// The extension of the local package files this family installs (`deb` or `rpm`).
    pub fn package_extension(self) -> &'static str {
        match self {
            OsFamily::Deb => "deb",
            OsFamily::Rpm | OsFamily::Alt => "rpm",
        }
    }

    /// The web server's user and group, which also owns instance data when the
    /// systemd unit does not say otherwise.
    pub fn web_owner(self) -> Owner {
        match self {
            OsFamily::Deb => Owner::new("www-data", "www-data"),
            OsFamily::Rpm => Owner::new("nginx", "nginx"),
            OsFamily::Alt => Owner::new("_nginx", "_nginx"),
        }
    }

    /// The family a distribution id belongs to, if it is a known one.
    pub fn from_distro_id(id: &str) -> Option<OsFamily> {
        let id = id.trim().to_ascii_lowercase();
        FAMILY_BY_ID
            .iter()
            .find(|(known, _)| *known == id)
            .map(|(_, family)| *family)
    }
}

impl fmt::Display for OsFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OsFamily {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "deb" => Ok(OsFamily::Deb),
            "rpm" => Ok(OsFamily::Rpm),
            "alt" => Ok(OsFamily::Alt),
            other => Err(format!(
                "unknown OS family {other:?}; expected deb, rpm or alt"
            )),
        }
    }
}

/// The fields of `/etc/os-release` the tool uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    /// `ID`, lowercased.
    pub id: String,
    /// `ID_LIKE`, split on whitespace, lowercased.
    pub id_like: Vec<String>,
    /// `PRETTY_NAME`, if present.
    pub pretty_name: Option<String>,
    /// `VERSION_ID`, if present.
    pub version_id: Option<String>,
    /// Lines that are not assignments a shell would make, and so set nothing.
    pub unread: Vec<OsReleaseLineError>,
}

/// One `NAME=value` assignment of an os-release file, its value unquoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsReleaseAssignment {
    /// 1-based line the assignment starts on.
    pub line: usize,
    /// The variable's name.
    pub name: String,
    /// The value, as a shell would assign it.
    pub value: String,
}

/// A line of an os-release file that is not read as an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsReleaseLineError {
    /// 1-based line.
    pub line: usize,
    /// The variable, when the line names one before going wrong.
    pub name: Option<String>,
    /// Why it is not an assignment.
    pub reason: &'static str,
}

impl fmt::Display for OsReleaseLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "line {} ({name}): {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// Reads os-release text the way os-release(5) defines it and a shell that
/// sources it (`. /etc/os-release`) reads it: `NAME=value` assignments, one a
/// line, optionally after `export`; values bare, in `'...'` (taken literally) or
/// in `"..."` (where `\` escapes `"`, `\`, `$` and a backquote, and is kept before
/// anything else), or made of such parts; `\` outside quotes takes the next
/// character literally; a `#` at the start of a word starts a comment.
///
/// What a shell would not read as a plain assignment is an error for its line,
/// and sets nothing: spaces around `=`, more words after the value (an
/// unquoted space), expansions (`$`, a backquote, a leading `~`), shell
/// operators, an unterminated quote (the rest of the file is inside it).
/// Two leniencies, for files written on other systems: a byte-order mark at the
/// start is skipped, and a `\r` before a line end is dropped.
pub fn parse_os_release_assignments(
    text: &str,
) -> Vec<Result<OsReleaseAssignment, OsReleaseLineError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = ShellReader {
        chars: text.chars().collect(),
        at: 0,
        line: 1,
    };
    let mut out = Vec::new();
    loop {
        reader.skip_blanks();
        match reader.peek() {
            None => break,
            Some('\n') => {
                reader.next();
                continue;
            }
            Some('#') => {
                reader.skip_line();
                continue;
            }
            Some(_) => {}
        }
        let line = reader.line;
        match reader.assignment() {
            Ok((name, value)) => out.push(Ok(OsReleaseAssignment { line, name, value })),
            Err((name, reason)) => {
                reader.skip_line();
                out.push(Err(OsReleaseLineError { line, name, reason }));
            }
        }
    }
    out
}

/// A cursor over os-release text, reading shell words.
struct ShellReader {
    chars: Vec<char>,
    at: usize,
    line: usize,
}

type ShellFailure = (Option<String>, &'static str);

impl ShellReader {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_second(&self) -> Option<char> {
        self.chars.get(self.at + 1).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) || self.at_crlf() {
            self.next();
        }
    }

    /// A `\r` that ends a line (written on Windows): dropped, as the line end is.
    fn at_crlf(&self) -> bool {
        self.peek() == Some('\r') && matches!(self.peek_second(), Some('\n') | None)
    }

    /// Skips to the start of the next line.
    fn skip_line(&mut self) {
        while let Some(c) = self.next() {
            if c == '\n' {
                break;
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            let fits =
                c == '_' || c.is_ascii_alphabetic() || (!name.is_empty() && c.is_ascii_digit());
            if !fits {
                break;
            }
            name.push(c);
            self.next();
        }
        name
    }

    /// `[export ]NAME=value[ # comment]` up to the line end.
    fn assignment(&mut self) -> Result<(String, String), ShellFailure> {
        let mut name = self.name();
        if name == "export" && matches!(self.peek(), Some(' ' | '\t')) {
            self.skip_blanks();
            name = self.name();
        }
        if name.is_empty() {
            return Err((None, "not an assignment: a line is NAME=value"));
        }
        if self.peek() != Some('=') {
            let reason = if matches!(self.peek(), Some(' ' | '\t')) {
                "spaces around = make the line a command, not an assignment: write NAME=value"
            } else {
                "not an assignment: a line is NAME=value"
            };
            return Err((Some(name), reason));
        }
        self.next();
        let value = match self.word() {
            Ok(value) => value,
            Err(reason) => return Err((Some(name), reason)),
        };
        self.skip_blanks();
        match self.peek() {
            None | Some('\n') => Ok((name, value)),
            Some('#') => {
                self.skip_line();
                Ok((name, value))
            }
            Some(_) => Err((
                Some(name),
                "more than one word after =: quote a value that holds spaces",
            )),
        }
    }

    /// One shell word, quotes removed, up to an unquoted blank or line end.
    fn word(&mut self) -> Result<String, &'static str> {
        let mut value = String::new();
        // Where a `~` would be expanded: at the start, and after an unquoted `:`.
        let mut tilde_expands = true;
        loop {
            let Some(c) = self.peek() else {
                return Ok(value);
            };
            if matches!(c, ' ' | '\t' | '\n') || self.at_crlf() {
                return Ok(value);
            }
            self.next();
            match c {
                '\'' => loop {
                    match self.next() {
                        None => return Err("a '...' quote is not closed"),
                        Some('\'') => break,
                        Some(c) => value.push(c),
                    }
                },
                '"' => loop {
                    match self.next() {
                        None => return Err("a \"...\" quote is not closed"),
                        Some('"') => break,
                        Some('$' | '`') => {
                            return Err(
                                "$ or a backquote inside \"...\" expands: escape it with \\",
                            )
                        }
                        Some('\\') => match self.next() {
                            None => return Err("a \"...\" quote is not closed"),
                            Some('\n') => {}
                            Some(c @ ('"' | '\\' | '$' | '`')) => value.push(c),
                            Some(c) => {
                                value.push('\\');
                                value.push(c);
                            }
                        },
                        Some(c) => value.push(c),
                    }
                },
                '\\' => match self.next() {
                    None => return Err("a \\ ends the file"),
                    Some('\n') => {}
                    Some(c) => value.push(c),
                },
                '$' | '`' => return Err("$ or a backquote expands: quote the value in '...'"),
                '~' if tilde_expands => {
                    return Err("a leading ~ expands to a home folder: quote the value")
                }
                ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                    return Err("a shell operator in the value: quote the value")
                }
                c => value.push(c),
            }
            tilde_expands = c == ':';
        }
    }
}

impl OsRelease {
    /// Parses the text of an os-release file (see [`parse_os_release_assignments`]);
    /// as in a shell, a later assignment of a name replaces an earlier one.
    pub fn parse(text: &str) -> Self {
        let mut release = OsRelease::default();
        for assignment in parse_os_release_assignments(text) {
            let OsReleaseAssignment { name, value, .. } = match assignment {
                Ok(assignment) => assignment,
                Err(error) => {
                    release.unread.push(error);
                    continue;
                }
            };
            match name.as_str() {
                "ID" => release.id = value.to_ascii_lowercase(),
                "ID_LIKE" => {
                    release.id_like = value
                        .split_whitespace()
                        .map(str::to_ascii_lowercase)
                        .collect()
                }
                "PRETTY_NAME" => release.pretty_name = Some(value),
                "VERSION_ID" => release.version_id = Some(value),
                _ => {}
            }
        }
        release
    }

    /// The family: `ID` decides when it is known, then the first known word of `ID_LIKE`.
    ///
    /// # Errors
    /// [`Error::UnknownOsFamily`] naming what the file said, and the `ID` or
    /// `ID_LIKE` lines it could not read, when neither is known.
    pub fn family(&self) -> Result<OsFamily> {
        if let Some(family) = OsFamily::from_distro_id(&self.id) {
            return Ok(family);
        }
        if let Some(family) = self
            .id_like
            .iter()
            .find_map(|like| OsFamily::from_distro_id(like))
        {
            return Ok(family);
        }
        let mut found = if self.id.is_empty() && self.id_like.is_empty() {
            "the os-release text has no ID and no ID_LIKE".to_owned()
        } else {
            format!("ID={:?} ID_LIKE={:?}", self.id, self.id_like.join(" "))
        };
        for error in &self.unread {
            if matches!(error.name.as_deref(), Some("ID" | "ID_LIKE")) {
                found.push_str(&format!("; unread {error}"));
            }
        }
        Err(Error::UnknownOsFamily { found })
    }
}

/// What [`detect_os_family`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    /// The family.
    pub family: OsFamily,
    /// The distribution id (`ID`).
    pub distro: String,
    /// `PRETTY_NAME`, if given.
    pub pretty_name: Option<String>,
    /// `VERSION_ID`, if given.
    pub version_id: Option<String>,
}

/// Tells the OS family from the text of `/etc/os-release`.
///
/// # Errors
/// [`Error::UnknownOsFamily`] when the text is empty or names no known distribution.
///
/// ```
/// use cmw_upgrade_core::{detect_os_family, OsFamily};
/// let info = detect_os_family("ID=\"redos\"\nID_LIKE=\"rhel centos fedora\"\n").unwrap();
/// assert_eq!(info.family, OsFamily::Rpm);
/// ```
pub fn detect_os_family(os_release_text: &str) -> Result<OsInfo> {
    let release = OsRelease::parse(os_release_text);
    let family = release.family()?;
    Ok(OsInfo {
        family,
        distro: release.id,
        pretty_name: release.pretty_name,
        version_id: release.version_id,
    })
}

/// Where a server's os-release file is looked for, in order.
pub const OS_RELEASE_PATHS: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];

/// Reads the server's os-release (`/etc/os-release`, else `/usr/lib/os-release`)
/// through `reader` and tells its family; `None` when neither file exists.
///
/// # Errors
/// [`Error::UnknownOsFamily`] for an unknown distribution; what the reader
/// reports for an os-release file that exists but cannot be read.
pub fn detect_os_family_from(reader: &dyn crate::server::ServerRead) -> Result<Option<OsInfo>> {
    for relative in OS_RELEASE_PATHS {
        if let Some(text) = reader.read_text(&format!("/{relative}"))? {
            return detect_os_family(&text).map(Some);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ASTRA: &str = "PRETTY_NAME=\"Astra Linux\"\nNAME=\"Astra Linux\"\nID=astra\nID_LIKE=debian\nVERSION_ID=1.7_x86-64\n";
    const REDOS: &str = "NAME=\"RED OS\"\nVERSION=\"7.3.4 (MUROM)\"\nID=\"redos\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"7.3.4\"\n";
    const ALT: &str = "NAME=\"ALT Server\"\nVERSION=\"10.1\"\nID=altlinux\nVERSION_ID=10.1\nPRETTY_NAME=\"ALT Server 10.1 (Mendelevium)\"\n";
    const ROCKY: &str = "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n";
    const UBUNTU: &str = "ID=ubuntu\nID_LIKE=debian\n";

    #[test]
    fn known_distributions_map_to_their_families() {
        assert_eq!(detect_os_family(ASTRA).unwrap().family, OsFamily::Deb);
        assert_eq!(detect_os_family(UBUNTU).unwrap().family, OsFamily::Deb);
        assert_eq!(detect_os_family("ID=debian").unwrap().family, OsFamily::Deb);
        assert_eq!(detect_os_family(REDOS).unwrap().family, OsFamily::Rpm);
        assert_eq!(detect_os_family(ROCKY).unwrap().family, OsFamily::Rpm);
        assert_eq!(detect_os_family(ALT).unwrap().family, OsFamily::Alt);
    }

    #[test]
    fn unknown_id_falls_back_to_id_like() {
        let info = detect_os_family("ID=\"linuxmint\"\nID_LIKE=\"ubuntu debian\"").unwrap();
        assert_eq!(info.family, OsFamily::Deb);
        assert_eq!(info.distro, "linuxmint");
        let info = detect_os_family("ID=almalinux-custom\nID_LIKE='rhel centos fedora'").unwrap();
        assert_eq!(info.family, OsFamily::Rpm);
    }

    #[test]
    fn id_decides_before_id_like() {
        // A made-up file that claims an Alt id but Debian likeness: ID wins.
        let info = detect_os_family("ID=altlinux\nID_LIKE=debian").unwrap();
        assert_eq!(info.family, OsFamily::Alt);
    }

    #[test]
    fn crlf_comments_blank_lines_export_and_trailing_comments_are_read() {
        let text = "\u{feff}# generated\r\n\r\n  export ID=\"Ubuntu\" # comment\r\nVERSION_ID=\"22.04\"\r\n";
        let info = detect_os_family(text).unwrap();
        assert_eq!(info.family, OsFamily::Deb);
        assert_eq!(info.distro, "ubuntu");
        assert_eq!(info.version_id.as_deref(), Some("22.04"));
        let release = OsRelease::parse("ID=debian # the id\nVERSION_ID='12' #x\n");
        assert_eq!(release.id, "debian");
        assert_eq!(release.version_id.as_deref(), Some("12"));
        assert!(release.unread.is_empty(), "{:?}", release.unread);
    }

    #[test]
    fn escapes_are_undone_as_a_shell_does() {
        let release = OsRelease::parse(
            "PRETTY_NAME=\"A \\\"quoted\\\" name \\$5 \\n\"\nID=deb\\ ian\nVERSION_ID=1\"-\"'2'\\3",
        );
        assert_eq!(
            release.pretty_name.as_deref(),
            Some("A \"quoted\" name $5 \\n")
        );
        assert_eq!(release.id, "deb ian");
        assert_eq!(release.version_id.as_deref(), Some("1-23"));
    }

    #[test]
    fn lines_a_shell_would_not_assign_set_nothing_and_are_named() {
        for (text, reason) in [
            ("ID = debian", "spaces around ="),
            ("ID =debian", "spaces around ="),
            ("ID= debian", "more than one word"),
            ("ID=deb ian", "more than one word"),
            ("ID=$OTHER", "expands"),
            ("ID=\"$(cat x)\"", "expands"),
            ("ID=`x`", "expands"),
            ("ID=~", "~ expands"),
            ("ID=a:~b", "~ expands"),
            ("ID=\"debian", "not closed"),
            ("ID='debian", "not closed"),
            ("ID=a;b", "operator"),
            ("ID=a|b", "operator"),
            ("ID=debian\\", "ends the file"),
            ("export", "NAME=value"),
            ("-ID=x", "NAME=value"),
            ("1D=x", "NAME=value"),
        ] {
            let release = OsRelease::parse(&format!("ID=earlier\n{text}"));
            assert_eq!(release.id, "earlier", "{text}");
            assert_eq!(release.unread.len(), 1, "{text}");
            let error = &release.unread[0];
            assert_eq!(error.line, 2, "{text}");
            assert!(error.reason.contains(reason), "{text}: {}", error.reason);
        }
        let error = detect_os_family("ID = debian\n").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unread line 1 (ID): spaces around ="),
            "{error}"
        );
        // The literal characters a shell keeps as they are.
        let release = OsRelease::parse("ID=a~b#c*?[x]{y}!%^=,:@+\n");
        assert_eq!(release.id, "a~b#c*?[x]{y}!%^=,:@+");
    }

    #[test]
    fn unknown_or_empty_is_an_error_naming_what_was_found() {
        let error = detect_os_family("ID=gentoo\n").unwrap_err();
        assert!(error.to_string().contains("ID=\"gentoo\""), "{error}");
        let error = detect_os_family("").unwrap_err();
        assert!(error.to_string().contains("no ID"), "{error}");
        assert!(matches!(error, Error::UnknownOsFamily { .. }));
    }

    #[test]
    fn each_family_knows_its_paths_tools_and_owner() {
        let name = InstanceName::new("prod").unwrap();
        assert_eq!(
            OsFamily::Deb.nginx_site_path(&name),
            PathBuf::from("/etc/nginx/sites-available/comindwareprod")
        );
        assert_eq!(
            OsFamily::Rpm.nginx_site_path(&name),
            PathBuf::from("/etc/nginx/conf.d/comindwareprod")
        );
        assert_eq!(
            OsFamily::Alt.nginx_site_path(&name),
            PathBuf::from("/etc/nginx/sites-available.d/comindwareprod")
        );
        assert_eq!(
            OsFamily::Alt.local_package_install_argv(&["a.rpm", "b.rpm"]),
            ["apt-get", "install", "-y", "a.rpm", "b.rpm"]
        );
        assert_eq!(
            OsFamily::Deb.local_package_install_argv(&["x.deb"]),
            ["dpkg", "-i", "x.deb"]
        );
        assert_eq!(
            OsFamily::Rpm.local_package_install_argv::<&str>(&[]),
            ["rpm", "-i"]
        );
        assert_eq!(OsFamily::Deb.web_owner().to_string(), "www-data:www-data");
        assert_eq!(OsFamily::Rpm.web_owner().to_string(), "nginx:nginx");
        assert_eq!(OsFamily::Alt.web_owner().to_string(), "_nginx:_nginx");
    }

    #[test]
    fn family_names_round_trip() {
        for family in OsFamily::ALL {
            assert_eq!(family.as_str().parse::<OsFamily>().unwrap(), family);
        }
        assert!("suse".parse::<OsFamily>().is_err());
    }

    fn quoting() -> impl Strategy<Value = (&'static str, &'static str)> {
        prop_oneof![Just(("", "")), Just(("\"", "\"")), Just(("'", "'"))]
    }

    proptest! {
        /// However an os-release file is laid out, a known ID gives its family.
        #[test]
        fn known_id_is_found_in_any_layout(
            index in 0..FAMILY_BY_ID.len(),
            (open, close) in quoting(),
            crlf in any::<bool>(),
            noise in proptest::collection::vec("[A-Z_]{1,10}=[a-z0-9 .]{0,12}", 0..5),
            comment in "#[ -~]{0,30}",
        ) {
            let (id, family) = FAMILY_BY_ID[index];
            let end = if crlf { "\r\n" } else { "\n" };
            // Noise must not set ID or ID_LIKE itself.
            let mut lines: Vec<String> = noise
                .into_iter()
                .filter(|line| !line.starts_with("ID=") && !line.starts_with("ID_LIKE="))
                .collect();
            lines.insert(lines.len() / 2, format!("ID={open}{id}{close}"));
            lines.insert(0, comment);
            lines.push(String::new());
            let text = lines.join(end);
            prop_assert_eq!(detect_os_family(&text).unwrap().family, family);
        }

        /// Parsing never panics, whatever the bytes.
        #[test]
        fn parse_never_panics(text in "\\PC{0,200}") {
            let _ = detect_os_family(&text);
        }
    }
}
