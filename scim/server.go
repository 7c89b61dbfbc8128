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
	"mime"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/entrasync/entrasync/scim/ratelimit"
	"github.com/entrasync/entrasync/store"
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
	Log       *slog.Logger
}

// Server serves the SCIM API.
type Server struct {
	db        *store.DB
	base      string // PublicURL + "/scim/v2"
	bodyLimit int64
	log       *slog.Logger
	tenants   *ratelimit.Limiter[int64]  // per tenant
	strangers *ratelimit.Limiter[string] // per client address, for failed authentication
	writing   resourceLocks              // PUTs and PATCHes of one resource queue here
}

// DefaultBodyLimit is the request body cap when none is configured.
const DefaultBodyLimit = 1 << 20

// New returns a Server.
func New(c Config) *Server {
	s := &Server{db: c.DB, base: strings.TrimRight(c.PublicURL, "/") + "/scim/v2", bodyLimit: c.BodyLimit, log: c.Log}
	if s.bodyLimit <= 0 {
		s.bodyLimit = DefaultBodyLimit
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if c.RateLimit > 0 {
		s.tenants = ratelimit.New[int64](c.RateLimit, 2*c.RateLimit)
	}
	s.strangers = ratelimit.New[string](5, 20)
	return s
}

// BasePath is the path of the SCIM base URL, the one shown as Tenant URL.
const BasePath = "/scim/v2"

// Handler serves the API under /scim/v2 and /scim (admins paste either).
func (s *Server) Handler() http.Handler {
	return s.recover(http.HandlerFunc(s.route))
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
	rest, ok := stripBase(r.URL.Path)
	endpoint := ""
	defer func() {
		// Only the endpoint's name: ids and filters stay out of logs.
		s.log.InfoContext(r.Context(), "scim", "method", r.Method, "endpoint", endpoint, "status", rec.status,
			"tenant", tenantOf(r.Context()).Name, "ms", time.Since(start).Milliseconds())
	}()
	if !ok {
		s.writeError(rec, r, errorf(http.StatusNotFound, "", "no such endpoint; the SCIM base URL ends in "+BasePath))
		return
	}
	r, err := s.authenticate(rec, r)
	if err != nil {
		s.writeError(rec, r, err)
		return
	}
	segs := strings.Split(strings.Trim(rest, "/"), "/")
	endpoint = strings.ToLower(segs[0])
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
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
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
// tenant's rate limit.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	scheme, token, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return r, errorf(http.StatusUnauthorized, "", "authentication required: send the Secret Token as \"Authorization: Bearer <token>\"")
	}
	client := ratelimit.ClientAddr(r)
	if !s.strangers.Allowed(client) {
		return r, s.tooMany(w, "too many failed authentication attempts", s.strangers.RetryAfter())
	}
	t, err := s.db.Authenticate(r.Context(), token)
	if store.ErrorCode(err) == store.NotFound {
		s.strangers.Allow(client)
		return r, errorf(http.StatusUnauthorized, "", "the token is not valid or has been revoked")
	}
	if err != nil {
		return r, err
	}
	if s.tenants != nil && !s.tenants.Allow(t.ID) {
		return r, s.tooMany(w, "rate limit exceeded for this tenant", s.tenants.RetryAfter())
	}
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, t)), nil
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
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"500","detail":"Internal error"}`)
	}
	w.Header().Set("Content-Type", "application/scim+json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(body)
}
