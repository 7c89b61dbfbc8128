package store

import (
	"context"
	"math"
	"slices"
	"strings"
	"time"
)

// Activity channels.
const (
	ChannelPush = "push" // a SCIM request
	ChannelPull = "pull" // a change a Graph pull made
)

// Activity is one provisioning event told in words: a SCIM request, or
// one person or group a pull changed. Of a person it keeps only ids,
// userName and displayName.
type Activity struct {
	ID           int64     `json:"id"`
	TenantID     int64     `json:"-"`
	At           time.Time `json:"at"`
	Channel      string    `json:"kind"`               // push or pull
	Provider     string    `json:"provider,omitempty"` // push: the identity provider; pull: graph
	Method       string    `json:"method,omitempty"`
	Endpoint     string    `json:"endpoint,omitempty"`
	Status       int       `json:"status,omitempty"`
	LatencyMS    int64     `json:"latencyMs,omitempty"`
	TokenID      string    `json:"tokenId,omitempty"`
	RequestID    string    `json:"requestId,omitempty"`
	RunID        int64     `json:"runId,omitempty"`
	ResourceType string    `json:"resourceType,omitempty"` // User or Group
	ResourceID   string    `json:"resourceId,omitempty"`
	Subject      string    `json:"subject,omitempty"` // userName or displayName
	Summary      string    `json:"summary"`
	Failed       bool      `json:"failed"`
}

type activityRow struct {
	ID           int64  `db:"id"`
	TenantID     int64  `db:"tenant_id"`
	At           string `db:"at"`
	Channel      string `db:"channel"`
	Provider     string `db:"provider"`
	Method       string `db:"method"`
	Endpoint     string `db:"endpoint"`
	Status       int    `db:"status"`
	LatencyMS    int64  `db:"latency_ms"`
	TokenID      string `db:"token_id"`
	RequestID    string `db:"request_id"`
	RunID        int64  `db:"run_id"`
	ResourceType string `db:"resource_type"`
	ResourceID   string `db:"resource_id"`
	Subject      string `db:"subject"`
	Summary      string `db:"summary"`
	Failed       bool   `db:"failed"`
}

const activityColumns = `id, tenant_id, at, channel, provider, method, endpoint, status, latency_ms, token_id, request_id,
	run_id, resource_type, resource_id, subject, summary, failed`

// Bounds on what one record keeps: a client's text may be long, a record
// must not be.
const (
	maxActivityText    = 512 // summary
	maxActivityField   = 256 // subject, ids
	activityInsertRows = 100 // records per INSERT statement
	// MaxActivityPage caps a page of Activity.
	MaxActivityPage = 1000
)

// ActivityQuery selects a tenant's activity, newest first.
type ActivityQuery struct {
	Channel string    // "", ChannelPush or ChannelPull
	Failed  bool      // only failures
	Since   time.Time // zero: any time
	User    string    // a resource id, or a userName or displayName (any case)
	Before  int64     // cursor: records older than this id; 0: from the newest
	After   int64     // records newer than this id, oldest first (following new records); 0: none
	Limit   int       // at most MaxActivityPage; 0: 100
}

// RecordActivity stores records, in multi-row inserts in one transaction.
func (db *DB) RecordActivity(ctx context.Context, records []Activity) error {
	if len(records) == 0 {
		return nil
	}
	return db.Write(ctx, func(tx *Tx) error { return tx.RecordActivity(records) })
}

// RecordActivity stores records in the transaction: a pull's records commit
// with the changes they tell of, so a replayed page records nothing twice.
func (tx *Tx) RecordActivity(records []Activity) error {
	const cols = 17 // activityColumns without id, with subject_fold
	row := "(" + placeholders(cols) + ")"
	for start := 0; start < len(records); start += activityInsertRows {
		part := records[start:min(start+activityInsertRows, len(records))]
		var sb strings.Builder
		sb.WriteString(`INSERT INTO activity (tenant_id, at, channel, provider, method, endpoint, status, latency_ms, token_id,
			request_id, run_id, resource_type, resource_id, subject, subject_fold, summary, failed) VALUES `)
		args := make([]any, 0, len(part)*cols)
		for i, a := range part {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(row)
			at := a.At
			if at.IsZero() {
				at = tx.now
			}
			subject := clip(a.Subject, maxActivityField)
			args = append(args, a.TenantID, formatTime(at), a.Channel, clip(a.Provider, 32), clip(a.Method, 16),
				clip(a.Endpoint, 32), a.Status, a.LatencyMS, clip(a.TokenID, maxActivityField), clip(a.RequestID, maxActivityField),
				a.RunID, clip(a.ResourceType, 16), clip(a.ResourceID, maxActivityField), subject, strings.ToLower(subject),
				clip(a.Summary, maxActivityText), a.Failed)
		}
		if _, err := tx.exec(sb.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// clip cuts s to at most n bytes, on a character boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// Activity lists a tenant's activity, newest first (oldest first with
// q.After), as q selects.
func (db *DB) Activity(ctx context.Context, tenant int64, q ActivityQuery) ([]Activity, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxActivityPage)
	where := []string{"tenant_id = ?"}
	args := []any{tenant}
	if q.Channel != "" {
		where, args = append(where, "channel = ?"), append(args, q.Channel)
	}
	if q.Failed {
		where = append(where, "failed")
	}
	if !q.Since.IsZero() {
		// The id bound stops a newest-first walk once past the time: the
		// id of the tenant's first record from a little before it
		// (activity_at). Records are numbered as they are stored, a
		// moment after their time; sinceSlack covers that and clock skew
		// between nodes.
		where = append(where, "at >= ?", "id >= COALESCE((SELECT id FROM activity WHERE tenant_id = ? AND at >= ? ORDER BY tenant_id, at LIMIT 1), ?)")
		args = append(args, formatTime(q.Since), tenant, formatTime(q.Since.Add(-sinceSlack)), int64(math.MaxInt64))
	}
	if q.Before > 0 {
		where, args = append(where, "id < ?"), append(args, q.Before)
	}
	order := "DESC"
	if q.After > 0 {
		where, args = append(where, "id > ?"), append(args, q.After)
		order = "ASC"
	}
	query := `SELECT ` + activityColumns + ` FROM activity WHERE ` + strings.Join(where, " AND ") + ` ORDER BY id ` + order + ` LIMIT ?`
	if q.User != "" {
		// A user's records by either of two partial indexes (its id, its
		// name), each walked only as far as a page: an OR would walk the
		// tenant's whole activity instead. The <> '' terms let the planner
		// use the partial indexes.
		filters := strings.Join(where, " AND ")
		half := func(col string) string {
			return `SELECT id FROM (SELECT id FROM activity WHERE ` + filters + ` AND ` + col + ` = ? AND ` + col + ` <> '' ORDER BY id ` + order + ` LIMIT ?) AS by_` + col
		}
		query = `SELECT ` + activityColumns + ` FROM activity WHERE id IN (` + half("resource_id") + ` UNION ALL ` + half("subject_fold") +
			`) ORDER BY id ` + order + ` LIMIT ?`
		args = append(append(append(append(slices.Clone(args), q.User, limit), args...), strings.ToLower(q.User), limit), limit)
	} else {
		args = append(args, limit)
	}
	var rows []activityRow
	if err := db.read.SelectContext(ctx, &rows, db.read.Rebind(query), args...); err != nil {
		return nil, err
	}
	out := make([]Activity, len(rows))
	for i, r := range rows {
		out[i] = Activity{ID: r.ID, TenantID: r.TenantID, At: parseTime(r.At), Channel: r.Channel, Provider: r.Provider,
			Method: r.Method, Endpoint: r.Endpoint, Status: r.Status, LatencyMS: r.LatencyMS, TokenID: r.TokenID,
			RequestID: r.RequestID, RunID: r.RunID, ResourceType: r.ResourceType, ResourceID: r.ResourceID,
			Subject: r.Subject, Summary: r.Summary, Failed: r.Failed}
	}
	return out, nil
}

// sinceSlack is how much later than its time a record may be stored
// (the recorder's batching, a slow commit, clocks of nodes apart).
const sinceSlack = 5 * time.Minute

// pruneBatch bounds the records one pruning transaction deletes, so that
// pruning a large backlog never holds the writer long.
const pruneBatch = 5000

// PruneActivity deletes records older than before, tenant by tenant, a
// bounded batch per transaction (activity_at), and returns how many it
// deleted.
func (db *DB) PruneActivity(ctx context.Context, before time.Time) (int64, error) {
	var tenants []int64
	if err := db.read.SelectContext(ctx, &tenants, `SELECT id FROM tenants ORDER BY id`); err != nil {
		return 0, err
	}
	var total int64
	for _, tenant := range tenants {
		for {
			var n int64
			err := db.Write(ctx, func(tx *Tx) error {
				res, err := tx.exec(`DELETE FROM activity WHERE id IN
					(SELECT id FROM activity WHERE tenant_id = ? AND at < ? ORDER BY tenant_id, at LIMIT ?)`, tenant, formatTime(before), pruneBatch)
				if err != nil {
					return err
				}
				n, err = res.RowsAffected()
				return err
			})
			total += n
			if err != nil {
				return total, err
			}
			if n < pruneBatch {
				break
			}
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
	return total, nil
}

// PushStats is what a tenant's SCIM requests since a time tell of its
// health.
type PushStats struct {
	LastRequest *time.Time // the newest request ever recorded
	LastSuccess *time.Time // the newest request answered 2xx or 3xx
	Requests    int        // since the time asked
	Failed      int        // of those, answered with an error the client caused or met (4xx but 404 on lookups, 5xx)
}

// PushStats summarizes the tenant's SCIM requests: the newest, the newest
// success, and how many of those since since failed.
func (db *DB) PushStats(ctx context.Context, tenant int64, since time.Time) (PushStats, error) {
	var s PushStats
	var row struct {
		Requests int `db:"requests"`
		Failed   int `db:"failed"`
	}
	// By the tenant's records since the time (activity_at); "|| ''" keeps
	// the planner off the channel index, which would walk the tenant's
	// whole history of pushes.
	err := db.read.GetContext(ctx, &row, db.read.Rebind(`SELECT COUNT(*) AS requests, COALESCE(SUM(CASE WHEN failed THEN 1 ELSE 0 END), 0) AS failed
		FROM activity WHERE tenant_id = ? AND at >= ? AND channel || '' = ?`),
		tenant, formatTime(since), ChannelPush)
	if err != nil {
		return s, err
	}
	s.Requests, s.Failed = row.Requests, row.Failed
	for _, c := range []struct {
		dst   **time.Time
		where string
	}{{&s.LastRequest, ""}, {&s.LastSuccess, " AND NOT failed"}} {
		var at []string
		if err := db.read.SelectContext(ctx, &at, db.read.Rebind(`SELECT at FROM activity WHERE tenant_id = ? AND channel = ?`+c.where+
			` ORDER BY id DESC LIMIT 1`), tenant, ChannelPush); err != nil {
			return s, err
		}
		if len(at) == 1 {
			t := parseTime(at[0])
			*c.dst = &t
		}
	}
	return s, nil
}
