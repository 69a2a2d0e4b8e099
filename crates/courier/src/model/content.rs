//! `MessageContent::parse`: whitespace normalisation and the length limit.
//!
//! Runs of whitespace inside a line become one space, lines are trimmed and empty lines
//! dropped, as the seed app did. The limit counts characters (Unicode scalar values).
//! Control characters other than line breaks and tabs are refused, zero-width characters
//! count as whitespace and direction overrides are stripped (see [`super::text`]).

use super::text;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("Message content required")]
    Empty,
    #[error("Message content too long (at most {max} characters)")]
    TooLong { max: usize },
    #[error("Message content may not contain control characters")]
    Control,
}

impl MessageContent {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, ContentError> {
        text::check_controls(raw, true).map_err(|_| ContentError::Control)?;
        let mut out = String::with_capacity(raw.len());
        for line in raw.lines() {
            let mut words = text::words(line).peekable();
            if words.peek().is_none() {
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
            }
            for (i, word) in words.enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&word);
            }
        }
        if out.is_empty() {
            return Err(ContentError::Empty);
        }
        if out.chars().count() > max_chars {
            return Err(ContentError::TooLong { max: max_chars });
        }
        Ok(Self(out))
    }

    /// As `parse`, but no text at all is allowed: a message that carries attachments.
    pub fn parse_optional(raw: &str, max_chars: usize) -> Result<Self, ContentError> {
        match Self::parse(raw, max_chars) {
            Err(ContentError::Empty) => Ok(Self(String::new())),
            other => other,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_whitespace_per_line_and_drops_empty_lines() {
        let c = MessageContent::parse("  hello \t  world \n\n \r\n  second   line  ", 480).unwrap();
        assert_eq!(c.as_str(), "hello world\nsecond line");
    }

    #[test]
    fn blank_content_is_empty() {
        assert_eq!(
            MessageContent::parse(" \n\t ", 480),
            Err(ContentError::Empty)
        );
    }

    #[test]
    fn the_limit_counts_characters_after_normalising() {
        assert!(MessageContent::parse(&"é".repeat(480), 480).is_ok());
        assert_eq!(
            MessageContent::parse(&"é".repeat(481), 480),
            Err(ContentError::TooLong { max: 480 })
        );
        // 480 chars once the padding is gone.
        assert!(MessageContent::parse(&format!("   {}   ", "a".repeat(480)), 480).is_ok());
    }

    #[test]
    fn controls_are_refused_and_invisible_text_is_empty() {
        for bad in ["a\0b", "\u{1b}[2J", "bell\u{7}"] {
            assert_eq!(MessageContent::parse(bad, 480), Err(ContentError::Control));
        }
        assert_eq!(
            MessageContent::parse("\u{200B}\u{200D}\n\u{FEFF}", 480),
            Err(ContentError::Empty)
        );
        assert_eq!(
            MessageContent::parse("pay \u{202E}gpj.exe", 480)
                .unwrap()
                .as_str(),
            "pay gpj.exe"
        );
    }

    #[test]
    fn normalising_is_idempotent() {
        for raw in ["a  b\n\nc", " x\ty \n z ", "one"] {
            let once = MessageContent::parse(raw, 480).unwrap();
            let twice = MessageContent::parse(once.as_str(), 480).unwrap();
            assert_eq!(once, twice);
        }
    }
}
