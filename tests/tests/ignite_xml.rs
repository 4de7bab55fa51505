//! `Ignite.config` migration on public Spring/Ignite configs
//! (`tests/corpus/ignite-xml`) and on generated ones, checked against an
//! independent DOM read of the same texts (roxmltree).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use cmw_upgrade_core::config::xml::{bean_properties, migrate_ignite, property_values};
use cmw_upgrade_core::config::{raw_text, ChangeAction};
use proptest::prelude::*;

/// Bean identity and property name → value, read from a DOM.
///
/// Identities follow the rules the migration documents, applied here on a
/// tree: `#id` for a bean with an `id`/`name` attribute; a top-level bean by
/// its short class name (`Class`, `Class[2]`, …); a property's bean by the
/// path of property names; a list's bean by `[name=…]` when it has a `name`
/// property, else by its position among the list's elements; a map entry's by
/// `[key=…]`.
mod oracle {
    use super::*;
    use roxmltree::{Document, Node, ParsingOptions};

    pub type Values = BTreeMap<(String, String), String>;

    const COLLECTIONS: &[&str] = &["list", "set", "array", "map", "props", "properties"];

    pub fn parse(text: &str) -> Result<Document<'_>, String> {
        let options = ParsingOptions {
            allow_dtd: true,
            ..ParsingOptions::default()
        };
        Document::parse_with_options(text.strip_prefix('\u{feff}').unwrap_or(text), options)
            .map_err(|error| error.to_string())
    }

    pub fn values(text: &str) -> Result<Values, String> {
        let document = parse(text)?;
        let mut values = Values::new();
        let mut top_level = HashMap::new();
        outside_beans(document.root_element(), &mut top_level, &mut values);
        Ok(values)
    }

    fn local<'a>(node: Node<'a, '_>) -> &'a str {
        node.tag_name().name()
    }

    fn elements<'a, 'b>(node: Node<'a, 'b>) -> impl Iterator<Item = Node<'a, 'b>> {
        node.children().filter(Node::is_element)
    }

    fn id(bean: Node<'_, '_>) -> Option<String> {
        bean.attribute("id")
            .or_else(|| bean.attribute("name"))
            .map(|id| format!("#{id}"))
    }

    /// A property's single value: its `value` or `ref` attribute, or its only `<value>` element's text.
    fn scalar(property: Node<'_, '_>) -> Option<String> {
        if let Some(value) = property
            .attribute("value")
            .or_else(|| property.attribute("ref"))
        {
            return Some(value.to_owned());
        }
        let mut children = elements(property);
        let only = children.next().filter(|_| children.next().is_none())?;
        (local(only) == "value" && elements(only).next().is_none())
            .then(|| only.text().unwrap_or("").to_owned())
    }

    fn name_property(bean: Node<'_, '_>) -> Option<String> {
        elements(bean)
            .find(|child| local(*child) == "property" && child.attribute("name") == Some("name"))
            .and_then(|property| {
                property
                    .attribute("value")
                    .map(str::to_owned)
                    .or_else(|| scalar(property).filter(|_| property.attribute("ref").is_none()))
            })
    }

    fn outside_beans(
        node: Node<'_, '_>,
        top_level: &mut HashMap<String, usize>,
        values: &mut Values,
    ) {
        for child in elements(node) {
            match local(child) {
                "bean" => {
                    let identity = id(child).unwrap_or_else(|| {
                        let class = child.attribute("class").unwrap_or("");
                        let class = class.rsplit('.').next().unwrap_or(class).to_owned();
                        let seen = top_level.entry(class.clone()).or_default();
                        *seen += 1;
                        if *seen == 1 {
                            class
                        } else {
                            format!("{class}[{seen}]")
                        }
                    });
                    bean(child, &identity, values);
                }
                name if COLLECTIONS.contains(&name) => {
                    let path = child
                        .attribute("id")
                        .map(|id| format!("#{id}"))
                        .unwrap_or_default();
                    collection(child, &path, values);
                }
                _ => outside_beans(child, top_level, values),
            }
        }
    }

    fn bean(node: Node<'_, '_>, identity: &str, values: &mut Values) {
        for attribute in node.attributes() {
            if attribute.namespace() == Some("http://www.springframework.org/schema/p")
                && !attribute.name().ends_with("-ref")
            {
                values.insert(
                    (identity.to_owned(), attribute.name().to_owned()),
                    attribute.value().to_owned(),
                );
            }
        }
        for child in elements(node) {
            if local(child) != "property" {
                below(child, &format!("{identity}/{}", local(child)), values);
                continue;
            }
            let name = child.attribute("name").unwrap_or("");
            match scalar(child) {
                Some(value) => {
                    values.insert((identity.to_owned(), name.to_owned()), value);
                }
                None => {
                    for grandchild in elements(child) {
                        below(grandchild, &format!("{identity}/{name}"), values);
                    }
                }
            }
        }
    }

    /// An element that is a property's value (or inside one), at `path`.
    fn below(node: Node<'_, '_>, path: &str, values: &mut Values) {
        match local(node) {
            "bean" => bean(node, &id(node).unwrap_or_else(|| path.to_owned()), values),
            name if COLLECTIONS.contains(&name) => collection(node, path, values),
            name => {
                for child in elements(node) {
                    below(child, &format!("{path}/{name}"), values);
                }
            }
        }
    }

    fn collection(node: Node<'_, '_>, path: &str, values: &mut Values) {
        for (index, item) in elements(node).enumerate() {
            let position = format!("{path}[{}]", index + 1);
            match local(item) {
                "bean" => {
                    let identity = id(item)
                        .or_else(|| name_property(item).map(|name| format!("{path}[name={name}]")))
                        .unwrap_or(position);
                    bean(item, &identity, values);
                }
                "entry" => {
                    let key = item
                        .attribute("key")
                        .or_else(|| item.attribute("key-ref"))
                        .unwrap_or("");
                    for child in elements(item) {
                        below(child, &format!("{path}[key={key}]"), values);
                    }
                }
                _ => below(item, &position, values),
            }
        }
    }
}

fn corpus() -> &'static [(String, Vec<u8>)] {
    static CORPUS: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/ignite-xml");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "xml"))
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        files.sort();
        assert!(files.len() >= 20, "the corpus is at {}", folder.display());
        files
    })
}

#[test]
fn every_corpus_file_round_trips_byte_for_byte() {
    for (name, bytes) in corpus() {
        let text = raw_text::decode(name, bytes).unwrap();
        let migration =
            migrate_ignite(name, &text, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            raw_text::encode(&migration.text) == *bytes,
            "{name} changed"
        );
        assert!(
            migration.warnings.is_empty(),
            "{name}: {:?}",
            migration.warnings
        );
        assert!(
            migration
                .changes
                .iter()
                .all(|c| c.action == ChangeAction::Kept),
            "{name}"
        );
    }
}

#[test]
fn the_parser_reads_every_corpus_file_as_a_dom_does() {
    for (name, bytes) in corpus() {
        let text = raw_text::decode(name, bytes).unwrap();
        bean_properties(name, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = property_values(name, &text).unwrap();
        let theirs = oracle::values(&text).unwrap();
        assert_eq!(ours, theirs, "{name}");
    }
}

/// How a corpus file was perturbed.
struct Perturbation {
    /// The perturbed text.
    text: String,
    /// How many lists of named beans were reversed.
    lists_reversed: usize,
    /// How many properties hold a list of values that was changed.
    value_lists_changed: usize,
}

/// `text` with every property value and every list's `<value>` changed, and
/// the beans of each list whose beans all have a `name` property in reverse order.
fn perturbed(text: &str) -> Perturbation {
    let document = oracle::parse(text).unwrap();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut value_lists = std::collections::HashSet::new();
    for (index, node) in document.descendants().enumerate() {
        let in_collection = node
            .parent_element()
            .is_some_and(|parent| matches!(parent.tag_name().name(), "list" | "set" | "array"));
        if node.tag_name().name() == "value" && in_collection {
            if let Some(text) = node.first_child().filter(|c| c.is_text()) {
                edits.push((text.range(), format!("perturbed item {index}")));
                let property = node.ancestors().find(|a| a.tag_name().name() == "property");
                value_lists.insert(property.map(|p| p.range().start));
            }
            continue;
        }
        if node.tag_name().name() != "property" {
            continue;
        }
        let in_list = node
            .parent_element()
            .and_then(|bean| bean.parent_element())
            .is_some_and(|parent| !matches!(parent.tag_name().name(), "property" | "beans"));
        if node.attribute("name") == Some("name") && in_list {
            continue; // It names its bean: changing it makes another bean.
        }
        if let Some(attribute) = node.attributes().find(|a| a.name() == "value") {
            edits.push((
                attribute.range_value(),
                format!("perturbed {index} &amp; \"more\"").replace('"', "&quot;"),
            ));
        }
    }
    let changed = apply(text, edits);
    let document = oracle::parse(&changed).unwrap();
    let mut edits = Vec::new();
    let mut reversed = 0;
    for list in document
        .descendants()
        .filter(|n| n.tag_name().name() == "list")
    {
        let items: Vec<_> = list.children().filter(|n| n.is_element()).collect();
        let named = items.iter().all(|item| {
            item.tag_name().name() == "bean"
                && item.children().any(|p| {
                    p.tag_name().name() == "property" && p.attribute("name") == Some("name")
                })
        });
        if items.len() > 1 && named {
            reversed += 1;
            for (item, other) in items.iter().zip(items.iter().rev()) {
                edits.push((item.range(), changed[other.range()].to_owned()));
            }
        }
    }
    Perturbation {
        text: apply(&changed, edits),
        lists_reversed: reversed,
        value_lists_changed: value_lists.len(),
    }
}

fn apply(text: &str, mut edits: Vec<(std::ops::Range<usize>, String)>) -> String {
    edits.sort_by_key(|(range, _)| range.start);
    let mut out = String::new();
    let mut position = 0;
    for (range, replacement) in edits {
        out.push_str(&text[position..range.start]);
        out.push_str(&replacement);
        position = range.end;
    }
    out.push_str(&text[position..]);
    out
}

#[test]
fn values_come_back_from_a_perturbed_copy_by_identity() {
    let mut lists_reversed = 0;
    let mut value_lists_changed = 0;
    for (name, bytes) in corpus() {
        let text = raw_text::decode(name, bytes).unwrap();
        let perturbation = perturbed(&text);
        let new = perturbation.text;
        lists_reversed += perturbation.lists_reversed;
        value_lists_changed += perturbation.value_lists_changed;
        let values = oracle::values(&text).unwrap();
        assert!(
            !values.is_empty() && oracle::values(&new).unwrap() != values,
            "{name}: nothing perturbed"
        );
        let migration = migrate_ignite(name, &text, &new).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(oracle::values(&migration.text).unwrap(), values, "{name}");
        assert!(
            migration
                .changes
                .iter()
                .any(|c| c.action == ChangeAction::Set),
            "{name}"
        );
        // A list of values is not carried, and each one that differs is reported.
        let (lists, others): (Vec<&String>, Vec<&String>) = migration
            .warnings
            .iter()
            .partition(|w| w.contains("was not carried: it holds a list"));
        assert_eq!(
            lists.len(),
            perturbation.value_lists_changed,
            "{name}: {lists:?}"
        );
        assert!(
            others.iter().all(|w| w.contains("matched by its position")),
            "{name}: {others:?}"
        );
        // The new file's order stands: only values moved.
        let again = migrate_ignite(name, &new, &migration.text).unwrap();
        assert_eq!(
            oracle::values(&again.text).unwrap(),
            oracle::values(&new).unwrap(),
            "{name}"
        );
    }
    assert!(lists_reversed > 0 && value_lists_changed > 0);
}

#[derive(Debug, Clone)]
struct Region {
    name: String,
    size: String,
    double_quoted: bool,
}

fn region_strategy() -> impl Strategy<Value = Region> {
    (
        "[A-Za-z_][A-Za-z0-9_]{0,6}",
        prop_oneof![
            "[0-9]{1,12}".boxed(),
            "#\\{[0-9]{1,2}L \\* 1024 \\* 1024\\}".boxed(),
            "[a-zа-я&<>\"' ]{0,8}".boxed(),
        ],
        any::<bool>(),
    )
        .prop_map(|(name, size, double_quoted)| Region {
            name,
            size,
            double_quoted,
        })
}

fn escaped(value: &str, quote: char) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' if quote == '"' => out.push_str("&quot;"),
            '\'' if quote == '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn ignite_config(regions: &[Region]) -> String {
    let mut text = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<beans xmlns=\"http://www.springframework.org/schema/beans\">\n\
         <bean id=\"ignite.cfg\" class=\"org.apache.ignite.configuration.IgniteConfiguration\">\n  \
         <property name=\"dataStorageConfiguration\">\n    <bean class=\"org.apache.ignite.configuration.DataStorageConfiguration\">\n      \
         <property name=\"dataRegionConfigurations\">\n        <list>\n",
    );
    for region in regions {
        let quote = if region.double_quoted { '"' } else { '\'' };
        text.push_str(&format!(
            "          <!-- {} -->\n          <bean class=\"org.apache.ignite.configuration.DataRegionConfiguration\">\n            \
             <property name=\"name\" value=\"{}\"/>\n            <property name=\"maxSize\" value={quote}{}{quote}/>\n          </bean>\n",
            region.name,
            region.name,
            escaped(&region.size, quote)
        ));
    }
    text.push_str(
        "        </list>\n      </property>\n    </bean>\n  </property>\n</bean>\n</beans>\n",
    );
    text
}

fn by_name(regions: &[Region]) -> BTreeMap<String, String> {
    regions
        .iter()
        .map(|r| (r.name.clone(), r.size.clone()))
        .collect()
}

/// Region name → maxSize, as the DOM reads the file.
fn oracle_sizes(text: &str) -> Result<BTreeMap<String, String>, String> {
    Ok(oracle::values(text)?
        .into_iter()
        .filter(|((_, property), _)| property == "maxSize")
        .filter_map(|((bean, _), size)| {
            let name = bean.split("[name=").nth(1)?.strip_suffix(']')?.to_owned();
            Some((name, size))
        })
        .collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Regions in any order: each keeps its own old size; the new file's own
    /// regions keep theirs; an old-only region is reported by name.
    #[test]
    fn regions_carry_by_name_whatever_their_order(
        old in proptest::collection::vec(region_strategy(), 0..6),
        new in proptest::collection::vec(region_strategy(), 0..6),
        shuffle in any::<proptest::sample::Index>(),
        cut in proptest::option::of(any::<proptest::sample::Index>()),
    ) {
        // Unique names on each side; the new side takes some old names, in another order.
        let old: Vec<Region> = dedup(old);
        let mut new_regions: Vec<Region> = dedup(new)
            .into_iter()
            .filter(|r| !old.iter().any(|o| o.name == r.name))
            .collect();
        for (index, region) in old.iter().enumerate() {
            if index % 3 != 2 {
                let mut moved = region.clone();
                moved.size = format!("{}0", region.size);
                moved.double_quoted = !region.double_quoted;
                let at = if new_regions.is_empty() { 0 } else { shuffle.index(new_regions.len() + 1) };
                new_regions.insert(at, moved);
            }
        }
        let old_text = ignite_config(&old);
        let mut new_text = ignite_config(&new_regions);
        if let Some(cut) = cut {
            // Cut at a character's start: `truncate` panics inside one
            // (a Cyrillic size once drew such a cut).
            let mut at = cut.index(new_text.len());
            while !new_text.is_char_boundary(at) {
                at -= 1;
            }
            new_text.truncate(at);
        }
        let result = migrate_ignite("Ignite.config", &old_text, &new_text);
        let oracle_new = oracle_sizes(&new_text);
        match result {
            Ok(migration) if oracle_new.is_err() => {
                // Only a text without any element is read by the tool (as a file to fill:
                // a new instance's file not created yet) and refused by the DOM.
                prop_assert!(!new_text.contains("<beans"), "the DOM refuses what the tool accepted: {}", new_text);
                prop_assert_eq!(migration.text, new_text);
            }
            Ok(migration) => {
                let mut expected = by_name(&new_regions);
                for (name, size) in by_name(&old) {
                    if expected.contains_key(&name) {
                        expected.insert(name, size);
                    }
                }
                prop_assert_eq!(oracle_sizes(&migration.text).unwrap(), expected);
                for region in &old {
                    let only_old = !new_regions.iter().any(|r| r.name == region.name);
                    let reported = migration.warnings.iter().any(|w| w.contains(&format!("[name={}]", region.name)));
                    prop_assert_eq!(only_old, reported, "{:?}", migration.warnings);
                }
                prop_assert_eq!(migration.warnings.len(), old.iter().filter(|r| !new_regions.iter().any(|n| n.name == r.name)).count());
            }
            Err(error) => {
                prop_assert!(cut.is_some() && oracle_new.is_err(), "{error}");
                prop_assert!(error.to_string().starts_with("Ignite.config:"), "{error}");
            }
        }
    }

    /// A corpus file with a piece cut out or pasted elsewhere: no panic, and a
    /// file migrated onto itself is unchanged.
    #[test]
    fn damaged_corpus_files_never_panic(
        file in any::<proptest::sample::Index>(),
        from in any::<proptest::sample::Index>(),
        length in 0usize..40,
        to in any::<proptest::sample::Index>(),
    ) {
        let files = corpus();
        let (name, bytes) = &files[file.index(files.len())];
        let mut damaged = bytes.clone();
        let start = from.index(damaged.len());
        let piece: Vec<u8> = damaged.drain(start..(start + length).min(damaged.len())).collect();
        let at = to.index(damaged.len() + 1);
        damaged.splice(at..at, piece.iter().copied().rev());
        let Ok(damaged) = raw_text::decode(name, &damaged) else {
            return Ok(());
        };
        let original = raw_text::decode(name, bytes).unwrap();
        let _ = migrate_ignite(name, &original, &damaged);
        let _ = migrate_ignite(name, &damaged, &original);
        if let Ok(migration) = migrate_ignite(name, &damaged, &damaged) {
            prop_assert_eq!(migration.text, damaged);
        }
    }

    /// Whatever the text, no panic; a file migrated onto itself is unchanged.
    #[test]
    fn arbitrary_text_never_panics(
        old in "(<|>|/|\"|'|=|&|;|#|!|\\[|\\]|-|\\?|bean|property|name|value|list|CDATA|DOCTYPE|ENTITY| |\n|[a-zа-я]|\u{feff}|\0)*",
        new in "(<|>|/|\"|'|=|&|;|#|!|\\[|\\]|-|\\?|bean|property|name|value|list|CDATA|DOCTYPE|ENTITY| |\n|[a-zа-я]|\u{feff}|\0)*",
    ) {
        let _ = migrate_ignite("Ignite.config", &old, &new);
        if let Ok(migration) = migrate_ignite("Ignite.config", &new, &new) {
            prop_assert_eq!(migration.text, new);
        }
    }
}

fn dedup(regions: Vec<Region>) -> Vec<Region> {
    let mut seen = std::collections::HashSet::new();
    regions
        .into_iter()
        .filter(|r| seen.insert(r.name.clone()))
        .collect()
}

mod through_the_planner {
    use cmw_upgrade_core::config::migrate::{apply_migration, plan_migration, MigrateOptions};
    use cmw_upgrade_core::executor::LocalExecutor;
    use cmw_upgrade_core::{InstanceName, OsFamily};
    use cmw_upgrade_tests::write_new_server;

    const IGNITE: &str = "var/www/prod/Ignite.config";

    /// Two 5.0 servers whose Ignite.config files are `old` and `new` (bytes).
    fn servers(old: &[u8], new: &[u8]) -> (tempfile::TempDir, tempfile::TempDir) {
        let old_root = tempfile::tempdir().unwrap();
        write_new_server(old_root.path(), OsFamily::Alt, "prod", "5.0.1234.0", true).unwrap();
        let new_root = tempfile::tempdir().unwrap();
        write_new_server(new_root.path(), OsFamily::Alt, "prod", "5.1.77.0", false).unwrap();
        std::fs::write(old_root.path().join(IGNITE), old).unwrap();
        std::fs::write(new_root.path().join(IGNITE), new).unwrap();
        (old_root, new_root)
    }

    fn plan(
        old: &tempfile::TempDir,
        new: &tempfile::TempDir,
    ) -> cmw_upgrade_core::config::migrate::MigrationPlan {
        let options = MigrateOptions {
            stamp: "20261128T090000Z".to_owned(),
            ..MigrateOptions::default()
        };
        plan_migration(
            old.path(),
            new.path(),
            &InstanceName::new("prod").unwrap(),
            OsFamily::Alt,
            &options,
        )
        .unwrap()
    }

    const BEAN: &str = "<bean class=\"org.apache.ignite.configuration.IgniteConfiguration\">\
                        <property name=\"consistentId\" value=\"VALUE\"/></bean>";

    #[test]
    fn a_utf8_value_lands_in_a_windows_1251_file_as_windows_1251_bytes() {
        let old = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<beans>\n{}\n</beans>\n",
            BEAN.replace("VALUE", "Узел-1")
        );
        // A windows-1251 file with "Сайт" in a comment.
        let mut new = b"<?xml version=\"1.0\" encoding=\"windows-1251\"?>\n<!-- \xD1\xE0\xE9\xF2 -->\n<beans>\n".to_vec();
        new.extend_from_slice(BEAN.replace("VALUE", "node").as_bytes());
        new.extend_from_slice(b"\n</beans>\n");
        let (old_root, new_root) = servers(old.as_bytes(), &new);
        let plan = plan(&old_root, &new_root);
        assert!(plan.report.errors.is_empty(), "{:#?}", plan.report.errors);
        apply_migration(&plan, &LocalExecutor::new("/"), "20261128T090000Z").unwrap();
        let written = std::fs::read(new_root.path().join(IGNITE)).unwrap();
        let at = new.windows(4).position(|w| w == b"node").unwrap();
        let mut expected = new.clone();
        expected.splice(at..at + 4, b"\xD3\xE7\xE5\xEB-1".iter().copied());
        assert_eq!(written, expected);
    }

    #[test]
    fn a_utf16_file_is_refused_and_left_alone() {
        let text = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n<beans>\n{}\n</beans>\n",
            BEAN.replace("VALUE", "node")
        );
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let old = text
            .replace(" encoding=\"UTF-16\"", "")
            .replace("node", "old-node");
        let (old_root, new_root) = servers(old.as_bytes(), &utf16);
        let plan = plan(&old_root, &new_root);
        assert!(
            plan.report
                .errors
                .iter()
                .any(|e| e.contains("Ignite.config:1: is stored as UTF-16")),
            "{:#?}",
            plan.report.errors
        );
        assert!(plan.updates.is_empty());
        assert_eq!(std::fs::read(new_root.path().join(IGNITE)).unwrap(), utf16);
    }
}

/// Found by `arbitrary_text_never_panics`: two byte-order marks before the
/// first tag once shifted the reader's positions into the middle of one.
#[test]
fn two_byte_order_marks_do_not_misplace_tags() {
    let _ =
        cmw_upgrade_core::config::xml::migrate_ignite("Ignite.config", "\u{feff}\u{feff}<>", "");
    let _ = cmw_upgrade_core::config::xml::migrate_ignite(
        "Ignite.config",
        "\u{feff}\u{feff}<beans><bean id=\"a\"/></beans>",
        "\u{feff}<beans><bean id=\"a\"/></beans>",
    );
}
