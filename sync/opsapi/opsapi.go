// Package opsapi is the ops HTTP API: start a tenant's pull, and read its
// runs, counts, health, activity, users and groups, for operators and their
// tooling. Every request carries an ops key (entrasync opskey create) as a
// bearer token; the key's role and tenants decide what it may do. The
// routes are one table (routes.go): routing, the 404 and 405 answers, the
// role each needs and the OpenAPI document (GET /ops/v1/openapi.json,
// served without a key) all come from it.
//
// A key out of its scope is answered 403, saying what it lacks. Failed
// attempts with unknown keys are limited per client address (429); a
// valid key is never refused for what others tried.
package opsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/entrasync/entrasync/scim/ratelimit"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

// Handler serves the ops API.
type Handler struct {
	Worker *sync.Worker
	Log    *slog.Logger
	// TrustedProxies are the peers whose Forwarded and X-Forwarded-For
	// headers name the client (the trusted_proxies setting).
	TrustedProxies []netip.Prefix
	// Now is the clock health is judged by; nil is time.Now.
	Now func() time.Time
	// DefaultSchedule is the pull schedule of a Graph connection that sets
	// none (the sync_schedule setting), which health judges a pull by.
	DefaultSchedule string

	once     gosync.Once
	failures *ratelimit.Limiter[string] // failed attempts per client address
}

// Failed attempts allowed per client address: as the SCIM endpoint's,
// 20 at once, then 5 a second.
const (
	failureRate  = 5
	failureBurst = 20
)

// ServeHTTP authenticates the ops key and routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.logged(w, r, h.serve)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == openAPIPath && r.Method == http.MethodGet {
		opsRequestOf(r).route = openAPIPath
		// Public: it describes the API and holds no data.
		writeJSON(w, http.StatusOK, Document())
		return
	}
	if who, r, ok := h.authenticate(w, r); ok {
		h.route(w, r, who)
	}
}

// WithKey serves next to requests that carry a valid ops key, checked,
// limited and logged as the ops API's own requests are; next decides what
// the key may see (/metrics: a key of every tenant).
func (h *Handler) WithKey(route string, next func(w http.ResponseWriter, r *http.Request, key store.OpsKey)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.logged(w, r, func(w http.ResponseWriter, r *http.Request) {
			opsRequestOf(r).route = route
			if who, r, ok := h.authenticate(w, r); ok {
				next(w, r, who)
			}
		})
	})
}

// authenticate finds the request's ops key, or answers 401 (or 429 to an
// address that failed too often) and reports false.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (store.OpsKey, *http.Request, bool) {
	h.once.Do(func() {
		if h.failures == nil {
			h.failures = ratelimit.New[string](failureRate, failureBurst)
		}
	})
	client := ratelimit.ClientAddr(r, h.TrustedProxies)
	scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(key) == "" {
		h.refused(r, http.StatusUnauthorized, client, "none")
		unauthorized(w, "send an ops key as \"Authorization: Bearer <key>\" (entrasync opskey create NAME)")
		return store.OpsKey{}, r, false
	}
	// The key is checked first, so a valid key passes whatever others at
	// its address tried; only failures count against the address, and only
	// failures are refused.
	who, err := h.Worker.DB.AuthenticateOps(r.Context(), strings.TrimSpace(key))
	if err != nil {
		if store.ErrorCode(err) != store.NotFound {
			h.fail(w, r, err)
			return store.OpsKey{}, r, false
		}
		if !h.failures.Allow(client) {
			h.refused(r, http.StatusTooManyRequests, client, "unknown")
			w.Header().Set("Retry-After", h.failures.RetryAfter(client))
			writeError(w, http.StatusTooManyRequests, "too many failed ops-key attempts from this address; wait and send a valid key")
			return store.OpsKey{}, r, false
		}
		h.refused(r, http.StatusUnauthorized, client, "unknown")
		unauthorized(w, "the ops key is not valid or has been revoked")
		return store.OpsKey{}, r, false
	}
	r = r.WithContext(context.WithValue(r.Context(), clientKey{}, client))
	opsRequestOf(r).key = who.Name
	return who, r, true
}

// permit reports whether key may do what (which needs role need) on tenant, and
// answers 403, saying what the key lacks and how to get a key that has it,
// when it may not.
func (h *Handler) permit(w http.ResponseWriter, r *http.Request, key store.OpsKey, tenant string, need store.OpsRole, what string) bool {
	var lacks string
	switch {
	case !key.Covers(tenant):
		lacks = fmt.Sprintf("ops key %q may act on tenant(s) %s only, not %q", key.Name, strings.Join(key.Tenants, ", "), tenant)
	case !key.Role.Allows(need):
		lacks = fmt.Sprintf("ops key %q has role %s, and %s needs role %s", key.Name, key.Role, what, need)
	default:
		return true
	}
	if h.Log != nil {
		o := opsRequestOf(r)
		o.refused = true
		h.Log.Warn("ops request refused", "status", http.StatusForbidden, "method", r.Method, "client", clientOf(r),
			"token_id", key.ID, "ops_key", key.Name, "tenant", tenant, "needs", string(need), "request_id", o.id)
	}
	writeError(w, http.StatusForbidden, fmt.Sprintf("%s; an operator can issue a key that may: entrasync opskey create NAME --role %s --tenant %s",
		lacks, need, tenant))
	return false
}

// permitRole is permit for a route of no one tenant (the tenants listing,
// which shows a scoped key only its tenants).
func (h *Handler) permitRole(w http.ResponseWriter, r *http.Request, key store.OpsKey, need store.OpsRole, what string) bool {
	if key.Role.Allows(need) {
		return true
	}
	if h.Log != nil {
		o := opsRequestOf(r)
		o.refused = true
		h.Log.Warn("ops request refused", "status", http.StatusForbidden, "method", r.Method, "client", clientOf(r),
			"token_id", key.ID, "ops_key", key.Name, "needs", string(need), "request_id", o.id)
	}
	writeError(w, http.StatusForbidden, fmt.Sprintf("ops key %q has role %s, and %s needs role %s; an operator can issue a key that may: entrasync opskey create NAME --role %s",
		key.Name, key.Role, what, need, need))
	return false
}

// refused logs a request refused before its key was known: the client
// address and, for a key that matched none, "unknown" in place of its id
// ("none" when no key was sent). Never any part of the key.
func (h *Handler) refused(r *http.Request, status int, client, tokenID string) {
	if h.Log != nil {
		o := opsRequestOf(r)
		o.refused = true
		h.Log.Warn("ops request refused", "status", status, "method", r.Method, "client", client, "token_id", tokenID, "request_id", o.id)
	}
}

type clientKey struct{}

// clientOf is the client address of an authenticated request.
func clientOf(r *http.Request) string {
	c, _ := r.Context().Value(clientKey{}).(string)
	return c
}

// boolParam reads a true/false query parameter; absent is false.
func boolParam(r *http.Request, name string) (bool, error) {
	switch v := r.URL.Query().Get(name); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, fmt.Errorf("%s must be true or false, not %q", name, v)
	}
}

func (h *Handler) startSync(w http.ResponseWriter, r *http.Request, tenant string, who store.OpsKey) {
	opts := sync.Options{Trigger: "api"}
	var err error
	if opts.Full, err = boolParam(r, "full"); err == nil {
		opts.ConfirmDeletions, err = boolParam(r, "confirmDeletions")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	need, what := store.OpsSync, "starting runs"
	switch {
	case opts.Full && opts.ConfirmDeletions:
		need, what = store.OpsAdmin, "starting full runs that confirm deletions (full=true, confirmDeletions=true)"
	case opts.Full:
		need, what = store.OpsAdmin, "starting full runs (full=true)"
	case opts.ConfirmDeletions:
		need, what = store.OpsAdmin, "confirming deletions over the threshold (confirmDeletions=true)"
	}
	if !h.permit(w, r, who, tenant, need, what) {
		return
	}
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
		h.Log.Info("pull started by the ops API", "tenant", tenant, "run", run.ID, "ops_key", who.Name, "client", clientOf(r), "full", opts.Full,
			"confirm_deletions", opts.ConfirmDeletions)
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
	case store.Busy: // the writer stayed taken past the write wait
		w.Header().Set("Retry-After", strconv.Itoa(int(max(store.RetryAfter(err), time.Second).Round(time.Second)/time.Second)))
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
	enc.SetEscapeHTML(false) // read by programs: "<key>" stays "<key>"
	enc.Encode(v)
}
