//! Keeps imports flowing one way: model ← store, bus ← service ← realtime ← api ← app.
//! Each room may `use crate::…` only the rooms on its allow-list.

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
    ("telemetry", &[]),
    ("web", &[]),
    ("tls", &[]),
];

fn sources(room: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let file = src.join(format!("{room}.rs"));
    let mut files = Vec::new();
    if file.exists() {
        files.push(file);
    }
    let dir = src.join(room);
    if dir.is_dir() {
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
    }
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
