package sync

import (
	"context"
	"iter"
	gosync "sync"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/store"
)

// ahead runs walk in a goroutine one item ahead of the loop that ranges
// over what it returns: the download of page N+1 overlaps the loop's work
// on page N. The channel is unbuffered, so the goroutine holds at most one
// finished page while the loop works on another, and memory stays bounded
// whatever the walk's length. The loop sees the items in order, the walk's
// error last. When the loop stops early (an apply failed, or ctx ended),
// the walk's context is canceled and the goroutine waited for: none
// outlives the loop.
func ahead[T any](ctx context.Context, walk func(ctx context.Context) iter.Seq2[T, error]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		type item struct {
			v   T
			err error
		}
		items := make(chan item)
		whole := false // the walk ran to its end: set before items closes
		var wg gosync.WaitGroup
		defer func() {
			cancel()
			wg.Wait()
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(items)
			for v, err := range walk(ctx) {
				select {
				case items <- item{v, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
			whole = true
		}()
		for it := range items {
			if !yield(it.v, it.err) || it.err != nil {
				return
			}
		}
		if !whole {
			// ctx ended while the walk waited to hand over a page.
			var zero T
			yield(zero, ctx.Err())
		}
	}
}

// lookups is what was asked of Graph, ahead of a page's apply, about the
// users the page's groups add (see runner.fetch): the ids asked and the
// users found.
type lookups struct {
	asked map[string]bool
	users []graph.User
}

// groupPage is a part of a groups delta page (see pageParts) with its
// lookups; part counts the parts of the page, from 0.
type groupPage struct {
	graph.GroupPage
	part  int
	ahead lookups
}

// partMembers bounds the member entries of a part of a groups page. A page
// of Graph's (or the fake's) may carry tens of thousands of members, each
// a user to look up and create on a first pull: applied whole, its users
// would be held at once, and only a whole page's lookups would overlap the
// apply of the one before.
const partMembers = 1000

// pageParts cuts a groups delta page into parts of whole group items with
// at most partMembers member entries each (an item with more is a part of
// its own); the delta link goes with the last. Applying the parts in turn
// is applying the pages Graph would have sent were its pages smaller:
// Diff takes a group whose members span items, or pages, as it comes.
func pageParts(page graph.GroupPage) []graph.GroupPage {
	var parts []graph.GroupPage
	var cur []graph.Group
	weight := 0
	for _, g := range page.Groups {
		w := max(len(g.Members), 1)
		if len(cur) > 0 && weight+w > partMembers {
			parts = append(parts, graph.GroupPage{Groups: cur})
			cur, weight = nil, 0
		}
		cur = append(cur, g)
		weight += w
	}
	return append(parts, graph.GroupPage{Groups: cur, DeltaLink: page.DeltaLink})
}

// withLookups cuts each page of a groups walk into parts (pageParts) and
// looks up, for each part, the users its groups add that the store does
// not know or holds inactive: run under ahead, the lookups of a part
// overlap the apply of the one before. That part may create some of them
// meanwhile; runner.fetch asks the store again once it has committed, and
// takes only those still needed.
func (r *runner) withLookups(ctx context.Context, pages iter.Seq2[graph.GroupPage, error]) iter.Seq2[groupPage, error] {
	return func(yield func(groupPage, error) bool) {
		for page, err := range pages {
			if err != nil {
				yield(groupPage{}, err)
				return
			}
			for i, part := range pageParts(page) {
				need, err := r.newMembers(ctx, part.Groups)
				if err != nil {
					yield(groupPage{}, err)
					return
				}
				users, err := r.usersByID(ctx, need)
				if err != nil {
					yield(groupPage{}, err)
					return
				}
				asked := make(map[string]bool, len(need))
				for _, id := range need {
					asked[id] = true
				}
				if !yield(groupPage{GroupPage: part, part: i, ahead: lookups{asked: asked, users: users}}, nil) {
					return
				}
			}
		}
	}
}

// newMembers is the users groups add that the store does not know or
// holds inactive: those Graph is asked about.
func (r *runner) newMembers(ctx context.Context, groups []graph.Group) ([]string, error) {
	var adds []string
	for _, g := range groups {
		if g.Removed != "" {
			continue
		}
		for _, m := range g.Members {
			if !m.Group && !m.Removed {
				adds = append(adds, m.ID)
			}
		}
	}
	if len(adds) == 0 {
		return nil, nil
	}
	adds = lowerSorted(adds)
	known, err := r.w.DB.ByEntraID(ctx, r.t.ID, store.UserKind, adds)
	if err != nil {
		return nil, err
	}
	var need []string
	for _, id := range adds {
		if u, ok := known[id]; !ok || !u.Active() {
			need = append(need, id)
		}
	}
	return need, nil
}

// usersByID looks users up, graph.MaxIDsPerLookup a request.
func (r *runner) usersByID(ctx context.Context, ids []string) ([]graph.User, error) {
	var out []graph.User
	for _, chunk := range chunked(ids, graph.MaxIDsPerLookup) {
		users, err := r.src.UsersByID(ctx, chunk)
		if err != nil {
			return nil, err
		}
		out = append(out, users...)
	}
	return out, nil
}
