//! `AdminStore` for `PgStore`: the SQL is `store::admin::shared`; this maps its errors.

use super::{PgStore, classify};
use crate::model::{ConversationId, MessageId, UserId};
use crate::store::admin::shared;
use crate::store::{AdminStore, AdminUser, ExportRows, Report, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

type Db = sqlx::Postgres;

fn changed(rows: Result<u64, sqlx::Error>) -> StoreResult<()> {
    match rows.map_err(classify)? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

#[async_trait]
impl AdminStore for PgStore {
    async fn admin_users(&self, search: Option<&str>, limit: u32) -> StoreResult<Vec<AdminUser>> {
        shared::admin_users::<Db>(&self.pool, search, limit)
            .await
            .map_err(classify)
    }

    async fn admin_user(&self, user: UserId) -> StoreResult<AdminUser> {
        shared::admin_user::<Db>(&self.pool, user)
            .await
            .map_err(classify)
    }

    async fn set_disabled(&self, user: UserId, at: Option<DateTime<Utc>>) -> StoreResult<()> {
        let at = at.map(|t| t.timestamp_millis());
        changed(shared::set_disabled::<Db>(&self.pool, user, at).await)
    }

    async fn set_admin(&self, user: UserId, admin: bool) -> StoreResult<()> {
        changed(shared::set_admin::<Db>(&self.pool, user, admin).await)
    }

    async fn create_report(
        &self,
        reporter: UserId,
        conversation: ConversationId,
        message: MessageId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        let now = now.timestamp_millis();
        shared::create_report::<Db>(&self.pool, reporter, conversation, message, reason, now)
            .await
            .map_err(|e| match e.as_database_error() {
                Some(db) if db.is_unique_violation() => StoreError::Conflict("report"),
                _ => classify(e),
            })
    }

    async fn reports(&self, open_only: bool, limit: u32) -> StoreResult<Vec<Report>> {
        shared::reports::<Db>(&self.pool, open_only, limit)
            .await
            .map_err(classify)
    }

    async fn export_rows(&self, user: UserId) -> StoreResult<ExportRows> {
        shared::export_rows::<Db>(&self.pool, user)
            .await
            .map_err(classify)
    }

    async fn resolve_report(&self, id: i64, by: UserId, now: DateTime<Utc>) -> StoreResult<()> {
        changed(shared::resolve_report::<Db>(&self.pool, id, by, now.timestamp_millis()).await)
    }
}
