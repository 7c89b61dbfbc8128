package store

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

// TestReindexWritesOnlyChanges: an update leaves the index rows exactly
// those of the new document, and rewrites only the rows that changed.
func TestReindexWritesOnlyChanges(t *testing.T) {
	ctx := context.Background()
	for name, dsn := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "ix.db") },
		"postgres": func(t *testing.T) string { return PostgresForTest(t) },
	} {
		t.Run(name, func(t *testing.T) {
			db, err := Open(ctx, dsn(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			doc := func(title string, emails ...string) map[string]any {
				var list []any
				for _, e := range emails {
					list = append(list, map[string]any{"value": e, "type": "work"})
				}
				return map[string]any{"userName": "ada", "title": title, "emails": list,
					"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"department": "R&D"}}
			}
			u := &Resource{Kind: UserKind, Doc: doc("CTO", "a@x.com", "b@x.com")}
			var tn Tenant
			if err := db.Write(ctx, func(tx *Tx) error {
				if tn, err = tx.CreateTenant("ix"); err != nil {
					return err
				}
				return tx.Insert(tn.ID, u)
			}); err != nil {
				t.Fatal(err)
			}
			type row struct {
				Path  string `db:"path"`
				Idx   int    `db:"idx"`
				Value string `db:"value"`
				RowID int64  `db:"rowid"`
			}
			sqlite := !db.dialect.concurrentWrites // rows have a rowid, which tells a rewritten row
			stored := func() map[string]row {
				var rows []row
				q := db.read.Rebind(`SELECT path, idx, value, 0 AS rowid FROM attrs WHERE tenant_id = ? AND resource_id = ?`)
				if sqlite {
					q = `SELECT path, idx, value, rowid FROM attrs WHERE tenant_id = ? AND resource_id = ?`
				}
				if err := db.read.SelectContext(ctx, &rows, q, tn.ID, u.ID); err != nil {
					t.Fatal(err)
				}
				out := map[string]row{}
				for _, r := range rows {
					out[fmt.Sprintf("%s|%d|%s", r.Path, r.Idx, r.Value)] = r
				}
				return out
			}
			before := stored()
			u.Doc = doc("CEO", "a@x.com", "c@x.com", "d@x.com")
			if err := db.Write(ctx, func(tx *Tx) error { _, _, err := tx.Update(tn.ID, u, 0); return err }); err != nil {
				t.Fatal(err)
			}
			after := stored()
			var want, got []string
			for _, r := range indexRows(u.Doc) {
				want = append(want, fmt.Sprintf("%s|%d|%s", r.path, r.idx, r.value))
			}
			for k := range after {
				got = append(got, k)
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("index after the update:\n got %v\nwant %v", got, want)
			}
			if sqlite {
				const dept = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:department|0|R&D"
				// Unchanged values keep their rows; SQLite's rowid tells.
				if before["emails.value|0|a@x.com"].RowID != after["emails.value|0|a@x.com"].RowID {
					t.Errorf("an unchanged value's row was rewritten")
				}
				if before[dept].RowID != after[dept].RowID || before[dept].RowID == 0 {
					t.Errorf("an unchanged extension value's row was rewritten")
				}
			}
		})
	}
}
