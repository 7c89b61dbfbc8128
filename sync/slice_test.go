package sync

import (
	"errors"
	"math"
	"math/rand"
	"slices"
	"strconv"
	"testing"

	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
)

// sliceWeight counts a slice's rows as the store writes them: a resource
// with its index rows, a row a member, deleteRows a deletion.
func sliceWeight(cs ChangeSet) int {
	n := 0
	for _, c := range cs {
		switch c.Op {
		case Create, Update:
			n += c.Resource.Rows()
		case AddMembers, RemoveMembers, SetMembers, MarkSeen:
			n += max(len(c.Members), 1)
		case Delete, LeaveGroups:
			n += deleteRows
		default:
			n++
		}
	}
	return n
}

func memberIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = prefix + strconv.Itoa(i)
	}
	return ids
}

// TestSliceChanges: slices keep the changes in order, spread long member
// lists over slices, keep a SetMembers whole, and weigh at most the bound
// unless one change does alone.
func TestSliceChanges(t *testing.T) {
	user := func(i int) Change {
		return Change{Op: Create, Resource: &store.Resource{Kind: store.UserKind, ID: "u" + strconv.Itoa(i),
			Doc: map[string]any{"userName": "u" + strconv.Itoa(i), "title": "t", "emails": []any{map[string]any{"value": "e", "type": "work"}}}}}
	}
	var cs ChangeSet
	for i := range 12 {
		cs = append(cs, user(i))
	}
	cs = append(cs,
		Change{Op: Create, Resource: &store.Resource{Kind: store.GroupKind, ID: "g", Doc: map[string]any{"displayName": "G"}}},
		Change{Op: AddMembers, ID: "g", Members: memberIDs("a", 130)},
		Change{Op: SetMembers, ID: "h", Members: memberIDs("s", 80)},
		Change{Op: RemoveMembers, ID: "g", Members: memberIDs("r", 7)},
		Change{Op: MarkSeen, ID: "g", Members: memberIDs("m", 45), Mark: 9},
		Change{Op: Delete, Kind: store.UserKind, ID: "gone"},
		Change{Op: SweepMembers, ID: "g", Mark: 9},
	)
	const bound = 50
	got := sliceChanges(cs, bound)
	var joined ChangeSet
	for i, s := range got {
		if w := sliceWeight(s); w > bound && len(s) > 1 {
			t.Fatalf("slice %d weighs %d rows, over the bound %d, with %d changes", i, w, bound, len(s))
		}
		for _, c := range s {
			// The parts of a split change follow each other: join them
			// (no two changes of cs in a row have the same op and group).
			if n := len(joined); n > 0 && c.Resource == nil && c.Op == joined[n-1].Op && c.ID == joined[n-1].ID {
				joined[n-1].Members = append(slices.Clip(joined[n-1].Members), c.Members...)
				continue
			}
			joined = append(joined, c)
		}
	}
	if len(got) < 6 {
		t.Fatalf("%d slices, want the changes spread over more", len(got))
	}
	if len(joined) != len(cs) {
		t.Fatalf("joined slices have %d changes, want %d", len(joined), len(cs))
	}
	for i := range cs {
		if joined[i].Op != cs[i].Op || joined[i].ID != cs[i].ID || joined[i].Resource != cs[i].Resource || !slices.Equal(joined[i].Members, cs[i].Members) {
			t.Fatalf("change %d: %+v, want %+v", i, joined[i], cs[i])
		}
	}
	for _, s := range got {
		for _, c := range s {
			if c.Op == SetMembers && len(c.Members) != 80 {
				t.Fatalf("SetMembers was split: %d members in one slice", len(c.Members))
			}
		}
	}
	if small := sliceChanges(cs[:3], bound); len(small) != 1 {
		t.Fatalf("a change set under the bound makes %d transactions, want 1", len(small))
	}
}

// slicedHarness is a harness whose pulls commit in slices of at most
// bound rows, recording each slice's weight.
func slicedHarness(t *testing.T, bound int) (*harness, *[]int) {
	h := newHarness(t, graphtest.Options{PageSize: 20, MembersPerPage: 30})
	weights := &[]int{}
	h.w.sliceRows = bound
	h.w.inSlice = func(_ int64, s ChangeSet) error {
		if w := sliceWeight(s); w > bound && len(s) > 1 {
			t.Errorf("a pull transaction wrote %d rows in %d changes, over the bound %d", w, len(s), bound)
		}
		*weights = append(*weights, sliceWeight(s))
		return nil
	}
	return h, weights
}

// TestPullSlicesMirror: a pull whose pages commit in slices of at most 40
// rows ends with the same store as one committing a transaction a page,
// full and delta, with the same counts; no transaction carries more than
// the bound.
func TestPullSlicesMirror(t *testing.T) {
	const bound = 40
	h, weights := slicedHarness(t, bound)
	groups := h.populate(400, 5, 4, 7)
	whole := newHarnessOn(t, h.fake)
	whole.w.sliceRows = math.MaxInt
	allowAll := func(c *store.GraphConnection) { c.ThresholdPercent = 100 }
	h.assign(groups[:4], allowAll)
	whole.assign(groups[:4], allowAll)

	runs := func() store.Run {
		t.Helper()
		run, sliced := h.sync(store.RunSucceeded)
		_, one := whole.sync(store.RunSucceeded)
		if sliced != one {
			t.Fatalf("sliced %s run counted %+v, a transaction a page %+v", run.Mode, sliced, one)
		}
		h.checkMirror()
		whole.checkMirror()
		return run
	}
	if run := runs(); len(*weights) <= run.Pages {
		t.Fatalf("%d transactions for %d pages: no page was sliced", len(*weights), run.Pages)
	}
	h.dir.Churn(rand.New(rand.NewSource(8)), 150)
	runs()
	if _, c := h.sync(store.RunSucceeded, Options{Trigger: "test", Full: true}); c.Total() != 0 {
		t.Fatalf("a full run over what the sliced runs applied changed %+v", c)
	}
}

// TestPullSliceReplay: a run that fails midway through a page, its first
// slices committed, is replayed by the next run, which applies the rest
// and nothing twice: the two runs count what one run does, and the store
// mirrors Entra.
func TestPullSliceReplay(t *testing.T) {
	h, _ := slicedHarness(t, 40)
	groups := h.populate(300, 4, 3, 11)
	whole := newHarnessOn(t, h.fake)
	whole.w.sliceRows = math.MaxInt
	whole.assign(groups[:3])
	_, want := whole.sync(store.RunSucceeded)

	crash := errors.New("the node stopped here")
	bounded := h.w.inSlice
	slice := 0
	h.w.inSlice = func(tenant int64, s ChangeSet) error {
		if slice++; slice == 9 {
			return crash
		}
		return bounded(tenant, s)
	}
	failed, partial := h.sync(store.RunFailed)
	if partial.Total() == 0 || partial == want {
		t.Fatalf("the failed run counted %+v: want part of %+v", partial, want)
	}
	h.w.inSlice = bounded
	_, rest := h.sync(store.RunSucceeded)
	partial.Add(rest)
	if partial != want {
		t.Fatalf("run %d and its replay counted %+v together, one run %+v", failed.ID, partial, want)
	}
	h.checkMirror()
	var none Counts
	if _, again := h.sync(store.RunSucceeded, Options{Trigger: "test", Full: true}); again != none {
		t.Fatalf("replaying every page again changed %+v", again)
	}
}
