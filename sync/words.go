package sync

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/entrasync/entrasync/store"
)

// Effect is what one change did, for the activity record that tells of it:
// which resource, called what, and the counts of what it changed.
type Effect struct {
	Kind    store.Kind
	ID      string
	Subject string   // a user's userName, a group's displayName
	Counts  Counts   // what this change alone changed; zero for a replay
	Changed []string // an update: the attributes whose values changed (names only, never values)
	Renamed string   // a group update that changed its displayName: the name before
}

// Words tells in plain words what e did, e.g. "Created jane@contoso.com",
// "Disabled jane@contoso.com", "Added 12 members to Sales". An effect that
// changed nothing says so.
func (e Effect) Words() string {
	c := e.Counts
	who := quoteEmpty(e.Subject, e.ID)
	group := "group " + who
	var parts []string
	switch {
	case c.UsersCreated > 0:
		parts = append(parts, "Created "+who)
	case c.GroupsCreated > 0:
		parts = append(parts, "Created "+group)
	case c.UsersDeleted > 0:
		parts = append(parts, "Deleted "+who)
	case c.GroupsDeleted > 0:
		parts = append(parts, "Deleted "+group)
	case c.UsersDeactivated > 0:
		parts = append(parts, "Disabled "+who+alsoChanged(e.Changed, "active"))
	case c.UsersReactivated > 0:
		parts = append(parts, "Enabled "+who+alsoChanged(e.Changed, "active"))
	case c.UsersUpdated > 0:
		parts = append(parts, "Updated "+who+changedList(e.Changed))
	case c.GroupsUpdated > 0 && e.Renamed != "" && e.Renamed != e.Subject:
		parts = append(parts, fmt.Sprintf("Renamed group %s to %s%s", quoteEmpty(e.Renamed, e.ID), who, alsoChanged(e.Changed, "displayName")))
	case c.GroupsUpdated > 0:
		parts = append(parts, "Updated "+group+changedList(e.Changed))
	}
	if c.MembersAdded > 0 || c.MembersRemoved > 0 {
		if e.Kind == store.UserKind {
			parts = append(parts, fmt.Sprintf("%s left %s", who, plural(c.MembersRemoved, "group")))
		} else {
			parts = append(parts, members(c.MembersAdded, c.MembersRemoved, who))
		}
	}
	if len(parts) == 0 {
		return "Nothing changed (replay)"
	}
	return strings.Join(parts, "; ")
}

func members(added, removed int, group string) string {
	switch {
	case removed == 0:
		return fmt.Sprintf("Added %s to %s", plural(added, "member"), group)
	case added == 0:
		return fmt.Sprintf("Removed %s from %s", plural(removed, "member"), group)
	}
	return fmt.Sprintf("Added %d and removed %s of %s", added, plural(removed, "member"), group)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func quoteEmpty(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

func changedList(attrs []string) string {
	if len(attrs) == 0 {
		return ""
	}
	return ": " + strings.Join(attrs, ", ")
}

// alsoChanged lists what changed besides the attribute the words name.
func alsoChanged(attrs []string, named string) string {
	rest := slices.DeleteFunc(slices.Clone(attrs), func(a string) bool { return strings.EqualFold(a, named) })
	if len(rest) == 0 {
		return ""
	}
	return " (also " + strings.Join(rest, ", ") + ")"
}

// changedAttributes names the attributes whose values differ between the
// stored JSON document before and the document after, sorted; an
// extension's attributes by their own names. Values are never named: they
// may be personal data.
func changedAttributes(before string, after map[string]any) (changed []string, oldName string) {
	var old map[string]any
	if json.Unmarshal([]byte(before), &old) != nil {
		return nil, ""
	}
	oldName, _ = old["displayName"].(string)
	var out []string
	for _, k := range sortedUnion(old, after) {
		if k == "meta" || k == "id" || k == "schemas" {
			continue
		}
		ov, nv := old[k], after[k]
		if om, ok := ov.(map[string]any); ok && strings.HasPrefix(k, "urn:") {
			nm, _ := nv.(map[string]any)
			for _, sk := range sortedUnion(om, nm) {
				if !sameValue(om[sk], nm[sk]) {
					out = append(out, sk)
				}
			}
			continue
		}
		if !sameValue(ov, nv) {
			out = append(out, k)
		}
	}
	return out, oldName
}

func sortedUnion(a, b map[string]any) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// sameValue compares two JSON values as stored: numbers may come back as
// float64 from the stored text and json.Number from a request.
func sameValue(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	if errA != nil || errB != nil {
		return reflect.DeepEqual(a, b)
	}
	return string(ja) == string(jb)
}
