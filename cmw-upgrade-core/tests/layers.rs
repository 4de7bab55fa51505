//! The core's layering, read from its own source: no import cycles between
//! its modules (nor between the files of `executor/` and `procedure/`), and
//! no import running back up a layer (nothing below the executor imports it,
//! the cut-over or the procedure; the executor imports neither of those two;
//! the cut-over never imports the procedure).
//!
//! An "import" is any `crate::name` or `super::name` path in code (comments
//! and test modules left out), which is what a reader follows too.

// It reads the crate's own source files, not a server.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Files that exist only for tests.
const TEST_FILES: &[&str] = &["tests.rs", "decisions.rs", "memory.rs"];

fn rust_files(folder: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// The code of a file: comments and the trailing test module removed.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(index) => &text[..index],
        None => &text,
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names following `prefix` in `code` (`crate::` → `backup`, ...).
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    code.match_indices(prefix)
        .map(|(index, _)| {
            code[index + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

type Graph = BTreeMap<String, BTreeSet<String>>;

fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|seen| seen == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, done, path) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

struct Source {
    /// The top-level module (`executor`, `layout`, ...).
    module: String,
    /// The file's module inside its top-level folder (`local`, `mod`), when it has one.
    inner: Option<String>,
    code: String,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .filter(|path| {
            !TEST_FILES.contains(&path.file_name().unwrap().to_str().unwrap())
                && path.file_name().unwrap() != "lib.rs"
        })
        .map(|path| {
            let relative = path.strip_prefix(&src).unwrap();
            let parts: Vec<String> = relative
                .iter()
                .map(|part| part.to_str().unwrap().trim_end_matches(".rs").to_owned())
                .collect();
            Source {
                module: parts[0].clone(),
                inner: parts.get(1).cloned(),
                code: code(&path),
            }
        })
        .collect()
}

#[test]
fn the_core_has_no_import_cycle_and_no_import_up_a_layer() {
    let sources = sources();
    assert!(sources.len() > 30, "the sources were found");
    let mut modules = Graph::new();
    for source in &sources {
        let imports = names_after(&source.code, "crate::");
        let entry = modules.entry(source.module.clone()).or_default();
        entry.extend(imports.into_iter().filter(|name| *name != source.module));
    }
    // Functions and types re-exported at the crate root are not modules.
    for imports in modules.values_mut() {
        imports.retain(|name| sources.iter().any(|source| source.module == *name));
    }
    assert_eq!(cycle(&modules), None, "modules: {modules:#?}");

    for (module, imports) in &modules {
        let above: &[&str] = match module.as_str() {
            "procedure" => &[],
            // The cut-over drives servers through the executor; it is no
            // step of the upgrade procedure and never reaches into it.
            "cutover" => &["procedure"],
            "executor" => &["cutover", "procedure"],
            _ => &["executor", "cutover", "procedure"],
        };
        for name in above {
            assert!(
                !imports.contains(*name),
                "{module} imports {name}, a layer above it"
            );
        }
    }

    // Inside the two layered folders, sibling files do not loop either; an
    // item re-exported by mod.rs counts as an import of the file defining it.
    for folder in ["executor", "procedure"] {
        let siblings: Vec<&Source> = sources
            .iter()
            .filter(|source| source.module == folder && source.inner.is_some())
            .collect();
        let defined_in = |name: &str| -> Option<String> {
            siblings.iter().find_map(|source| {
                let inner = source.inner.clone()?;
                if inner == name {
                    return Some(inner);
                }
                ["struct", "enum", "trait", "fn", "type", "const", "mod"]
                    .iter()
                    .any(|kind| {
                        source.code.contains(&format!("pub {kind} {name}"))
                            || source.code.contains(&format!("pub(crate) {kind} {name}"))
                            || source.code.contains(&format!("pub(super) {kind} {name}"))
                    })
                    .then_some(inner)
                    .filter(|inner| inner != "mod")
            })
        };
        let mut files = Graph::new();
        for source in &siblings {
            let inner = source.inner.clone().unwrap_or_default();
            if inner == "mod" {
                // mod.rs declares its children; a child using its parent is not a loop.
                continue;
            }
            let mut names = paths_after(&source.code, "super::");
            names.extend(paths_after(&source.code, &format!("crate::{folder}::")));
            let imports: BTreeSet<String> = names
                .iter()
                .filter_map(|name| defined_in(name))
                .filter(|file| *file != inner)
                .collect();
            files.entry(inner).or_default().extend(imports);
        }
        assert_eq!(cycle(&files), None, "{folder}/: {files:#?}");
    }
}

/// The first segment of every path after `prefix`, braces expanded:
/// `super::{a, B, c::D}` gives `a`, `B`, `c`.
fn paths_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let word = |text: &str| -> String {
        text.trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (index, _) in code.match_indices(prefix) {
        let rest = &code[index + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            names.extend(group[..end].split(',').map(word));
        } else {
            names.insert(word(rest));
        }
    }
    names.retain(|name| !name.is_empty() && name != "self");
    names
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: Graph = [
        ("a".to_owned(), ["b".to_owned()].into()),
        ("b".to_owned(), ["c".to_owned()].into()),
        ("c".to_owned(), ["a".to_owned()].into()),
    ]
    .into();
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let acyclic: Graph = [("a".to_owned(), ["b".to_owned()].into())].into();
    assert_eq!(cycle(&acyclic), None);
}
