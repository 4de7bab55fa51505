//! `migrate_ignite` on the shapes real `Ignite.config` files take.

use super::*;
use crate::config::raw_text;

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<beans xmlns=\"http://www.springframework.org/schema/beans\">\n";

/// An Ignite config whose storage has the regions `(name, maxSize)` in this order.
fn with_regions(regions: &[(&str, &str)]) -> String {
    let mut text = format!(
        "{HEAD}  <bean id=\"ignite.cfg\" class=\"org.apache.ignite.configuration.IgniteConfiguration\">\n    \
         <property name=\"dataStorageConfiguration\">\n      \
         <bean class=\"org.apache.ignite.configuration.DataStorageConfiguration\">\n        \
         <property name=\"dataRegionConfigurations\">\n          <list>\n"
    );
    for (name, size) in regions {
        text.push_str(&format!(
            "            <bean class=\"org.apache.ignite.configuration.DataRegionConfiguration\">\n              \
             <property name=\"name\" value=\"{name}\"/>\n              \
             <property name=\"maxSize\" value=\"{size}\"/>\n            </bean>\n"
        ));
    }
    text.push_str("          </list>\n        </property>\n      </bean>\n    </property>\n  </bean>\n</beans>\n");
    text
}

fn migrate(old: &str, new: &str) -> IgniteMigration {
    migrate_ignite("Ignite.config", old, new).unwrap()
}

/// The one warning of a migration that must have exactly one.
fn only_warning(migration: &IgniteMigration) -> &str {
    assert_eq!(migration.warnings.len(), 1, "{:?}", migration.warnings);
    &migration.warnings[0]
}

#[test]
fn regions_in_another_order_keep_their_own_sizes() {
    let old = with_regions(&[
        ("Default_Region", "#{16L * 1024 * 1024 * 1024}"),
        ("Cache", "1024"),
    ]);
    let new = with_regions(&[
        ("Cache", "2048"),
        ("Default_Region", "#{4L * 1024 * 1024 * 1024}"),
    ]);
    let migration = migrate(&old, &new);
    assert_eq!(
        migration.text,
        with_regions(&[
            ("Cache", "1024"),
            ("Default_Region", "#{16L * 1024 * 1024 * 1024}")
        ])
    );
    assert!(migration.warnings.is_empty(), "{:?}", migration.warnings);
    let set: Vec<_> = migration
        .changes
        .iter()
        .filter(|c| c.action == ChangeAction::Set)
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(
        set,
        [
            "#ignite.cfg/dataStorageConfiguration/dataRegionConfigurations[name=Default_Region].maxSize",
            "#ignite.cfg/dataStorageConfiguration/dataRegionConfigurations[name=Cache].maxSize",
        ]
    );
}

#[test]
fn a_region_the_new_file_lacks_is_reported_with_its_line() {
    let old = with_regions(&[("Default_Region", "1"), ("Archive", "2")]);
    let new = with_regions(&[("Default_Region", "3")]);
    let migration = migrate(&old, &new);
    assert_eq!(migration.text, with_regions(&[("Default_Region", "1")]));
    let warning = only_warning(&migration);
    let line = old.lines().position(|l| l.contains("Archive")).unwrap(); // the bean starts a line above
    assert!(
        warning.starts_with(&format!(
            "old Ignite.config:{line}: the DataRegionConfiguration "
        )),
        "{warning}"
    );
    assert!(warning.contains("[name=Archive]") && warning.contains("name, maxSize"));
}

#[test]
fn beans_without_names_match_by_position_with_a_warning() {
    let unnamed = |sizes: &[&str]| {
        let mut text = format!("{HEAD}  <bean class=\"org.apache.ignite.configuration.DataStorageConfiguration\">\n    <property name=\"dataRegionConfigurations\">\n      <list>\n");
        for size in sizes {
            text.push_str(&format!("        <bean class=\"org.apache.ignite.configuration.DataRegionConfiguration\"><property name=\"maxSize\" value=\"{size}\"/></bean>\n"));
        }
        text.push_str("      </list>\n    </property>\n  </bean>\n</beans>\n");
        text
    };
    let migration = migrate(&unnamed(&["1", "2"]), &unnamed(&["3", "4"]));
    assert_eq!(migration.text, unnamed(&["1", "2"]));
    assert_eq!(migration.warnings.len(), 2, "{:?}", migration.warnings);
    assert!(migration
        .warnings
        .iter()
        .all(|w| w.contains("matched by its position among 2")));
    // One bean in each list is not ambiguous.
    let migration = migrate(&unnamed(&["1"]), &unnamed(&["3"]));
    assert!(migration.warnings.is_empty(), "{:?}", migration.warnings);
}

#[test]
fn beans_match_by_id_and_by_their_property_path() {
    let old = format!(
        "{HEAD}  <bean id=\"b\" class=\"x.B\"><property name=\"v\" value=\"old-b\"/></bean>\n  \
         <bean id=\"a\" class=\"x.A\"><property name=\"v\" value=\"old-a\"/></bean>\n  \
         <bean class=\"x.Storage\"><property name=\"defaultDataRegionConfiguration\"><bean class=\"x.Region\">\
         <property name=\"name\" value=\"Default_Region\"/></bean></property></bean>\n</beans>\n"
    );
    let new = format!(
        "{HEAD}  <bean id=\"a\" class=\"x.A\"><property name=\"v\" value=\"new-a\"/></bean>\n  \
         <bean class=\"x.Storage\"><property name=\"defaultDataRegionConfiguration\"><bean class=\"x.Region\">\
         <property name=\"name\" value=\"default\"/></bean></property></bean>\n  \
         <bean id=\"b\" class=\"x.B\"><property name=\"v\" value=\"new-b\"/></bean>\n</beans>\n"
    );
    let migration = migrate(&old, &new);
    let expected = new
        .replace("new-a", "old-a")
        .replace("new-b", "old-b")
        .replace("\"default\"", "\"Default_Region\"");
    assert_eq!(migration.text, expected);
    assert!(migration
        .changes
        .iter()
        .any(|c| c.key == "Storage/defaultDataRegionConfiguration.name"));
    assert!(migration.warnings.is_empty(), "{:?}", migration.warnings);
}

#[test]
fn a_bean_of_another_class_is_reported_not_filled() {
    let old = format!("{HEAD}<bean id=\"finder\" class=\"x.VmIpFinder\"><property name=\"shared\" value=\"true\"/></bean>\n</beans>\n");
    let new = format!("{HEAD}<bean id=\"finder\" class=\"x.MulticastIpFinder\"><property name=\"shared\" value=\"false\"/></bean>\n</beans>\n");
    let migration = migrate(&old, &new);
    assert_eq!(migration.text, new);
    let warning = only_warning(&migration);
    assert!(
        warning.contains("is a MulticastIpFinder in the new file"),
        "{warning}"
    );
}

#[test]
fn values_compare_unescaped_and_are_written_for_their_quotes() {
    let bean = |property: &str| format!("{HEAD}<bean class=\"x.A\">{property}</bean>\n</beans>\n");
    // Same meaning, other spelling: kept, not rewritten.
    let migration = migrate(
        &bean("<property name=\"v\" value=\"&#x41;&amp;B\"/>"),
        &bean("<property name=\"v\" value='A&#38;B'/>"),
    );
    assert_eq!(migration.changes[0].action, ChangeAction::Kept);
    assert_eq!(
        migration.text,
        bean("<property name=\"v\" value='A&#38;B'/>")
    );
    // A quote of the new file's kind is escaped for it.
    let migration = migrate(
        &bean("<property name=\"v\" value='say \"hi\" &amp; go'/>"),
        &bean("<property name=\"v\" value=\"x\"/>"),
    );
    assert_eq!(
        migration.text,
        bean("<property name=\"v\" value=\"say &quot;hi&quot; &amp; go\"/>")
    );
    assert_eq!(migration.changes[0].new.as_deref(), Some("say \"hi\" & go"));
    // Into a <value> element, and out of CDATA.
    let migration = migrate(
        &bean("<property name=\"v\"><value><![CDATA[a<b]]></value></property>"),
        &bean("<property name=\"v\">\n  <value>x</value>\n</property>"),
    );
    assert_eq!(
        migration.text,
        bean("<property name=\"v\">\n  <value>a&lt;b</value>\n</property>")
    );
}

#[test]
fn declared_entities_are_expanded_and_others_refused_with_the_line() {
    let old = "<?xml version=\"1.0\"?>\n<!DOCTYPE beans [\n  <!ENTITY data \"/srv/data\">\n  <!ENTITY ext SYSTEM \"paths.xml\">\n]>\n<beans>\n<bean class=\"x.A\">\n  <property name=\"walPath\" value=\"&data;/wal\"/>\n  <property name=\"archive\" value=\"&ext;\"/>\n</bean>\n</beans>\n";
    let new = "<beans>\n<bean class=\"x.A\">\n  <property name=\"walPath\" value=\"/var/wal\"/>\n  <property name=\"archive\" value=\"/var/archive\"/>\n</bean>\n</beans>\n";
    let migration = migrate(old, new);
    assert_eq!(migration.text, new.replace("/var/wal", "/srv/data/wal"));
    let warning = only_warning(&migration);
    assert!(
        warning.starts_with(
            "Ignite.config:4: A.archive was not carried: the old value uses the entity &ext;"
        ),
        "{warning}"
    );
    assert!(migration.warnings[0].contains("old file line 9"));
    // The new file declaring the same entity may keep the reference as written.
    let new_declaring = format!("<!DOCTYPE beans [ <!ENTITY data \"/srv/data\"> ]>\n{new}");
    let migration = migrate(old, &new_declaring);
    assert!(
        migration.text.contains("value=\"&data;/wal\""),
        "{}",
        migration.text
    );
}

#[test]
fn values_are_converted_between_utf8_and_windows_1251() {
    let cp1251_head = "<?xml version=\"1.0\" encoding=\"windows-1251\"?>\n<beans>\n";
    let utf8 = format!("{HEAD}<!-- Узел -->\n<bean class=\"x.A\"><property name=\"consistentId\" value=\"Узел-1\"/></bean>\n</beans>\n");
    // The new file is windows-1251, with a comment in it: "Сайт".
    let mut cp1251_bytes = cp1251_head.as_bytes().to_vec();
    cp1251_bytes.extend_from_slice(b"<!-- \xD1\xE0\xE9\xF2 -->\n<bean class=\"x.A\"><property name=\"consistentId\" value=\"node\"/></bean>\n</beans>\n");
    let cp1251 = raw_text::decode("Ignite.config", &cp1251_bytes).unwrap();
    let migration = migrate(&utf8, &cp1251);
    let mut expected = cp1251_bytes.clone();
    let at = expected.windows(4).position(|w| w == b"node").unwrap();
    expected.splice(at..at + 4, b"\xD3\xE7\xE5\xEB-1".iter().copied());
    assert_eq!(raw_text::encode(&migration.text), expected);
    assert_eq!(migration.changes[0].new.as_deref(), Some("Узел-1"));
    // And back: windows-1251 bytes become UTF-8.
    let back = migrate(&migration.text, &utf8.replace("Узел-1", "x"));
    assert_eq!(back.text, utf8);
    // A character windows-1251 lacks is written as a character reference.
    let migration = migrate(&utf8.replace("Узел-1", "節点"), &cp1251);
    assert!(raw_text::encode(&migration.text)
        .windows(16)
        .any(|w| w == b"&#31680;&#28857;"));
}

#[test]
fn utf16_is_refused_never_read_as_empty() {
    let text = with_regions(&[("Default_Region", "1")]);
    for big_endian in [false, true] {
        for bom in [false, true] {
            let mut bytes: Vec<u8> = if bom { vec![0xFE, 0xFF] } else { Vec::new() };
            if bom && !big_endian {
                bytes = vec![0xFF, 0xFE];
            }
            for unit in text.encode_utf16() {
                bytes.extend(if big_endian {
                    unit.to_be_bytes()
                } else {
                    unit.to_le_bytes()
                });
            }
            let utf16 = raw_text::decode("Ignite.config", &bytes).unwrap();
            for (old, new) in [
                (text.as_str(), utf16.as_str()),
                (utf16.as_str(), text.as_str()),
            ] {
                let error = migrate_ignite("Ignite.config", old, new).unwrap_err();
                assert!(error.to_string().contains("UTF-16"), "{error}");
            }
        }
    }
}

#[test]
fn comments_cdata_namespaces_lists_and_refs_do_not_confuse_matching() {
    let text = |size: &str, addresses: &str, reference: &str| {
        format!(
            "{HEAD}<?target data?>\n<!-- <bean class=\"x.Region\"><property name=\"maxSize\" value=\"9\"/></bean> -->\n\
             <util:list xmlns:util=\"http://www.springframework.org/schema/util\" id=\"regions\">\n  \
             <bean class=\"x.Region\" p:maxSize=\"{size}\" xmlns:p=\"http://www.springframework.org/schema/p\"><property name=\"name\"><value>R1</value></property></bean>\n\
             </util:list>\n\
             <bean class=\"x.Finder\">\n  <property name=\"addresses\"><list><value>{addresses}</value><![CDATA[ x ]]></list></property>\n  \
             <property name=\"spi\" ref=\"{reference}\"/>\n</bean>\n</beans>\n"
        )
    };
    let migration = migrate(&text("1", "a:47500", "spiA"), &text("2", "b:47500", "spiB"));
    assert_eq!(migration.text, text("1", "b:47500", "spiA"));
    let keys: Vec<_> = migration
        .changes
        .iter()
        .map(|c| (c.key.as_str(), c.action))
        .collect();
    assert_eq!(
        keys,
        [
            ("#regions[name=R1].maxSize", ChangeAction::Set),
            ("#regions[name=R1].name", ChangeAction::Kept),
            ("Finder.spi", ChangeAction::Set),
        ]
    );
    let warning = only_warning(&migration);
    assert!(warning.contains("Finder.addresses was not carried: it holds a list"));
}

#[test]
fn broken_or_unusual_input_is_refused_without_panicking() {
    for text in [
        "<beans><bean class=\"x\">",
        "<beans></bean>",
        "<a b=\"1></a>",
        "\u{feff}",
        "",
        "&",
    ] {
        let result = migrate_ignite("Ignite.config", text, text);
        if let Ok(migration) = result {
            assert_eq!(migration.text, text);
        }
    }
    let error =
        migrate_ignite("Ignite.config", "<beans>\n<bean class=\"x\">\n", "<beans/>").unwrap_err();
    assert!(
        error.to_string().starts_with("old Ignite.config:"),
        "{error}"
    );
}

#[test]
fn a_value_whose_bytes_are_not_its_file_s_encoding_is_reported() {
    // A UTF-8 file (no declaration) whose value holds windows-1251 bytes.
    let bean = |value: &[u8]| {
        let mut bytes = b"<beans><bean class=\"x.A\"><property name=\"v\" value=\"".to_vec();
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\"/></bean></beans>\n");
        raw_text::decode("Ignite.config", &bytes).unwrap()
    };
    let migration = migrate(&bean(b"\xD1\xE0\xE9\xF2"), &bean(b"x"));
    assert_eq!(migration.text, bean(b"x"));
    let warning = only_warning(&migration);
    assert!(
        warning.contains("holds bytes that are not valid UTF-8"),
        "{warning}"
    );
}

#[test]
fn a_property_set_twice_in_the_old_bean_is_carried_once_and_reported() {
    let old = format!("{HEAD}<bean class=\"x.A\">\n<property name=\"v\" value=\"1\"/>\n<property name=\"v\" value=\"2\"/>\n</bean>\n</beans>\n");
    let new = format!(
        "{HEAD}<bean class=\"x.A\">\n<property name=\"v\" value=\"3\"/>\n</bean>\n</beans>\n"
    );
    let migration = migrate(&old, &new);
    assert_eq!(migration.text, new.replace("\"3\"", "\"1\""));
    let warning = only_warning(&migration);
    assert!(warning.contains("sets it more than once"), "{warning}");
}

#[test]
fn the_one_top_level_configuration_matches_though_its_id_changed() {
    let old = with_regions(&[("Default_Region", "1")]);
    let new =
        with_regions(&[("Default_Region", "2")]).replace("id=\"ignite.cfg\"", "id=\"grid.cfg\"");
    let migration = migrate(&old, &new);
    assert_eq!(migration.text, new.replace("\"2\"", "\"1\""));
    let warning = only_warning(&migration);
    assert!(warning.starts_with(
            "Ignite.config:3: the IgniteConfiguration #ignite.cfg of the old file is #grid.cfg in this one"
        ), "{warning}");
    assert_eq!(
        migration
            .changes
            .iter()
            .find(|c| c.action == ChangeAction::Set)
            .unwrap()
            .key,
        "#grid.cfg/dataStorageConfiguration/dataRegionConfigurations[name=Default_Region].maxSize"
    );
    // With two of the class in a file, an id that changed is not guessed.
    let two = new.replace(
        "</beans>",
        "<bean class=\"org.apache.ignite.configuration.IgniteConfiguration\"/>\n</beans>",
    );
    let migration = migrate(&old, &two);
    assert_eq!(migration.text, two);
    assert!(
        migration.warnings[0].contains("#ignite.cfg is not in the new file"),
        "{:?}",
        migration.warnings
    );
}

#[test]
fn an_old_spring_dtd_and_spel_values_pass_through() {
    let file = |value: &str, quote: char| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE beans PUBLIC \"-//SPRING//DTD BEAN 2.0//EN\" \
             \"http://www.springframework.org/dtd/spring-beans-2.0.dtd\">\n<beans>\n\t<bean class=\"x.A\">\r\n\t\t\
             <property name=\"workDirectory\" value={quote}{value}{quote}/>\r\n\t</bean>\n</beans>\n"
        )
    };
    let old = file("#{systemEnvironment['CMW_HOME']}/work", '"');
    let new = file("/var/lib/ignite", '\'');
    let migration = migrate(&old, &new);
    assert_eq!(
        migration.text,
        file("#{systemEnvironment[&apos;CMW_HOME&apos;]}/work", '\'')
    );
    assert!(migration.warnings.is_empty(), "{:?}", migration.warnings);
    assert_eq!(migrate(&old, &old).text, old);
}
