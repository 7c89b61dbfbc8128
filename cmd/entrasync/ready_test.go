package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

// testRedisURL is the Redis the tests use: ENTRASYNC_TEST_REDIS_URL, else
// database 15 of the local one. Without one the test skips, except in CI
// (CI set), where it fails.
func testRedisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("ENTRASYNC_TEST_REDIS_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set but ENTRASYNC_TEST_REDIS_URL is not: the Redis tests must run in CI")
		}
		u = "redis://127.0.0.1:6379/15"
	}
	r, err := sync.NewRedis(u)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.Ping(ctx); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no Redis at %s: %v", u, err)
		}
		t.Skipf("no Redis at %s (%v): start one (redis-server), or set ENTRASYNC_TEST_REDIS_URL, to run this test", u, err)
	}
	return u
}

// closedAddr is a loopback address where nothing listens.
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

// TestRedisAtStart: a configured Redis that does not answer stops serve,
// demo and sync, naming the setting and the address.
func TestRedisAtStart(t *testing.T) {
	dead := closedAddr(t)
	db := filepath.Join(t.TempDir(), "es.db")
	mustRun(t, "tenant", "create", "acme", "--db", db)
	for _, args := range [][]string{
		{"serve", "--addr", "127.0.0.1:0"},
		{"demo", "--addr", "127.0.0.1:0"},
		{"sync", "acme"},
	} {
		t.Run(args[0], func(t *testing.T) {
			t.Parallel()
			out, errOut, code := run(t, append(args, "--db", db, "--redis", "redis://"+dead+"/0")...)
			if code != 1 || !strings.Contains(errOut, "setting redis") || !strings.Contains(errOut, dead) {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			if strings.Contains(out, "listening on") {
				t.Fatalf("%s served without its Redis", args[0])
			}
		})
	}
}

// tcpProxy forwards connections to target until cut: Redis "going away"
// under a running server.
type tcpProxy struct {
	ln     net.Listener
	mu     gosync.Mutex
	conns  []net.Conn
	closed bool
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln}
	t.Cleanup(p.cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, up) {
				return
			}
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *tcpProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, conns...)
	return true
}

// cut closes the listener and every forwarded connection.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

func getReady(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return res.StatusCode, body
}

// TestReadyz: ready with the database and Redis answering; still 200 but
// "degraded", naming Redis, once it goes away (SCIM does not need it, and
// every node would drop out of the load balancer at once), while /healthz
// (liveness) stays 200.
func TestReadyz(t *testing.T) {
	redisURL := testRedisURL(t)
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	s := startServe(t, "--db", filepath.Join(t.TempDir(), "es.db"), "--redis", u.String())

	code, body := getReady(t, s.base+"/readyz")
	checks, _ := body["checks"].(map[string]any)
	if code != 200 || body["status"] != "ready" || checks["database"] != "ok" || checks["redis"] != "ok" {
		t.Fatalf("readyz: %d %v", code, body)
	}
	proxy.cut()
	code, body = getReady(t, s.base+"/readyz")
	checks, _ = body["checks"].(map[string]any)
	redisCheck, _ := checks["redis"].(string)
	if code != 200 || body["status"] != "degraded" || checks["database"] != "ok" || !strings.Contains(redisCheck, u.Host) {
		t.Fatalf("readyz with Redis gone: %d %v", code, body)
	}
	if res, err := http.Get(s.base + "/healthz"); err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz with Redis gone: %v %v", res, err)
	}

	// Without Redis configured, only the database is checked.
	plain := startServe(t, "--db", filepath.Join(t.TempDir(), "plain.db"))
	code, body = getReady(t, plain.base+"/readyz")
	checks, _ = body["checks"].(map[string]any)
	if _, hasRedis := checks["redis"]; code != 200 || checks["database"] != "ok" || hasRedis {
		t.Fatalf("readyz without Redis: %d %v", code, body)
	}
}

// TestReadyzDatabaseDown: the same checks with the store closed under them.
func TestReadyzDatabaseDown(t *testing.T) {
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "es.db"))
	if err != nil {
		t.Fatal(err)
	}
	w := &sync.Worker{DB: db, Tokens: sync.StoreTokens{DB: db}, Locks: sync.StoreLocks{DB: db}}
	h := readyz(dependencies(db, w), slog.New(slog.DiscardHandler))
	get := func() (int, map[string]any) {
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest("GET", "/readyz", nil))
		var body map[string]any
		json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body
	}
	if code, body := get(); code != 200 || body["status"] != "ready" {
		t.Fatalf("readyz: %d %v", code, body)
	}
	db.Close()
	code, body := get()
	checks, _ := body["checks"].(map[string]any)
	if dbCheck, _ := checks["database"].(string); code != 503 || body["status"] != "not ready" || dbCheck == "" || dbCheck == "ok" {
		t.Fatalf("readyz with the database closed: %d %v", code, body)
	}
}

func TestVersion(t *testing.T) {
	// A test binary carries no module version or VCS stamp: it says so.
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if out := mustRun(t, args...); !strings.HasPrefix(out, "entrasync unknown, commit unknown, go") {
			t.Errorf("%v: %q", args, out)
		}
	}
	version, commit = "v1.2.3", "0123abcd"
	defer func() { version, commit = "", "" }()
	var b buildInfo
	if err := json.Unmarshal([]byte(mustRun(t, "version", "--json")), &b); err != nil || b.Version != "v1.2.3" || b.Commit != "0123abcd" || b.Go == "" {
		t.Fatalf("version --json with -X values: %+v %v", b, err)
	}
	if out := mustRun(t, "--version"); !strings.HasPrefix(out, "entrasync v1.2.3, commit 0123abcd") {
		t.Fatalf("--version: %q", out)
	}
}
