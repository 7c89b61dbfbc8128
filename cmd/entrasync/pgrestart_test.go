package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
)

// While PostgreSQL restarts, /readyz says the node is not ready and why,
// and a CLI command says the database cannot be reached; once it is back,
// both recover without a restart of the node.
func TestPostgresRestartReadyzAndCLI(t *testing.T) {
	pg := pgtest.Start(t)
	mustRun(t, "tenant", "create", "acme", "--db", pg.URL())
	db, err := store.Open(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ready := readyz([]dependency{{name: "database", ping: db.Ping, required: true}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	check := func() (int, string) {
		rec := httptest.NewRecorder()
		ready(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := check(); code != http.StatusOK {
		t.Fatalf("readyz before the restart: %d %s", code, body)
	}

	pg.Stop()
	if code, body := check(); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") || !strings.Contains(body, "cannot be reached") {
		t.Errorf("readyz with PostgreSQL down: %d %s", code, body)
	}
	out, errOut, code := run(t, "tenant", "list", "--db", pg.URL())
	if code != 1 || !strings.Contains(errOut, "cannot be reached") || !strings.Contains(errOut, "retry") {
		t.Errorf("tenant list with PostgreSQL down: exit %d\n%s%s", code, out, errOut)
	}

	pg.Start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := check()
		if code == http.StatusOK {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("readyz after PostgreSQL is back: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := mustRun(t, "tenant", "list", "--db", pg.URL()); !strings.Contains(out, "acme") {
		t.Errorf("tenant list after the restart: %s", out)
	}
}
