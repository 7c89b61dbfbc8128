package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	gosync "sync"
	"testing"

	"github.com/entrasync/entrasync/store"
)

// countingPager is the store, counting what a request asks of it.
type countingPager struct {
	db *store.DB
	mu gosync.Mutex
	// calls per group; largest limit asked; failAt makes that call (1-based,
	// over all groups) fail.
	calls    map[string]int
	maxLimit int
	maxGot   int
	n, fail  int
}

func (c *countingPager) MembersPage(ctx context.Context, tenant int64, groupID, after string, limit int) ([]store.Member, error) {
	c.mu.Lock()
	c.calls[groupID]++
	c.maxLimit = max(c.maxLimit, limit)
	c.n++
	fail := c.n == c.fail
	c.mu.Unlock()
	if fail {
		return nil, errors.New("the disk is on fire")
	}
	page, err := c.db.MembersPage(ctx, tenant, groupID, after, limit)
	c.mu.Lock()
	c.maxGot = max(c.maxGot, len(page))
	c.mu.Unlock()
	return page, err
}

func (c *countingPager) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls, c.maxLimit, c.maxGot, c.n = map[string]int{}, 0, 0, 0
}

type syncBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type streamFixture struct {
	srv    *httptest.Server
	pager  *countingPager
	logs   *syncBuffer
	token  string
	sizes  map[string]int // group id -> members
	users  []string
	groups []string // by displayName
}

// newStreamFixture stores groups of 2,500, 1,000 (exactly one chunk) and 0
// members, and a group that is a member of another.
func newStreamFixture(t *testing.T) *streamFixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "stream.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &streamFixture{pager: &countingPager{db: db}, logs: &syncBuffer{}, sizes: map[string]int{}}
	err = db.Write(ctx, func(tx *store.Tx) error {
		tn, err := tx.CreateTenant("contoso")
		if err != nil {
			return err
		}
		if _, f.token, err = tx.CreateToken(tn); err != nil {
			return err
		}
		for i := range 2500 {
			r := &store.Resource{Kind: store.UserKind, Doc: map[string]any{"userName": fmt.Sprintf("u%04d@contoso.com", i), "displayName": fmt.Sprintf("U <%d> & co", i)}}
			if err := tx.Insert(tn.ID, r); err != nil {
				return err
			}
			f.users = append(f.users, r.ID)
		}
		for i, n := range []int{2500, 1000, 0, 1} {
			g := &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": fmt.Sprintf("G%d", i)}}
			if err := tx.Insert(tn.ID, g); err != nil {
				return err
			}
			f.groups = append(f.groups, g.ID)
			f.sizes[g.ID] = n
			if n == 1 { // a group whose member is a group
				_, err = tx.AddMembers(tn.ID, g.ID, f.groups[:1])
			} else {
				_, err = tx.AddMembers(tn.ID, g.ID, f.users[:n])
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(nil)
	s := New(Config{DB: db, PublicURL: "http://" + f.srv.Listener.Addr().String(), Log: slog.New(slog.NewJSONHandler(f.logs, nil))})
	s.members = f.pager
	f.srv.Config.Handler = s.Handler()
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	f.pager.reset()
	return f
}

func (f *streamFixture) get(t *testing.T, path string) (map[string]any, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+"/scim/v2"+path, nil)
	req.Header.Set("Authorization", "Bearer "+f.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, res.StatusCode, raw)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("GET %s: not JSON (%v): %.200s", path, err, raw)
	}
	if bytes.Contains(raw, []byte(`\u003c`)) {
		t.Fatalf("GET %s: HTML-escaped", path)
	}
	return body, nil
}

func memberList(t *testing.T, g map[string]any) []map[string]any {
	t.Helper()
	raw, _ := g["members"].([]any)
	out := make([]map[string]any, len(raw))
	for i, m := range raw {
		out[i] = m.(map[string]any)
	}
	return out
}

// TestGroupListMemoryBounded: a list of groups reads each group's members
// at most memberChunk at a time, and still answers every member.
func TestGroupListMemoryBounded(t *testing.T) {
	f := newStreamFixture(t)
	body, err := f.get(t, "/Groups?count=1000")
	if err != nil {
		t.Fatal(err)
	}
	if f.pager.maxLimit > memberChunk || f.pager.maxGot > memberChunk {
		t.Fatalf("asked the store for %d members at once (got %d); the chunk is %d", f.pager.maxLimit, f.pager.maxGot, memberChunk)
	}
	list, _ := body["Resources"].([]any)
	if len(list) != len(f.groups) || body["totalResults"] != float64(len(f.groups)) || body["itemsPerPage"] != float64(len(f.groups)) {
		t.Fatalf("list: %d groups, %v", len(list), body["totalResults"])
	}
	for _, item := range list {
		g := item.(map[string]any)
		id := g["id"].(string)
		ms := memberList(t, g)
		if len(ms) != f.sizes[id] {
			t.Fatalf("group %s: %d members, want %d", g["displayName"], len(ms), f.sizes[id])
		}
		if _, has := g["members"]; f.sizes[id] == 0 && has {
			t.Fatalf("an empty group answered with members: %v", g)
		}
		ids := make([]string, len(ms))
		for i, m := range ms {
			ids[i] = m["value"].(string)
			if m["type"] == nil || !strings.HasSuffix(m["$ref"].(string), "/"+ids[i]) {
				t.Fatalf("member %v", m)
			}
		}
		if !sort.StringsAreSorted(ids) || (len(ids) > 1 && ids[0] == ids[1]) {
			t.Fatalf("group %s: members out of order or repeated", g["displayName"])
		}
		// One call per started chunk, and one that finds the end of a full one.
		if want := f.sizes[id]/memberChunk + 1; f.pager.calls[id] != want {
			t.Fatalf("group %s of %d: %d store calls, want %d", g["displayName"], f.sizes[id], f.pager.calls[id], want)
		}
		if g["meta"].(map[string]any)["version"] == nil || g["schemas"] == nil {
			t.Fatalf("group rendered without meta or schemas: %v", g)
		}
	}
	// The member that is a group is typed and located as a group.
	for _, item := range list {
		g := item.(map[string]any)
		if g["id"] == f.groups[3] {
			m := memberList(t, g)[0]
			if m["type"] != "Group" || !strings.Contains(m["$ref"].(string), "/Groups/") || m["display"] != "G0" {
				t.Fatalf("group member %v", m)
			}
		}
	}
}

// TestGroupMembersNotAsked: excludedAttributes=members (Entra's form) and
// attributes without members read no membership at all.
func TestGroupMembersNotAsked(t *testing.T) {
	f := newStreamFixture(t)
	for _, path := range []string{"/Groups?excludedAttributes=members", "/Groups?attributes=displayName",
		"/Groups/" + f.groups[0] + "?excludedAttributes=members", "/Groups?excludedAttributes=members&filter=displayName+eq+%22G0%22"} {
		f.pager.reset()
		body, err := f.get(t, path)
		if err != nil {
			t.Fatal(err)
		}
		if f.pager.n != 0 {
			t.Fatalf("%s: %d membership reads", path, f.pager.n)
		}
		if strings.Contains(fmt.Sprint(body), "members") {
			t.Fatalf("%s: members answered: %.300v", path, body)
		}
	}
}

// TestGroupStreamedProjection: sub-attribute projections apply to streamed
// members, and one group's GET is complete.
func TestGroupStreamedProjection(t *testing.T) {
	f := newStreamFixture(t)
	g, err := f.get(t, "/Groups/"+f.groups[0])
	if err != nil {
		t.Fatal(err)
	}
	if ms := memberList(t, g); len(ms) != 2500 || ms[0]["display"] != "U <0> & co" {
		t.Fatalf("GET one group: %d members, first %v", len(ms), ms[0])
	}
	g, _ = f.get(t, "/Groups/"+f.groups[1]+"?attributes=members.value")
	for _, m := range memberList(t, g) {
		if len(m) != 1 || m["value"] == nil {
			t.Fatalf("attributes=members.value: %v", m)
		}
	}
	if g["displayName"] != nil || g["id"] == nil {
		t.Fatalf("attributes=members.value: %v", g["displayName"])
	}
	g, _ = f.get(t, "/Groups/"+f.groups[1]+"?excludedAttributes=members.display,members.$ref")
	for _, m := range memberList(t, g) {
		if m["display"] != nil || m["$ref"] != nil || m["value"] == nil || m["type"] == nil {
			t.Fatalf("excludedAttributes=members.display,members.$ref: %v", m)
		}
	}
	if len(memberList(t, g)) != 1000 || g["displayName"] != "G1" {
		t.Fatalf("%d members, displayName %v", len(memberList(t, g)), g["displayName"])
	}
}

// TestStreamFailure: a store failure before anything is sent is a 500
// answer; one after the status was sent aborts the connection (the client
// cannot mistake a cut answer for a whole one), logged at ERROR.
func TestStreamFailure(t *testing.T) {
	f := newStreamFixture(t)
	f.pager.reset()
	f.pager.fail = 1
	req, _ := http.NewRequest("GET", f.srv.URL+"/scim/v2/Groups", nil)
	req.Header.Set("Authorization", "Bearer "+f.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 500 {
		t.Fatalf("a failure before the answer: %d", res.StatusCode)
	}
	f.pager.reset()
	f.pager.fail = 2 // the first group's second chunk
	if _, err := f.get(t, "/Groups"); err == nil {
		t.Fatal("a failure mid-stream gave a readable answer")
	}
	f.pager.fail = 0
	var aborted, errorLogged bool
	for _, l := range strings.Split(f.logs.String(), "\n") {
		aborted = aborted || (strings.Contains(l, `"msg":"scim"`) && strings.Contains(l, `"aborted":true`))
		errorLogged = errorLogged || (strings.Contains(l, `"level":"ERROR"`) && strings.Contains(l, "aborted mid-stream") && strings.Contains(l, "on fire"))
	}
	if !aborted || !errorLogged {
		t.Fatalf("log: %s", f.logs.String())
	}
}
