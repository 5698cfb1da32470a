-- Account lifecycle. Both columns are added without rewriting the table (a constant default and
-- a NULL are stored in the catalogue), so this is instant on 10 million rows.

-- Moved on to end every session of the account at once (log out everywhere, a password
-- change, deletion): a session token carries the epoch it was issued in and is refused once the
-- account's epoch differs. A login only reads it.
ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;

-- Set when the account is deleted. The row stays, emptied (no password hash, no nickname, no
-- picture), only to hold its username for the cooling-off period, after which it is removed and
-- the name is free again. No query serves a deleted account.
ALTER TABLE users ADD COLUMN deleted_at TIMESTAMPTZ;

-- The rows the janitor removes once their cooling-off period is over.
CREATE INDEX users_deleted_at ON users (deleted_at) WHERE deleted_at IS NOT NULL;
