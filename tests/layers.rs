//! The library's structure, checked from its source: modules import only from the layers below them (listed in
//! src/lib.rs's documentation), no two modules import each other however indirectly, and no source file grows
//! past the size one reader can hold in mind. Test code (`#[cfg(test)]` modules and `tests.rs` files) may import
//! anything and is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer, bottom first, as src/lib.rs and docs/ARCHITECTURE.md number them. A module may
/// use modules of lower layers; within the vocabulary (1), the registry (4) and the operations (5) modules may use
/// each other without a cycle; formats (3) may not use one another at all.
const LAYERS: &[(usize, &[&str])] = &[
    (1, &["error", "io", "options", "random", "extent", "image", "chain", "writer", "report"]),
    (2, &["tar", "guest", "bitmap", "sparse"]),
    (3, &["qcow2", "vmdk", "vhdx", "vpc", "raw", "ova"]),
    (4, &["formats", "open"]),
    (5, &["convert", "target", "check", "compare", "seed"]),
    (6, &["native", "web"]),
];

/// The layer whose modules must not use one another.
const FORMATS: usize = 3;

/// Library files longer than this are to be split (issue 18: "no source file over ~600 lines").
const MAX_LINES: usize = 600;

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .find(|(_, modules)| modules.contains(&module))
        .map(|(layer, _)| *layer)
        .unwrap_or_else(|| panic!("module '{module}' has no layer in tests/layers.rs"))
}

/// Every library source file (the CLI binary is a crate of its own), with the top-level module it belongs to.
fn library_files() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
            let module = first.trim_end_matches(".rs").to_string();
            let test_only = relative.file_name().is_some_and(|n| n == "tests.rs");
            (module != "lib" && module != "bin" && !test_only).then_some((module, path))
        })
        .collect()
}

/// The file's code without its test module (test modules come last in a file) and without comments, whose links
/// to other modules are documentation, not imports.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The top-level modules `code` names through `crate::`.
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())].split(',').collect(),
            None => vec![rest],
        };
        for name in names {
            let name = name.trim();
            let end = name.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(name.len());
            let module = &name[..end];
            // `crate::Error` and friends are the error module's re-exports.
            if module.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                used.insert(module.to_string());
            } else if !module.is_empty() {
                used.insert("error".to_string());
            }
        }
    }
    used
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in library_files() {
        let uses = used_modules(&code(&path));
        graph.entry(module.clone()).or_default().extend(uses.into_iter().filter(|u| *u != module));
    }
    graph
}

#[test]
fn modules_import_only_from_the_layers_below() {
    let mut wrong = Vec::new();
    for (module, uses) in graph() {
        for used in uses {
            let (from, to) = (layer(&module), layer(&used));
            if to > from || (to == from && from == FORMATS) {
                wrong.push(format!("{module} (layer {from}) uses {used} (layer {to})"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers:\n{}", wrong.join("\n"));
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let graph = graph();
    // Depth-first search, reporting the first cycle found as a path.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn no_library_file_is_too_long_to_read_at_once() {
    let long: Vec<String> = library_files()
        .into_iter()
        .map(|(_, path)| (std::fs::read_to_string(&path).unwrap().lines().count(), path))
        .filter(|(lines, _)| *lines > MAX_LINES)
        .map(|(lines, path)| format!("{}: {lines} lines", path.display()))
        .collect();
    assert!(long.is_empty(), "split these files:\n{}", long.join("\n"));
}

#[test]
fn the_checker_sees_imports_in_every_form() {
    let code = "use crate::image::{Image, ImageInfo};\nuse crate::{chain, io::Sink};\nlet e = crate::Error::x();";
    let used: Vec<String> = used_modules(code).into_iter().collect();
    assert_eq!(used, ["chain", "error", "image", "io"]);
}
