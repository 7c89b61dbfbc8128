package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// What operators read: a tenant's counts, pages of its users and groups, and
// which channel manages a user. The ops API and the CLI share these, so
// they answer alike. Pages are keyset pages (after the last key returned),
// so each costs its own size, whatever the tenant's.

// MaxPage bounds every page an ops read returns.
const MaxPage = 1000

// ManagedByBoth is ManagedBy's answer for a user both channels wrote
// (ChannelPush and ChannelPull, activity.go, are the others).
const ManagedByBoth = "both"

type channelKey struct{}

// WithChannel marks ctx as carrying writes from ch (ChannelPush or
// ChannelPull): the store then records on users what the push wrote
// (ManagedBy). The SCIM endpoint marks its requests; the pull's writes are
// known by the Entra object id they set.
func WithChannel(ctx context.Context, ch string) context.Context {
	return context.WithValue(ctx, channelKey{}, ch)
}

func (tx *Tx) pushing() bool {
	ch, _ := tx.ctx.Value(channelKey{}).(string)
	return ch == ChannelPush
}

// TenantCounts are a tenant's sizes.
type TenantCounts struct {
	Users       int `json:"users"`
	ActiveUsers int `json:"activeUsers"`
	Groups      int `json:"groups"`
}

// Counts counts a tenant's users, active users and groups: three COUNTs,
// each over an index range of the tenant (users_active, the groups'
// primary key), never the documents. They still cost per row of the
// tenant: 85 ms for all three at 1,000,000 users on SQLite
// (BenchmarkUserSearch).
func (db *DB) Counts(ctx context.Context, tenant int64) (TenantCounts, error) {
	var c TenantCounts
	err := db.read.GetContext(ctx, &c.Users, db.read.Rebind(`SELECT COUNT(*) FROM users WHERE tenant_id = ?`), tenant)
	if err == nil {
		err = db.read.GetContext(ctx, &c.ActiveUsers, db.read.Rebind(`SELECT COUNT(*) FROM users WHERE tenant_id = ? AND active = ?`), tenant, true)
	}
	if err == nil {
		err = db.read.GetContext(ctx, &c.Groups, db.read.Rebind(`SELECT COUNT(*) FROM groups WHERE tenant_id = ?`), tenant)
	}
	return c, err
}

// TenantsPage returns at most limit tenants by name, those named after
// after; with only set, only tenants named in it (an ops key's scope).
func (db *DB) TenantsPage(ctx context.Context, after string, only []string, limit int) ([]Tenant, error) {
	if limit <= 0 || limit > MaxPage {
		return nil, Errorf(Invalid, "a page of tenants needs a limit from 1 to %d, not %d", MaxPage, limit)
	}
	var rows []tenantRow
	q, args := `SELECT id, name, created_at FROM tenants WHERE name > ?`, []any{after}
	if only != nil {
		if len(only) == 0 {
			return nil, nil
		}
		var err error
		if q, args, err = inQuery(q+` AND name IN (?)`, after, only); err != nil {
			return nil, err
		}
	}
	if err := db.read.SelectContext(ctx, &rows, db.read.Rebind(q+` ORDER BY name LIMIT ?`), append(args, limit)...); err != nil {
		return nil, err
	}
	out := make([]Tenant, len(rows))
	for i, r := range rows {
		out[i] = r.tenant()
	}
	return out, nil
}

// UserQuery selects a page of a tenant's users, by id.
type UserQuery struct {
	// Search is a case-insensitive prefix of userName, displayName, an
	// email address, name.givenName or name.familyName.
	Search       string
	Active       *bool
	Group        string    // only direct members of this group id
	ChangedSince time.Time // only users modified at or after it
	After        string    // the last id of the page before
	Limit        int
}

// prefixRange is the range [lo, hi) of strings that begin with prefix, in
// byte order (SQLite's BINARY, PostgreSQL's "C" collation): hi is prefix
// with its last character incremented, so an index answers the search as
// a range. hi is "" when no string bounds it (a prefix of U+10FFFFs).
func prefixRange(prefix string) (lo, hi string) {
	b := []rune(prefix)
	for len(b) > 0 {
		r := b[len(b)-1] + 1
		if r >= 0xD800 && r <= 0xDFFF { // surrogates are not characters: skip them
			r = 0xE000
		}
		if r <= utf8.MaxRune {
			b[len(b)-1] = r
			return prefix, string(b)
		}
		b = b[:len(b)-1]
	}
	return prefix, ""
}

// searchPaths are the attribute index paths a user search reads besides
// the userName and displayName columns.
var searchPaths = []string{"emails.value", "name.givenname", "name.familyname"}

// searchScanAt is the number of index entries a search's prefix must match
// before UsersPage walks the users in id order instead of gathering the
// matches first. Gathering costs per match (a prefix of "j" on a big
// tenant: hundreds of thousands, seconds); walking costs per user passed
// over, about limit × users ÷ matches, which is small exactly when
// matches are many. BenchmarkUserSearch, SQLite, 1,000,000 users, a page
// of 101: a narrow prefix 0.05 ms, one matching 100,000 users 5.4 ms.
var searchScanAt = 20000 // a variable for tests of both ways

// UsersPage returns at most q.Limit users matching q, by id. A search is
// answered from indexes (users_user_name, users_display, attrs_value for
// emails and names): a narrow prefix by gathering the matching ids from
// index ranges, a broad one by walking users in id order and testing each
// against the same ranges (searchScanAt). A group's members are walked
// from the memberships' primary key. SQLite plans without statistics
// here, so the query names the table that drives it (CROSS JOIN keeps
// SQLite's join order; PostgreSQL plans it as any join).
func (db *DB) UsersPage(ctx context.Context, tenant int64, q UserQuery) ([]Resource, error) {
	if q.Limit <= 0 || q.Limit > MaxPage {
		return nil, Errorf(Invalid, "a page of users needs a limit from 1 to %d, not %d", MaxPage, q.Limit)
	}
	var lo, hi string
	broad := false
	if q.Search != "" {
		lo, hi = prefixRange(fold(q.Search))
		var err error
		if broad, err = db.broadSearch(ctx, tenant, lo, hi); err != nil {
			return nil, err
		}
	}
	var sb strings.Builder
	var args []any
	// rng is col's range for the search prefix, its values added to args.
	rng := func(col string) string {
		args = append(args, rangeArgs(lo, hi)...)
		if hi == "" {
			return col + " >= ?"
		}
		return col + " >= ? AND " + col + " < ?"
	}
	tag := UserKind.info().tag
	sb.WriteString(`SELECT r.id, r.entra_id, r.version, r.created_at, r.modified_at, r.doc FROM `)
	var order string
	byGroup := false
	switch {
	case q.Search != "" && !broad:
		args = append(args, tenant)
		// "|| ''" keeps SQLite from reading each part in id order (a
		// merge by the primary key, a scan of the tenant) instead of by
		// its index range.
		sb.WriteString("(SELECT id || '' AS id FROM users WHERE tenant_id = ? AND " + rng("user_name_fold"))
		args = append(args, tenant)
		sb.WriteString(" UNION SELECT id || '' FROM users WHERE tenant_id = ? AND " + rng("display_fold"))
		args = append(args, tenant, tag, searchPaths[0], searchPaths[1], searchPaths[2])
		sb.WriteString(" UNION SELECT resource_id || '' FROM attrs WHERE tenant_id = ? AND resource = ? AND path IN (?, ?, ?) AND " + rng("value_fold"))
		sb.WriteString(") m CROSS JOIN users r WHERE r.tenant_id = ? AND r.id = m.id AND m.id > ?")
		args = append(args, tenant, q.After)
		order = "m.id"
	case q.Group != "":
		byGroup = true
		sb.WriteString("memberships m CROSS JOIN users r WHERE m.tenant_id = ? AND m.group_id = ? AND m.member_id > ? AND r.tenant_id = m.tenant_id AND r.id = m.member_id")
		args = append(args, tenant, q.Group, q.After)
		order = "m.member_id"
	default:
		sb.WriteString("users r WHERE r.tenant_id = ? AND r.id > ?")
		args = append(args, tenant, q.After)
		order = "r.id"
	}
	if broad {
		sb.WriteString(" AND ((" + rng("r.user_name_fold") + ") OR (" + rng("r.display_fold") + ") OR EXISTS (SELECT 1 FROM attrs a " +
			"WHERE a.tenant_id = r.tenant_id AND a.resource = ? AND a.resource_id = r.id AND a.path IN (?, ?, ?) AND ")
		args = append(args, tag, searchPaths[0], searchPaths[1], searchPaths[2])
		sb.WriteString(rng("a.value_fold"))
		if db.dialect.name == postgresDialect.name {
			// Without this fence PostgreSQL hashes the subquery, reading
			// every matching index value of the tenant (a parallel scan of
			// attrs) before the first user: 321 ms a page at 1,000,000
			// users. Fenced, it probes attrs_owner for each user walked.
			sb.WriteString(" OFFSET 0")
		}
		sb.WriteString("))")
	}
	if q.Group != "" && !byGroup {
		sb.WriteString(" AND EXISTS (SELECT 1 FROM memberships g WHERE g.tenant_id = r.tenant_id AND g.group_id = ? AND g.member_id = r.id)")
		args = append(args, q.Group)
	}
	if q.Active != nil {
		sb.WriteString(" AND r.active = ?")
		args = append(args, *q.Active)
	}
	if !q.ChangedSince.IsZero() {
		sb.WriteString(" AND r.modified_at >= ?")
		args = append(args, formatTime(q.ChangedSince))
	}
	sb.WriteString(" ORDER BY " + order + " LIMIT ?")
	var rows []resourceRow
	if err := db.read.SelectContext(ctx, &rows, db.read.Rebind(sb.String()), append(args, q.Limit)...); err != nil {
		return nil, err
	}
	return resources(rows, UserKind, false)
}

func rangeArgs(lo, hi string) []any {
	if hi == "" {
		return []any{lo}
	}
	return []any{lo, hi}
}

// broadSearch reports whether the prefix [lo, hi) matches searchScanAt
// index entries or more, counting at most that many in each index.
func (db *DB) broadSearch(ctx context.Context, tenant int64, lo, hi string) (bool, error) {
	cond := func(col string) string {
		if hi == "" {
			return col + " >= ?"
		}
		return col + " >= ? AND " + col + " < ?"
	}
	r := rangeArgs(lo, hi)
	q := `SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM users WHERE tenant_id = ? AND ` + cond("user_name_fold") + ` LIMIT ?) a)
		+ (SELECT COUNT(*) FROM (SELECT 1 FROM users WHERE tenant_id = ? AND ` + cond("display_fold") + ` LIMIT ?) b)
		+ (SELECT COUNT(*) FROM (SELECT 1 FROM attrs WHERE tenant_id = ? AND resource = ? AND path IN (?, ?, ?) AND ` + cond("value_fold") + ` LIMIT ?) c)`
	args := append(append([]any{tenant}, r...), searchScanAt)
	args = append(append(append(args, tenant), r...), searchScanAt)
	args = append(append(append(args, tenant, UserKind.info().tag, searchPaths[0], searchPaths[1], searchPaths[2]), r...), searchScanAt)
	var n int
	err := db.read.GetContext(ctx, &n, db.read.Rebind(q), args...)
	return n >= searchScanAt, err
}

// GroupQuery selects a page of a tenant's groups, by id.
type GroupQuery struct {
	Search string // a case-insensitive prefix of displayName
	After  string // the last id of the page before
	Limit  int
}

// GroupsPage returns at most q.Limit groups matching q, by id.
func (db *DB) GroupsPage(ctx context.Context, tenant int64, q GroupQuery) ([]Resource, error) {
	if q.Limit <= 0 || q.Limit > MaxPage {
		return nil, Errorf(Invalid, "a page of groups needs a limit from 1 to %d, not %d", MaxPage, q.Limit)
	}
	where, args := "tenant_id = ? AND id > ?", []any{tenant, q.After}
	if q.Search != "" {
		lo, hi := prefixRange(fold(q.Search))
		where, args = where+" AND display_fold >= ?", append(args, lo)
		if hi != "" {
			where, args = where+" AND display_fold < ?", append(args, hi)
		}
	}
	var rows []resourceRow
	err := db.read.SelectContext(ctx, &rows, db.read.Rebind(`SELECT `+resourceColumns+` FROM groups WHERE `+where+` ORDER BY id LIMIT ?`),
		append(args, q.Limit)...)
	if err != nil {
		return nil, err
	}
	return resources(rows, GroupKind, false)
}

// ManagedBy tells which channels manage a user: "pull" when the pull
// linked it to an Entra object, "push" when SCIM wrote it (or it has no
// Entra object id: only the push creates those), "both" when both did.
// Users the push wrote before migration 0006 and the pull also linked
// count as "pull": the store did not record the push then.
func (db *DB) ManagedBy(ctx context.Context, tenant int64, id string) (string, error) {
	var row struct {
		EntraID  sql.NullString `db:"entra_id"`
		PushedAt sql.NullString `db:"pushed_at"`
	}
	err := db.read.GetContext(ctx, &row, db.read.Rebind(`SELECT entra_id, pushed_at FROM users WHERE tenant_id = ? AND id = ?`), tenant, id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", Errorf(NotFound, "User %q not found", id)
	}
	if err != nil {
		return "", err
	}
	switch {
	case row.EntraID.Valid && row.PushedAt.Valid:
		return ManagedByBoth, nil
	case row.EntraID.Valid:
		return ChannelPull, nil
	}
	return ChannelPush, nil
}
