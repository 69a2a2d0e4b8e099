//! Keeps imports flowing one way: model ← store, bus ← service ← realtime ← api ← app.
//! Each room may `use crate::…` only the rooms on its allow-list, and names them one path at
//! a time: no `use crate::{…}` groups, no `super::super` climbing out of its own room.

use std::fs;
use std::path::{Path, PathBuf};

const RULES: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("store", &["model"]),
    ("bus", &["model"]),
    ("service", &["model", "store", "bus"]),
    ("realtime", &["model", "store", "bus", "service"]),
    ("api", &["model", "service", "realtime"]),
    ("config", &[]),
    ("ops", &["config", "store"]),
    ("telemetry", &[]),
    ("web", &[]),
    ("tls", &[]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn sources(room: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{room}.rs"));
    let mut files = Vec::new();
    if file.exists() {
        files.push(file);
    }
    let dir = src().join(room);
    if dir.is_dir() {
        files.extend(rust_files_under(dir));
    }
    files
}

fn rust_files_under(dir: PathBuf) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The rooms a file names through `crate::room`.
fn crate_imports(source: &str) -> Vec<String> {
    let mut rooms = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let room: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if room.is_empty() {
            // `use crate::{a, b}`: every name in the braces is a room.
            if let Some(group) = rest.strip_prefix('{').and_then(|g| g.split_once('}')) {
                rooms.extend(group.0.split(',').filter_map(|item| {
                    let name = item.trim().split("::").next()?.trim();
                    (!name.is_empty()).then(|| name.to_owned())
                }));
            }
        } else {
            rooms.push(room);
        }
    }
    rooms
}

#[test]
fn every_room_imports_only_what_it_may() {
    let mut violations = Vec::new();
    for (room, allowed) in RULES {
        let files = sources(room);
        assert!(!files.is_empty(), "room {room} has no source files");
        for file in files {
            let source = fs::read_to_string(&file).unwrap();
            for import in crate_imports(&source) {
                if import != *room && !allowed.contains(&import.as_str()) {
                    violations.push(format!("{} imports crate::{import}", file.display()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the flow:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_import_scanner_sees_grouped_and_plain_imports() {
    let rooms = crate_imports("use crate::store::Store;\nuse crate::{bus::Bus, model};\n");
    assert_eq!(rooms, ["store", "bus", "model"]);
}

/// The lines of `source` that group crate imports or climb with `super::super`. A group hides
/// the rooms a file leans on inside braces, and `super::super::x` reaches another room
/// without `crate::`, past the allow-list above. Comments are skipped.
fn path_style_violations(source: &str) -> Vec<(usize, &str)> {
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or_default();
            let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            code.contains("crate::{") || code.contains("super::super")
        })
        .map(|(at, line)| (at + 1, line.trim()))
        .collect()
}

#[test]
fn no_file_groups_crate_imports_or_climbs_with_super_super() {
    let mut violations = Vec::new();
    for file in rust_files_under(src()) {
        let source = fs::read_to_string(&file).unwrap();
        for (line, text) in path_style_violations(&source) {
            violations.push(format!("{}:{line}: {text}", file.display()));
        }
    }
    assert!(
        violations.is_empty(),
        "name one room per `use crate::room::…` line, and reach other rooms through `crate::`:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_path_style_check_sees_groups_and_climbs_but_not_comments_or_sibling_groups() {
    let source = "use crate::{bus::Bus, model};\n\
                  use crate::{\n\
                  let x = super::super::store::Store::new();\n\
                  pub use super :: super::api;\n\
                  // use crate::{a, b} in a comment\n\
                  use super::{ApiError, ApiState};\n\
                  use crate::store::{self, Store};\n\
                  pub(crate) fn f() {}\n";
    let lines: Vec<usize> = path_style_violations(source)
        .into_iter()
        .map(|(line, _)| line)
        .collect();
    assert_eq!(lines, [1, 2, 3, 4]);
}
