package opsapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/store"
)

// TestWriterBusy: a start that cannot have the database writer within the
// write wait is answered 503 with Retry-After and says why, never 500.
func TestWriterBusy(t *testing.T) {
	f := newFixture(t)
	key := f.key("ci", store.OpsSync, "acme")
	before := f.runCount("acme")
	begun, free, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- f.db.Write(ctx, func(*store.Tx) error { close(begun); <-free; return nil })
	}()
	<-begun
	rec := f.do("POST", "/ops/v1/tenants/acme/sync", key, "192.0.2.1:1234")
	close(free)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "busy") {
		t.Fatalf("start with the writer held: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	if got := f.runCount("acme"); got != before {
		t.Fatalf("%d runs, want %d: the refused start left one", got, before)
	}
}
