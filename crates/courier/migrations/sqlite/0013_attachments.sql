-- Uploaded files and their use as message attachments.
-- `blobs` is what the storage holds, by content hash (identical uploads share one file); a
-- blob no upload references is removed by the sweep. `uploads` is one person's upload of a
-- blob: free (message_id NULL) until a send claims it, then attached for the message's life.
CREATE TABLE blobs (
    hash      TEXT    PRIMARY KEY,
    size      INTEGER NOT NULL,
    used_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE uploads (
    id           TEXT    PRIMARY KEY,
    owner_id     INTEGER NOT NULL REFERENCES users (id),
    hash         TEXT    NOT NULL REFERENCES blobs (hash),
    thumb_hash   TEXT    REFERENCES blobs (hash),
    name         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    width        INTEGER,
    height       INTEGER,
    created_at   INTEGER NOT NULL,
    -- Set by a send before it commits; the message id is written in the send's transaction.
    claim        TEXT,
    message_id   INTEGER REFERENCES messages (id),
    position     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX uploads_by_owner ON uploads (owner_id);
CREATE INDEX uploads_by_message ON uploads (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX uploads_by_claim ON uploads (claim) WHERE claim IS NOT NULL;
CREATE INDEX uploads_by_hash ON uploads (hash);
CREATE INDEX uploads_by_thumb ON uploads (thumb_hash) WHERE thumb_hash IS NOT NULL;
CREATE INDEX uploads_free ON uploads (created_at) WHERE message_id IS NULL;
