//! The beans of a Spring XML file and their properties, each bean named by its
//! identity so that two versions of a file can be matched bean by bean.
//!
//! A bean's identity is, in this order: its `id` (or `name`) attribute
//! (`#ignite.cfg`); for a bean in a `<list>`/`<set>`/`<array>`, the path of its
//! list plus its `name` property (`…/dataRegionConfigurations[name=Default]`);
//! for a bean that is a property's value, the path of `property` names leading
//! to it (`IgniteConfiguration/dataStorageConfiguration/defaultDataRegionConfiguration`);
//! a map entry's bean by its key (`…/userAttributes[key=k]`). Only a bean in a
//! list with neither is known by its position (`…/caches[2]`), and is marked
//! so: the migration warns when it relies on that.

use std::collections::HashMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::values::{declared_entities, unescape, Entity, SlotKind};
use crate::error::{Error, Result};

/// A bean, named by its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bean {
    /// Its class, e.g. `org.apache.ignite.configuration.DataRegionConfiguration`.
    pub class: String,
    /// Its identity (see the module documentation).
    pub identity: String,
    /// How many beans share its list when it is known only by its position
    /// there (0 when its identity does not depend on position).
    pub positional_among: usize,
    /// 1-based line of its start tag.
    pub line: usize,
    /// Whether it is a child of `<beans>` (not inside another bean or a list).
    pub top_level: bool,
}

/// What a property holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyValue {
    /// One value the tool can carry: its raw text is at `value_start..value_end`.
    Slot(SlotKind),
    /// Lists, maps, references or mixed content that the tool compares but does
    /// not carry: their content (nested beans left out: they are matched on their own).
    Composite(String),
}

/// A property of a bean: `<property name=".." value=".."/>`, `<property
/// name=".." ref=".."/>`, `<property name=".."><value>..</value></property>`,
/// `p:name=".."`, or one holding lists and beans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeanProperty {
    /// The enclosing bean's class.
    pub bean_class: String,
    /// The enclosing bean's identity.
    pub bean: String,
    /// The property name (`ref` for a `ref=` attribute is kept apart: see `value`).
    pub name: String,
    /// 1-based line of the property.
    pub line: usize,
    /// Byte span of the value's raw text (empty for a composite value).
    pub value_start: usize,
    /// End of that span.
    pub value_end: usize,
    /// What the value is.
    pub value: PropertyValue,
    /// Whether the value is a `ref=` (a bean name) rather than a `value=`.
    pub is_reference: bool,
}

impl BeanProperty {
    /// A readable key: the bean's identity and the property name.
    pub fn display_key(&self) -> String {
        format!("{}.{}", self.bean, self.name)
    }

    /// The value's raw text.
    pub fn raw<'a>(&self, text: &'a str) -> &'a str {
        &text[self.value_start..self.value_end]
    }
}

/// A parsed beans file.
#[derive(Debug, Clone, Default)]
pub struct BeanDocument {
    /// Every bean, in document order.
    pub beans: Vec<Bean>,
    /// Every property, in document order.
    pub properties: Vec<BeanProperty>,
    /// The general entities its DOCTYPE declares.
    pub entities: HashMap<String, Entity>,
}

/// 1-based line numbers of byte positions.
pub(super) struct Lines(Vec<usize>);

impl Lines {
    pub(super) fn new(text: &str) -> Self {
        Lines(memchr::memchr_iter(b'\n', text.as_bytes()).collect())
    }

    pub(super) fn of(&self, position: usize) -> usize {
        self.0.partition_point(|&newline| newline < position) + 1
    }
}

fn xml_error(file: &str, lines: &Lines, position: usize, error: impl std::fmt::Display) -> Error {
    Error::ConfigParse {
        path: file.into(),
        line: Some(lines.of(position)),
        message: format!(
            "not well-formed XML: {error}; fix the file (or take it whole with --take)"
        ),
    }
}

/// The span of an attribute's value inside a tag's raw text: `(start, end, quote)`.
fn attribute_span(tag: &str, wanted: &str) -> Option<(usize, usize, u8)> {
    attribute_spans(tag)
        .find(|(name, ..)| *name == wanted)
        .map(|(_, start, end, quote)| (start, end, quote))
}

/// Every attribute of a tag's raw text: `(name, value start, value end, quote)`.
fn attribute_spans(tag: &str) -> impl Iterator<Item = (&str, usize, usize, u8)> {
    let bytes = tag.as_bytes();
    // Skip `<` and the element name.
    let mut index = 1;
    while index < bytes.len()
        && !bytes[index].is_ascii_whitespace()
        && !matches!(bytes[index], b'/' | b'>')
    {
        index += 1;
    }
    std::iter::from_fn(move || {
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
        index = value_end + 1;
        Some((name, value_start, value_end, quote))
    })
}

/// How a bean sits in the file, before its own `name` property is known.
struct PendingBean {
    class: String,
    id: Option<String>,
    /// The bean whose property (or list) holds it.
    parent: Option<usize>,
    /// Its path below the parent (`/dataStorageConfiguration`, `[2]`, `[key=k]`), or
    /// below the file for a top-level list (`#list-id`).
    path: String,
    /// Its list and position there, when it is an item of a list.
    item: Option<(usize, usize)>,
    /// Its `name` property's value, which names it in a list.
    name_property: Option<String>,
    line: usize,
}

/// What an open element is, for what it holds.
enum Frame {
    /// `<beans>` and elements outside any bean.
    Neutral,
    Bean(usize),
    /// A property of a bean: `(bean, property index)`.
    Property(usize, usize),
    /// `<list>`, `<set>`, `<array>`, `<map>`, `<props>`: items are named below `path`.
    Collection {
        parent: Option<usize>,
        path: String,
        id: usize,
        items: usize,
    },
    /// A map `<entry>`: its bean is named by its key.
    Entry {
        parent: Option<usize>,
        path: String,
    },
    /// `<value>`: where its content starts, and whether it is plain text or one CDATA.
    Value {
        start: usize,
        cdata: Option<(usize, usize)>,
        mixed: bool,
    },
    /// Anything else inside a bean (`constructor-arg`, `qualifier`, …).
    Other {
        parent: Option<usize>,
        path: String,
    },
}

struct Parser<'a> {
    text: &'a str,
    lines: Lines,
    frames: Vec<Frame>,
    beans: Vec<PendingBean>,
    properties: Vec<BeanProperty>,
    property_bean: Vec<usize>,
    entities: HashMap<String, Entity>,
    collections: usize,
}

const CDATA_OPEN: &str = "<![CDATA[";
const CDATA_CLOSE: &str = "]]>";

const COLLECTIONS: &[&str] = &["list", "set", "array", "map", "props", "properties"];

impl Parser<'_> {
    fn attribute(&self, tag: &str, name: &str) -> Option<String> {
        let (start, end, quote) = attribute_span(tag, name)?;
        let raw = &tag[start..end];
        Some(unescape(raw, &self.entities, Some(quote)).unwrap_or_else(|_| raw.to_owned()))
    }

    /// The nearest enclosing property, unless a bean is nearer.
    fn enclosing_property(&self) -> Option<usize> {
        for frame in self.frames.iter().rev() {
            match frame {
                Frame::Property(_, property) => return Some(*property),
                Frame::Bean(_) | Frame::Neutral => return None,
                _ => {}
            }
        }
        None
    }

    /// Adds content to the nearest property's composite value.
    fn note(&mut self, content: &str) {
        let Some(index) = self.enclosing_property() else {
            return;
        };
        let property = &mut self.properties[index];
        let previous = match &property.value {
            PropertyValue::Slot(_) => format!(
                "value={}",
                &self.text[property.value_start..property.value_end]
            ),
            PropertyValue::Composite(previous) => previous.clone(),
        };
        property.value = PropertyValue::Composite(format!("{previous}{content}"));
        property.value_start = property.value_end;
    }

    /// Where a bean or collection opening here hangs: (parent bean, path below it, list item).
    fn place(&mut self) -> (Option<usize>, String, Option<(usize, usize)>) {
        match self.frames.last_mut() {
            Some(Frame::Property(bean, property)) => {
                let name = self.properties[*property].name.clone();
                (Some(*bean), format!("/{name}"), None)
            }
            Some(Frame::Collection {
                parent,
                path,
                id,
                items,
            }) => {
                *items += 1;
                (*parent, path.clone(), Some((*id, *items)))
            }
            Some(Frame::Entry { parent, path }) | Some(Frame::Other { parent, path }) => {
                (*parent, path.clone(), None)
            }
            Some(Frame::Bean(bean)) => (Some(*bean), String::new(), None),
            Some(Frame::Neutral) | Some(Frame::Value { .. }) | None => (None, String::new(), None),
        }
    }

    fn open(&mut self, element: &BytesStart<'_>, start: usize, end: usize) -> Frame {
        let tag = &self.text[start..end];
        let local = element.local_name();
        let local = local.as_ref();
        let line = self.lines.of(start);
        if let Some(Frame::Value { mixed, .. }) = self.frames.last_mut() {
            *mixed = true;
            return Frame::Other {
                parent: None,
                path: String::new(),
            };
        }
        let enclosing_bean = match self.frames.last() {
            Some(Frame::Bean(bean)) => Some(*bean),
            _ => None,
        };
        match (local, enclosing_bean) {
            ("bean", _) => {
                let (parent, path, item) = self.place();
                let index = self.beans.len();
                self.beans.push(PendingBean {
                    class: self.attribute(tag, "class").unwrap_or_default(),
                    id: self
                        .attribute(tag, "id")
                        .or_else(|| self.attribute(tag, "name")),
                    parent,
                    path,
                    item,
                    name_property: None,
                    line,
                });
                // `p:maxSize="…"` sets a property as an attribute.
                for (name, value_start, value_end, quote) in attribute_spans(tag) {
                    if let Some(property) = name.strip_prefix("p:").filter(|p| !p.ends_with("-ref"))
                    {
                        let span = (start + value_start, start + value_end, Some(quote));
                        self.push_property(index, property, line, span, false);
                    }
                }
                Frame::Bean(index)
            }
            ("property", Some(bean)) => {
                let name = self.attribute(tag, "name").unwrap_or_default();
                let (value, is_reference) = match attribute_span(tag, "value") {
                    Some(span) => (Some(span), false),
                    None => (attribute_span(tag, "ref"), true),
                };
                let (span, is_reference) = match value {
                    Some((value_start, value_end, quote)) => (
                        (start + value_start, start + value_end, Some(quote)),
                        is_reference,
                    ),
                    None => ((end, end, None), false),
                };
                let index = self.push_property(bean, &name, line, span, is_reference);
                Frame::Property(bean, index)
            }
            ("value", _) if matches!(self.frames.last(), Some(Frame::Property(..))) => {
                Frame::Value {
                    start: end,
                    cdata: None,
                    mixed: false,
                }
            }
            _ => {
                let (parent, path, item) = self.place();
                // A map entry is known by its key, whatever its position.
                let path = match item {
                    Some((_, position)) if local != "entry" => format!("{path}[{position}]"),
                    _ => path,
                };
                let path = match self.attribute(tag, "id") {
                    Some(id) if parent.is_none() => format!("#{id}"),
                    _ => path,
                };
                let mut summary = format!("<{}", local);
                for (name, value_start, value_end, _) in attribute_spans(tag) {
                    summary.push_str(&format!(" {name}={}", &tag[value_start..value_end]));
                }
                summary.push('>');
                self.note(&summary);
                if COLLECTIONS.contains(&local) {
                    self.collections += 1;
                    Frame::Collection {
                        parent,
                        path,
                        id: self.collections,
                        items: 0,
                    }
                } else if local == "entry" {
                    let key = self
                        .attribute(tag, "key")
                        .or_else(|| self.attribute(tag, "key-ref"))
                        .unwrap_or_default();
                    Frame::Entry {
                        parent,
                        path: format!("{path}[key={key}]"),
                    }
                } else if parent.is_none() && !path.starts_with('#') {
                    Frame::Neutral
                } else {
                    Frame::Other {
                        parent,
                        path: format!("{path}/{local}"),
                    }
                }
            }
        }
    }

    /// Records a property of `bean`: `(start, end, quote)` is its value
    /// attribute's span and quote, or (with no quote) where its content starts.
    fn push_property(
        &mut self,
        bean: usize,
        name: &str,
        line: usize,
        (value_start, value_end, quote): (usize, usize, Option<u8>),
        is_reference: bool,
    ) -> usize {
        let value = match quote {
            Some(quote) => {
                if name == "name" && !is_reference {
                    let raw = &self.text[value_start..value_end];
                    self.beans[bean].name_property =
                        unescape(raw, &self.entities, Some(quote)).ok();
                }
                PropertyValue::Slot(SlotKind::Attribute(quote))
            }
            None => PropertyValue::Composite(String::new()),
        };
        self.properties.push(BeanProperty {
            bean_class: String::new(),
            bean: String::new(),
            name: name.to_owned(),
            line,
            value_start,
            value_end,
            value,
            is_reference,
        });
        self.property_bean.push(bean);
        self.properties.len() - 1
    }

    fn close(&mut self, frame: Frame, end_tag_start: usize) {
        match frame {
            Frame::Value {
                start,
                cdata,
                mixed,
            } => {
                let Some(Frame::Property(bean, property)) = self.frames.last() else {
                    return;
                };
                let (bean, property) = (*bean, *property);
                let inner = &self.text[start..end_tag_start];
                let simple = !mixed
                    && matches!(&self.properties[property].value, PropertyValue::Composite(c) if c.is_empty());
                let slot = match cdata {
                    Some((cdata_start, cdata_end))
                        if inner.trim()
                            == &self.text
                                [cdata_start - CDATA_OPEN.len()..cdata_end + CDATA_CLOSE.len()] =>
                    {
                        Some((cdata_start, cdata_end, SlotKind::Cdata))
                    }
                    Some(_) => None,
                    None => Some((start, end_tag_start, SlotKind::Text)),
                };
                match slot {
                    Some((value_start, value_end, kind)) if simple => {
                        let entry = &mut self.properties[property];
                        entry.value_start = value_start;
                        entry.value_end = value_end;
                        entry.value = PropertyValue::Slot(kind);
                        if entry.name == "name" {
                            self.beans[bean].name_property = match kind {
                                SlotKind::Text => unescape(inner, &self.entities, None).ok(),
                                _ => Some(self.text[value_start..value_end].to_owned()),
                            };
                        }
                    }
                    _ => self.note(&format!("<value>{inner}</value>")),
                }
            }
            Frame::Bean(_) | Frame::Property(..) | Frame::Neutral => {}
            _ => self.note("</>"),
        }
    }

    fn content(&mut self, raw: &str) {
        match self.frames.last_mut() {
            Some(Frame::Value { .. }) => {}
            _ if raw.trim().is_empty() => {}
            _ => {
                let raw = raw.trim().to_owned();
                self.note(&raw);
            }
        }
    }
}

/// Parses a beans file (as [`raw_text`](super::super::raw_text) text).
///
/// # Errors
/// [`Error::ConfigParse`] with the line when the text is not well-formed XML.
pub fn parse_beans(file: &str, text: &str) -> Result<BeanDocument> {
    // The reader skips a byte-order mark at the start of what it is given
    // and counts positions after it: every leading one is skipped here, so
    // its positions are this text's (a second mark once misplaced them).
    let body_offset = text.len() - text.trim_start_matches('\u{feff}').len();
    let mut parser = Parser {
        text,
        lines: Lines::new(text),
        frames: Vec::new(),
        beans: Vec::new(),
        properties: Vec::new(),
        property_bean: Vec::new(),
        entities: HashMap::new(),
        collections: 0,
    };
    let mut reader = Reader::from_str(&text[body_offset..]);
    reader.config_mut().check_end_names = true;
    loop {
        let start = body_offset + reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|error| {
            xml_error(
                file,
                &parser.lines,
                body_offset + reader.error_position() as usize,
                error,
            )
        })?;
        let end = body_offset + reader.buffer_position() as usize;
        match event {
            Event::Start(element) => {
                let frame = parser.open(&element, start, end);
                parser.frames.push(frame);
            }
            Event::Empty(element) => {
                let frame = parser.open(&element, start, end);
                parser.frames.push(frame);
                if let Some(frame) = parser.frames.pop() {
                    parser.close(frame, end);
                }
            }
            Event::End(_) => {
                if let Some(frame) = parser.frames.pop() {
                    parser.close(frame, start);
                }
            }
            Event::Text(_) | Event::GeneralRef(_) => parser.content(&text[start..end]),
            Event::CData(_) => {
                if let Some(Frame::Value { cdata, mixed, .. }) = parser.frames.last_mut() {
                    if cdata.is_some() {
                        *mixed = true;
                    }
                    *cdata = Some((start + CDATA_OPEN.len(), end - CDATA_CLOSE.len()));
                } else {
                    parser.content(&text[start..end]);
                }
            }
            Event::DocType(_) => parser.entities = declared_entities(&text[start..end]),
            Event::Eof => break,
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
        }
    }
    if !parser.frames.is_empty() {
        return Err(xml_error(
            file,
            &parser.lines,
            text.len(),
            "the file ends inside an element",
        ));
    }
    Ok(finish(parser))
}

/// Names every bean now that their `name` properties are known.
fn finish(parser: Parser<'_>) -> BeanDocument {
    let mut per_collection: HashMap<usize, usize> = HashMap::new();
    for bean in &parser.beans {
        if let (Some((collection, _)), None, None) = (bean.item, &bean.id, &bean.name_property) {
            *per_collection.entry(collection).or_default() += 1;
        }
    }
    let mut top_level: HashMap<String, usize> = HashMap::new();
    let mut top_level_count: HashMap<String, usize> = HashMap::new();
    for bean in &parser.beans {
        if bean.parent.is_none() && bean.id.is_none() && bean.item.is_none() && bean.path.is_empty()
        {
            *top_level_count
                .entry(short_class(&bean.class).to_owned())
                .or_default() += 1;
        }
    }
    let mut beans: Vec<Bean> = Vec::with_capacity(parser.beans.len());
    for bean in &parser.beans {
        let base = match bean.parent {
            Some(parent) => format!("{}{}", beans[parent].identity, bean.path),
            None => bean.path.clone(),
        };
        let mut positional_among = 0;
        let identity = match (&bean.id, bean.item, &bean.name_property) {
            (Some(id), _, _) => format!("#{id}"),
            (None, Some(_), Some(name)) => format!("{base}[name={name}]"),
            (None, Some((collection, position)), None) => {
                positional_among = per_collection.get(&collection).copied().unwrap_or(1);
                format!("{base}[{position}]")
            }
            (None, None, _) if bean.parent.is_none() && base.is_empty() => {
                let class = short_class(&bean.class).to_owned();
                let seen = top_level.entry(class.clone()).or_default();
                *seen += 1;
                let count = top_level_count.get(&class).copied().unwrap_or(1);
                if count > 1 {
                    positional_among = count;
                }
                if *seen == 1 {
                    class
                } else {
                    format!("{class}[{seen}]")
                }
            }
            (None, None, _) => base,
        };
        beans.push(Bean {
            class: bean.class.clone(),
            identity,
            positional_among,
            line: bean.line,
            top_level: bean.parent.is_none() && bean.item.is_none() && bean.path.is_empty(),
        });
    }
    // Two beans with one identity (two `constructor-arg` beans, say) are told apart by order.
    let mut occurrences: HashMap<String, usize> = HashMap::new();
    for bean in &beans {
        *occurrences.entry(bean.identity.clone()).or_default() += 1;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for bean in &mut beans {
        let count = occurrences.get(&bean.identity).copied().unwrap_or(1);
        if count > 1 {
            let n = seen.entry(bean.identity.clone()).or_default();
            *n += 1;
            bean.identity = format!("{}<{n}>", bean.identity);
            bean.positional_among = bean.positional_among.max(count);
        }
    }
    let mut properties = parser.properties;
    for (property, bean) in properties.iter_mut().zip(parser.property_bean) {
        property.bean = beans[bean].identity.clone();
        property.bean_class = beans[bean].class.clone();
    }
    BeanDocument {
        beans,
        properties,
        entities: parser.entities,
    }
}

/// `DataRegionConfiguration` of `org.apache.ignite.configuration.DataRegionConfiguration`.
pub fn short_class(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class)
}

/// Every bean property with one value the tool can carry.
///
/// # Errors
/// [`Error::ConfigParse`] with the line when the text is not well-formed XML.
pub fn bean_properties(file: &str, text: &str) -> Result<Vec<BeanProperty>> {
    Ok(parse_beans(file, text)?
        .properties
        .into_iter()
        .filter(|property| matches!(property.value, PropertyValue::Slot(_)))
        .collect())
}
