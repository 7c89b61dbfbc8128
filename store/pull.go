package store

import (
	"context"
	"strings"
	"time"
)

// This file holds what the Graph pull worker asks of the store beyond the
// resource API: lookups by Entra object id, scope, delta links and leases.
// A resource with an Entra id is one the pull manages.

// ByEntraID returns the tenant's resources of kind whose Entra object ids
// are among ids, keyed by Entra id (lower case).
func (db *DB) ByEntraID(ctx context.Context, tenant int64, kind Kind, ids []string) (map[string]Resource, error) {
	list, err := db.resourcesIn(ctx, tenant, kind, "entra_id", lowerAll(ids))
	out := make(map[string]Resource, len(list))
	for _, r := range list {
		out[r.EntraID] = r
	}
	return out, err
}

// resourcesIn returns the tenant's resources of kind whose column holds one
// of values, in chunks that keep the bound parameters few.
func (db *DB) resourcesIn(ctx context.Context, tenant int64, kind Kind, column string, values []string) ([]Resource, error) {
	var out []Resource
	for _, part := range chunks(dedupe(values)) {
		var rows []resourceRow
		q, args, err := inQuery(`SELECT `+resourceColumns+` FROM `+kind.info().table+` WHERE tenant_id = ? AND `+column+` IN (?)`, tenant, part)
		if err != nil {
			return nil, err
		}
		if err := db.read.SelectContext(ctx, &rows, db.read.Rebind(q), args...); err != nil {
			return nil, err
		}
		list, err := resources(rows, kind, false)
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	return out, nil
}

func lowerAll(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strings.ToLower(id)
	}
	return dedupe(out)
}

// EntraUser is what FindUsersForEntra matches a Graph user by.
type EntraUser struct{ ObjectID, UPN string }

// FindUsersForEntra finds the users Graph users who are not yet linked by
// Entra id should become, keyed by object id (lower case): the one whose
// externalId is the object id (the mapping the README recommends for
// push), else the one whose userName is the userPrincipalName. Users
// linked to another Entra id are not matched. It asks a page's users in
// two queries, not two each.
func (db *DB) FindUsersForEntra(ctx context.Context, tenant int64, users []EntraUser) (map[string]Resource, error) {
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = u.ObjectID
	}
	out, err := db.unlinked(ctx, tenant, UserKind, "lower(external_id)", lowerAll(ids))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, u := range users {
		if _, ok := out[strings.ToLower(u.ObjectID)]; !ok && u.UPN != "" {
			names = append(names, fold(u.UPN))
		}
	}
	byName, err := db.unlinked(ctx, tenant, UserKind, "user_name_fold", dedupe(names))
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		id := strings.ToLower(u.ObjectID)
		if _, ok := out[id]; ok || u.UPN == "" {
			continue
		}
		if r, ok := byName[fold(u.UPN)]; ok {
			out[id] = r
		}
	}
	return out, nil
}

// FindGroupsForEntra finds the unlinked groups whose externalId is one of
// the object ids (Entra's default mapping for pushed groups), keyed by
// object id (lower case).
func (db *DB) FindGroupsForEntra(ctx context.Context, tenant int64, objectIDs []string) (map[string]Resource, error) {
	return db.unlinked(ctx, tenant, GroupKind, "lower(external_id)", lowerAll(objectIDs))
}

// unlinked returns the oldest resource without an Entra id for each value
// that expr (an indexed expression) has among values, keyed by the value.
// The oldest is picked here, not by ORDER BY, which would lead the planner
// to walk the tenant in id order instead of using expr's index.
func (db *DB) unlinked(ctx context.Context, tenant int64, kind Kind, expr string, values []string) (map[string]Resource, error) {
	oldest := map[string]resourceRow{}
	for _, part := range chunks(values) {
		var rows []struct {
			Key string `db:"match_key"`
			resourceRow
		}
		q, args, err := inQuery(`SELECT `+expr+` AS match_key, `+resourceColumns+` FROM `+kind.info().table+`
			WHERE tenant_id = ? AND `+expr+` IN (?) AND entra_id IS NULL`, tenant, part)
		if err != nil {
			return nil, err
		}
		if err := db.read.SelectContext(ctx, &rows, db.read.Rebind(q), args...); err != nil {
			return nil, err
		}
		for _, r := range rows {
			if first, ok := oldest[r.Key]; !ok || r.ID < first.ID {
				oldest[r.Key] = r.resourceRow
			}
		}
	}
	out := make(map[string]Resource, len(oldest))
	for key, row := range oldest {
		r, err := row.resource(kind)
		if err != nil {
			return nil, err
		}
		out[key] = r
	}
	return out, nil
}

// ScopeGroups returns the local ids of the groups in scope: roots and,
// when nested, every group reachable from them through group members.
func (db *DB) ScopeGroups(ctx context.Context, tenant int64, roots []string, nested bool) ([]string, error) {
	if len(roots) == 0 {
		return nil, nil
	}
	if !nested {
		return dedupe(roots), nil
	}
	var out []string
	q, args, err := inQuery(`WITH RECURSIVE scope(id) AS (
			SELECT id FROM groups WHERE tenant_id = ? AND id IN (?)
			UNION
			SELECT m.member_id FROM memberships m JOIN scope s ON m.group_id = s.id
			WHERE m.tenant_id = ? AND m.member_type = 'Group')
		SELECT id FROM scope ORDER BY id`, tenant, roots, tenant)
	if err != nil {
		return nil, err
	}
	err = db.read.SelectContext(ctx, &out, db.read.Rebind(q), args...)
	return out, err
}

// MembersOfAny tells which of users (local ids) are direct members of any
// of groups.
func (db *DB) MembersOfAny(ctx context.Context, tenant int64, users, groups []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(users) == 0 || len(groups) == 0 {
		return out, nil
	}
	for _, part := range chunks(dedupe(users)) {
		var ids []string
		q, args, err := inQuery(`SELECT DISTINCT member_id FROM memberships WHERE tenant_id = ? AND member_id IN (?) AND group_id IN (?)`, tenant, part, groups)
		if err != nil {
			return nil, err
		}
		if err := db.read.SelectContext(ctx, &ids, db.read.Rebind(q), args...); err != nil {
			return nil, err
		}
		for _, id := range ids {
			out[id] = true
		}
	}
	return out, nil
}

// PulledUsersOutside returns the users the pull manages that are members
// of none of groups (all of them when groups is empty); activeOnly limits
// it to active users.
func (db *DB) PulledUsersOutside(ctx context.Context, tenant int64, groups []string, activeOnly bool) ([]Resource, error) {
	q := `SELECT ` + resourceColumns + ` FROM users u WHERE u.tenant_id = ? AND u.entra_id IS NOT NULL`
	args := []any{tenant}
	if activeOnly {
		q += ` AND u.active = ?`
		args = append(args, true)
	}
	if len(groups) > 0 {
		q += ` AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.tenant_id = u.tenant_id AND m.member_id = u.id AND m.group_id IN (?))`
		args = append(args, groups)
	}
	q, args, err := inQuery(q+` ORDER BY u.id`, args...)
	if err != nil {
		return nil, err
	}
	var rows []resourceRow
	if err := db.read.SelectContext(ctx, &rows, db.read.Rebind(q), args...); err != nil {
		return nil, err
	}
	return resources(rows, UserKind, false)
}

// PulledGroupsOutside returns the local ids of groups the pull manages
// that are not among groups and still have members.
func (db *DB) PulledGroupsOutside(ctx context.Context, tenant int64, groups []string) ([]string, error) {
	q := `SELECT g.id FROM groups g WHERE g.tenant_id = ? AND g.entra_id IS NOT NULL
		AND EXISTS (SELECT 1 FROM memberships m WHERE m.tenant_id = g.tenant_id AND m.group_id = g.id)`
	args := []any{tenant}
	if len(groups) > 0 {
		q += ` AND g.id NOT IN (?)`
		args = append(args, groups)
	}
	q, args, err := inQuery(q+` ORDER BY g.id`, args...)
	if err != nil {
		return nil, err
	}
	var out []string
	err = db.read.SelectContext(ctx, &out, db.read.Rebind(q), args...)
	return out, err
}

// CountPulledUsers counts the active users the pull manages.
func (db *DB) CountPulledUsers(ctx context.Context, tenant int64) (int, error) {
	var n int
	err := db.read.GetContext(ctx, &n, db.read.Rebind(`SELECT COUNT(*) FROM users WHERE tenant_id = ? AND entra_id IS NOT NULL AND active = ?`), tenant, true)
	return n, err
}

// PulledUsers pages through the users the pull manages, by local id,
// leaving out those modified since before.
func (db *DB) PulledUsers(ctx context.Context, tenant int64, after string, limit int, before time.Time) ([]Resource, error) {
	var rows []resourceRow
	err := db.read.SelectContext(ctx, &rows, db.read.Rebind(`SELECT `+resourceColumns+` FROM users
		WHERE tenant_id = ? AND entra_id IS NOT NULL AND id > ? AND modified_at < ? ORDER BY id LIMIT ?`), tenant, after, formatTime(before), limit)
	if err != nil {
		return nil, err
	}
	return resources(rows, UserKind, false)
}

// MarkSeen stamps the memberships of ids in group with run: a full pull
// saw them.
func (tx *Tx) MarkSeen(tenant int64, groupID string, ids []string, run int64) error {
	for _, part := range chunks(dedupe(ids)) {
		q, args, err := inQuery(`UPDATE memberships SET seen = ? WHERE tenant_id = ? AND group_id = ? AND member_id IN (?)`, run, tenant, groupID, part)
		if err != nil {
			return err
		}
		if _, err := tx.exec(q, args...); err != nil {
			return err
		}
	}
	return nil
}

// LeaveGroups removes member from every group the pull manages (groups
// with an Entra id), as when Entra soft-deletes a person; groups only SCIM
// knows keep them.
func (tx *Tx) LeaveGroups(tenant int64, memberID string) (removed int, err error) {
	var groups []string
	err = tx.selectRows(&groups, `SELECT m.group_id FROM memberships m JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id
		WHERE m.tenant_id = ? AND m.member_id = ? AND g.entra_id IS NOT NULL ORDER BY m.group_id`, tenant, memberID)
	if err != nil {
		return 0, err
	}
	for _, g := range groups {
		n, err := tx.RemoveMembers(tenant, g, []string{memberID})
		if err != nil {
			return removed, err
		}
		removed += n
	}
	return removed, nil
}

// SweepUnseen removes the memberships of group that run did not see.
func (tx *Tx) SweepUnseen(tenant int64, groupID string, run int64) (removed int, err error) {
	res, err := tx.exec(`DELETE FROM memberships WHERE tenant_id = ? AND group_id = ? AND (seen IS NULL OR seen <> ?)`, tenant, groupID, run)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), tx.touchIf(tenant, groupID, int(n))
}

// LoadDeltaLink returns a stored delta link and when it was saved ("" when none).
func (db *DB) LoadDeltaLink(ctx context.Context, tenant int64, key string) (string, time.Time, error) {
	var r struct {
		Link    string `db:"link"`
		SavedAt string `db:"saved_at"`
	}
	err := db.read.GetContext(ctx, &r, db.read.Rebind(`SELECT link, saved_at FROM delta_tokens WHERE tenant_id = ? AND key = ?`), tenant, key)
	if errNoRows(err) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, err
	}
	return r.Link, parseTime(r.SavedAt), nil
}

// SaveDeltaLink stores a delta link.
func (tx *Tx) SaveDeltaLink(tenant int64, key, link string) error {
	_, err := tx.exec(`INSERT INTO delta_tokens (tenant_id, key, link, saved_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (tenant_id, key) DO UPDATE SET link = excluded.link, saved_at = excluded.saved_at`, tenant, key, link, formatTime(tx.now))
	return err
}

// ForgetDeltaLinks drops a tenant's delta links whose keys are not in keep
// (all of them when keep is empty).
func (tx *Tx) ForgetDeltaLinks(tenant int64, keep []string) error {
	q, args := `DELETE FROM delta_tokens WHERE tenant_id = ?`, []any{tenant}
	if len(keep) > 0 {
		q += ` AND key NOT IN (?)`
		args = append(args, keep)
	}
	q, args, err := inQuery(q, args...)
	if err != nil {
		return err
	}
	_, err = tx.exec(q, args...)
	return err
}

// AcquireLease takes the lease name for holder until ttl from now, when it
// is free, expired, or already holder's (a renewal). It reports whether
// holder has it.
func (tx *Tx) AcquireLease(name, holder string, ttl time.Duration) (bool, error) {
	var cur struct {
		Holder    string `db:"holder"`
		ExpiresAt string `db:"expires_at"`
	}
	err := tx.get(&cur, `SELECT holder, expires_at FROM leases WHERE name = ?`+tx.db.dialect.lock(lockUpdate), name)
	switch {
	case errNoRows(err):
	case err != nil:
		return false, err
	case cur.Holder != holder && parseTime(cur.ExpiresAt).After(tx.now):
		return false, nil
	}
	// The condition repeats the check in the statement: where writes run
	// side by side, two holders that both found no row race to insert it,
	// and the one that finds the other's row takes it only if it expired.
	res, err := tx.exec(`INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= ?`,
		name, holder, formatTime(tx.now.Add(ttl)), formatTime(tx.now))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// ReleaseLease gives the lease up, if holder has it.
func (tx *Tx) ReleaseLease(name, holder string) error {
	_, err := tx.exec(`DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder)
	return err
}

// GetMany returns the resources of kind among ids, keyed by local id.
func (db *DB) GetMany(ctx context.Context, tenant int64, kind Kind, ids []string) (map[string]Resource, error) {
	list, err := db.resourcesIn(ctx, tenant, kind, "id", ids)
	out := make(map[string]Resource, len(list))
	for _, r := range list {
		out[r.ID] = r
	}
	return out, err
}

// MembershipPairs tells which (group, member) pairs among groups x members exist.
func (db *DB) MembershipPairs(ctx context.Context, tenant int64, groups, members []string) (map[[2]string]bool, error) {
	out := map[[2]string]bool{}
	if len(groups) == 0 || len(members) == 0 {
		return out, nil
	}
	for _, part := range chunks(dedupe(members)) {
		var rows []struct {
			Group  string `db:"group_id"`
			Member string `db:"member_id"`
		}
		q, args, err := inQuery(`SELECT group_id, member_id FROM memberships WHERE tenant_id = ? AND group_id IN (?) AND member_id IN (?)`, tenant, groups, part)
		if err != nil {
			return nil, err
		}
		if err := db.read.SelectContext(ctx, &rows, db.read.Rebind(q), args...); err != nil {
			return nil, err
		}
		for _, r := range rows {
			out[[2]string{r.Group, r.Member}] = true
		}
	}
	return out, nil
}

// UsersByUserName returns the users holding any of names (compared
// folded), keyed by folded userName.
func (db *DB) UsersByUserName(ctx context.Context, tenant int64, names []string) (map[string]Resource, error) {
	folded := make([]string, len(names))
	for i, n := range names {
		folded[i] = fold(n)
	}
	list, err := db.resourcesIn(ctx, tenant, UserKind, "user_name_fold", folded)
	out := make(map[string]Resource, len(list))
	for _, r := range list {
		out[fold(r.Str("userName"))] = r
	}
	return out, err
}

// RefreshPlannerStats has PostgreSQL sample the tables a pull grows. Its
// planner costs a query by the row counts it last sampled, and autovacuum
// samples a table only once a tenth of it changed, at its next round (a
// minute by default): a first pull grows the tables from nothing in less,
// and its lookups (entra_id IN (...)) were planned as for empty tables, as
// scans of the whole table, a page's cost growing with the tenant
// (measured: 10,000 users pulled in 21 s, in 9.5 s with fresh samples).
// ANALYZE reads a bounded sample and blocks no reads or writes. SQLite
// plans by its indexes, without samples: nothing to do.
func (db *DB) RefreshPlannerStats(ctx context.Context) error {
	if db.dialect.name != postgresDialect.name {
		return nil
	}
	_, err := db.read.ExecContext(ctx, `ANALYZE users, groups, memberships, attrs`)
	return err
}
