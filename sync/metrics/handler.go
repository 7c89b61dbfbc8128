package metrics

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

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

// ForKey serves the metrics to a request whose ops key the ops API has
// checked (opsapi.Handler.WithKey): a key that covers every tenant, of any
// role (read is the least), since the figures are the whole installation's
// and, with metrics_tenant_label, name every tenant. Prometheus sends the
// key with `authorization: {credentials_file: …}`.
func (m *Metrics) ForKey() func(w http.ResponseWriter, r *http.Request, key store.OpsKey) {
	open := m.Open()
	return func(w http.ResponseWriter, r *http.Request, key store.OpsKey) {
		switch {
		case m == nil:
			open.ServeHTTP(w, r)
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed here")
		case !key.AllTenants():
			writeError(w, http.StatusForbidden, fmt.Sprintf("ops key %q may act on tenant(s) %s only, and the metrics are every tenant's; "+
				"an operator can issue a key for every tenant: entrasync opskey create NAME --role read", key.Name, strings.Join(key.Tenants, ", ")))
		default:
			open.ServeHTTP(w, r)
		}
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(map[string]string{"error": msg})
}
