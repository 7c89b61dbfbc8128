package store

import (
	"context"
	"database/sql"
	"time"
)

// PoolStats returns the write and read pools' figures (database/sql's),
// for metrics. A read-only store has no write pool: its figures are zero.
func (db *DB) PoolStats() (write, read sql.DBStats) {
	if db.write != nil {
		write = db.write.Stats()
	}
	return write, db.read.Stats()
}

// PullFreshness tells when a connected tenant's pull last succeeded.
type PullFreshness struct {
	Tenant   string
	Schedule string    // the connection's schedule; empty: the default
	Changed  time.Time // when its Graph connection was made or last changed
	// LastSuccess is when its last succeeded run finished; zero when none has.
	LastSuccess time.Time
}

// PullFreshness lists every tenant with a Graph connection and when its
// last succeeded run finished. One query, each tenant's runs read newest
// first by the (tenant_id, id) index until a succeeded one: metrics call
// it on every scrape.
func (db *DB) PullFreshness(ctx context.Context) ([]PullFreshness, error) {
	var rows []struct {
		Tenant      string         `db:"tenant"`
		Schedule    string         `db:"schedule"`
		Changed     string         `db:"updated_at"`
		LastSuccess sql.NullString `db:"last_success"`
	}
	err := db.read.SelectContext(ctx, &rows, db.read.Rebind(`SELECT t.name AS tenant, c.schedule, c.updated_at,
		(SELECT r.finished_at FROM sync_runs r WHERE r.tenant_id = c.tenant_id AND r.status = ? ORDER BY r.id DESC LIMIT 1) AS last_success
		FROM graph_connections c JOIN tenants t ON t.id = c.tenant_id ORDER BY t.name`), RunSucceeded)
	if err != nil {
		return nil, err
	}
	out := make([]PullFreshness, len(rows))
	for i, r := range rows {
		out[i] = PullFreshness{Tenant: r.Tenant, Schedule: r.Schedule, Changed: parseTime(r.Changed)}
		if r.LastSuccess.Valid {
			out[i].LastSuccess = parseTime(r.LastSuccess.String)
		}
	}
	return out, nil
}
