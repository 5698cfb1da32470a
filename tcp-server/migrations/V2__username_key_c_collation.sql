-- Usernames are compared as ASCII lowercase, but lower() follows the database's locale: under a
-- Turkish collation lower('I') is a dotless 'ı', so "Ivan" could not log in and "ivan" could be
-- registered beside it. The C collation makes lower() plain ASCII whatever the database uses.
DROP INDEX IF EXISTS users_username_lower;
CREATE UNIQUE INDEX users_username_lower ON users (lower(username COLLATE "C"));
