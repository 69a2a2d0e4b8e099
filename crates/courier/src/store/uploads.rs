//! `trait UploadStore`: the rows behind uploaded files. File bytes live in `store::files`.
//!
//! Identical content is stored once: `blobs` has a row per stored file (by SHA-256) and every
//! upload of it names it. A blob's file may go only when no upload names it; `drop_blob`
//! decides that in one statement, and its `used_at` guard keeps a blob that an upload is
//! adopting right now out of reach (an upload touches the blob before writing the file, and
//! writes its own row after).
//!
//! A send claims free uploads with a token before it is queued (`claim_uploads`); the store's
//! writer then attaches the claimed uploads inside the send's own transaction (`attach`), so
//! a message is never visible without its files. Both stores run the same SQL, so the trait is
//! implemented once, by `upload_store!`, inside each store's module.

use super::StoreResult;
use crate::model::{Attachment, ConversationId, MessageId, UploadId, UserId};
use async_trait::async_trait;
use std::collections::HashMap;

/// The most files one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;

/// An upload about to be recorded; its blob (and thumbnail's) are already stored.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub attachment: Attachment,
    pub owner: UserId,
    pub hash: String,
    pub thumb_hash: Option<String>,
}

/// What a download needs to decide and serve.
#[derive(Debug, Clone)]
pub struct StoredUpload {
    pub attachment: Attachment,
    pub owner: UserId,
    pub hash: String,
    pub thumb_hash: Option<String>,
    /// The message it is attached to, if any.
    pub message: Option<(ConversationId, MessageId)>,
}

/// Where one id of a send stands after `claim_uploads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Held by this send's token (free before, or already attached by an earlier try of it).
    Ours,
    /// The sender's upload, but attached to another message or claimed by another send.
    Taken,
    /// No such upload, or someone else's: the two are not told apart.
    Unknown,
}

#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Total bytes of the person's uploads, free and attached.
    async fn upload_usage(&self, owner: UserId) -> StoreResult<i64>;
    /// Records that a blob is (about to be) stored, or marks an existing one as just used.
    async fn touch_blob(&self, hash: &str, size: i64) -> StoreResult<()>;
    async fn insert_upload(&self, upload: &NewUpload) -> StoreResult<()>;
    async fn upload(&self, id: &UploadId) -> StoreResult<Option<StoredUpload>>;
    /// Claims `ids` of `owner` for one send under `claim` (which also restarts their grace
    /// period) and reports each id's state, in the order given.
    async fn claim_uploads(
        &self,
        owner: UserId,
        ids: &[UploadId],
        claim: &str,
    ) -> StoreResult<Vec<Claimed>>;
    /// Gives back what a send claimed but did not attach.
    async fn release_claim(&self, claim: &str) -> StoreResult<()>;
    /// A message's attachments, in the sender's order.
    async fn attachments_of(&self, message: MessageId) -> StoreResult<Vec<Attachment>>;
    /// Deletes uploads no message took before `created_before` (ms); returns how many.
    async fn expire_uploads(&self, created_before: i64) -> StoreResult<u64>;
    /// Blobs no upload names, last used before `used_before` (ms).
    async fn orphan_blobs(&self, used_before: i64, limit: u32) -> StoreResult<Vec<String>>;
    /// Deletes the blob's row if it is still an orphan; `true` when its file may go.
    async fn drop_blob(&self, hash: &str, used_before: i64) -> StoreResult<bool>;
}

pub const USAGE: &str =
    "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM uploads WHERE owner_id = $1";

pub const TOUCH_BLOB: &str = "
    INSERT INTO blobs (hash, size, used_at) VALUES ($1, $2, $3)
    ON CONFLICT (hash) DO UPDATE SET used_at = excluded.used_at";

pub const INSERT_UPLOAD: &str = "
    INSERT INTO uploads (id, owner_id, hash, thumb_hash, name, content_type, size, width, height,
                         created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const ATTACHMENT_COLUMNS: &str =
    "u.id, u.name, u.size, u.content_type, u.width, u.height, u.thumb_hash";

pub fn one_upload_sql() -> String {
    format!(
        "SELECT {ATTACHMENT_COLUMNS}, u.owner_id, u.hash, m.conversation_id, u.message_id
         FROM uploads u LEFT JOIN messages m ON m.id = u.message_id WHERE u.id = $1"
    )
}

pub fn attachments_sql(list: &str) -> String {
    format!(
        "SELECT {ATTACHMENT_COLUMNS}, u.message_id FROM uploads u
         WHERE u.message_id IN ({list}) ORDER BY u.message_id, u.position, u.id"
    )
}

/// `$1` owner, `$2` claim, `$3` now, then the ids from `$4` (each with its position).
pub fn claim_sql(ids: usize) -> String {
    let list = (0..ids)
        .map(|i| format!("${}", i + 4))
        .collect::<Vec<_>>()
        .join(", ");
    let positions = (0..ids)
        .map(|i| format!("WHEN ${} THEN {i}", i + 4))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "UPDATE uploads SET claim = $2, created_at = $3, position = CASE id {positions} END
         WHERE owner_id = $1 AND message_id IS NULL AND claim IS NULL AND id IN ({list})"
    )
}

/// `$1` owner, then the ids from `$2`.
pub fn claim_states_sql(ids: usize) -> String {
    let list = (0..ids)
        .map(|i| format!("${}", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT id, claim FROM uploads WHERE owner_id = $1 AND id IN ({list})")
}

pub const RELEASE: &str = "UPDATE uploads SET claim = NULL WHERE claim = $1 AND message_id IS NULL";

/// Run by the stores' writers inside a send's transaction.
pub const ATTACH: &str =
    "UPDATE uploads SET message_id = $1 WHERE claim = $2 AND message_id IS NULL";

/// Run by `lifecycle::write` when a message is deleted: its files are no longer anyone's.
pub const DETACH: &str = "DELETE FROM uploads WHERE message_id = $1";

pub const EXPIRE: &str = "DELETE FROM uploads WHERE message_id IS NULL AND created_at < $1";

pub const ORPHANS: &str = "
    SELECT b.hash FROM blobs b WHERE b.used_at < $1
      AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.hash = b.hash)
      AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.thumb_hash = b.hash)
      AND NOT EXISTS (SELECT 1 FROM users p WHERE p.picture = '/api/avatars/' || b.hash)
    LIMIT $2";

pub const DROP_BLOB: &str = "
    DELETE FROM blobs WHERE hash = $1 AND used_at < $2
      AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.hash = $1)
      AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.thumb_hash = $1)
      AND NOT EXISTS (SELECT 1 FROM users p WHERE p.picture = '/api/avatars/' || $1)";

/// `(id, name, size, content_type, width, height, thumb_hash)` as an attachment.
pub type AttachmentRow = (
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

pub fn attachment_from(row: AttachmentRow) -> Option<Attachment> {
    let (id, name, size, content_type, width, height, thumb) = row;
    Some(Attachment {
        id: UploadId::parse(&id)?,
        name,
        size,
        content_type,
        width,
        height,
        thumbnail: thumb.is_some(),
    })
}

pub fn group_attachments(rows: Vec<(AttachmentRow, i64)>) -> HashMap<MessageId, Vec<Attachment>> {
    let mut by_message: HashMap<MessageId, Vec<Attachment>> = HashMap::new();
    for (row, message) in rows {
        if let Some(a) = attachment_from(row) {
            by_message.entry(MessageId(message)).or_default().push(a);
        }
    }
    by_message
}

/// Implements `UploadStore` for a store with a `pool`, `classify` and `now_ms` in scope.
macro_rules! upload_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::uploads::UploadStore for $store {
            async fn upload_usage(
                &self,
                owner: $crate::model::UserId,
            ) -> $crate::store::StoreResult<i64> {
                sqlx::query_scalar::<_, i64>($crate::store::uploads::USAGE)
                    .bind(owner.0)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(classify)
            }

            async fn touch_blob(&self, hash: &str, size: i64) -> $crate::store::StoreResult<()> {
                sqlx::query($crate::store::uploads::TOUCH_BLOB)
                    .bind(hash)
                    .bind(size)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(())
            }

            async fn insert_upload(
                &self,
                u: &$crate::store::uploads::NewUpload,
            ) -> $crate::store::StoreResult<()> {
                let a = &u.attachment;
                sqlx::query($crate::store::uploads::INSERT_UPLOAD)
                    .bind(a.id.as_str())
                    .bind(u.owner.0)
                    .bind(&u.hash)
                    .bind(&u.thumb_hash)
                    .bind(&a.name)
                    .bind(&a.content_type)
                    .bind(a.size)
                    .bind(a.width)
                    .bind(a.height)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(())
            }

            async fn upload(
                &self,
                id: &$crate::model::UploadId,
            ) -> $crate::store::StoreResult<Option<$crate::store::uploads::StoredUpload>> {
                type Row = (
                    String,
                    String,
                    i64,
                    String,
                    Option<i64>,
                    Option<i64>,
                    Option<String>,
                    i64,
                    String,
                    Option<i64>,
                    Option<i64>,
                );
                let sql = $crate::store::uploads::one_upload_sql();
                let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                let Some((i, n, s, t, w, h, thumb, owner, hash, conversation, message)) = row
                else {
                    return Ok(None);
                };
                let thumb_hash = thumb.clone();
                let Some(attachment) =
                    $crate::store::uploads::attachment_from((i, n, s, t, w, h, thumb))
                else {
                    return Ok(None);
                };
                Ok(Some($crate::store::uploads::StoredUpload {
                    attachment,
                    owner: $crate::model::UserId(owner),
                    hash,
                    thumb_hash,
                    message: conversation.zip(message).map(|(c, m)| {
                        (
                            $crate::model::ConversationId(c),
                            $crate::model::MessageId(m),
                        )
                    }),
                }))
            }

            async fn claim_uploads(
                &self,
                owner: $crate::model::UserId,
                ids: &[$crate::model::UploadId],
                claim: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::uploads::Claimed>> {
                use $crate::store::uploads::Claimed;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = $crate::store::uploads::claim_sql(ids.len());
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(owner.0)
                    .bind(claim)
                    .bind(now_ms());
                for id in ids {
                    query = query.bind(id.as_str());
                }
                query.execute(&self.pool).await.map_err(classify)?;
                let sql = $crate::store::uploads::claim_states_sql(ids.len());
                let mut query =
                    sqlx::query_as::<_, (String, Option<String>)>(sqlx::AssertSqlSafe(sql))
                        .bind(owner.0);
                for id in ids {
                    query = query.bind(id.as_str());
                }
                let states: std::collections::HashMap<String, Option<String>> = query
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?
                    .into_iter()
                    .collect();
                Ok(ids
                    .iter()
                    .map(|id| match states.get(id.as_str()) {
                        None => Claimed::Unknown,
                        Some(Some(c)) if c == claim => Claimed::Ours,
                        Some(_) => Claimed::Taken,
                    })
                    .collect())
            }

            async fn release_claim(&self, claim: &str) -> $crate::store::StoreResult<()> {
                sqlx::query($crate::store::uploads::RELEASE)
                    .bind(claim)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(())
            }

            async fn attachments_of(
                &self,
                message: $crate::model::MessageId,
            ) -> $crate::store::StoreResult<Vec<$crate::model::Attachment>> {
                let mut by_message =
                    $crate::store::uploads::attachments::<$db>(&self.pool, &[message.0])
                        .await
                        .map_err(classify)?;
                Ok(by_message.remove(&message).unwrap_or_default())
            }

            async fn expire_uploads(&self, created_before: i64) -> $crate::store::StoreResult<u64> {
                let done = sqlx::query($crate::store::uploads::EXPIRE)
                    .bind(created_before)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(done.rows_affected())
            }

            async fn orphan_blobs(
                &self,
                used_before: i64,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<String>> {
                sqlx::query_scalar::<_, String>($crate::store::uploads::ORPHANS)
                    .bind(used_before)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)
            }

            async fn drop_blob(
                &self,
                hash: &str,
                used_before: i64,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query($crate::store::uploads::DROP_BLOB)
                    .bind(hash)
                    .bind(used_before)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
pub(crate) use upload_store;

/// The attachments of `messages`, by message; one query. Bounds as `lifecycle::decorate`'s,
/// which calls it.
pub async fn attachments<DB>(
    pool: &sqlx::Pool<DB>,
    messages: &[i64],
) -> Result<HashMap<MessageId, Vec<Attachment>>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    String: sqlx::Type<DB>,
    DB::Arguments: sqlx::IntoArguments<DB> + Default,
{
    use super::log::Columns;
    if messages.is_empty() {
        return Ok(HashMap::new());
    }
    let placeholders = (1..=messages.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = attachments_sql(&placeholders);
    let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
    for id in messages {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(pool).await?;
    let mut grouped = Vec::with_capacity(rows.len());
    for row in &rows {
        grouped.push((
            (
                row.text(0)?,
                row.text(1)?,
                row.int(2)?,
                row.text(3)?,
                row.opt_int(4)?,
                row.opt_int(5)?,
                row.opt_text(6)?,
            ),
            row.int(7)?,
        ));
    }
    Ok(group_attachments(grouped))
}
