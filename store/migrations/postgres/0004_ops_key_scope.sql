-- An ops key's scope: its role (read, sync or admin) and the tenants it may
-- act on, a JSON list of tenant ids (NULL: every tenant). Keys issued before
-- keep working as they did: admin keys for every tenant.
ALTER TABLE ops_keys ADD COLUMN role TEXT COLLATE "C" NOT NULL DEFAULT 'admin';
ALTER TABLE ops_keys ADD COLUMN tenants TEXT;
