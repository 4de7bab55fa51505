//! The YAML config migration on documents written by others: a sample of the
//! YAML test suite (`tests/corpus/yaml-test-suite/`, see its SOURCE.md).
//!
//! Each mapping-shaped document goes through the migration as the old file
//! (against a small new file that has its top-level keys) and as the new file
//! (with an old file setting two of its keys and one it lacks); each invalid
//! document goes through as either file. Every run must carry correctly (the
//! result means, as `yaml_serde` reads it, the new file overridden by the old
//! one) or refuse with a config error: never a corrupted result, never a panic.

// It reads the corpus files shipped with the repository, not a server.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use cmw_upgrade_core::config::yaml_merge::{current_name, migrate_yaml, NEVER_CARRIED};
use cmw_upgrade_core::Error;
use yaml_serde::{Mapping, Value};

fn corpus(kind: &str) -> Vec<(String, String)> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../tests/corpus/yaml-test-suite/{kind}"));
    let mut paths: Vec<PathBuf> = fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// What a text means as a config, by the YAML parser alone.
fn meaning(text: &str) -> Option<Mapping> {
    match yaml_serde::from_str(text.strip_prefix('\u{feff}').unwrap_or(text)).ok()? {
        Value::Mapping(mapping) => Some(mapping),
        Value::Null => Some(Mapping::new()),
        _ => None,
    }
}

/// The new file's meaning overridden by the old file's, under current names.
fn intended(old: &str, new: &str) -> Option<Mapping> {
    let mut intended = meaning(new)?;
    for (key, value) in meaning(old)? {
        let Some(name) = key.as_str() else {
            // The migration must refuse a key that is not a name.
            return None;
        };
        if !NEVER_CARRIED.contains(&name) {
            intended.insert(Value::String(current_name(name).to_owned()), value);
        }
    }
    Some(intended)
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Carried,
    Refused,
}

/// Runs one migration; `Err` describes a corrupted result, a wrong error or a panic.
fn run(case: &str, old: &str, new: &str) -> Result<Outcome, String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        migrate_yaml("f.yml", Some(old), new, &[], "now")
    }))
    .map_err(|_| format!("{case}: panicked"))?;
    match outcome {
        Ok(migration) => {
            let Some(expected) = intended(old, new) else {
                return Err(format!(
                    "{case}: carried although the inputs are not both mappings of names:\n{}",
                    migration.text
                ));
            };
            match meaning(&migration.text) {
                Some(result) if result == expected => Ok(Outcome::Carried),
                Some(result) => Err(format!(
                    "{case}: corrupted: means {result:?}, not {expected:?}:\n{}",
                    migration.text
                )),
                None => Err(format!(
                    "{case}: corrupted: does not parse:\n{}",
                    migration.text
                )),
            }
        }
        Err(Error::ConfigParse { .. }) => Ok(Outcome::Refused),
        Err(other) => Err(format!("{case}: not a config error: {other}")),
    }
}

/// A key as it starts a line, quoted so that it reads back as the same string.
fn key_line(key: &str, value: &str) -> String {
    let escaped: String = key
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            '\n' => vec!['\\', 'n'],
            '\t' => vec!['\\', 't'],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\": {value}\n")
}

fn string_keys(text: &str) -> Vec<String> {
    meaning(text)
        .map(|mapping| {
            mapping
                .keys()
                .filter_map(|key| key.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Default)]
struct Tally {
    carried: usize,
    refused: usize,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, result: Result<Outcome, String>) {
        match result {
            Ok(Outcome::Carried) => self.carried += 1,
            Ok(Outcome::Refused) => self.refused += 1,
            Err(failure) => self.failures.push(failure),
        }
    }
}

#[test]
fn mapping_documents_are_carried_or_refused_never_corrupted() {
    let documents = corpus("valid");
    assert!(documents.len() >= 100, "the corpus is missing");
    let (mut as_old, mut as_new) = (Tally::default(), Tally::default());
    for (name, text) in &documents {
        let keys = string_keys(text);
        // As the old file, against a new file with the same keys set otherwise.
        let mut new = String::from("# the new version's config\n");
        for key in &keys {
            new.push_str(&key_line(key, "new value  # from the new version"));
        }
        as_old.add(run(&format!("{name} as the old file"), text, &new));
        // As the new file, with an old file setting two of its keys and one it lacks.
        let mut old = String::new();
        for key in keys.iter().take(2) {
            old.push_str(&key_line(key, "'carried value'"));
        }
        old.push_str("added.by.old: 1\n");
        as_new.add(run(&format!("{name} as the new file"), &old, text));
    }
    eprintln!(
        "{} mapping documents: as the old file {} carried, {} refused; as the new file {} carried, {} refused",
        documents.len(),
        as_old.carried,
        as_old.refused,
        as_new.carried,
        as_new.refused
    );
    let failures: Vec<&String> = as_old.failures.iter().chain(&as_new.failures).collect();
    assert!(failures.is_empty(), "{failures:#?}");
    // At least half carry: the migration does not hold up by refusing everything.
    assert!(as_old.carried * 2 >= documents.len(), "{}", as_old.carried);
    assert!(as_new.carried * 2 >= documents.len(), "{}", as_new.carried);
}

#[test]
fn invalid_documents_are_refused_or_carried_as_read_never_corrupted() {
    let documents = corpus("error");
    assert!(documents.len() >= 50, "the corpus is missing");
    let mut tally = Tally::default();
    for (name, text) in &documents {
        tally.add(run(&format!("{name} as the old file"), text, "a: 1\n"));
        tally.add(run(&format!("{name} as the new file"), "a: 2\n", text));
    }
    eprintln!(
        "{} invalid documents, as either file: {} carried (the YAML parser accepts them), {} refused",
        documents.len(),
        tally.carried,
        tally.refused
    );
    assert!(tally.failures.is_empty(), "{:#?}", tally.failures);
}
