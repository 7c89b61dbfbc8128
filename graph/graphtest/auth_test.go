package graphtest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestTokenEndpoint(t *testing.T) {
	s, _, _ := setup(t, Options{})
	cert, key, pemBytes, err := NewCertificate("entrasync test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(pemBytes), "BEGIN CERTIFICATE") || !strings.Contains(string(pemBytes), "BEGIN PRIVATE KEY") {
		t.Fatalf("PEM lacks a block: %s", pemBytes)
	}
	s.Tenant("other.example")
	const certApp = "5e6f7a8b-0000-4000-8000-0000000000c1"
	s.AddAppCertificate(tenantA, certApp, cert)
	_, otherKey, _, err := NewCertificate("someone else")
	if err != nil {
		t.Fatal(err)
	}
	aud := s.URL() + "/" + tenantA + "/oauth2/v2.0/token"
	claims := func(aud string, exp time.Time) map[string]any {
		return map[string]any{"aud": aud, "iss": certApp, "sub": certApp, "jti": newGUID(),
			"nbf": time.Now().Unix(), "exp": exp.Unix()}
	}
	assertion := func(jwt string) url.Values {
		return url.Values{
			"grant_type":            {"client_credentials"},
			"client_id":             {certApp},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {jwt},
			"client_info":           {"1"},
			"scope":                 {"https://graph.microsoft.com/.default openid offline_access profile"},
		}
	}
	soon := time.Now().Add(10 * time.Minute)
	with := func(f url.Values, k, v string) url.Values {
		f.Set(k, v)
		return f
	}

	tests := []struct {
		name    string
		tenant  string
		form    url.Values
		status  int
		errCode string
		aadsts  float64
	}{
		{"secret ok", tenantA, secretForm(appA, secretA), 200, "", 0},
		{"secret, scope is our own URL", tenantA, with(secretForm(appA, secretA), "scope", s.URL()+"/.default"), 200, "", 0},
		{"wrong secret", tenantA, secretForm(appA, "nope"), 401, "invalid_client", 7000215},
		{"unknown client", tenantA, secretForm("99999999-0000-4000-8000-000000000000", secretA), 400, "unauthorized_client", 700016},
		{"unknown tenant", "ffffffff-0000-4000-8000-000000000000", secretForm(appA, secretA), 400, "invalid_request", 90002},
		{"app not in this tenant", "other.example", secretForm(appA, secretA), 400, "unauthorized_client", 700016},
		{"no grant", tenantA, with(secretForm(appA, secretA), "grant_type", ""), 400, "invalid_request", 900144},
		{"bad grant", tenantA, with(secretForm(appA, secretA), "grant_type", "password"), 400, "unsupported_grant_type", 70003},
		{"scope without .default", tenantA, with(secretForm(appA, secretA), "scope", "https://graph.microsoft.com/User.Read.All"), 400, "invalid_scope", 1002012},
		{"scope of another resource", tenantA, with(secretForm(appA, secretA), "scope", "https://management.azure.com/.default"), 400, "invalid_resource", 500011},
		{"no credential", tenantA, with(secretForm(appA, secretA), "client_secret", ""), 401, "invalid_client", 7000216},
		{"certificate PS256 (MSAL)", tenantA, assertion(signJWT(t, key, cert, "PS256", claims(aud, soon))), 200, "", 0},
		{"certificate RS256", tenantA, assertion(signJWT(t, key, cert, "RS256", claims(aud, soon))), 200, "", 0},
		{"certificate, wrong key", tenantA, assertion(signJWT(t, otherKey, cert, "PS256", claims(aud, soon))), 401, "invalid_client", 700027},
		{"certificate, wrong audience", tenantA, assertion(signJWT(t, key, cert, "PS256", claims("https://login.microsoftonline.com/x/oauth2/v2.0/token", soon))), 401, "invalid_client", 50013},
		{"certificate, expired assertion", tenantA, assertion(signJWT(t, key, cert, "PS256", claims(aud, time.Now().Add(-time.Hour)))), 401, "invalid_client", 700024},
		{"certificate, garbage", tenantA, assertion("a.b.c"), 401, "invalid_client", 50027},
	}
	// A certificate of another app is not registered for this one.
	tests = append(tests, struct {
		name    string
		tenant  string
		form    url.Values
		status  int
		errCode string
		aadsts  float64
	}{"certificate of another app", tenantA, with(assertion(signJWT(t, key, cert, "PS256", map[string]any{"aud": aud, "iss": appA, "sub": appA, "exp": soon.Unix()})), "client_id", appA), 401, "invalid_client", 700027})

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := tokenRequest(t, s, tc.tenant, tc.form)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, body)
			}
			if tc.status == 200 {
				if body["token_type"] != "Bearer" || body["expires_in"] != float64(3599) || body["ext_expires_in"] != float64(3599) || body["access_token"] == "" {
					t.Fatalf("token body: %v", body)
				}
				return
			}
			if body["error"] != tc.errCode {
				t.Errorf("error %v, want %s", body["error"], tc.errCode)
			}
			codes, _ := body["error_codes"].([]any)
			if len(codes) != 1 || codes[0] != tc.aadsts {
				t.Errorf("error_codes %v, want [%v]", body["error_codes"], tc.aadsts)
			}
			desc, _ := body["error_description"].(string)
			if !strings.HasPrefix(desc, "AADSTS") || !strings.Contains(desc, "Trace ID:") {
				t.Errorf("error_description %q", desc)
			}
			for _, k := range []string{"timestamp", "trace_id", "correlation_id"} {
				if body[k] == "" || body[k] == nil {
					t.Errorf("missing %s", k)
				}
			}
		})
	}
}

func TestFailTokenNext(t *testing.T) {
	s, _, _ := setup(t, Options{})
	s.FailTokenNext(1)
	if status, body := tokenRequest(t, s, tenantA, secretForm(appA, secretA)); status != 500 || body["error"] != "temporarily_unavailable" {
		t.Fatalf("got %d %v", status, body)
	}
	if status, _ := tokenRequest(t, s, tenantA, secretForm(appA, secretA)); status != 200 {
		t.Fatalf("second try: %d", status)
	}
	if n := s.TokenRequests(); n != 3 { // setup's, the failure, the retry
		t.Fatalf("TokenRequests = %d", n)
	}
}

func TestDiscovery(t *testing.T) {
	s, _, _ := setup(t, Options{})
	base := s.URL()

	t.Run("openid configuration", func(t *testing.T) {
		status, _, b := get(t, s, "", base+"/"+tenantA+"/v2.0/.well-known/openid-configuration")
		if status != 200 {
			t.Fatalf("%d %s", status, b)
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"token_endpoint":         base + "/" + tenantA + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/" + tenantA + "/oauth2/v2.0/authorize",
			"issuer":                 base + "/" + tenantA + "/v2.0",
			"jwks_uri":               base + "/" + tenantA + "/discovery/v2.0/keys",
		}
		for k, v := range want {
			if doc[k] != v {
				t.Errorf("%s = %v, want %s", k, doc[k], v)
			}
		}
		if _, ok := doc["response_types_supported"].([]any); !ok {
			t.Error("response_types_supported missing")
		}
		// The token endpoint it names works.
		resp, err := s.Client().PostForm(doc["token_endpoint"].(string), secretForm(appA, secretA))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("token endpoint from discovery: %d", resp.StatusCode)
		}
	})
	t.Run("unknown tenant", func(t *testing.T) {
		status, _, b := get(t, s, "", base+"/nobody.example/v2.0/.well-known/openid-configuration")
		if status != 400 || !strings.Contains(string(b), "AADSTS90002") {
			t.Fatalf("%d %s", status, b)
		}
	})
	t.Run("instance discovery", func(t *testing.T) {
		u := base + "/common/discovery/instance?api-version=1.1&authorization_endpoint=" + url.QueryEscape(base+"/"+tenantA+"/oauth2/v2.0/authorize")
		status, _, b := get(t, s, "", u)
		var doc struct {
			TenantDiscoveryEndpoint string `json:"tenant_discovery_endpoint"`
			Metadata                []struct {
				Aliases []string `json:"aliases"`
			} `json:"metadata"`
		}
		if status != 200 || json.Unmarshal(b, &doc) != nil {
			t.Fatalf("%d %s", status, b)
		}
		host := strings.TrimPrefix(base, "https://")
		if doc.TenantDiscoveryEndpoint != base+"/"+tenantA+"/v2.0/.well-known/openid-configuration" || len(doc.Metadata) != 1 || doc.Metadata[0].Aliases[0] != host {
			t.Fatalf("document: %s", b)
		}
	})
	t.Run("keys", func(t *testing.T) {
		status, _, b := get(t, s, "", base+"/"+tenantA+"/discovery/v2.0/keys")
		if status != 200 || strings.TrimSpace(string(b)) != `{"keys":[]}` {
			t.Fatalf("%d %s", status, b)
		}
	})
}

func TestGraphAuthentication(t *testing.T) {
	s, _, tok := setup(t, Options{})
	tests := []struct {
		name   string
		header string
		status int
	}{
		{"missing bearer", "", 401},
		{"unknown token", "Bearer not-a-token", 401},
		{"basic scheme", "Basic " + tok, 401},
		{"valid", "Bearer " + tok, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", usersURL(s, ""), nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			req.Header.Set("client-request-id", "my-request")
			resp, err := s.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 401 {
				return
			}
			var body struct {
				Error struct {
					Code       string            `json:"code"`
					Message    string            `json:"message"`
					InnerError map[string]string `json:"innerError"`
				} `json:"error"`
			}
			json.NewDecoder(resp.Body).Decode(&body)
			if body.Error.Code != "InvalidAuthenticationToken" || body.Error.Message == "" || body.Error.InnerError["client-request-id"] != "my-request" {
				t.Fatalf("body %+v", body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
	reqs := s.Requests()
	last := reqs[len(reqs)-1]
	if !last.Authorized || last.Status != 200 || last.Tenant != tenantA || last.Path != "/v1.0/users/delta()" {
		t.Fatalf("last request %+v", last)
	}
	if reqs[len(reqs)-2].Authorized {
		t.Fatal("a refused request is logged as authorised")
	}
}

// A token is good for its own tenant's directory only.
func TestTokenSelectsTenant(t *testing.T) {
	s, d, tok := setup(t, Options{})
	const tenantB = "0a1b2c3d-0000-4000-8000-00000000000b"
	s.AddApp(tenantB, appA, "other")
	s.Grant(tenantB, appA, "User.Read.All")
	tokB := secretToken(t, s, tenantB, appA, "other")
	d.AddUser(User{DisplayName: "A only"})
	s.Tenant(tenantB).AddUser(User{DisplayName: "B only"})
	a, _, _ := walkDelta(t, s, tok, usersURL(s, ""))
	b, dl, _ := walkDelta(t, s, tokB, usersURL(s, ""))
	if len(a) != 1 || len(b) != 1 || a[0]["displayName"] != "A only" || b[0]["displayName"] != "B only" {
		t.Fatalf("a=%v b=%v", a, b)
	}
	// Tenant B's deltaLink means nothing in tenant A.
	status, _, _ := get(t, s, tok, dl)
	if status != http.StatusGone {
		t.Fatalf("cross-tenant deltaLink: %d", status)
	}
}
