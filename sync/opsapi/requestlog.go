package opsapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/entrasync/entrasync/scim"
)

// opsRequest is what the request's log line tells, filled in as it is
// served.
type opsRequest struct {
	id      string // also the X-Request-Id answered
	route   string // the matched route's pattern; never the path, which is the client's text
	key     string // the ops key's name, once known
	refused bool   // a refusal logged its own warning line
	status  int
}

type opsRequestKey struct{}

func opsRequestOf(r *http.Request) *opsRequest {
	if o, _ := r.Context().Value(opsRequestKey{}).(*opsRequest); o != nil {
		return o
	}
	return &opsRequest{}
}

// statusWriter remembers the status answered.
type statusWriter struct {
	http.ResponseWriter
	o *opsRequest
}

func (w *statusWriter) WriteHeader(code int) {
	w.o.status = code
	w.ResponseWriter.WriteHeader(code)
}

// logged wraps serve: a request id for the answer and the log, and one log
// line per request (a refusal's is its warning).
func (h *Handler) logged(w http.ResponseWriter, r *http.Request, serve func(http.ResponseWriter, *http.Request)) {
	start := time.Now()
	o := &opsRequest{id: scim.RequestID(r), route: "other", status: http.StatusOK}
	w.Header().Set("X-Request-Id", o.id)
	r = r.WithContext(context.WithValue(r.Context(), opsRequestKey{}, o))
	serve(&statusWriter{ResponseWriter: w, o: o}, r)
	if h.Log == nil || o.refused {
		return
	}
	level := slog.LevelInfo
	if o.status == http.StatusUnauthorized || o.status == http.StatusForbidden || o.status == http.StatusTooManyRequests {
		level = slog.LevelWarn // a refusal a route's own check made
	}
	h.Log.Log(r.Context(), level, "ops", "method", r.Method, "route", o.route, "status", o.status, "ops_key", o.key, "client", clientOf(r),
		"request_id", o.id, "ms", time.Since(start).Milliseconds())
}
