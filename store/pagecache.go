package store

import (
	"fmt"
	gosync "sync"
	"sync/atomic"
	"time"
)

// listings remembers, for recent listings (a tenant, a kind, a filter),
// their total and where their pages ended, so that a client paging through
// a large tenant with startIndex (RFC 7644 §3.4.2.4) costs the same on its
// last page as on its first: the next page starts after the id the page
// before it ended with (a seek in the primary key), where OFFSET would
// step over every row before it; and the total is counted once, not on
// every page.
//
// What is remembered is only trusted while the tenant's listings are as
// they were: a write committed here that changes a tenant's resources or
// memberships moves the tenant to a new generation, which drops its
// entries, and another node's writes are seen within listingTTL. RFC 7644
// §3.4.2.4 does not require consistency across the pages of a listing,
// only each page to be right as of its request; a page seeked from a
// remembered end differs from an OFFSET one only when another node wrote
// in the last listingTTL.
type listings struct {
	mu      gosync.Mutex
	entries map[listingKey]*listing
	gens    gosync.Map // tenant id → *atomic.Uint64
}

// listingTTL bounds how long another node's write can go unseen in a
// total or a page boundary.
const listingTTL = 10 * time.Second

// maxListings bounds the memory kept: listings, and page ends per listing.
const (
	maxListings = 512
	maxEndsEach = 64
)

type listingKey struct {
	tenant int64
	kind   Kind
	query  string // the SQL condition and its arguments
}

type listing struct {
	gen   uint64
	at    time.Time
	total int            // -1: not counted
	ends  map[int]string // offset of the next page → id the page before ended with
}

func newListings() *listings { return &listings{entries: map[listingKey]*listing{}} }

func listingKeyOf(tenant int64, kind Kind, where string, args []any) listingKey {
	return listingKey{tenant: tenant, kind: kind, query: fmt.Sprintf("%s %q", where, args)}
}

func (l *listings) gen(tenant int64) uint64 {
	if g, ok := l.gens.Load(tenant); ok {
		return g.(*atomic.Uint64).Load()
	}
	return 0
}

// changed moves the tenants to a new generation (after a commit).
func (l *listings) changed(tenants map[int64]bool) {
	for t := range tenants {
		g, ok := l.gens.Load(t)
		if !ok {
			g, _ = l.gens.LoadOrStore(t, new(atomic.Uint64))
		}
		g.(*atomic.Uint64).Add(1)
	}
}

// lookup returns what is known of k at generation gen: the total (-1 when
// unknown) and the id the page before offset ended with ("" when unknown).
func (l *listings) lookup(k listingKey, gen uint64, offset int, now time.Time) (total int, after string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[k]
	if e == nil || e.gen != gen || now.Sub(e.at) > listingTTL {
		return -1, ""
	}
	return e.total, e.ends[offset]
}

// remember records a total (-1: none) and where a page ended, as of gen,
// read before the queries that found them ran.
func (l *listings) remember(k listingKey, gen uint64, now time.Time, total, end int, lastID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[k]
	if e == nil || e.gen != gen || now.Sub(e.at) > listingTTL {
		if e == nil && len(l.entries) >= maxListings {
			clear(l.entries) // crude, and rare: a new listing's first page recounts
		}
		e = &listing{gen: gen, at: now, total: -1, ends: map[int]string{}}
		l.entries[k] = e
	}
	if total >= 0 {
		e.total = total
	}
	if lastID != "" {
		if len(e.ends) >= maxEndsEach {
			clear(e.ends)
		}
		e.ends[end] = lastID
	}
}
