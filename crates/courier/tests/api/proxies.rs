//! Client addresses behind a reverse proxy: per-address limits count the rightmost
//! `X-Forwarded-For` hop that is not a trusted proxy, so a client cannot reset them by writing
//! its own entries to the left, and IPv6 clients count per /64.

use crate::helpers::*;
use courier::config::SignupMode;
use reqwest::StatusCode;
use serde_json::json;

/// A failed password sign-in for a fresh username (so only the per-address limit can bite),
/// sent as the proxy would forward it.
async fn wrong_sign_in(app: &TestApp, n: usize, forwarded_for: &str) -> StatusCode {
    app.client
        .post(app.url("/api/signin"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({ "username": format!("nobody{n}"), "password": "wrong-password-000" }))
        .send()
        .await
        .unwrap()
        .status()
}

fn limited_to_three(c: &mut courier::config::ServeConfig) {
    c.signup = SignupMode::Open;
    c.login_attempts_per_ip = 3.try_into().unwrap();
}

#[tokio::test]
async fn a_client_behind_the_proxy_cannot_dodge_its_limit_by_spoofing_x_forwarded_for() {
    // The test client is the proxy: it connects from 127.0.0.1, trusted by default.
    let app = spawn_app_with(limited_to_three).await;
    // nginx's `$proxy_add_x_forwarded_for` appends the address it saw to what the client sent.
    let mut statuses = Vec::new();
    for n in 0..5 {
        let spoofed = format!("10.9.8.{n}, 192.0.2.{n}, 203.0.113.7");
        statuses.push(wrong_sign_in(&app, n, &spoofed).await);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS,
        ],
        "203.0.113.7 is limited whatever it writes before its own address"
    );
    // Another client behind the same proxy has its own allowance, even claiming to be the first.
    assert_eq!(
        wrong_sign_in(&app, 9, "203.0.113.7, 198.51.100.2").await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Two trusted proxies in a row (a CDN in front of nginx) are both skipped.
    let chained = spawn_app_with(|c| {
        limited_to_three(c);
        c.trusted_proxies = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
    })
    .await;
    let mut last = StatusCode::OK;
    for n in 0..4 {
        last = wrong_sign_in(&chained, n, &format!("192.0.2.{n}, 203.0.113.7, 10.0.0.5")).await;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn an_untrusted_peer_is_the_client_whatever_x_forwarded_for_says() {
    let app = spawn_app_with(|c| {
        limited_to_three(c);
        c.trusted_proxies = Vec::new();
    })
    .await;
    let mut last = StatusCode::OK;
    for n in 0..4 {
        // Even the rightmost hop is the client's own invention here.
        last = wrong_sign_in(&app, n, &format!("192.0.2.{n}")).await;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn ipv6_clients_share_one_limit_per_64() {
    let app = spawn_app_with(limited_to_three).await;
    let mut statuses = Vec::new();
    for (n, ip) in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff:ffff:ffff:fffe",
        "2001:db8:1:2:abcd::9",
    ]
    .into_iter()
    .enumerate()
    {
        statuses.push(wrong_sign_in(&app, n, ip).await);
    }
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // The neighbouring /64 is someone else.
    assert_eq!(
        wrong_sign_in(&app, 7, "2001:db8:1:3::1").await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}
