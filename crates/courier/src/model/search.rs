//! Full-text search without I/O: the query language, the words a message is indexed by, and
//! the highlighted snippet of a hit.
//!
//! **One tokenizer for both stores.** A message is indexed by `index_text(content)`: its
//! words, folded (lower case, accents of Latin, Greek and Cyrillic letters removed) and
//! joined by spaces. Han ideographs and kana are written without spaces, so each one is a word
//! of its own and a query word in those scripts becomes a phrase of single characters: "東京"
//! finds "東京都" but not "京 … 東". SQLite's FTS5 and PostgreSQL's `to_tsvector('simple', …)`
//! then only split that text at spaces, so both stores find exactly the same messages.
//!
//! **User input never reaches an FTS parser as syntax.** The query is parsed here into words,
//! phrases, exclusions and `from:`; every word is reduced to letters and digits, and the
//! store's match expression is built from those words, each quoted. Operators a person types
//! (`NEAR`, `OR`, `*`, `:`, `^`, unbalanced quotes) are plain words or nothing, never syntax,
//! so no query can make the database answer a syntax error.
//!
//! **Highlighting is data, not markup.** A snippet is a list of segments, each `hit` or not;
//! clients render each segment as text, so a message's `<b>` stays literal.

use unicode_normalization::UnicodeNormalization;

/// The longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// The most words, phrases and exclusions one query may hold.
pub const MAX_QUERY_TERMS: usize = 16;
/// About how many characters of a message a snippet shows.
pub const SNIPPET_CHARS: usize = 160;

/// Why a query was refused (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the search is empty: type a word to find")]
    Empty,
    #[error("the search is longer than {MAX_QUERY_CHARS} characters")]
    TooLong,
    #[error("the search has more than {MAX_QUERY_TERMS} words, phrases and exclusions")]
    TooManyTerms,
    #[error("a search needs a word to find, not only words to leave out")]
    OnlyExclusions,
    #[error("from: needs a username")]
    BadFrom,
}

/// A parsed query. Each term is a list of folded words that must appear next to each other
/// (one word is a phrase of one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Every one of these must appear.
    pub required: Vec<Vec<String>>,
    /// None of these may appear.
    pub excluded: Vec<Vec<String>>,
    /// Only messages sent by this username (as typed, without `@`).
    pub from: Option<String>,
}

impl SearchQuery {
    /// Parses what a person typed: `words`, `"a phrase"`, `-word`, `-"a phrase"`,
    /// `from:username`. An unclosed quote runs to the end. Anything else is a word.
    pub fn parse(input: &str) -> Result<Self, QueryError> {
        if input.chars().count() > MAX_QUERY_CHARS {
            return Err(QueryError::TooLong);
        }
        let mut query = SearchQuery::default();
        let mut terms = 0usize;
        let mut rest = input.trim_start_matches(is_space);
        while !rest.is_empty() {
            let negated = rest.starts_with('-');
            let body = if negated { &rest[1..] } else { rest };
            let (raw, quoted, next) = if let Some(inner) = body.strip_prefix('"') {
                match inner.find('"') {
                    Some(end) => (&inner[..end], true, &inner[end + 1..]),
                    None => (inner, true, ""),
                }
            } else {
                let end = body.find(is_space).unwrap_or(body.len());
                (&body[..end], false, &body[end..])
            };
            rest = next.trim_start_matches(is_space);
            if !quoted
                && !negated
                && let Some(name) = strip_prefix_ignore_case(raw, "from:")
            {
                let name = name.trim_start_matches('@');
                if name.is_empty() || name.chars().any(|c| c.is_control()) {
                    return Err(QueryError::BadFrom);
                }
                query.from = Some(name.to_owned());
                continue;
            }
            let words = words(raw);
            if words.is_empty() {
                continue;
            }
            terms += 1;
            if terms > MAX_QUERY_TERMS {
                return Err(QueryError::TooManyTerms);
            }
            if negated {
                query.excluded.push(words);
            } else {
                query.required.push(words);
            }
        }
        if query.required.is_empty() {
            return Err(if !query.excluded.is_empty() {
                QueryError::OnlyExclusions
            } else if query.from.is_some() {
                // `from:bob` alone lists Bob's messages: allowed, the store filters by sender.
                return Ok(query);
            } else {
                QueryError::Empty
            });
        }
        Ok(query)
    }

    /// Whether the query has words to match (a `from:` alone has none).
    pub fn has_words(&self) -> bool {
        !self.required.is_empty()
    }

    /// The FTS5 `MATCH` expression: every word in double quotes (words hold only letters and
    /// digits, so nothing inside can end the quote), phrases as one quoted string.
    pub fn fts5_match(&self) -> String {
        let quoted = |term: &Vec<String>| format!("\"{}\"", term.join(" "));
        let required: Vec<String> = self.required.iter().map(quoted).collect();
        let mut out = format!("({})", required.join(" AND "));
        for term in &self.excluded {
            out.push_str(" NOT ");
            out.push_str(&quoted(term));
        }
        out
    }

    /// The PostgreSQL `to_tsquery('simple', …)` text: words in single quotes, phrases joined
    /// by `<->`, exclusions as `!`.
    pub fn tsquery(&self) -> String {
        let phrase = |term: &Vec<String>| {
            let quoted: Vec<String> = term.iter().map(|w| format!("'{w}'")).collect();
            format!("({})", quoted.join(" <-> "))
        };
        let mut parts: Vec<String> = self.required.iter().map(phrase).collect();
        parts.extend(self.excluded.iter().map(|t| format!("!{}", phrase(t))));
        parts.join(" & ")
    }

    /// Every folded word the query asks for, for highlighting.
    fn wanted(&self) -> std::collections::HashSet<&str> {
        self.required.iter().flatten().map(String::as_str).collect()
    }
}

fn is_space(c: char) -> bool {
    super::text::is_invisible_separator(c)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Han ideographs, kana and their punctuation-free neighbours: scripts written without spaces
/// between words, indexed one character a word.
fn is_unspaced(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}'   // hiragana, katakana
        | '\u{3400}'..='\u{4DBF}' // CJK extension A
        | '\u{4E00}'..='\u{9FFF}' // CJK unified ideographs
        | '\u{F900}'..='\u{FAFF}' // compatibility ideographs
        | '\u{20000}'..='\u{2FFFF}')
}

/// A word's folded form: lower case, and the accents of Latin, Greek and Cyrillic letters
/// removed (é → e, ß stays). Marks of other scripts (Devanagari vowel signs…) are letters
/// there, so they stay.
fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut base_is_alphabetic_european = false;
    for c in word.nfd() {
        if unicode_normalization::char::is_combining_mark(c) {
            if base_is_alphabetic_european {
                continue;
            }
        } else {
            base_is_alphabetic_european = (c as u32) < 0x0530;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// The words of `text` with their byte ranges in it: runs of letters, digits and marks, each
/// unspaced-script character a word of its own.
fn spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (at, c) in text.char_indices() {
        let wordy = c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c);
        if is_unspaced(c) {
            if let Some(s) = start.take() {
                out.push((s, at));
            }
            out.push((at, at + c.len_utf8()));
        } else if wordy {
            start.get_or_insert(at);
        } else if let Some(s) = start.take() {
            out.push((s, at));
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// The folded words of `text`, in order.
pub fn words(text: &str) -> Vec<String> {
    spans(text)
        .into_iter()
        .map(|(s, e)| fold(&text[s..e]))
        .filter(|w| !w.is_empty())
        .collect()
}

/// What the stores index for a message: its folded words joined by single spaces.
pub fn index_text(content: &str) -> String {
    words(content).join(" ")
}

/// A piece of a snippet: `hit` when it is a word the query asked for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    pub text: String,
    pub hit: bool,
}

/// About `SNIPPET_CHARS` characters of `content` around its first hit, cut at word edges, with
/// `…` where text was left out; every word the query asked for is a hit segment.
pub fn snippet(content: &str, query: &SearchQuery) -> Vec<Segment> {
    let wanted = query.wanted();
    let spans = spans(content);
    let hits: Vec<(usize, usize)> = spans
        .iter()
        .copied()
        .filter(|&(s, e)| wanted.contains(fold(&content[s..e]).as_str()))
        .collect();
    // The window: start a little before the first hit, at a word's start.
    let first = hits.first().map_or(0, |h| h.0);
    let lead = content[..first]
        .char_indices()
        .rev()
        .nth(SNIPPET_CHARS / 4)
        .map_or(0, |(i, _)| i);
    let start = if lead == 0 {
        0
    } else {
        spans
            .iter()
            .map(|s| s.0)
            .find(|&s| s >= lead)
            .unwrap_or(first)
    };
    let mut end = content[start..]
        .char_indices()
        .nth(SNIPPET_CHARS)
        .map_or(content.len(), |(i, _)| start + i);
    if end < content.len() {
        // Do not cut a word in two: end at the last word ending before the limit.
        if let Some(&(_, e)) = spans.iter().rev().find(|&&(s, e)| e <= end && s >= start) {
            end = e;
        }
    }
    let mut out = Vec::new();
    let mut push = |text: &str, hit: bool| {
        if text.is_empty() {
            return;
        }
        match out.last_mut() {
            Some(Segment { text: last, hit: h }) if *h == hit => last.push_str(text),
            _ => out.push(Segment {
                text: text.to_owned(),
                hit,
            }),
        }
    };
    if start > 0 {
        push("…", false);
    }
    let mut at = start;
    for &(s, e) in hits.iter().filter(|&&(s, e)| s >= start && e <= end) {
        push(&content[at..s], false);
        push(&content[s..e], true);
        at = e;
    }
    push(&content[at..end], false);
    if end < content.len() {
        push("…", false);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> SearchQuery {
        SearchQuery::parse(s).unwrap()
    }

    fn w(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words_phrases_exclusions_and_from() {
        let query = q(r#"Lunch "next Friday" -pizza -"fish soup" from:@Bob"#);
        assert_eq!(query.required, vec![w(&["lunch"]), w(&["next", "friday"])]);
        assert_eq!(query.excluded, vec![w(&["pizza"]), w(&["fish", "soup"])]);
        assert_eq!(query.from.as_deref(), Some("Bob"));
        assert_eq!(
            query.fts5_match(),
            r#"("lunch" AND "next friday") NOT "pizza" NOT "fish soup""#
        );
        assert_eq!(
            query.tsquery(),
            "('lunch') & ('next' <-> 'friday') & !('pizza') & !('fish' <-> 'soup')"
        );
    }

    #[test]
    fn accents_and_case_fold_away() {
        assert_eq!(
            words("Crème BRÛLÉE, Ærø Straße"),
            w(&["creme", "brulee", "ærø", "straße"])
        );
        assert_eq!(index_text("Ελληνικά Ёлка"), "ελληνικα елка");
        // Devanagari vowel signs are part of the word, not accents.
        assert_eq!(words("नमस्ते"), w(&["नमस्ते"]));
    }

    #[test]
    fn unspaced_scripts_index_one_character_a_word() {
        assert_eq!(index_text("東京都に行く"), "東 京 都 に 行 く");
        assert_eq!(q("東京").required, vec![w(&["東", "京"])]);
        assert_eq!(index_text("hello世界"), "hello 世 界");
    }

    #[test]
    fn hostile_input_is_words_or_nothing() {
        for input in [
            r#"""#,
            r#"-"#,
            r#"""""#,
            "NEAR(a b)",
            "a* OR b",
            "col:term ^start",
            "'; DROP TABLE messages; --",
            "\"unbalanced quote",
            "!a & b | c <-> d",
            "a \u{0} b",
        ] {
            match SearchQuery::parse(input) {
                Ok(query) => {
                    let all = query.required.iter().chain(&query.excluded).flatten();
                    for word in all {
                        assert!(word.chars().all(|c| c.is_alphanumeric()), "{input}: {word}");
                    }
                }
                Err(e) => assert!(
                    matches!(e, QueryError::Empty | QueryError::OnlyExclusions),
                    "{input}: {e}"
                ),
            }
        }
        // Words joined by punctuation must stay together, as a phrase.
        assert_eq!(q("NEAR(a b)").fts5_match(), r#"("near a" AND "b")"#);
        assert_eq!(q("\"open ended").required, vec![w(&["open", "ended"])]);
        assert_eq!(q("e-mail").required, vec![w(&["e", "mail"])]);
    }

    #[test]
    fn refusals() {
        assert_eq!(SearchQuery::parse("   "), Err(QueryError::Empty));
        assert_eq!(SearchQuery::parse("*** :: ^"), Err(QueryError::Empty));
        assert_eq!(SearchQuery::parse("-spam"), Err(QueryError::OnlyExclusions));
        assert_eq!(SearchQuery::parse("from:"), Err(QueryError::BadFrom));
        assert_eq!(
            SearchQuery::parse(&"a".repeat(MAX_QUERY_CHARS + 1)),
            Err(QueryError::TooLong)
        );
        let many = vec!["w"; MAX_QUERY_TERMS + 1].join(" ");
        assert_eq!(SearchQuery::parse(&many), Err(QueryError::TooManyTerms));
        // `from:` alone lists someone's messages.
        assert!(!q("from:bob").has_words());
    }

    #[test]
    fn snippet_marks_hits_as_segments_not_markup() {
        let query = q("cafe");
        let parts = snippet("<b>Le Café</b> ouvre", &query);
        assert_eq!(
            parts,
            vec![
                Segment {
                    text: "<b>Le ".into(),
                    hit: false
                },
                Segment {
                    text: "Café".into(),
                    hit: true
                },
                Segment {
                    text: "</b> ouvre".into(),
                    hit: false
                },
            ]
        );
    }

    #[test]
    fn long_messages_are_cut_around_the_first_hit() {
        let text = format!("{} needle {}", "hay ".repeat(100), "straw ".repeat(100));
        let parts = snippet(&text, &q("needle"));
        assert_eq!(parts.first().unwrap().text.chars().next(), Some('…'));
        assert!(parts.iter().any(|p| p.hit && p.text == "needle"));
        assert!(parts.last().unwrap().text.ends_with('…'));
        let shown: usize = parts.iter().map(|p| p.text.chars().count()).sum();
        assert!(shown <= SNIPPET_CHARS + 2, "{shown}");
    }
}
