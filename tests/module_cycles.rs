//! The modules of `src/` import one another without cycles (README.md,
//! "Architecture"): each concern can be read, tested and replaced from the
//! bottom up. The test reads every `crate::`, `super::` and `self::` path
//! in the sources (tests modules aside), follows re-exports (`pub use`) to
//! the module that defines the name, and fails naming every cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module path (`store::fs::lock`, `` for the crate root) -> its source.
fn modules() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|last| last == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                parts.clear();
            }
            let text = fs::read_to_string(&path).unwrap();
            // Unit tests may reach anywhere; they are not part of the design.
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => &text[..at],
                None => &text[..],
            };
            // Comments name paths in links and prose, which import nothing.
            let text: String = text
                .lines()
                .map(|line| match line.find("//") {
                    Some(at) => &line[..at],
                    None => line,
                })
                .collect::<Vec<_>>()
                .join("\n");
            found.insert(parts.join("::"), text);
        }
    }
    found
}

/// Every path a source names from `crate`, `super` or `self`, made absolute
/// (`module` is the source's own path), with brace groups expanded.
fn paths(module: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        if !text.is_char_boundary(start) {
            at += 1;
            continue;
        }
        let boundary = start == 0 || !is_word(bytes[start - 1]) && bytes[start - 1] != b':';
        let prefix = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|prefix| text[start..].starts_with(prefix));
        let (Some(prefix), true) = (prefix, boundary) else {
            at += 1;
            continue;
        };
        // Inside an inline `mod name { ... }`, `super` is the file's module.
        let inline = inline_modules(text)
            .into_iter()
            .find(|(_, span)| span.contains(&start))
            .map(|(name, _)| join(module, &name));
        let base = match (prefix, inline) {
            ("crate::", _) => String::new(),
            ("super::", Some(_)) => module.to_owned(),
            ("super::", None) => module
                .rsplit_once("::")
                .map_or(String::new(), |(parent, _)| parent.to_owned()),
            (_, inline) => inline.unwrap_or_else(|| module.to_owned()),
        };
        let (tree, end) = path_tree(&text[start + prefix.len()..]);
        at = start + prefix.len() + end;
        for path in expand(&tree) {
            found.push(join(&base, &path));
        }
    }
    found
}

/// The inline modules of a source (`mod name { ... }`) and the byte range
/// each spans.
fn inline_modules(text: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("mod ") {
        let rest = &text[at + 4..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() || !rest[name.len()..].trim_start().starts_with('{') {
            continue;
        }
        let open = at + 4 + name.len() + rest[name.len()..].find('{').unwrap_or(0);
        let mut depth = 0;
        for (i, c) in text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        found.push((name.clone(), open..open + i));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// The path at the start of `text` up to where it ends (`a::b::{c, d::e}`),
/// and the bytes it took.
fn path_tree(text: &str) -> (String, usize) {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => {
                return (text[..i].to_owned(), i);
            }
            _ => {}
        }
    }
    (text.to_owned(), text.len())
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e` (`self` is the group's base).
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim().trim_end_matches("::");
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_owned()];
    };
    let base = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut items = Vec::new();
    let (mut depth, mut from) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[from..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .flat_map(|item| {
            expand(item).into_iter().map(|path| match path.as_str() {
                "self" => base.to_owned(),
                _ => join(base, &path),
            })
        })
        .collect()
}

fn join(base: &str, path: &str) -> String {
    match (base.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (_, true) => base.to_owned(),
        _ => format!("{base}::{path}"),
    }
}

/// The module that defines what `path` names: the longest module prefix,
/// followed through the re-exports (`pub use`) of the module it stops at.
fn resolve(
    path: &str,
    modules: &BTreeMap<String, String>,
    reexports: &BTreeMap<String, String>,
) -> Option<String> {
    let mut path = path.to_owned();
    for _ in 0..8 {
        if let Some(target) = reexports.get(&path) {
            path = target.clone();
            continue;
        }
        let parts: Vec<&str> = path.split("::").collect();
        for len in (1..=parts.len()).rev() {
            let prefix = parts[..len].join("::");
            if len < parts.len() {
                let next = format!("{prefix}::{}", parts[len]);
                if let Some(target) = reexports.get(&next) {
                    path = format!(
                        "{target}{}",
                        parts[len + 1..]
                            .iter()
                            .map(|p| format!("::{p}"))
                            .collect::<String>()
                    );
                    break;
                }
            }
            if modules.contains_key(&prefix) {
                return Some(prefix);
            }
        }
        if reexports
            .values()
            .all(|target| !path.starts_with(target.as_str()))
        {
            return None;
        }
    }
    None
}

/// `module::name` -> the absolute path it re-exports, for every `pub use`.
fn reexports(modules: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for (module, text) in modules {
        for (at, _) in text.match_indices("pub use ") {
            let rest = &text[at + "pub use ".len()..];
            let statement = &rest[..rest.find(';').unwrap_or(rest.len())];
            let absolute = match statement {
                s if s.starts_with("crate::") => s["crate::".len()..].to_owned(),
                s if s.starts_with("super::") => paths(module, s).concat(),
                s => join(module, s),
            };
            let expanded = if statement.starts_with("super::") {
                paths(module, statement)
            } else {
                expand(&absolute)
            };
            for target in expanded {
                let name = target.rsplit("::").next().unwrap_or(&target).to_owned();
                found.insert(join(module, &name), target);
            }
        }
    }
    found
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'e> {
        edges: &'e BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'e str, usize>,
        low: BTreeMap<&'e str, usize>,
        stack: Vec<&'e str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'e>(state: &mut State<'e>, node: &'e str) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        for next in state.edges.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.stack.contains(&next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                component.push(top.to_owned());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

/// Module -> the modules it imports from.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let reexports = reexports(&modules);
    let mut edges = BTreeMap::new();
    for (module, text) in &modules {
        let mut named = paths(module, text);
        // `use child::...`: a path from a submodule, without `self::`.
        for line in text.lines() {
            let line = line.trim_start();
            let line = line.strip_prefix("pub ").unwrap_or(line);
            let Some(tree) = line.strip_prefix("use ") else {
                continue;
            };
            let first = tree.split("::").next().unwrap_or("");
            if modules.contains_key(&join(module, first)) {
                named.extend(
                    expand(tree.trim_end_matches(';'))
                        .iter()
                        .map(|path| join(module, path)),
                );
            }
        }
        let uses: BTreeSet<String> = named
            .iter()
            .filter_map(|path| resolve(path, &modules, &reexports))
            .filter(|target| target != module && !target.is_empty())
            .collect();
        edges.insert(module.clone(), uses);
    }
    edges
}

#[test]
fn no_module_imports_itself_through_others() {
    let edges = imports();
    assert!(edges.len() > 30, "found only {} modules", edges.len());
    assert!(
        edges["store::fs"].contains("store::fs::entry"),
        "the parser misses imports: store::fs -> {:?}",
        edges["store::fs"]
    );
    let found = cycles(&edges);
    let described: Vec<String> = found
        .iter()
        .map(|cycle| {
            let links: Vec<String> = cycle
                .iter()
                .map(|from| {
                    let to: Vec<&str> = edges[from]
                        .iter()
                        .filter(|to| cycle.contains(to))
                        .map(String::as_str)
                        .collect();
                    format!("{from} -> {}", to.join(", "))
                })
                .collect();
            links.join("; ")
        })
        .collect();
    println!("{} modules, {} import cycles", edges.len(), found.len());
    assert!(found.is_empty(), "import cycles:\n{}", described.join("\n"));
}
