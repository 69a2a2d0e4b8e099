//! The control socket: how `courier admin …` reaches a running server. SQLite lets one process
//! write a database file, and the server holds it; so the CLI asks the server to run the
//! command instead. A Unix socket at `<data dir>/admin.sock`, mode 0600, owned by the server's
//! user: the file permissions are the credential (only that user, or root, can connect), so no
//! token is needed and nothing listens on the network. One request per connection: a JSON
//! line (`service::AdminRequest`) in, a JSON line (`{"ok": …}` or `{"error": …}`) out.

use crate::service::{Actor, Admin, AdminRequest};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Listens at `path` until `shutdown`, then removes the socket file. A socket that answers
/// belongs to a live server on the same data directory: that one keeps it.
pub async fn listen(
    path: PathBuf,
    admin: Arc<Admin>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if UnixStream::connect(&path).await.is_ok() {
        anyhow::bail!("another server answers on {}", path.display());
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket accept failed");
                        continue;
                    }
                },
            };
            let admin = admin.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &admin).await {
                    tracing::warn!(error = %e, "control socket request failed");
                }
            });
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn answer(stream: UnixStream, admin: &Admin) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<AdminRequest>(&line) {
        Err(e) => json!({ "error": format!("bad request: {e}") }),
        Ok(request) => {
            tracing::info!(?request, "admin command over the control socket");
            match admin.execute(Actor::Operator, request).await {
                Ok(value) => json!({ "ok": value }),
                Err(e) => json!({ "error": e.to_string() }),
            }
        }
    };
    let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.shutdown().await
}

/// Sends one request to the server listening at `path`. `Ok(None)` when nothing listens there.
pub async fn request(path: &Path, request: &AdminRequest) -> anyhow::Result<Option<Value>> {
    let Ok(stream) = UnixStream::connect(path).await else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    let mut bytes = serde_json::to_vec(request)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let mut reply: Value = serde_json::from_str(&line)?;
    if let Some(error) = reply.get("error").and_then(Value::as_str) {
        anyhow::bail!("{error}");
    }
    Ok(Some(reply["ok"].take()))
}
