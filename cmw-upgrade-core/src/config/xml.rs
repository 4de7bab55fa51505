//! The platform's XML configs: `Ignite.config` (Spring beans) and the legacy
//! `Workers.config`.
//!
//! Ignite values are carried by replacing only the bytes of a `value` attribute,
//! so the rest of the file (BOM, CRLF, comments, CDATA, formatting) stays
//! byte-identical. `Workers.config` switches, gone since 5.0, map to instance
//! config directives where the target is clear ([`WORKER_SWITCHES`]).

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::secrets::{is_secret_key, shown};
use super::yaml_merge::{apply_edits, ExtraValue};
use super::{Change, ChangeAction};
use crate::error::{Error, Result};

/// A `<property name=".." value=".."/>` inside a bean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeanProperty {
    /// The enclosing bean's class, e.g. `org.apache.ignite.configuration.DataRegionConfiguration`.
    pub bean_class: String,
    /// Which bean of that class it is, counting from 0 in document order.
    pub bean_index: usize,
    /// The property name.
    pub name: String,
    /// Byte span of the attribute value's raw text (between the quotes).
    pub value_start: usize,
    /// End of that span.
    pub value_end: usize,
    /// The quote character around the value.
    pub quote: u8,
}

impl BeanProperty {
    /// A readable key: `DataRegionConfiguration.maxSize`, with `[n]` for the n-th bean of a class.
    pub fn display_key(&self) -> String {
        let short = self
            .bean_class
            .rsplit('.')
            .next()
            .unwrap_or(&self.bean_class);
        if self.bean_index == 0 {
            format!("{short}.{}", self.name)
        } else {
            format!("{short}[{}].{}", self.bean_index + 1, self.name)
        }
    }

    /// The value's raw text.
    pub fn raw<'a>(&self, text: &'a str) -> &'a str {
        &text[self.value_start..self.value_end]
    }
}

fn xml_error(file: &str, text: &str, position: u64, error: impl std::fmt::Display) -> Error {
    let position = (position as usize).min(text.len());
    let line = text[..position].matches('\n').count() + 1;
    Error::ConfigParse {
        path: file.into(),
        line: Some(line),
        message: format!("not well-formed XML: {error}"),
    }
}

/// The span of an attribute's value inside a tag's raw text: `(start, end, quote)`.
fn attribute_span(tag: &str, wanted: &str) -> Option<(usize, usize, u8)> {
    let bytes = tag.as_bytes();
    // Skip `<` and the element name.
    let mut index = 1;
    while index < bytes.len()
        && !bytes[index].is_ascii_whitespace()
        && bytes[index] != b'/'
        && bytes[index] != b'>'
    {
        index += 1;
    }
    loop {
        while index < bytes.len() && bytes[index].is_ascii_whitespace() {
            index += 1;
        }
        let name_start = index;
        while index < bytes.len()
            && !matches!(bytes[index], b'=' | b'/' | b'>')
            && !bytes[index].is_ascii_whitespace()
        {
            index += 1;
        }
        if name_start == index {
            return None;
        }
        let name = &tag[name_start..index];
        while index < bytes.len() && bytes[index].is_ascii_whitespace() {
            index += 1;
        }
        if bytes.get(index) != Some(&b'=') {
            return None;
        }
        index += 1;
        while index < bytes.len() && bytes[index].is_ascii_whitespace() {
            index += 1;
        }
        let quote = *bytes.get(index)?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        let value_start = index + 1;
        let value_end = value_start + memchr::memchr(quote, &bytes[value_start..])?;
        if name == wanted {
            return Some((value_start, value_end, quote));
        }
        index = value_end + 1;
    }
}

fn attribute(element: &BytesStart<'_>, name: &str) -> Option<String> {
    element
        .try_get_attribute(name)
        .ok()
        .flatten()
        .and_then(|attribute| {
            attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|value| value.into_owned())
        })
}

/// Finds every bean property with a `value` attribute.
///
/// # Errors
/// [`Error::ConfigParse`] with the line when the text is not well-formed XML.
pub fn bean_properties(file: &str, text: &str) -> Result<Vec<BeanProperty>> {
    let body_offset = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let body = &text[body_offset..];
    let mut reader = Reader::from_str(body);
    reader.config_mut().check_end_names = true;
    let mut beans: Vec<(String, usize)> = Vec::new();
    let mut seen_per_class: std::collections::HashMap<String, usize> =
        std::collections::HashMap::new();
    let mut properties = Vec::new();
    loop {
        let start = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|error| xml_error(file, body, reader.error_position(), error))?;
        let end = reader.buffer_position() as usize;
        match event {
            Event::Start(element) | Event::Empty(element)
                if element.local_name().as_ref() == "bean" =>
            {
                let class = attribute(&element, "class").unwrap_or_default();
                let counter = seen_per_class.entry(class.clone()).or_insert(0);
                let index = *counter;
                *counter += 1;
                if matches!(event_kind(&body[start..end]), TagKind::Start) {
                    beans.push((class, index));
                }
            }
            Event::End(element) if element.local_name().as_ref() == "bean" => {
                beans.pop();
            }
            Event::Start(element) | Event::Empty(element)
                if element.local_name().as_ref() == "property" =>
            {
                let tag = &body[start..end];
                let (Some(name), Some((value_start, value_end, quote)), Some((class, index))) = (
                    attribute(&element, "name"),
                    attribute_span(tag, "value"),
                    beans.last(),
                ) else {
                    continue;
                };
                properties.push(BeanProperty {
                    bean_class: class.clone(),
                    bean_index: *index,
                    name,
                    value_start: body_offset + start + value_start,
                    value_end: body_offset + start + value_end,
                    quote,
                });
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(properties)
}

enum TagKind {
    Start,
    Empty,
}

fn event_kind(tag: &str) -> TagKind {
    if tag.trim_end().ends_with("/>") {
        TagKind::Empty
    } else {
        TagKind::Start
    }
}

/// The result of migrating `Ignite.config`.
#[derive(Debug, Clone)]
pub struct IgniteMigration {
    /// The new text.
    pub text: String,
    /// What changed.
    pub changes: Vec<Change>,
    /// Properties only the old file has (reported, not invented).
    pub warnings: Vec<String>,
}

/// Carries `value` attributes of bean properties, matched by bean class (and its
/// position among beans of that class) and property name.
///
/// # Errors
/// [`Error::ConfigParse`] when either file is not well-formed XML.
pub fn migrate_ignite(file: &str, old_text: &str, new_text: &str) -> Result<IgniteMigration> {
    let old = bean_properties(&format!("old {file}"), old_text)?;
    let new = bean_properties(file, new_text)?;
    let mut edits = Vec::new();
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    for property in &old {
        let key = property.display_key();
        let value = property.raw(old_text);
        let target = new.iter().find(|candidate| {
            candidate.bean_class == property.bean_class
                && candidate.bean_index == property.bean_index
                && candidate.name == property.name
        });
        let Some(target) = target else {
            warnings.push(format!(
                "{file}: {key} is set only in the old file ({}); it was not added — add it by hand if the new version still uses it",
                shown(&property.name, Some(value)).unwrap_or_default()
            ));
            continue;
        };
        let before = target.raw(new_text);
        let change = |action| Change {
            file: file.to_owned(),
            key: key.clone(),
            action,
            old: shown(&property.name, Some(before)),
            new: shown(&property.name, Some(value)),
            from: None,
        };
        if before == value {
            changes.push(change(ChangeAction::Kept));
            continue;
        }
        // The raw text is already escaped for the old quote; re-escape for the new one.
        let replacement = match (property.quote, target.quote) {
            (b'\'', b'"') => value.replace('"', "&quot;"),
            (b'"', b'\'') => value.replace('\'', "&apos;"),
            _ => value.to_owned(),
        };
        edits.push((target.value_start, target.value_end, replacement));
        changes.push(change(ChangeAction::Set));
    }
    let text = apply_edits(new_text, &mut edits);
    // The edited file must still be well-formed and hold the intended values.
    let check = bean_properties(file, &text)?;
    for change in changes.iter().filter(|c| c.action == ChangeAction::Set) {
        if !check
            .iter()
            .any(|property| property.display_key() == change.key)
        {
            return Err(Error::ConfigParse {
                path: file.into(),
                line: None,
                message: format!(
                    "{} was lost while editing; nothing was written — please report this",
                    change.key
                ),
            });
        }
    }
    Ok(IgniteMigration {
        text,
        changes,
        warnings,
    })
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
    /// What the admin must decide by hand.
    pub warnings: Vec<String>,
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
            None => mapping.warnings.push(format!(
                "{file}: {name} = {value:?} has no 5.0 equivalent the tool can set; decide by hand (see the instance config's services switches)"
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
                ("DataRegionConfiguration.maxSize", ChangeAction::Set),
                (
                    "DataRegionConfiguration.persistenceEnabled",
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
        assert_eq!(mapping.warnings.len(), 2);
        assert!(mapping.warnings[0].contains("SyncThread"));
    }
}
