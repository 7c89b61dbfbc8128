package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"
)

// Run statuses.
const (
	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
	RunHeld      = "held"      // deprovisions over the tenant's threshold wait for a confirmation
	RunThrottled = "throttled" // Graph asked us to come back later; not a failure
)

// Run is one pull of a tenant from Microsoft Graph.
type Run struct {
	ID            int64           `json:"id"`
	Tenant        string          `json:"tenant"`
	Trigger       string          `json:"trigger"` // schedule, cli, api, demo
	Mode          string          `json:"mode"`    // delta or full
	Status        string          `json:"status"`
	StartedAt     time.Time       `json:"startedAt"`
	FinishedAt    *time.Time      `json:"finishedAt"`
	Pages         int             `json:"pages"`
	UsersSeen     int             `json:"usersSeen"`
	GroupsSeen    int             `json:"groupsSeen"`
	Changes       json.RawMessage `json:"changes"` // counts by kind
	Held          int             `json:"held"`    // deprovisions not applied
	ThrottleWaits int             `json:"throttleWaits"`
	ThrottleMS    int64           `json:"throttleMs"`
	RetryAfterMS  int64           `json:"retryAfterMs,omitempty"`
	Error         string          `json:"error"`
}

type runRow struct {
	ID            int64          `db:"id"`
	Tenant        string         `db:"tenant"`
	Trigger       string         `db:"triggered_by"`
	Mode          string         `db:"mode"`
	Status        string         `db:"status"`
	StartedAt     string         `db:"started_at"`
	FinishedAt    sql.NullString `db:"finished_at"`
	Pages         int            `db:"pages"`
	UsersSeen     int            `db:"users_seen"`
	GroupsSeen    int            `db:"groups_seen"`
	Changes       string         `db:"changes"`
	Held          int            `db:"held"`
	ThrottleWaits int            `db:"throttle_waits"`
	ThrottleMS    int64          `db:"throttle_ms"`
	RetryAfterMS  int64          `db:"retry_after_ms"`
	Error         string         `db:"error"`
}

func (r runRow) run() Run {
	return Run{ID: r.ID, Tenant: r.Tenant, Trigger: r.Trigger, Mode: r.Mode, Status: r.Status, StartedAt: parseTime(r.StartedAt),
		FinishedAt: optTime(r.FinishedAt), Pages: r.Pages, UsersSeen: r.UsersSeen, GroupsSeen: r.GroupsSeen,
		Changes: json.RawMessage(r.Changes), Held: r.Held, ThrottleWaits: r.ThrottleWaits, ThrottleMS: r.ThrottleMS,
		RetryAfterMS: r.RetryAfterMS, Error: r.Error}
}

const runSelect = `SELECT r.id, t.name AS tenant, r.triggered_by, r.mode, r.status, r.started_at, r.finished_at, r.pages,
	r.users_seen, r.groups_seen, r.changes, r.held, r.throttle_waits, r.throttle_ms, r.retry_after_ms, r.error
	FROM sync_runs r JOIN tenants t ON t.id = r.tenant_id`

// AbandonedRunError is the error recorded on a run that was still marked
// running when the next run of its tenant took the run lock.
const AbandonedRunError = "interrupted: the node running it stopped before it finished (crash or kill), or could not record " +
	"how it ended; the run after it repairs what it left"

// FailAbandonedRuns marks the tenant's runs still marked running as failed
// (AbandonedRunError) and returns their ids. The caller holds the tenant's
// run lock, so none of them is really going: whoever ran them held the
// lock and lost it, or died.
func (tx *Tx) FailAbandonedRuns(t Tenant) ([]int64, error) {
	var ids []int64
	if err := tx.selectRows(&ids, `SELECT id FROM sync_runs WHERE tenant_id = ? AND status = ? ORDER BY id`, t.ID, RunRunning); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	_, err := tx.exec(`UPDATE sync_runs SET status = ?, finished_at = ?, error = ? WHERE tenant_id = ? AND status = ?`,
		RunFailed, formatTime(tx.now), AbandonedRunError, t.ID, RunRunning)
	return ids, err
}

// StartRun records a run as running, after FailAbandonedRuns (the caller
// holds the run lock).
func (tx *Tx) StartRun(t Tenant, trigger, mode string) (Run, error) {
	if _, err := tx.FailAbandonedRuns(t); err != nil {
		return Run{}, err
	}
	var id int64
	err := tx.get(&id, `INSERT INTO sync_runs (tenant_id, triggered_by, mode, status, started_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		t.ID, trigger, mode, RunRunning, formatTime(tx.now))
	if err != nil {
		return Run{}, err
	}
	return Run{ID: id, Tenant: t.Name, Trigger: trigger, Mode: mode, Status: RunRunning, StartedAt: tx.now, Changes: json.RawMessage("{}")}, nil
}

// FinishRun records how a run ended (and its mode, which a resync changes).
func (tx *Tx) FinishRun(r Run) error {
	if len(r.Changes) == 0 {
		r.Changes = json.RawMessage("{}")
	}
	_, err := tx.exec(`UPDATE sync_runs SET mode = ?, status = ?, finished_at = ?, pages = ?, users_seen = ?, groups_seen = ?,
		changes = ?, held = ?, throttle_waits = ?, throttle_ms = ?, retry_after_ms = ?, error = ? WHERE id = ?`,
		r.Mode, r.Status, formatTime(tx.now), r.Pages, r.UsersSeen, r.GroupsSeen, string(r.Changes), r.Held,
		r.ThrottleWaits, r.ThrottleMS, r.RetryAfterMS, r.Error, r.ID)
	return err
}

// Runs lists a tenant's runs, newest first.
func (db *DB) Runs(ctx context.Context, tenant string, limit int) ([]Run, error) {
	t, err := db.Tenant(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var rows []runRow
	if err := db.read.SelectContext(ctx, &rows, db.read.Rebind(runSelect+` WHERE r.tenant_id = ? ORDER BY r.id DESC LIMIT ?`), t.ID, limit); err != nil {
		return nil, err
	}
	out := make([]Run, len(rows))
	for i, r := range rows {
		out[i] = r.run()
	}
	return out, nil
}

// Run returns one run of a tenant.
func (db *DB) Run(ctx context.Context, tenant string, id int64) (Run, error) {
	var r runRow
	err := db.read.GetContext(ctx, &r, db.read.Rebind(runSelect+` WHERE t.name = ? AND r.id = ?`), tenant, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, Errorf(NotFound, "tenant %q has no run %d", tenant, id)
	}
	if err != nil {
		return Run{}, err
	}
	return r.run(), nil
}

// RunningRun returns the tenant's run marked running, if any.
func (db *DB) RunningRun(ctx context.Context, tenant string) (Run, bool, error) {
	return db.LastRun(ctx, tenant, RunRunning)
}

// LastRun returns the tenant's newest run with status, if any.
func (db *DB) LastRun(ctx context.Context, tenant string, status string) (Run, bool, error) {
	var r runRow
	err := db.read.GetContext(ctx, &r, db.read.Rebind(runSelect+` WHERE t.name = ? AND r.status = ? ORDER BY r.id DESC LIMIT 1`), tenant, status)
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, false, nil
	}
	if err != nil {
		return Run{}, false, err
	}
	return r.run(), true, nil
}
