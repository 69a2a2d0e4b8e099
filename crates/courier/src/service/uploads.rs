//! Uploads: receive a file as it streams in, decide what it really is, store it once by its
//! content, and let only the people who can read a message fetch its files.
//!
//! The order of an upload matters for clean-up. The body goes to a temporary file while it
//! is hashed and counted against the size limit and the person's quota, so an interrupted or
//! refused upload leaves nothing. Images then lose their metadata and get a thumbnail. The
//! blob row is touched before the file is stored and the upload row written after, so the
//! sweep (which removes blobs no upload names, once they have been idle for a while) never
//! takes a file an upload is adopting. Within one process a per-hash lock makes that exact;
//! across nodes sharing object storage the idle guard does.

use super::{ServiceError, ServiceResult};
use crate::model::{
    Attachment, FileKind, UploadId, UserId, clean_name, declared_type_lies, jpeg_orientation,
    name_lies, strip_metadata,
};
use crate::store::{Claimed, FileStore, MAX_ATTACHMENTS, NewUpload, Store, StoredUpload};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Thumbnails fit in this square.
const THUMBNAIL_EDGE: u32 = 320;
/// Profile pictures are this square.
pub const AVATAR_EDGE: u32 = 256;
/// Images larger than this (either side) are stored but not decoded for a thumbnail.
const MAX_DECODED_EDGE: u32 = 16_384;
/// How much of a file's start decides its type.
const SNIFF_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Most bytes one person may keep stored; 0 for no limit.
    pub quota_bytes: u64,
    /// How long an upload no message took is kept.
    pub grace: Duration,
    /// How often the sweep runs.
    pub sweep_every: Duration,
    /// Largest profile picture upload, in bytes.
    pub max_avatar_bytes: u64,
}

pub struct Uploads {
    store: Arc<dyn Store>,
    files: Arc<FileStore>,
    settings: UploadSettings,
    locks: Vec<Mutex<()>>,
}

/// Why a body stream ended early, as the API layer tells it.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// What `Uploads::receive` refuses for, beyond the service's errors.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    TooLarge(String),
    /// The body stopped arriving (client gone, or too slow); nothing was kept.
    #[error("the upload was interrupted")]
    Interrupted(#[source] BodyError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// A file to serve: what it is, and where its bytes are.
pub struct Download {
    pub attachment: Attachment,
    pub hash: String,
}

impl Uploads {
    pub fn new(store: Arc<dyn Store>, files: Arc<FileStore>, settings: UploadSettings) -> Self {
        Self {
            store,
            files,
            settings,
            locks: (0..64).map(|_| Mutex::new(())).collect(),
        }
    }

    pub fn settings(&self) -> &UploadSettings {
        &self.settings
    }

    pub fn files(&self) -> &FileStore {
        &self.files
    }

    fn lock_for(&self, hash: &str) -> &Mutex<()> {
        let slot = usize::from_str_radix(&hash[..2], 16).unwrap_or(0) % self.locks.len();
        &self.locks[slot]
    }

    /// Receives one file from `owner`. `length` is the declared body length, if any.
    pub async fn receive<S>(
        &self,
        owner: UserId,
        raw_name: &str,
        declared_type: &str,
        length: Option<u64>,
        mut body: S,
    ) -> Result<Attachment, UploadError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let max = self.settings.max_bytes;
        let too_big = || UploadError::TooLarge(format!("the file is larger than {max} bytes"));
        if length.is_some_and(|n| n > max) {
            return Err(too_big());
        }
        let room = match self.settings.quota_bytes {
            0 => u64::MAX,
            quota => {
                let used = self
                    .store
                    .upload_usage(owner)
                    .await
                    .map_err(ServiceError::from_store("upload"))?;
                quota.saturating_sub(u64::try_from(used).unwrap_or(0))
            }
        };
        let over_quota = || {
            UploadError::TooLarge(format!(
                "upload quota exceeded: you may keep at most {} bytes of files",
                self.settings.quota_bytes
            ))
        };
        if length.is_some_and(|n| n > room) {
            return Err(over_quota());
        }

        let mut temp = self.files.temp().await.map_err(internal)?;
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(UploadError::Interrupted)?;
            size += chunk.len() as u64;
            if size > max {
                return Err(too_big());
            }
            if size > room {
                return Err(over_quota());
            }
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            hasher.update(&chunk);
            temp.write(&chunk).await.map_err(internal)?;
        }
        if size == 0 {
            return Err(ServiceError::invalid("file", "the file is empty").into());
        }
        temp.finish().await.map_err(internal)?;

        let name = clean_name(raw_name);
        let kind = FileKind::sniff(&head);
        if declared_type_lies(declared_type, kind) || name_lies(&name, kind) {
            return Err(ServiceError::invalid(
                "file",
                format!(
                    "the file's name or declared type says it is an image, but its content is {}",
                    kind.mime()
                ),
            )
            .into());
        }
        let mut attachment = Attachment {
            id: UploadId::random(),
            name,
            size: i64::try_from(size).unwrap_or(i64::MAX),
            content_type: kind.mime().to_owned(),
            width: None,
            height: None,
            thumbnail: false,
        };
        let (hash, thumb) = if kind.is_image() {
            let bytes = temp.read_all().await.map_err(internal)?;
            drop(temp);
            let image = tokio::task::spawn_blocking(move || prepare_image(kind, bytes))
                .await
                .map_err(internal)??;
            let hash = hex::encode(Sha256::digest(&image.bytes));
            attachment.size = image.bytes.len() as i64;
            attachment.width = image.width;
            attachment.height = image.height;
            attachment.thumbnail = image.thumbnail.is_some();
            self.store_blob(&hash, attachment.size, Blob::Bytes(image.bytes))
                .await?;
            let thumb = match image.thumbnail {
                Some(thumb) => {
                    let thumb_hash = hex::encode(Sha256::digest(&thumb));
                    self.store_blob(&thumb_hash, thumb.len() as i64, Blob::Bytes(thumb))
                        .await?;
                    Some(thumb_hash)
                }
                None => None,
            };
            (hash, thumb)
        } else {
            let hash = hex::encode(hasher.finalize());
            self.store_blob(&hash, size as i64, Blob::File(temp))
                .await?;
            (hash, None)
        };
        let upload = NewUpload {
            attachment: attachment.clone(),
            owner,
            hash,
            thumb_hash: thumb,
        };
        self.store
            .insert_upload(&upload)
            .await
            .map_err(ServiceError::from_store("upload"))?;
        Ok(attachment)
    }

    /// Receives a profile picture: an image (JPEG, PNG, GIF or WebP, by its content) of at
    /// most `max_avatar_bytes`, cropped to its centred square, scaled to `AVATAR_EDGE` and
    /// re-encoded as a JPEG (so nothing of the original's metadata survives), then stored by
    /// its hash. Returns that hash. Nothing is stored when it is refused.
    pub async fn receive_avatar<S>(
        &self,
        length: Option<u64>,
        mut body: S,
    ) -> Result<String, UploadError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let max = self.settings.max_avatar_bytes;
        let too_big = || UploadError::TooLarge(format!("the picture is larger than {max} bytes"));
        if length.is_some_and(|n| n > max) {
            return Err(too_big());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(UploadError::Interrupted)?;
            if (bytes.len() + chunk.len()) as u64 > max {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        let kind = FileKind::sniff(&bytes[..bytes.len().min(SNIFF_BYTES)]);
        if !kind.is_image() {
            return Err(ServiceError::invalid(
                "avatar",
                format!(
                    "a picture must be a JPEG, PNG, GIF or WebP image, not {}",
                    kind.mime()
                ),
            )
            .into());
        }
        let jpeg = tokio::task::spawn_blocking(move || prepare_avatar(kind, bytes))
            .await
            .map_err(internal)??;
        let hash = hex::encode(Sha256::digest(&jpeg));
        self.store_blob(&hash, jpeg.len() as i64, Blob::Bytes(jpeg))
            .await?;
        Ok(hash)
    }

    /// Marks the blob used, then stores its bytes (again, if another upload had them: a
    /// rename or put of identical content changes nothing a reader can see).
    async fn store_blob(&self, hash: &str, size: i64, blob: Blob) -> Result<(), UploadError> {
        let _held = self.lock_for(hash).lock().await;
        self.store
            .touch_blob(hash, size)
            .await
            .map_err(ServiceError::from_store("upload"))?;
        match blob {
            Blob::Bytes(bytes) => self.files.put_bytes(hash, bytes).await,
            Blob::File(temp) => self.files.put_file(hash, temp).await,
        }
        .map_err(internal)?;
        Ok(())
    }

    /// The file `viewer` asks for: their own upload, or one attached to a message they may
    /// read now (membership and history rules, asked of the store on every request).
    /// `NotFound` for everything else, so a stranger learns nothing.
    pub async fn open(&self, viewer: UserId, id: &str, thumbnail: bool) -> ServiceResult<Download> {
        let not_found = || ServiceError::NotFound("upload");
        let id = UploadId::parse(id).ok_or_else(not_found)?;
        let StoredUpload {
            attachment,
            owner,
            hash,
            thumb_hash,
            message,
        } = self
            .store
            .upload(&id)
            .await
            .map_err(ServiceError::from_store("upload"))?
            .ok_or_else(not_found)?;
        if owner != viewer {
            let (conversation, message) = message.ok_or_else(not_found)?;
            self.store
                .message(viewer, conversation, message)
                .await
                .map_err(ServiceError::from_store("upload"))?;
        }
        let hash = if thumbnail {
            thumb_hash.ok_or_else(not_found)?
        } else {
            hash
        };
        Ok(Download { attachment, hash })
    }

    /// Claims the uploads a send names, under a fresh token; the store's writer attaches them
    /// in the send's transaction. An id that is unknown, someone else's, or already used by
    /// another message is refused, and nothing stays claimed.
    pub async fn claim(
        &self,
        sender: UserId,
        raw_ids: &[String],
        idempotency_key: Option<&str>,
    ) -> ServiceResult<Option<String>> {
        if raw_ids.is_empty() {
            return Ok(None);
        }
        if raw_ids.len() > MAX_ATTACHMENTS {
            return Err(ServiceError::invalid(
                "attachments",
                format!("at most {MAX_ATTACHMENTS} files per message"),
            ));
        }
        let mut ids = Vec::with_capacity(raw_ids.len());
        for raw in raw_ids {
            let id = UploadId::parse(raw).ok_or_else(|| {
                ServiceError::invalid("attachments", format!("unknown upload: {raw}"))
            })?;
            if ids.contains(&id) {
                return Err(ServiceError::invalid(
                    "attachments",
                    format!("upload {raw} is listed twice"),
                ));
            }
            ids.push(id);
        }
        // A retried send (same idempotency key) finds its uploads under the same token.
        let claim = match idempotency_key {
            Some(key) => format!(
                "key:{}",
                hex::encode(Sha256::digest(format!("{}:{key}", sender.0)))
            ),
            None => format!("once:{}", UploadId::random()),
        };
        let states = self
            .store
            .claim_uploads(sender, &ids, &claim)
            .await
            .map_err(ServiceError::from_store("upload"))?;
        let refusal = ids.iter().zip(&states).find_map(|(id, state)| match state {
            Claimed::Ours => None,
            Claimed::Unknown => Some(format!("unknown upload: {id}")),
            Claimed::Taken => Some(format!("upload {id} is already attached to a message")),
        });
        if let Some(message) = refusal {
            self.release(&claim).await;
            return Err(ServiceError::invalid("attachments", message));
        }
        Ok(Some(claim))
    }

    /// Frees what a failed send claimed.
    pub async fn release(&self, claim: &str) {
        if let Err(e) = self.store.release_claim(claim).await {
            tracing::warn!(error = %e, "could not release claimed uploads; the sweep will");
        }
    }

    /// Deletes uploads no message took within the grace period, then every blob no upload
    /// names; returns how many files went.
    pub async fn sweep(&self) -> ServiceResult<u64> {
        let now = chrono::Utc::now().timestamp_millis();
        let grace = i64::try_from(self.settings.grace.as_millis()).unwrap_or(i64::MAX);
        let expired = self
            .store
            .expire_uploads(now.saturating_sub(grace))
            .await
            .map_err(ServiceError::from_store("upload"))?;
        if expired > 0 {
            tracing::info!(uploads = expired, "expired uploads no message took");
        }
        // A blob is adopted by touching it first; one idle this long is nobody's.
        let idle = grace.min(60_000);
        let mut removed = 0;
        loop {
            let orphans = self
                .store
                .orphan_blobs(now.saturating_sub(idle), 256)
                .await
                .map_err(ServiceError::from_store("upload"))?;
            if orphans.is_empty() {
                return Ok(removed);
            }
            let mut progressed = false;
            for hash in &orphans {
                let _held = self.lock_for(hash).lock().await;
                let dropped = self
                    .store
                    .drop_blob(hash, now.saturating_sub(idle))
                    .await
                    .map_err(ServiceError::from_store("upload"))?;
                if dropped {
                    progressed = true;
                    removed += 1;
                    if let Err(e) = self.files.delete(hash).await {
                        tracing::warn!(error = %e, "could not remove an unused file");
                    }
                }
            }
            if !progressed {
                return Ok(removed);
            }
        }
    }

    /// Sweeps every `sweep_every` until shutdown.
    pub fn spawn_sweeper(self: &Arc<Self>, shutdown: CancellationToken) {
        let uploads = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(uploads.settings.sweep_every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => if let Err(e) = uploads.sweep().await {
                        tracing::warn!(error = %e, "upload sweep failed; will retry");
                    },
                }
            }
        });
    }
}

enum Blob {
    Bytes(Vec<u8>),
    File(crate::store::TempUpload),
}

struct PreparedImage {
    bytes: Vec<u8>,
    width: Option<i64>,
    height: Option<i64>,
    thumbnail: Option<Vec<u8>>,
}

/// Strips the metadata, reads the size and makes a JPEG thumbnail (transparency over white).
/// A file that claims an image signature but does not decode is refused.
fn prepare_image(kind: FileKind, bytes: Vec<u8>) -> Result<PreparedImage, UploadError> {
    let unreadable = || {
        UploadError::Service(ServiceError::invalid(
            "file",
            format!("the file is not a readable {} image", kind.mime()),
        ))
    };
    let stripped = strip_metadata(kind, &bytes).ok_or_else(unreadable)?;
    drop(bytes);
    let format = image_format(kind);
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(&stripped), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODED_EDGE);
    limits.max_image_height = Some(MAX_DECODED_EDGE);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    let (mut width, mut height) = reader.into_dimensions().map_err(|_| unreadable())?;
    // Shown turned a quarter (EXIF 5–8): people see it, and its thumbnail, the other way round.
    let orientation = match kind {
        FileKind::Jpeg => jpeg_orientation(&stripped).unwrap_or(1),
        _ => 1,
    };
    if (5..=8).contains(&orientation) {
        std::mem::swap(&mut width, &mut height);
    }
    let thumbnail = match decode(format, &stripped, orientation) {
        Ok(decoded) => Some(thumbnail_jpeg(&decoded).map_err(|_| unreadable())?),
        // Too large to decode here: stored and shown without a thumbnail.
        Err(image::ImageError::Limits(_)) => None,
        Err(_) => return Err(unreadable()),
    };
    Ok(PreparedImage {
        bytes: stripped,
        width: Some(i64::from(width)),
        height: Some(i64::from(height)),
        thumbnail,
    })
}

fn image_format(kind: FileKind) -> image::ImageFormat {
    match kind {
        FileKind::Jpeg => image::ImageFormat::Jpeg,
        FileKind::Png => image::ImageFormat::Png,
        FileKind::Gif => image::ImageFormat::Gif,
        _ => image::ImageFormat::WebP,
    }
}

/// Decodes stripped image bytes within the size limits, turned upright (EXIF orientation).
fn decode(
    format: image::ImageFormat,
    stripped: &[u8],
    orientation: u16,
) -> image::ImageResult<image::DynamicImage> {
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(stripped), format);
    reader.limits({
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_DECODED_EDGE);
        limits.max_image_height = Some(MAX_DECODED_EDGE);
        limits.max_alloc = Some(512 * 1024 * 1024);
        limits
    });
    let mut decoded = reader.decode()?;
    if let Some(o) = image::metadata::Orientation::from_exif(orientation as u8) {
        decoded.apply_orientation(o);
    }
    Ok(decoded)
}

/// A profile picture: the centred square of the upright image, `AVATAR_EDGE` on a side, as
/// a JPEG written afresh (no metadata of the original reaches it).
fn prepare_avatar(kind: FileKind, bytes: Vec<u8>) -> Result<Vec<u8>, UploadError> {
    let unreadable = || {
        UploadError::Service(ServiceError::invalid(
            "avatar",
            format!("the file is not a readable {} image", kind.mime()),
        ))
    };
    let stripped = strip_metadata(kind, &bytes).ok_or_else(unreadable)?;
    drop(bytes);
    let orientation = match kind {
        FileKind::Jpeg => jpeg_orientation(&stripped).unwrap_or(1),
        _ => 1,
    };
    let decoded = decode(image_format(kind), &stripped, orientation).map_err(|_| unreadable())?;
    let side = decoded.width().min(decoded.height());
    let square = decoded.crop_imm(
        (decoded.width() - side) / 2,
        (decoded.height() - side) / 2,
        side,
        side,
    );
    let edge = AVATAR_EDGE.min(side);
    let small = square.resize_exact(edge, edge, image::imageops::FilterType::Lanczos3);
    jpeg_over_white(&small).map_err(|_| unreadable())
}

fn thumbnail_jpeg(image: &image::DynamicImage) -> image::ImageResult<Vec<u8>> {
    jpeg_over_white(&image.thumbnail(THUMBNAIL_EDGE, THUMBNAIL_EDGE))
}

/// A JPEG of `image`, transparency laid over white.
fn jpeg_over_white(image: &image::DynamicImage) -> image::ImageResult<Vec<u8>> {
    let small = image.to_rgba8();
    let mut rgb = image::RgbImage::new(small.width(), small.height());
    for (x, y, p) in small.enumerate_pixels() {
        let [r, g, b, a] = p.0;
        let over_white =
            |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        rgb.put_pixel(
            x,
            y,
            image::Rgb([over_white(r), over_white(g), over_white(b)]),
        );
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&rgb)?;
    Ok(out)
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> UploadError {
    UploadError::Service(ServiceError::Internal(Box::new(e)))
}
