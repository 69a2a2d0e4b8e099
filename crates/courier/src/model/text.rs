//! Text a person typed, checked before it reaches a store or another person's screen. Every
//! parse function of a text field (message content, usernames, titles, searches, passwords)
//! goes through here, so both stores see the same text.
//!
//! - **Control characters are refused** (422): the C0 range (U+0000–U+001F), DEL and the C1
//!   range. PostgreSQL cannot store U+0000 in `text` at all (it used to answer 500 there and
//!   made the writer retry its whole commit group one send at a time), and no person can read
//!   the others. Messages and titles keep `\n`, `\t` and `\r` (line breaks and indentation,
//!   normalised away by whitespace folding); single-line fields refuse them too.
//! - **Invisible characters count as whitespace.** U+200B, U+2060, U+FEFF and U+180E separate
//!   words like a space; a word made only of zero-width characters (U+200C/U+200D joiners, soft
//!   hyphen) is dropped, so a message of nothing but them is empty. Joiners *inside* a word
//!   stay: they build emoji sequences and shape Persian and Indic scripts.
//! - **Bidirectional overrides and isolates are stripped** (U+202A–U+202E, U+2066–U+2069).
//!   We strip rather than rely on the web app isolating user text with `<bdi>`/`dir="auto"`,
//!   because the server's text also reaches API clients, notifications and logs that isolate
//!   nothing; an override there can still reverse the text around it (the "Trojan Source"
//!   trick). The implicit marks U+200E/U+200F stay: they cannot reverse a neighbour.

/// Why a piece of text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("may not contain control characters")]
    Control,
}

/// Refuses control characters; `multiline` keeps `\n`, `\r` and `\t`.
pub fn check_controls(s: &str, multiline: bool) -> Result<(), TextError> {
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if s.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(TextError::Control);
    }
    Ok(())
}

/// A character that separates words like a space although it is not `White_Space`.
pub fn is_invisible_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}' | '\u{180E}')
}

/// A character that occupies no space on its own.
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200C}' | '\u{200D}' | '\u{00AD}' | '\u{034F}') || is_bidi_control(c)
}

/// Bidirectional embeddings, overrides and isolates (not the implicit marks).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The words of one line: split on whitespace and invisible separators, direction overrides
/// removed, words made only of zero-width characters dropped.
pub fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(is_invisible_separator)
        .filter(|w| !w.chars().all(is_zero_width))
        .map(|w| w.chars().filter(|&c| !is_bidi_control(c)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold_line(line: &str) -> String {
        words(line).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn controls_are_refused_except_line_breaks_and_tabs_in_multiline_text() {
        for bad in ["a\0b", "\u{1}", "a\u{1b}[31m", "\u{7f}", "\u{85}"] {
            assert_eq!(
                check_controls(bad, true),
                Err(TextError::Control),
                "{bad:?}"
            );
        }
        assert!(check_controls("a\nb\tc\r\n", true).is_ok());
        assert_eq!(check_controls("a\nb", false), Err(TextError::Control));
        assert!(check_controls("é 日本 👩‍👩‍👧", false).is_ok());
    }

    #[test]
    fn zero_width_characters_are_whitespace_and_overrides_are_stripped() {
        assert_eq!(fold_line("\u{200B}\u{200D} \u{FEFF}\u{2060}"), "");
        assert_eq!(fold_line("a\u{200B}b"), "a b");
        assert_eq!(fold_line("\u{202E}evil\u{202C} txt"), "evil txt");
        assert_eq!(fold_line("\u{2067}x\u{2069}"), "x");
        // Joiners inside a word stay: this is one family emoji.
        assert_eq!(fold_line("👩\u{200D}👧"), "👩\u{200D}👧");
    }
}
