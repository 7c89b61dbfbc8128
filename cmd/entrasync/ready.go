package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

// dependency is something this node needs to serve, and how to ask it
// whether it answers.
type dependency struct {
	name string
	ping func(context.Context) error
}

// dependencies are what /readyz checks: the database, and Redis when the
// worker keeps its links and locks there.
func dependencies(db *store.DB, w *sync.Worker) []dependency {
	deps := []dependency{{"database", db.Ping}}
	if r, ok := w.Locks.(*sync.Redis); ok {
		deps = append(deps, dependency{"redis", r.Ping})
	}
	return deps
}

// readyTimeout bounds each check, so a hung dependency makes /readyz
// answer "not ready" rather than nothing.
const readyTimeout = 3 * time.Second

// readyz answers whether this node can do its work: 200 when every
// dependency answers, else 503 naming the failing ones and why. /healthz
// stays liveness (the process serves), so an orchestrator restarts only
// what a restart can fix.
func readyz(deps []dependency, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		checks := map[string]string{}
		ready := true
		for _, d := range deps {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			err := d.ping(ctx)
			cancel()
			if err != nil {
				ready = false
				checks[d.name] = err.Error()
				log.Warn("not ready", "check", d.name, "err", err)
				continue
			}
			checks[d.name] = "ok"
		}
		status, code := "ready", http.StatusOK
		if !ready {
			status, code = "not ready", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"status": status, "checks": checks})
	}
}
