// Package scim is entrasync's SCIM 2.0 service provider (RFC 7643, 7644):
// the endpoint Microsoft Entra ID, Okta and other identity providers push
// users and groups into. The bearer token decides the tenant; every read
// and write is confined to it. Writes go through sync.Apply, the one path
// the Graph pull worker uses too.
package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/entrasync/entrasync/scim/ratelimit"
	"github.com/entrasync/entrasync/scim/schema"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

// Config configures a Server.
type Config struct {
	DB *store.DB
	// PublicURL is where clients reach entrasync, without a trailing slash;
	// resource locations are PublicURL + "/scim/v2/...".
	PublicURL string
	// BodyLimit caps request bodies (bytes); 0 means 1 MiB.
	BodyLimit int64
	// RateLimit caps requests per second per tenant (burst: twice that);
	// 0 means no limit.
	RateLimit float64

	// Limits bounds stored documents; a zero field means its default
	// (schema.DefaultMaxValues...). MaxValueLength is capped at
	// store.MaxIndexedValue, so that every value stored can be found.
	Limits schema.Limits
	// TrustedProxies are the peers whose Forwarded and X-Forwarded-For
	// headers name the client (the trusted_proxies setting); none: the
	// peer is the client.
	TrustedProxies []netip.Prefix
	Log            *slog.Logger
	// Activity records what each request did, for ops (nil: nothing).
	Activity *sync.Recorder
	// Metrics hears of every request answered; nil: none.
	Metrics Observer
}

// Observer hears of each request as its log line is written, for metrics:
// the endpoint is one of the logged names ("other" for any path it does
// not know), status 499 a client that went away.
type Observer interface {
	SCIMRequest(method, endpoint string, status int, provider string, elapsed time.Duration)
}

type noObserver struct{}

func (noObserver) SCIMRequest(string, string, int, string, time.Duration) {}

// Server serves the SCIM API.
type Server struct {
	db        *store.DB
	base      string // PublicURL + "/scim/v2"
	bodyLimit int64
	limits    schema.Limits
	log       *slog.Logger
	tenants   *ratelimit.Limiter[int64]  // per tenant
	strangers *ratelimit.Limiter[string] // per client address, for failed authentication
	proxies   []netip.Prefix
	members   memberPager   // the store; a test may count what is asked of it
	writing   resourceLocks // PUTs and PATCHes of one resource queue here
	activity  *sync.Recorder
	metrics   Observer
}

// memberPager reads a group's members a page at a time (store.DB).
type memberPager interface {
	MembersPage(ctx context.Context, tenant int64, groupID, after string, limit int) ([]store.Member, error)
}

// Failed authentication allowed per client address: 20 at once, then 5 a
// second. Only failures count, and only failures are refused.
const (
	failureRate  = 5
	failureBurst = 20
)

// DefaultBodyLimit is the request body cap when none is configured.
const DefaultBodyLimit = 1 << 20

// New returns a Server.
func New(c Config) *Server {
	s := &Server{db: c.DB, base: strings.TrimRight(c.PublicURL, "/") + "/scim/v2", bodyLimit: c.BodyLimit, log: c.Log,
		proxies: c.TrustedProxies, members: c.DB, activity: c.Activity, metrics: c.Metrics}
	if s.metrics == nil {
		s.metrics = noObserver{}
	}
	if s.bodyLimit <= 0 {
		s.bodyLimit = DefaultBodyLimit
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.limits = withDefaultLimits(c.Limits)
	if c.RateLimit > 0 {
		s.tenants = ratelimit.New[int64](c.RateLimit, int(math.Ceil(2*c.RateLimit)))
	}
	s.strangers = ratelimit.New[string](failureRate, failureBurst)
	return s
}

// BasePath is the path of the SCIM base URL, the one shown as Tenant URL.
const BasePath = "/scim/v2"

// Handler serves the API under /scim/v2 and /scim (admins paste either).
func (s *Server) Handler() http.Handler {
	return s.recover(http.HandlerFunc(s.route))
}

// Front serves paths under /scim with Handler and everything else with
// next. A ServeMux answers a path it would clean (/scim/v2/Users/../x)
// with a redirect; SCIM clients get the SCIM answer for the path as sent
// (here a 404) instead.
func (s *Server) Front(next http.Handler) http.Handler {
	h := s.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := stripBase(r.URL.Path); ok {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type ctxKey struct{}

func tenantOf(ctx context.Context) store.Tenant {
	t, _ := ctx.Value(ctxKey{}).(store.Tenant)
	return t
}

// route strips the base path, authenticates, and dispatches on the first
// path segment, matched case-insensitively.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	note := &requestNote{id: RequestID(r)}
	w.Header().Set("X-Request-Id", note.id)
	r = r.WithContext(context.WithValue(r.Context(), noteKey{}, note))
	rest, ok := stripBase(r.URL.Path)
	client := ratelimit.ClientAddr(r, s.proxies)
	endpoint, tokenID := "", noToken
	defer func() { s.logRequest(r, rec, start, endpoint, client, tokenID, note) }()
	if !ok {
		s.writeError(rec, r, errorf(http.StatusNotFound, "", "no such endpoint; the SCIM base URL ends in "+BasePath))
		return
	}
	segs := strings.Split(strings.Trim(rest, "/"), "/")
	endpoint = strings.ToLower(segs[0])
	// The log names the endpoint even of a refused request, but only a
	// known one: the path is the client's text.
	logged := "other"
	if knownEndpoints[endpoint] {
		logged = endpoint
	}
	defer func() { endpoint = logged }()
	var err error
	r, tokenID, err = s.authenticate(rec, r, client)
	if err != nil {
		s.writeError(rec, r, err)
		return
	}
	id := ""
	if len(segs) > 1 {
		id = segs[1]
	}
	if len(segs) > 2 {
		s.writeError(rec, r, errorf(http.StatusNotFound, "", "no such endpoint"))
		return
	}
	switch endpoint {
	case "users":
		s.resource(rec, r, userEndpoint, id)
	case "groups":
		s.resource(rec, r, groupEndpoint, id)
	case "serviceproviderconfig":
		s.get(rec, r, id == "", s.serviceProviderConfig)
	case "schemas":
		s.get(rec, r, true, func(w http.ResponseWriter, r *http.Request) { s.schemas(w, r, id) })
	case "resourcetypes":
		s.get(rec, r, true, func(w http.ResponseWriter, r *http.Request) { s.resourceTypes(w, r, id) })
	case "me", "bulk", ".search":
		s.writeError(rec, r, errorf(http.StatusNotImplemented, "", "/"+segs[0]+" is not supported by this service provider"))
	default:
		s.writeError(rec, r, errorf(http.StatusNotFound, "", "no such endpoint: /"+segs[0]))
	}
}

var knownEndpoints = map[string]bool{"users": true, "groups": true, "serviceproviderconfig": true,
	"schemas": true, "resourcetypes": true, "me": true, "bulk": true, ".search": true}

// What the request log says in place of a token id.
const (
	noToken      = "none"    // no bearer token was sent
	unknownToken = "unknown" // a token was sent that is no valid token's
)

// logRequest writes the request's log line and queues its activity record.
// Only the endpoint's name: ids and filters stay out of logs. A refusal
// (401, 403, 429) is a warning, so the client and token behind it can be
// found; a client that went away is status 499 (nothing was answered), not
// an error.
func (s *Server) logRequest(r *http.Request, rec *statusRecorder, start time.Time, endpoint, client, tokenID string, note *requestNote) {
	elapsed := time.Since(start)
	level, status := slog.LevelInfo, rec.status
	switch {
	case rec.clientGone:
		status = statusClientGone
	case status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusTooManyRequests:
		level = slog.LevelWarn
	}
	provider, method := Provider(r), knownMethod(r.Method)
	s.metrics.SCIMRequest(method, endpoint, status, provider, elapsed)
	attrs := []any{"method", method, "endpoint", endpoint, "status", status, "tenant", tenantOf(r.Context()).Name,
		"client", client, "token_id", tokenID, "idp", provider, "request_id", note.id, "ms", elapsed.Milliseconds()}
	if note.failed && note.summary != "" {
		attrs = append(attrs, "reason", note.summary) // as the activity keeps it: quoted values scrubbed
	}
	if rec.aborted {
		attrs = append(attrs, "aborted", true)
	}
	s.log.Log(r.Context(), level, "scim", attrs...)
	s.record(r, note, method, endpoint, status, elapsed, tokenID, provider)
}

// knownMethod is r.Method when it is one SCIM uses, else "other": the
// method is the client's text, and logs, records and metrics name only
// what they know.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return m
	}
	return "other"
}

// statusClientGone is the status logged for a client that closed its
// connection before it was answered (nginx's 499): never sent.
const statusClientGone = 499

// stripBase removes /scim/v2 or /scim (any case) from the front of p.
func stripBase(p string) (string, bool) {
	lp := strings.ToLower(p)
	for _, base := range []string{"/scim/v2", "/scim"} {
		if lp == base || strings.HasPrefix(lp, base+"/") {
			return p[len(base):], true
		}
	}
	return "", false
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, found bool, h http.HandlerFunc) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.writeError(w, r, errorf(http.StatusMethodNotAllowed, "", r.Method+" is not allowed here"))
		return
	}
	if !found {
		s.writeError(w, r, errorf(http.StatusNotFound, "", "no such endpoint"))
		return
	}
	h(w, r)
}

// authenticate resolves the bearer token to its tenant and applies the
// tenant's rate limit. It returns the token's id for the log.
//
// The token is looked up first: a valid token is never refused because
// others at its address failed (behind a reverse proxy, or Entra's shared
// egress, one misconfigured customer must not lock out the rest). Only a
// failed attempt counts against the client address, and only failed
// attempts are refused once the address is over its limit.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, client string) (*http.Request, string, error) {
	scheme, token, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return r, noToken, errorf(http.StatusUnauthorized, "", "authentication required: send the Secret Token as \"Authorization: Bearer <token>\"")
	}
	t, tokenID, err := s.db.Authenticate(r.Context(), token)
	if store.ErrorCode(err) == store.NotFound {
		if !s.strangers.Allow(client) {
			return r, unknownToken, s.tooMany(w, "too many failed authentication attempts from this address; wait, and send a valid token", s.strangers.RetryAfter(client))
		}
		return r, unknownToken, errorf(http.StatusUnauthorized, "", "the token is not valid or has been revoked")
	}
	if err != nil {
		return r, unknownToken, err
	}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, t))       // the log names the tenant, limited or not
	r = r.WithContext(store.WithChannel(r.Context(), store.ChannelPush)) // the store records which users the push wrote
	if s.tenants != nil && !s.tenants.Allow(t.ID) {
		return r, tokenID, s.tooMany(w, "rate limit exceeded for this tenant", s.tenants.RetryAfter(t.ID))
	}
	return r, tokenID, nil
}

func (s *Server) tooMany(w http.ResponseWriter, detail, retryAfter string) error {
	w.Header().Set("Retry-After", retryAfter)
	return errorf(http.StatusTooManyRequests, "", detail)
}

// recover turns a panic into a logged 500, never a dropped connection.
func (s *Server) recover(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(r.Context(), "panic", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				s.writeError(w, r, errors.New("panic"))
			}
		}()
		h.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status     int
	clientGone bool // the client closed the connection first
	aborted    bool // the answer was cut off mid-body by a failure here
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// recorder finds the request's statusRecorder under w, if any.
func recorder(w http.ResponseWriter) *statusRecorder {
	rec, _ := w.(*statusRecorder)
	return rec
}

// clientGone reports whether r's client has gone away: its context ends
// when the connection closes.
func clientGone(r *http.Request) bool {
	return errors.Is(r.Context().Err(), context.Canceled)
}

// readJSON reads a request body of at most the body limit and decodes one
// JSON object from it, numbers kept exact.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/scim+json" || mt == "application/json" || strings.HasSuffix(mt, "+json")) {
			return errorf(http.StatusUnsupportedMediaType, "", "send the body as application/scim+json or application/json, not "+ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.bodyLimit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return errorf(http.StatusBadRequest, "invalidSyntax", "could not read the request body")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		return errorf(http.StatusBadRequest, "invalidSyntax", "the body is not valid JSON: "+jsonProblem(err))
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "invalidSyntax", "the body has data after its JSON value")
	}
	return nil
}

func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return te.Field + " must be " + te.Type.String() + ", not " + te.Value
		}
		return "expected " + te.Type.String() + ", not " + te.Value
	}
	if errors.Is(err, io.EOF) {
		return "it is empty"
	}
	return err.Error()
}

// marshal encodes v as JSON without HTML escaping: answers are read by
// programs, and "<token>" must not arrive as "\u003ctoken\u003e".
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"500","detail":"Internal error"}`)
	}
	w.Header().Set("Content-Type", "application/scim+json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(body)
}
