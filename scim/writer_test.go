package scim_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/scim/schema"
	"github.com/entrasync/entrasync/store"
)

// serveDB is an env serving an already open store: a second node on the
// same file, or a store opened with other options.
func serveDB(t *testing.T, db *store.DB) *env {
	t.Helper()
	e := &env{t: t, db: db}
	e.srv = httptest.NewUnstartedServer(nil)
	e.srv.Config.Handler = scim.New(scim.Config{DB: db, PublicURL: "http://" + e.srv.Listener.Addr().String()}).Handler()
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

func openStore(t *testing.T, path string, wait time.Duration) *store.DB {
	t.Helper()
	db, err := store.OpenWith(context.Background(), path, store.Options{WriteWait: wait})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// as is c's tenant and token on another env (node).
func (c *client) as(e *env) *client {
	return &client{t: c.t, env: e, tenant: c.tenant, token: c.token, base: e.srv.URL + "/scim/v2"}
}

// holdWriter begins a write transaction on db and keeps it open until the
// returned release is called.
func holdWriter(t *testing.T, db *store.DB) (release func()) {
	t.Helper()
	begun, free, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- db.Write(context.Background(), func(*store.Tx) error { close(begun); <-free; return nil })
	}()
	select {
	case <-begun:
	case err := <-done:
		t.Fatalf("could not take the writer: %v", err)
	}
	var once gosync.Once
	release = func() { once.Do(func() { close(free); <-done }) }
	t.Cleanup(release)
	return release
}

// TestWriterBusyAnswers503: a write that cannot have the writer within
// write_wait is answered 503 with Retry-After (never 500), whether this
// process holds the writer or a second entrasync on the same file holds
// SQLite's lock; reads still answer; the store is left as it was.
func TestWriterBusyAnswers503(t *testing.T) {
	for _, where := range []string{"this process", "second node"} {
		t.Run(where, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "scim.db")
			db := openStore(t, path, 100*time.Millisecond)
			e := serveDB(t, db)
			c := e.tenant("contoso")
			uid := str(c.do("POST", "/Users", `{"userName":"ada@contoso.com"}`).want(t, 201).body, "id")
			holder := db
			if where == "second node" {
				holder = openStore(t, path, 100*time.Millisecond)
				serveDB(t, holder) // a running second node on the file
			}
			before := c.snapshot()
			release := holdWriter(t, holder)
			for _, req := range []struct{ method, path, body string }{
				{"POST", "/Users", `{"userName":"bob@contoso.com"}`},
				{"PATCH", "/Users/" + uid, `{"Operations":[{"op":"replace","path":"title","value":"CTO"}]}`},
				{"PUT", "/Users/" + uid, `{"userName":"ada@contoso.com","title":"CEO"}`},
				{"DELETE", "/Users/" + uid, ""},
			} {
				var body any
				if req.body != "" {
					body = req.body
				}
				r := c.do(req.method, req.path, body).wantError(t, 503, "")
				if r.header.Get("Retry-After") == "" || !strings.Contains(str(r.body, "detail"), "busy") {
					t.Fatalf("%s %s: 503 without Retry-After or a reason: %v %s", req.method, req.path, r.header, r.raw)
				}
			}
			c.do("GET", "/Users/"+uid, nil).want(t, 200)
			release()
			if got := c.snapshot(); got != before {
				t.Fatalf("refused writes changed the store:\n%s\nwant\n%s", got, before)
			}
			c.do("POST", "/Users", `{"userName":"bob@contoso.com"}`).want(t, 201)
		})
	}
}

// TestGroupCreateETag: the ETag of a group created with members is the
// version the next GET gives (adding the members bumps it).
func TestGroupCreateETag(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	a := str(c.do("POST", "/Users", `{"userName":"a@contoso.com"}`).want(t, 201).body, "id")
	b := str(c.do("POST", "/Users", `{"userName":"b@contoso.com"}`).want(t, 201).body, "id")
	for _, members := range []string{"", `,"members":[{"value":"` + a + `"},{"value":"` + b + `"}]`} {
		r := c.do("POST", "/Groups", `{"displayName":"Sales`+fmt.Sprint(len(members))+`"`+members+`}`).want(t, 201)
		id := str(r.body, "id")
		got := c.do("GET", "/Groups/"+id, nil).want(t, 200)
		if r.header.Get("ETag") == "" || r.header.Get("ETag") != got.header.Get("ETag") ||
			str(r.body, "meta", "version") != str(got.body, "meta", "version") ||
			str(r.body, "meta", "lastModified") != str(got.body, "meta", "lastModified") {
			t.Fatalf("members %q: create answered ETag %s version %s modified %s; GET gives %s %s %s", members,
				r.header.Get("ETag"), str(r.body, "meta", "version"), str(r.body, "meta", "lastModified"),
				got.header.Get("ETag"), str(got.body, "meta", "version"), str(got.body, "meta", "lastModified"))
		}
		// The ETag is usable: If-Match with it is accepted.
		c.do("PATCH", "/Groups/"+id, `{"Operations":[{"op":"replace","path":"displayName","value":"Renamed `+id+`"}]}`,
			"If-Match", r.header.Get("ETag")).want(t, 204)
	}
}

// TestPutMembersNull: a group PUT with "members": null keeps the members,
// as one without members does; "members": [] empties the group.
func TestPutMembersNull(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	a := str(c.do("POST", "/Users", `{"userName":"a@contoso.com"}`).want(t, 201).body, "id")
	gid := str(c.do("POST", "/Groups", `{"displayName":"Sales","members":[{"value":"`+a+`"}]}`).want(t, 201).body, "id")
	for _, body := range []string{
		`{"displayName":"Sales","members":null}`,
		`{"displayName":"Sales","MEMBERS":null}`,
		`{"displayName":"Sales"}`,
	} {
		c.do("PUT", "/Groups/"+gid, body).want(t, 200)
		if got := c.members(gid); !slices.Equal(got, []string{a}) {
			t.Fatalf("PUT %s: members %v, want kept", body, got)
		}
	}
	r := c.do("PUT", "/Groups/"+gid, `{"displayName":"Sales","members":[]}`).want(t, 200)
	if got := c.members(gid); len(got) != 0 || get(r.body, "members") != nil {
		t.Fatalf(`PUT "members": []: members %v, answer %s`, got, r.raw)
	}
}

// TestPatchesFromTwoNodes: PATCHes of one user sent at once to two nodes
// on one file each read, patch and write guarded by the version they read;
// none is lost: every PATCH answered 200 is in the final document, and any
// other answer is a 503 with Retry-After (its retries ran out).
func TestPatchesFromTwoNodes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scim.db")
	n1 := serveDB(t, openStore(t, path, 5*time.Second))
	n2 := serveDB(t, openStore(t, path, 5*time.Second))
	c1 := n1.tenant("contoso")
	c2 := c1.as(n2)
	uid := str(c1.do("POST", "/Users", `{"userName":"ada@contoso.com"}`).want(t, 201).body, "id")
	var wg gosync.WaitGroup
	var mu gosync.Mutex
	var applied []string
	var refused atomic.Int32
	for i := range 16 {
		c := c1
		if i%2 == 1 {
			c = c2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			email := fmt.Sprintf("ada%d@contoso.com", i)
			r := c.do("PATCH", "/Users/"+uid, `{"Operations":[{"op":"add","path":"emails","value":[{"value":"`+email+`"}]}]}`)
			switch {
			case r.status == 200:
				mu.Lock()
				applied = append(applied, email)
				mu.Unlock()
			case r.status == 503 && r.header.Get("Retry-After") != "":
				refused.Add(1)
			default:
				t.Errorf("PATCH: %d %s", r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	stored := c1.stored(store.UserKind, uid)
	var have []string
	for _, el := range stored.Doc["emails"].([]any) {
		have = append(have, el.(map[string]any)["value"].(string))
	}
	slices.Sort(have)
	slices.Sort(applied)
	if !slices.Equal(have, applied) {
		t.Fatalf("stored emails %v, but the PATCHes answered 200 were %v", have, applied)
	}
	if len(applied) == 0 {
		t.Fatal("no PATCH applied")
	}
	if stored.Version != int64(1+len(applied)) {
		t.Fatalf("version %d after %d applied PATCHes", stored.Version, len(applied))
	}
	t.Logf("%d applied, %d refused with 503", len(applied), refused.Load())
}

// TestRevokeWhileWriting: token revoke succeeds while one tenant sends
// heavy writes (PATCHes replacing a large multi-valued attribute, and
// creates) with two tokens; the revoked token is refused from the next
// request on and the other keeps working.
func TestRevokeWhileWriting(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	var tok store.Token
	var secret string
	if err := e.db.Write(context.Background(), func(tx *store.Tx) error {
		var err error
		tok, secret, err = tx.CreateToken(c.tenant)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	revokable := &client{t: t, env: e, tenant: c.tenant, token: secret, base: c.base}
	emails := func(n, round int) string {
		var sb strings.Builder
		for i := range n {
			if i > 0 {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, `{"type":"work","value":"big%d.%d@contoso.com"}`, round, i)
		}
		return `{"Operations":[{"op":"replace","path":"emails","value":[` + sb.String() + `]}]}`
	}
	stop := make(chan struct{})
	var wg gosync.WaitGroup
	var writes atomic.Int64
	load := func(cl *client, worker int) {
		defer wg.Done()
		uid := str(c.do("POST", "/Users", fmt.Sprintf(`{"userName":"big%d@contoso.com"}`, worker)).want(t, 201).body, "id")
		for round := 0; ; round++ {
			select {
			case <-stop:
				return
			default:
			}
			var r resp
			if round%2 == 0 {
				r = cl.do("PATCH", "/Users/"+uid, emails(schema.DefaultMaxValues, worker*100000+round))
			} else {
				r = cl.do("POST", "/Users", fmt.Sprintf(`{"userName":"u%d.%d@contoso.com"}`, worker, round))
			}
			switch r.status {
			case 200, 201:
				writes.Add(1)
			case 503: // the writer was busy past write_wait (slow machines, -race): a retryable answer
				if r.header.Get("Retry-After") == "" {
					t.Errorf("503 without Retry-After: %s", r.raw)
					return
				}
			case 401:
				if cl == revokable {
					return // revoked under it
				}
				t.Errorf("the unrevoked token was refused: %s", r.raw)
				return
			default:
				t.Errorf("load: %d %s", r.status, r.raw)
				return
			}
		}
	}
	for w := range 4 {
		wg.Add(1)
		if w%2 == 0 {
			go load(c, w)
		} else {
			go load(revokable, w)
		}
	}
	for writes.Load() < 8 { // the load is running
		if t.Failed() {
			t.FailNow()
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := e.db.Write(context.Background(), func(tx *store.Tx) error { _, err := tx.RevokeToken(tok.ID); return err }); err != nil {
		t.Fatalf("revoke during the load: %v", err)
	}
	during := writes.Load()
	revokable.do("GET", "/Users?count=1", nil).wantError(t, 401, "")
	revokable.do("POST", "/Users", `{"userName":"late@contoso.com"}`).wantError(t, 401, "")
	c.do("GET", "/Users?count=1", nil).want(t, 200)
	for writes.Load() < during+4 { // the other token's writes go on
		if t.Failed() {
			t.FailNow()
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
}
