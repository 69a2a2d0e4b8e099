//! Upgrades never lose data: databases written by an older schema, committed under
//! `tests/fixtures/<newest migration then>/`, are migrated to this build's schema by starting
//! the server on them; every row they held must still be there (each of the fixture's tables,
//! read by the fixture's own columns, compares equal before and after), and a member signs in
//! with her password and sees her conversations and messages as she did.
//!
//! **Add a fixture with each schema change.** When you add a migration, make a fixture with
//! the build *before* it (`python3 tests/fixtures/make.py target/debug/courier
//! tests/fixtures/<its newest migration>`), commit it, and add it to `FIXTURES`: then every
//! later migration is tested against data written by every earlier schema.
//!
//! Migrations run one transaction each (sqlx's default; no migration opts out with
//! `-- no-transaction`): `a_failing_migration_leaves_the_database_as_it_was` proves on a copy
//! that a migration failing half-way leaves nothing behind.

use crate::helpers::{TestApp, start};
use courier::config::ServeConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, Row};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Fixture directories, oldest schema first.
const FIXTURES: &[&str] = &["0011", "0017"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every table's rows, each read by the given columns and rendered as text, sorted.
type Rows = BTreeMap<String, Vec<String>>;
/// Each table's columns, in order.
type Columns = BTreeMap<String, Vec<String>>;

async fn sqlite_columns(conn: &mut sqlx::SqliteConnection) -> Columns {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut columns = Columns::new();
    for table in tables {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(&table)
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        columns.insert(table, names);
    }
    columns
}

async fn sqlite_rows(conn: &mut sqlx::SqliteConnection, columns: &Columns) -> Rows {
    let mut rows = Rows::new();
    for (table, names) in columns {
        let select = names
            .iter()
            .map(|c| format!("quote(\"{c}\")"))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let sql = format!("SELECT {select} FROM \"{table}\" ORDER BY 1");
        let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        rows.insert(table.clone(), found);
    }
    rows
}

async fn pg_columns(conn: &mut sqlx::PgConnection) -> Columns {
    let found = sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' \
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut columns = Columns::new();
    for row in found {
        let table: String = row.get(0);
        columns.entry(table).or_default().push(row.get(1));
    }
    columns
}

async fn pg_rows(conn: &mut sqlx::PgConnection, columns: &Columns) -> Rows {
    let mut rows = Rows::new();
    for (table, names) in columns {
        let select = names
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT ROW({select})::text FROM public.\"{table}\" ORDER BY 1");
        let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        rows.insert(table.clone(), found);
    }
    rows
}

fn assert_same_rows(before: &Rows, after: &Rows, what: &str) {
    assert!(
        before.values().map(Vec::len).sum::<usize>() > 30,
        "{what}: the fixture looks empty"
    );
    for (table, rows) in before {
        assert_eq!(
            Some(rows),
            after.get(table),
            "{what}: rows of {table} changed in the upgrade"
        );
    }
}

fn config_for(data_dir: &Path, database_url: Option<String>) -> ServeConfig {
    let mut config = ServeConfig::for_data_dir(data_dir);
    config.database_url = database_url;
    config.push = false;
    config
}

/// Signs in with the fixture's password and sees what the fixture's member saw.
async fn assert_served(app: &TestApp, expected: &Value) {
    let response = app
        .client
        .post(app.url("/api/signin"))
        .json(&json!({"username": expected["username"], "password": expected["password"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "password sign-in");
    let token = response.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let conversations: Vec<Value> = app
        .client
        .get(app.url("/api/conversations"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want = expected["conversations"].as_object().unwrap();
    assert_eq!(conversations.len(), want.len(), "{conversations:?}");
    for (id, seen) in want {
        let conversation = conversations
            .iter()
            .find(|c| c["id"] == id.as_str())
            .unwrap_or_else(|| panic!("conversation {id} is gone"));
        assert_eq!(conversation["title"], seen["title"]);
        let messages: Vec<Value> = app
            .client
            .get(app.url(&format!("/api/conversations/{id}/messages")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let got: Vec<Value> = messages
            .iter()
            .map(|m| json!({"id": m["id"], "content": m["content"]}))
            .collect();
        assert_eq!(&Value::Array(got), &seen["messages"], "messages of {id}");
    }
}

fn expected(name: &str, backend: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join(format!("{backend}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn sqlite_snapshot(db: &Path, columns: Option<&Columns>) -> (Columns, Rows) {
    let url = format!("sqlite://{}", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let columns = match columns {
        Some(columns) => columns.clone(),
        None => sqlite_columns(&mut conn).await,
    };
    let rows = sqlite_rows(&mut conn, &columns).await;
    conn.close().await.unwrap();
    (columns, rows)
}

#[tokio::test]
async fn sqlite_fixtures_upgrade_with_every_row_kept_and_served() {
    for name in FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("courier.db");
        std::fs::copy(fixture(name).join("courier.db"), &db).unwrap();
        let (columns, before) = sqlite_snapshot(&db, None).await;

        // Starting the server migrates; nothing else touches the rows before they are compared.
        let mut app = start(config_for(dir.path(), None), dir).await;
        app.stop().await;
        let (_, after) =
            sqlite_snapshot(&app.data_dir.path().join("courier.db"), Some(&columns)).await;
        assert_same_rows(&before, &after, &format!("SQLite fixture {name}"));

        let app = app.restart().await;
        assert_served(&app, &expected(name, "sqlite")).await;
    }
}

/// A fresh PostgreSQL database loaded with the fixture's dump; returns its URL.
async fn load_pg_fixture(name: &str) -> String {
    let url = crate::helpers::fresh_postgres_database().await;
    let dump = std::fs::read_to_string(fixture(name).join("postgres.sql")).unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(dump))
        .execute(&mut conn)
        .await
        .expect("load the fixture dump");
    conn.close().await.unwrap();
    url
}

async fn pg_snapshot(url: &str, columns: Option<&Columns>) -> (Columns, Rows) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let columns = match columns {
        Some(columns) => columns.clone(),
        None => pg_columns(&mut conn).await,
    };
    let rows = pg_rows(&mut conn, &columns).await;
    conn.close().await.unwrap();
    (columns, rows)
}

#[tokio::test]
async fn postgres_fixtures_upgrade_with_every_row_kept_and_served() {
    if !crate::helpers::postgres_available() {
        return;
    }
    for name in FIXTURES {
        let url = load_pg_fixture(name).await;
        let (columns, before) = pg_snapshot(&url, None).await;
        let dir = tempfile::tempdir().unwrap();
        let mut app = start(config_for(dir.path(), Some(url.clone())), dir).await;
        app.stop().await;
        let (_, after) = pg_snapshot(&url, Some(&columns)).await;
        assert_same_rows(&before, &after, &format!("PostgreSQL fixture {name}"));
        let app = app.restart().await;
        assert_served(&app, &expected(name, "postgres")).await;
    }
}

/// This build's migrations plus one that changes data and then fails.
fn migrations_with_a_failing_one(backend: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for entry in std::fs::read_dir(source).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(
        dir.path().join("9999_deliberately_fails.sql"),
        "CREATE TABLE upgrade_probe (x INTEGER);\n\
         UPDATE users SET username = username || '_changed';\n\
         INSERT INTO no_such_table VALUES (1);\n",
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn a_failing_migration_leaves_the_database_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("courier.db");
    std::fs::copy(fixture(FIXTURES[0]).join("courier.db"), &db).unwrap();
    let (columns, before) = sqlite_snapshot(&db, None).await;
    let migrations = migrations_with_a_failing_one("sqlite");
    let migrator = sqlx::migrate::Migrator::new(migrations.path())
        .await
        .unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    assert!(
        migrator.run(&mut conn).await.is_err(),
        "the migration must fail"
    );
    let probe: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'upgrade_probe'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let recorded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE version = 9999")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    assert_eq!(
        (probe, recorded),
        (0, 0),
        "the failed migration left traces"
    );
    let (_, after) = sqlite_snapshot(&db, Some(&columns)).await;
    assert_same_rows(&before, &after, "SQLite after a failed migration");

    if !crate::helpers::postgres_available() {
        return;
    }
    let url = load_pg_fixture(FIXTURES[0]).await;
    let (columns, before) = pg_snapshot(&url, None).await;
    let migrations = migrations_with_a_failing_one("postgres");
    let migrator = sqlx::migrate::Migrator::new(migrations.path())
        .await
        .unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    assert!(
        migrator.run(&mut conn).await.is_err(),
        "the migration must fail"
    );
    let probe: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'upgrade_probe'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let recorded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE version = 9999")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    assert_eq!(
        (probe, recorded),
        (0, 0),
        "the failed migration left traces"
    );
    let (_, after) = pg_snapshot(&url, Some(&columns)).await;
    assert_same_rows(&before, &after, "PostgreSQL after a failed migration");
}
