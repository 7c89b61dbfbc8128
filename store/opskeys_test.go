package store_test

import (
	"testing"

	"github.com/entrasync/entrasync/store"
)

func TestOpsRoles(t *testing.T) {
	for _, tc := range []struct {
		have, need store.OpsRole
		ok         bool
	}{
		{store.OpsRead, store.OpsRead, true}, {store.OpsRead, store.OpsSync, false}, {store.OpsRead, store.OpsAdmin, false},
		{store.OpsSync, store.OpsRead, true}, {store.OpsSync, store.OpsSync, true}, {store.OpsSync, store.OpsAdmin, false},
		{store.OpsAdmin, store.OpsRead, true}, {store.OpsAdmin, store.OpsSync, true}, {store.OpsAdmin, store.OpsAdmin, true},
		{"", store.OpsRead, false}, {"root", store.OpsRead, false},
	} {
		if got := tc.have.Allows(tc.need); got != tc.ok {
			t.Errorf("%q.Allows(%q) = %v", tc.have, tc.need, got)
		}
	}
	for _, s := range []string{"read", "sync", "admin"} {
		if r, err := store.ParseOpsRole(s); err != nil || string(r) != s {
			t.Errorf("ParseOpsRole(%q) = %q, %v", s, r, err)
		}
	}
	if _, err := store.ParseOpsRole("Admin"); store.ErrorCode(err) != store.Invalid {
		t.Errorf("ParseOpsRole(Admin): %v", err)
	}
}
