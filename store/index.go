package store

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
)

// attrRow is one leaf value of a document in the attribute index.
type attrRow struct {
	path  string // lower-cased: "emails.value", "urn:...:user:employeenumber"
	idx   int    // element number within a multi-valued attribute, else 0
	value string
}

// columnAttrs are kept in their own columns, so the index skips them.
var columnAttrs = map[string]bool{"username": true, "externalid": true, "displayname": true, "active": true}

// MaxIndexedValue is the longest string value (bytes) the attribute index
// holds, and so the highest max_value_length can be set to: the SCIM
// endpoint refuses longer values on write, so that no value it stored is
// missed by a filter. SQLite indexes keys of this length without trouble
// (they spill to overflow pages). PostgreSQL's B-tree refuses entries over
// about 2.7 KB: the PostgreSQL store will need to index a prefix or a hash
// of long values and recheck them against the row.
//
// Longer values can reach the store only past the SCIM limits (the Graph
// pull, documents stored before the limits); they are kept in the document
// but not indexed.
const MaxIndexedValue = 64 << 10

// indexRows flattens a document into attribute index rows.
func indexRows(doc map[string]any) []attrRow {
	var rows []attrRow
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic rows make tests and diffs stable
	for _, k := range keys {
		lk := strings.ToLower(k)
		if columnAttrs[lk] {
			continue
		}
		if strings.HasPrefix(lk, "urn:") {
			if ext, ok := doc[k].(map[string]any); ok {
				for ek, ev := range ext {
					rows = flatten(rows, lk+":"+strings.ToLower(ek), 0, ev)
				}
			}
			continue
		}
		rows = flatten(rows, lk, 0, doc[k])
	}
	return rows
}

func flatten(rows []attrRow, path string, idx int, v any) []attrRow {
	switch v := v.(type) {
	case nil:
	case string:
		if len(v) <= MaxIndexedValue {
			rows = append(rows, attrRow{path, idx, v})
		}
	case bool:
		rows = append(rows, attrRow{path, idx, strconv.FormatBool(v)})
	case json.Number:
		rows = append(rows, attrRow{path, idx, v.String()})
	case float64:
		rows = append(rows, attrRow{path, idx, strconv.FormatFloat(v, 'f', -1, 64)})
	case map[string]any:
		for k, sub := range v {
			rows = flatten(rows, path+"."+strings.ToLower(k), idx, sub)
		}
	case []any:
		for i, el := range v {
			rows = flatten(rows, path, i, el)
		}
	}
	return rows
}

// ownedRow is an attribute index row with the id of its resource.
type ownedRow struct {
	id string
	attrRow
}

// index writes attribute index rows, of one resource or many, in
// multi-row statements.
func (tx *Tx) index(tenant int64, kind Kind, rows []ownedRow) error {
	tag := kind.info().tag
	const perStatement = 100
	for len(rows) > 0 {
		n := min(len(rows), perStatement)
		var sb strings.Builder
		sb.WriteString(`INSERT INTO attrs (tenant_id, resource, resource_id, path, idx, value, value_fold) VALUES `)
		args := make([]any, 0, n*7)
		for i, a := range rows[:n] {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(?, ?, ?, ?, ?, ?, ?)")
			args = append(args, tenant, tag, a.id, a.path, a.idx, a.value, fold(a.value))
		}
		if _, err := tx.exec(sb.String(), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// reindex brings a stored resource's index rows to rows, touching only the
// rows that differ: an update of one attribute rewrites one row, not the
// document's every value (each row is two B-tree entries). The stored rows
// are read, not derived from the stored document, so they are the truth.
func (tx *Tx) reindex(tenant int64, kind Kind, id string, rows []attrRow) error {
	tag := kind.info().tag
	var stored []struct {
		Path  string `db:"path"`
		Idx   int    `db:"idx"`
		Value string `db:"value"`
	}
	if err := tx.selectRows(&stored, `SELECT path, idx, value FROM attrs WHERE tenant_id = ? AND resource = ? AND resource_id = ?`, tenant, tag, id); err != nil {
		return err
	}
	type slot struct {
		path string
		idx  int
	}
	want := make(map[slot]string, len(rows))
	for _, r := range rows {
		want[slot{r.path, r.idx}] = r.value
	}
	// A slot is kept when its one stored row already holds the wanted value.
	count := make(map[slot]int, len(stored))
	for _, s := range stored {
		count[slot{s.Path, s.Idx}]++
	}
	var gone []any
	kept := make(map[slot]bool, len(stored))
	for _, s := range stored {
		k := slot{s.Path, s.Idx}
		if v, ok := want[k]; ok && v == s.Value && count[k] == 1 {
			kept[k] = true
			continue
		}
		gone = append(gone, s.Path, s.Idx)
	}
	const perStatement = 100 // pairs: 200 parameters
	for len(gone) > 0 {
		n := min(len(gone), 2*perStatement)
		q := `DELETE FROM attrs WHERE tenant_id = ? AND resource = ? AND resource_id = ? AND (path, idx) IN (VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, CAST(? AS INTEGER)), ", n/2), ", ") + `)`
		if _, err := tx.exec(q, append([]any{tenant, tag, id}, gone[:n]...)...); err != nil {
			return err
		}
		gone = gone[n:]
	}
	var added []ownedRow
	for _, r := range rows {
		if !kept[slot{r.path, r.idx}] {
			added = append(added, ownedRow{id: id, attrRow: r})
		}
	}
	return tx.index(tenant, kind, added)
}
