//! The YAML config migration on generated files: quoted keys, a space before the
//! colon, every scalar style (plain, quoted, on several lines, literal and folded
//! blocks with chomping and indentation indicators), flow and block collections,
//! anchors and aliases, comments after values, commented-out directives, CRLF
//! line ends and a BOM.
//!
//! The oracle is the generator's own model of what each file means, not the
//! migration's reader: the result must parse (with `yaml_serde`) to the new
//! file's model overridden by the old file's, or the migration must refuse with
//! a config error naming a line that exists in the file it names.

use cmw_upgrade_core::config::yaml_merge::migrate_yaml;
use cmw_upgrade_core::Error;
use proptest::prelude::*;
use yaml_serde::{Mapping, Number, Value};

/// Directive names: dotted, dashed, and one whose value is masked in reports.
const KEYS: &[&str] = &["a", "b.c", "d-e", "journal.password", "f_g"];

#[derive(Debug, Clone, Copy)]
enum KeyStyle {
    Plain,
    SpaceBeforeColon,
    Double,
    Single,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Chomp {
    Clip,
    Strip,
    Keep,
}

#[derive(Debug, Clone)]
enum Spec {
    Empty,
    Plain(String),
    Number(u32),
    Single(String),
    Double(String),
    PlainLines(String, String),
    SingleLines(String, String),
    DoubleLines(String, String),
    Literal {
        lines: Vec<String>,
        chomp: Chomp,
        /// `|2` with the first line indented one more space than the rest.
        indicator: bool,
        trailing_blank: bool,
    },
    Folded {
        lines: Vec<String>,
        chomp: Chomp,
    },
    FlowSeq(Vec<String>, bool),
    FlowMap(Vec<(String, u32)>),
    List(Vec<String>),
    Nested(Vec<(String, String)>),
    Anchored(String),
    Alias,
}

#[derive(Debug, Clone)]
enum Form {
    Active(KeyStyle, Spec, bool),
    CommentedOut(String),
    CommentLine,
}

#[derive(Debug, Clone)]
struct Item {
    key: usize,
    form: Form,
}

fn word() -> impl Strategy<Value = String> {
    "[a-z]{1,6}"
}

fn chomp() -> impl Strategy<Value = Chomp> {
    prop_oneof![Just(Chomp::Clip), Just(Chomp::Strip), Just(Chomp::Keep)]
}

fn block_lines() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[a-z]{1,6}( [a-z]{1,6})?", 1..4)
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        Just(Spec::Empty),
        "[a-z0-9/._-]{0,8}".prop_map(Spec::Plain),
        (1u32..100_000).prop_map(Spec::Number),
        "[ -~]{0,12}".prop_map(Spec::Single),
        "[ -~]{0,12}".prop_map(Spec::Double),
        (word(), word()).prop_map(|(a, b)| Spec::PlainLines(a, b)),
        (word(), word()).prop_map(|(a, b)| Spec::SingleLines(a, b)),
        (word(), word()).prop_map(|(a, b)| Spec::DoubleLines(a, b)),
        (block_lines(), chomp(), any::<bool>(), any::<bool>()).prop_map(
            |(lines, chomp, indicator, trailing_blank)| Spec::Literal {
                lines,
                chomp,
                indicator,
                trailing_blank
            }
        ),
        (block_lines(), chomp()).prop_map(|(lines, chomp)| Spec::Folded { lines, chomp }),
        (proptest::collection::vec(word(), 0..3), any::<bool>())
            .prop_map(|(words, multi)| Spec::FlowSeq(words, multi)),
        proptest::collection::vec(("[a-z]{1,3}", 0u32..100), 0..3).prop_map(Spec::FlowMap),
        proptest::collection::vec(word(), 1..3).prop_map(Spec::List),
        proptest::collection::vec(("[a-z]{1,3}", word()), 1..3).prop_map(Spec::Nested),
        word().prop_map(Spec::Anchored),
        Just(Spec::Alias),
    ]
}

fn key_style() -> impl Strategy<Value = KeyStyle> {
    prop_oneof![
        Just(KeyStyle::Plain),
        Just(KeyStyle::SpaceBeforeColon),
        Just(KeyStyle::Double),
        Just(KeyStyle::Single),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    let form = prop_oneof![
        6 => (key_style(), spec(), any::<bool>())
            .prop_map(|(style, spec, comment)| Form::Active(style, spec, comment)),
        1 => word().prop_map(Form::CommentedOut),
        1 => Just(Form::CommentLine),
    ];
    (0..KEYS.len(), form).prop_map(|(key, form)| Item { key, form })
}

fn config() -> impl Strategy<Value = Vec<Item>> {
    proptest::collection::vec(item(), 0..8)
}

fn string(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

fn double_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A block scalar's lines and what they mean before chomping.
fn block_body(lines: &[String], folded: bool, indent_first: bool, end: &str) -> (String, String) {
    let mut body = String::new();
    let mut content = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let extra = if indent_first && index == 0 { " " } else { "" };
        body.push_str(&format!("{end}  {extra}{line}"));
        content.push(format!("{extra}{line}"));
    }
    let joined = content.join(if folded { " " } else { "\n" });
    (body, joined)
}

fn chomped(content: String, chomp: Chomp, trailing_blank: bool) -> String {
    match chomp {
        Chomp::Strip => content,
        Chomp::Clip => content + "\n",
        Chomp::Keep if trailing_blank => content + "\n\n",
        Chomp::Keep => content + "\n",
    }
}

/// The text after `key:` and what it means; `comment` adds one where it is allowed.
fn value_text(
    spec: &Spec,
    comment: bool,
    end: &str,
    anchors: &mut Vec<(String, Value)>,
) -> (String, Value) {
    let note = if comment { "  # note" } else { "" };
    let (text, value) = match spec {
        Spec::Empty => (String::new(), Value::Null),
        Spec::Plain(word) => (format!(" v{word}"), string(format!("v{word}"))),
        Spec::Number(number) => (format!(" {number}"), Value::Number(Number::from(*number))),
        Spec::Single(text) => (
            format!(" '{}'", text.replace('\'', "''")),
            string(text.as_str()),
        ),
        Spec::Double(text) => (format!(" {}", double_quote(text)), string(text.as_str())),
        Spec::PlainLines(a, b) => (format!(" v{a}{end}  {b}"), string(format!("v{a} {b}"))),
        Spec::SingleLines(a, b) => (format!(" '{a}{end}  {b}'"), string(format!("{a} {b}"))),
        Spec::DoubleLines(a, b) => (format!(" \"{a}{end}  {b}\""), string(format!("{a} {b}"))),
        Spec::Literal {
            lines,
            chomp,
            indicator,
            trailing_blank,
        } => {
            let (body, content) = block_body(lines, false, *indicator, end);
            let indicator_text = if *indicator { "2" } else { "" };
            let blank = if *trailing_blank { end } else { "" };
            return (
                format!(
                    " |{indicator_text}{}{note}{body}{blank}",
                    chomp_text(*chomp)
                ),
                string(chomped(content, *chomp, *trailing_blank)),
            );
        }
        Spec::Folded { lines, chomp } => {
            let (body, content) = block_body(lines, true, false, end);
            return (
                format!(" >{}{note}{body}", chomp_text(*chomp)),
                string(chomped(content, *chomp, false)),
            );
        }
        Spec::FlowSeq(words, multi) => {
            let items: Vec<String> = words.iter().map(|word| format!("v{word}")).collect();
            let separator = if *multi {
                format!(",{end}  ")
            } else {
                ", ".to_owned()
            };
            (
                format!(" [{}]", items.join(&separator)),
                Value::Sequence(items.into_iter().map(Value::String).collect()),
            )
        }
        Spec::FlowMap(pairs) => {
            let mut mapping = Mapping::new();
            let mut parts = Vec::new();
            for (key, number) in pairs {
                let key = format!("k{key}");
                if !mapping.contains_key(key.as_str()) {
                    parts.push(format!("{key}: {number}"));
                    mapping.insert(string(key), Value::Number(Number::from(*number)));
                }
            }
            (
                format!(" {{{}}}", parts.join(", ")),
                Value::Mapping(mapping),
            )
        }
        Spec::List(words) => {
            let body: String = words
                .iter()
                .map(|word| format!("{end}  - v{word}"))
                .collect();
            return (
                format!("{note}{body}"),
                Value::Sequence(
                    words
                        .iter()
                        .map(|word| string(format!("v{word}")))
                        .collect(),
                ),
            );
        }
        Spec::Nested(pairs) => {
            let mut mapping = Mapping::new();
            let mut body = String::new();
            for (key, word) in pairs {
                if !mapping.contains_key(format!("k{key}").as_str()) {
                    mapping.insert(string(format!("k{key}")), string(format!("v{word}")));
                    body.push_str(&format!("{end}  k{key}: v{word}"));
                }
            }
            return (format!("{note}{body}"), Value::Mapping(mapping));
        }
        Spec::Anchored(word) => {
            let name = format!("anchor{}", anchors.len());
            anchors.push((name.clone(), string(format!("v{word}"))));
            (format!(" &{name} v{word}"), string(format!("v{word}")))
        }
        Spec::Alias => match anchors.last() {
            Some((name, value)) => (format!(" *{name}"), value.clone()),
            None => (" valias".to_owned(), string("valias")),
        },
    };
    (format!("{text}{note}"), value)
}

fn chomp_text(chomp: Chomp) -> &'static str {
    match chomp {
        Chomp::Clip => "",
        Chomp::Strip => "-",
        Chomp::Keep => "+",
    }
}

/// A config text from items, and the mapping it means.
fn render(items: &[Item], crlf: bool, bom: bool) -> (String, Mapping) {
    let end = if crlf { "\r\n" } else { "\n" };
    let mut text = String::new();
    if bom {
        text.push('\u{feff}');
    }
    text.push_str(&format!("# a config{end}"));
    let mut model = Mapping::new();
    let mut anchors = Vec::new();
    for item in items {
        let key = KEYS[item.key];
        match &item.form {
            Form::CommentLine => text.push_str(&format!("# about {key}{end}")),
            Form::CommentedOut(word) => text.push_str(&format!("#{key}: v{word}{end}")),
            Form::Active(style, spec, comment) => {
                if model.contains_key(key) {
                    continue;
                }
                let written = match style {
                    KeyStyle::Plain => format!("{key}:"),
                    KeyStyle::SpaceBeforeColon => format!("{key} :"),
                    KeyStyle::Double => format!("\"{key}\":"),
                    KeyStyle::Single => format!("'{key}':"),
                };
                let (value_text, value) = value_text(spec, *comment, end, &mut anchors);
                text.push_str(&format!("{written}{value_text}{end}"));
                model.insert(string(key), value);
            }
        }
    }
    (text, model)
}

fn parse(text: &str) -> Mapping {
    let value: Value = yaml_serde::from_str(text.strip_prefix('\u{feff}').unwrap_or(text)).unwrap();
    match value {
        Value::Mapping(mapping) => mapping,
        Value::Null => Mapping::new(),
        other => panic!("not a mapping: {other:?}"),
    }
}

/// What `migrate_yaml` must produce or refuse: a refusal is a config error naming
/// the new file or the old one, with a line that exists in that file.
fn assert_refusal_names_a_line(error: &Error, file: &str, old: &str, new: &str) {
    let Error::ConfigParse { path, line, .. } = error else {
        panic!("not a config error: {error}");
    };
    let path = path.to_string_lossy();
    let text = if path == format!("old {file}") {
        old
    } else {
        assert_eq!(path, file, "{error}");
        new
    };
    let line = line.unwrap_or_else(|| panic!("no line: {error}"));
    assert!(
        (1..=text.lines().count().max(1)).contains(&line),
        "line {line} is not in the file: {error}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Carried correctly (the result means the new file overridden by the old one)
    /// or refused naming a line of the input; carried again, nothing changes.
    #[test]
    fn carried_as_the_model_says_or_refused_with_a_line(
        old in config(),
        new in config(),
        old_crlf in any::<bool>(),
        new_crlf in any::<bool>(),
        old_bom in any::<bool>(),
        new_bom in any::<bool>(),
    ) {
        let (old_text, old_model) = render(&old, old_crlf, old_bom);
        let (new_text, new_model) = render(&new, new_crlf, new_bom);
        // The generator's model is what YAML reads: the oracle is sound.
        prop_assert_eq!(&parse(&old_text), &old_model, "old:\n{}", old_text);
        prop_assert_eq!(&parse(&new_text), &new_model, "new:\n{}", new_text);
        let mut expected = new_model.clone();
        for (key, value) in old_model {
            expected.insert(key, value);
        }
        match migrate_yaml("f.yml", Some(&old_text), &new_text, &[], "now") {
            Ok(migration) => {
                prop_assert_eq!(
                    &parse(&migration.text),
                    &expected,
                    "old:\n{}\nnew:\n{}\nresult:\n{}",
                    old_text,
                    new_text,
                    migration.text
                );
                prop_assert_eq!(migration.text.starts_with('\u{feff}'), new_bom);
                for line in new_text.lines().filter(|line| line.starts_with("# about")) {
                    prop_assert!(migration.text.lines().any(|l| l == line), "lost {:?}", line);
                }
                let again = migrate_yaml("f.yml", Some(&old_text), &migration.text, &[], "now");
                prop_assert_eq!(again.map(|m| m.text).ok(), Some(migration.text));
            }
            Err(error) => assert_refusal_names_a_line(&error, "f.yml", &old_text, &new_text),
        }
    }

    /// Arbitrary text never makes it panic; an Ok result holds every value the
    /// old file sets and the new file's others, as YAML reads them.
    #[test]
    fn never_panics_on_arbitrary_text(
        old in prop_oneof!["\\PC{0,200}", "[a-c.:#'\"|>+\\-\\[\\]{},&*! \\n\\r\\t]{0,160}"],
        new in prop_oneof!["\\PC{0,200}", "[a-c.:#'\"|>+\\-\\[\\]{},&*! \\n\\r\\t]{0,160}"],
    ) {
        match migrate_yaml("f.yml", Some(&old), &new, &[], "now") {
            Ok(migration) => {
                let old_model = parse(&old);
                let mut expected = parse(&new);
                for (key, value) in old_model {
                    if key.as_str() != Some("version") {
                        expected.insert(key, value);
                    }
                }
                prop_assert_eq!(parse(&migration.text), expected);
            }
            Err(error) => {
                let Error::ConfigParse { path, .. } = &error else {
                    panic!("not a config error: {error}");
                };
                let path = path.to_string_lossy();
                prop_assert!(path == "f.yml" || path == "old f.yml", "{}", error);
            }
        }
    }
}
