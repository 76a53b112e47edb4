//! The architecture as a test: imports between the top-level modules of
//! src/ run one way (each layer imports only from the layers below it), no
//! file of src/ is longer than 600 lines before its tests, and `unsafe`
//! appears in `sys` alone. The layers are those of src/lib.rs and
//! docs/architecture.md; a new top-level module must be given one here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module and its layer: higher layers import lower ones.
const LAYERS: &[(&str, u8)] = &[
    ("cli", 9),
    ("api", 9),
    ("job", 8),
    ("learn", 7),
    ("pcap", 7),
    ("proxy", 7),
    ("redact", 7),
    ("repair", 7),
    ("replay", 7),
    ("review", 7),
    ("scan", 7),
    ("cassette", 6),
    ("error", 5),
    ("report", 4),
    ("engine", 3),
    ("tape", 3),
    ("fault", 2),
    ("secrets", 2),
    ("hexdump", 1),
    ("linediff", 1),
    ("output", 1),
    ("sys", 1),
];

const MAX_LINES: usize = 600;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of src/ belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let first = file.strip_prefix(src).unwrap().components().next().unwrap();
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

/// The code of a file before its tests.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The top-level modules a piece of code names as `crate::name`.
fn imports(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c}`
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                found.push(name);
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        found.push(name);
    }
    found.retain(|name| !name.is_empty());
    found
}

#[test]
fn imports_run_one_way_and_files_stay_short() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    let mut long = Vec::new();
    for file in &files {
        let me = module_of(&src, file);
        let code = code(file);
        let lines = code.lines().count();
        if lines > MAX_LINES {
            long.push(format!("{} ({lines} lines)", file.display()));
        }
        if me == "lib" || me == "main" {
            continue;
        }
        let Some(&mine) = layer.get(me.as_str()) else {
            panic!(
                "src/{me} has no layer: add it to LAYERS in tests/layers.rs and to docs/architecture.md"
            );
        };
        for other in imports(&code) {
            if other == me {
                continue;
            }
            let Some(&theirs) = layer.get(other.as_str()) else {
                panic!(
                    "{} imports crate::{other}, which has no layer",
                    file.display()
                );
            };
            if theirs >= mine {
                wrong.push(format!("{} imports {other}", file.display()));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports that run the wrong way:\n{}",
        wrong.join("\n")
    );
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines before their tests:\n{}",
        long.join("\n")
    );
}

#[test]
fn unsafe_code_is_in_sys_alone() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let elsewhere: Vec<String> = files
        .iter()
        .filter(|file| module_of(&src, file) != "sys")
        .filter(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            text.lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .any(|line| line.contains("unsafe {") || line.contains("unsafe fn"))
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(elsewhere.is_empty(), "unsafe outside sys: {elsewhere:?}");
}

#[test]
fn the_checker_sees_imports_in_every_form() {
    let code = "use crate::engine::net::Socket;\nuse crate::{error, tape::Reader};\nlet x = crate::sys::sendfile();";
    assert_eq!(imports(code), ["engine", "error", "tape", "sys"]);
}
