package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/store"
)

// opsDB is a database with tenants acme (three users, one inactive, in
// group Sales) and globex (one user).
func opsDB(t *testing.T) (db string, ids map[string]string) {
	t.Helper()
	db = filepath.Join(t.TempDir(), "ops.db")
	s, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids = map[string]string{}
	err = s.Write(context.Background(), func(tx *store.Tx) error {
		for _, name := range []string{"acme", "globex"} {
			tn, err := tx.CreateTenant(name)
			if err != nil {
				return err
			}
			docs := []map[string]any{{"userName": "gina@globex.com"}}
			if name == "acme" {
				docs = []map[string]any{
					{"userName": "jane@acme.com", "displayName": "Jane Doe", "emails": []any{map[string]any{"value": "jd@mail.example"}}},
					{"userName": "bob@acme.com", "displayName": "Bob", "active": false},
					{"userName": "carol@acme.com", "displayName": "Carol"},
				}
			}
			for _, d := range docs {
				r := &store.Resource{Kind: store.UserKind, Doc: d}
				if err := tx.Insert(tn.ID, r); err != nil {
					return err
				}
				ids[d["userName"].(string)] = r.ID
			}
			if name == "acme" {
				g := &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": "Sales"}}
				if err := tx.Insert(tn.ID, g); err != nil {
					return err
				}
				ids["Sales"] = g.ID
				if _, err := tx.AddMembers(tn.ID, g.ID, []string{ids["jane@acme.com"], ids["bob@acme.com"]}); err != nil {
					return err
				}
				run, err := tx.StartRun(tn, "cli", "full")
				if err != nil {
					return err
				}
				run.Status = store.RunSucceeded
				if err := tx.FinishRun(run); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return db, ids
}

func TestStatusCommand(t *testing.T) {
	db, _ := opsDB(t)
	out := mustRun(t, "status", "--db", db)
	if !strings.Contains(out, "TENANT") || !strings.Contains(out, "acme") || !strings.Contains(out, "globex") || !strings.Contains(out, "succeeded") {
		t.Errorf("status:\n%s", out)
	}
	var all []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "status", "--json", "--db", db)), &all); err != nil || len(all) != 2 {
		t.Fatalf("status --json: %v %v", all, err)
	}
	var one struct {
		Name     string
		Counts   store.TenantCounts
		Health   struct{ Status string }
		LastPull *store.Run
	}
	if err := json.Unmarshal([]byte(mustRun(t, "status", "acme", "--json", "--db", db)), &one); err != nil {
		t.Fatal(err)
	}
	if one.Name != "acme" || one.Counts != (store.TenantCounts{Users: 3, ActiveUsers: 2, Groups: 1}) || one.LastPull == nil || one.Health.Status == "" {
		t.Errorf("status acme --json: %+v", one)
	}
}

func TestUsersCommand(t *testing.T) {
	db, ids := opsDB(t)
	list := func(args ...string) []string {
		t.Helper()
		var us []struct{ UserName string }
		out := mustRun(t, append([]string{"users", "--json", "--db", db}, args...)...)
		if err := json.Unmarshal([]byte(out), &us); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		var names []string
		for _, u := range us {
			names = append(names, u.UserName)
		}
		return names
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"acme"}, "jane@acme.com bob@acme.com carol@acme.com"},
		{[]string{"acme", "--search", "JD@"}, "jane@acme.com"},
		{[]string{"acme", "--search", "b"}, "bob@acme.com"},
		{[]string{"acme", "--active", "false"}, "bob@acme.com"},
		{[]string{"acme", "--group", ids["Sales"]}, "jane@acme.com bob@acme.com"},
		{[]string{"acme", "--limit", "1", "--after", ids["jane@acme.com"]}, "bob@acme.com"},
		{[]string{"globex"}, "gina@globex.com"},
	} {
		if got := strings.Join(list(tc.args...), " "); got != tc.want {
			t.Errorf("users %v: %q, want %q", tc.args, got, tc.want)
		}
	}
	out, errOut, code := run(t, "users", "acme", "--limit", "2", "--db", db)
	if code != 0 || !strings.Contains(out, "jane@acme.com") || !strings.Contains(out, "USERNAME") || !strings.Contains(errOut, "--after "+ids["bob@acme.com"]) {
		t.Errorf("users acme --limit 2: %d\n%s%s", code, out, errOut)
	}
}

func TestRunsCommand(t *testing.T) {
	db, _ := opsDB(t)
	if out := mustRun(t, "runs", "acme", "--db", db); !strings.Contains(out, "succeeded") {
		t.Errorf("runs acme: %s", out)
	}
	var rs []store.Run
	if err := json.Unmarshal([]byte(mustRun(t, "runs", "globex", "--json", "--db", db)), &rs); err != nil || len(rs) != 0 {
		t.Errorf("runs globex --json: %v %v", rs, err)
	}
}

// TestOpsCommandErrors: unknown tenants and bad flags say what is wrong
// and what to do.
func TestOpsCommandErrors(t *testing.T) {
	db, _ := opsDB(t)
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"status", "nobody"}, 1, "entrasync tenant list"},
		{[]string{"users", "nobody"}, 1, `no tenant "nobody"`},
		{[]string{"runs", "nobody"}, 1, "entrasync tenant list"},
		{[]string{"users", "acme", "--active", "yes"}, 2, "--active must be true or false"},
		{[]string{"users", "acme", "--limit", "0"}, 2, "--limit must be from 1 to 1000"},
		{[]string{"users", "acme", "--group", "nope"}, 1, `no group "nope"`},
		{[]string{"runs", "acme", "--limit", "5000"}, 2, "--limit must be from 1 to 1000"},
		{[]string{"status", "acme", "globex"}, 2, "want 0 to 1 argument(s), got 2"},
		{[]string{"users"}, 2, "want 1 argument(s)"},
		{[]string{"users", "acme", "--serach", "x"}, 2, "did you mean --search?"},
	} {
		_, errOut, code := run(t, append(tc.args, "--db", db)...)
		if code != tc.code || !strings.Contains(errOut, tc.says) {
			t.Errorf("entrasync %v: exit %d %q; want %d saying %q", tc.args, code, errOut, tc.code, tc.says)
		}
	}
}
