package graphtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"time"
)

// User is a directory user as the fake stores it. Empty strings are sent as
// JSON null, the way Graph sends unset properties.
type User struct {
	ID, UserPrincipalName, DisplayName, GivenName, Surname, Mail, JobTitle, Department, EmployeeID,
	CompanyName, OfficeLocation, MobilePhone, PreferredLanguage, City, Country, UsageLocation, EmployeeType string
	BusinessPhones []string
	AccountEnabled bool
}

// Group is a directory group (security or Microsoft 365).
type Group struct {
	ID, DisplayName, Description, MailNickname string
	SecurityEnabled, MailEnabled               bool
}

// Object states. Hard-deleted objects keep their slot as a tombstone so that
// incremental deltas can report them and page cursors stay valid.
const (
	stActive uint8 = iota
	stSoftDeleted
	stHardDeleted
)

// Directory is one customer tenant's directory. It is safe for concurrent use.
//
// The change log is kept compacted: every mutation takes the next sequence
// number and stamps it on the objects (and memberships) it touched. A delta
// from position p reports everything stamped after p with its current state,
// which gives exactly the net effect Graph promises, without keeping every
// entry. Objects live in append-only slices, so a slice index is a stable
// page cursor.
type Directory struct {
	mu  sync.Mutex
	id  string
	seq uint64           // head of the change log
	now func() time.Time // stamps deletedDateTime

	// Users as parallel slices: the scan for "changed since p" only touches
	// the small uSeq/uState slices.
	users   []User
	uSeq    []uint64
	uState  []uint8
	userIdx map[string]int32
	// uDeleted holds when each soft-deleted user was deleted.
	uDeleted map[int32]time.Time

	groups   []*groupRec
	groupIdx map[string]int32

	nameCount map[string]int32 // first.last -> users created with it (unique sample UPNs)
	churnN    int              // numbers the names Churn gives renamed groups
}

type groupRec struct {
	g         Group
	state     uint8
	seq       uint64    // last change visible in groups/delta (properties, state, members)
	deletedAt time.Time // when soft-deleted

	members   []member         // insertion order; removed members stay as tombstones
	memberIdx map[uint32]int32 // member ref -> index in members
}

// member is one membership. ref is the member's slice index shifted left by
// one, with the low bit set for groups; 16 bytes a membership keeps 100,000
// users in 200 groups small.
type member struct {
	seq     uint64
	ref     uint32
	present bool
	silent  bool // removed by a hard delete: groups/delta does not report it
}

func refUser(i int32) uint32  { return uint32(i) << 1 }
func refGroup(i int32) uint32 { return uint32(i)<<1 | 1 }

func newDirectory(id string, now func() time.Time) *Directory {
	return &Directory{
		id:        id,
		now:       now,
		userIdx:   make(map[string]int32),
		uDeleted:  make(map[int32]time.Time),
		groupIdx:  make(map[string]int32),
		nameCount: make(map[string]int32),
	}
}

// ID returns the tenant id.
func (d *Directory) ID() string { return d.id }

func (d *Directory) next() uint64 {
	d.seq++
	return d.seq
}

// newGUID returns a random version 4 UUID in lower case.
func newGUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return formatGUID(b)
}

func formatGUID(b [16]byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:16])
	return string(out[:])
}

// AddUser creates a user (a GUID is assigned when u.ID is empty) and returns
// its id. Adding an id that exists replaces its properties; adding the id of a
// hard-deleted user creates it anew.
func (d *Directory) AddUser(u User) string {
	if u.ID == "" {
		u.ID = newGUID()
	}
	u.BusinessPhones = cloneStrings(u.BusinessPhones) // the caller keeps its slice
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addUser(u)
	return u.ID
}

func (d *Directory) addUser(u User) int32 {
	seq := d.next()
	if i, ok := d.userIdx[u.ID]; ok {
		d.users[i] = u
		d.uSeq[i] = seq
		if d.uState[i] == stHardDeleted {
			d.uState[i] = stActive
		}
		return i
	}
	i := int32(len(d.users))
	d.users = append(d.users, u)
	d.uSeq = append(d.uSeq, seq)
	d.uState = append(d.uState, stActive)
	d.userIdx[u.ID] = i
	return i
}

func cloneStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

// UpdateUser changes an existing, not deleted user. fn cannot change the id.
func (d *Directory) UpdateUser(id string, fn func(*User)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, ok := d.userIdx[id]
	if !ok || d.uState[i] != stActive {
		return
	}
	u := d.users[i]
	u.BusinessPhones = cloneStrings(u.BusinessPhones)
	fn(&u)
	u.ID = id
	d.users[i] = u
	d.uSeq[i] = d.next()
}

// SoftDeleteUser moves a user to the deleted items. Its group memberships are
// kept (and not reported as removed): restoring brings them back.
func (d *Directory) SoftDeleteUser(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i, ok := d.userIdx[id]; ok && d.uState[i] == stActive {
		d.softDeleteUser(i)
	}
}

func (d *Directory) softDeleteUser(i int32) {
	d.uState[i] = stSoftDeleted
	d.uSeq[i] = d.next()
	d.uDeleted[i] = d.now().UTC()
}

// RestoreUser brings a soft-deleted user back. groups/delta announces its
// memberships again as additions, since they were hidden while it was deleted.
func (d *Directory) RestoreUser(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i, ok := d.userIdx[id]; ok && d.uState[i] == stSoftDeleted {
		d.restoreUser(i)
	}
}

func (d *Directory) restoreUser(i int32) {
	seq := d.next()
	d.uState[i] = stActive
	d.uSeq[i] = seq
	delete(d.uDeleted, i)
	d.reannounce(refUser(i), seq)
}

// HardDeleteUser removes a user permanently. It leaves every group, but like
// real Graph the fake does not report those removals in groups/delta: clients
// must act on users/delta's "deleted".
func (d *Directory) HardDeleteUser(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, ok := d.userIdx[id]
	if !ok || d.uState[i] == stHardDeleted {
		return
	}
	seq := d.next()
	d.uState[i] = stHardDeleted
	d.uSeq[i] = seq
	d.users[i] = User{ID: id} // a tombstone needs only the id
	delete(d.uDeleted, i)
	d.dropEverywhere(refUser(i), seq)
}

// reannounce marks the memberships of ref as changed at seq.
func (d *Directory) reannounce(ref uint32, seq uint64) {
	for _, g := range d.groups {
		if j, ok := g.memberIdx[ref]; ok && g.members[j].present {
			g.members[j].seq = seq
			g.seq = seq
		}
	}
}

// dropEverywhere removes ref from every group without a visible change.
func (d *Directory) dropEverywhere(ref uint32, seq uint64) {
	for _, g := range d.groups {
		if j, ok := g.memberIdx[ref]; ok && g.members[j].present {
			g.members[j] = member{seq: seq, ref: ref, silent: true}
		}
	}
}

// AddGroup creates a group (a GUID is assigned when g.ID is empty) and
// returns its id. Adding an existing id replaces its properties.
func (d *Directory) AddGroup(g Group) string {
	if g.ID == "" {
		g.ID = newGUID()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addGroup(g)
	return g.ID
}

func (d *Directory) addGroup(g Group) int32 {
	seq := d.next()
	if i, ok := d.groupIdx[g.ID]; ok {
		r := d.groups[i]
		r.g = g
		r.seq = seq
		if r.state == stHardDeleted {
			r.state = stActive
		}
		return i
	}
	i := int32(len(d.groups))
	d.groups = append(d.groups, &groupRec{g: g, seq: seq, memberIdx: make(map[uint32]int32)})
	d.groupIdx[g.ID] = i
	return i
}

// RenameGroup changes a group's displayName.
func (d *Directory) RenameGroup(id, name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i, ok := d.groupIdx[id]; ok && d.groups[i].state == stActive {
		d.groups[i].g.DisplayName = name
		d.groups[i].seq = d.next()
	}
}

// DeleteGroup deletes a group: soft (restorable, reported as
// @removed "changed") or hard (@removed "deleted"). A hard-deleted group
// leaves its parent groups without a reported member removal, like users.
func (d *Directory) DeleteGroup(id string, hard bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, ok := d.groupIdx[id]
	if !ok {
		return
	}
	r := d.groups[i]
	switch {
	case r.state == stHardDeleted, r.state == stSoftDeleted && !hard:
		return
	}
	seq := d.next()
	r.seq = seq
	if !hard {
		r.state = stSoftDeleted
		r.deletedAt = d.now().UTC()
		return
	}
	r.state = stHardDeleted
	r.g = Group{ID: id}
	r.members, r.memberIdx = nil, make(map[uint32]int32)
	d.dropEverywhere(refGroup(i), seq)
}

// RestoreGroup brings a soft-deleted group back with its members, which
// groups/delta lists again in full.
func (d *Directory) RestoreGroup(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, ok := d.groupIdx[id]
	if !ok || d.groups[i].state != stSoftDeleted {
		return
	}
	seq := d.next()
	r := d.groups[i]
	r.state = stActive
	r.seq = seq
	for j := range r.members {
		if r.members[j].present {
			r.members[j].seq = seq
		}
	}
	d.reannounce(refGroup(i), seq)
}

// ref finds a member object (user first, then group) and tells whether it
// exists and whether it is active.
func (d *Directory) ref(id string) (ref uint32, known, active bool) {
	if i, ok := d.userIdx[id]; ok {
		return refUser(i), true, d.uState[i] == stActive
	}
	if i, ok := d.groupIdx[id]; ok {
		return refGroup(i), true, d.groups[i].state == stActive
	}
	return 0, false, false
}

// AddMember adds a user or a group (nesting) to a group. Unknown or deleted
// objects, and a group joining itself, are ignored.
func (d *Directory) AddMember(groupID, memberID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	gi, ok := d.groupIdx[groupID]
	if !ok || d.groups[gi].state != stActive || groupID == memberID {
		return
	}
	if ref, _, active := d.ref(memberID); active {
		d.addMember(d.groups[gi], ref)
	}
}

func (d *Directory) addMember(g *groupRec, ref uint32) bool {
	j, ok := g.memberIdx[ref]
	if ok && g.members[j].present {
		return false
	}
	seq := d.next()
	g.seq = seq
	if ok {
		g.members[j] = member{seq: seq, ref: ref, present: true}
		return true
	}
	g.memberIdx[ref] = int32(len(g.members))
	g.members = append(g.members, member{seq: seq, ref: ref, present: true})
	return true
}

// RemoveMember removes a member from a group; groups/delta reports it.
func (d *Directory) RemoveMember(groupID, memberID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	gi, ok := d.groupIdx[groupID]
	if !ok || d.groups[gi].state != stActive {
		return
	}
	if ref, known, _ := d.ref(memberID); known {
		d.removeMember(d.groups[gi], ref)
	}
}

func (d *Directory) removeMember(g *groupRec, ref uint32) bool {
	j, ok := g.memberIdx[ref]
	if !ok || !g.members[j].present {
		return false
	}
	seq := d.next()
	g.seq = seq
	g.members[j] = member{seq: seq, ref: ref}
	return true
}

// User returns a user that is not deleted.
func (d *Directory) User(id string) (User, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, ok := d.userIdx[id]
	if !ok || d.uState[i] != stActive {
		return User{}, false
	}
	u := d.users[i]
	u.BusinessPhones = cloneStrings(u.BusinessPhones)
	return u, true
}

// Group returns a group that is not deleted.
func (d *Directory) Group(id string) (Group, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, ok := d.groupIdx[id]
	if !ok || d.groups[i].state != stActive {
		return Group{}, false
	}
	return d.groups[i].g, true
}

// Users returns the ids of all users that are not deleted, sorted.
func (d *Directory) Users() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	for i, st := range d.uState {
		if st == stActive {
			ids = append(ids, d.users[i].ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// Groups returns the ids of all groups that are not deleted, sorted.
func (d *Directory) Groups() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	for _, g := range d.groups {
		if g.state == stActive {
			ids = append(ids, g.g.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// Members returns a group's direct members as a fresh full groups/delta
// lists them: deleted (even soft-deleted) users and groups are left out.
func (d *Directory) Members(groupID string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	gi, ok := d.groupIdx[groupID]
	if !ok || d.groups[gi].state != stActive {
		return nil
	}
	var ids []string
	for _, m := range d.groups[gi].members {
		if m.present && d.refActive(m.ref) {
			ids = append(ids, d.refID(m.ref))
		}
	}
	return ids
}

func (d *Directory) refActive(ref uint32) bool {
	if ref&1 == 1 {
		return d.groups[ref>>1].state == stActive
	}
	return d.uState[ref>>1] == stActive
}

func (d *Directory) refID(ref uint32) string {
	if ref&1 == 1 {
		return d.groups[ref>>1].g.ID
	}
	return d.users[ref>>1].ID
}

// position returns the head of the change log.
func (d *Directory) position() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seq
}

// String describes the directory's size, for logs.
func (d *Directory) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fmt.Sprintf("tenant %s: %d users, %d groups, position %d", d.id, len(d.users), len(d.groups), d.seq)
}
