//! Serving HTTPS directly: HTTP/2 by ALPN, HSTS and Secure cookies, and a renewed certificate
//! picked up by new connections while open streams carry on.

use crate::helpers::*;
use reqwest::{StatusCode, Version};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Writes a self-signed certificate for 127.0.0.1 and localhost with openssl.
fn self_signed(
    dir: &Path,
    name: &str,
    common_name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={common_name}"),
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl made a certificate");
    (cert, key)
}

fn client_trusting(certs: &[&Path], http1_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().tls_info(true);
    for cert in certs {
        let pem = std::fs::read(cert).unwrap();
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

#[tokio::test]
async fn https_speaks_http2_by_alpn_sends_hsts_and_marks_cookies_secure() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path(), "server", "first");
    let app = spawn_app_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    let base = format!("https://127.0.0.1:{}", app.addr.port());

    let h2 = client_trusting(&[&cert], false);
    let health = h2.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.version(), Version::HTTP_2, "ALPN picks h2");
    assert_eq!(
        health.headers()["strict-transport-security"],
        "max-age=31536000"
    );

    let h1 = client_trusting(&[&cert], true);
    let page = h1.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.version(), Version::HTTP_11, "http/1.1 still offered");
    assert_eq!(page.status(), StatusCode::OK);

    let login = h2
        .post(format!("{base}/api/login"))
        .json(&json!({ "username": "alice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let cookies: Vec<&str> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(!cookies.is_empty());
    assert!(cookies.iter().all(|c| c.contains("Secure")), "{cookies:?}");

    // Plain HTTP on the TLS port is refused, not served.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", app.addr.port())).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test]
async fn a_renewed_certificate_reaches_new_connections_while_open_streams_carry_on() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path(), "server", "first");
    let app = spawn_app_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        c.tls_reload_every = Duration::from_millis(100);
    })
    .await;
    let base = format!("https://127.0.0.1:{}", app.addr.port());
    let (renewed_cert, renewed_key) = self_signed(certs.path(), "renewed", "second");

    let client = client_trusting(&[&cert, &renewed_cert], false);
    let login = |name: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let body: Value = client
                .post(format!("{base}/api/login"))
                .json(&json!({ "username": name }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["token"].as_str().unwrap().to_owned()
        }
    };
    let (alice, bob) = (login("alice").await, login("bob").await);
    let first = client.get(format!("{base}/healthz")).send().await.unwrap();
    let before = peer_certificate(&first);

    let stream = client
        .get(format!("{base}/api/messages"))
        .bearer_auth(&bob)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.version(), Version::HTTP_2);
    let mut stream = SseStream::new(stream);

    // Renew in place, as certbot would.
    std::fs::copy(&renewed_cert, &cert).unwrap();
    std::fs::copy(&renewed_key, &key).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let fresh = client_trusting(&[&cert], false);
        if let Ok(response) = fresh.get(format!("{base}/healthz")).send().await
            && peer_certificate(&response) != before
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewal was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The stream opened before the renewal still delivers.
    let conversation: Value = client
        .post(format!("{base}/api/conversations"))
        .bearer_auth(&alice)
        .json(&json!({ "username": "bob" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = conversation["id"].as_str().unwrap();
    let sent = client
        .post(format!("{base}/api/conversations/{id}/messages"))
        .bearer_auth(&alice)
        .json(&json!({ "content": "after the renewal" }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::CREATED);
    assert_eq!(stream.next_message().await["content"], "after the renewal");
}
