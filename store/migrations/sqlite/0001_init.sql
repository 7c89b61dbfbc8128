CREATE TABLE tenants (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	name       TEXT NOT NULL UNIQUE,
	created_at TEXT NOT NULL
);

-- Only the SHA-256 of a secret token is kept; prefix lets an admin tell tokens apart.
CREATE TABLE scim_tokens (
	id           TEXT PRIMARY KEY,
	tenant_id    INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	hash         BLOB NOT NULL UNIQUE,
	prefix       TEXT NOT NULL,
	created_at   TEXT NOT NULL,
	last_used_at TEXT,
	revoked_at   TEXT
);
CREATE INDEX scim_tokens_tenant ON scim_tokens(tenant_id);

-- users and groups keep the SCIM document (JSON, without members) beside the
-- case-folded columns that lookups use.
CREATE TABLE users (
	tenant_id      INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	id             TEXT NOT NULL,
	entra_id       TEXT,
	user_name      TEXT NOT NULL,
	user_name_fold TEXT NOT NULL,
	external_id    TEXT,
	display_name   TEXT,
	display_fold   TEXT,
	active         INTEGER NOT NULL,
	version        INTEGER NOT NULL,
	created_at     TEXT NOT NULL,
	modified_at    TEXT NOT NULL,
	doc            TEXT NOT NULL,
	PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX users_user_name ON users(tenant_id, user_name_fold);
CREATE INDEX users_external_id ON users(tenant_id, external_id);
CREATE INDEX users_display ON users(tenant_id, display_fold);
CREATE UNIQUE INDEX users_entra_id ON users(tenant_id, entra_id) WHERE entra_id IS NOT NULL;

CREATE TABLE groups (
	tenant_id    INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	id           TEXT NOT NULL,
	entra_id     TEXT,
	external_id  TEXT,
	display_name TEXT NOT NULL,
	display_fold TEXT NOT NULL,
	version      INTEGER NOT NULL,
	created_at   TEXT NOT NULL,
	modified_at  TEXT NOT NULL,
	doc          TEXT NOT NULL,
	PRIMARY KEY (tenant_id, id)
);
CREATE INDEX groups_external_id ON groups(tenant_id, external_id);
CREATE INDEX groups_display ON groups(tenant_id, display_fold);
CREATE UNIQUE INDEX groups_entra_id ON groups(tenant_id, entra_id) WHERE entra_id IS NOT NULL;

-- One row per (group, member): adding or removing a member touches one row,
-- whatever the group's size. member_type is 'User' or 'Group'.
CREATE TABLE memberships (
	tenant_id   INTEGER NOT NULL,
	group_id    TEXT NOT NULL,
	member_id   TEXT NOT NULL,
	member_type TEXT NOT NULL,
	PRIMARY KEY (tenant_id, group_id, member_id),
	FOREIGN KEY (tenant_id, group_id) REFERENCES groups(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX memberships_member ON memberships(tenant_id, member_id, group_id);

-- The attribute index: one row per leaf value of a document (path lower-cased,
-- elements of multi-valued attributes numbered by idx), so every SCIM filter
-- becomes indexed SQL. resource is 'U' or 'G'.
CREATE TABLE attrs (
	tenant_id   INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	resource    TEXT NOT NULL,
	resource_id TEXT NOT NULL,
	path        TEXT NOT NULL,
	idx         INTEGER NOT NULL,
	value       TEXT NOT NULL,
	value_fold  TEXT NOT NULL
);
CREATE INDEX attrs_value ON attrs(tenant_id, resource, path, value_fold);
CREATE INDEX attrs_owner ON attrs(tenant_id, resource, resource_id, path, idx);

-- Facts about the database itself, such as when it was first started.
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
