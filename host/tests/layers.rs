//! The host's architecture, checked: every layer (a top-level folder of `src/`) imports only the
//! layers listed before it in [`LAYERS`], and the modules inside one layer import each other
//! without cycles. ARCHITECTURE.md describes the layers; this test keeps the code honest to it.
//!
//! A reference is any path `crate::a::b` or `super::b` outside a comment. A module's own
//! submodules count as part of it, and a layer's root file (`mod.rs`) may use its modules and be
//! used by them (it is the layer's face); cycles are looked for among the other modules.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A layer may import itself and the layers before it.
const LAYERS: [&str; 10] = [
    "types", "store", "kernels", "backends", "engine", "manager", "wit_host", "runtime", "serve",
    "cli",
];

/// One source file: its module path (`["engine", "workers", "served"]`) and its lines.
struct Source {
    file: PathBuf,
    module: Vec<String>,
    code: Vec<String>,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .map(|file| {
            let relative = file.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|last| last == "mod") {
                module.pop();
            }
            let text = fs::read_to_string(&file).unwrap();
            let code = text.lines().map(str::to_string).collect();
            Source { file, module, code }
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The absolute module paths (first two segments) `source` refers to.
fn references(source: &Source) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    for line in &source.code {
        let line = line.split("//").next().unwrap_or("");
        for (start, _) in line.match_indices("crate::") {
            for path in paths_after(&line[start + "crate::".len()..]) {
                found.insert(path);
            }
        }
        for (start, _) in line.match_indices("super::") {
            if start >= 2 && &line[start - 2..start] == "::" {
                continue; // the tail of `super::super::`, counted from its head
            }
            let mut rest = &line[start..];
            let mut base = source.module.clone();
            while let Some(tail) = rest.strip_prefix("super::") {
                base.pop();
                rest = tail;
            }
            for path in paths_after(rest) {
                let mut absolute = base.clone();
                absolute.extend(path);
                found.insert(absolute);
            }
        }
    }
    found
        .into_iter()
        .map(|path| path.into_iter().take(2).collect())
        .collect()
}

/// The paths named at the start of `text`: `a::b::C` gives `[a, b, C]`; `{a::x, b}` gives both.
fn paths_after(text: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|part| {
                part.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|part| !part.is_empty())
            .collect()
    };
    match text.strip_prefix('{') {
        Some(group) => group
            .split('}')
            .next()
            .unwrap_or("")
            .split(',')
            .map(|item| ident(item.trim()))
            .filter(|path| !path.is_empty())
            .collect(),
        None => vec![ident(text)]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect(),
    }
}

fn layer_of(module: &[String]) -> Option<usize> {
    LAYERS
        .iter()
        .position(|layer| module.first() == Some(&layer.to_string()))
}

#[test]
fn every_top_level_module_is_a_known_layer() {
    for source in sources() {
        let root_file = source.module == ["lib"] || source.module == ["main"];
        assert!(
            root_file || layer_of(&source.module).is_some(),
            "{} is in no layer of {LAYERS:?}: add its folder to ARCHITECTURE.md and LAYERS",
            source.file.display()
        );
    }
}

#[test]
fn layers_import_only_the_layers_below_them() {
    let mut violations = Vec::new();
    for source in sources() {
        let Some(from) = layer_of(&source.module) else {
            continue; // lib.rs and main.rs sit above every layer
        };
        for target in references(&source) {
            if let Some(to) = layer_of(&target)
                && to > from
            {
                violations.push(format!(
                    "{} ({}) uses {} ({})",
                    source.file.display(),
                    LAYERS[from],
                    target.join("::"),
                    LAYERS[to]
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layer order {LAYERS:?}:\n{}",
        violations.join("\n")
    );
}

#[test]
fn modules_of_a_layer_import_each_other_without_cycles() {
    let sources = sources();
    let reexports = reexports(&sources);
    // Edges between the modules of one layer (its root file excluded); a name the root
    // re-exports counts as a use of the module it comes from.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for source in &sources {
        if source.module.len() < 2 {
            continue;
        }
        let from: Vec<String> = source.module[..2].to_vec();
        for target in references(source) {
            let target = reexports.get(&target).cloned().unwrap_or(target);
            if target.len() == 2 && target[0] == from[0] && target != from && is_module(&target) {
                edges.entry(from.clone()).or_default().insert(target);
            }
        }
    }
    let mut done = BTreeSet::new();
    for start in edges.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = find_cycle(start, &edges, &mut path, &mut done) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            panic!("import cycle: {}", names.join(" -> "));
        }
    }
}

/// What each layer's root file re-exports: `[layer, Name]` → `[layer, module]`, from lines
/// `pub use module::Name;` and `pub use module::{A, b::B};`.
fn reexports(sources: &[Source]) -> BTreeMap<Vec<String>, Vec<String>> {
    let mut found = BTreeMap::new();
    for source in sources.iter().filter(|s| s.module.len() == 1) {
        let text = source.code.join(" ");
        for statement in text.split(';') {
            let Some(used) = statement.trim().strip_prefix("pub use ") else {
                continue;
            };
            let Some((module, names)) = used.split_once("::") else {
                continue;
            };
            let names = names.trim_start_matches('{').trim_end_matches('}');
            for name in names.split(',') {
                let name = name.rsplit("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    found.insert(
                        vec![source.module[0].clone(), name.to_string()],
                        vec![source.module[0].clone(), module.trim().to_string()],
                    );
                }
            }
        }
    }
    found
}

/// Whether `path` (two segments) names a module file or folder, not an item of the layer root.
fn is_module(path: &[String]) -> bool {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(&path[0]);
    src.join(format!("{}.rs", path[1])).is_file() || src.join(&path[1]).is_dir()
}

fn find_cycle(
    node: &Vec<String>,
    edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    path: &mut Vec<Vec<String>>,
    done: &mut BTreeSet<Vec<String>>,
) -> Option<Vec<Vec<String>>> {
    if let Some(at) = path.iter().position(|n| n == node) {
        let mut cycle = path[at..].to_vec();
        cycle.push(node.clone());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.clone());
    for next in edges.get(node).into_iter().flatten() {
        if let Some(cycle) = find_cycle(next, edges, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node.clone());
    None
}

#[test]
fn the_checker_sees_an_upward_import_and_a_cycle() {
    let source = |module: &[&str], code: &str| Source {
        file: PathBuf::from("example.rs"),
        module: module.iter().map(|s| s.to_string()).collect(),
        code: vec![code.to_string()],
    };
    let upward = source(
        &["engine", "workers", "served"],
        "use crate::manager::registry::X;",
    );
    assert!(references(&upward).contains(&vec!["manager".into(), "registry".into()]));
    let relative = source(
        &["engine", "workers", "served"],
        "use super::super::memory::{a, b};",
    );
    assert!(references(&relative).contains(&vec!["engine".into(), "memory".into()]));
    let grouped = source(
        &["serve", "admin"],
        "use crate::{types::HostError, cli::run};",
    );
    assert!(references(&grouped).contains(&vec!["cli".into(), "run".into()]));
    let commented = source(&["types", "ids"], "let x = 1; // see crate::cli::run");
    assert!(references(&commented).is_empty());

    let a = vec!["engine".to_string(), "a".to_string()];
    let b = vec!["engine".to_string(), "b".to_string()];
    let edges = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert!(find_cycle(&a, &edges, &mut Vec::new(), &mut BTreeSet::new()).is_some());
}
