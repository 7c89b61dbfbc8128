-- The Graph pull worker's tables.

-- seen: the run that last saw this membership in a full pull, so the full
-- pass can remove what Graph no longer reports without holding it in memory.
ALTER TABLE memberships ADD COLUMN seen INTEGER;

-- One Graph connection per tenant. The client secret or certificate is
-- sealed (AES-256-GCM) with the key from ENTRASYNC_SECRET_KEY.
CREATE TABLE graph_connections (
	tenant_id         INTEGER PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
	azure_tenant_id   TEXT NOT NULL,
	client_id         TEXT NOT NULL,
	credential        TEXT NOT NULL,
	sealed            BLOB NOT NULL,
	groups            TEXT NOT NULL,
	schedule          TEXT NOT NULL,
	nested            INTEGER NOT NULL,
	deprovision       TEXT NOT NULL,
	threshold_percent INTEGER,
	threshold_count   INTEGER,
	authority_host    TEXT NOT NULL,
	graph_url         TEXT NOT NULL,
	created_at        TEXT NOT NULL,
	updated_at        TEXT NOT NULL
);

-- What each pull run saw, applied, failed and waited.
CREATE TABLE sync_runs (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant_id      INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	triggered_by   TEXT NOT NULL,
	mode           TEXT NOT NULL,
	status         TEXT NOT NULL,
	started_at     TEXT NOT NULL,
	finished_at    TEXT,
	pages          INTEGER NOT NULL DEFAULT 0,
	users_seen     INTEGER NOT NULL DEFAULT 0,
	groups_seen    INTEGER NOT NULL DEFAULT 0,
	changes        TEXT NOT NULL DEFAULT '{}',
	held           INTEGER NOT NULL DEFAULT 0,
	throttle_waits INTEGER NOT NULL DEFAULT 0,
	throttle_ms    INTEGER NOT NULL DEFAULT 0,
	retry_after_ms INTEGER NOT NULL DEFAULT 0,
	error          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sync_runs_tenant ON sync_runs(tenant_id, id);

-- Delta links, when no Redis is configured.
CREATE TABLE delta_tokens (
	tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	key       TEXT NOT NULL,
	link      TEXT NOT NULL,
	saved_at  TEXT NOT NULL,
	PRIMARY KEY (tenant_id, key)
);

-- Keys of the ops HTTP API; only their SHA-256 is kept.
CREATE TABLE ops_keys (
	id           TEXT PRIMARY KEY,
	name         TEXT NOT NULL UNIQUE,
	hash         BLOB NOT NULL UNIQUE,
	prefix       TEXT NOT NULL,
	created_at   TEXT NOT NULL,
	last_used_at TEXT,
	revoked_at   TEXT
);

-- Leases: one holder at a time, across processes sharing the database
-- (the run lock when no Redis is configured).
CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at TEXT NOT NULL
);

-- The pull links users and groups pushed with externalId = the Entra object
-- id, whatever its case.
CREATE INDEX users_external_id_fold ON users(tenant_id, lower(external_id));
CREATE INDEX groups_external_id_fold ON groups(tenant_id, lower(external_id));
