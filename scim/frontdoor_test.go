package scim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
)

// logBuffer collects JSON log lines; the server writes them from its own
// goroutines.
type logBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines decodes the log so far.
func (b *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// requests is the log's request lines ("scim").
func (b *logBuffer) requests(t *testing.T) []map[string]any {
	var out []map[string]any
	for _, l := range b.lines(t) {
		if l["msg"] == "scim" {
			out = append(out, l)
		}
	}
	return out
}

func withLog(logs *logBuffer) func(*scim.Config) {
	return func(c *scim.Config) {
		c.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// frozen is a SCIM handler on e's store whose rate limits' clock stands
// still: no token comes back mid-test, however slowly it runs.
func frozen(e *env, opts ...func(*scim.Config)) http.Handler {
	cfg := scim.Config{DB: e.db, PublicURL: e.srv.URL}
	for _, o := range opts {
		o(&cfg)
	}
	s := scim.New(cfg)
	s.FreezeLimits(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return s.Handler()
}

// serve sends a request straight to h, from peer (host:port), and returns
// once the handler (and so its log line) is done.
func serve(h http.Handler, method, path, token, peer string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = peer
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func (c *client) tokenID() string {
	c.t.Helper()
	toks, err := c.env.db.Tokens(context.Background(), c.tenant.Name)
	if err != nil || len(toks) != 1 {
		c.t.Fatalf("tokens: %v %v", toks, err)
	}
	return toks[0].ID
}

// TestBadTokensDoNotLockOut is issue 7's acceptance test: 30 bad tokens
// from one address do not refuse a valid token from it; the bad ones get
// 429 with Retry-After past the burst, and every refusal is logged with
// the client address and no token.
func TestBadTokensDoNotLockOut(t *testing.T) {
	logs := &logBuffer{}
	e := newEnv(t)
	h := frozen(e, withLog(logs))
	c := e.tenant("contoso")
	const shared = "203.0.113.9" // a reverse proxy, or Entra's egress
	var refused int
	for i := range 30 {
		rec := serve(h, "GET", "/scim/v2/Users", fmt.Sprintf("es_wrong%02d", i), shared+":5000")
		switch {
		case i < 20 && rec.Code != http.StatusUnauthorized:
			t.Fatalf("bad token %d of the burst: %d %s", i+1, rec.Code, rec.Body)
		case i >= 20 && rec.Code != http.StatusTooManyRequests:
			t.Fatalf("bad token %d past the burst: %d %s", i+1, rec.Code, rec.Body)
		case rec.Code == http.StatusTooManyRequests:
			refused++
			if rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), "too many failed") {
				t.Fatalf("429: Retry-After %q, %s", rec.Header().Get("Retry-After"), rec.Body)
			}
		}
		// The valid token from the same address, another port: never refused.
		if rec := serve(h, "GET", "/scim/v2/Users", c.token, shared+":5001"); rec.Code != http.StatusOK {
			t.Fatalf("valid token after %d bad ones: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	if refused != 10 {
		t.Fatalf("%d refused", refused)
	}
	// Another address is not limited by the first one's failures.
	if rec := serve(h, "GET", "/scim/v2/Users", "es_typo", "198.51.100.1:1"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("a first failure elsewhere: %d", rec.Code)
	}

	id := c.tokenID()
	counts := map[string]int{}
	for _, l := range logs.requests(t) {
		if l["client"] != shared && l["client"] != "198.51.100.1" {
			t.Fatalf("request logged without its client: %v", l)
		}
		switch l["status"] {
		case float64(200):
			if l["token_id"] != id || l["level"] != "INFO" {
				t.Fatalf("200 logged as %v; want token_id %s", l, id)
			}
		case float64(401), float64(429):
			if l["token_id"] != "unknown" || l["level"] != "WARN" {
				t.Fatalf("refusal logged as %v; want token_id unknown at WARN", l)
			}
		}
		counts[fmt.Sprint(l["status"])]++
	}
	if counts["200"] != 30 || counts["401"] != 21 || counts["429"] != 10 {
		t.Fatalf("logged statuses %v", counts)
	}
	if strings.Contains(logs.String(), "es_wrong") || strings.Contains(logs.String(), c.token) {
		t.Fatal("a token was logged")
	}
}

// TestTenantLimitStillApplies: a valid token is spared the failure limit,
// not the tenant's rate limit.
func TestTenantLimitStillApplies(t *testing.T) {
	logs := &logBuffer{}
	e := newEnv(t)
	h := frozen(e, withLog(logs), func(c *scim.Config) { c.RateLimit = 1 })
	c := e.tenant("contoso")
	var limited bool
	for range 5 {
		if rec := serve(h, "GET", "/scim/v2/Users", c.token, "192.0.2.1:1"); rec.Code == http.StatusTooManyRequests {
			limited = rec.Header().Get("Retry-After") != ""
			break
		}
	}
	if !limited {
		t.Fatal("five requests at 1/s (burst 2) were all served, or 429 came without Retry-After")
	}
	l := logs.requests(t)
	last := l[len(l)-1]
	if last["status"] != float64(429) || last["tenant"] != "contoso" || last["token_id"] != c.tokenID() || last["client"] != "192.0.2.1" {
		t.Fatalf("tenant-limited request logged as %v", last)
	}
}

func TestMissingTokenLogged(t *testing.T) {
	logs := &logBuffer{}
	h := frozen(newEnv(t), withLog(logs))
	rec := serve(h, "GET", "/scim/v2/Users", "", "192.0.2.4:1")
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("%d", rec.Code)
	}
	// Error texts are not HTML-escaped.
	if !strings.Contains(rec.Body.String(), `Bearer <token>`) {
		t.Fatalf("escaped: %s", rec.Body)
	}
	l := logs.requests(t)
	if len(l) != 1 || l[0]["token_id"] != "none" || l[0]["client"] != "192.0.2.4" || l[0]["status"] != float64(401) || l[0]["endpoint"] != "users" {
		t.Fatalf("logged %v", l)
	}
	// A refused request to a path of the client's own invention logs no part of it.
	serve(h, "GET", "/scim/v2/jane.doe@contoso.com", "", "192.0.2.4:1")
	if l := logs.requests(t); len(l) != 2 || l[1]["endpoint"] != "other" {
		t.Fatalf("logged %v", l)
	}
}

// TestTrustedProxiesSCIM: forwarded clients are believed from trusted
// proxies only; the client keys the failure limit and the log.
func TestTrustedProxiesSCIM(t *testing.T) {
	logs := &logBuffer{}
	e := newEnv(t)
	h := frozen(e, withLog(logs), func(c *scim.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	c := e.tenant("contoso")
	proxy := "10.1.1.1:443"
	for i := range 20 {
		serve(h, "GET", "/scim/v2/Users", fmt.Sprint("es_bad", i), proxy, "Forwarded", "for=198.51.100.7")
	}
	if rec := serve(h, "GET", "/scim/v2/Users", "es_bad", proxy, "Forwarded", `for="198.51.100.7:1234"`); rec.Code != 429 {
		t.Fatalf("the forwarded client past its burst: %d", rec.Code)
	}
	if rec := serve(h, "GET", "/scim/v2/Users", "es_bad", proxy, "X-Forwarded-For", "198.51.100.8"); rec.Code != 401 {
		t.Fatalf("another client behind the same proxy: %d", rec.Code)
	}
	if rec := serve(h, "GET", "/scim/v2/Users", c.token, proxy, "Forwarded", "for=198.51.100.7"); rec.Code != 200 {
		t.Fatalf("a valid token from the limited client: %d", rec.Code)
	}
	// From an untrusted peer the headers are ignored: rotating them does
	// not escape the limit.
	for i := range 21 {
		rec := serve(h, "GET", "/scim/v2/Users", "es_bad", "192.0.2.66:1", "X-Forwarded-For", fmt.Sprint("203.0.113.", i))
		if i == 20 && rec.Code != 429 {
			t.Fatalf("spoofing peer past its burst: %d", rec.Code)
		}
	}
	seen := map[any]int{}
	for _, l := range logs.requests(t) {
		seen[l["client"]]++
	}
	if seen["198.51.100.7"] != 22 || seen["198.51.100.8"] != 1 || seen["192.0.2.66"] != 21 || len(seen) != 3 {
		t.Fatalf("clients logged: %v", seen)
	}
}

// TestHead: HEAD is answered on GET endpoints with GET's headers and no body.
func TestHead(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	u := c.do("POST", "/Users", `{"userName":"ada@contoso.com"}`).want(t, 201)
	g := c.do("POST", "/Groups", fmt.Sprintf(`{"displayName":"Sales","members":[{"value":%q}]}`, str(u.body, "id"))).want(t, 201)
	for _, path := range []string{"/Users", "/Users/" + str(u.body, "id"), "/Groups", "/Groups/" + str(g.body, "id"),
		"/Groups?filter=" + q(`displayName eq "Sales"`), "/ServiceProviderConfig", "/Schemas", "/ResourceTypes"} {
		r := c.do("HEAD", path, nil).want(t, 200)
		if len(r.raw) != 0 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/scim+json") {
			t.Fatalf("HEAD %s: %q %v", path, r.raw, r.header)
		}
		if strings.Contains(path, "/Users/") || strings.Contains(path, "/Groups/") {
			if get := c.do("GET", path, nil); r.header.Get("ETag") == "" || r.header.Get("ETag") != get.header.Get("ETag") {
				t.Fatalf("HEAD %s: ETag %q, GET's %q", path, r.header.Get("ETag"), get.header.Get("ETag"))
			}
		}
	}
	c.do("HEAD", "/Users/nope", nil).want(t, 404)
	if r := c.do("PUT", "/Users", "{}").want(t, 405); !strings.Contains(r.header.Get("Allow"), "HEAD") {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
}

// TestUncleanedPath: a path a ServeMux would clean gets a SCIM 404, not a
// redirect, in front of the server's mux.
func TestUncleanedPath(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	srv := scim.New(scim.Config{DB: e.db, PublicURL: "http://example"})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.Handle("/", srv.Handler())
	front := httptest.NewServer(srv.Front(mux))
	defer front.Close()
	c.base = front.URL + "/scim/v2"
	noRedirect := *http.DefaultClient
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, p := range []string{"/scim/v2/Users/../x", "/scim/v2/../healthz", "/scim/./v2/Users", "/SCIM/v2/Groups/./x/.."} {
		req, _ := http.NewRequest("GET", front.URL+p, nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 404 || !strings.Contains(string(body), "urn:ietf:params:scim:api:messages:2.0:Error") {
			t.Errorf("GET %s: %d %s", p, res.StatusCode, body)
		}
	}
	// Everything else still reaches the mux, and SCIM still works.
	if res, err := http.Get(front.URL + "/healthz"); err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", res, err)
	}
	c.do("GET", "/Users", nil).want(t, 200)
}

// TestClientGoneBeforeAnswer: a request whose client has gone (its
// context canceled) is logged as such, never as a 500 error.
func TestClientGoneBeforeAnswer(t *testing.T) {
	logs := &logBuffer{}
	e := newEnv(t, withLog(logs))
	c := e.tenant("contoso")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest("GET", "/scim/v2/Users", nil).WithContext(ctx)
	req.Header.Set("Authorization", "Bearer "+c.token)
	e.srv.Config.Handler.ServeHTTP(httptest.NewRecorder(), req)
	for _, l := range logs.lines(t) {
		if l["level"] == "ERROR" {
			t.Fatalf("logged as an error: %v", l)
		}
	}
	l := logs.requests(t)
	if len(l) != 1 || l[0]["status"] != float64(499) || l[0]["level"] != "INFO" {
		t.Fatalf("request logged as %v; want status 499 at INFO", l)
	}
}

// TestClientGoneMidStream: a client that reads the first bytes of a large
// group list and hangs up is logged as gone, not as an error.
func TestClientGoneMidStream(t *testing.T) {
	logs := &logBuffer{}
	e := newEnv(t, withLog(logs))
	c := e.tenant("contoso")
	bigGroups(t, c, 10, 3000)
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /scim/v2/Groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", c.token)
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("status line %q, %v", status, err)
	}
	conn.(*net.TCPConn).SetLinger(0) // hang up hard, with most of the answer unread
	conn.Close()
	var l []map[string]any
	for deadline := time.Now().Add(30 * time.Second); len(l) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		l = logs.requests(t) // written once the handler has given up
	}
	var got map[string]any
	for _, line := range l {
		if line["method"] == "GET" {
			got = line
		}
	}
	if got == nil {
		t.Fatalf("no request line for the GET: %v", l)
	}
	if got["status"] != float64(499) || got["level"] != "INFO" || got["aborted"] != nil {
		t.Fatalf("logged as %v; want status 499 at INFO", got)
	}
	for _, line := range logs.lines(t) {
		if line["level"] == "ERROR" {
			t.Fatalf("logged as an error: %v", line)
		}
	}
}

// bigGroups stores n groups of size members each (the same users), behind
// the API's back, for speed.
func bigGroups(t *testing.T, c *client, n, size int) []string {
	t.Helper()
	ctx := context.Background()
	var users, groups []string
	err := c.env.db.Write(ctx, func(tx *store.Tx) error {
		for i := range size {
			r := &store.Resource{Kind: store.UserKind, Doc: map[string]any{"userName": fmt.Sprintf("user%05d@contoso.com", i),
				"displayName": fmt.Sprintf("User %d <%d>", i, i)}}
			if err := tx.Insert(c.tenant.ID, r); err != nil {
				return err
			}
			users = append(users, r.ID)
		}
		for i := range n {
			g := &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": fmt.Sprintf("Group %d", i)}}
			if err := tx.Insert(c.tenant.ID, g); err != nil {
				return err
			}
			if _, err := tx.AddMembers(c.tenant.ID, g.ID, users); err != nil {
				return err
			}
			groups = append(groups, g.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return groups
}
