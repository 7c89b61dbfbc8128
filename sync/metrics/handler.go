package metrics

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/entrasync/entrasync/scim/ratelimit"
	"github.com/entrasync/entrasync/store"
)

// Path is where the metrics are served.
const Path = "/metrics"

// Scrapes answered at once; more wait (a scrape is cheap, but gathers
// every series and reads the store).
const maxScrapes = 4

// Open serves the metrics to anyone who can reach it: for a listener on a
// private network (the metrics_addr setting).
func (m *Metrics) Open() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, MaxRequestsInFlight: maxScrapes})
}

// Guarded serves the metrics to holders of an ops key that covers every
// tenant, of any role (read is the least): the figures are the whole
// installation's, and with metrics_tenant_label they name every tenant.
// Prometheus sends the key with `authorization: {credentials_file: …}`.
// Failed attempts are limited per client address, as the ops API's are.
func (m *Metrics) Guarded(db *store.DB, log *slog.Logger, trusted []netip.Prefix) http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	open := m.Open()
	failures := ratelimit.New[string](failureRate, failureBurst)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed here")
			return
		}
		client := ratelimit.ClientAddr(r, trusted)
		scheme, secret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
			log.Warn("metrics request refused", "status", http.StatusUnauthorized, "client", client, "token_id", "none")
			unauthorized(w, "send an ops key that covers every tenant as \"Authorization: Bearer <key>\" (entrasync opskey create NAME --role read)")
			return
		}
		key, err := db.AuthenticateOps(r.Context(), strings.TrimSpace(secret))
		switch {
		case store.ErrorCode(err) == store.NotFound:
			if !failures.Allow(client) {
				log.Warn("metrics request refused", "status", http.StatusTooManyRequests, "client", client, "token_id", "unknown")
				w.Header().Set("Retry-After", failures.RetryAfter(client))
				writeError(w, http.StatusTooManyRequests, "too many failed ops-key attempts from this address; wait and send a valid key")
				return
			}
			log.Warn("metrics request refused", "status", http.StatusUnauthorized, "client", client, "token_id", "unknown")
			unauthorized(w, "the ops key is not valid or has been revoked")
			return
		case err != nil:
			log.Error("metrics request failed: checking the ops key", "err", err)
			writeError(w, http.StatusServiceUnavailable, "the ops key could not be checked: the database did not answer; try again")
			return
		case !key.AllTenants():
			log.Warn("metrics request refused", "status", http.StatusForbidden, "client", client, "token_id", key.ID, "ops_key", key.Name)
			writeError(w, http.StatusForbidden, fmt.Sprintf("ops key %q may act on tenant(s) %s only, and the metrics are every tenant's; "+
				"an operator can issue a key for every tenant: entrasync opskey create NAME --role read", key.Name, strings.Join(key.Tenants, ", ")))
			return
		}
		open.ServeHTTP(w, r)
	})
}

// Failed ops-key attempts allowed per client address, as the ops API's:
// 20 at once, then 5 a second.
const (
	failureRate  = 5
	failureBurst = 20
)

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="entrasync-ops"`)
	writeError(w, http.StatusUnauthorized, msg)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(map[string]string{"error": msg})
}
