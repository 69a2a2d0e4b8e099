//! Courier: a self-hostable realtime messenger.
//!
//! Imports flow one way: model ← store, bus ← service ← realtime ← api ← app.
//! `tests/architecture.rs` keeps that true.

pub mod api;
pub mod app;
pub mod bus;
pub mod config;
pub mod model;
pub mod ops;
pub mod realtime;
#[allow(unsafe_code)] // one syscall that no maintained crate wraps; see its docs
pub mod sched;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod web;
