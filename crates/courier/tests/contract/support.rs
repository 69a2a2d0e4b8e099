//! Backends for the contract suites: each test gets a fresh database and bus namespace.
//!
//! PostgreSQL: `COURIER_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! is the admin connection; every test creates its own database there and drops it after.
//! NATS: `COURIER_TEST_NATS_URL` (default `nats://127.0.0.1:4222`), with a random subject
//! prefix per test.

use courier::bus::{Bus, LocalBus};
use courier::store::{SqliteOptions, SqliteStore, Store};
use std::sync::Arc;

/// Logs go to the test output when `TEST_LOG` is set (e.g. `TEST_LOG=debug`).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        courier::telemetry::init(&filter, std::io::stderr);
    }
}

pub fn random_name(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 6]>()))
}

/// A store under test, and how to open it again (to check what survives a restart).
pub struct StoreBackend {
    pub store: Arc<dyn Store>,
    url: String,
    _dir: Option<tempfile::TempDir>,
    #[cfg(feature = "postgres")]
    database: Option<String>,
}

impl StoreBackend {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("courier.db").display());
        let store = SqliteStore::open(&url, &SqliteOptions::default())
            .await
            .expect("open SQLite");
        Self {
            store: Arc::new(store),
            url,
            _dir: Some(dir),
            #[cfg(feature = "postgres")]
            database: None,
        }
    }

    #[cfg(feature = "postgres")]
    pub async fn postgres() -> Self {
        let database = random_name("courier_contract_");
        let url = pg::create_database(&database).await;
        let store = courier::store::PgStore::open(&url, &Default::default())
            .await
            .expect("open PostgreSQL");
        Self {
            store: Arc::new(store),
            url,
            _dir: None,
            database: Some(database),
        }
    }

    /// Opens a second store on the same database (another node). SQLite refuses: one process
    /// owns a database file, which is what lets its single writer cache heads and assign ids.
    pub async fn reopen(&self) -> Option<Arc<dyn Store>> {
        if self.url.starts_with("sqlite:") {
            let second = SqliteStore::open(&self.url, &SqliteOptions::default()).await;
            assert!(
                second.is_err(),
                "a second SQLite store on one file is refused"
            );
            return None;
        }
        #[cfg(feature = "postgres")]
        {
            Some(Arc::new(
                courier::store::PgStore::open(&self.url, &Default::default())
                    .await
                    .expect("reopen PostgreSQL"),
            ))
        }
        #[cfg(not(feature = "postgres"))]
        unreachable!()
    }

    /// The database's URL, for tests that open their own connection beside the store.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the test database (SQLite's temp dir goes by itself).
    pub async fn finish(self) {
        #[cfg(feature = "postgres")]
        if let Some(database) = &self.database {
            drop(self.store);
            pg::drop_database(database).await;
        }
    }
}

#[cfg(feature = "postgres")]
pub mod pg {
    use sqlx::{Connection, PgConnection};

    pub fn admin_url() -> String {
        std::env::var("COURIER_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    /// `admin_url` with its database replaced by `database`.
    pub fn url_for(database: &str) -> String {
        let admin = admin_url();
        let (base, query) = match admin.split_once('?') {
            Some((base, query)) => (base.to_owned(), format!("?{query}")),
            None => (admin.clone(), String::new()),
        };
        let authority_end = base.find("://").map_or(0, |i| i + 3);
        let base = match base[authority_end..].find('/') {
            Some(slash) => base[..authority_end + slash].to_owned(),
            None => base,
        };
        format!("{base}/{database}{query}")
    }

    async fn admin() -> PgConnection {
        PgConnection::connect(&admin_url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {} is needed for these tests: {e}",
                    admin_url()
                )
            })
    }

    pub async fn create_database(database: &str) -> String {
        let mut conn = admin().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{database}\""
        )))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
        url_for(database)
    }

    pub async fn drop_database(database: &str) {
        let mut conn = admin().await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// A bus under test. `publisher` and `subscriber` are two nodes of one community (the same
/// object for `LocalBus`), so a passing test proves events cross between nodes.
pub struct BusBackend {
    pub publisher: Arc<dyn Bus>,
    pub subscriber: Arc<dyn Bus>,
    /// Live subscriptions on the subscriber node.
    pub subscriber_count: Box<dyn Fn() -> usize + Send + Sync>,
}

impl BusBackend {
    pub async fn local() -> Self {
        let bus = Arc::new(LocalBus::new());
        let counted = bus.clone();
        Self {
            publisher: bus.clone(),
            subscriber: bus,
            subscriber_count: Box::new(move || counted.subscriber_count()),
        }
    }

    #[cfg(feature = "nats")]
    pub async fn nats() -> Self {
        init_logs();
        let instance = random_name("t");
        let publisher = nats_node(&instance).await;
        let subscriber = Arc::new(nats_node(&instance).await);
        let counted = subscriber.clone();
        Self {
            publisher: Arc::new(publisher),
            subscriber,
            subscriber_count: Box::new(move || counted.subscriber_count()),
        }
    }
}

#[cfg(feature = "nats")]
pub fn nats_url() -> String {
    std::env::var("COURIER_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

#[cfg(feature = "nats")]
pub async fn nats_node(instance: &str) -> courier::bus::NatsBus {
    courier::bus::NatsBus::connect(&nats_url(), instance)
        .await
        .unwrap_or_else(|e| panic!("NATS at {} is needed for these tests: {e}", nats_url()))
}
