//! `AdminStore` for `SqliteStore`; twin of `postgres/admin.rs`.

use super::{SqliteStore, classify, time};
use crate::model::{ConversationId, MessageId, UserId};
use crate::store::{AdminStore, AdminUser, ExportRows, Report, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

const USER_COLUMNS: &str =
    "id, username, created_at, is_admin <> 0, deleted_at IS NOT NULL, disabled_at";

fn user_at(row: &SqliteRow) -> Result<AdminUser, sqlx::Error> {
    Ok(AdminUser {
        id: UserId(row.try_get(0)?),
        username: row.try_get(1)?,
        created_at: time(row.try_get(2)?),
        is_admin: row.try_get(3)?,
        deleted: row.try_get(4)?,
        disabled_at: row.try_get::<Option<i64>, _>(5)?.map(time),
    })
}

fn report_at(row: &SqliteRow) -> Result<Report, sqlx::Error> {
    Ok(Report {
        id: row.try_get(0)?,
        reporter: UserId(row.try_get(1)?),
        reporter_name: row.try_get(2)?,
        conversation: ConversationId(row.try_get(3)?),
        message: MessageId(row.try_get(4)?),
        sender: UserId(row.try_get(5)?),
        sender_name: row.try_get(6)?,
        content: row.try_get(7)?,
        reason: row.try_get(8)?,
        created_at: time(row.try_get(9)?),
        resolved_by: row.try_get::<Option<i64>, _>(10)?.map(UserId),
        resolved_at: row.try_get::<Option<i64>, _>(11)?.map(time),
    })
}

fn changed(rows: u64) -> StoreResult<()> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

#[async_trait]
impl AdminStore for SqliteStore {
    async fn admin_users(&self, search: Option<&str>, limit: u32) -> StoreResult<Vec<AdminUser>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE ?1 IS NULL OR instr(lower(username), lower(?1)) > 0
             ORDER BY lower(username) LIMIT ?2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(search.filter(|s| !s.is_empty()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(user_at)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn admin_user(&self, user: UserId) -> StoreResult<AdminUser> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.0)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        user_at(&row).map_err(classify)
    }

    async fn set_disabled(&self, user: UserId, at: Option<DateTime<Utc>>) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET disabled_at = ? WHERE id = ?")
            .bind(at.map(|t| t.timestamp_millis()))
            .bind(user.0)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        changed(done.rows_affected())
    }

    async fn set_admin(&self, user: UserId, admin: bool) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET is_admin = ? WHERE id = ?")
            .bind(admin)
            .bind(user.0)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        changed(done.rows_affected())
    }

    async fn create_report(
        &self,
        reporter: UserId,
        conversation: ConversationId,
        message: MessageId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO reports (reporter_id, conversation_id, message_id, reason, created_at)
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(reporter.0)
        .bind(conversation.0)
        .bind(message.0)
        .bind(reason)
        .bind(now.timestamp_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match e.as_database_error() {
            Some(db) if db.is_unique_violation() => StoreError::Conflict("report"),
            _ => classify(e),
        })
    }

    async fn reports(&self, open_only: bool, limit: u32) -> StoreResult<Vec<Report>> {
        let rows = sqlx::query(
            "SELECT r.id, r.reporter_id, ru.username, r.conversation_id, r.message_id,
                    m.sender_id, su.username, m.content, r.reason, r.created_at,
                    r.resolved_by, r.resolved_at
             FROM reports r
             JOIN users ru ON ru.id = r.reporter_id
             JOIN messages m ON m.id = r.message_id
             JOIN users su ON su.id = m.sender_id
             WHERE NOT ?1 OR r.resolved_at IS NULL
             ORDER BY r.id DESC LIMIT ?2",
        )
        .bind(open_only)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(report_at)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn export_rows(&self, user: UserId) -> StoreResult<ExportRows> {
        let memberships = sqlx::query_as(
            "SELECT p.conversation_id, c.kind, c.title, p.role
             FROM participants p JOIN conversations c ON c.id = p.conversation_id
             WHERE p.user_id = ? ORDER BY p.conversation_id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let messages = sqlx::query_as(
            "SELECT conversation_id, id, content, created_at, edited_at, deleted_at
             FROM messages WHERE sender_id = ? ORDER BY id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let reactions = sqlx::query_as(
            "SELECT message_id, emoji, created_at FROM reactions WHERE user_id = ?
             ORDER BY created_at, message_id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(ExportRows {
            memberships,
            messages,
            reactions,
        })
    }

    async fn resolve_report(&self, id: i64, by: UserId, now: DateTime<Utc>) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE reports SET resolved_by = ?, resolved_at = ? WHERE id = ? AND resolved_at IS NULL",
        )
        .bind(by.0)
        .bind(now.timestamp_millis())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        changed(done.rows_affected())
    }
}
