//! `Password::parse`: the password policy. Long enough, not absurdly long (hashing cost), and
//! not among the passwords attackers try first: zxcvbn's estimate must exceed 10^6 guesses,
//! which rejects its embedded lists of the most common passwords, names and words, and
//! anything built from the username. A password that contains the username (any case) or a
//! control character (nobody can type one; see `model::text`) is refused outright.

#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("Password must be at least {0} characters")]
    TooShort(usize),
    #[error("Password must be at most {0} characters")]
    TooLong(usize),
    #[error("Password is too common or too easy to guess")]
    TooCommon,
    #[error("Password may not contain your username")]
    ContainsUsername,
    #[error("Password may not contain control characters")]
    Control,
}

impl Password {
    pub const MAX_LEN: usize = 256;

    pub fn parse(raw: &str, min_len: usize, username: &str) -> Result<Self, PasswordError> {
        let len = raw.chars().count();
        if len < min_len {
            return Err(PasswordError::TooShort(min_len));
        }
        if len > Self::MAX_LEN {
            return Err(PasswordError::TooLong(Self::MAX_LEN));
        }
        super::text::check_controls(raw, false).map_err(|_| PasswordError::Control)?;
        if !username.is_empty() && raw.to_lowercase().contains(&username.to_lowercase()) {
            return Err(PasswordError::ContainsUsername);
        }
        if u8::from(zxcvbn::zxcvbn(raw, &[username]).score()) < 2 {
            return Err(PasswordError::TooCommon);
        }
        Ok(Self(raw.to_owned()))
    }

    /// A password that skips the policy (for a placeholder hash, never for a user's password).
    pub fn unchecked(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_long_and_common_passwords_are_refused() {
        assert_eq!(
            Password::parse("abc", 10, "alice").unwrap_err(),
            PasswordError::TooShort(10)
        );
        assert_eq!(
            Password::parse(&"x".repeat(300), 10, "alice").unwrap_err(),
            PasswordError::TooLong(256)
        );
        for common in ["password123", "qwertyuiop", "1234567890"] {
            assert_eq!(
                Password::parse(common, 10, "alice").unwrap_err(),
                PasswordError::TooCommon,
                "{common}"
            );
        }
    }

    #[test]
    fn a_password_with_the_username_in_it_or_a_control_character_is_refused() {
        for with_name in [
            "alice12345",
            "violet-ALICE-tractor-91",
            "xXaLiCeXx-harbor-91",
        ] {
            assert_eq!(
                Password::parse(with_name, 10, "alice").unwrap_err(),
                PasswordError::ContainsUsername,
                "{with_name}"
            );
        }
        assert_eq!(
            Password::parse("violet-harbor\0tractor-91", 10, "alice").unwrap_err(),
            PasswordError::Control
        );
    }

    #[test]
    fn a_long_unusual_password_is_accepted_and_never_printed() {
        let p = Password::parse("violet-harbor-tractor-91", 10, "alice").unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
    }
}
