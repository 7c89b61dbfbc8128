package scim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
)

// env is a running SCIM server on a fresh store: SQLite, or with
// ENTRASYNC_TEST_STORE=postgres a schema of the test PostgreSQL.
type env struct {
	t       *testing.T
	db      *store.DB
	srv     *httptest.Server
	secrets []string // every Secret Token issued here
}

func newEnv(t *testing.T, opts ...func(*scim.Config)) *env {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "scim.db")
	if pgtest.Selected() {
		dsn = pgtest.Schema(t)
	}
	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, db: db}
	e.srv = httptest.NewUnstartedServer(nil)
	cfg := scim.Config{DB: db, PublicURL: "http://" + e.srv.Listener.Addr().String()}
	for _, o := range opts {
		o(&cfg)
	}
	e.srv.Config.Handler = scim.New(cfg).Handler()
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// tenant creates a tenant and returns a client holding its token.
func (e *env) tenant(name string) *client {
	e.t.Helper()
	var tn store.Tenant
	var secret string
	err := e.db.Write(context.Background(), func(tx *store.Tx) error {
		var err error
		if tn, err = tx.CreateTenant(name); err != nil {
			return err
		}
		_, secret, err = tx.CreateToken(tn)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.secrets = append(e.secrets, secret)
	return &client{t: e.t, env: e, tenant: tn, token: secret, base: e.srv.URL + "/scim/v2"}
}

type client struct {
	t      *testing.T
	env    *env
	tenant store.Tenant
	token  string
	base   string
}

type resp struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// do sends a request; path may carry a raw query, sent as written (Microsoft's
// validator sends unencoded quotes). body is a string (sent as is) or a value
// marshalled to JSON. hdr is name, value pairs.
func (c *client) do(method, path string, body any, hdr ...string) resp {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	target := c.base + path
	if strings.HasPrefix(path, "http") {
		target = path
	}
	p, rawQuery, _ := strings.Cut(target, "?")
	req, err := http.NewRequest(method, p, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.URL.RawQuery = rawQuery
	req.Header.Set("Authorization", "Bearer "+c.token)
	if rd != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	r := resp{status: res.StatusCode, header: res.Header}
	r.raw, _ = io.ReadAll(res.Body)
	if len(r.raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(r.raw))
		dec.UseNumber()
		if err := dec.Decode(&r.body); err != nil {
			c.t.Fatalf("%s %s: answer is not JSON: %q", method, path, r.raw)
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/scim+json") {
			c.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	if r.status == http.StatusInternalServerError {
		c.t.Fatalf("%s %s: server error %d %s", method, path, r.status, r.raw)
	}
	return r
}

// want fails the test unless the answer has the status.
func (r resp) want(t *testing.T, status int) resp {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	return r
}

// wantError checks an RFC 7644 §3.12 error answer.
func (r resp) wantError(t *testing.T, status int, scimType string) resp {
	t.Helper()
	r.want(t, status)
	if !hasString(r.body["schemas"], "urn:ietf:params:scim:api:messages:2.0:Error") {
		t.Fatalf("error without the Error schema: %s", r.raw)
	}
	if r.body["status"] != fmt.Sprint(status) {
		t.Fatalf("error status %v, want the string %q", r.body["status"], fmt.Sprint(status))
	}
	if got, _ := r.body["scimType"].(string); got != scimType {
		t.Fatalf("scimType %q, want %q: %s", got, scimType, r.raw)
	}
	if d, _ := r.body["detail"].(string); d == "" {
		t.Fatalf("error without detail: %s", r.raw)
	}
	return r
}

func hasString(v any, s string) bool {
	list, _ := v.([]any)
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// get walks a decoded JSON value: get(body, "name", "givenName"), get(body, "emails", 0, "value").
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func total(t *testing.T, r resp) int {
	t.Helper()
	n, err := r.body["totalResults"].(json.Number).Int64()
	if err != nil {
		t.Fatalf("totalResults: %s", r.raw)
	}
	return int(n)
}

// num reads a JSON number, or -1 when there is none.
func num(v any, path ...any) int64 {
	n, ok := get(v, path...).(json.Number)
	if !ok {
		return -1
	}
	i, err := n.Int64()
	if err != nil {
		return -1
	}
	return i
}

func q(s string) string { return url.QueryEscape(s) }

// snapshot renders everything the store holds for a tenant, so a test can
// show that a failed request left no trace.
func (c *client) snapshot() string {
	c.t.Helper()
	ctx := context.Background()
	var lines []string
	for _, kind := range []store.Kind{store.UserKind, store.GroupKind} {
		page, err := c.env.db.List(ctx, c.tenant.ID, kind, store.Query{Count: 100000})
		if err != nil {
			c.t.Fatal(err)
		}
		for _, r := range page.Resources {
			doc, _ := json.Marshal(r.Doc)
			lines = append(lines, fmt.Sprintf("%s %s v%d %s %s", kind, r.ID, r.Version, r.EntraID, doc))
			if kind == store.GroupKind {
				ms, err := c.env.db.Members(ctx, c.tenant.ID, r.ID)
				if err != nil {
					c.t.Fatal(err)
				}
				for _, m := range ms {
					lines = append(lines, fmt.Sprintf("  member %s %s", m.ID, m.Kind))
				}
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// stored returns the stored resource, bypassing the HTTP layer.
func (c *client) stored(kind store.Kind, id string) store.Resource {
	c.t.Helper()
	r, err := c.env.db.Get(context.Background(), c.tenant.ID, kind, id)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c *client) members(groupID string) []string {
	c.t.Helper()
	ms, err := c.env.db.Members(context.Background(), c.tenant.ID, groupID)
	if err != nil {
		c.t.Fatal(err)
	}
	ids := []string{}
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	sort.Strings(ids)
	return ids
}

func sortedIDs(ids ...string) []string {
	out := append([]string{}, ids...)
	sort.Strings(out)
	return out
}
