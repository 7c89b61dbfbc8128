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

// dependency is something this node uses, and how to ask it whether it
// answers. A required one failing takes the node out of the load
// balancer; an optional one only degrades it.
type dependency struct {
	name     string
	ping     func(context.Context) error
	required bool
}

// dependencies are what /readyz checks: the database, which every request
// needs, and Redis when the worker keeps its links and locks there. Redis
// serves only the pull, so it does not decide readiness: with it down on
// every node at once, SCIM would stop everywhere for a fault that does
// not touch it.
func dependencies(db *store.DB, w *sync.Worker) []dependency {
	deps := []dependency{{name: "database", ping: db.Ping, required: true}}
	if r, ok := w.Locks.(*sync.Redis); ok {
		deps = append(deps, dependency{name: "redis", ping: r.Ping})
	}
	return deps
}

// readyTimeout bounds each check, so a hung dependency makes /readyz
// answer "not ready" rather than nothing.
const readyTimeout = 3 * time.Second

// readyz answers whether this node can do its work: 200 "ready" when every
// dependency answers, 200 "degraded" when only an optional one fails (the
// pull waits for it; SCIM and the ops API serve), 503 "not ready" when a
// required one fails; each failing check says why. /healthz stays
// liveness (the process serves), so an orchestrator restarts only what a
// restart can fix.
func readyz(deps []dependency, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		checks := map[string]string{}
		status, code := "ready", http.StatusOK
		for _, d := range deps {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			err := d.ping(ctx)
			cancel()
			if err == nil {
				checks[d.name] = "ok"
				continue
			}
			checks[d.name] = err.Error()
			if d.required {
				status, code = "not ready", http.StatusServiceUnavailable
				log.Warn("not ready", "check", d.name, "err", err)
				continue
			}
			if code == http.StatusOK {
				status = "degraded"
			}
			log.Warn("degraded: scheduled pulls cannot run until it answers; SCIM and the ops API serve", "check", d.name, "err", err)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"status": status, "checks": checks})
	}
}
