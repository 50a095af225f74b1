//! The rules of ARCHITECTURE.md, checked on the source: no module imports
//! one that imports it back, and each host crate depends only on the crates
//! below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use connector_e2e::workspace_root;

/// A module path inside a crate, e.g. `["wasm", "runner"]`; the crate root
/// is empty.
type ModPath = Vec<String>;

/// The crates under `host/`, each with its `src` folder.
fn host_crates() -> Vec<(String, PathBuf)> {
    let host = workspace_root().join("host");
    let mut crates: Vec<(String, PathBuf)> = std::fs::read_dir(&host)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    crates.sort();
    assert!(crates.len() >= 8, "host crates found: {crates:?}");
    crates
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a source file is, from its place under `src/`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The paths a file names through `crate::` and `super::` (with `use`
/// groups expanded), as module paths from the crate root, segments that
/// may be modules or items.
fn referenced_paths(text: &str, module: &ModPath) -> Vec<ModPath> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &code[i..];
        let starts_word = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        if starts_word && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let mut base: ModPath = Vec::new();
            let mut j = i;
            if rest.starts_with("crate::") {
                j += "crate::".len();
            } else {
                base = module.clone();
                while code[j..].starts_with("super::") {
                    base.pop();
                    j += "super::".len();
                }
            }
            let (paths, end) = parse_tree(&code, j);
            for p in paths {
                let mut full = base.clone();
                full.extend(p);
                out.push(full);
            }
            i = end.max(i + 1);
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// Parses `a::b::{c, d::e}` at `at`: every path it names, and where it ends.
fn parse_tree(code: &str, mut at: usize) -> (Vec<ModPath>, usize) {
    let bytes = code.as_bytes();
    let mut prefix = Vec::new();
    loop {
        while at < bytes.len() && bytes[at] == b' ' {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == b'{' {
            let mut all = Vec::new();
            at += 1;
            loop {
                while at < bytes.len() && (bytes[at] as char).is_whitespace() {
                    at += 1;
                }
                if at >= bytes.len() || bytes[at] == b'}' {
                    return (
                        all.into_iter()
                            .map(|p: ModPath| prefix.iter().cloned().chain(p).collect())
                            .collect(),
                        at + 1,
                    );
                }
                let (paths, end) = parse_tree(code, at);
                all.extend(paths);
                at = end;
                while at < bytes.len() && (bytes[at] == b',' || (bytes[at] as char).is_whitespace())
                {
                    at += 1;
                }
            }
        }
        let start = at;
        while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
            at += 1;
        }
        if start == at {
            return (vec![prefix], at);
        }
        prefix.push(code[start..at].to_string());
        if code[at..].starts_with("::") {
            at += 2;
        } else {
            return (vec![prefix], at);
        }
    }
}

/// The longest prefix of `path` that is a module of the crate.
fn module_in(path: &ModPath, modules: &BTreeSet<ModPath>) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
        .unwrap_or_default()
}

/// Cycles between modules of one crate. A module and its own submodules are
/// one unit (a child may use its parent's items); between two other
/// modules, the edge counts between the children of their closest common
/// ancestor that contain them.
fn module_cycles(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(src, f)).collect();
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for file in &files {
        let from = module_of(src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for path in referenced_paths(&text, &from) {
            let to = module_in(&path, &modules);
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // an ancestor or a descendant
            }
            edges
                .entry(from[..=common].to_vec())
                .or_default()
                .insert(to[..=common].to_vec());
        }
    }
    let mut cycles = Vec::new();
    for (a, targets) in &edges {
        for b in targets {
            if a < b && reaches(&edges, b, a) {
                cycles.push(format!("{} ⇄ {}", a.join("::"), b.join("::")));
            }
        }
    }
    cycles
}

fn reaches(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>, from: &ModPath, to: &ModPath) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.clone()];
    while let Some(m) = stack.pop() {
        if &m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            stack.extend(edges.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut found = Vec::new();
    for (name, dir) in host_crates() {
        for cycle in module_cycles(&dir.join("src")) {
            found.push(format!("{name}: {cycle}"));
        }
    }
    assert!(
        found.is_empty(),
        "modules that import each other: {found:#?}"
    );
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("wasm")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod plugin;\nmod wasm;\n").unwrap();
    std::fs::write(src.join("plugin.rs"), "use crate::wasm::{runner::X, Y};\n").unwrap();
    std::fs::write(src.join("wasm/mod.rs"), "mod runner;\n").unwrap();
    std::fs::write(src.join("wasm/runner.rs"), "use super::super::plugin::Z;\n").unwrap();
    assert_eq!(module_cycles(src), ["plugin ⇄ wasm"]);
}

/// Which host crates each host crate may use: every crate only those
/// below it (ARCHITECTURE.md, "Who may depend on whom").
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("secrets", &[]),
    ("oauth", &["connector-secrets"]),
    ("console", &["connector-secrets"]),
    ("email", &["connector-model"]),
    ("runtime", &["connector-model", "connector-secrets"]),
    ("state", &["connector-model", "connector-email"]),
    ("sink", &["connector-model", "connector-email"]),
    (
        "state-sqlite",
        &["connector-model", "connector-email", "connector-state"],
    ),
    (
        "state-postgres",
        &["connector-model", "connector-email", "connector-state"],
    ),
    (
        "sink-maildir",
        &["connector-model", "connector-email", "connector-sink"],
    ),
    (
        "sink-imap",
        &[
            "connector-model",
            "connector-email",
            "connector-sink",
            "connector-secrets",
            "connector-oauth",
        ],
    ),
    (
        "sink-smtp",
        &[
            "connector-model",
            "connector-email",
            "connector-sink",
            "connector-secrets",
        ],
    ),
    (
        "sink-graph",
        &[
            "connector-model",
            "connector-email",
            "connector-sink",
            "connector-secrets",
            "connector-oauth",
        ],
    ),
];

#[test]
fn host_crates_depend_only_on_the_crates_below_them() {
    for (name, dir) in host_crates() {
        let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let used: BTreeSet<String> = ["dependencies", "dev-dependencies"]
            .iter()
            .filter_map(|t| manifest.get(*t).and_then(|d| d.as_table()))
            .flat_map(|d| d.keys().cloned())
            .filter(|k| k.starts_with("connector-"))
            .collect();
        if name == "connector" {
            continue; // the binary crate sits on top of all of them
        }
        let allowed = ALLOWED
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("host/{name} is not in ALLOWED; add it with its layer"))
            .1;
        let extra: Vec<&String> = used
            .iter()
            .filter(|u| !allowed.contains(&u.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "host/{name} uses {extra:?}, which are not below it"
        );
    }
}
