//! `GET /api/openapi.json`: a valid OpenAPI 3.1 document whose operations are exactly the routes
//! the server answers and the routes docs/api.md lists. (Whether answers match it is
//! schemathesis's job, in scripts/test.)

use crate::helpers::spawn_app;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn spec() -> (crate::helpers::TestApp, Value) {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let spec: Value = response.json().await.unwrap();
    (app, spec)
}

/// `{id}`, `{messageId}` → `{}`: docs and spec may name parameters differently.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|part| if part.starts_with('{') { "{}" } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

/// `METHOD /api/path/{}` for every operation in the spec.
fn operations(spec: &Value) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                all.insert(format!("{} {}", method.to_uppercase(), shape(path)));
            }
        }
    }
    all
}

#[tokio::test]
async fn the_spec_is_openapi_3_1_and_every_operation_answers_with_json_errors_described() {
    let (_app, spec) = spec().await;
    assert_eq!(spec["openapi"], "3.1.0");
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in ["ErrorJson", "MessageJson", "ConversationJson", "UserJson"] {
        assert!(schemas.contains_key(name), "{name} is not in the spec");
    }
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            assert!(
                op["responses"]["default"].is_object(),
                "{method} {path} has no default (error) response"
            );
            assert!(op["tags"].is_array(), "{method} {path} has no tag");
        }
    }
}

#[tokio::test]
async fn every_operation_in_the_spec_is_a_route_the_server_answers() {
    let (app, spec) = spec().await;
    let alice = app.login("alice").await;
    for op in operations(&spec) {
        let (method, path) = op.split_once(' ').unwrap();
        if path == "/api/logout" || (path == "/api/sessions" && method == "DELETE") {
            continue; // would end the session the other probes use; tests/api/auth.rs covers it
        }
        let concrete = path.replace("{}", "1");
        let response = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&concrete),
            )
            .bearer_auth(&alice.token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{op}: {body}");
        assert!(
            !body.contains("no such API route"),
            "{op} is in the spec but the server has no such route"
        );
    }
}

/// docs/api.md's route table, as `METHOD /api/path/{}` (query strings and bodies dropped,
/// `PUT / DELETE` rows split).
fn documented_operations() -> BTreeSet<String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    let mut all = BTreeSet::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[2].starts_with("/api/") && !cells[2].starts_with("/healthz") {
            continue;
        }
        let methods: Vec<&str> = cells[1].split('/').map(str::trim).collect();
        if methods
            .iter()
            .any(|m| !METHODS.contains(&m.to_lowercase().as_str()))
        {
            continue;
        }
        for raw in cells[2].split(',') {
            let path = raw
                .split([' ', '?'])
                .next()
                .unwrap()
                .trim_end_matches(|c: char| !c.is_alphanumeric() && c != '}');
            if !path.starts_with("/api/") {
                continue; // /healthz and /readyz sit outside /api and its spec
            }
            for method in &methods {
                all.insert(format!("{} {}", method.to_uppercase(), shape(path)));
            }
        }
    }
    all
}

#[tokio::test]
async fn the_spec_and_the_route_table_in_docs_api_md_name_the_same_operations() {
    let (_app, spec) = spec().await;
    let in_spec = operations(&spec);
    let documented = documented_operations();
    let undocumented: Vec<_> = in_spec.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&in_spec).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "in the spec but not in docs/api.md's table: {undocumented:?}\n\
         in docs/api.md's table but not in the spec: {missing:?}"
    );
}
