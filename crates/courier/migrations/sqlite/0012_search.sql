-- Full-text search (see store/search.rs). A contentless FTS5 table: it keeps only the index,
-- not a second copy of the text, and `contentless_delete` lets the store delete a row by
-- rowid (= message id) without supplying the old text. The store writes each message's
-- folded words (model::search::index_text) in the same transaction as the message, its edit
-- or its delete. The tokenizer folds accents too, for the rows indexed here from the raw
-- text; marks count as letters so scripts whose vowels are marks stay one word.
CREATE VIRTUAL TABLE message_search USING fts5(
    words,
    content = '',
    contentless_delete = 1,
    tokenize = "unicode61 remove_diacritics 2 categories 'L* N* Co M*'"
);
-- Messages sent before this migration, tombstones left out. Han and kana runs in them are
-- indexed as one word each (the store splits them per character for new writes and edits).
INSERT INTO message_search (rowid, words)
    SELECT id, content FROM messages WHERE deleted_at IS NULL AND content <> '';
