package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
)

// testActivity: records are kept per tenant, listed newest first with
// every filter and a cursor, summarized for health, and pruned by age.
func testActivity(t *testing.T, db *store.DB) {
	acme, other := newTenant(t, db, "acme"), newTenant(t, db, "other")
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	var records []store.Activity
	for i := range 250 {
		a := store.Activity{TenantID: acme.ID, At: base.Add(time.Duration(i) * time.Minute), Channel: store.ChannelPush,
			Provider: "entra", Method: "POST", Endpoint: "users", Status: 201, LatencyMS: 3, TokenID: "tok_1",
			RequestID: fmt.Sprintf("req-%d", i), ResourceType: "User", ResourceID: fmt.Sprintf("u%d", i%10),
			Subject: fmt.Sprintf("User%d@Contoso.com", i%10), Summary: fmt.Sprintf("Created user%d@contoso.com", i%10)}
		if i%5 == 0 {
			a.Status, a.Failed, a.Summary = 409, true, "userName taken"
		}
		if i%2 == 1 {
			a.Channel, a.Provider, a.Method, a.Endpoint, a.Status, a.RunID = store.ChannelPull, "graph", "", "", 0, 7
		}
		records = append(records, a)
	}
	records = append(records, store.Activity{TenantID: other.ID, At: base, Channel: store.ChannelPush, Summary: "elsewhere",
		ResourceID: "u1", Subject: "user1@contoso.com"})
	// An over-long summary is cut, not refused.
	records = append(records, store.Activity{TenantID: other.ID, At: base, Channel: store.ChannelPush, Summary: strings.Repeat("é", 1000)})
	if err := db.RecordActivity(ctx, records); err != nil {
		t.Fatal(err)
	}

	list := func(q store.ActivityQuery) []store.Activity {
		t.Helper()
		got, err := db.Activity(ctx, acme.ID, q)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(got); i++ {
			if got[i].ID >= got[i-1].ID {
				t.Fatalf("not newest first: %d after %d", got[i].ID, got[i-1].ID)
			}
		}
		return got
	}
	// The cursor walks every record of the tenant exactly once.
	seen := map[int64]bool{}
	for q := (store.ActivityQuery{Limit: 60}); ; {
		page := list(q)
		for _, a := range page {
			if seen[a.ID] || a.TenantID != acme.ID {
				t.Fatalf("record %d twice or from another tenant", a.ID)
			}
			seen[a.ID] = true
		}
		if len(page) < q.Limit {
			break
		}
		q.Before = page[len(page)-1].ID
	}
	if len(seen) != 250 {
		t.Fatalf("walked %d records, want 250", len(seen))
	}
	// Following: records after an id come oldest first.
	after, err := db.Activity(ctx, acme.ID, store.ActivityQuery{After: list(store.ActivityQuery{Limit: 3})[2].ID})
	if err != nil || len(after) != 2 || after[0].ID >= after[1].ID || after[1].RequestID != "req-249" {
		t.Fatalf("records after the third newest: %+v %v", after, err)
	}
	newest := list(store.ActivityQuery{Limit: 1})[0]
	if newest.RequestID != "req-249" || !newest.At.Equal(base.Add(249*time.Minute)) || newest.Channel != store.ChannelPull || newest.RunID != 7 {
		t.Fatalf("newest record: %+v", newest)
	}
	count := func(q store.ActivityQuery, want int, check func(store.Activity) bool) {
		t.Helper()
		q.Limit = store.MaxActivityPage
		got := list(q)
		if len(got) != want {
			t.Fatalf("%+v: %d records, want %d", q, len(got), want)
		}
		for _, a := range got {
			if !check(a) {
				t.Fatalf("%+v: record %+v does not match", q, a)
			}
		}
	}
	count(store.ActivityQuery{Channel: store.ChannelPush}, 125, func(a store.Activity) bool { return a.Channel == store.ChannelPush })
	count(store.ActivityQuery{Failed: true}, 50, func(a store.Activity) bool { return a.Failed })
	count(store.ActivityQuery{Failed: true, Channel: store.ChannelPull}, 25, func(a store.Activity) bool { return a.Failed })
	count(store.ActivityQuery{User: "u3"}, 25, func(a store.Activity) bool { return a.ResourceID == "u3" })
	count(store.ActivityQuery{User: "USER3@contoso.COM"}, 25, func(a store.Activity) bool { return a.Subject == "User3@Contoso.com" })
	count(store.ActivityQuery{Since: base.Add(200 * time.Minute)}, 50, func(a store.Activity) bool { return !a.At.Before(base.Add(200 * time.Minute)) })
	if got := list(store.ActivityQuery{Limit: 5000}); len(got) != 250 {
		t.Fatalf("a page over the cap: %d records", len(got))
	}
	// Tenants see only their own.
	theirs, err := db.Activity(ctx, other.ID, store.ActivityQuery{User: "u1"})
	if err != nil || len(theirs) != 1 || theirs[0].Summary != "elsewhere" {
		t.Fatalf("other tenant: %+v %v", theirs, err)
	}
	long, err := db.Activity(ctx, other.ID, store.ActivityQuery{Limit: 1})
	if err != nil || len(long[0].Summary) > 512 || !strings.HasSuffix(long[0].Summary, "…") {
		t.Fatalf("a long summary is kept as %d bytes: %v", len(long[0].Summary), err)
	}

	// Health figures: the newest request, the newest success, the failures
	// since a time.
	stats, err := db.PushStats(ctx, acme.ID, base.Add(200*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// Push records are the even minutes; of 200..249, 25 are push and 5 of
	// them (multiples of 10) failed.
	if stats.Requests != 25 || stats.Failed != 5 || stats.LastRequest == nil || !stats.LastRequest.Equal(base.Add(248*time.Minute)) ||
		stats.LastSuccess == nil || !stats.LastSuccess.Equal(base.Add(248*time.Minute)) {
		t.Fatalf("push stats: %+v", stats)
	}
	none, err := db.PushStats(ctx, newTenant(t, db, "quiet").ID, base)
	if err != nil || none.Requests != 0 || none.LastRequest != nil || none.LastSuccess != nil {
		t.Fatalf("a tenant without requests: %+v %v", none, err)
	}

	// Pruning deletes what is older than the cut, across tenants, and only that.
	n, err := db.PruneActivity(ctx, base.Add(100*time.Minute))
	if err != nil || n != 100+2 {
		t.Fatalf("pruned %d, %v; want 102", n, err)
	}
	if left := list(store.ActivityQuery{Limit: store.MaxActivityPage}); len(left) != 150 || left[len(left)-1].At.Before(base.Add(100*time.Minute)) {
		t.Fatalf("%d records left after pruning", len(left))
	}
	if n, err := db.PruneActivity(ctx, base.Add(100*time.Minute)); err != nil || n != 0 {
		t.Fatalf("pruning again deleted %d, %v", n, err)
	}
}
