package sync

import (
	"testing"

	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
)

// What package sync_test needs of the harness: its tests drive the SCIM
// server, which package sync cannot import (scim imports sync).

// Harness is the pull test harness (harness_test.go).
type Harness = harness

// NewHarness is newHarness.
func NewHarness(t testing.TB, opts graphtest.Options) *Harness { return newHarness(t, opts) }

// DB is the harness's store.
func (h *harness) DB() *store.DB { return h.db }

// Worker is the harness's pull worker.
func (h *harness) Worker() *Worker { return h.w }

// Populate is populate.
func (h *harness) Populate(users, groups, assigned int, seed int64) []string {
	return h.populate(users, groups, assigned, seed)
}

// CheckMirror is checkMirror.
func (h *harness) CheckMirror() { h.checkMirror() }

// SetSlicing sets the worker's slice bound (0: sliceRows) and a hook run
// inside each transaction of a pull's changes.
func (w *Worker) SetSlicing(rows int, inSlice func(tenant int64, slice ChangeSet) error) {
	w.sliceRows, w.inSlice = rows, inSlice
}

// Rows is how many rows a slice of changes writes, as the slicing counts.
func Rows(cs ChangeSet) int {
	n := 0
	for _, c := range cs {
		n += c.rows()
	}
	return n
}
