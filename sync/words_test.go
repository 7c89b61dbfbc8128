package sync

import (
	"slices"
	"testing"

	"github.com/entrasync/entrasync/store"
)

// TestWords: every kind of change, told in words.
func TestWords(t *testing.T) {
	user := func(c Counts, changed ...string) Effect {
		return Effect{Kind: store.UserKind, ID: "u1", Subject: "jane@contoso.com", Counts: c, Changed: changed}
	}
	group := func(c Counts) Effect {
		return Effect{Kind: store.GroupKind, ID: "g1", Subject: "Sales", Counts: c}
	}
	renamed := group(Counts{GroupsUpdated: 1})
	renamed.Subject, renamed.Renamed, renamed.Changed = "Sales EMEA", "Sales", []string{"displayName"}
	nameless := Effect{Kind: store.UserKind, ID: "0190aa", Counts: Counts{UsersDeleted: 1}}
	for _, c := range []struct {
		e    Effect
		want string
	}{
		{user(Counts{UsersCreated: 1}), "Created jane@contoso.com"},
		{user(Counts{UsersDeactivated: 1}, "active"), "Disabled jane@contoso.com"},
		{user(Counts{UsersDeactivated: 1}, "active", "title"), "Disabled jane@contoso.com (also title)"},
		{user(Counts{UsersReactivated: 1}, "active"), "Enabled jane@contoso.com"},
		{user(Counts{UsersUpdated: 1}, "department", "displayName"), "Updated jane@contoso.com: department, displayName"},
		{user(Counts{UsersUpdated: 1}), "Updated jane@contoso.com"},
		{user(Counts{UsersDeleted: 1}), "Deleted jane@contoso.com"},
		{user(Counts{MembersRemoved: 3}), "jane@contoso.com left 3 groups"},
		{user(Counts{}), "Nothing changed (replay)"},
		{nameless, "Deleted 0190aa"},
		{group(Counts{GroupsCreated: 1}), "Created group Sales"},
		{group(Counts{GroupsCreated: 1, MembersAdded: 2}), "Created group Sales; Added 2 members to Sales"},
		{group(Counts{GroupsUpdated: 1}), "Updated group Sales"},
		{renamed, "Renamed group Sales to Sales EMEA"},
		{group(Counts{GroupsDeleted: 1}), "Deleted group Sales"},
		{group(Counts{MembersAdded: 12}), "Added 12 members to Sales"},
		{group(Counts{MembersAdded: 1}), "Added 1 member to Sales"},
		{group(Counts{MembersRemoved: 1}), "Removed 1 member from Sales"},
		{group(Counts{MembersAdded: 2, MembersRemoved: 3}), "Added 2 and removed 3 members of Sales"},
	} {
		if got := c.e.Words(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.e, got, c.want)
		}
	}
}

// TestChangedAttributes names what changed, extension attributes by their
// own names, never values.
func TestChangedAttributes(t *testing.T) {
	before := `{"active":true,"displayName":"Jane","emails":[{"value":"j@x.com"}],"id":"u1","meta":{"version":"1"},"userName":"jane",` +
		`"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Sales","employeeNumber":"7"}}`
	after := map[string]any{"active": false, "displayName": "Jane", "emails": []any{map[string]any{"value": "jane@x.com"}}, "userName": "jane",
		"title": "CFO", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"department": "Finance", "employeeNumber": "7"}}
	got, name := changedAttributes(before, after)
	if want := []string{"active", "emails", "title", "department"}; !slices.Equal(got, want) || name != "Jane" {
		t.Fatalf("changed %v (%q), want %v", got, name, want)
	}
}
