-- When a SCIM push first wrote a user (NULL: never, or before this column):
-- with entra_id, set only by the pull, it tells which channel manages a user.
ALTER TABLE users ADD COLUMN pushed_at TEXT COLLATE "C";
-- Active users are counted per tenant from this index, not the table rows.
CREATE INDEX users_active ON users(tenant_id, active);
