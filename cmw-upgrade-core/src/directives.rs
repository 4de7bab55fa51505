//! Reading directive values from the platform's YAML config files.
//!
//! The files use flat dotted keys at top level (`db.workDir: /var/lib/...`),
//! but some docs show the nested form (`db:` / `  workDir:`); both are read.
//! Old versions use other names for the same directives; [`RENAMED_DIRECTIVES`]
//! maps them, so a 4.7 config is read as correctly as a 5.0 one.

use std::path::Path;

use yaml_serde::{Mapping, Value};

use crate::error::{Error, Result};

/// Directives renamed between versions: `(old name, current name)`.
pub const RENAMED_DIRECTIVES: &[(&str, &str)] = &[
    ("instanceName", "clusterName"),
    ("elasticsearchUri", "journal.server"),
    ("databasePath", "db.workDir"),
    ("databaseName", "db.name"),
    (
        "backup.config.default.repository.localDisk.path",
        "backup.defaultFolder",
    ),
    ("backupPath", "backup.defaultFolder"),
    ("tempPath", "tempStorage.localDisk.path"),
    ("streamsPath", "userStorage.localDisk.path"),
];

/// Parses a config's meaning as its top-level mapping (empty for an empty or
/// comment-only file); a leading BOM is ignored.
///
/// # Errors
/// [`Error::ConfigParse`] with the file and line when the text is not YAML or its
/// top level is not a mapping.
pub fn parse_mapping(text: &str, file: &Path) -> Result<Mapping> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Every printer masks what is remembered here, parse error or not.
    crate::secrets::remember_yaml_lines(text);
    let value: Value = yaml_serde::from_str(text).map_err(|error| Error::ConfigParse {
        path: file.to_path_buf(),
        line: error.location().map(|location| location.line()),
        message: crate::secrets::mask_secret_values(text, &error.to_string()),
    })?;
    crate::secrets::remember_yaml_tree(&value);
    match value {
        Value::Null => Ok(Mapping::new()),
        Value::Mapping(mapping) => Ok(mapping),
        _ => Err(Error::ConfigParse {
            path: file.to_path_buf(),
            line: Some(1),
            message: "the top level is not a set of `key: value` directives".to_owned(),
        }),
    }
}

/// The parsed top level of a platform YAML config file.
#[derive(Debug, Clone, Default)]
pub struct Directives {
    root: Option<Value>,
}

impl Directives {
    /// Parses a YAML config text. An empty or comment-only file has no directives.
    ///
    /// # Errors
    /// [`Error::ConfigParse`] with the file and line when the text is not YAML
    /// or its top level is not a mapping.
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let mapping = parse_mapping(text, file)?;
        Ok(Directives {
            root: (!mapping.is_empty()).then_some(Value::Mapping(mapping)),
        })
    }

    /// The value of a directive as text, looked up as a flat dotted key and then nested.
    ///
    /// Scalars are returned as written (numbers and booleans as text); an empty
    /// value, `null`, a list or a mapping gives `None`.
    pub fn get(&self, key: &str) -> Option<String> {
        let mapping = self.root.as_ref()?.as_mapping()?;
        if let Some(value) = mapping.get(key) {
            return scalar_text(value);
        }
        let mut node = self.root.as_ref()?;
        for part in key.split('.') {
            node = node.as_mapping()?.get(part)?;
        }
        scalar_text(node)
    }

    /// The value of a directive under its current name, or else under any old name
    /// that was renamed to it. Returns the value and the name it was found under.
    pub fn get_current_or_renamed(&self, current: &str) -> Option<(String, String)> {
        if let Some(value) = self.get(current) {
            return Some((value, current.to_owned()));
        }
        RENAMED_DIRECTIVES
            .iter()
            .filter(|(_, new)| *new == current)
            .find_map(|(old, _)| self.get(old).map(|value| (value, (*old).to_owned())))
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if text.trim().is_empty() => None,
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Tagged(tagged) => scalar_text(&tagged.value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Directives {
        Directives::parse(text, Path::new("test.yml")).unwrap()
    }

    #[test]
    fn flat_dotted_keys_and_nested_keys_are_both_read() {
        let flat = parse("# comment\ndb.workDir: /data/db\n#db.name: off\ndb.name: prod\n");
        assert_eq!(flat.get("db.workDir").as_deref(), Some("/data/db"));
        assert_eq!(flat.get("db.name").as_deref(), Some("prod"));
        let nested = parse("db:\n  workDir: \"/data/db\"\n  port: 8080\n");
        assert_eq!(nested.get("db.workDir").as_deref(), Some("/data/db"));
        assert_eq!(nested.get("db.port").as_deref(), Some("8080"));
        assert_eq!(nested.get("db.missing"), None);
    }

    #[test]
    fn old_names_are_found_for_current_ones() {
        let old = parse("databasePath: /old/db\nstreamsPath: /old/streams\n");
        assert_eq!(
            old.get_current_or_renamed("db.workDir"),
            Some(("/old/db".to_owned(), "databasePath".to_owned()))
        );
        let both = parse("databasePath: /old/db\ndb.workDir: /new/db\n");
        assert_eq!(
            both.get_current_or_renamed("db.workDir").unwrap().0,
            "/new/db"
        );
    }

    #[test]
    fn empty_and_non_scalar_values_are_absent() {
        let directives = parse("a:\nb: ''\nservices:\n  - one\n  - two\nc: ~\n");
        for key in ["a", "b", "services", "c", "zzz"] {
            assert_eq!(directives.get(key), None, "{key}");
        }
        assert_eq!(parse("").get("a"), None);
        assert_eq!(parse("# only comments\n").get("a"), None);
    }

    #[test]
    fn broken_yaml_names_the_file_and_line() {
        let error =
            Directives::parse("a: 1\nb: [unclosed\n", Path::new("/x/prod.yml")).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("/x/prod.yml:"), "{text}");
        let error = Directives::parse("- a\n- b\n", Path::new("list.yml")).unwrap_err();
        assert!(error.to_string().contains("not a set"), "{error}");
    }
}
