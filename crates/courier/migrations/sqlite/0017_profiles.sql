-- Profiles: a display name beside the username, and an uploaded picture.

-- NULL shows the username.
ALTER TABLE users ADD COLUMN display_name TEXT;
-- The uploaded picture's URL (/api/avatars/<sha256>); NULL falls back to avatar_url (the
-- provider's picture) and then to the generated avatar.
ALTER TABLE users ADD COLUMN picture TEXT;
-- Profile pictures keep their blobs from the sweep.
CREATE INDEX users_by_picture ON users (picture);
