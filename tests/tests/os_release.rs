//! os-release files read as a shell reads them: the parser against `dash` and
//! `bash` sourcing the same file, on tables, generated files and a corpus of
//! real files (tests/corpus/os-release, see SOURCE.md there).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cmw_upgrade_core::os::{parse_os_release_assignments, OsRelease};
use cmw_upgrade_core::{detect_os_family, ErrorKind, OsFamily};
use proptest::prelude::*;

const SHELLS: [&str; 2] = ["dash", "bash"];

/// What `shell` holds in each of `names` after `. FILE` (`None` when unset),
/// or `None` when the shell stopped on the file (a syntax error).
fn sourced(shell: &str, file: &Path, names: &[&str]) -> Option<BTreeMap<String, Option<String>>> {
    let mut script = String::from(". \"$1\" 2>/dev/null\n");
    for name in names {
        script.push_str(&format!(
            "printf '%s:%s\\0' \"${{{name}+set}}\" \"${name}\"\n"
        ));
    }
    let output = Command::new(shell)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("-c")
        .arg(&script)
        .arg(shell)
        .arg(file)
        .output()
        .unwrap();
    if output.stdout.is_empty() {
        return None;
    }
    let mut fields = output.stdout.split(|byte| *byte == 0);
    Some(
        names
            .iter()
            .map(|name| {
                let field = String::from_utf8(fields.next().unwrap().to_vec()).unwrap();
                let (set, value) = field.split_once(':').unwrap();
                ((*name).to_owned(), (set == "set").then(|| value.to_owned()))
            })
            .collect(),
    )
}

/// What the parser assigns to each of `names` (the last assignment wins, as in a shell).
fn parsed(text: &str, names: &[&str]) -> BTreeMap<String, Option<String>> {
    let mut values: BTreeMap<String, Option<String>> = names
        .iter()
        .map(|name| ((*name).to_owned(), None))
        .collect();
    for assignment in parse_os_release_assignments(text).into_iter().flatten() {
        if let Some(value) = values.get_mut(&assignment.name) {
            *value = Some(assignment.value);
        }
    }
    values
}

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

/// Every line parses, and each name holds what both shells hold.
fn assert_agrees_with_shells(text: &str, names: &[&str]) {
    let errors: Vec<_> = parse_os_release_assignments(text)
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert!(errors.is_empty(), "{text:?}: {errors:?}");
    let file = write_temp(text);
    let ours = parsed(text, names);
    for shell in SHELLS {
        assert_eq!(
            sourced(shell, file.path(), names),
            Some(ours.clone()),
            "{shell} on {text:?}"
        );
    }
}

/// (A `\r` before a line end, which a shell keeps, is the parser's one
/// leniency besides a byte-order mark: the unit tests cover both.)
#[test]
fn the_parser_reads_what_shells_read() {
    for text in [
        "ID=debian",
        "ID=\"debian\" # a comment\n",
        "ID='debian'#not-a-comment\n",
        "ID=debian#not-a-comment",
        "export ID=astra\nexport  VERSION_ID=\"1.7_x86-64\"\n",
        "\t  ID=ubuntu  \n",
        "ID=a\nID=b\n",
        "ID=\"a \\\"quoted\\\" \\$5 \\\\ \\n \\' text\"",
        "ID='single \\ \" $x `y`'",
        "ID=deb\\ ian\\$\\\"\\'",
        "ID=\"two\nlines\"\nVERSION_ID='also\ntwo'",
        "ID=\"con\\\ntinued\"",
        "ID=con\\\ntinued",
        "ID=\"a\"'b'c\"d\"",
        "ID=",
        "ID=''",
        "ID=#x",
        "ID= # empty, then a comment",
        "ID=a~b#c*?[x]{y}!%^=,:@+",
        "ID=\"Астра Линукс\"",
        "# only a comment\n\n",
    ] {
        assert_agrees_with_shells(text, &["ID", "VERSION_ID"]);
    }
}

/// Lines a shell does not take as a plain assignment are errors that set
/// nothing; where the shell also assigns nothing (or stops on the file), it says so too.
#[test]
fn lines_that_are_not_plain_assignments_are_errors() {
    for (text, shell_assigns_nothing) in [
        ("ID = debian", true),
        ("ID =debian", true),
        ("ID= debian", true),
        ("ID=deb ian", true),
        ("ID=\"unterminated", true),
        ("ID=a;b", false),
        ("ID=$HOME", false),
        ("ID=\"$(echo x)\"", false),
        ("ID=`echo x`", false),
        ("ID=~", false),
        ("ID=a:~", false),
    ] {
        let results = parse_os_release_assignments(text);
        assert_eq!(results.len(), 1, "{text}");
        let error = results[0].as_ref().unwrap_err();
        assert_eq!(
            (error.line, error.name.as_deref()),
            (1, Some("ID")),
            "{text}"
        );
        assert_eq!(parsed(text, &["ID"])["ID"], None);
        if shell_assigns_nothing {
            let file = write_temp(text);
            for shell in SHELLS {
                let unset = sourced(shell, file.path(), &["ID"])
                    .is_none_or(|values| values["ID"].is_none());
                assert!(unset, "{shell}: {text}");
            }
        }
    }
    let error = detect_os_family("ID = astra\nID_LIKE=\"deb ian\n").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnknownOsFamily);
    let message = error.to_string();
    assert!(message.contains("unread line 1 (ID)"), "{message}");
    assert!(message.contains("unread line 2 (ID_LIKE)"), "{message}");
}

fn names() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("ID"),
        Just("VERSION_ID"),
        Just("ID_LIKE"),
        Just("NAME"),
        Just("X_1")
    ]
}

/// One part of a value, written as a file would hold it.
fn value_part() -> impl Strategy<Value = String> {
    prop_oneof![
        // Bare: characters that are literal outside quotes (not first: `#`, `~`).
        "[A-Za-z0-9._/,+@%=*?\\[\\]-]{1,8}",
        // Single quotes: everything literal but the quote itself.
        "[ -&(-~\n\u{430}-\u{44f}]{0,10}".prop_map(|text| format!("'{text}'")),
        // Double quotes: the four escapes, a kept backslash, spaces, new lines.
        proptest::collection::vec(
            prop_oneof![
                "[ !#%-\\[\\]-_a-~\n\u{430}-\u{44f}]{1,4}",
                Just("\\\"".to_owned()),
                Just("\\\\".to_owned()),
                Just("\\$".to_owned()),
                Just("\\`".to_owned()),
                Just("\\n".to_owned()),
                Just("\\\n".to_owned()),
            ],
            0..5
        )
        .prop_map(|parts| format!("\"{}\"", parts.concat())),
        // A backslash outside quotes takes the next character literally.
        "[ -~]".prop_map(|c| format!("\\{c}")),
    ]
}

fn assignment_line() -> impl Strategy<Value = String> {
    (
        "[ \t]{0,2}",
        any::<bool>(),
        names(),
        proptest::collection::vec(value_part(), 0..4),
        prop_oneof![Just(String::new()), "[ \t]{1,2}", "[ \t]{1,2}#[ -~]{0,10}"],
    )
        .prop_map(|(indent, export, name, parts, end)| {
            let export = if export { "export " } else { "" };
            format!("{indent}{export}{name}={}{end}", parts.concat())
        })
}

fn os_release_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => assignment_line(),
            1 => Just(String::new()),
            1 => "#[ -~]{0,20}",
        ],
        0..8,
    )
    .prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Generated files: every assignment parses, and each variable holds what
    /// dash and bash hold after sourcing the file.
    #[test]
    fn generated_files_read_as_shells_read_them(text in os_release_text()) {
        assert_agrees_with_shells(&text, &["ID", "VERSION_ID", "ID_LIKE", "NAME", "X_1"]);
    }

    /// A defect that turns a line into something else is an error for that
    /// line only: the lines around it are still read.
    #[test]
    fn a_defective_line_is_an_error_and_the_others_are_read(
        before in assignment_line(),
        after in assignment_line(),
        defect in prop_oneof![
            Just("ID = x"), Just("ID=a b"), Just("ID=$x"), Just("ID=\"$x\""),
            Just("ID=`x`"), Just("ID=~x"), Just("ID=a&"), Just("ID=(x)"), Just("I D=x"),
        ],
    ) {
        let text = format!("{before}\n{defect}\n{after}");
        let results = parse_os_release_assignments(&text);
        let errors: Vec<_> = results.iter().filter_map(|result| result.as_ref().err()).collect();
        prop_assert_eq!(errors.len(), 1, "{:?}", results);
        let defect_line = 2 + before.matches('\n').count();
        prop_assert_eq!(errors[0].line, defect_line);
        prop_assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 2);
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/os-release")
}

/// Every real file of the corpus: ID and VERSION_ID as the shells read them,
/// and the family of each distribution the tool supports (none for the others).
#[test]
fn the_corpus_reads_as_shells_read_it_and_gives_the_families() {
    let families: BTreeMap<&str, Option<OsFamily>> = [
        ("altlinux10", Some(OsFamily::Alt)),
        ("debian8", Some(OsFamily::Deb)),
        ("debian10", Some(OsFamily::Deb)),
        ("debian13", Some(OsFamily::Deb)),
        ("ubuntu14", Some(OsFamily::Deb)),
        ("ubuntu24", Some(OsFamily::Deb)),
        ("ubuntu2604", Some(OsFamily::Deb)),
        ("raspbian8", Some(OsFamily::Deb)),
        ("linuxmint17", Some(OsFamily::Deb)),
        ("kali", Some(OsFamily::Deb)),
        ("bttcb1", Some(OsFamily::Deb)),
        ("centos7", Some(OsFamily::Rpm)),
        ("rhel9", Some(OsFamily::Rpm)),
        ("rocky9", Some(OsFamily::Rpm)),
        ("rocky10", Some(OsFamily::Rpm)),
        ("almalinux10", Some(OsFamily::Rpm)),
        ("oracle7", Some(OsFamily::Rpm)),
        ("cloudlinux7", Some(OsFamily::Rpm)),
        ("fedora42", Some(OsFamily::Rpm)),
        ("gentoo", None),
        ("alpine", None),
        ("opensuse15", None),
        ("openelec6", None),
        ("slackware14", None),
        ("arch", None),
    ]
    .into_iter()
    .collect();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name == "LICENSE" || name == "SOURCE.md" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_agrees_with_shells(&text, &["ID", "VERSION_ID", "ID_LIKE"]);
        let expected = families
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} has no expected family in this test"));
        match (detect_os_family(&text), expected) {
            (Ok(info), Some(family)) => assert_eq!(info.family, *family, "{name}"),
            (Err(error), None) => assert_eq!(error.kind(), ErrorKind::UnknownOsFamily, "{name}"),
            (result, expected) => panic!("{name}: {result:?}, expected {expected:?}"),
        }
        assert!(OsRelease::parse(&text).unread.is_empty(), "{name}");
        seen.push(name);
    }
    seen.sort();
    let mut listed: Vec<&str> = families.keys().copied().collect();
    listed.sort();
    assert_eq!(seen, listed, "the corpus and the table list the same files");
}
