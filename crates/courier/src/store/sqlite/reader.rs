//! Hot reads on rusqlite connections of their own, run on the calling task: a stream's
//! catch-up, and the two reads every stream connect makes (the session, the inbox head).
//!
//! A stream's catch-up is the read a reconnect storm makes ten thousand times at once. Through
//! sqlx each one crossed to a connection's worker thread and back, and every column of every
//! row was copied (`sqlite3_value_dup`) to cross it: in the storm's profile those copies and
//! the futex hand-offs were half of the sqlx threads' time. Here the statement runs where it is
//! asked, on a pooled connection, and rows decode straight from SQLite's buffers. A read in WAL
//! mode never waits for the writer, and each read is bounded (a catch-up page is at most
//! `realtime`'s `REPLAY_BATCH`, 500 rows), so it holds the worker thread for well under a millisecond.

use super::SqliteOptions;
use crate::store::StoreError;
use crate::store::log::Columns;
use rusqlite::OpenFlags;
use std::path::PathBuf;
use std::sync::Mutex;

/// Idle connections kept for reuse; more open while more reads run at once, then close.
const KEEP_IDLE: usize = 8;
/// The longest a read waits for a busy file (see `Readers::new`).
const READ_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

pub(super) struct Readers {
    path: PathBuf,
    busy_timeout: std::time::Duration,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Readers {
    pub(super) fn new(path: &std::path::Path, options: &SqliteOptions) -> Self {
        Self {
            path: path.to_owned(),
            // A WAL reader meets a busy file only in rare cases (recovery after a crash); it
            // then answers 503 soon instead of holding a runtime worker for the full timeout.
            busy_timeout: options.busy_timeout.min(READ_BUSY_TIMEOUT),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        // Readers only: a write through one would take the lock the writer thread expects.
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(conn)
    }

    /// Runs `read` on an idle connection (opening one if none is idle).
    pub(super) fn read<T, E: From<rusqlite::Error>>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        let surplus = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < KEEP_IDLE {
                idle.push(conn);
                None
            } else {
                Some(conn)
            }
        };
        drop(surplus); // closed outside the lock
        result
    }
}

/// A read's failure: SQLite's own, or a row that did not decode.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Decode(#[from] sqlx::Error),
}

impl From<ReadError> for StoreError {
    /// As the pool's errors are classified (`super::classify`): SQLite's "not now" results
    /// are `Unavailable` (503, retried), never a missing session and so never a sign-out.
    fn from(e: ReadError) -> Self {
        use rusqlite::ErrorCode::*;
        match e {
            ReadError::Sqlite(rusqlite::Error::QueryReturnedNoRows) => StoreError::NotFound,
            ReadError::Sqlite(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(
                    failure.code,
                    DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen
                ) =>
            {
                StoreError::Unavailable(Box::new(e))
            }
            e => StoreError::Other(Box::new(e)),
        }
    }
}

/// A rusqlite row seen through `Columns`, so the stores' shared row mapping decodes it.
pub(super) struct Lite<'a, 'stmt>(pub(super) &'a rusqlite::Row<'stmt>);

fn decode(e: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

impl<'r> Columns<'r> for Lite<'_, '_> {
    fn int(&'r self, at: usize) -> Result<i64, sqlx::Error> {
        self.0.get(at).map_err(decode)
    }
    fn opt_int(&'r self, at: usize) -> Result<Option<i64>, sqlx::Error> {
        self.0.get(at).map_err(decode)
    }
    fn text(&'r self, at: usize) -> Result<String, sqlx::Error> {
        self.0.get(at).map_err(decode)
    }
    fn opt_text(&'r self, at: usize) -> Result<Option<String>, sqlx::Error> {
        self.0.get(at).map_err(decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::ffi::c_int) -> ReadError {
        ReadError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    /// A busy or failing disk must read as "try again" (503), not as a missing session (a
    /// sign-out); only an empty result is `NotFound`.
    #[test]
    fn sqlite_not_now_results_are_unavailable_and_only_no_rows_is_not_found() {
        use rusqlite::ffi;
        for code in [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_FULL,
            ffi::SQLITE_CANTOPEN,
        ] {
            let error = StoreError::from(failure(code));
            assert!(
                matches!(error, StoreError::Unavailable(_)),
                "{code}: {error:?}"
            );
        }
        let missing = ReadError::Sqlite(rusqlite::Error::QueryReturnedNoRows);
        assert!(matches!(StoreError::from(missing), StoreError::NotFound));
        let corrupt = StoreError::from(failure(ffi::SQLITE_CORRUPT));
        assert!(matches!(corrupt, StoreError::Other(_)), "{corrupt:?}");
    }
}
