//! Uploaded files as messages carry them, and the checks that need no I/O: what a file really
//! is (from its first bytes, never from its name or declared type), a safe display name, and
//! lossless removal of the metadata (EXIF, XMP, comments, text chunks) that photos carry.
//!
//! Metadata is cut out of the container rather than the image decoded and encoded again: the
//! pixels people sent stay exactly as they were, and nothing is lost to a second compression.

use std::fmt;

/// A file attached to a message, as every member who can read the message sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub id: UploadId,
    pub name: String,
    pub size: i64,
    /// Detected from the content.
    pub content_type: String,
    /// Pixels, for images.
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// Whether `GET /api/uploads/{id}/thumbnail` has a smaller rendition.
    pub thumbnail: bool,
}

impl Attachment {
    pub fn is_image(&self) -> bool {
        Kind::of_mime(&self.content_type).is_some_and(Kind::is_image)
    }
}

/// An upload's id: 128 random bits as 32 lowercase hex digits. Knowing one grants nothing
/// (every download checks who asks), but it also reveals nothing.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct UploadId(String);

impl UploadId {
    pub fn random() -> Self {
        Self(format!("{:032x}", rand::random::<u128>()))
    }

    /// `None` unless `s` has the shape of an upload id.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the content of a file is, as far as Courier cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    Gif,
    Webp,
    /// Any other recognised type, by its MIME type.
    Other(&'static str),
    /// Bytes that match no known signature: served as `application/octet-stream`.
    Unknown,
}

impl Kind {
    /// Sniffs the first bytes of a file (a few KB are plenty).
    pub fn sniff(head: &[u8]) -> Self {
        match infer::get(head) {
            Some(t) => match t.mime_type() {
                "image/jpeg" => Self::Jpeg,
                "image/png" => Self::Png,
                "image/gif" => Self::Gif,
                "image/webp" => Self::Webp,
                other => Self::Other(other),
            },
            None if looks_like_text(head) => Self::Other("text/plain"),
            None => Self::Unknown,
        }
    }

    fn of_mime(mime: &str) -> Option<Self> {
        match mime {
            "image/jpeg" => Some(Self::Jpeg),
            "image/png" => Some(Self::Png),
            "image/gif" => Some(Self::Gif),
            "image/webp" => Some(Self::Webp),
            _ => None,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
            Self::Other(mime) => mime,
            Self::Unknown => "application/octet-stream",
        }
    }

    /// The image types Courier shows inline, thumbnails and strips of metadata.
    pub fn is_image(self) -> bool {
        matches!(self, Self::Jpeg | Self::Png | Self::Gif | Self::Webp)
    }
}

/// Whether a declared type contradicts the content: an upload that says it is an image but is
/// not one (or is another image type) lies about itself. Declared types other than images are
/// not trusted for anything, so they cannot lie in a way that matters.
pub fn declared_type_lies(declared: &str, actual: Kind) -> bool {
    let declared = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let declared = if declared == "image/jpg" {
        "image/jpeg".to_owned()
    } else {
        declared
    };
    declared.starts_with("image/") && declared != actual.mime()
}

/// Whether a file's name promises an image type its content is not (`cat.png` holding text).
pub fn name_lies(name: &str, actual: Kind) -> bool {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let named = match ext.as_str() {
        "jpg" | "jpeg" | "jfif" => Kind::Jpeg,
        "png" => Kind::Png,
        "gif" => Kind::Gif,
        "webp" => Kind::Webp,
        _ => return false,
    };
    named != actual
}

fn looks_like_text(head: &[u8]) -> bool {
    !head.is_empty()
        && match std::str::from_utf8(head) {
            Ok(s) => !s.chars().any(|c| c.is_control() && !c.is_whitespace()),
            // A multi-byte character cut off by the end of the sniffed head is still text.
            Err(e) => e.error_len().is_none() && looks_like_text(&head[..e.valid_up_to()]),
        }
}

/// Longest file name kept, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A file name safe to show and to put in `Content-Disposition`: no path, no control
/// characters, at most `MAX_NAME_CHARS`; `file` when nothing is left.
pub fn clean_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    if cleaned.is_empty() {
        "file".to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// The image without its metadata, or `None` when the container is malformed (then it is
/// not served as an image at all). Kinds other than images come back unchanged.
pub fn strip_metadata(kind: Kind, bytes: &[u8]) -> Option<Vec<u8>> {
    match kind {
        Kind::Jpeg => strip_jpeg(bytes),
        Kind::Png => strip_png(bytes),
        Kind::Webp => strip_webp(bytes),
        Kind::Gif => strip_gif(bytes),
        Kind::Other(_) | Kind::Unknown => Some(bytes.to_vec()),
    }
}

/// Drops APP1–APP15 (EXIF, XMP, IPTC, maker notes) except an ICC profile in APP2 and Adobe's
/// colour transform in APP14, and every COM segment. Everything from the start of scan on is
/// kept as it is. A camera's orientation is not private and without it a phone's photo shows
/// sideways, so a rotated photo keeps a minimal EXIF segment holding only that.
fn strip_jpeg(b: &[u8]) -> Option<Vec<u8>> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..2]);
    if let Some(orientation) = jpeg_orientation(b).filter(|o| (2..=8).contains(o)) {
        out.extend_from_slice(&orientation_segment(orientation));
    }
    let mut at = 2;
    loop {
        // Fill bytes (0xFF repeated) may precede a marker.
        while b.get(at) == Some(&0xFF) && b.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if *b.get(at)? != 0xFF {
            return None;
        }
        let marker = *b.get(at + 1)?;
        if marker == 0xD9 {
            out.extend_from_slice(&b[at..at + 2]);
            return Some(out);
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            out.extend_from_slice(&b[at..at + 2]);
            at += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([*b.get(at + 2)?, *b.get(at + 3)?]));
        if len < 2 {
            return None;
        }
        let end = at + 2 + len;
        let segment = b.get(at..end)?;
        if marker == 0xDA {
            out.extend_from_slice(&b[at..]);
            return Some(out);
        }
        let payload = &segment[4..];
        let keep = match marker {
            0xE0 => true,
            0xE2 => payload.starts_with(b"ICC_PROFILE\0"),
            0xEE => payload.starts_with(b"Adobe"),
            0xE1..=0xEF | 0xFE => false,
            _ => true,
        };
        if keep {
            out.extend_from_slice(segment);
        }
        at = end;
    }
}

/// The EXIF orientation (1–8) of a JPEG, if its APP1 segment has one.
pub fn jpeg_orientation(b: &[u8]) -> Option<u16> {
    let mut at = 2;
    while at + 4 <= b.len() && b[at] == 0xFF {
        let marker = b[at + 1];
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([b[at + 2], b[at + 3]]));
        let payload = b.get(at + 4..at + 2 + len)?;
        if marker == 0xE1 && payload.starts_with(b"Exif\0\0") {
            return tiff_orientation(&payload[6..]);
        }
        at += 2 + len;
    }
    None
}

fn tiff_orientation(t: &[u8]) -> Option<u16> {
    let big = match t.get(..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let u16_at = |i: usize| {
        let b: [u8; 2] = t.get(i..i + 2)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |i: usize| {
        let b: [u8; 4] = t.get(i..i + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = usize::from(u16_at(ifd)?);
    (0..count.min(512)).find_map(|i| {
        let entry = ifd + 2 + i * 12;
        (u16_at(entry)? == 0x0112).then(|| u16_at(entry + 8))?
    })
}

/// An APP1 segment with an EXIF block holding only the orientation tag.
fn orientation_segment(orientation: u16) -> Vec<u8> {
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    exif.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]);
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    segment.extend_from_slice(&exif);
    segment
}

/// Drops text chunks (`tEXt`, `zTXt`, `iTXt`), `eXIf` and `tIME`.
fn strip_png(b: &[u8]) -> Option<Vec<u8>> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !b.starts_with(SIGNATURE) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(SIGNATURE);
    let mut at = SIGNATURE.len();
    while at < b.len() {
        let len = u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
        let end = at.checked_add(12)?.checked_add(len)?;
        let chunk = b.get(at..end)?;
        let kind = &chunk[4..8];
        if !matches!(kind, b"tEXt" | b"zTXt" | b"iTXt" | b"eXIf" | b"tIME") {
            out.extend_from_slice(chunk);
        }
        at = end;
        if kind == b"IEND" {
            return Some(out);
        }
    }
    None
}

/// Drops the `EXIF` and `XMP ` chunks and clears their flags in `VP8X`.
fn strip_webp(b: &[u8]) -> Option<Vec<u8>> {
    if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WEBP" {
        return None;
    }
    let mut body = Vec::with_capacity(b.len());
    let mut at = 12;
    while at + 8 <= b.len() {
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().ok()?) as usize;
        let end = (at + 8).checked_add(len + (len & 1))?.min(b.len());
        let chunk = b.get(at..end)?;
        match &chunk[..4] {
            b"EXIF" | b"XMP " => {}
            b"VP8X" if chunk.len() > 8 => {
                let mut chunk = chunk.to_vec();
                chunk[8] &= !(0x08 | 0x04);
                body.extend_from_slice(&chunk);
            }
            _ => body.extend_from_slice(chunk),
        }
        at = end;
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&u32::try_from(body.len() + 4).ok()?.to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&body);
    Some(out)
}

/// Drops comment extensions and application extensions other than the animation loop
/// (`NETSCAPE2.0`, `ANIMEXTS1.0`): XMP travels in the latter.
fn strip_gif(b: &[u8]) -> Option<Vec<u8>> {
    if b.len() < 13 || !(b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")) {
        return None;
    }
    let table = |packed: u8| {
        if packed & 0x80 != 0 {
            3 << ((packed & 0x07) + 1)
        } else {
            0
        }
    };
    // Sub-blocks from `at` through their zero terminator; returns the index after it.
    let sub_blocks = |mut at: usize| -> Option<usize> {
        loop {
            let len = usize::from(*b.get(at)?);
            at += 1 + len;
            if len == 0 {
                return Some(at);
            }
        }
    };
    let mut at = 13 + table(b[10]);
    let mut out = b.get(..at)?.to_vec();
    loop {
        match *b.get(at)? {
            0x3B => {
                out.push(0x3B);
                return Some(out);
            }
            0x2C => {
                let descriptor = b.get(at..at + 10)?;
                let data = at + 10 + table(descriptor[9]) + 1;
                let end = sub_blocks(data)?;
                out.extend_from_slice(b.get(at..end)?);
                at = end;
            }
            0x21 => {
                let label = *b.get(at + 1)?;
                let end = sub_blocks(at + 2)?;
                let keep = match label {
                    0xFE => false,
                    0xFF => {
                        let id = b.get(at + 3..at + 14)?;
                        id == b"NETSCAPE2.0" || id == b"ANIMEXTS1.0"
                    }
                    _ => true,
                };
                if keep {
                    out.extend_from_slice(b.get(at..end)?);
                }
                at = end;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_32_hex_digits() {
        let id = UploadId::random();
        assert_eq!(UploadId::parse(id.as_str()), Some(id));
        for bad in ["", "abc", &"g".repeat(32), &"A".repeat(32), &"0".repeat(33)] {
            assert_eq!(UploadId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sniffing_ignores_names_and_finds_text() {
        assert_eq!(Kind::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Kind::Png);
        assert_eq!(
            Kind::sniff("héllo wörld\n".as_bytes()),
            Kind::Other("text/plain")
        );
        assert_eq!(Kind::sniff(&[0, 1, 2, 3, 255]), Kind::Unknown);
        assert!(declared_type_lies("image/png", Kind::Other("text/plain")));
        assert!(!declared_type_lies("image/jpg", Kind::Jpeg));
        assert!(!declared_type_lies(
            "application/pdf",
            Kind::Other("text/plain")
        ));
        assert!(name_lies("cat.PNG", Kind::Other("text/plain")));
        assert!(!name_lies("notes.txt", Kind::Png));
    }

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\Users\\me\\a\u{0}b.txt"), "ab.txt");
        assert_eq!(clean_name("..."), "file");
        assert_eq!(clean_name(&"x".repeat(500)).chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn jpeg_loses_exif_and_comments_but_keeps_the_scan() {
        let mut jpeg = vec![0xFF, 0xD8];
        jpeg.extend_from_slice(&[0xFF, 0xE0, 0, 4, b'J', b'F']);
        jpeg.extend_from_slice(&[0xFF, 0xE1, 0, 8, b'E', b'x', b'i', b'f', 0, 0]);
        jpeg.extend_from_slice(&[0xFF, 0xFE, 0, 4, b'h', b'i']);
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0, 2, 1, 2, 3, 0xFF, 0xD9]);
        let stripped = strip_metadata(Kind::Jpeg, &jpeg).unwrap();
        assert_eq!(
            stripped,
            [
                0xFF, 0xD8, 0xFF, 0xE0, 0, 4, b'J', b'F', 0xFF, 0xDA, 0, 2, 1, 2, 3, 0xFF, 0xD9
            ]
        );
        assert_eq!(strip_metadata(Kind::Jpeg, b"not a jpeg"), None);
    }

    #[test]
    fn a_rotated_photo_keeps_only_its_orientation() {
        let mut exif = b"Exif\0\0II\x2a\0\x08\0\0\0\x02\0".to_vec();
        exif.extend_from_slice(&[0x10, 0x01, 2, 0, 6, 0, 0, 0, 26, 0, 0, 0]); // Model
        exif.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]); // Orientation 6
        exif.extend_from_slice(&[0, 0, 0, 0]);
        exif.extend_from_slice(b"Phone\0");
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
        jpeg.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        jpeg.extend_from_slice(&exif);
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0, 2, 1, 2, 0xFF, 0xD9]);
        assert_eq!(jpeg_orientation(&jpeg), Some(6));
        let stripped = strip_metadata(Kind::Jpeg, &jpeg).unwrap();
        assert!(!stripped.windows(5).any(|w| w == b"Phone"));
        assert_eq!(jpeg_orientation(&stripped), Some(6));
    }

    #[test]
    fn png_loses_text_chunks() {
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            c.extend_from_slice(&[0, 0, 0, 0]);
            c
        };
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &[0; 13]));
        png.extend(chunk(b"tEXt", b"Author\0me"));
        png.extend(chunk(b"IDAT", &[1, 2]));
        png.extend(chunk(b"IEND", &[]));
        let stripped = strip_metadata(Kind::Png, &png).unwrap();
        assert_eq!(stripped.len(), png.len() - 12 - 9);
        assert!(!stripped.windows(4).any(|w| w == b"tEXt"));
    }
}
