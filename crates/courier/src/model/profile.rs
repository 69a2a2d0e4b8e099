//! What a person shows of themselves: a display name beside the username, and a picture.

use unicode_normalization::UnicodeNormalization;

/// A display name: one line, NFC, whitespace and invisible separators folded to single spaces,
/// direction overrides stripped, no control characters, 1 to `DisplayName::MAX_CHARS`
/// characters (the rules of `model::text`, like a group title).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DisplayNameError {
    #[error("displayName must not be empty (send null to show the username)")]
    Empty,
    #[error("displayName must be at most {} characters", DisplayName::MAX_CHARS)]
    TooLong,
    #[error("displayName may not contain control characters or line breaks")]
    Control,
}

impl DisplayName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, DisplayNameError> {
        super::text::check_controls(raw, false).map_err(|_| DisplayNameError::Control)?;
        let folded = super::text::words(raw).collect::<Vec<_>>().join(" ");
        let name: String = folded.nfc().collect();
        if name.is_empty() {
            return Err(DisplayNameError::Empty);
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(DisplayNameError::TooLong);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A profile picture in the file store: the SHA-256 (hex) of its WebP bytes, which is also
/// its URL's last segment, so the URL changes whenever the picture does.
pub fn avatar_path(hash: &str) -> String {
    format!("/api/avatars/{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_name_is_folded_and_normalised() {
        let name = DisplayName::parse("  Ali\u{200B}ce \u{202E}B  ").unwrap();
        assert_eq!(name.as_str(), "Ali ce B");
        // "e" + combining acute becomes the precomposed é.
        assert_eq!(
            DisplayName::parse("Rene\u{301}").unwrap().as_str(),
            "Ren\u{e9}"
        );
    }

    #[test]
    fn a_display_name_refuses_empty_long_and_control_text() {
        assert_eq!(
            DisplayName::parse(" \u{200B} "),
            Err(DisplayNameError::Empty)
        );
        assert_eq!(DisplayName::parse("a\nb"), Err(DisplayNameError::Control));
        assert_eq!(DisplayName::parse("a\u{7}"), Err(DisplayNameError::Control));
        let long = "é".repeat(DisplayName::MAX_CHARS + 1);
        assert_eq!(DisplayName::parse(&long), Err(DisplayNameError::TooLong));
        assert!(DisplayName::parse(&"é".repeat(DisplayName::MAX_CHARS)).is_ok());
    }
}
