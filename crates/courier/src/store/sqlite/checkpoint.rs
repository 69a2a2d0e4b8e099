//! WAL checkpoints on a thread of their own, so that no commit pays for one.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1,000 pages:
//! that send waits while the pages are copied into the database file and the file is synced
//! (about 2 ms here), and so does every send queued behind it. A single-message send writes
//! about 13 WAL pages, so at 2,000 sends a second that was a checkpoint every ~40 sends: a
//! stall in the p99. Here the writer's connections have automatic checkpoints off. The send
//! connection's WAL hook notes the WAL's size after each commit, and once the WAL has grown
//! by the same 1,000 pages the writer nudges this thread. The thread runs a PASSIVE
//! checkpoint on its own connection: it copies what no reader still needs and waits for
//! neither readers nor the writer, which keeps appending meanwhile. Once everything is copied,
//! SQLite restarts the WAL from its beginning at the next commit, as before.

use rusqlite::hooks::Wal;
use std::cell::Cell;
use std::ffi::c_int;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// How much the WAL grows between checkpoints: SQLite's own `wal_autocheckpoint` default.
const CHECKPOINT_PAGES: c_int = 1000;

thread_local! {
    /// The WAL's size in pages after the writer thread's last commit on its send connection.
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// Turns off the connection's automatic checkpoints and notes its WAL size after each commit
/// (for [`Nudge::after_commit`], on the same thread).
pub(super) fn hand_off(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    // First: the pragma installs SQLite's own hook, which would replace ours.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.wal_hook(Some(note_wal_pages));
    Ok(())
}

fn note_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

/// The writer's side: asks for a checkpoint each time the WAL has grown `CHECKPOINT_PAGES`.
pub(super) struct Nudge {
    ask: SyncSender<()>,
    asked_at: c_int,
}

impl Nudge {
    /// Call on the writer thread after its commits.
    pub(super) fn after_commit(&mut self) {
        let pages = WAL_PAGES.get();
        if pages < self.asked_at {
            self.asked_at = 0; // the WAL restarted from its beginning
        }
        if pages - self.asked_at < CHECKPOINT_PAGES {
            return;
        }
        match self.ask.try_send(()) {
            // Full: a checkpoint is already asked for and will see these pages too.
            Ok(()) | Err(TrySendError::Full(())) => self.asked_at = pages,
            Err(TrySendError::Disconnected(())) => {}
        }
    }
}

/// Starts the checkpointer on its own connection to `path`; it ends with the writer (when the
/// returned [`Nudge`] is dropped).
pub(super) fn spawn(
    path: &std::path::Path,
    options: &super::SqliteOptions,
) -> std::io::Result<Nudge> {
    let conn = super::writer::open_sends(path, options).map_err(std::io::Error::other)?;
    let (ask, asked) = sync_channel(1);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || run(conn, asked))?;
    Ok(Nudge { ask, asked_at: 0 })
}

fn run(conn: rusqlite::Connection, asked: Receiver<()>) {
    while asked.recv().is_ok() {
        // Columns: busy, pages in the WAL, pages copied so far.
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match done {
            Ok((log, copied)) => tracing::debug!(log, copied, "WAL checkpoint"),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries"),
        }
    }
}
