package graph_test

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
)

func TestNormalizeGraphURL(t *testing.T) {
	ok := map[string]string{
		"https://graph.microsoft.com":             "https://graph.microsoft.com",
		"https://graph.microsoft.com/":            "https://graph.microsoft.com",
		"https://graph.microsoft.com/v1.0":        "https://graph.microsoft.com",
		"https://graph.microsoft.com/v1.0/":       "https://graph.microsoft.com",
		" HTTPS://graph.microsoft.us/V1.0 ":       "https://graph.microsoft.us",
		"http://127.0.0.1:8443/v1.0":              "http://127.0.0.1:8443",
		"https://microsoftgraph.chinacloudapi.cn": "https://microsoftgraph.chinacloudapi.cn",
	}
	for in, want := range ok {
		if got, err := graph.NormalizeGraphURL(in); err != nil || got != want {
			t.Errorf("NormalizeGraphURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	refused := map[string]string{
		"https://graph.microsoft.com/beta":       "give the Graph host without a path, such as https://graph.microsoft.com",
		"https://graph.microsoft.com/v1.0/users": "give the Graph host without a path, such as https://graph.microsoft.com",
		"https://proxy.example/graph":            "give the Graph host without a path",
		"http://graph.microsoft.com":             "must use https",
		"graph.microsoft.com":                    "not an absolute URL",
		"":                                       "empty",
		"https://graph.microsoft.com/?x=secret":  "scheme and host only",
		"https://user:pw@graph.microsoft.com":    "scheme and host only",
	}
	for in, want := range refused {
		_, err := graph.NormalizeGraphURL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NormalizeGraphURL(%q): %v, want %q", in, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "pw@")) {
			t.Errorf("the error repeats a query or password: %v", err)
		}
	}
}

func TestNormalizeAuthorityHost(t *testing.T) {
	ok := map[string]string{
		"https://login.microsoftonline.com":  "https://login.microsoftonline.com/",
		"https://login.microsoftonline.com/": "https://login.microsoftonline.com/",
		"https://login.microsoftonline.us//": "https://login.microsoftonline.us/",
		"https://localhost:9443":             "https://localhost:9443/",
	}
	for in, want := range ok {
		if got, err := graph.NormalizeAuthorityHost(in); err != nil || got != want {
			t.Errorf("NormalizeAuthorityHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"https://login.microsoftonline.com/6f1b2a3c-1111-4222-8333-944445555666",
		"https://login.microsoftonline.com/common/v2.0",
		"https://login.microsoftonline.com/v2.0",
		"https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token",
	} {
		_, err := graph.NormalizeAuthorityHost(in)
		if err == nil || !strings.Contains(err.Error(), "give only the host, such as https://login.microsoftonline.com (the tenant comes from --tenant-id)") {
			t.Errorf("NormalizeAuthorityHost(%q): %v", in, err)
		}
	}
	if _, err := graph.NormalizeAuthorityHost("ftp://login"); err == nil {
		t.Error("ftp taken")
	}
}

// A connection stored with the version path (as most docs print the Graph
// URL) works; one with a tenant in the authority host is refused by New.
func TestConfigTakesTheDocsForm(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	srv.Tenant(tenantID).Populate(rand.New(rand.NewSource(13)), 4, 1)
	for _, g := range []string{srv.URL() + "/v1.0", srv.URL() + "/v1.0/", srv.URL() + "/"} {
		c, _ := newClient(t, srv, func(c *graph.Config) { c.GraphURL = g })
		if users, link, _ := walkUsers(t, c, ""); len(users) != 4 || !strings.HasPrefix(link, srv.URL()+"/v1.0/users/delta?") {
			t.Fatalf("GraphURL %q: %d users, link %s", g, len(users), link)
		}
	}
	cfg := graph.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: secret, GraphURL: srv.URL() + "/beta", AuthorityHost: srv.URL()}
	if _, err := graph.New(cfg); err == nil || !strings.Contains(err.Error(), "Graph URL") || !strings.Contains(err.Error(), "such as https://graph.microsoft.com") {
		t.Fatalf("beta: %v", err)
	}
	cfg.GraphURL, cfg.AuthorityHost = srv.URL(), srv.URL()+"/"+tenantID
	if _, err := graph.New(cfg); err == nil || !strings.Contains(err.Error(), "authority host") {
		t.Fatalf("tenant in the authority: %v", err)
	}
	cfg.SetDefaults()
	if cfg.GraphURL != srv.URL() || cfg.AuthorityHost != srv.URL()+"/"+tenantID {
		t.Fatalf("SetDefaults: %q %q", cfg.GraphURL, cfg.AuthorityHost)
	}
}
