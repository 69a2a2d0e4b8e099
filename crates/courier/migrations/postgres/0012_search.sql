-- PostgreSQL twin of migrations/sqlite/0012_search.sql: a tsvector per message with a GIN
-- index. The store writes to_tsvector('simple', model::search::index_text(content)) with the
-- message, its edit (new words) and its delete (NULL), in the same transaction.
ALTER TABLE messages ADD COLUMN search_words tsvector;
-- Messages sent before this migration, tombstones left out. `unaccent` is an extension the
-- database role may not be allowed to create, so the common Latin accents are folded here
-- with translate(); Han and kana runs stay one word each until the message is edited.
UPDATE messages SET search_words = to_tsvector('simple', translate(lower(content),
        'àáâãäåāăąçćčďèéêëēėęěìíîïīįıñńňòóôõöøōőŕřśšşťùúûüūůűųýÿźżž',
        'aaaaaaaaacccdeeeeeeeeiiiiiiınnnoooooøoorrssstuuuuuuuuyyzzz'))
    WHERE deleted_at IS NULL AND content <> '';
CREATE INDEX messages_search ON messages USING GIN (search_words);
