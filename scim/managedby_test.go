package scim_test

import (
	"context"
	"testing"

	"github.com/entrasync/entrasync/store"
)

// TestPushIsRecorded: a user the pull linked and SCIM then wrote is managed
// by both channels; one only SCIM created, by the push; one only the pull
// wrote, by the pull (the ops API's managedBy).
func TestPushIsRecorded(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("acme")
	ctx := context.Background()
	pulled := &store.Resource{Kind: store.UserKind, EntraID: "6f1c7c52-0c1f-4a33-9b0a-3a1d7a0f0001", Doc: map[string]any{"userName": "pulled@acme.com", "active": true}}
	untouched := &store.Resource{Kind: store.UserKind, EntraID: "6f1c7c52-0c1f-4a33-9b0a-3a1d7a0f0002", Doc: map[string]any{"userName": "only@acme.com", "active": true}}
	if err := e.db.Write(ctx, func(tx *store.Tx) error { return tx.InsertMany(c.tenant.ID, []*store.Resource{pulled, untouched}) }); err != nil {
		t.Fatal(err)
	}
	created := c.do("POST", "/Users", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": "pushed@acme.com"})
	if created.status != 201 {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	patch := c.do("PATCH", "/Users/"+pulled.ID, map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []any{map[string]any{"op": "replace", "path": "displayName", "value": "Pulled Then Pushed"}}})
	if patch.status != 200 {
		t.Fatalf("patch: %d %s", patch.status, patch.raw)
	}
	for id, want := range map[string]string{pulled.ID: store.ManagedByBoth, untouched.ID: store.ChannelPull, created.body["id"].(string): store.ChannelPush} {
		if got, err := e.db.ManagedBy(ctx, c.tenant.ID, id); err != nil || got != want {
			t.Errorf("user %s managed by %q %v, want %q", id, got, err, want)
		}
	}
}
