//! The stream cursor sent as SSE `id:`: `<store instance>-<message position>`.
//!
//! Message ids are handed out in commit order (see `store`), so "everything after position
//! p" is a complete, gap-free set once p itself is visible. The instance part ties a cursor
//! to one database, so a cursor from another server is detected instead of silently
//! skipping or repeating messages.

use super::MessageId;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub instance: String,
    pub position: MessageId,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("malformed cursor")]
    Malformed,
    #[error("cursor belongs to another server")]
    OtherServer,
    #[error("cursor is ahead of this server's history")]
    Ahead,
}

impl Cursor {
    pub fn parse(raw: &str) -> Result<Self, CursorError> {
        let (instance, position) = raw.trim().rsplit_once('-').ok_or(CursorError::Malformed)?;
        let valid_instance = !instance.is_empty()
            && instance.len() <= 64
            && instance.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid_instance {
            return Err(CursorError::Malformed);
        }
        let position = match position {
            "0" => MessageId(0),
            p => MessageId::parse(p).ok_or(CursorError::Malformed)?,
        };
        Ok(Self {
            instance: instance.to_owned(),
            position,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.instance, self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = Cursor {
            instance: "a1b2c3".into(),
            position: MessageId(42),
        };
        assert_eq!(Cursor::parse(&c.to_string()), Ok(c));
        assert_eq!(Cursor::parse("abc-0").unwrap().position, MessageId(0));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "42", "-42", "abc-", "abc-x", "a b-1", "abc--1", "abc-1.5",
        ] {
            assert_eq!(Cursor::parse(bad), Err(CursorError::Malformed), "{bad:?}");
        }
    }
}
