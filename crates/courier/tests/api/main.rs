//! HTTP integration suite: the real server on a random port, spoken to as a client would.

mod accounts;
mod auth;
mod conversations;
mod errors;
mod fuzz;
mod groups;
mod helpers;
mod messages;
mod outage;
#[path = "../common/services.rs"]
mod reachable;
mod stream;
mod text;
mod tokens;
