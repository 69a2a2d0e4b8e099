//! The scenarios run against a Courier server (any server with its public API).

mod child;
pub mod fanout;
pub mod idle;
pub mod latency;
pub mod resume;
pub mod search;
pub mod send;
pub mod signals;
pub mod signin;
pub mod upload;
