//! The modules of each crate form layers: no module reaches, through `crate::` paths, one that
//! reaches it back. Read from the source, so that a new circle fails here, with its members
//! named, rather than in a reader's head. storaged's `db` is the bottom layer: it names no
//! module but `error` (record types, the checkpoint signal and where files live are below it
//! or in it).
//!
//! What counts: `crate::module` in code outside comments and test modules, for the top-level
//! modules of `src/` (a directory module is one module with its files). The crate root
//! (`lib.rs`, `main.rs`) declares the modules and may use any of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "ipc",
    "sandbox",
    "supervisor",
    "keyd",
    "authd",
    "storaged",
    "smtpd",
    "imapd",
    "queued",
    "httpd",
    "keyclient",
    ".",
];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file that only holds tests (declared `#[cfg(test)] mod …;` by its parent).
fn is_test_file(path: &Path) -> bool {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    stem == "tests" || stem.ends_with("_tests") || stem.starts_with("tests_")
}

/// The code of a file without comments and without its inline test module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules of `src` and the modules each one names.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |path: &Path| -> Option<String> {
        let rel = path.strip_prefix(src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let name = first.trim_end_matches(".rs").to_string();
        (name != "lib" && name != "main").then_some(name)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|p| module_of(p)).collect();
    let mut graph = Graph::new();
    for path in &files {
        let Some(module) = module_of(path) else {
            continue;
        };
        if is_test_file(path) {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read");
        let deps = graph.entry(module.clone()).or_default();
        let code = code(&text);
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name != module && modules.contains(&name) {
                deps.insert(name);
            }
        }
    }
    graph
}

/// The strongly connected groups of more than one module (Tarjan).
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.stack.contains(&w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                group.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.found.push(group);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn no_crate_has_an_import_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let graph = graph(&src);
        for group in circles(&graph) {
            all.push(format!("{krate}: {}", group.join(" ⇄ ")));
        }
    }
    assert!(all.is_empty(), "import circles:\n{}", all.join("\n"));
}

#[test]
fn storaged_db_is_the_bottom_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = graph(&root.join("storaged/src"));
    assert!(
        graph.len() > 10,
        "storaged's modules were not found: {graph:?}"
    );
    let db = &graph["db"];
    assert_eq!(
        db.iter().map(String::as_str).collect::<Vec<_>>(),
        ["error"],
        "storaged's db names modules above it"
    );
}

#[test]
fn a_circle_is_found_and_named() {
    let mut graph = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph.entry(a.into()).or_default().insert(b.into());
    }
    graph.entry("d".into()).or_default();
    assert_eq!(circles(&graph), [["a", "b", "c"]]);
    graph.get_mut("c").expect("c").remove("a");
    assert!(circles(&graph).is_empty());
}
