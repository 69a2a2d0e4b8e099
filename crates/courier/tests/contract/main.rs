//! Contract suites: the same test functions run on every `Store` (SQLite, PostgreSQL) and
//! every `Bus` (local, NATS). When two backends disagree, the fix is a new test here.
//!
//! PostgreSQL and NATS come from `COURIER_TEST_POSTGRES_URL` / `COURIER_TEST_NATS_URL`
//! (defaults: the machine's 127.0.0.1:5432 and 127.0.0.1:4222); every test gets its own
//! database and its own NATS subject prefix. Tests that stop NATS start a private one.

mod bus;
#[cfg(feature = "postgres")]
mod pg_order;
mod presence;
#[path = "../common/services.rs"]
mod reachable;
mod services;
mod store;
mod support;
