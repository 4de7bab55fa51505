//! The platform's XML configs: `Ignite.config` (Spring beans) and the legacy
//! `Workers.config`.
//!
//! Ignite values are carried bean by bean: each bean is matched by its identity
//! (its id, its `name` property in a list, the path of properties leading to
//! it; its position only as a last resort, with a warning), never by its place
//! among beans of its class, so regions listed in another order keep their own
//! sizes. Only the bytes of a value that differs are replaced, so the rest of the
//! file (BOM, CRLF, comments, CDATA, its encoding, formatting) stays
//! byte-identical. What cannot be carried (a bean or property the new file
//! lacks, a list that differs, an entity the tool cannot expand) is reported.
//!
//! `Workers.config` switches, gone since 5.0, map to instance config
//! directives where the target is clear ([`WORKER_SWITCHES`]).

mod beans;
#[cfg(test)]
mod tests_ignite;
mod values;

use std::collections::{BTreeMap, HashMap, HashSet};

use quick_xml::events::Event;
use quick_xml::Reader;

pub use beans::{
    bean_properties, parse_beans, short_class, Bean, BeanDocument, BeanProperty, PropertyValue,
};
pub use values::{file_encoding, SlotKind};

use super::secrets::{is_secret_key, shown};
use super::yaml_merge::{apply_edits, ExtraValue};
use super::{Change, ChangeAction};
use crate::error::{Error, Result};
use beans::Lines;
use values::{decode_span, encode_for, escape, portable, unescape, Entity};

fn xml_error(file: &str, text: &str, position: u64, error: impl std::fmt::Display) -> Error {
    let position = (position as usize).min(text.len());
    Error::ConfigParse {
        path: file.into(),
        line: Some(Lines::new(text).of(position)),
        message: format!("not well-formed XML: {error}"),
    }
}

/// The result of migrating `Ignite.config`.
#[derive(Debug, Clone)]
pub struct IgniteMigration {
    /// The new text.
    pub text: String,
    /// What changed.
    pub changes: Vec<Change>,
    /// What the tool did not carry (old-only beans and properties, values it
    /// cannot write), and matches that rest on position: for the admin to review.
    pub warnings: Vec<String>,
}

/// One file of the pair, parsed.
struct Side<'a> {
    /// The file as named in messages (`old …` for the old server's).
    file: String,
    text: &'a str,
    encoding: &'static encoding_rs::Encoding,
    document: BeanDocument,
}

impl<'a> Side<'a> {
    fn read(file: String, text: &'a str) -> Result<Self> {
        let encoding = file_encoding(&file, text)?;
        let document = parse_beans(&file, text)?;
        Ok(Side {
            file,
            text,
            encoding,
            document,
        })
    }

    /// A property's value as XML means it: decoded from the file's encoding and unescaped.
    fn value(&self, property: &BeanProperty) -> std::result::Result<String, String> {
        let PropertyValue::Slot(kind) = property.value else {
            return Err("holds no single value".to_owned());
        };
        let raw = property.raw(self.text);
        let decoded = decode_span(raw, self.encoding).ok_or_else(|| {
            format!(
                "holds bytes that are not valid {} (the file's encoding)",
                self.encoding.name()
            )
        })?;
        match kind {
            SlotKind::Cdata => Ok(decoded.replace("\r\n", "\n")),
            SlotKind::Attribute(quote) => {
                unescape(&decoded, &self.document.entities, Some(quote)).map_err(|e| e.to_string())
            }
            SlotKind::Text => {
                unescape(&decoded, &self.document.entities, None).map_err(|e| e.to_string())
            }
        }
    }

    fn entities(&self) -> &HashMap<String, Entity> {
        &self.document.entities
    }
}

/// Carries the old file's bean property values into the new file, bean by
/// bean identity ([`Bean::identity`]) and property name. Only the bytes of the
/// values that differ change; what cannot be carried is reported in warnings.
///
/// Both texts are [`raw_text`](super::raw_text) texts: each file's declared
/// encoding (UTF-8 or a single-byte one such as windows-1251) is kept, and a
/// value moving between encodings is converted (a character the new file's
/// encoding lacks becomes a character reference).
///
/// # Errors
/// [`Error::ConfigParse`] when either file is not well-formed XML, or is
/// stored in an encoding the tool does not edit (UTF-16, UTF-32, multi-byte).
pub fn migrate_ignite(file: &str, old_text: &str, new_text: &str) -> Result<IgniteMigration> {
    let old = Side::read(format!("old {file}"), old_text)?;
    let new = Side::read(file.to_owned(), new_text)?;
    let new_beans: HashMap<&str, &Bean> = new
        .document
        .beans
        .iter()
        .map(|bean| (bean.identity.as_str(), bean))
        .collect();
    let new_properties: HashMap<(&str, &str), &BeanProperty> = new
        .document
        .properties
        .iter()
        .map(|property| ((property.bean.as_str(), property.name.as_str()), property))
        .collect();
    let mut warnings = Vec::new();
    let renamed = renamed_top_level_beans(&old.document, &new.document);
    for (from, to) in &renamed {
        if let Some(bean) = new_beans.get(to.as_str()) {
            warnings.push(format!(
                "{file}:{}: the {class} {from} of the old file is {to} in this one (the only \
                 {class} in each file); its settings were carried into it — check that it is \
                 the same bean",
                bean.line,
                class = short_class(&bean.class),
            ));
        }
    }

    // Beans first: one the new file lacks (or has as another class) is reported once, whole.
    let mut unmatched: Vec<&str> = Vec::new();
    for bean in &old.document.beans {
        let inside_reported = unmatched.iter().any(|outer| {
            bean.identity
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with(['/', '[', '<']))
        });
        let problem = match new_beans.get(translated(&bean.identity, &renamed).as_str()) {
            None => "is not in the new file".to_owned(),
            Some(other) if other.class != bean.class => format!(
                "is a {} in the new file, not a {}",
                short_class(&other.class),
                short_class(&bean.class)
            ),
            Some(_) => continue,
        };
        if !inside_reported {
            let settings: Vec<&str> = old
                .document
                .properties
                .iter()
                .filter(|property| property.bean == bean.identity)
                .map(|property| property.name.as_str())
                .collect();
            warnings.push(format!(
                "{}:{}: the {} {} {problem}; its settings ({}) were not carried — add it by hand \
                 if the new version still needs it",
                old.file,
                bean.line,
                short_class(&bean.class),
                bean.identity,
                settings.join(", ")
            ));
        }
        unmatched.push(&bean.identity);
    }

    let mut edits = Vec::new();
    let mut changes = Vec::new();
    let mut intended: Vec<(&BeanProperty, String)> = Vec::new();
    let mut positional_warned: HashSet<&str> = HashSet::new();
    let mut targets_taken: HashSet<usize> = HashSet::new();
    for property in &old.document.properties {
        if unmatched.contains(&property.bean.as_str()) {
            continue;
        }
        let key = property.display_key();
        let Some(target) = new_properties
            .get(&(
                translated(&property.bean, &renamed).as_str(),
                property.name.as_str(),
            ))
            .copied()
        else {
            let value = old.value(property).ok();
            warnings.push(format!(
                "{}:{}: {key} is set only in the old file ({}); it was not added — add it by hand \
                 if the new version still uses it",
                old.file,
                property.line,
                shown(&property.name, value.as_deref())
                    .unwrap_or_else(|| "a list or bean".to_owned())
            ));
            continue;
        };
        let not_carried = |why: &str| {
            format!(
                "{file}:{}: {key} was not carried: {why} (old file line {}); compare the two and \
                 set it by hand",
                target.line, property.line
            )
        };
        let (PropertyValue::Slot(from), PropertyValue::Slot(to)) = (&property.value, &target.value)
        else {
            if property.value != target.value {
                warnings.push(not_carried(
                    "it holds a list, map or bean in one of the files and differs between them",
                ));
            }
            continue;
        };
        // Spring refuses a property set twice in one bean; the tool will not guess which one counts.
        if !targets_taken.insert(target.value_start) {
            warnings.push(not_carried(
                "the old file sets it more than once in this bean",
            ));
            continue;
        }
        if property.is_reference != target.is_reference {
            warnings.push(not_carried(
                "it is a reference to a bean (ref=) in one file and a value in the other",
            ));
            continue;
        }
        let value = match old.value(property) {
            Ok(value) => value,
            Err(why) => {
                warnings.push(not_carried(&format!("the old value {why}")));
                continue;
            }
        };
        let before = new.value(target).ok();
        let change = |action| Change {
            file: file.to_owned(),
            key: target.display_key(),
            action,
            old: shown(&property.name, before.as_deref()),
            new: shown(&property.name, Some(&value)),
            from: None,
        };
        if before.as_deref() == Some(value.as_str()) {
            changes.push(change(ChangeAction::Kept));
            continue;
        }
        let raw = property.raw(old_text);
        let replacement = if old.encoding == new.encoding
            && portable(raw, (*from, old.entities()), (*to, new.entities()))
        {
            // As the admin wrote it: the same bytes, the same references.
            Some(raw.to_owned())
        } else {
            escape(&value, *to).and_then(|escaped| encode_for(&escaped, new.encoding, *to))
        };
        let Some(replacement) = replacement else {
            warnings.push(not_carried(&format!(
                "its CDATA section in the new file cannot hold the old value in {}",
                new.encoding.name()
            )));
            continue;
        };
        if let Some(bean) = new_beans.get(target.bean.as_str()) {
            let old_bean = old
                .document
                .beans
                .iter()
                .find(|bean| bean.identity == property.bean);
            let among = bean
                .positional_among
                .max(old_bean.map_or(0, |b| b.positional_among));
            if among > 1 && positional_warned.insert(target.bean.as_str()) {
                warnings.push(format!(
                    "{file}:{}: the {} {} has no id and no name property, so it was matched by \
                     its position among {among} such beans; check that the values carried into \
                     it are its own",
                    bean.line,
                    short_class(&bean.class),
                    bean.identity
                ));
            }
        }
        edits.push((target.value_start, target.value_end, replacement));
        changes.push(change(ChangeAction::Set));
        intended.push((target, value));
    }
    let text = apply_edits(new_text, &mut edits);
    check_edited(file, &text, &intended)?;
    Ok(IgniteMigration {
        text,
        changes,
        warnings,
    })
}

/// Top-level beans whose id differs between the files but that are the only
/// top-level bean of their class in each: `(old identity, new identity)`.
fn renamed_top_level_beans(old: &BeanDocument, new: &BeanDocument) -> Vec<(String, String)> {
    let only = |document: &'_ BeanDocument, class: &str| -> Option<String> {
        let mut beans = document
            .beans
            .iter()
            .filter(|bean| bean.top_level && bean.class == class);
        let first = beans.next()?;
        beans.next().is_none().then(|| first.identity.clone())
    };
    let known = |document: &BeanDocument, identity: &str| {
        document.beans.iter().any(|bean| bean.identity == identity)
    };
    old.beans
        .iter()
        .filter(|bean| bean.top_level && !known(new, &bean.identity))
        .filter_map(|bean| {
            let from = only(old, &bean.class)?;
            let to = only(new, &bean.class)?;
            (!known(old, &to)).then_some((from, to))
        })
        .collect()
}

/// An old file's bean identity as the new file names it.
fn translated(identity: &str, renamed: &[(String, String)]) -> String {
    for (from, to) in renamed {
        if let Some(rest) = identity.strip_prefix(from.as_str()) {
            if rest.is_empty() || rest.starts_with(['/', '[', '<']) {
                return format!("{to}{rest}");
            }
        }
    }
    identity.to_owned()
}

/// Every property value the tool can carry, as XML means it (decoded and
/// unescaped), by bean identity and property name. A value it cannot read (an
/// undeclared entity, bytes not valid in the file's encoding) is left out: the
/// migration reports it.
///
/// # Errors
/// [`Error::ConfigParse`] as for [`migrate_ignite`].
pub fn property_values(file: &str, text: &str) -> Result<BTreeMap<(String, String), String>> {
    let side = Side::read(file.to_owned(), text)?;
    Ok(side
        .document
        .properties
        .iter()
        .filter_map(|property| {
            let value = side.value(property).ok()?;
            Some(((property.bean.clone(), property.name.clone()), value))
        })
        .collect())
}

/// The edited file must still be well-formed and hold every intended value.
fn check_edited(file: &str, text: &str, intended: &[(&BeanProperty, String)]) -> Result<()> {
    let edited = Side::read(file.to_owned(), text)?;
    for (target, value) in intended {
        let now = edited.document.properties.iter().find(|property| {
            property.bean == target.bean
                && property.name == target.name
                && edited.value(property).as_ref() == Ok(value)
        });
        if now.is_none() {
            return Err(Error::ConfigParse {
                path: file.into(),
                line: Some(target.line),
                message: format!(
                    "{} did not read back as intended after editing; nothing was written — \
                     please report this",
                    target.display_key()
                ),
            });
        }
    }
    Ok(())
}

/// The spans of secret property values, for masking diffs.
pub fn secret_spans(text: &str) -> Vec<(usize, usize)> {
    bean_properties("", text)
        .unwrap_or_default()
        .into_iter()
        .filter(|property| is_secret_key(&property.name))
        .map(|property| (property.value_start, property.value_end))
        .collect()
}

/// `Workers.config` switches and the instance directives they became in 5.0.
/// A switch set to `false` carries as `<directive>: false`; `true` is the default.
pub const WORKER_SWITCHES: &[(&str, &str)] = &[
    ("RebuildThreadWorker", "search.rebuildingEnabled"),
    ("BackupSessionsQueue", "backup.sessionsEnabled"),
    ("NotificationWorker", "notifications.enabled"),
    ("EmailListener", "email.listenerEnabled"),
    ("IndexTasksQueue", "search.indexingEnabled"),
    ("ProcessEngineQueueProcessing", "bpms.enabled"),
    ("ProcessEngineTimerProcessing", "bpms.timersEnabled"),
    ("SwitchOnFullTextSearch", "search.enabled"),
    ("PerformanceMonitoring", "sensors.enabled"),
];

/// `Workers.config` elements with no clear 5.0 directive: reported for the admin.
pub const UNMAPPED_WORKER_SWITCHES: &[&str] =
    &["SessionManagerWorker", "SyncThread", "ConfigurationId"];

/// What `Workers.config` says, mapped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerMapping {
    /// Directives to set in the instance config.
    pub directives: Vec<ExtraValue>,
    /// What the admin must decide by hand: the switch, and why.
    pub by_hand: Vec<(String, String)>,
}

/// Reads `<WorkerEngine>` switches and maps the `false` ones to instance directives.
///
/// # Errors
/// [`Error::ConfigParse`] when the text is not well-formed XML.
pub fn map_workers_config(file: &str, text: &str) -> Result<WorkerMapping> {
    let mut reader = Reader::from_str(text.strip_prefix('\u{feff}').unwrap_or(text));
    reader.config_mut().trim_text(true);
    let mut depth = 0usize;
    let mut current: Option<String> = None;
    let mut switches: Vec<(String, String)> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|error| xml_error(file, text, reader.error_position(), error))?;
        match event {
            Event::Start(element) => {
                depth += 1;
                if depth == 2 {
                    current = Some(element.local_name().as_ref().to_owned());
                }
            }
            Event::Empty(element) if depth == 1 => {
                switches.push((element.local_name().as_ref().to_owned(), String::new()));
            }
            Event::Text(content) if depth == 2 => {
                if let Some(name) = &current {
                    let value: &str = &content;
                    switches.push((name.clone(), value.trim().to_owned()));
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    current = None;
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut mapping = WorkerMapping::default();
    for (name, value) in switches {
        let disabled = value.eq_ignore_ascii_case("false");
        match WORKER_SWITCHES.iter().find(|(switch, _)| *switch == name) {
            Some((_, directive)) if disabled => mapping.directives.push(ExtraValue {
                key: (*directive).to_owned(),
                raw: "false".to_owned(),
                from: format!("Workers.config {name}"),
            }),
            Some(_) => {}
            None => mapping.by_hand.push((
                name.to_owned(),
                format!(
                    "{file}: {name} = {value:?} has no 5.0 equivalent the tool can set; decide by \
                     hand (see the instance config's services switches)"
                ),
            )),
        }
    }
    Ok(mapping)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "\u{feff}<?xml version=\"1.0\"?>\r\n<beans>\r\n  <!-- tuned -->\r\n  <bean class=\"org.apache.ignite.configuration.DataStorageConfiguration\">\r\n    <property name=\"dataRegionConfigurations\">\r\n      <list>\r\n        <bean class=\"org.apache.ignite.configuration.DataRegionConfiguration\">\r\n          <property name=\"maxSize\" value=\"#{16L * 1024 * 1024 * 1024}\"/>\r\n          <property name=\"persistenceEnabled\" value=\"true\"/>\r\n        </bean>\r\n      </list>\r\n    </property>\r\n    <property name=\"walPath\" value=\"/data/wal\"/>\r\n    <property name=\"oldOnly\" value=\"1\"/>\r\n  </bean>\r\n</beans>\r\n";
    const NEW: &str = "\u{feff}<?xml version=\"1.0\"?>\r\n<beans>\r\n  <![CDATA[ keep <this> ]]>\r\n  <bean class=\"org.apache.ignite.configuration.DataStorageConfiguration\">\r\n    <property name=\"dataRegionConfigurations\">\r\n      <list>\r\n        <bean class=\"org.apache.ignite.configuration.DataRegionConfiguration\">\r\n          <property name=\"maxSize\" value='#{4L * 1024 * 1024 * 1024}' />\r\n          <property name=\"persistenceEnabled\" value=\"true\"/>\r\n          <property name=\"checkpointPageBufferSize\" value=\"#{1L * 1024 * 1024 * 1024}\"/>\r\n        </bean>\r\n      </list>\r\n    </property>\r\n    <property name=\"walPath\" value=\"/var/lib/wal\"/>\r\n  </bean>\r\n</beans>\r\n";

    #[test]
    fn only_value_spans_change() {
        let migration = migrate_ignite("Ignite.config", OLD, NEW).unwrap();
        let expected = NEW
            .replace(
                "'#{4L * 1024 * 1024 * 1024}'",
                "'#{16L * 1024 * 1024 * 1024}'",
            )
            .replace("/var/lib/wal", "/data/wal");
        assert_eq!(migration.text, expected);
        let actions: Vec<_> = migration
            .changes
            .iter()
            .map(|c| (c.key.as_str(), c.action))
            .collect();
        assert_eq!(
            actions,
            [
                (
                    "DataStorageConfiguration/dataRegionConfigurations[1].maxSize",
                    ChangeAction::Set
                ),
                (
                    "DataStorageConfiguration/dataRegionConfigurations[1].persistenceEnabled",
                    ChangeAction::Kept
                ),
                ("DataStorageConfiguration.walPath", ChangeAction::Set),
            ]
        );
        assert_eq!(migration.warnings.len(), 1);
        assert!(migration.warnings[0].contains("oldOnly"));
        let again = migrate_ignite("Ignite.config", OLD, &migration.text).unwrap();
        assert_eq!(again.text, migration.text);
    }

    #[test]
    fn broken_xml_names_the_line() {
        let error = migrate_ignite(
            "Ignite.config",
            OLD,
            "<beans>\n<bean class=\"x\">\n</beans>\n",
        )
        .unwrap_err();
        assert!(error.to_string().starts_with("Ignite.config:"), "{error}");
    }

    #[test]
    fn workers_switches_map_to_directives() {
        let text = "<WorkerEngine>\n  <RebuildThreadWorker>true</RebuildThreadWorker>\n  <EmailListener>false</EmailListener>\n  <NotificationWorker>False</NotificationWorker>\n  <SyncThread>false</SyncThread>\n  <ConfigurationId>42</ConfigurationId>\n</WorkerEngine>\n";
        let mapping = map_workers_config("Workers.config", text).unwrap();
        let directives: Vec<_> = mapping
            .directives
            .iter()
            .map(|d| (d.key.as_str(), d.raw.as_str()))
            .collect();
        assert_eq!(
            directives,
            [
                ("email.listenerEnabled", "false"),
                ("notifications.enabled", "false")
            ]
        );
        assert_eq!(mapping.by_hand.len(), 2);
        assert_eq!(mapping.by_hand[0].0, "SyncThread");
        assert!(mapping.by_hand[0].1.contains("decide by hand"));
    }
}
