//! A signed-in device. Tokens name their session, so revoking it ends the token at once.

use super::UserId;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// 128 random bits, hex.
    pub id: String,
    pub user: UserId,
    /// What the client said it is (User-Agent), shortened, for the sessions list.
    pub device: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Session {
    pub fn new_id() -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }
}
