package scim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	gosync "sync"
	"testing"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

// lockedBuffer is a log destination safe for concurrent handlers.
type lockedBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// noSecrets logs at debug level and records activity, and at the end of
// the test checks that neither the log nor any tenant's activity holds a
// Secret Token issued in it or any of the extra words (passwords the test
// sent). Every request leaves a record.
func noSecrets(t *testing.T, extra ...string) (func(*scim.Config), func(e *env)) {
	logs := &lockedBuffer{}
	var rec *sync.Recorder
	opt := func(c *scim.Config) {
		c.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		rec = sync.NewRecorder(c.DB, sync.RecorderConfig{})
		c.Activity = rec
	}
	check := func(e *env) {
		t.Helper()
		rec.Flush()
		all := logs.String()
		tenants, err := e.db.Tenants(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		records := 0
		for _, tn := range tenants {
			for q := (store.ActivityQuery{Limit: store.MaxActivityPage}); ; {
				page, err := e.db.Activity(context.Background(), tn.ID, q)
				if err != nil {
					t.Fatal(err)
				}
				j, _ := json.Marshal(page)
				all += string(j)
				records += len(page)
				if len(page) < q.Limit {
					break
				}
				q.Before = page[len(page)-1].ID
			}
		}
		if records == 0 || rec.Dropped() != 0 {
			t.Fatalf("%d activity records, %d dropped", records, rec.Dropped())
		}
		for _, s := range append(e.secrets, extra...) {
			if s != "" && strings.Contains(all, s) {
				t.Fatalf("%q appears in the log or the activity", s)
			}
		}
		if strings.Contains(strings.ToLower(all), "bearer ") {
			t.Fatal("an Authorization header appears in the log or the activity")
		}
	}
	return opt, check
}
