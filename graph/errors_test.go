package graph_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
)

// firstError runs a users delta walk and returns its error.
func firstError(c *graph.Client, link string) error {
	for _, err := range c.UsersDelta(ctx, link) {
		if err != nil {
			return err
		}
	}
	return nil
}

// asGraphError fails the test unless err is a *graph.Error of kind.
func asGraphError(t *testing.T, err error, kind graph.Kind) *graph.Error {
	t.Helper()
	var e *graph.Error
	if !errors.As(err, &e) || e.Kind != kind || graph.KindOf(err) != kind {
		t.Fatalf("want a %s error, got %#v (%v)", kind, err, err)
	}
	return e
}

// mustSay fails unless msg holds every part.
func mustSay(t *testing.T, msg string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("message lacks %q:\n%s", p, msg)
		}
	}
}

func TestPermissionErrorSaysWhatToDo(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	srv.Grant(tenantID, clientID, "GroupMember.Read.All")
	c, _ := newClient(t, srv)
	err := firstError(c, "")
	e := asGraphError(t, err, graph.KindPermission)
	if !graph.IsPermission(err) || graph.IsAuthentication(err) || graph.IsTransient(err) || e.Permission != "User.Read.All" || e.Status != http.StatusForbidden {
		t.Fatalf("%#v", e)
	}
	mustSay(t, err.Error(), "GET "+strings.TrimPrefix(srv.URL(), "https://")+"/v1.0/users/delta", "403 Authorization_RequestDenied",
		"lacks the application permission User.Read.All",
		"App registrations → the app (client id "+clientID+") → API permissions → Add a permission → Microsoft Graph → Application permissions → User.Read.All",
		`"Grant admin consent for <tenant>" (tenant id `+tenantID+`)`)
}

func TestRefusedCredentials(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	cert, _, pemBytes, err := graphtest.NewCertificate("registered")
	if err != nil {
		t.Fatal(err)
	}
	_, _, otherPEM, err := graphtest.NewCertificate("not registered")
	if err != nil {
		t.Fatal(err)
	}
	srv.AddAppCertificate(tenantID, clientID, cert)
	tests := []struct {
		name   string
		mod    func(*graph.Config)
		aadsts int
		says   []string
	}{
		{"wrong secret", func(c *graph.Config) { c.ClientSecret = "n0t-the-s3cret" }, 7000215,
			[]string{"AADSTS7000215: Invalid client secret provided.", "not its Secret ID"}},
		{"unknown app", func(c *graph.Config) { c.ClientID = "11111111-2222-4333-8444-555555555555" }, 700016,
			[]string{"AADSTS700016", "No app with client id 11111111-2222-4333-8444-555555555555"}},
		{"unknown tenant", func(c *graph.Config) { c.TenantID = "99999999-2222-4333-8444-555555555555" }, 90002,
			[]string{"AADSTS90002", "Tenant 99999999-2222-4333-8444-555555555555 was not found", "--authority-host"}},
		{"certificate not registered", func(c *graph.Config) { c.ClientSecret, c.Certificate = "", otherPEM }, 700027,
			[]string{"AADSTS700027: Client assertion failed signature validation.", "Certificates & secrets"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newClient(t, srv, tc.mod)
			err := firstError(c, "")
			e := asGraphError(t, err, graph.KindCredentials)
			if !graph.IsAuthentication(err) || graph.IsTransient(err) || e.AADSTS != tc.aadsts {
				t.Fatalf("%#v", e)
			}
			mustSay(t, err.Error(), append([]string{"Entra refused the app's credentials"}, tc.says...)...)
			if strings.Contains(err.Error(), "n0t-the-s3cret") || strings.Contains(err.Error(), "Trace ID") {
				t.Fatalf("the message repeats the secret or Entra's trace: %v", err)
			}
		})
	}
	c, _ := newClient(t, srv, func(c *graph.Config) { c.ClientSecret, c.Certificate = "", pemBytes })
	if err := firstError(c, ""); err != nil {
		t.Fatalf("the registered certificate: %v", err)
	}

	// An authority host that is no Entra.
	other := httptest.NewUnstartedServer(http.NotFoundHandler())
	other.StartTLS()
	defer other.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	pool.AddCert(other.Certificate())
	c, _ = newClient(t, srv, func(c *graph.Config) {
		c.AuthorityHost = other.URL
		c.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	})
	err = firstError(c, "")
	asGraphError(t, err, graph.KindCredentials)
	mustSay(t, err.Error(), "the authority host has no Entra token endpoint", "Check --authority-host")
}

// A token endpoint that is down for a moment is not a refusal.
func TestTokenEndpointUnavailable(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	c, _ := newClient(t, srv)
	srv.FailTokenNext(1)
	err := firstError(c, "")
	e := asGraphError(t, err, graph.KindTokenUnavailable)
	if graph.IsAuthentication(err) || !graph.IsTransient(err) || e.AADSTS != 90033 || e.Status != http.StatusInternalServerError {
		t.Fatalf("%#v", e)
	}
	mustSay(t, err.Error(), "temporarily unavailable", "500 temporarily_unavailable", "AADSTS90033", "the next run tries again")
	if strings.Contains(err.Error(), "refused") {
		t.Fatalf("reported as refused: %v", err)
	}
	if err := firstError(c, ""); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestNetworkFailures(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	srv.Tenant(tenantID).Populate(rand.New(rand.NewSource(11)), 3, 1)
	plain := httptest.NewServer(http.NotFoundHandler()) // speaks HTTP, not TLS
	defer plain.Close()
	refused := closedAddr(t)
	fakeHost := strings.TrimPrefix(srv.URL(), "https://")
	// The resolver's own error, as a dial would return it: no DNS on this machine to ask.
	noDNS := srv.Client().Transport.(*http.Transport).Clone()
	noDNS.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
	}
	tests := []struct {
		name string
		mod  func(*graph.Config)
		host string
		says []string
	}{
		{"token endpoint: connection refused", func(c *graph.Config) { c.AuthorityHost = "https://" + refused }, refused,
			[]string{"no answer from " + refused, "connection refused", "--authority-host"}},
		{"token endpoint: DNS", func(c *graph.Config) {
			c.AuthorityHost = "https://login.example.invalid"
			c.HTTPClient = &http.Client{Transport: noDNS}
		}, "login.example.invalid", []string{"DNS lookup of login.example.invalid found no such host", "--authority-host"}},
		{"token endpoint: certificate not trusted", func(c *graph.Config) { c.HTTPClient = &http.Client{} }, fakeHost,
			[]string{"TLS: the server's certificate is signed by an authority this machine does not trust", "proxy", "--authority-host"}},
		{"token endpoint: not TLS", func(c *graph.Config) { c.AuthorityHost = strings.Replace(plain.URL, "http:", "https:", 1) },
			strings.TrimPrefix(plain.URL, "http://"), []string{"TLS handshake failed"}},
		{"Graph: connection refused", func(c *graph.Config) { c.GraphURL = "https://" + refused }, refused,
			[]string{"GET " + refused + "/v1.0/users/delta", "connection refused", "--graph-url"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newClient(t, srv, tc.mod)
			err := firstError(c, "")
			e := asGraphError(t, err, graph.KindNetwork)
			if !graph.IsNetwork(err) || !graph.IsTransient(err) || graph.IsAuthentication(err) || e.Host != tc.host {
				t.Fatalf("%#v: %v", e, err)
			}
			mustSay(t, err.Error(), tc.says...)
			if strings.Contains(err.Error(), "refused the") {
				t.Fatalf("a network failure told as refused credentials: %v", err)
			}
		})
	}
	// The certificate error keeps its type for callers that look.
	c, _ := newClient(t, srv, func(c *graph.Config) { c.GraphURL = srv.URL(); c.HTTPClient = &http.Client{} })
	var unknown x509.UnknownAuthorityError
	if err := firstError(c, ""); !errors.As(err, &unknown) {
		t.Fatalf("%v", err)
	}
}

func TestOtherGraphErrors(t *testing.T) {
	srv := newFake(t, graphtest.Options{})
	c, _ := newClient(t, srv)
	walkUsers(t, c, "")
	srv.FailNext(1, http.StatusBadGateway, 0)
	err := firstError(c, "")
	e := asGraphError(t, err, graph.KindGraph)
	if e.Status != http.StatusBadGateway || e.Code != "UnknownError" || graph.IsTransient(err) || graph.IsAuthentication(err) {
		t.Fatalf("%#v", e)
	}
	mustSay(t, err.Error(), "GET "+strings.TrimPrefix(srv.URL(), "https://")+"/v1.0/users/delta: 502 UnknownError: Bad gateway")
}

// No error text holds a delta or skip token, an access token or a secret,
// whatever failed.
func TestErrorsHoldNoTokens(t *testing.T) {
	srv := newFake(t, graphtest.Options{PageSize: 2})
	dir := srv.Tenant(tenantID)
	dir.Populate(rand.New(rand.NewSource(12)), 9, 1)
	c, _ := newClient(t, srv)
	_, link, _ := walkUsers(t, c, "")
	if !strings.Contains(link, "$deltatoken=") {
		t.Fatalf("link %s", link)
	}
	var errs []error
	check := func(err error) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		errs = append(errs, err)
	}

	// Cancelled in the middle of a walk (on a nextLink).
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	n := 0
	for _, err := range c.UsersDelta(cctx, "") {
		if err != nil {
			check(err)
			if !errors.Is(err, errLockLost) || graph.KindOf(err) != graph.KindCanceled || !strings.Contains(err.Error(), "lost the lock") {
				t.Errorf("cancellation: %v", err)
			}
			break
		}
		if n++; n == 2 {
			cancel(errLockLost)
		}
	}
	// Throttled, resync and refused on a stored link.
	srv.FailNext(10, http.StatusTooManyRequests, 7*1e9)
	check(firstError(c, link))
	srv.FailNext(0, 0, 0)
	srv.Grant(tenantID, clientID, "GroupMember.Read.All")
	c2, _ := newClient(t, srv)
	check(firstError(c2, link))
	srv.ExpireDeltaTokens()
	check(firstError(c, link))
	// No answer at all, on a stored link: the SDK's own error text holds the whole URL.
	srv.Close()
	check(firstError(c, link))
	bad, _ := newClient(t, srv, func(cfg *graph.Config) { cfg.ClientSecret = "s3cret-never-shown" })
	check(firstError(bad, link))

	for _, err := range errs {
		msg := err.Error()
		for _, secretText := range []string{"deltatoken", "skiptoken", "?", "eyJ", secret, "s3cret-never-shown"} {
			if strings.Contains(msg, secretText) {
				t.Errorf("%q in %q", secretText, msg)
			}
		}
	}
}

var errLockLost = errors.New("lost the lock")
