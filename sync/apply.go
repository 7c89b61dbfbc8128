package sync

import (
	"context"
	"fmt"
	"time"

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
	counts, _, err := apply(ctx, db, tenant, cs, false)
	return counts, err
}

// duringApply, when set, runs inside the transaction after each change is
// written, before the commit: a test kills its process there.
var duringApply func(cs ChangeSet, written int)

// ApplyTx is Apply inside a transaction the caller owns.
func ApplyTx(tx *store.Tx, tenant int64, cs ChangeSet) (Counts, error) {
	return applyTx(tx, tenant, cs, map[string]*store.Resource{}, nil)
}

// ApplyTold is Apply that also tells what each change did (its Effect),
// for the activity record of a SCIM request. Changes that changed nothing
// have no effect listed.
func ApplyTold(ctx context.Context, db *store.DB, tenant int64, cs ChangeSet) (Counts, []Effect, error) {
	return apply(ctx, db, tenant, cs, true)
}

func apply(ctx context.Context, db *store.DB, tenant int64, cs ChangeSet, tell bool) (Counts, []Effect, error) {
	if len(cs) == 0 {
		return Counts{}, nil, nil
	}
	if err := prepare(cs); err != nil {
		return Counts{}, nil, err
	}
	var counts Counts
	var effects []Effect
	err := db.Write(ctx, func(tx *store.Tx) error {
		var collect *[]Effect
		if tell {
			effects = effects[:0]
			collect = &effects
		}
		var err error
		counts, err = applyTx(tx, tenant, cs, map[string]*store.Resource{}, collect)
		return err
	})
	if err != nil {
		return Counts{}, nil, err
	}
	return counts, effects, nil
}

// prepare encodes the documents cs creates or updates, before the writer
// is taken.
func prepare(cs ChangeSet) error {
	for i := range cs {
		if r := cs[i].Resource; r != nil && (cs[i].Op == Create || cs[i].Op == Update) {
			if err := r.Prepare(); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyTx applies cs in tx. groups holds the groups created or updated so
// far (by earlier slices too): membership changes bump a group's version,
// and their Resource must end with the version a GET gives. effects, when
// not nil, collects what each change did.
func applyTx(tx *store.Tx, tenant int64, cs ChangeSet, groups map[string]*store.Resource, effects *[]Effect) (Counts, error) {
	var c Counts
	touched := map[string]bool{}
	for i := 0; i < len(cs); i++ {
		if n := creates(cs[i:]); n > 1 {
			if err := insertAll(tx, tenant, cs[i:i+n], &c, groups); err != nil {
				return Counts{}, err
			}
			if effects != nil {
				for _, ch := range cs[i : i+n] {
					*effects = append(*effects, createdEffect(ch.Resource))
				}
			}
			if duringApply != nil {
				duringApply(cs, i+n)
			}
			i += n - 1
			continue
		}
		ch := &cs[i]
		before := c.MembersAdded + c.MembersRemoved
		var e *Effect
		if effects != nil {
			var err error
			if e, err = startEffect(tx, tenant, ch); err != nil {
				return Counts{}, err
			}
		}
		prior := c
		if err := applyOne(tx, tenant, ch, &c, e); err != nil {
			return Counts{}, err
		}
		if e != nil {
			if e.Counts = c.minus(prior); e.Counts.Total() > 0 {
				*effects = append(*effects, *e)
			}
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

// creates is how many changes cs begins with that create resources of one
// kind: they go in one multi-row insert.
func creates(cs ChangeSet) int {
	n := 0
	for n < len(cs) && cs[n].Op == Create && cs[n].Resource.Kind == cs[0].Resource.Kind {
		n++
	}
	return n
}

// insertAll applies a run of creates of one kind (creates) at once.
func insertAll(tx *store.Tx, tenant int64, cs ChangeSet, c *Counts, groups map[string]*store.Resource) error {
	rs := make([]*store.Resource, len(cs))
	for i := range cs {
		rs[i] = cs[i].Resource
	}
	if err := tx.InsertMany(tenant, rs); err != nil {
		return err
	}
	if rs[0].Kind == store.UserKind {
		c.UsersCreated += len(rs)
		return nil
	}
	c.GroupsCreated += len(rs)
	for _, r := range rs {
		groups[r.ID] = r
	}
	return nil
}

// createdEffect is the effect of creating r.
func createdEffect(r *store.Resource) Effect {
	e := Effect{Kind: r.Kind, ID: r.ID, Subject: subjectOf(r)}
	if r.Kind == store.UserKind {
		e.Counts.UsersCreated = 1
	} else {
		e.Counts.GroupsCreated = 1
	}
	return e
}

func subjectOf(r *store.Resource) string {
	if r.Kind == store.UserKind {
		return r.Str("userName")
	}
	return r.Str("displayName")
}

// startEffect names the resource ch is about before it is applied: a
// deleted resource cannot be named after.
func startEffect(tx *store.Tx, tenant int64, ch *Change) (*Effect, error) {
	if r := ch.Resource; r != nil {
		return &Effect{Kind: r.Kind, ID: r.ID, Subject: subjectOf(r)}, nil
	}
	e := &Effect{Kind: store.GroupKind, ID: ch.ID}
	switch ch.Op {
	case Delete:
		e.Kind = ch.Kind
	case LeaveGroups:
		e.Kind = store.UserKind
	case MarkSeen:
		return nil, nil // counts nothing
	}
	if ch.Subject != "" && e.Kind == store.GroupKind {
		e.Subject = ch.Subject // a query saved: each is a round trip on PostgreSQL
		return e, nil
	}
	var err error
	e.Subject, err = tx.Subject(tenant, e.Kind, e.ID)
	return e, err
}

// minus is what c counts beyond o.
func (c Counts) minus(o Counts) Counts {
	return Counts{UsersCreated: c.UsersCreated - o.UsersCreated, UsersUpdated: c.UsersUpdated - o.UsersUpdated,
		UsersDeactivated: c.UsersDeactivated - o.UsersDeactivated, UsersReactivated: c.UsersReactivated - o.UsersReactivated,
		UsersDeleted: c.UsersDeleted - o.UsersDeleted, GroupsCreated: c.GroupsCreated - o.GroupsCreated,
		GroupsUpdated: c.GroupsUpdated - o.GroupsUpdated, GroupsDeleted: c.GroupsDeleted - o.GroupsDeleted,
		MembersAdded: c.MembersAdded - o.MembersAdded, MembersRemoved: c.MembersRemoved - o.MembersRemoved}
}

// applyOne applies ch; e, when not nil, learns what an update changed.
func applyOne(tx *store.Tx, tenant int64, ch *Change, c *Counts, e *Effect) error {
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
		if e != nil {
			e.Changed, e.Renamed = changedAttributes(prev.Doc, r.Doc)
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

// sliceRows bounds the rows one transaction of a pull writes. On SQLite
// the pull and every tenant's SCIM writes share the one writer, so a SCIM
// write waits for at most one slice; on PostgreSQL a slice bounds the row
// locks the pull holds at once and how long it holds a write connection.
//
// Measured with BenchmarkPullBesideSCIM on SQLite (20,000 users in 800
// groups, another tenant writing every 10 ms, 2 cores): a page in one
// transaction wrote up to 53,000 rows and held the writer 2.0 s on a quiet
// machine (3.7 s under load), and a SCIM write of another tenant waited as
// long; past write_wait (5 s) it would be answered 503, and the pull would
// lose its lock (its renewal is a write too). With background checkpoints
// (store/checkpoint.go), the longest wait of a SCIM write was 135 ms
// behind 500-row slices and 84 ms behind 250-row ones (p99 25 ms), for the
// same pull time: 250 keeps it under the 100 ms a SCIM write may wait.
const sliceRows = 250

// rows is about how many rows c writes: a resource with its attribute
// index rows, one a member of a membership change, deleteRows a deletion,
// one for the rest (a sweep is one statement).
func (c Change) rows() int {
	switch c.Op {
	case Create, Update:
		if c.Resource != nil {
			return c.Resource.Rows()
		}
	case AddMembers, RemoveMembers, SetMembers, MarkSeen:
		return max(len(c.Members), 1)
	case Delete, LeaveGroups:
		return deleteRows
	}
	return 1
}

// deleteRows is what a deletion is counted: it removes a resource with its
// index rows and memberships, or a user's memberships, which the change
// does not list; about a user's worth.
const deleteRows = 10

// splitsMembers says whether a change's members may go in several
// transactions: each member's row is written on its own, and writing it
// again changes nothing. SetMembers replaces the whole membership at once.
func (c Change) splitsMembers() bool {
	switch c.Op {
	case AddMembers, RemoveMembers, MarkSeen:
		return len(c.Members) > 1
	}
	return false
}

// sliceChanges cuts cs, in order, into change sets writing at most bound rows
// each (see Change.rows); a membership change's members are spread over
// slices, and a change that cannot be split and weighs more has a slice of
// its own. In order, each slice leaves the store consistent: a resource is
// created in the slice of, or one before, the memberships naming it.
func sliceChanges(cs ChangeSet, bound int) []ChangeSet {
	var out []ChangeSet
	var cur ChangeSet
	weight := 0
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
			cur, weight = nil, 0
		}
	}
	for _, c := range cs {
		if !c.splitsMembers() {
			w := c.rows()
			if weight > 0 && weight+w > bound {
				flush()
			}
			cur = append(cur, c)
			weight += w
			continue
		}
		for members := c.Members; len(members) > 0; {
			if weight >= bound {
				flush()
			}
			n := min(bound-weight, len(members))
			part := c
			part.Members = members[:n:n]
			cur = append(cur, part)
			weight += n
			members = members[n:]
		}
	}
	flush()
	return out
}

// applySlices applies cs as consecutive slices of at most bound rows
// (sliceChanges), committed alone or, while no other write waits, a few
// together (store.WriteSlices); a change set under the bound is one
// transaction. A failure leaves the transactions before it committed: it
// returns their counts and how many slices they held. Applying the same
// changes again (or a re-diff of the same page) finds those done and
// applies the rest. Each slice records what it changed as pull activity
// of run, in its transaction: a slice replayed records nothing. inTx,
// when set, runs in each slice's transaction after its changes; an error
// from it rolls the slice back.
func applySlices(ctx context.Context, db *store.DB, tenant, run int64, cs ChangeSet, bound int,
	inTx func(slice ChangeSet) error) (Counts, int, error) {
	if err := prepare(cs); err != nil {
		return Counts{}, 0, err
	}
	var total, uncommitted Counts
	groups := map[string]*store.Resource{}
	slices := sliceChanges(cs, bound)
	done, err := db.WriteSlices(ctx, len(slices), func(tx *store.Tx, i int) error {
		var effects []Effect
		counts, err := applyTx(tx, tenant, slices[i], groups, &effects)
		if err != nil {
			return err
		}
		if err := tx.RecordActivity(pullActivity(tenant, run, tx.Now(), effects)); err != nil {
			return err
		}
		if inTx != nil {
			if err := inTx(slices[i]); err != nil {
				return err
			}
		}
		uncommitted.Add(counts)
		return nil
	}, func() {
		total.Add(uncommitted)
		uncommitted = Counts{}
	})
	return total, done, err
}

// pullActivity is the activity record of each change a pull made.
func pullActivity(tenant, run int64, at time.Time, effects []Effect) []store.Activity {
	out := make([]store.Activity, len(effects))
	for i, e := range effects {
		out[i] = store.Activity{TenantID: tenant, At: at, Channel: store.ChannelPull, Provider: "graph", RunID: run,
			ResourceType: string(e.Kind), ResourceID: e.ID, Subject: e.Subject, Summary: e.Words()}
	}
	return out
}
