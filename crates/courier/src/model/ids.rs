//! Typed ids. On the wire they are JSON strings; a malformed id parses to `None` (→ 404).

use std::fmt;

macro_rules! id_type {
    ($name:ident) => {
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            Default,
            serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// Parses a positive decimal id; anything else (including overflow) is `None`.
            pub fn parse(s: &str) -> Option<Self> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                s.parse::<i64>().ok().filter(|n| *n > 0).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(UserId);
id_type!(ConversationId);
id_type!(MessageId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_decimal_ids_parse() {
        assert_eq!(UserId::parse("42"), Some(UserId(42)));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.5",
            "abc",
            "99999999999999999999",
            " 1",
        ] {
            assert_eq!(UserId::parse(bad), None, "{bad:?}");
        }
    }
}
