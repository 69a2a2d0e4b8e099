//! Where uploaded bytes live, by content hash: a directory tree under the data directory by
//! default, or S3-compatible object storage (through `object_store`) for a cluster, where
//! every node must reach every file.
//!
//! An upload is first written to a temporary file under the data directory, whatever the
//! backend: the bytes are hashed and checked as they arrive, and a client that goes away
//! mid-body leaves nothing (the temporary file is removed when its guard drops). Only
//! complete, checked content is stored under its hash: on disk by fsync and rename, so a
//! reader never sees half a file; in object storage by one put (multipart for large files),
//! which becomes visible only when complete.

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

pub struct FileStore {
    temp: PathBuf,
    backend: Backend,
}

enum Backend {
    Local(PathBuf),
    Object(Arc<dyn ObjectStore>),
}

/// A file being received; removed on drop unless stored.
pub struct TempUpload {
    path: tempfile::TempPath,
    file: tokio::fs::File,
}

impl TempUpload {
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file.write_all(chunk).await
    }

    /// Flushes the bytes to disk: what is stored next is what was received.
    pub async fn finish(&mut self) -> io::Result<()> {
        self.file.flush().await?;
        self.file.sync_all().await
    }

    pub async fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.file.seek(io::SeekFrom::Start(0)).await?;
        self.file.read_to_end(&mut bytes).await?;
        Ok(bytes)
    }
}

impl FileStore {
    /// Files under `data_dir/uploads`.
    pub fn local(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.join("uploads");
        std::fs::create_dir_all(root.join("blobs"))?;
        Ok(Self {
            temp: temp_dir(data_dir)?,
            backend: Backend::Local(root.join("blobs")),
        })
    }

    /// Objects in the bucket of an `s3://bucket[/prefix]` URL. Endpoint, region and
    /// credentials come from the usual `AWS_*` environment variables (`AWS_ENDPOINT`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`).
    /// `options` are `key=value` pairs of `AmazonS3ConfigKey`, applied over the environment.
    pub fn object_store(url: &str, options: &[String], data_dir: &Path) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        if parsed.scheme() != "s3" {
            return Err(format!("{url}: only s3:// object stores are supported"));
        }
        let bucket = parsed
            .host_str()
            .ok_or_else(|| format!("{url}: no bucket"))?;
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        for option in options {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| format!("object store option {option:?} is not key=value"))?;
            let key = key
                .trim()
                .parse::<object_store::aws::AmazonS3ConfigKey>()
                .map_err(|e| e.to_string())?;
            builder = builder.with_config(key, value.trim());
        }
        let store = builder.build().map_err(|e| e.to_string())?;
        let prefix = parsed.path().trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
        };
        Ok(Self {
            temp: temp_dir(data_dir).map_err(|e| e.to_string())?,
            backend: Backend::Object(store),
        })
    }

    /// A new temporary file for an upload on its way in.
    pub async fn temp(&self) -> io::Result<TempUpload> {
        let dir = self.temp.clone();
        let (file, path) = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix("upload-")
                .tempfile_in(dir)
                .map(|f| f.into_parts())
        })
        .await
        .map_err(io::Error::other)??;
        Ok(TempUpload {
            path,
            file: tokio::fs::File::from_std(file),
        })
    }

    /// Stores a received file under its hash (replacing an identical copy, if any).
    pub async fn put_file(&self, hash: &str, temp: TempUpload) -> io::Result<()> {
        match &self.backend {
            Backend::Local(root) => {
                let target = local_path(root, hash);
                let TempUpload { path, file } = temp;
                drop(file);
                tokio::task::spawn_blocking(move || persist(path, &target))
                    .await
                    .map_err(io::Error::other)?
            }
            Backend::Object(store) => {
                let TempUpload { path, mut file } = temp;
                file.seek(io::SeekFrom::Start(0)).await?;
                let mut writer =
                    object_store::buffered::BufWriter::new(store.clone(), object_path(hash));
                tokio::io::copy(&mut file, &mut writer).await?;
                writer.shutdown().await?;
                drop(path);
                Ok(())
            }
        }
    }

    /// Stores bytes made here (a stripped image, a thumbnail) under their hash.
    pub async fn put_bytes(&self, hash: &str, bytes: Vec<u8>) -> io::Result<()> {
        match &self.backend {
            Backend::Local(_) => {
                let mut temp = self.temp().await?;
                temp.write(&bytes).await?;
                temp.finish().await?;
                self.put_file(hash, temp).await
            }
            Backend::Object(store) => {
                store
                    .put(&object_path(hash), bytes.into())
                    .await
                    .map_err(io::Error::other)?;
                Ok(())
            }
        }
    }

    /// The bytes `range` (start, end exclusive) of a stored file, or all of it.
    pub async fn read(
        &self,
        hash: &str,
        range: Option<(u64, u64)>,
    ) -> io::Result<BoxStream<'static, io::Result<Bytes>>> {
        match &self.backend {
            Backend::Local(root) => {
                let mut file = tokio::fs::File::open(local_path(root, hash)).await?;
                let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match range {
                    Some((start, end)) => {
                        file.seek(io::SeekFrom::Start(start)).await?;
                        Box::new(file.take(end - start))
                    }
                    None => Box::new(file),
                };
                Ok(tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024).boxed())
            }
            Backend::Object(store) => {
                let options = object_store::GetOptions {
                    range: range.map(|(start, end)| (start..end).into()),
                    ..Default::default()
                };
                let got = store
                    .get_opts(&object_path(hash), options)
                    .await
                    .map_err(io::Error::other)?;
                Ok(got.into_stream().map_err(io::Error::other).boxed())
            }
        }
    }

    pub async fn exists(&self, hash: &str) -> io::Result<bool> {
        match &self.backend {
            Backend::Local(root) => tokio::fs::try_exists(local_path(root, hash)).await,
            Backend::Object(store) => match store.head(&object_path(hash)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(io::Error::other(e)),
            },
        }
    }

    /// Removes a stored file; one already gone is not an error.
    pub async fn delete(&self, hash: &str) -> io::Result<()> {
        match &self.backend {
            Backend::Local(root) => match tokio::fs::remove_file(local_path(root, hash)).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Backend::Object(store) => match store.delete(&object_path(hash)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(io::Error::other(e)),
            },
        }
    }
}

/// `data_dir/uploads/tmp`, emptied of what a crash left behind.
fn temp_dir(data_dir: &Path) -> io::Result<PathBuf> {
    let dir = data_dir.join("uploads").join("tmp");
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(&dir)?.flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    Ok(dir)
}

/// `root/ab/abcdef…`: at most 256 entries in the top directory.
fn local_path(root: &Path, hash: &str) -> PathBuf {
    root.join(&hash[..2]).join(hash)
}

fn object_path(hash: &str) -> ObjectPath {
    ObjectPath::from(format!("blobs/{}/{hash}", &hash[..2]))
}

/// Renames a synced temporary file into place, then syncs the directory so the new name
/// survives a crash too.
fn persist(path: tempfile::TempPath, target: &Path) -> io::Result<()> {
    let dir = target.parent().expect("a blob path has a parent");
    std::fs::create_dir_all(dir)?;
    path.persist(target).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
