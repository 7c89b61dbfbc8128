package sync

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
)

// TestPullActivity: a pull records one entry per person or group it
// changed, in words, with its run id; a run that changes nothing records
// nothing.
func TestPullActivity(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 10, MembersPerPage: 5})
	gs := h.populate(40, 3, 2, 7)
	sales := gs[0]
	first, c := h.sync(store.RunSucceeded)
	records := h.activity(first.ID)
	// Every user and group created, and each group's member additions.
	creates, adds := 0, 0
	for _, a := range records {
		switch {
		case strings.HasPrefix(a.Summary, "Created "):
			creates++
		case strings.HasPrefix(a.Summary, "Added "):
			adds++
		}
	}
	if creates != c.UsersCreated+c.GroupsCreated || adds == 0 || creates+adds != len(records) {
		t.Fatalf("first run: %d records (%d creates, %d member additions) for %+v", len(records), creates, adds, c)
	}
	for _, a := range records {
		if a.Channel != store.ChannelPull || a.Provider != "graph" || a.RunID != first.ID || a.ResourceID == "" || a.Subject == "" || a.Failed {
			t.Fatalf("record %+v", a)
		}
	}

	// An idle run records nothing.
	idle, _ := h.sync(store.RunSucceeded)
	if got := h.activity(idle.ID); len(got) != 0 {
		t.Fatalf("an idle run recorded %+v", got)
	}

	// One of each change, in words.
	u := h.dir.Members(sales)[0]
	h.dir.UpdateUser(u, func(x *graphtest.User) { x.AccountEnabled = false; x.JobTitle = "Gone" })
	h.dir.RenameGroup(sales, "Sales & Marketing")
	joiner := h.dir.AddUser(graphtest.User{UserPrincipalName: "zoe@contoso.example", DisplayName: "Zoe", AccountEnabled: true})
	h.dir.AddMember(sales, joiner)
	run, _ := h.sync(store.RunSucceeded)
	lu, _ := h.localUser(u)
	var words []string
	for _, a := range h.activity(run.ID) {
		words = append(words, a.Summary)
	}
	for _, want := range []string{
		"Disabled " + lu.Str("userName"),
		"Created zoe@contoso.example",
		"Renamed group ",
		"Added 1 member to Sales & Marketing",
	} {
		found := false
		for _, w := range words {
			found = found || strings.HasPrefix(w, want)
		}
		if !found {
			t.Errorf("no record %q among %q", want, words)
		}
	}
}

// activity returns the pull records of run.
func (h *harness) activity(run int64) []store.Activity {
	h.t.Helper()
	all, err := h.db.Activity(context.Background(), h.tenant.ID, store.ActivityQuery{Channel: store.ChannelPull, Limit: store.MaxActivityPage})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []store.Activity
	for _, a := range all {
		if a.RunID == run {
			out = append(out, a)
		}
	}
	return out
}

// TestRecorderBounded: a full queue drops records and counts them, never
// blocking the caller; what was queued is written; pruning deletes by age.
func TestRecorderBounded(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	// A writer held elsewhere stands for a slow database: the recorder's
	// batch waits, and the queue of 10 fills.
	hold := make(chan struct{})
	held := make(chan struct{})
	go h.db.Write(context.Background(), func(tx *store.Tx) error { close(held); <-hold; return nil })
	<-held
	rec := NewRecorder(h.db, RecorderConfig{Queue: 10, Batch: 5, Flush: time.Millisecond})
	// Were Record to block on the full queue, this loop would never end:
	// the writer is released only after it.
	for range 200 {
		rec.Record(store.Activity{TenantID: h.tenant.ID, Channel: store.ChannelPush, Summary: "x"})
	}
	close(hold)
	rec.Flush()
	if rec.Dropped() == 0 || rec.Dropped()+rec.Written() != 200 {
		t.Fatalf("dropped %d, written %d of 200", rec.Dropped(), rec.Written())
	}
	got, _ := h.db.Activity(context.Background(), h.tenant.ID, store.ActivityQuery{Limit: 1000})
	if int64(len(got)) != rec.Written() {
		t.Fatalf("%d stored, %d counted written", len(got), rec.Written())
	}
	// Pruning: records older than the retention go.
	old := store.Activity{TenantID: h.tenant.ID, Channel: store.ChannelPush, Summary: "old", At: time.Now().Add(-31 * 24 * time.Hour)}
	if err := h.db.RecordActivity(context.Background(), []store.Activity{old}); err != nil {
		t.Fatal(err)
	}
	rec.prune()
	after, _ := h.db.Activity(context.Background(), h.tenant.ID, store.ActivityQuery{Limit: 1000})
	if len(after) != len(got) {
		t.Fatalf("after pruning %d records, want %d", len(after), len(got))
	}
	rec.Close()
	rec.Record(store.Activity{}) // after Close: dropped, no panic
	var none *Recorder
	none.Record(store.Activity{})
	none.Flush()
	none.Close()
}

// TestRecorderCloseWrites: what is queued when a node shuts down is
// written before Close returns.
func TestRecorderCloseWrites(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	rec := NewRecorder(h.db, RecorderConfig{Flush: time.Hour, Batch: 1000})
	for range 3 {
		rec.Record(store.Activity{TenantID: h.tenant.ID, Channel: store.ChannelPush, Summary: "queued"})
	}
	rec.Close()
	got, err := h.db.Activity(context.Background(), h.tenant.ID, store.ActivityQuery{})
	if err != nil || len(got) != 3 || rec.Written() != 3 {
		t.Fatalf("after Close: %d stored, %d written, %v", len(got), rec.Written(), err)
	}
}
