//! The operator's subcommands that work on a database rather than serve it: `courier backup`
//! and `courier restore` (SQLite; PostgreSQL has pg_dump and pg_restore, see docs/deploy.md).
//! The work itself is `store::sqlite::backup`; this is the command-line face of it.

use crate::config::{BackupArgs, DatabaseArgs, RestoreArgs};
use crate::store::sqlite::backup;
use std::path::PathBuf;

pub async fn backup(args: &BackupArgs) -> anyhow::Result<()> {
    let db = sqlite_path(&args.database)?;
    let summary = backup::backup(&db, &args.out).await?;
    println!(
        "backed up {} to {} (schema {}, {} users, {} conversations, {} messages)",
        db.display(),
        args.out.display(),
        summary.schema_version,
        summary.users,
        summary.conversations,
        summary.messages
    );
    Ok(())
}

pub async fn restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let db = sqlite_path(&args.database)?;
    let (summary, kept) = backup::restore(&args.file, &db).await?;
    println!(
        "restored {} to {} (schema {}, {} users, {} conversations, {} messages)",
        args.file.display(),
        db.display(),
        summary.schema_version,
        summary.users,
        summary.conversations,
        summary.messages
    );
    if let Some(kept) = kept {
        println!("the previous database is kept as {}", kept.display());
    }
    Ok(())
}

fn sqlite_path(database: &DatabaseArgs) -> anyhow::Result<PathBuf> {
    database.sqlite_path().map_err(anyhow::Error::msg)
}
