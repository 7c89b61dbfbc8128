package sync

import (
	"encoding/json"
	"sort"
	"strings"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/store"
)

// Page is what Graph reported in one page of a walk, with the users looked
// up by id for it (new members, and members coming back).
type Page struct {
	Groups  []graph.Group // groups/delta items; a group may come more than once
	Users   []graph.User  // users/delta items
	Fetched []graph.User  // users looked up by id
}

// State is what the store holds that a page touches.
type State struct {
	Users        map[string]store.Resource // linked users, by Entra object id
	Groups       map[string]store.Resource // linked groups, by Entra object id
	UserMatches  map[string]store.Resource // unlinked users Graph users are to become, by Entra id
	GroupMatches map[string]store.Resource // unlinked groups Graph groups are to become, by Entra id
	NameHolders  map[string]store.Resource // users holding the userNames this page's users have, by folded userName
	InScope      map[string]bool           // local user ids already members of an in-scope group
	Members      map[[2]string]bool        // (group, member) local id pairs that exist
	Nested       bool                      // nested groups are expanded: group members count
	Mark         int64                     // a full pass: stamp the memberships it sees with this run
}

// Deprovision is a user a run means to deactivate or delete. These are
// gathered over the whole run and applied at its end, all of them or (over
// the tenant's threshold) none.
type Deprovision struct {
	UserID  string
	Reason  string // why, for the log and the run record
	Delete  bool   // delete whatever the policy (gone from Entra); else the policy decides
	Disable bool   // deactivate whatever the policy (the account is disabled in Entra)
}

// Plan is the result of Diff.
type Plan struct {
	Changes     ChangeSet
	Deprovision []Deprovision
	// Left is the users Graph reported leaving a group, whether or not the
	// store still had them there (a replay must find them again): the run
	// checks their scope at its end.
	Left []string
	// Rescan says Graph reported what may take many people out of scope at
	// once (a group removed, a nested group leaving its parent): the run
	// then checks every user's scope.
	Rescan bool
	// Aside is the users this plan renames aside to free a userName for
	// another Entra user (see claim): Graph has not spoken of them in this
	// page, so a full pass, which hears of no deletion, looks them up.
	Aside []string
}

// Diff turns a page of Graph changes and the current store state into the
// changes that make the store agree with Graph. It is a pure function: ids
// of new resources come from newID. It never deactivates or deletes a user
// itself; it proposes those as Deprovision, for the run's guard.
func Diff(p Page, st State, newID func() string) Plan {
	d := differ{st: st, newID: newID, byEntra: map[string]string{}, deleted: map[string]bool{}, owner: map[string]string{}, nameOf: map[string]string{},
		holders: map[string]store.Resource{}, version: map[string]int64{}}
	for name, r := range st.NameHolders {
		d.owner[name], d.nameOf[r.ID], d.holders[r.ID], d.version[r.ID] = r.ID, name, r, r.Version
	}
	groups := mergeGroups(p.Groups)
	d.groups(groups)
	d.users(groups, p.Fetched, p.Users)
	d.members(groups)
	return d.plan
}

type differ struct {
	st      State
	newID   func() string
	plan    Plan
	byEntra map[string]string // Entra id -> local id, for resources this page creates or links
	// userNames are unique: who holds each name as the plan leaves it, and
	// the version a user's next Update must expect once the plan renamed it.
	owner   map[string]string         // folded userName -> local id
	nameOf  map[string]string         // local id -> folded userName
	holders map[string]store.Resource // local id -> a name holder's state
	version map[string]int64          // local id -> version after this plan's changes so far
	deleted map[string]bool           // Entra ids of users this page reports deleted: they join no group
}

// mergeGroups folds repeated items of a group (a large member list spans
// pages; Graph also replays) into one, member changes in order.
func mergeGroups(items []graph.Group) []graph.Group {
	byID := map[string]*graph.Group{}
	var order []string
	for _, g := range items {
		m, ok := byID[g.ID]
		if !ok {
			c := g
			c.Members = nil
			byID[g.ID], m = &c, &c
			order = append(order, g.ID)
		}
		if g.DisplayName != "" {
			m.DisplayName = g.DisplayName
		}
		m.Removed = g.Removed
		m.Members = append(m.Members, g.Members...)
	}
	sort.Strings(order)
	out := make([]graph.Group, len(order))
	for i, id := range order {
		out[i] = *byID[id]
	}
	return out
}

func (d *differ) groups(groups []graph.Group) {
	// Deletes go last: deleting a group bumps the groups it is a member of,
	// which would fail their Updates (IfVersion) here on every retry.
	var deletes []Change
	for _, g := range groups {
		cur, linked := d.st.Groups[g.ID]
		if g.Removed != "" {
			d.plan.Rescan = true
		}
		switch {
		case g.Removed != "" && linked:
			// Deleted, soft or hard: a full pass cannot tell the two apart
			// (reading deleted groups needs more than GroupMember.Read.All),
			// so both delete it here; a restored group comes back as new.
			d.byEntra[g.ID] = "" // gone: a replayed add of it as a nested member must not name it
			deletes = append(deletes, Change{Op: Delete, Kind: store.GroupKind, ID: cur.ID})
		case g.Removed != "":
		case linked:
			d.byEntra[g.ID] = cur.ID
			if doc := groupDoc(cur.Doc, g); !sameDoc(doc, cur.Doc) {
				d.add(Change{Op: Update, Resource: &store.Resource{Kind: store.GroupKind, ID: cur.ID, EntraID: g.ID, Doc: doc}, IfVersion: cur.Version})
			}
		default:
			if m, ok := d.st.GroupMatches[g.ID]; ok { // pushed by SCIM with externalId = object id: link it
				d.byEntra[g.ID] = m.ID
				d.add(Change{Op: Update, Resource: &store.Resource{Kind: store.GroupKind, ID: m.ID, EntraID: g.ID, Doc: groupDoc(m.Doc, g)}, IfVersion: m.Version})
				continue
			}
			id := d.newID()
			d.byEntra[g.ID] = id
			d.add(Change{Op: Create, Resource: &store.Resource{Kind: store.GroupKind, ID: id, EntraID: g.ID, Doc: groupDoc(nil, g)}})
		}
	}
	d.plan.Changes = append(d.plan.Changes, deletes...)
}

// groupDoc is the group's document with what Graph says of it. A group
// known only as a nested member so far is named by its id until its own
// delta names it.
func groupDoc(cur map[string]any, g graph.Group) map[string]any {
	doc := copyDoc(cur)
	if g.DisplayName != "" {
		doc["displayName"] = g.DisplayName
	} else if doc["displayName"] == nil {
		doc["displayName"] = g.ID
	}
	doc["externalId"] = g.ID
	return doc
}

// users creates the users this page's groups add and updates the users
// Graph reported, and proposes the deprovisions Graph's news call for.
func (d *differ) users(groups []graph.Group, fetched, reported []graph.User) {
	joining := map[string]bool{} // Entra ids of users a group of this page adds
	for _, g := range groups {
		if g.Removed != "" {
			continue
		}
		for _, m := range lastChanges(g.Members) {
			if !m.Group && !m.Removed {
				joining[m.ID] = true
			}
		}
	}
	latest := map[string]graph.User{} // the last word on each user: reported after fetched
	var order []string
	for _, list := range [][]graph.User{fetched, reported} {
		for _, u := range list {
			if _, seen := latest[u.ID]; !seen {
				order = append(order, u.ID)
			}
			latest[u.ID] = u
		}
	}
	sort.Strings(order)
	for _, id := range order {
		u := latest[id]
		cur, linked := d.st.Users[id]
		if !linked {
			if m, ok := d.st.UserMatches[id]; ok && joining[id] {
				cur, linked = m, true
			}
		}
		if u.Removed != "" {
			d.deleted[id] = true
		}
		switch {
		case u.Removed == "deleted":
			if linked {
				d.deprovision(Deprovision{UserID: cur.ID, Reason: "deleted in Entra", Delete: true})
			}
		case u.Removed != "":
			if linked {
				// Soft-deleted: out of its groups here, as a full pass finds
				// it (Graph lists no deleted members, and who they were is
				// not readable under least privilege); a restore brings the
				// memberships back, which Graph then lists again.
				d.add(Change{Op: LeaveGroups, ID: cur.ID})
				d.deprovision(Deprovision{UserID: cur.ID, Reason: "soft-deleted in Entra"})
			}
		case !linked && joining[id]:
			local := d.newID()
			d.byEntra[id] = local
			doc := UserDoc(nil, u)
			doc["active"] = enabled(u, true)
			if !d.claim(local, u.UserPrincipalName) {
				// A user only SCIM knows holds the name: stand apart as Entra
				// names deleted users, until that user changes.
				doc["userName"] = stripDashes(id) + u.UserPrincipalName
				d.claim(local, doc["userName"].(string))
			}
			d.add(Change{Op: Create, Resource: &store.Resource{Kind: store.UserKind, ID: local, EntraID: id, Doc: doc}})
		case linked:
			d.byEntra[id] = cur.ID
			doc := UserDoc(cur.Doc, u)
			if !d.claim(cur.ID, u.UserPrincipalName) {
				doc["userName"] = cur.Str("userName") // keep ours rather than take a SCIM-only user's
			}
			inScope := d.st.InScope[cur.ID] || joining[id]
			switch on := enabled(u, cur.Active()); {
			case on && inScope:
				doc["active"] = true // (re)activated: in scope and enabled
			case !on && cur.Active():
				doc["active"] = true // the guard decides when it goes
				d.deprovision(Deprovision{UserID: cur.ID, Reason: "disabled in Entra", Disable: true})
			default:
				doc["active"] = cur.Active()
			}
			if !sameDoc(doc, cur.Doc) || cur.EntraID != id {
				d.add(Change{Op: Update, Resource: &store.Resource{Kind: store.UserKind, ID: cur.ID, EntraID: id, Doc: doc}, IfVersion: d.versionOf(cur)})
			}
		}
	}
}

// claim gives name to the user local. A name held by a user linked to
// another Entra object is stale there (Entra gives a UPN to one object at a
// time; the other was deleted or renamed, which this or a later page
// says): the holder is renamed first, as Entra renames deleted users, to
// <object id><name>. A name held by a user only SCIM knows is not taken.
func (d *differ) claim(local, name string) bool {
	f := strings.ToLower(name)
	holder, held := d.owner[f]
	if held && holder != local {
		h := d.holders[holder]
		if h.EntraID == "" {
			return false
		}
		freed := stripDashes(h.EntraID) + str(h.Doc["userName"])
		doc := copyDoc(h.Doc)
		doc["userName"] = freed
		d.add(Change{Op: Update, Resource: &store.Resource{Kind: store.UserKind, ID: h.ID, EntraID: h.EntraID, Doc: doc}, IfVersion: d.versionOf(h)})
		d.plan.Aside = append(d.plan.Aside, h.ID)
		d.version[h.ID] = d.versionOf(h) + 1
		h.Doc = doc
		d.holders[h.ID] = h
		d.own(h.ID, freed)
	}
	d.own(local, name)
	return true
}

func (d *differ) own(local, name string) {
	if old, ok := d.nameOf[local]; ok && d.owner[old] == local {
		delete(d.owner, old)
	}
	f := strings.ToLower(name)
	d.owner[f], d.nameOf[local] = local, f
}

// versionOf is the version r has once this plan's earlier changes applied.
func (d *differ) versionOf(r store.Resource) int64 {
	if v, ok := d.version[r.ID]; ok {
		return v
	}
	return r.Version
}

func stripDashes(id string) string { return strings.ReplaceAll(id, "-", "") }

func enabled(u graph.User, dflt bool) bool {
	if u.AccountEnabled == nil {
		return dflt
	}
	return *u.AccountEnabled
}

// members turns the page's member changes into membership changes, and in
// a full pass stamps what it saw.
func (d *differ) members(groups []graph.Group) {
	for _, g := range groups {
		gid, ok := d.byEntra[g.ID]
		if !ok || g.Removed != "" {
			continue
		}
		var add, remove, seen []string
		for _, m := range lastChanges(g.Members) {
			if m.Group && !d.st.Nested {
				continue
			}
			local := d.local(m)
			if m.Removed && m.Group {
				d.plan.Rescan = true
			}
			if local == "" || local == gid {
				continue
			}
			if m.Removed && !m.Group {
				d.plan.Left = append(d.plan.Left, local)
			}
			pair := [2]string{gid, local}
			switch {
			case m.Removed && d.st.Members[pair]:
				remove = append(remove, local)
			case m.Removed, d.deleted[m.ID]:
			default:
				seen = append(seen, local)
				if !d.st.Members[pair] {
					add = append(add, local)
				}
			}
		}
		if len(add) > 0 {
			d.add(Change{Op: AddMembers, ID: gid, Members: add})
		}
		if len(remove) > 0 {
			d.add(Change{Op: RemoveMembers, ID: gid, Members: remove})
		}
		if d.st.Mark != 0 && len(seen) > 0 {
			d.add(Change{Op: MarkSeen, ID: gid, Members: seen, Mark: d.st.Mark})
		}
	}
}

// local is the local id of a member: created or linked by this page, or
// linked before.
func (d *differ) local(m graph.MemberChange) string {
	if id, ok := d.byEntra[m.ID]; ok {
		return id
	}
	if m.Group {
		if g, ok := d.st.Groups[m.ID]; ok {
			return g.ID
		}
		return ""
	}
	if u, ok := d.st.Users[m.ID]; ok {
		return u.ID
	}
	return ""
}

// lastChanges keeps the last change of each member, in first-seen order.
func lastChanges(list []graph.MemberChange) []graph.MemberChange {
	last := map[string]int{}
	for i, m := range list {
		last[m.ID] = i
	}
	out := make([]graph.MemberChange, 0, len(last))
	for i, m := range list {
		if last[m.ID] == i {
			out = append(out, m)
		}
	}
	return out
}

func (d *differ) add(c Change) { d.plan.Changes = append(d.plan.Changes, c) }

func (d *differ) deprovision(p Deprovision) { d.plan.Deprovision = append(d.plan.Deprovision, p) }

// enterpriseURN is where employeeNumber, department and organization live.
const enterpriseURN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

// UserDoc maps a Graph user onto a SCIM user document as Entra's own
// provisioning maps them by default, keeping whatever else cur holds
// (attributes pushed over SCIM that Graph does not speak of). active is left
// to the caller.
func UserDoc(cur map[string]any, u graph.User) map[string]any {
	doc := copyDoc(cur)
	doc["userName"] = u.UserPrincipalName
	doc["externalId"] = u.ID
	setStr(doc, "displayName", u.DisplayName)
	setStr(doc, "title", u.JobTitle)
	setStr(doc, "preferredLanguage", u.PreferredLanguage)
	setStr(doc, "userType", u.EmployeeType)

	name, _ := doc["name"].(map[string]any)
	if name == nil {
		name = map[string]any{}
	}
	setStr(name, "givenName", u.GivenName)
	setStr(name, "familyName", u.Surname)
	setStr(name, "formatted", strings.TrimSpace(u.GivenName+" "+u.Surname))
	setObj(doc, "name", name)

	setTyped(doc, "emails", "work", "value", u.Mail)
	setTyped(doc, "phoneNumbers", "mobile", "value", u.MobilePhone)
	work := ""
	if len(u.BusinessPhones) > 0 {
		work = u.BusinessPhones[0]
	}
	setTyped(doc, "phoneNumbers", "work", "value", work)
	setTyped(doc, "addresses", "work", "locality", u.City)
	setTyped(doc, "addresses", "work", "country", u.Country)

	ext, _ := doc[enterpriseURN].(map[string]any)
	if ext == nil {
		ext = map[string]any{}
	}
	setStr(ext, "employeeNumber", u.EmployeeID)
	setStr(ext, "department", u.Department)
	setStr(ext, "organization", u.CompanyName)
	setObj(doc, enterpriseURN, ext)
	return doc
}

func setStr(m map[string]any, k, v string) {
	if v == "" {
		delete(m, k)
	} else {
		m[k] = v
	}
}

func setObj(m map[string]any, k string, v map[string]any) {
	if len(v) == 0 {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// setTyped sets sub of the element of a multi-valued attribute whose type
// is typ (creating or dropping the element as needed). A new email is
// primary when no other is.
func setTyped(doc map[string]any, attr, typ, sub, v string) {
	list, _ := doc[attr].([]any)
	idx := -1
	for i, el := range list {
		if m, ok := el.(map[string]any); ok && strings.EqualFold(str(m["type"]), typ) {
			idx = i
			break
		}
	}
	switch {
	case idx < 0 && v == "":
		return
	case idx < 0:
		el := map[string]any{"type": typ, sub: v}
		if attr == "emails" && !anyPrimary(list) {
			el["primary"] = true
		}
		list = append(list, el)
	default:
		el := list[idx].(map[string]any)
		setStr(el, sub, v)
		if len(el) == 1 || (len(el) == 2 && el["primary"] != nil) { // only type (and primary) left
			list = append(list[:idx:idx], list[idx+1:]...)
		}
	}
	if len(list) == 0 {
		delete(doc, attr)
	} else {
		doc[attr] = list
	}
}

func anyPrimary(list []any) bool {
	for _, el := range list {
		if m, ok := el.(map[string]any); ok && m["primary"] == true {
			return true
		}
	}
	return false
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// copyDoc deep-copies a document, so Diff never changes the state it reads.
func copyDoc(doc map[string]any) map[string]any {
	if doc == nil {
		return map[string]any{}
	}
	b, _ := json.Marshal(doc)
	var out map[string]any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	dec.Decode(&out)
	return out
}

// sameDoc compares documents as the store does: by their JSON.
func sameDoc(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
