package graph_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
	"testing"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
)

// brokenGraph serves users/delta pages from a script keyed by $skiptoken
// ("" for the first page); "{base}" in a page stands for its own URL.
type brokenGraph struct {
	*httptest.Server
	mu    gosync.Mutex
	pages map[string]string
	hits  int
}

func (g *brokenGraph) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.hits++
	body, ok := g.pages[r.URL.Query().Get("$skiptoken")]
	g.mu.Unlock()
	if !ok {
		http.Error(w, `{"error":{"code":"NotFound","message":"no such page"}}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(strings.ReplaceAll(body, "{base}", g.URL)))
}

// The walk stops, with words, on a page that breaks the delta protocol, and
// follows no link that leads off the configured Graph.
func TestWalkGuards(t *testing.T) {
	const user = `{"id":"6f1b2a3c-0000-4000-8000-000000000001","userPrincipalName":"a@contoso.example"}`
	next := func(tok string) string { return `"@odata.nextLink":"{base}/v1.0/users/delta?$skiptoken=` + tok + `"` }
	delta := `"@odata.deltaLink":"{base}/v1.0/users/delta?$deltatoken=d1"`
	tests := []struct {
		name  string
		pages map[string]string
		hits  int
		says  string
	}{
		{"neither link", map[string]string{"": `{"value":[` + user + `]}`}, 1, "a users delta page has neither a nextLink nor a deltaLink"},
		{"both links", map[string]string{"": `{"value":[],` + next("a") + `,` + delta + `}`}, 1, "both a nextLink and a deltaLink"},
		{"the same nextLink again", map[string]string{"": `{"value":[],` + next("a") + `}`, "a": `{"value":[` + user + `],` + next("a") + `}`}, 2,
			"Graph repeated a users nextLink"},
		{"a loop of nextLinks", map[string]string{"": `{"value":[],` + next("a") + `}`, "a": `{"value":[],` + next("b") + `}`, "b": `{"value":[],` + next("a") + `}`}, 3,
			"Graph repeated a users nextLink"},
		{"a nextLink to another host", map[string]string{"": `{"value":[` + user + `],"@odata.nextLink":"https://evil.example/v1.0/users/delta?$skiptoken=stolen"}`}, 1,
			"Graph's next users delta link points at https://evil.example, not at the configured Graph"},
		{"a deltaLink to another host", map[string]string{"": `{"value":[],"@odata.deltaLink":"https://evil.example/v1.0/users/delta?$deltatoken=stolen"}`}, 1,
			"Graph's users delta link points at https://evil.example"},
		{"a nextLink to another resource", map[string]string{"": `{"value":[],"@odata.nextLink":"{base}/v1.0/groups/delta?$skiptoken=g"}`}, 1,
			"is not a users delta link"},
	}
	srv := newFake(t, graphtest.Options{}) // the token endpoint
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := &brokenGraph{pages: tc.pages}
			g.Server = httptest.NewUnstartedServer(g)
			g.StartTLS()
			defer g.Close()
			pool := x509.NewCertPool()
			pool.AddCert(srv.Certificate())
			pool.AddCert(g.Certificate())
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			c, _ := newClient(t, srv, func(c *graph.Config) { c.GraphURL, c.HTTPClient = g.URL, hc })
			var users int
			var err error
			for p, e := range c.UsersDelta(ctx, "") {
				if e != nil {
					err = e
					break
				}
				users += len(p.Users)
			}
			if graph.KindOf(err) != graph.KindInvalid || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want %q", err, tc.says)
			}
			if strings.Contains(err.Error(), "stolen") || strings.Contains(err.Error(), "skiptoken") {
				t.Fatalf("a link's query in %v", err)
			}
			if g.hits != tc.hits || users != 0 {
				t.Fatalf("%d requests (want %d), %d users handed on from a page whose links were refused", g.hits, tc.hits, users)
			}
		})
	}
}
