package graphtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
)

const (
	tenantA = "0a1b2c3d-0000-4000-8000-00000000000a"
	appA    = "5e6f7a8b-0000-4000-8000-0000000000a1"
	secretA = "s3cr3t~value"
)

// setup starts a fake with one tenant and an app granted what the tests'
// delta calls need, and returns a Graph token.
func setup(t testing.TB, opts Options) (*Server, *Directory, string) {
	t.Helper()
	s := NewServer(opts)
	t.Cleanup(s.Close)
	s.AddApp(tenantA, appA, secretA)
	s.Grant(tenantA, appA, "GroupMember.Read.All", "User.Read.All")
	return s, s.Tenant(tenantA), secretToken(t, s, tenantA, appA, secretA)
}

func tokenRequest(t testing.TB, s *Server, tenant string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := s.Client().PostForm(s.URL()+"/"+tenant+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("token response: %v", err)
	}
	return resp.StatusCode, body
}

func secretForm(client, secret string) url.Values {
	return url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {client},
		"client_secret": {secret},
		// MSAL adds the OpenID scopes to the resource's .default.
		"scope": {"https://graph.microsoft.com/.default openid offline_access profile"},
	}
}

func secretToken(t testing.TB, s *Server, tenant, client, secret string) string {
	t.Helper()
	status, body := tokenRequest(t, s, tenant, secretForm(client, secret))
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, body)
	}
	return body["access_token"].(string)
}

// signJWT signs claims the way MSAL does (PS256 with x5t#S256) or the way
// ADFS-style clients do (RS256 with x5t).
func signJWT(t testing.TB, key *rsa.PrivateKey, cert *x509.Certificate, alg string, claims map[string]any) string {
	t.Helper()
	hdr := map[string]any{"alg": alg, "typ": "JWT"}
	if alg == "PS256" {
		sum := sha256.Sum256(cert.Raw)
		hdr["x5t#S256"] = base64.StdEncoding.EncodeToString(sum[:])
	} else {
		sum := sha1.Sum(cert.Raw)
		hdr["x5t"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(claims)
	signing := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	digest := sha256.Sum256([]byte(signing))
	var sig []byte
	var err error
	if alg == "PS256" {
		sig, err = rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	} else {
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

type page struct {
	Context string           `json:"@odata.context"`
	Value   []map[string]any `json:"value"`
	Next    string           `json:"@odata.nextLink"`
	Delta   string           `json:"@odata.deltaLink"`
}

// get sends an authorised GET and returns the status, headers and body.
func get(t testing.TB, s *Server, token, u string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func getPage(t testing.TB, s *Server, token, u string) page {
	t.Helper()
	status, _, b := get(t, s, token, u)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, status, b)
	}
	var p page
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("page: %v: %s", err, b)
	}
	if (p.Next == "") == (p.Delta == "") {
		t.Fatalf("page must have exactly one of nextLink and deltaLink: %s", b)
	}
	return p
}

// walkDelta follows nextLinks to the deltaLink and returns every item.
func walkDelta(t testing.TB, s *Server, token, u string) (items []map[string]any, deltaLink string, pages int) {
	t.Helper()
	for pages < 100000 {
		p := getPage(t, s, token, u)
		pages++
		items = append(items, p.Value...)
		if p.Delta != "" {
			return items, p.Delta, pages
		}
		u = p.Next
	}
	t.Fatal("walk does not end")
	return
}

// graphErr decodes Graph's error body.
func graphErr(t testing.TB, b []byte) (code, message string) {
	t.Helper()
	var e struct {
		Error struct {
			Code       string            `json:"code"`
			Message    string            `json:"message"`
			InnerError map[string]string `json:"innerError"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body: %v: %s", err, b)
	}
	if e.Error.InnerError["request-id"] == "" || e.Error.InnerError["date"] == "" {
		t.Errorf("innerError lacks request-id/date: %s", b)
	}
	return e.Error.Code, e.Error.Message
}

func ids(items []map[string]any) []string {
	var out []string
	for _, it := range items {
		out = append(out, it["id"].(string))
	}
	sort.Strings(out)
	return out
}

func removedReason(it map[string]any) string {
	if r, ok := it["@removed"].(map[string]any); ok {
		return r["reason"].(string)
	}
	return ""
}

// memberDelta returns a group item's added and removed member ids.
func memberDelta(it map[string]any) (added, removed []string) {
	ms, _ := it["members@delta"].([]any)
	for _, m := range ms {
		mm := m.(map[string]any)
		if removedReason(mm) != "" {
			removed = append(removed, mm["id"].(string))
		} else {
			added = append(added, mm["id"].(string))
		}
	}
	return added, removed
}

// mirror applies delta items the way a careful client does, so tests can
// compare its result with the directory.
type mirror struct {
	users   map[string]map[string]any
	groups  map[string]map[string]bool
	gnames  map[string]string
	enabled map[string]bool
}

func newMirror() *mirror {
	return &mirror{users: map[string]map[string]any{}, groups: map[string]map[string]bool{}, gnames: map[string]string{}, enabled: map[string]bool{}}
}

func (m *mirror) applyUsers(items []map[string]any) {
	for _, it := range items {
		id := it["id"].(string)
		if removedReason(it) != "" {
			delete(m.users, id)
			continue
		}
		m.users[id] = it
	}
}

func (m *mirror) applyGroups(items []map[string]any) {
	for _, it := range items {
		id := it["id"].(string)
		if removedReason(it) != "" {
			delete(m.groups, id)
			continue
		}
		if m.groups[id] == nil {
			m.groups[id] = map[string]bool{}
		}
		if n, ok := it["displayName"].(string); ok {
			m.gnames[id] = n
		}
		added, removed := memberDelta(it)
		for _, u := range added {
			m.groups[id][u] = true
		}
		for _, u := range removed {
			delete(m.groups[id], u)
		}
	}
}

// members lists a mirrored group's members that are live users or groups
// (a careful client hides soft-deleted users and drops hard-deleted ones).
func (m *mirror) members(g string) []string {
	var out []string
	for id := range m.groups[g] {
		if _, ok := m.users[id]; ok {
			out = append(out, id)
		} else if _, ok := m.groups[id]; ok {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func usersURL(s *Server, query string) string {
	return s.URL() + "/v1.0/users/delta()" + query
}

func groupsURL(s *Server, query string) string {
	return s.URL() + "/v1.0/groups/delta()" + query
}

func q(kv ...string) string {
	v := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return "?" + strings.ReplaceAll(v.Encode(), "%24", "$")
}
