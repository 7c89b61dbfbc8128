package store

import (
	"context"
	"slices"
	"sort"
	"strings"
)

// Member is one member of a group.
type Member struct {
	ID      string `db:"member_id"`
	Kind    Kind   `db:"member_type"`
	Display string `db:"display"`
}

// maxParams keeps IN lists and multi-row inserts well inside every driver's
// limit on bound parameters.
const maxParams = 500

// chunks splits ids into slices of at most maxParams.
func chunks(ids []string) [][]string {
	var out [][]string
	for len(ids) > 0 {
		n := min(len(ids), maxParams)
		out = append(out, ids[:n])
		ids = ids[n:]
	}
	return out
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// memberKinds tells, for each id, whether it is a user or a group of the
// tenant; an id that is neither is an Invalid error naming it.
func (tx *Tx) memberKinds(tenant int64, groupID string, ids []string) (map[string]Kind, error) {
	kindOf := make(map[string]Kind, len(ids))
	for _, part := range chunks(ids) {
		for _, k := range []Kind{UserKind, GroupKind} {
			if k == GroupKind {
				// Only what is not a user can be a group: members are
				// mostly users, and each query is a round trip.
				part = slices.DeleteFunc(slices.Clone(part), func(id string) bool { _, user := kindOf[id]; return user })
				if len(part) == 0 {
					break
				}
			}
			var found []string
			// Key-share locked: a member found here cannot be deleted
			// before this transaction commits, which would leave its
			// membership behind.
			q, args, err := inQuery(`SELECT id FROM `+k.info().table+` WHERE tenant_id = ? AND id IN (?)`+tx.db.dialect.lock(lockKeyShare), tenant, part)
			if err != nil {
				return nil, err
			}
			if err := tx.selectRows(&found, q, args...); err != nil {
				return nil, err
			}
			for _, id := range found {
				kindOf[id] = k
			}
		}
	}
	for _, id := range ids {
		if id == groupID {
			return nil, Errorf(Invalid, "a group cannot be a member of itself")
		}
		if _, ok := kindOf[id]; !ok {
			return nil, Errorf(Invalid, "member %q is not a user or group of this tenant", id)
		}
	}
	return kindOf, nil
}

// AddMembers makes ids members of group; ids that already are members are
// left alone. It costs per id named, whatever the group's size.
func (tx *Tx) AddMembers(tenant int64, groupID string, ids []string) (added int, err error) {
	ids = dedupe(ids)
	if len(ids) == 0 {
		return 0, nil
	}
	if err := tx.requireGroup(tenant, groupID); err != nil {
		return 0, err
	}
	kindOf, err := tx.memberKinds(tenant, groupID, ids)
	if err != nil {
		return 0, err
	}
	for _, part := range chunks(ids) {
		var sb strings.Builder
		sb.WriteString(`INSERT INTO memberships (tenant_id, group_id, member_id, member_type) VALUES `)
		args := make([]any, 0, 4*len(part))
		for i, id := range part {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(?, ?, ?, ?)")
			args = append(args, tenant, groupID, id, string(kindOf[id]))
		}
		sb.WriteString(` ON CONFLICT DO NOTHING`)
		res, err := tx.exec(sb.String(), args...)
		if err != nil {
			return added, err
		}
		n, _ := res.RowsAffected()
		added += int(n)
	}
	return added, tx.touchIf(tenant, groupID, added)
}

// RemoveMembers removes ids from group; ids that are not members are
// ignored, so a replayed removal is harmless.
func (tx *Tx) RemoveMembers(tenant int64, groupID string, ids []string) (removed int, err error) {
	ids = dedupe(ids)
	if err := tx.requireGroup(tenant, groupID); err != nil {
		return 0, err
	}
	for _, part := range chunks(ids) {
		q, args, err := inQuery(`DELETE FROM memberships WHERE tenant_id = ? AND group_id = ? AND member_id IN (?)`, tenant, groupID, part)
		if err != nil {
			return removed, err
		}
		res, err := tx.exec(q, args...)
		if err != nil {
			return removed, err
		}
		n, _ := res.RowsAffected()
		removed += int(n)
	}
	return removed, tx.touchIf(tenant, groupID, removed)
}

// SetMembers makes ids the whole membership of group (SCIM PUT, or a PATCH
// replace of members). Unlike Add and Remove it costs per current member.
func (tx *Tx) SetMembers(tenant int64, groupID string, ids []string) (added, removed int, err error) {
	ids = dedupe(ids)
	if err := tx.requireGroup(tenant, groupID); err != nil {
		return 0, 0, err
	}
	var current []string
	if err := tx.selectRows(&current, `SELECT member_id FROM memberships WHERE tenant_id = ? AND group_id = ?`, tenant, groupID); err != nil {
		return 0, 0, err
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var gone []string
	for _, id := range current {
		if !want[id] {
			gone = append(gone, id)
		}
	}
	if removed, err = tx.RemoveMembers(tenant, groupID, gone); err != nil {
		return 0, 0, err
	}
	added, err = tx.AddMembers(tenant, groupID, ids)
	return added, removed, err
}

// requireGroup fails with NotFound unless the group exists. It locks the
// group's row: membership changes of one group take turns, so a SetMembers
// works on the membership it read, and the group cannot go meanwhile.
func (tx *Tx) requireGroup(tenant int64, groupID string) error {
	var ids []string
	if err := tx.selectRows(&ids, `SELECT id FROM groups WHERE tenant_id = ? AND id = ?`+tx.db.dialect.lock(lockUpdate), tenant, groupID); err != nil {
		return err
	}
	if len(ids) == 0 {
		return Errorf(NotFound, "Group %q not found", groupID)
	}
	return nil
}

// touchIf bumps a group's version when its membership changed.
func (tx *Tx) touchIf(tenant int64, groupID string, changed int) error {
	if changed == 0 {
		return nil
	}
	tx.changed(tenant)
	_, err := tx.exec(`UPDATE groups SET version = version + 1, modified_at = ? WHERE tenant_id = ? AND id = ?`,
		formatTime(tx.now), tenant, groupID)
	return err
}

// membersQuery selects a group's members with their display names; the
// caller adds the order and any page bounds.
const membersQuery = `SELECT m.member_id, m.member_type,
		COALESCE(u.display_name, u.user_name, g.display_name, '') AS display
		FROM memberships m
		LEFT JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.member_id
		LEFT JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.member_id
		WHERE m.tenant_id = ? AND m.group_id = ?`

// Members returns a group's members with their display names, by id. It
// holds the whole membership at once: answers that may be large read
// MembersPage instead.
func (db *DB) Members(ctx context.Context, tenant int64, groupID string) ([]Member, error) {
	var out []Member
	err := db.read.SelectContext(ctx, &out, db.read.Rebind(membersQuery+` ORDER BY m.member_id`), tenant, groupID)
	return out, err
}

// MembersPage returns at most limit of a group's members, by id, those
// with ids after after ("" for the first page). A group is read whole by
// asking again after the last id returned, until a page comes back short:
// the cost of each page is its own size (keyset paging on the primary
// key), whatever the group's.
func (db *DB) MembersPage(ctx context.Context, tenant int64, groupID, after string, limit int) ([]Member, error) {
	if limit <= 0 {
		return nil, Errorf(Invalid, "a page of members needs a positive limit, not %d", limit)
	}
	var out []Member
	err := db.read.SelectContext(ctx, &out, db.read.Rebind(membersQuery+` AND m.member_id > ? ORDER BY m.member_id LIMIT ?`),
		tenant, groupID, after, limit)
	return out, err
}

// GroupRef names a group a user belongs to.
type GroupRef struct {
	ID      string `db:"group_id"`
	Display string `db:"display"`
}

// GroupsOf returns, for each of the ids, the groups it is a direct member of.
func (db *DB) GroupsOf(ctx context.Context, tenant int64, ids []string) (map[string][]GroupRef, error) {
	out := make(map[string][]GroupRef, len(ids))
	for _, part := range chunks(dedupe(ids)) {
		var rows []struct {
			MemberID string `db:"member_id"`
			GroupRef
		}
		q, args, err := inQuery(`SELECT m.member_id, g.id AS group_id, g.display_name AS display
			FROM memberships m JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id
			WHERE m.tenant_id = ? AND m.member_id IN (?)`, tenant, part)
		if err != nil {
			return nil, err
		}
		if err := db.read.SelectContext(ctx, &rows, db.read.Rebind(q), args...); err != nil {
			return nil, err
		}
		for _, r := range rows {
			out[r.MemberID] = append(out[r.MemberID], r.GroupRef)
		}
	}
	for _, refs := range out {
		sort.Slice(refs, func(i, j int) bool { return refs[i].ID < refs[j].ID })
	}
	return out, nil
}
