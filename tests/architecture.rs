//! The shape of the code, checked: the layer order written once in
//! `src/lib.rs` holds (no module uses one listed after it), every module is
//! in that list, and ARCHITECTURE.md names only modules that exist.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `//! layers:` line of lib.rs, in order.
fn layers() -> Vec<String> {
    let lib = read(&root().join("src/lib.rs"));
    let line = lib
        .lines()
        .find_map(|l| l.strip_prefix("//! layers:"))
        .expect("src/lib.rs states the layer order on a `//! layers:` line");
    line.split_whitespace()
        .filter(|t| *t != "|")
        .map(str::to_string)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::NAME` a line of code mentions (comments stripped).
fn crate_paths(line: &str) -> Vec<&str> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()))
            .unwrap_or(after.len());
        if end > 0 {
            out.push(&after[..end]);
        }
        rest = &after[end..];
    }
    out
}

/// Finds every import that goes up the layers, in the given files.
fn violations(order: &[String], files: &[(String, String)]) -> Vec<String> {
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut bad = Vec::new();
    for (name, text) in files {
        let top = name.split('/').next().unwrap().trim_end_matches(".rs");
        let Some(&mine) = rank.get(top) else {
            bad.push(format!("{name}: module `{top}` is not in the layer list"));
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            for used in crate_paths(line) {
                match rank.get(used) {
                    _ if used == top => {}
                    Some(&theirs) if theirs < mine => {}
                    Some(_) => bad.push(format!(
                        "{name}:{}: `{top}` uses `{used}`, a layer above it",
                        n + 1
                    )),
                    None => bad.push(format!(
                        "{name}:{}: `crate::{used}` is not in the layer list",
                        n + 1
                    )),
                }
            }
        }
    }
    bad
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let order = layers();
    let src = root().join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| (p.strip_prefix(&src).unwrap().display().to_string(), read(p)))
        .filter(|(n, _)| n != "lib.rs" && n != "main.rs")
        .collect();
    assert!(files.len() > 20, "found the sources");
    let bad = violations(&order, &files);
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
}

#[test]
fn the_check_catches_an_import_that_goes_up() {
    let order: Vec<String> = ["clock", "store", "bot"].map(String::from).to_vec();
    let ok = [(
        "store/x.rs".to_string(),
        "use crate::clock::now_ms;\n// crate::bot in a comment\n".to_string(),
    )];
    assert!(violations(&order, &ok).is_empty());
    let up = [(
        "store/x.rs".to_string(),
        "let x = crate::bot::serve();\n".to_string(),
    )];
    let bad = violations(&order, &up);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("`store` uses `bot`"), "{bad:?}");
    let stray = [("extra.rs".to_string(), String::new())];
    assert!(violations(&order, &stray)[0].contains("not in the layer list"));
}

#[test]
fn every_module_is_in_the_layer_list_and_back() {
    let order = layers();
    let lib = read(&root().join("src/lib.rs"));
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub(crate) mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    for m in &declared {
        assert!(
            order.iter().any(|o| o == m),
            "`{m}` is missing from the layer list"
        );
    }
    for o in &order {
        assert!(
            declared.contains(&o.as_str()),
            "the layer list names `{o}`, which lib.rs does not declare"
        );
    }
}

#[test]
fn architecture_md_names_only_modules_that_exist() {
    let doc = read(&root().join("ARCHITECTURE.md"));
    let mut named = 0;
    for span in doc.split('`').skip(1).step_by(2) {
        let candidate = span.trim();
        let is_path = ["src/", "crates/", "etc/", "tests/", "scripts/"]
            .iter()
            .any(|d| candidate.starts_with(d))
            && !candidate.contains(' ');
        let path = is_path.then(|| root().join(candidate));
        if let Some(p) = path {
            named += 1;
            assert!(
                p.exists(),
                "ARCHITECTURE.md names {candidate}, which does not exist"
            );
        }
    }
    assert!(
        named > 20,
        "ARCHITECTURE.md names the modules by path ({named} found)"
    );
}
