//! A database blip is not a sign-out: while the store cannot be reached, an authenticated
//! request answers 503 with a JSON body and `Retry-After`, never 401; once the store is back
//! the same token works again.
//!
//! The outage is real: the server talks to PostgreSQL through a TCP relay that the test cuts
//! (every open connection dropped, new ones refused) and then restores.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A TCP relay to `upstream` that can be cut and restored.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<std::sync::Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let links = Arc::new(std::sync::Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let (cut, links) = (cut.clone(), links.clone());
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: the database "refuses" the connection
                    }
                    let upstream = upstream.clone();
                    links.lock().unwrap().spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        Self {
            port,
            cut,
            links,
            accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.links.lock().unwrap().abort_all();
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.links.lock().unwrap().abort_all();
    }
}

#[tokio::test]
async fn an_unreachable_store_answers_503_not_401_and_the_session_survives() {
    if !postgres_available() {
        return;
    }
    let pg = postgres_addr();
    let url = fresh_postgres_database().await;
    let relay = Relay::start(pg.clone()).await;
    let proxied = url.replacen(&pg, &format!("127.0.0.1:{}", relay.port), 1);
    let app = spawn_app_with(move |c| c.database_url = Some(proxied)).await;
    let alice = app.login("alice").await;
    assert_eq!(app.auth_status(&alice).await, StatusCode::OK);

    relay.cut();
    // The session check is cached for a moment; wait until requests reach the store.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let response = loop {
        let response = app.get("/api/auth_user", &alice).send().await.unwrap();
        if response.status() != StatusCode::OK || tokio::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
    for path in ["/api/conversations", "/api/sessions"] {
        let status = app.get(path, &alice).send().await.unwrap().status();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }

    relay.restore();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.auth_status(&alice).await != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session works again once the store is back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
