package sync

import (
	"context"
	"fmt"

	"github.com/entrasync/entrasync/store"
)

// Apply writes cs to the tenant's data in one transaction: every change, or
// none. Updates to what is already stored and membership changes already
// made change nothing; a replay is caught earlier still, since Diff of a
// page already applied finds nothing to change.
//
// Documents are encoded before the transaction begins, so the one writer is
// held only to check versions and write.
func Apply(ctx context.Context, db *store.DB, tenant int64, cs ChangeSet) (Counts, error) {
	if len(cs) == 0 {
		return Counts{}, nil
	}
	for i := range cs {
		if r := cs[i].Resource; r != nil && (cs[i].Op == Create || cs[i].Op == Update) {
			if err := r.Prepare(); err != nil {
				return Counts{}, err
			}
		}
	}
	var counts Counts
	err := db.Write(ctx, func(tx *store.Tx) error {
		var err error
		counts, err = ApplyTx(tx, tenant, cs)
		return err
	})
	if err != nil {
		return Counts{}, err
	}
	return counts, nil
}

// duringApply, when set, runs inside the transaction after each change is
// written, before the commit: a test kills its process there.
var duringApply func(cs ChangeSet, written int)

// ApplyTx is Apply inside a transaction the caller owns.
func ApplyTx(tx *store.Tx, tenant int64, cs ChangeSet) (Counts, error) {
	var c Counts
	// Groups this change set creates or updates and then changes the
	// members of: membership changes bump a group's version, and their
	// Resource must end with the version a GET gives.
	groups := map[string]*store.Resource{}
	touched := map[string]bool{}
	for i := range cs {
		ch := &cs[i]
		before := c.MembersAdded + c.MembersRemoved
		if err := applyOne(tx, tenant, ch, &c); err != nil {
			return Counts{}, err
		}
		if duringApply != nil {
			duringApply(cs, i+1)
		}
		switch {
		case (ch.Op == Create || ch.Op == Update) && ch.Resource.Kind == store.GroupKind:
			groups[ch.Resource.ID] = ch.Resource
		case groups[ch.ID] != nil && c.MembersAdded+c.MembersRemoved != before:
			touched[ch.ID] = true
		}
	}
	for id := range touched {
		g := groups[id]
		var err error
		if g.Version, g.LastModified, err = tx.Revision(tenant, store.GroupKind, id); err != nil {
			return Counts{}, err
		}
	}
	return c, nil
}

func applyOne(tx *store.Tx, tenant int64, ch *Change, c *Counts) error {
	switch ch.Op {
	case Create:
		if err := tx.Insert(tenant, ch.Resource); err != nil {
			return err
		}
		if ch.Resource.Kind == store.UserKind {
			c.UsersCreated++
		} else {
			c.GroupsCreated++
		}
	case Update:
		r := ch.Resource
		prev, changed, err := tx.Update(tenant, r, ch.IfVersion)
		if err != nil || !changed {
			return err
		}
		switch {
		case r.Kind == store.GroupKind:
			c.GroupsUpdated++
		case prev.Active && !r.Active():
			c.UsersDeactivated++
		case !prev.Active && r.Active():
			c.UsersReactivated++
		default:
			c.UsersUpdated++
		}
	case Delete:
		if ch.IfVersion > 0 {
			if err := tx.CheckVersion(tenant, ch.Kind, ch.ID, ch.IfVersion); err != nil {
				return err
			}
		}
		if err := tx.Delete(tenant, ch.Kind, ch.ID); err != nil {
			return err
		}
		if ch.Kind == store.UserKind {
			c.UsersDeleted++
		} else {
			c.GroupsDeleted++
		}
	case AddMembers:
		n, err := tx.AddMembers(tenant, ch.ID, ch.Members)
		if err != nil {
			return err
		}
		c.MembersAdded += n
	case RemoveMembers:
		n, err := tx.RemoveMembers(tenant, ch.ID, ch.Members)
		if err != nil {
			return err
		}
		c.MembersRemoved += n
	case SetMembers:
		added, removed, err := tx.SetMembers(tenant, ch.ID, ch.Members)
		if err != nil {
			return err
		}
		c.MembersAdded += added
		c.MembersRemoved += removed
	case MarkSeen:
		return tx.MarkSeen(tenant, ch.ID, ch.Members, ch.Mark)
	case SweepMembers:
		n, err := tx.SweepUnseen(tenant, ch.ID, ch.Mark)
		if err != nil {
			return err
		}
		c.MembersRemoved += n
	case LeaveGroups:
		n, err := tx.LeaveGroups(tenant, ch.ID)
		if err != nil {
			return err
		}
		c.MembersRemoved += n
	default:
		return fmt.Errorf("sync: unknown change %q", ch.Op)
	}
	return nil
}
