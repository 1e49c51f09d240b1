//! The crate's layout is its architecture (see `host/src/lib.rs`): four wings and
//! the wiring above them. These tests read the sources and hold the tree to it: a
//! wing imports only the wings below it, no two modules import each other (even
//! through others), and every wing says what it is for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import (besides itself). `app` is the top: it
/// may import everything, and nothing imports it.
const ALLOWED: &[(&str, &[&str])] = &[
    ("secrets", &[]),
    ("bundle", &["secrets"]),
    ("config", &["secrets", "bundle"]),
    ("metrics", &["secrets", "bundle"]),
    ("fuzz_checks", &["secrets", "bundle"]),
    ("serve", &["secrets", "bundle", "config", "metrics"]),
    ("ops", &["secrets", "bundle", "config"]),
    (
        "cli",
        &["secrets", "bundle", "config", "metrics", "serve", "ops"],
    ),
    (
        "app",
        &[
            "secrets", "bundle", "config", "metrics", "serve", "ops", "cli",
        ],
    ),
];

const WINGS: [&str; 4] = ["secrets", "bundle", "serve", "ops"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file of the library: `a::b` for `a/b.rs` or `a/b/mod.rs`.
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read host/src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = src();
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut modules = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&root).expect("under src");
        let mut parts: Vec<String> = relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        modules.insert(parts.join("::"), file);
    }
    modules
}

/// The code of a file without its comments (doc links are not imports).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") { "" } else { line }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `text` names through `crate::` paths, including `crate::a::{b, c}`.
fn references(text: &str, modules: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let longest_module = |segments: &[&str]| {
        (1..=segments.len())
            .rev()
            .map(|n| segments[..n].join("::"))
            .find(|candidate| modules.contains_key(candidate))
    };
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        if let Some(module) = longest_module(&segments) {
            found.insert(module);
        }
        // `crate::a::{b, c::d}`: each item of a one-level group.
        if rest[path.len()..].starts_with('{')
            && let Some(end) = rest[path.len()..].find('}')
        {
            let group = &rest[path.len() + 1..path.len() + end];
            for item in group.split(',') {
                let mut full: Vec<&str> = segments.clone();
                full.extend(item.trim().split("::").filter(|s| !s.is_empty()));
                if let Some(module) = longest_module(&full) {
                    found.insert(module);
                }
            }
        }
    }
    found
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    assert!(
        modules.len() > 30,
        "found only {} modules under {}",
        modules.len(),
        src().display()
    );
    modules
        .iter()
        .map(|(name, file)| {
            let text = std::fs::read_to_string(file).expect("read module");
            let mut refs = references(&code(&text), &modules);
            refs.remove(name);
            (name.clone(), refs)
        })
        .collect()
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn a_lower_wing_never_imports_a_higher_one() {
    let graph = import_graph();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    let mut crossings = 0;
    for (module, refs) in &graph {
        let from = top(module);
        let may = allowed
            .get(from)
            .unwrap_or_else(|| panic!("top-level module {from} is not in the layering table"));
        for target in refs {
            let to = top(target);
            if to == from {
                continue;
            }
            crossings += 1;
            if !may.contains(&to) {
                wrong.push(format!("{module} imports {target}"));
            }
        }
    }
    assert!(
        crossings > 20,
        "only {crossings} imports between wings were found: the scan is broken"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other_even_through_others() {
    let graph = import_graph();
    // Tarjan's strongly connected components: any component of two or more
    // modules is a cycle.
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        cycles: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in &state.graph[node] {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member);
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                state.cycles.push(component);
            }
        }
    }
    let mut state = State {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        cycles: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    assert!(
        state.cycles.is_empty(),
        "import cycles between modules: {:?}",
        state.cycles
    );
}

#[test]
fn every_wing_says_what_it_is_for_and_what_it_may_import() {
    for wing in WINGS {
        let path = src().join(wing).join("mod.rs");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc: Vec<&str> = text.lines().take_while(|l| l.starts_with("//!")).collect();
        assert!(
            doc.len() >= 3,
            "{} has no //! documentation",
            path.display()
        );
        assert!(
            doc.iter().any(|l| l.contains("Imports:")),
            "{} does not say what it may import",
            path.display()
        );
    }
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    for wing in WINGS {
        assert!(
            lib.contains(&format!("pub mod {wing};")),
            "lib.rs does not declare {wing}"
        );
        assert!(
            lib.contains(&format!("[`{wing}`]")),
            "lib.rs's module map does not name {wing}"
        );
    }
}
