//! No import circles between the modules of either crate: the data goes one way (HTTP in `src/` →
//! actors → journal → store → MongoDB), and shared types live in leaf modules that import nothing above
//! them. This reads every `use` of `crate::…` and `super::…` (and inline `crate::…` paths) in `src/` and
//! `actors/src/`, resolves each to the module file it names, and fails with the circle it finds.
//! Re-exports (`pub use`) are a module's façade, not a dependency of it, and are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `root`, by module path (`store::events`; the crate root is empty).
fn modules(root: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(directory) = stack.pop() {
        for entry in std::fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|extension| extension.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            found.insert(parts, path);
        }
    }
    found
}

/// The module paths a file's code names: `crate::a::b::Item` and `super::…`, groups (`{…}`) expanded.
fn named_paths(source: &str, module: &[String]) -> Vec<Vec<String>> {
    // `super` of `a/b.rs` (module a::b) is `a`; of `a/mod.rs` (module a) it is the crate root.
    let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
    let mut paths = Vec::new();
    let mut in_tests = false;
    for line in source.lines() {
        let line = line.trim();
        if line.starts_with("#[cfg(test)]") {
            // Test modules come last in a file and may import anything.
            in_tests = true;
        }
        if in_tests || line.starts_with("//") || line.starts_with("pub use") {
            continue;
        }
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let mut path = base.clone();
                let mut segment = String::new();
                for c in rest.chars() {
                    if c.is_alphanumeric() || c == '_' {
                        segment.push(c);
                    } else if c == ':' {
                        if !segment.is_empty() {
                            path.push(std::mem::take(&mut segment));
                        }
                    } else if c == '{' {
                        // A group: each item starts from `path`.
                        let group: String = rest[rest.find('{').unwrap() + 1..]
                            .split('}')
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        for item in group.split(',') {
                            let mut full = path.clone();
                            full.extend(
                                item.split("::")
                                    .map(|part| part.trim().to_owned())
                                    .filter(|part| !part.is_empty() && part != "self"),
                            );
                            paths.push(full);
                        }
                        break;
                    } else {
                        break;
                    }
                }
                if !segment.is_empty() {
                    path.push(segment);
                }
                paths.push(path);
            }
        }
    }
    paths
}

/// The import graph of one crate: file → the files it names.
fn graph(root: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let modules = modules(root);
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (module, file) in &modules {
        let source = std::fs::read_to_string(file).unwrap();
        let targets = edges.entry(file.clone()).or_default();
        for path in named_paths(&source, module) {
            // The longest prefix of the path that is a module.
            let target = (0..=path.len())
                .rev()
                .find_map(|length| modules.get(&path[..length]));
            if let Some(target) = target {
                if target != file {
                    targets.insert(target.clone());
                }
            }
        }
    }
    edges
}

/// The circles of a graph: its strongly connected components of more than one file (Tarjan).
fn circles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct Search<'a> {
        edges: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on_stack: BTreeSet<&'a PathBuf>,
        found: Vec<Vec<PathBuf>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, node: &'a PathBuf) {
            let next = self.index.len();
            self.index.insert(node, next);
            self.low.insert(node, next);
            self.stack.push(node);
            self.on_stack.insert(node);
            for target in self.edges.get(node).into_iter().flatten() {
                if !self.index.contains_key(target) {
                    self.visit(target);
                    let low = self.low[node].min(self.low[target]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(target) {
                    let low = self.low[node].min(self.index[target]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.clone());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !search.index.contains_key(node) {
            search.visit(node);
        }
    }
    search.found
}

#[test]
fn no_module_imports_its_way_back_to_itself() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for crate_root in ["src", "actors/src"] {
        let edges = graph(&root.join(crate_root));
        assert!(
            edges.len() > 10,
            "{crate_root}: read {} modules",
            edges.len()
        );
        let found = circles(&edges);
        assert!(
            found.is_empty(),
            "import circles in {crate_root}: {found:#?}"
        );
    }
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let edge = |from: &str, to: &str| (PathBuf::from(from), BTreeSet::from([PathBuf::from(to)]));
    let edges = BTreeMap::from([
        edge("a", "b"),
        edge("b", "c"),
        edge("c", "a"),
        edge("d", "a"),
    ]);
    let found = circles(&edges);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    // And the path reader resolves `super` and groups as the compiler does.
    let paths = named_paths(
        "use super::{events::EventLog, Entry};\nlet x = crate::journal::Journal::open();",
        &["store".into(), "batch".into()],
    );
    assert!(paths.contains(&vec!["store".into(), "events".into(), "EventLog".into()]));
    assert!(paths.contains(&vec!["store".into(), "Entry".into()]));
    assert!(paths.contains(&vec!["journal".into(), "Journal".into(), "open".into()]));
}
