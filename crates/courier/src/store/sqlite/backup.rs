//! Online backup and restore of a SQLite database (`courier backup`, `courier restore`).
//!
//! **Backup while serving.** The server holds the file's `.lock` (one server per file), but
//! that lock is advisory and only servers take it. The backup opens the database *read-only*
//! beside the server and runs `VACUUM INTO`: one read transaction, so in WAL mode it copies a
//! consistent snapshot (every commit before it began, none after) and never blocks the writer;
//! the server's next commits simply go on into the WAL. The copy is written under a temporary
//! name, checked with `PRAGMA integrity_check`, synced, and only then renamed into place.
//!
//! **Restore.** Only with no server on the file: restore takes the same `.lock` a server takes,
//! so it fails while one runs and no server can start until it is done. The file is checked
//! first (integrity, a Courier schema, not from a newer Courier), the current database and its
//! WAL are kept aside under a `.before-restore-<time>` name, and the copy is synced and renamed
//! into place.

use anyhow::{Context, bail};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};
use std::path::{Path, PathBuf};

/// What a checked backup holds.
#[derive(Debug)]
pub struct BackupSummary {
    pub schema_version: i64,
    pub users: i64,
    pub conversations: i64,
    pub messages: i64,
}

/// Copies the database at `db` to `out` (which must not exist), consistently, while a server
/// may be writing to it.
pub async fn backup(db: &Path, out: &Path) -> anyhow::Result<BackupSummary> {
    if !db.is_file() {
        bail!("no database at {}", db.display());
    }
    if out.exists() {
        bail!("{} already exists; choose a new file", out.display());
    }
    let partial = with_suffix(out, ".partial");
    let _ = std::fs::remove_file(&partial);
    let mut conn = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(db)
            .read_only(true)
            .busy_timeout(std::time::Duration::from_secs(30)),
    )
    .await
    .with_context(|| format!("opening {} read-only", db.display()))?;
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(partial.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await
        .with_context(|| format!("copying into {}", partial.display()));
    conn.close().await.ok();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let summary = match check(&partial).await {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.context("the copy failed its check"));
        }
    };
    sync_file(&partial)?;
    std::fs::rename(&partial, out)
        .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
    sync_parent(out)?;
    Ok(summary)
}

/// Puts the backup `file` in place of the database at `db`, which no server may be using.
/// Returns where the previous database was kept, if there was one.
pub async fn restore(file: &Path, db: &Path) -> anyhow::Result<(BackupSummary, Option<PathBuf>)> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Held until the end: no server starts on a half-restored file.
    let _lock = super::lock_database(db).map_err(|e| match std::error::Error::source(&e) {
        Some(why) => anyhow::anyhow!("{why}; stop the server before restoring"),
        None => anyhow::anyhow!("{e}"),
    })?;
    let summary = check(file)
        .await
        .with_context(|| format!("{} is not a usable Courier backup", file.display()))?;
    let incoming = with_suffix(db, ".restoring");
    std::fs::copy(file, &incoming)
        .with_context(|| format!("copying {} to {}", file.display(), incoming.display()))?;
    sync_file(&incoming)?;
    let kept = if db.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let aside = with_suffix(db, &format!(".before-restore-{stamp}"));
        // The WAL may hold the newest commits: it moves with its database.
        for extra in ["-wal", "-shm"] {
            let from = with_suffix(db, extra);
            if from.exists() {
                std::fs::rename(&from, with_suffix(&aside, extra))
                    .with_context(|| format!("keeping {} aside", from.display()))?;
            }
        }
        std::fs::rename(db, &aside).with_context(|| format!("keeping {} aside", db.display()))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&incoming, db)
        .with_context(|| format!("renaming {} to {}", incoming.display(), db.display()))?;
    sync_parent(db)?;
    Ok((summary, kept))
}

/// Checks that `file` is an intact Courier database that this build can open.
pub async fn check(file: &Path) -> anyhow::Result<BackupSummary> {
    let mut conn = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(file)
            .read_only(true)
            .immutable(true),
    )
    .await
    .with_context(|| format!("opening {}", file.display()))?;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .context("not a SQLite database")?;
    if integrity != "ok" {
        bail!("integrity check failed: {integrity}");
    }
    let schema_version: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut conn)
            .await
            .context("no Courier schema (no migration table)")?;
    let known = sqlx::migrate!("./migrations/sqlite")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    if schema_version > known {
        bail!("made by a newer Courier (schema {schema_version}; this build knows up to {known})");
    }
    let counts = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM conversations), \
         (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM meta WHERE key = 'instance')",
    )
    .fetch_one(&mut conn)
    .await
    .context("no Courier tables")?;
    if counts.get::<i64, _>(3) != 1 {
        bail!("no Courier instance id");
    }
    conn.close().await.ok();
    Ok(BackupSummary {
        schema_version,
        users: counts.get(0),
        conversations: counts.get(1),
        messages: counts.get(2),
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn sync_file(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", path.display()))
}

/// Makes a rename in the directory durable.
fn sync_parent(path: &Path) -> anyhow::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => sync_file(dir),
        None => sync_file(Path::new(".")),
    }
}
