-- Provisioning activity: one record per SCIM request and per change a pull
-- made, told in words. Only ids, userName and displayName are kept of a
-- person. Pruned by age (activity_retention).
CREATE TABLE activity (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant_id     INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	at            TEXT NOT NULL,
	channel       TEXT NOT NULL,
	provider      TEXT NOT NULL DEFAULT '',
	method        TEXT NOT NULL DEFAULT '',
	endpoint      TEXT NOT NULL DEFAULT '',
	status        INTEGER NOT NULL DEFAULT 0,
	latency_ms    INTEGER NOT NULL DEFAULT 0,
	token_id      TEXT NOT NULL DEFAULT '',
	request_id    TEXT NOT NULL DEFAULT '',
	run_id        INTEGER NOT NULL DEFAULT 0,
	resource_type TEXT NOT NULL DEFAULT '',
	resource_id   TEXT NOT NULL DEFAULT '',
	subject       TEXT NOT NULL DEFAULT '',
	subject_fold  TEXT NOT NULL DEFAULT '',
	summary       TEXT NOT NULL,
	failed        INTEGER NOT NULL DEFAULT 0
);
-- Newest first, per tenant, and by each filter the ops API offers.
CREATE INDEX activity_tenant ON activity(tenant_id, id);
CREATE INDEX activity_channel ON activity(tenant_id, channel, id);
CREATE INDEX activity_failed ON activity(tenant_id, id) WHERE failed;
CREATE INDEX activity_resource ON activity(tenant_id, resource_id, id) WHERE resource_id <> '';
CREATE INDEX activity_subject ON activity(tenant_id, subject_fold, id) WHERE subject_fold <> '';
-- A tenant's records by time: since-filters, health figures, pruning.
CREATE INDEX activity_at ON activity(tenant_id, at);
