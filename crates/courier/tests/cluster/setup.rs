//! First-run setup raced across two nodes sharing one PostgreSQL: exactly one admin.

use super::machine_services;
use crate::harness::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setups_racing_on_two_nodes_make_exactly_one_admin() {
    init_logs();
    if !machine_services() {
        return;
    }
    let db = Database::create(&machine_postgres()).await;
    let cluster = Cluster::start(2, &db.url, &machine_nats(), "60s");
    let bases = cluster.bases();
    let client = http();
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let (client, base) = (client.clone(), bases[i % 2].clone());
            tokio::spawn(async move {
                let body = json!({ "username": format!("racer{i}"), "password": "violet-harbor-tractor-91" });
                let response = client
                    .post(format!("{base}/api/setup"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                (status, body)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for attempt in attempts {
        let (status, body) = attempt.await.unwrap();
        match status {
            StatusCode::CREATED => winners.push(body),
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((winners.len(), conflicts), (1, 7));
    let token = winners[0]["token"].as_str().unwrap();
    for base in &bases {
        let account: Value = client
            .get(format!("{base}/api/account"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(account["isAdmin"], true);
        let setup: Value = client
            .get(format!("{base}/api/setup"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(setup["needed"], false, "locked on every node");
    }
    drop(cluster);
    db.drop_database().await;
}
