//! HTTP integration suite: the real server on a random port, spoken to as a client would.

mod accounts;
mod auth;
mod connections;
mod conversations;
mod dev_login;
mod errors;
mod groups;
mod helpers;
mod messages;
mod proxies;
mod stream;
