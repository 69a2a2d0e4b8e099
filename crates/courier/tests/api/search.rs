//! Full-text search (`GET /api/search`) and history around a message (`?around=`): only what
//! the caller may read, the query language, the index kept in step with edits and deletes,
//! hostile queries answered 400 or empty (never 500), and paging.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

impl TestApp {
    async fn search_raw(&self, user: &TestUser, params: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .get("/api/search", user)
            .query(params)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The message ids a search finds (first page), asserting it answered 200.
    async fn found(&self, user: &TestUser, q: &str) -> Vec<String> {
        let (status, page) = self.search_raw(user, &[("q", q)]).await;
        assert_eq!(status, StatusCode::OK, "{q}: {page}");
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["messageId"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn id(message: &Value) -> String {
    message["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn finds_words_with_a_highlighted_snippet_and_what_a_result_list_needs() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let hit = app
        .send_message(&alice, &c, "The <b>quarterly</b> report is ready")
        .await;
    app.send_message(&alice, &c, "nothing to see").await;
    let (status, page) = app.search_raw(&bob, &[("q", "QUARTERLY")]).await;
    assert_eq!(status, StatusCode::OK);
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{page}");
    let result = &results[0];
    assert_eq!(result["messageId"], hit["id"]);
    assert_eq!(result["conversationId"], c.as_str());
    assert_eq!(result["conversationKind"], "direct");
    assert_eq!(result["sender"]["username"], "alice");
    assert_eq!(result["mine"], false);
    assert_eq!(result["createdAt"], hit["createdAt"]);
    // Highlighting is data: the message's own markup stays text around the hit segment.
    assert_eq!(
        result["snippet"],
        json!([
            { "text": "The <b>", "hit": false },
            { "text": "quarterly", "hit": true },
            { "text": "</b> report is ready", "hit": false },
        ])
    );
    assert_eq!(page["nextBefore"], Value::Null);
}

#[tokio::test]
async fn strangers_find_nothing_and_cannot_name_the_conversation() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let eve = app.login("eve").await;
    let c = app.conversation_between(&alice, &bob).await;
    app.send_message(&alice, &c, "secret launch codes").await;
    assert_eq!(app.found(&bob, "secret").await.len(), 1);
    assert!(app.found(&eve, "secret").await.is_empty());
    let (status, body) = app
        .search_raw(&eve, &[("q", "secret"), ("conversationId", &c)])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let unauthenticated = app
        .client
        .get(app.url("/api/search?q=secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn members_who_left_do_not_find_the_conversation_any_more() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let group = app.create_group(&alice, &[&bob, &carol], "Plans").await;
    let g = group["id"].as_str().unwrap();
    app.send_message(&alice, g, "budget draft one").await;
    assert_eq!(app.found(&carol, "budget").await.len(), 1);
    let (status, _) = app
        .group_call(
            Method::POST,
            &format!("/api/conversations/{g}/leave"),
            &carol,
            None,
        )
        .await;
    assert!(status.is_success(), "{status}");
    app.send_message(&alice, g, "budget draft two").await;
    // Like the history route, which answers 404 to someone who left: nothing, before or after.
    assert!(app.found(&carol, "budget").await.is_empty());
    assert_eq!(app.found(&bob, "budget").await.len(), 2);
}

#[tokio::test]
async fn joined_history_hides_earlier_messages_from_search() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let dave = app.login("dave").await;
    for (history, visible) in [("shared", 2), ("joined", 1)] {
        let (status, group) = app
            .group_call(
                Method::POST,
                "/api/conversations",
                &alice,
                Some(json!({ "usernames": ["bob"], "title": history, "history": history })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let g = group["id"].as_str().unwrap();
        app.send_message(&alice, g, &format!("{history} zebra before"))
            .await;
        let (status, _) = app
            .group_call(
                Method::POST,
                &format!("/api/conversations/{g}/members"),
                &alice,
                Some(json!({ "usernames": ["dave"] })),
            )
            .await;
        assert!(status.is_success());
        app.send_message(&bob, g, &format!("{history} zebra after"))
            .await;
        let (status, page) = app
            .search_raw(
                &dave,
                &[("q", &format!("zebra {history}")), ("conversationId", g)],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            page["results"].as_array().unwrap().len(),
            visible,
            "{history}: {page}"
        );
    }
}

#[tokio::test]
async fn phrases_exclusions_from_and_accents() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let red_car = id(&app.send_message(&alice, &c, "a red car is parked").await);
    let car_red = id(&app.send_message(&bob, &c, "the car is red").await);
    let cafe = id(&app
        .send_message(&bob, &c, "Rendez-vous au Café Crème")
        .await);
    let tokyo = id(&app.send_message(&alice, &c, "明日は東京都に行きます").await);
    let newest_first = |mut v: Vec<String>| {
        v.sort_by_key(|s| std::cmp::Reverse(s.parse::<i64>().unwrap()));
        v
    };
    assert_eq!(
        app.found(&alice, "red car").await,
        newest_first(vec![red_car.clone(), car_red.clone()])
    );
    assert_eq!(
        app.found(&alice, "\"red car\"").await,
        vec![red_car.clone()]
    );
    assert_eq!(
        app.found(&alice, "car -parked").await,
        vec![car_red.clone()]
    );
    assert_eq!(
        app.found(&alice, "car from:bob").await,
        vec![car_red.clone()]
    );
    assert_eq!(app.found(&alice, "car from:@ALICE").await, vec![red_car]);
    assert!(app.found(&alice, "car from:nobody").await.is_empty());
    assert_eq!(
        app.found(&alice, "from:bob").await,
        newest_first(vec![car_red, cafe.clone()])
    );
    // Accents fold both ways.
    assert_eq!(app.found(&alice, "cafe creme").await, vec![cafe.clone()]);
    assert_eq!(app.found(&alice, "CRÈME").await, vec![cafe]);
    // Han and kana: a word is a run of characters, found inside a longer run.
    assert_eq!(app.found(&alice, "東京").await, vec![tokyo.clone()]);
    assert!(app.found(&alice, "京東").await.is_empty());
}

#[tokio::test]
async fn deleted_messages_are_never_found_and_edits_are_found_by_their_new_text() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let gone = id(&app.send_message(&alice, &c, "password hunter2 oops").await);
    let edited = id(&app.send_message(&alice, &c, "meet at noon").await);
    assert_eq!(app.found(&bob, "hunter2").await, vec![gone.clone()]);
    let (status, _) = app
        .group_call(
            Method::DELETE,
            &format!("/api/conversations/{c}/messages/{gone}"),
            &alice,
            None,
        )
        .await;
    assert!(status.is_success(), "{status}");
    assert!(app.found(&bob, "hunter2").await.is_empty());
    assert!(app.found(&alice, "password").await.is_empty());
    assert!(
        app.found(&alice, "from:alice")
            .await
            .iter()
            .all(|m| *m != gone)
    );

    let (status, _) = app
        .group_call(
            Method::PATCH,
            &format!("/api/conversations/{c}/messages/{edited}"),
            &alice,
            Some(json!({ "content": "meet at midnight" })),
        )
        .await;
    assert!(status.is_success(), "{status}");
    assert!(app.found(&bob, "noon").await.is_empty());
    assert_eq!(app.found(&bob, "midnight").await, vec![edited.clone()]);
    assert_eq!(app.found(&bob, "\"meet at midnight\"").await, vec![edited]);
}

#[tokio::test]
async fn hostile_queries_get_400_or_results_never_500() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    app.send_message(&alice, &c, "near the start, or not").await;
    let long = "x".repeat(300);
    for q in [
        "\"",
        "\"\"",
        "-",
        "--",
        "*",
        "NEAR(a b)",
        "near",
        "a OR",
        "AND",
        "NOT x",
        "title:x",
        "^start",
        "col : x",
        "x*",
        "(",
        ")",
        "'",
        "\\",
        "!x & y | z",
        "x <-> y",
        "{a b}",
        "\u{202E}rtl",
        "-\"near\"",
        "from:",
        "from:\"",
        "%",
        "_",
        &long,
    ] {
        let (status, body) = app.search_raw(&alice, &[("q", q)]).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{q:?}: {status} {body}"
        );
        if status == StatusCode::BAD_REQUEST {
            assert!(body["error"].is_string(), "{q:?}: {body}");
        }
    }
    assert_eq!(app.found(&alice, "NEAR").await.len(), 1);
    for params in [
        vec![],
        vec![("q", "")],
        vec![("q", "-only")],
        vec![("q", "x"), ("before", "abc")],
    ] {
        let (status, body) = app.search_raw(&alice, &params).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{params:?}: {body}");
        assert!(body["error"].is_string());
    }
    let (status, _) = app
        .search_raw(&alice, &[("q", "x"), ("conversationId", "nope")])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pages_are_stable_while_new_messages_arrive() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let mut sent = Vec::new();
    for i in 0..30 {
        sent.push(id(&app
            .send_message(&alice, &c, &format!("report number {i}"))
            .await));
    }
    let (_, first) = app.search_raw(&bob, &[("q", "report")]).await;
    let first_ids: Vec<&str> = first["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(first_ids.len(), 25);
    let cursor = first["nextBefore"].as_str().unwrap().to_owned();
    assert_eq!(cursor, first_ids[24]);
    // A newer match does not shift the next page.
    app.send_message(&alice, &c, "report number 30").await;
    let (_, second) = app
        .search_raw(&bob, &[("q", "report"), ("before", &cursor)])
        .await;
    let second_ids: Vec<&str> = second["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["messageId"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = sent[..5].iter().map(String::as_str).collect();
    expected.reverse();
    assert_eq!(second_ids, expected);
    assert_eq!(second["nextBefore"], Value::Null);
}

#[tokio::test]
async fn history_around_a_message_shows_both_sides_to_members_only() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let eve = app.login("eve").await;
    let c = app.conversation_between(&alice, &bob).await;
    let mut sent = Vec::new();
    for i in 0..60 {
        sent.push(id(&app.send_message(&alice, &c, &format!("m{i}")).await));
    }
    let target = &sent[20];
    let page: Vec<Value> = app
        .get_json(
            &format!("/api/conversations/{c}/messages?around={target}"),
            &bob,
        )
        .await;
    let ids: Vec<String> = page.iter().map(id).collect();
    // Newest first: 12 newer, the message, 12 older.
    let mut expected: Vec<String> = sent[8..=32].to_vec();
    expected.reverse();
    assert_eq!(ids, expected);
    for (who, path) in [
        (
            &eve,
            format!("/api/conversations/{c}/messages?around={target}"),
        ),
        (
            &bob,
            format!("/api/conversations/{c}/messages?around=999999"),
        ),
        (&bob, format!("/api/conversations/{c}/messages?around=zz")),
    ] {
        let response = app.get(&path, who).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let both = app
        .get(
            &format!("/api/conversations/{c}/messages?around={target}&before={target}"),
            &bob,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);
}
