//! `Username::parse`: 1–32 ASCII letters, digits, `_` or `-`. Uniqueness ignores case and
//! lookalikes: the store keeps each name's [`Username::skeleton`] under a unique index, so
//! `aIice` and `a1ice` are taken once `alice` exists.
//!
//! The skeleton follows Unicode TR39's idea (two strings are confusable when their skeletons
//! are equal) with a small hand-made map, enough because names are ASCII: `I`, `l` and `1`
//! look alike, so do `O`, `o` and `0`, and the pairs `rn`, `vv`, `cl` look like `m`, `w`,
//! `d`. No crate in the registry offers TR39 skeletons for Rust; the full tables would also
//! fold characters a name cannot contain.

use super::text;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("Username required")]
    Empty,
    #[error("Username must be at most 32 characters")]
    TooLong,
    #[error("Username may contain only letters, digits, _ and -")]
    InvalidCharacter,
    #[error("Search may not contain control characters")]
    Control,
}

impl Username {
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(UsernameError::Empty);
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(UsernameError::TooLong);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(UsernameError::InvalidCharacter);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the name looks like: equal skeletons are names a reader can mistake for each other.
    pub fn skeleton(&self) -> String {
        let folded: String = self
            .0
            .chars()
            .map(|c| match c {
                'I' | 'l' | '1' => 'l',
                'O' | 'o' | '0' => 'o',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        folded
            .replace("rn", "m")
            .replace("vv", "w")
            .replace("cl", "d")
    }

    /// A search for names starting with `raw`: trimmed, not empty, no control characters.
    pub fn parse_prefix(raw: &str) -> Result<String, UsernameError> {
        text::check_controls(raw, false).map_err(|_| UsernameError::Control)?;
        let s = raw.trim();
        if s.is_empty() {
            return Err(UsernameError::Empty);
        }
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_letters_digits_underscore_and_dash() {
        assert_eq!(
            Username::parse("Jane_Doe-2").unwrap().as_str(),
            "Jane_Doe-2"
        );
        assert_eq!(Username::parse(&"a".repeat(32)).unwrap().as_str().len(), 32);
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert_eq!(Username::parse("  "), Err(UsernameError::Empty));
        assert_eq!(
            Username::parse(&"a".repeat(33)),
            Err(UsernameError::TooLong)
        );
        for bad in [
            "a b",
            "é",
            "a.b",
            "<x>",
            "a/b",
            "a\0b",
            "a\u{200B}b",
            "\u{202E}ab",
        ] {
            assert_eq!(
                Username::parse(bad),
                Err(UsernameError::InvalidCharacter),
                "{bad}"
            );
        }
    }

    #[test]
    fn lookalike_names_share_a_skeleton() {
        let skeleton = |s: &str| Username::parse(s).unwrap().skeleton();
        for lookalike in ["aIice", "a1ice", "Alice", "A1ice"] {
            assert_eq!(skeleton(lookalike), skeleton("alice"), "{lookalike}");
        }
        assert_eq!(skeleton("b0b"), skeleton("bob"));
        assert_eq!(skeleton("AL1CE"), skeleton("ALICE"));
        assert_eq!(skeleton("rnary"), skeleton("mary"));
        assert_eq!(skeleton("vvalt"), skeleton("walt"));
        assert_ne!(skeleton("alice"), skeleton("alicia"));
        assert_ne!(skeleton("bob"), skeleton("bobo"));
    }

    #[test]
    fn a_search_refuses_controls_and_emptiness() {
        assert_eq!(Username::parse_prefix(" al "), Ok("al".to_owned()));
        assert_eq!(Username::parse_prefix("a\0"), Err(UsernameError::Control));
        assert_eq!(Username::parse_prefix("  "), Err(UsernameError::Empty));
    }
}
