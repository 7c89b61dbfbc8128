// Package graphtest is a fake Microsoft Entra ID token endpoint and Microsoft
// Graph (users/delta, groups/delta, directory/deletedItems/{id} and
// directoryObjects/getByIds) served over HTTPS on the loopback interface,
// for tests, benchmarks and the demo mode.
//
// It answers the way the real services do where a client can tell the
// difference: OpenID discovery for MSAL, client-secret and certificate
// credentials, AADSTS errors, app-only access tokens carrying the
// application permissions granted with Grant, each endpoint refusing (403
// Authorization_RequestDenied) what its reference page's permissions do
// not cover, gzip request bodies, paged delta queries with opaque signed
// skip/delta tokens, 410/400 resync answers, throttling and Graph's delta
// quirks (replays, empty pages, split member lists, member removals that are
// never reported for deleted users).
//
// Wiring the real SDKs to it (checked with azidentity v1.15.0 and
// msgraph-sdk-go v1.89.0):
//
//	co := azcore.ClientOptions{
//		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: srv.URL() + "/"},
//		Transport: srv.Client(),
//	}
//	cred, _ := azidentity.NewClientSecretCredential(tenant, clientID, secret,
//		&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: true})
//	auth, _ := kiotaauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(
//		cred, []string{"https://graph.microsoft.com/.default"}, []string{"127.0.0.1"})
//	opts := msgraph.GetDefaultClientOptions()
//	hc := &http.Client{Transport: khttp.NewCustomTransportWithParentTransport(
//		srv.Client().Transport, msgraphcore.GetDefaultMiddlewaresWithOptions(&opts)...)}
//	adapter, _ := msgraph.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, hc)
//	adapter.SetBaseUrl(srv.URL() + "/v1.0")
package graphtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options tune the fake. Zero values take the defaults.
type Options struct {
	PageSize       int           // objects per delta page; default 100
	MembersPerPage int           // members@delta entries per group item; default 100
	TokenTTL       time.Duration // delta and skip token lifetime; default 7 days
	// Now is the clock that issues and expires delta tokens; default
	// time.Now. Access tokens and client assertions use the real clock,
	// because azidentity caches access tokens by the real clock.
	Now         func() time.Time
	ResyncAs400 bool // answer stale tokens with 400 resyncRequired instead of 410 syncStateNotFound
	Replays     bool // incremental deltas send some objects twice, on one page and on the next
	EmptyPages  bool // every walk's first page, and every fourth after, is empty with a nextLink
}

// Request is one request the fake answered.
type Request struct {
	Method     string
	Path       string
	RawQuery   string
	Authorized bool   // carried a valid bearer token (Graph requests only)
	Tenant     string // from the bearer token or the token endpoint's path
	Status     int    // 0 when the client went away first
	Encoding   string // the body's Content-Encoding, e.g. gzip
}

// maxRequests bounds the request log of a long-running demo.
const maxRequests = 100000

// Server is a running fake. Close it when done.
type Server struct {
	opts   Options
	ts     *httptest.Server
	base   string
	key    []byte // signs delta and skip tokens
	jwtKey []byte // signs access tokens

	mu         sync.Mutex
	tenants    map[string]*Directory
	apps       map[string]*app // "tenant/client" in lower case
	gen        uint64          // bumped by ExpireDeltaTokens; tokens carry it
	failN      int
	failStatus int
	failRetry  time.Duration
	failTokenN int
	latency    time.Duration
	reqs       []Request
	tokenReqs  int
	graphReqs  int
}

// NewServer starts a fake on an HTTPS loopback address.
func NewServer(opts Options) *Server {
	if opts.PageSize <= 0 {
		opts.PageSize = 100
	}
	if opts.MembersPerPage <= 0 {
		opts.MembersPerPage = 100
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:    opts,
		key:     make([]byte, 32),
		tenants: make(map[string]*Directory),
		apps:    make(map[string]*app),
		jwtKey:  make([]byte, 32),
	}
	if _, err := rand.Read(s.key); err != nil {
		panic(err)
	}
	if _, err := rand.Read(s.jwtKey); err != nil {
		panic(err)
	}
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	// Connections a client dialled but no longer needs die in their TLS
	// handshake when the fake closes; those lines are noise in test output.
	s.ts.Config.ErrorLog = log.New(handshakeFilter{os.Stderr}, "", log.LstdFlags)
	s.ts.StartTLS()
	s.base = s.ts.URL
	return s
}

// handshakeFilter drops the server's "TLS handshake error" lines.
type handshakeFilter struct{ w io.Writer }

func (f handshakeFilter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("http: TLS handshake error")) {
		return len(p), nil
	}
	return f.w.Write(p)
}

// URL is the base URL, https://127.0.0.1:PORT: the authority host for
// azidentity and, with "/v1.0" appended, the Graph base URL.
func (s *Server) URL() string { return s.base }

// Client returns an HTTP client that trusts the fake's certificate.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Certificate returns the fake's TLS certificate.
func (s *Server) Certificate() *x509.Certificate { return s.ts.Certificate() }

// CertPool returns a pool holding only the fake's TLS certificate.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.ts.Certificate())
	return p
}

// Close shuts the fake down.
func (s *Server) Close() { s.ts.Close() }

// Tenant returns a tenant's directory, creating an empty one on first use.
func (s *Server) Tenant(tenantID string) *Directory {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tenantLocked(tenantID)
}

func (s *Server) tenantLocked(tenantID string) *Directory {
	key := strings.ToLower(tenantID)
	d := s.tenants[key]
	if d == nil {
		d = newDirectory(key, s.opts.Now)
		s.tenants[key] = d
	}
	return d
}

func (s *Server) lookupTenant(tenantID string) *Directory {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tenants[strings.ToLower(tenantID)]
}

// ExpireDeltaTokens invalidates every delta and skip token issued so far.
func (s *Server) ExpireDeltaTokens() {
	s.mu.Lock()
	s.gen++
	s.mu.Unlock()
}

// FailNext makes the next n Graph requests (with a valid bearer) fail with
// status. 429 and 503 carry Retry-After in whole seconds, rounded up.
func (s *Server) FailNext(n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	s.failN, s.failStatus, s.failRetry = n, status, retryAfter
	s.mu.Unlock()
}

// FailTokenNext makes the next n token requests fail with 500.
func (s *Server) FailTokenNext(n int) {
	s.mu.Lock()
	s.failTokenN = n
	s.mu.Unlock()
}

// SetLatency delays every Graph answer by d (cut short when the client
// cancels).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// Requests returns a copy of the request log, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// ResetRequests clears the request log and the counters.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	s.reqs, s.tokenReqs, s.graphReqs = nil, 0, 0
	s.mu.Unlock()
}

// TokenRequests counts POSTs to the token endpoint.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenReqs
}

// GraphRequests counts requests under /v1.0/.
func (s *Server) GraphRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.graphReqs
}

// exchange is the state of one request while it is served.
type exchange struct {
	http.ResponseWriter
	rec Request
}

func (e *exchange) WriteHeader(status int) {
	if e.rec.Status == 0 {
		e.rec.Status = status
	}
	e.ResponseWriter.WriteHeader(status)
}

func (e *exchange) Write(b []byte) (int, error) {
	if e.rec.Status == 0 {
		e.rec.Status = http.StatusOK
	}
	return e.ResponseWriter.Write(b)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	e := &exchange{ResponseWriter: w, rec: Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Encoding: r.Header.Get("Content-Encoding")}}
	defer s.record(e)
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case segs[0] == "v1.0":
		s.mu.Lock()
		s.graphReqs++
		s.mu.Unlock()
		s.serveGraph(e, r, segs[1:])
	case len(segs) == 4 && segs[1] == "v2.0" && segs[2] == ".well-known" && segs[3] == "openid-configuration":
		s.serveOpenIDConfig(e, r, segs[0])
	case len(segs) == 4 && segs[1] == "oauth2" && segs[2] == "v2.0" && segs[3] == "token":
		e.rec.Tenant = strings.ToLower(segs[0])
		s.mu.Lock()
		s.tokenReqs++
		s.mu.Unlock()
		s.serveToken(e, r, segs[0])
	case len(segs) == 3 && segs[1] == "discovery" && segs[2] == "instance":
		s.serveInstanceDiscovery(e, r)
	case len(segs) == 4 && segs[1] == "discovery" && segs[2] == "v2.0" && segs[3] == "keys":
		writeJSON(e, http.StatusOK, map[string]any{"keys": []any{}})
	default:
		writeJSON(e, http.StatusNotFound, map[string]any{"error": "not_found", "error_description": "The fake has no endpoint " + r.URL.Path})
	}
}

func (s *Server) record(e *exchange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) >= maxRequests {
		s.reqs = append(s.reqs[:0], s.reqs[maxRequests/2:]...)
	}
	s.reqs = append(s.reqs, e.rec)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	writeBody(w, status, "application/json; charset=utf-8", b)
}

func writeBody(w http.ResponseWriter, status int, contentType string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// graphError writes Graph's error shape:
// {"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}.
func graphError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	requestID := newGUID()
	clientID := r.Header.Get("client-request-id")
	if clientID == "" {
		clientID = requestID
	}
	h := w.Header()
	h.Set("request-id", requestID)
	h.Set("client-request-id", clientID)
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code":    code,
		"message": message,
		"innerError": map[string]string{
			"date":              time.Now().UTC().Format("2006-01-02T15:04:05"),
			"request-id":        requestID,
			"client-request-id": clientID,
		},
	}})
}

// sleep waits d or until ctx ends, and says whether it waited the whole time.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Server) serveGraph(e *exchange, r *http.Request, segs []string) {
	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	if !sleep(r.Context(), latency) {
		return // the client is gone; nothing to answer
	}

	claims, msg := s.checkBearer(r)
	if msg != "" {
		e.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="`+s.base+`/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`)
		graphError(e, r, http.StatusUnauthorized, "InvalidAuthenticationToken", msg)
		return
	}
	e.rec.Authorized = true
	e.rec.Tenant = claims.TID
	tenant := claims.TID

	if status, retry, ok := s.takeFault(); ok {
		writeFault(e, r, status, retry)
		return
	}

	d := s.Tenant(tenant)
	switch {
	case len(segs) == 2 && strings.EqualFold(segs[0], "directoryObjects") && strings.EqualFold(segs[1], "getByIds"):
		if !claims.allowed(permGetByIDs) {
			denied(e, r)
			return
		}
		s.serveGetByIDs(e, r, d)
	case len(segs) >= 2 && strings.EqualFold(segs[0], "directory"):
		id, ok := deletedItemID(segs[1:])
		if !ok {
			notFoundSegment(e, r, segs)
			return
		}
		s.serveDeletedItem(e, r, d, claims, id)
	case len(segs) == 2 && (segs[0] == "users" || segs[0] == "groups") && isDelta(segs[1]):
		if r.Method != http.MethodGet {
			graphError(e, r, http.StatusMethodNotAllowed, "Request_BadRequest", "The requested HTTP method is not allowed on delta.")
			return
		}
		perms := permUsersDelta
		if segs[0] == "groups" {
			perms = permGroupsDelta
		}
		if !claims.allowed(perms) {
			denied(e, r)
			return
		}
		s.serveDelta(e, r, segs[0], d)
	default:
		notFoundSegment(e, r, segs)
	}
}

func isDelta(seg string) bool {
	switch seg {
	case "delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()":
		return true
	}
	return false
}

func notFoundSegment(w http.ResponseWriter, r *http.Request, segs []string) {
	graphError(w, r, http.StatusBadRequest, "BadRequest", "Resource not found for the segment '"+strings.Join(segs, "/")+
		"'. The fake serves only users/delta, groups/delta, directory/deletedItems/{id} and directoryObjects/getByIds.")
}

// maxBody bounds a request body, decompressed.
const maxBody = 1 << 20

// readBody reads a request body the way Graph takes it: plain or
// gzip-compressed (the SDK's compression middleware sends
// Content-Encoding: gzip), at most maxBody bytes. On failure it has answered.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	var in io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		gz, err := gzip.NewReader(io.LimitReader(r.Body, maxBody))
		if err != nil {
			graphError(w, r, http.StatusBadRequest, "BadRequest", "The request body is not valid gzip.")
			return nil, false
		}
		defer gz.Close()
		in = gz
	default:
		graphError(w, r, http.StatusUnsupportedMediaType, "BadRequest", "Content-Encoding '"+enc+"' is not supported: send the body plain or gzip-compressed.")
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(in, maxBody+1))
	switch {
	case err != nil:
		graphError(w, r, http.StatusBadRequest, "BadRequest", "The request body could not be read (invalid gzip data?).")
		return nil, false
	case len(b) > maxBody:
		graphError(w, r, http.StatusRequestEntityTooLarge, "Request_BadRequest", "The request body is too large.")
		return nil, false
	}
	return b, true
}

func (s *Server) takeFault() (status int, retry time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failN <= 0 {
		return 0, 0, false
	}
	s.failN--
	return s.failStatus, s.failRetry, true
}

func writeFault(w http.ResponseWriter, r *http.Request, status int, retry time.Duration) {
	code, msg := "generalException", "An unexpected error occurred (injected fault)."
	switch status {
	case http.StatusTooManyRequests:
		code, msg = "TooManyRequests", "Too many requests. Please retry after the time in the Retry-After header."
	case http.StatusServiceUnavailable:
		code, msg = "serviceNotAvailable", "The service is temporarily unavailable. Please retry after the time in the Retry-After header."
	case http.StatusBadGateway:
		code, msg = "UnknownError", "Bad gateway (injected fault)."
	case http.StatusGatewayTimeout:
		code, msg = "UnknownError", "Gateway timeout (injected fault)."
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(retry, 0).Seconds()))))
	}
	graphError(w, r, status, code, msg)
}
