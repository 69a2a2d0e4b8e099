//! HTTP integration suite: the real server on a random port, spoken to as a client would.

mod accounts;
mod accounts_people;
mod admin;
mod auth;
mod backup;
mod connections;
mod conversations;
mod dev_login;
mod errors;
mod fuzz;
mod groups;
mod helpers;
mod lifecycle;
mod messages;
mod metrics;
mod openapi;
mod outage;
mod presence;
mod profiles;
mod proxies;
mod push;
#[path = "../common/services.rs"]
mod reachable;
mod receipts;
mod search;
mod stream;
mod text;
mod tls;
mod tokens;
mod typing;
mod upgrade;
mod uploads;
mod uploads_s3;
