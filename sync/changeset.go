// Package sync is entrasync's engine: the one path every change takes into
// the store (Apply), and the pull worker that turns Microsoft Graph delta
// queries into changes (Diff, RunOnce) on a schedule.
//
// Both channels, SCIM push and Graph pull, describe what they learned as a
// ChangeSet and hand it to Apply, which writes it in one transaction.
package sync

import (
	"log/slog"

	"github.com/entrasync/entrasync/store"
)

// Op is the kind of one change.
type Op string

const (
	Create        Op = "create"        // Resource is new; its ID may be preset so later changes can name it
	Update        Op = "update"        // Resource replaces the stored one (IfVersion guards it)
	Delete        Op = "delete"        // Kind and ID are removed, with their memberships
	AddMembers    Op = "addMembers"    // Members join group ID
	RemoveMembers Op = "removeMembers" // Members leave group ID
	SetMembers    Op = "setMembers"    // Members become group ID's whole membership
	MarkSeen      Op = "markSeen"      // a full pull saw Members in group ID (stamped with Mark)
	SweepMembers  Op = "sweepMembers"  // members of group ID that the full pull Mark did not see leave
	LeaveGroups   Op = "leaveGroups"   // user ID leaves every group the pull manages
)

// Change is one change to a tenant's data.
type Change struct {
	Op        Op
	Resource  *store.Resource // Create, Update: the whole new state; updated in place with version and stamps
	IfVersion int64           // Update, Delete: apply only to this version (0: any)
	Kind      store.Kind      // Delete
	ID        string          // Delete: the resource; member changes: the group; LeaveGroups: the user
	Members   []string        // member changes: user or group ids
	Mark      int64           // MarkSeen, SweepMembers: the full pull's run id
	// Subject, member changes: the group's displayName when the caller
	// knows it, for the activity record; "": read in the transaction.
	Subject string
}

// ChangeSet is an ordered list of changes applied all together or not at all.
type ChangeSet []Change

// Counts tells how many changes of each kind an Apply made. Changes that
// found the store already as asked (a replay) are not counted.
type Counts struct {
	UsersCreated     int `json:"usersCreated"`
	UsersUpdated     int `json:"usersUpdated"`
	UsersDeactivated int `json:"usersDeactivated"`
	UsersReactivated int `json:"usersReactivated"`
	UsersDeleted     int `json:"usersDeleted"`
	GroupsCreated    int `json:"groupsCreated"`
	GroupsUpdated    int `json:"groupsUpdated"`
	GroupsDeleted    int `json:"groupsDeleted"`
	MembersAdded     int `json:"membersAdded"`
	MembersRemoved   int `json:"membersRemoved"`
}

// Add adds o's counts to c.
func (c *Counts) Add(o Counts) {
	c.UsersCreated += o.UsersCreated
	c.UsersUpdated += o.UsersUpdated
	c.UsersDeactivated += o.UsersDeactivated
	c.UsersReactivated += o.UsersReactivated
	c.UsersDeleted += o.UsersDeleted
	c.GroupsCreated += o.GroupsCreated
	c.GroupsUpdated += o.GroupsUpdated
	c.GroupsDeleted += o.GroupsDeleted
	c.MembersAdded += o.MembersAdded
	c.MembersRemoved += o.MembersRemoved
}

// Total is the number of changes counted.
func (c Counts) Total() int {
	return c.UsersCreated + c.UsersUpdated + c.UsersDeactivated + c.UsersReactivated + c.UsersDeleted +
		c.GroupsCreated + c.GroupsUpdated + c.GroupsDeleted + c.MembersAdded + c.MembersRemoved
}

// LogValue logs the counts as fields of their own.
func (c Counts) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("usersCreated", c.UsersCreated), slog.Int("usersUpdated", c.UsersUpdated),
		slog.Int("usersDeactivated", c.UsersDeactivated), slog.Int("usersReactivated", c.UsersReactivated),
		slog.Int("usersDeleted", c.UsersDeleted), slog.Int("groupsCreated", c.GroupsCreated),
		slog.Int("groupsUpdated", c.GroupsUpdated), slog.Int("groupsDeleted", c.GroupsDeleted),
		slog.Int("membersAdded", c.MembersAdded), slog.Int("membersRemoved", c.MembersRemoved))
}
