// Package opsapi is the ops HTTP API: start a tenant's pull and read its
// runs, for operators and their tooling. Every request carries an ops key
// (entrasync opskey create) as a bearer token.
//
//	POST /ops/v1/tenants/{tenant}/sync[?full=true][&confirmDeletions=true]  202 the new run; 409 the running one
//	GET  /ops/v1/tenants/{tenant}/runs[?limit=N]                             200 runs, newest first
//	GET  /ops/v1/tenants/{tenant}/runs/{id}                                  200 one run
package opsapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

// Handler serves the ops API.
type Handler struct {
	Worker *sync.Worker
	Log    *slog.Logger
}

// ServeHTTP authenticates the ops key and routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(key) == "" {
		unauthorized(w, "send an ops key as \"Authorization: Bearer <key>\" (entrasync opskey create NAME)")
		return
	}
	who, err := h.Worker.DB.AuthenticateOps(r.Context(), strings.TrimSpace(key))
	if err != nil {
		if store.ErrorCode(err) == store.NotFound {
			unauthorized(w, "the ops key is not valid or has been revoked")
			return
		}
		h.fail(w, r, err)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/ops/v1/tenants/")
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	switch {
	case !ok || len(parts) < 2 || parts[0] == "":
		writeError(w, http.StatusNotFound, "no such endpoint")
	case len(parts) == 2 && parts[1] == "sync" && r.Method == http.MethodPost:
		h.startSync(w, r, parts[0], who)
	case len(parts) == 2 && parts[1] == "runs" && r.Method == http.MethodGet:
		h.runs(w, r, parts[0])
	case len(parts) == 3 && parts[1] == "runs" && r.Method == http.MethodGet:
		h.run(w, r, parts[0], parts[2])
	case (len(parts) == 2 && (parts[1] == "sync" || parts[1] == "runs")) || (len(parts) == 3 && parts[1] == "runs"):
		writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed here")
	default:
		writeError(w, http.StatusNotFound, "no such endpoint")
	}
}

func (h *Handler) startSync(w http.ResponseWriter, r *http.Request, tenant string, who store.OpsKey) {
	q := r.URL.Query()
	opts := sync.Options{Trigger: "api", Full: q.Get("full") == "true", ConfirmDeletions: q.Get("confirmDeletions") == "true"}
	run, _, err := h.Worker.Start(r.Context(), tenant, opts)
	var running *sync.RunningError
	if errors.As(err, &running) {
		writeJSON(w, http.StatusConflict, map[string]any{"error": running.Error(), "run": running.Run})
		return
	}
	if err != nil && store.ErrorCode(err) == store.Internal {
		// The lock store (Redis) or Graph connection could not be reached:
		// the service, not the request, is at fault, and it says why.
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if h.Log != nil {
		h.Log.Info("pull started by the ops API", "tenant", tenant, "run", run.ID, "ops_key", who.Name, "full", opts.Full)
	}
	w.Header().Set("Location", "/ops/v1/tenants/"+tenant+"/runs/"+strconv.FormatInt(run.ID, 10))
	writeJSON(w, http.StatusAccepted, run)
}

func (h *Handler) runs(w http.ResponseWriter, r *http.Request, tenant string) {
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit must be a whole number from 1 to 1000")
			return
		}
		limit = n
	}
	runs, err := h.Worker.DB.Runs(r.Context(), tenant, limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if runs == nil {
		runs = []store.Run{}
	}
	writeJSON(w, http.StatusOK, runs)
}

func (h *Handler) run(w http.ResponseWriter, r *http.Request, tenant, idText string) {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "no run "+strconv.Quote(idText))
		return
	}
	run, err := h.Worker.DB.Run(r.Context(), tenant, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

// fail maps store errors once; anything else is an internal error, logged.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch store.ErrorCode(err) {
	case store.NotFound:
		writeError(w, http.StatusNotFound, err.Error())
	case store.Invalid:
		writeError(w, http.StatusBadRequest, err.Error())
	case store.Conflict:
		writeError(w, http.StatusConflict, err.Error())
	case store.Unavailable: // a setting or a dependency is missing; the message says which
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		if h.Log != nil {
			h.Log.Error("ops request failed", "path", r.URL.Path, "err", err)
		}
		writeError(w, http.StatusInternalServerError, "Internal error")
	}
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="entrasync-ops"`)
	writeError(w, http.StatusUnauthorized, msg)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
