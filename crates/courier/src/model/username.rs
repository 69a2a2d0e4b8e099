//! `Username::parse`: 1–32 ASCII letters, digits, `_` or `-`. Uniqueness ignores case (the store enforces it).

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
        for bad in ["a b", "é", "a.b", "<x>", "a/b"] {
            assert_eq!(
                Username::parse(bad),
                Err(UsernameError::InvalidCharacter),
                "{bad}"
            );
        }
    }
}
