package sync

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
)

// endless is a walk that never ends by itself; running counts the walks
// going.
func endless(running *atomic.Int32) func(ctx context.Context) iter.Seq2[int, error] {
	return func(ctx context.Context) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) {
			running.Add(1)
			defer running.Add(-1)
			for i := 0; ; i++ {
				if err := ctx.Err(); err != nil {
					yield(0, err)
					return
				}
				if !yield(i, nil) {
					return
				}
			}
		}
	}
}

// TestAheadLeavesNoGoroutine: a loop over ahead that stops early, or whose
// context ends, finds the walk ended when the loop is over; a context that
// ends shows as the loop's last error, never as a walk that ended well.
func TestAheadLeavesNoGoroutine(t *testing.T) {
	var running atomic.Int32
	var got []int
	for i, err := range ahead(context.Background(), endless(&running)) {
		if err != nil {
			t.Fatal(err)
		}
		if got = append(got, i); i == 2 {
			break
		}
	}
	if len(got) != 3 || got[2] != 2 || running.Load() != 0 {
		t.Fatalf("items %v, walks still going %d", got, running.Load())
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last error
	for i, err := range ahead(ctx, endless(&running)) {
		if err != nil {
			last = err
			break
		}
		if i == 5 {
			cancel() // mid-walk: the goroutine is fetching item 6 or waiting to hand it over
		}
	}
	if !errors.Is(last, context.Canceled) || running.Load() != 0 {
		t.Fatalf("last error %v, walks still going %d", last, running.Load())
	}
}

// TestFetchFailsWhileAPageApplies: the prefetch of the next page fails
// while a page applies. That page commits, the run fails with the fetch's
// error and saves no link, and the next run completes the pull, creating
// nothing twice.
func TestFetchFailsWhileAPageApplies(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 3, MembersPerPage: 5})
	h.populate(40, 3, 3, 11)
	var once gosync.Once
	h.w.inSlice = func(int64, ChangeSet) error {
		// In the first slice: the next request, the prefetch's of a page
		// after this one, fails while this one is being applied or waits.
		once.Do(func() { h.fake.FailNext(1, http.StatusInternalServerError, 0) })
		return nil
	}
	run, c := h.sync(store.RunFailed)
	if !strings.Contains(run.Error, "500") || c.UsersCreated == 0 {
		t.Fatalf("run %+v, changes %+v: want a 500 after the first page applied", run, c)
	}
	h.w.inSlice = nil
	if run, _ := h.sync(store.RunSucceeded); run.Mode != ModeFull {
		t.Fatalf("the run after the failed first one ran %s: the failed one saved links", run.Mode)
	}
	h.checkMirror()
	h.checkAppliedOnce(0, 0)
	h.dir.UpdateUser(h.dir.Users()[0], func(u *graphtest.User) { u.JobTitle = "Resumed" })
	_, c = h.sync(store.RunSucceeded)
	if c.UsersCreated != 0 || c.UsersUpdated != 1 {
		t.Fatalf("a delta run after the repair changed %+v", c)
	}
}

// TestPageParts: a page is cut between group items, in order, at most
// partMembers member entries a part unless one item has more, and only the
// last part carries the delta link.
func TestPageParts(t *testing.T) {
	item := func(id string, members int) graph.Group {
		g := graph.Group{ID: id}
		for i := range members {
			g.Members = append(g.Members, graph.MemberChange{ID: fmt.Sprintf("%s-%d", id, i)})
		}
		return g
	}
	page := graph.GroupPage{DeltaLink: "link", Groups: []graph.Group{item("a", 600), item("b", 400), item("c", 1),
		item("d", 2500), item("e", 0), item("f", 999)}}
	var got []string
	for i, part := range pageParts(page) {
		var ids []string
		members := 0
		for _, g := range part.Groups {
			ids = append(ids, g.ID)
			members += len(g.Members)
		}
		if members > partMembers && len(part.Groups) > 1 {
			t.Fatalf("part %d has %d members in %d items", i, members, len(part.Groups))
		}
		if last := i == len(pageParts(page))-1; (part.DeltaLink != "") != last {
			t.Fatalf("part %d (last %v) has delta link %q", i, last, part.DeltaLink)
		}
		got = append(got, strings.Join(ids, ""))
	}
	if want := []string{"ab", "c", "d", "ef"}; !slices.Equal(got, want) {
		t.Fatalf("parts %v, want %v", got, want)
	}
}

// TestLargePagesInParts: pages of thousands of members, applied in parts,
// pull the directory whole, count Graph's pages, and a replay changes
// nothing.
func TestLargePagesInParts(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	h.populate(3000, 4, 4, 5)
	h.fake.ResetRequests()
	run, c := h.sync(store.RunSucceeded)
	pages := 0
	for _, req := range h.fake.Requests() {
		if strings.HasPrefix(req.Path, "/v1.0/groups/delta") && req.Status == http.StatusOK {
			pages++
		}
	}
	if c.UsersCreated < 2000 || run.Pages != pages {
		t.Fatalf("created %+v; %d pages counted, the fake answered %d", c, run.Pages, pages)
	}
	h.checkMirror()
	h.checkAppliedOnce(0, 0)
	if _, c := h.sync(store.RunSucceeded, Options{Trigger: "test", Full: true}); c.Total() != 0 {
		t.Fatalf("a full run over the same directory changed %+v", c)
	}
}
