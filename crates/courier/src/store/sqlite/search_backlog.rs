//! New messages' search words, written by the writer in batches behind the sends.
//!
//! FTS5 writes a new index segment at every commit that touches the index, so a
//! single-message send that also wrote its words put ~13 pages in the WAL instead of ~6,
//! and the FTS work ran while the next sends waited. Now a send commits only the message; the
//! writer indexes what is pending in one transaction once `BATCH` messages wait or the oldest
//! has waited `MAX_LAG`, and at once when a search asks (`WriteJob::IndexSearch`), so a message
//! is found as soon as its send has been answered. The mark of what is indexed is kept in
//! `search_backlog`, written in the batch's own transaction, so a restart carries on from it.
//!
//! Edits and deletes still write the index in their own transaction. A batch reads messages
//! as they are when it runs: it writes an edited message's current words again (the same
//! words) and skips a deleted one.

use std::time::{Duration, Instant};

/// Pending messages that make a batch worth its commit.
const BATCH: i64 = 64;
/// The longest a new message waits to be searchable when nobody searches.
const MAX_LAG: Duration = Duration::from_millis(100);
/// Messages indexed in one transaction at most (a catch-up takes several).
const MAX_ROWS: i64 = 2000;

pub(super) struct SearchBacklog {
    /// Every message at or below this position is indexed (or deleted, or has no text).
    indexed_upto: i64,
    /// The newest message position committed.
    newest: i64,
    /// When the oldest message not yet indexed was committed.
    since: Option<Instant>,
    /// Off only in a benchmark's control run (`store::search::index_sends`).
    enabled: bool,
}

impl SearchBacklog {
    /// Reads the mark (migration 0020 starts it at the newest message of a database from
    /// before batching, whose every send was indexed in its own commit).
    pub(super) fn load(conn: &rusqlite::Connection) -> rusqlite::Result<Self> {
        let indexed_upto: i64 = conn.query_row(
            "SELECT indexed_upto FROM search_backlog WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        let newest: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
            r.get(0)
        })?;
        Ok(Self {
            indexed_upto,
            newest,
            // Left by a crash or a stop: indexed with the first turn's batch.
            since: (newest > indexed_upto).then(Instant::now),
            enabled: crate::store::search::index_sends(),
        })
    }

    /// Messages up to `newest` were committed.
    pub(super) fn committed(&mut self, newest: i64) {
        if !self.enabled || newest <= self.newest {
            return;
        }
        self.newest = newest;
        self.since.get_or_insert_with(Instant::now);
    }

    /// How long the writer may wait for a job before the oldest pending message is due.
    pub(super) fn due_in(&self) -> Option<Duration> {
        self.since
            .map(|since| MAX_LAG.saturating_sub(since.elapsed()))
    }

    /// Whether a batch is due now.
    pub(super) fn due(&self) -> bool {
        self.since.is_some_and(|since| {
            self.newest - self.indexed_upto >= BATCH || since.elapsed() >= MAX_LAG
        })
    }

    /// A batch failed: the next try waits `MAX_LAG` rather than spinning.
    pub(super) fn failed(&mut self) {
        if self.since.is_some() {
            self.since = Some(Instant::now());
        }
    }

    /// Indexes everything pending, in transactions of up to `MAX_ROWS` messages.
    pub(super) fn index_all(&mut self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        while self.since.is_some() {
            self.index_batch(conn)?;
        }
        Ok(())
    }

    /// Indexes up to `MAX_ROWS` pending messages in one transaction.
    pub(super) fn index_batch(&mut self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        if self.since.is_none() {
            return Ok(());
        }
        let started = Instant::now();
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let mut upto = self.newest;
        {
            let mut pending = tx.prepare_cached(
                "SELECT id, content FROM messages
                 WHERE id > ?1 AND id <= ?2 AND deleted_at IS NULL AND content <> ''
                 ORDER BY id LIMIT ?3",
            )?;
            let mut words = tx.prepare_cached(
                "INSERT OR REPLACE INTO message_search (rowid, words) VALUES (?, ?)",
            )?;
            let mut rows = pending.query(rusqlite::params![self.indexed_upto, upto, MAX_ROWS])?;
            let mut read = 0;
            while let Some(row) = rows.next()? {
                let (id, content): (i64, String) = (row.get(0)?, row.get(1)?);
                words.execute(rusqlite::params![id, crate::model::index_text(&content)])?;
                read += 1;
                if read == MAX_ROWS {
                    upto = id; // more after it: the next batch goes on from here
                }
            }
        }
        tx.execute(
            "UPDATE search_backlog SET indexed_upto = ?1 WHERE id = 1",
            [upto],
        )?;
        tx.commit()?;
        metrics::histogram!("courier_search_index_batch_seconds").record(started.elapsed());
        self.indexed_upto = upto;
        if upto >= self.newest {
            self.since = None;
        }
        Ok(())
    }
}
