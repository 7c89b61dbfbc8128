package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/store"
)

// More 32-byte keys, base64, beside testSecretKey.
const (
	otherSecretKey = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
	thirdSecretKey = "YW5vdGhlciBrZXksIHRoaXJ0eS10d28gYnl0ZXMhISE="
)

// with is p with some environment variables changed ("" unsets one).
func (p *pullEnv) with(env map[string]string) *pullEnv {
	q := *p
	q.env = maps.Clone(p.env)
	maps.Copy(q.env, env)
	return &q
}

// runCount is how many runs of tenant the database holds.
func runCount(t *testing.T, dbPath, tenant string) int {
	t.Helper()
	db, err := store.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	runs, err := db.Runs(context.Background(), tenant, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(runs)
}

// lastRun is the newest run that `entrasync sync --json` printed.
func syncJSON(t *testing.T, p *pullEnv, args ...string) map[string]any {
	t.Helper()
	out := mustRunEnv(t, p, append([]string{"sync", "acme", "--json"}, args...)...)
	var run map[string]any
	if err := json.Unmarshal([]byte(out), &run); err != nil {
		t.Fatalf("sync --json: %v\n%s", err, out)
	}
	if run["status"] != "succeeded" {
		t.Fatalf("sync: %s", out)
	}
	return run
}

func opsPost(t *testing.T, url, key string) (int, string) {
	t.Helper()
	return bearerDo(t, "POST", url, key)
}

// bearerDo sends a request without a body, with key as its bearer token
// (none when ""), and returns the answer's status and body.
func bearerDo(t *testing.T, method, url, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// TestSecretKeyMissingOrWrong: without the key, or with another, the start
// warns naming ENTRASYNC_SECRET_KEY and the tenant; runs are refused at
// once by the CLI (non-zero exit) and the ops API (503), naming it, and no
// run is recorded; tenant graph says the stored credential cannot be kept.
func TestSecretKeyMissingOrWrong(t *testing.T) {
	p := newPullEnv(t)
	p.connect(t)
	syncJSON(t, p)
	admin := opsKeyOf(t, mustRunEnv(t, p, "opskey", "create", "ops", "--role", "admin"))
	for _, tc := range []struct {
		name, key, why string
	}{
		{"missing", "", "is not set"},
		{"wrong", otherSecretKey, "is not the key its Graph credential was stored with"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := p.with(map[string]string{"ENTRASYNC_SECRET_KEY": tc.key})
			_, errOut, code := q.run(t, "sync", "acme")
			if code == 0 || !strings.Contains(errOut, "ENTRASYNC_SECRET_KEY") || !strings.Contains(errOut, tc.why) {
				t.Fatalf("sync: exit %d, %s", code, errOut)
			}
			if n := runCount(t, p.db, "acme"); n != 1 {
				t.Fatalf("%d runs recorded; a refused run must leave none", n)
			}

			s := startServeEnv(t, q)
			log := s.stderr.String()
			if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "ENTRASYNC_SECRET_KEY") || !strings.Contains(log, "tenants=[acme]") {
				t.Fatalf("no start warning naming the key and the tenant:\n%s", log)
			}
			code, body := opsPost(t, s.base+"/ops/v1/tenants/acme/sync", admin)
			if code != 503 || !strings.Contains(body, "ENTRASYNC_SECRET_KEY") {
				t.Fatalf("ops API start: %d %s", code, body)
			}
			s.stop()
			if n := runCount(t, p.db, "acme"); n != 1 {
				t.Fatalf("%d runs recorded after the ops API refused one", n)
			}

			// A change without a new credential would have to keep the old one.
			_, errOut, code = q.run(t, "tenant", "graph", "acme", "--schedule", "@every 1h")
			if code == 0 || !strings.Contains(errOut, "stored one cannot be kept") || !strings.Contains(errOut, "ENTRASYNC_SECRET_KEY") ||
				!strings.Contains(errOut, tc.why) {
				t.Fatalf("tenant graph without a credential: %d %s", code, errOut)
			}
			if out := mustRunEnv(t, q, "tenant", "show", "acme"); !strings.Contains(out, "runs are refused") || !strings.Contains(out, "ENTRASYNC_SECRET_KEY") {
				t.Fatalf("tenant show does not say runs are refused:\n%s", out)
			}
		})
	}
	// The right key: no warning, and runs work.
	s := startServeEnv(t, p)
	if strings.Contains(s.stderr.String(), "ENTRASYNC_SECRET_KEY") {
		t.Fatalf("a key warning with the right key:\n%s", s.stderr)
	}
	s.stop()
	syncJSON(t, p)
}

// TestSecretKeyReplaceRekeyRemove: a credential the key cannot open is
// replaced without opening it; rekey moves every credential to a new key
// (the old one then opens nothing); --remove removes a connection and its
// delta links, not its people.
func TestSecretKeyReplaceRekeyRemove(t *testing.T) {
	p := newPullEnv(t)
	p.connect(t, "--schedule", "@every 30m", "--threshold", "50%")
	syncJSON(t, p)

	// Rekey to a new key, given the old one.
	moved := p.with(map[string]string{"ENTRASYNC_SECRET_KEY": otherSecretKey, "OLD_KEY": testSecretKey})
	if out := mustRunEnv(t, moved, "rekey", "--old-key-env", "OLD_KEY"); !strings.Contains(out, "Re-sealed 1 of 1") {
		t.Fatalf("rekey: %s", out)
	}
	if out := mustRunEnv(t, moved, "rekey", "--old-key-env", "OLD_KEY", "--json"); !strings.Contains(out, `"resealed": 0`) {
		t.Fatalf("a second rekey: %s", out)
	}
	if run := syncJSON(t, moved); run["mode"] != "delta" {
		t.Fatalf("the run after rekey: %v", run)
	}
	if _, errOut, code := p.run(t, "sync", "acme"); code == 0 || !strings.Contains(errOut, "ENTRASYNC_SECRET_KEY") {
		t.Fatalf("the old key after rekey: %d %s", code, errOut)
	}
	keyFile := filepath.Join(t.TempDir(), "old.key")
	os.WriteFile(keyFile, []byte(testSecretKey+"\n"), 0o600)
	for _, tc := range []struct {
		env  map[string]string
		args []string
		code int
		want string
	}{
		// The old key opens nothing the new one cannot: nothing moves, the tenant is named.
		{map[string]string{"ENTRASYNC_SECRET_KEY": thirdSecretKey}, []string{"--old-key-file", keyFile}, 1, `tenant(s) acme`},
		{nil, nil, 2, "give the old key"},
		{nil, []string{"--old-key-env", "OLD_KEY", "--old-key-file", keyFile}, 2, "give the old key"},
		{map[string]string{"OLD_KEY": ""}, []string{"--old-key-env", "OLD_KEY"}, 1, "OLD_KEY is empty or unset"},
		{map[string]string{"OLD_KEY": "short"}, []string{"--old-key-env", "OLD_KEY"}, 1, "want 32 random bytes"},
		{map[string]string{"ENTRASYNC_SECRET_KEY": ""}, []string{"--old-key-env", "OLD_KEY"}, 1, "ENTRASYNC_SECRET_KEY (setting secret_key) is not set"},
	} {
		_, errOut, code := moved.with(tc.env).run(t, append([]string{"rekey"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "short") {
			t.Errorf("rekey %v %v: exit %d, %s; want %d with %q", tc.env, tc.args, code, errOut, tc.code, tc.want)
		}
	}
	syncJSON(t, moved) // the refused rekey changed nothing

	// The key is lost: a new key, and the credential given again. The other
	// settings stay.
	lost := p.with(map[string]string{"ENTRASYNC_SECRET_KEY": thirdSecretKey})
	mustRunEnv(t, lost, "tenant", "graph", "acme", "--client-secret-env", "GRAPH_SECRET")
	var shown map[string]any
	json.Unmarshal([]byte(mustRunEnv(t, lost, "tenant", "show", "acme", "--json")), &shown)
	graphShown, _ := shown["graph"].(map[string]any)
	if graphShown["schedule"] != "@every 30m" || graphShown["threshold"] != "50%" || graphShown["credentialProblem"] != nil {
		t.Fatalf("the connection after replacing its credential: %v", shown["graph"])
	}
	syncJSON(t, lost)
	// Re-saved with the same settings, the connection keeps its delta links.
	mustRunEnv(t, lost, "tenant", "graph", "acme", "--client-secret-env", "GRAPH_SECRET")
	if run := syncJSON(t, lost); run["mode"] != "delta" {
		t.Fatalf("a run after re-saving the connection: %v", run)
	}

	// Remove.
	if _, errOut, code := lost.run(t, "tenant", "graph", "acme", "--remove", "--schedule", "@hourly"); code != 2 || !strings.Contains(errOut, "--schedule") {
		t.Fatalf("--remove with a connection flag: %d %s", code, errOut)
	}
	if out := mustRunEnv(t, lost, "tenant", "graph", "acme", "--remove"); !strings.Contains(out, "Removed the Graph connection") {
		t.Fatalf("--remove: %s", out)
	}
	if out := mustRunEnv(t, lost, "tenant", "show", "acme"); !strings.Contains(out, "Graph: not connected") {
		t.Fatalf("tenant show after --remove: %s", out)
	}
	var tenants []map[string]any
	json.Unmarshal([]byte(mustRunEnv(t, lost, "tenant", "list", "--json")), &tenants)
	if len(tenants) != 1 || tenants[0]["users"].(float64) == 0 {
		t.Fatalf("the pulled users went with the connection: %v", tenants)
	}
	if _, errOut, code := lost.run(t, "sync", "acme"); code != 1 || !strings.Contains(errOut, "no Graph connection") {
		t.Fatalf("sync after --remove: %d %s", code, errOut)
	}
	if _, errOut, code := lost.run(t, "tenant", "graph", "acme", "--remove"); code != 1 || !strings.Contains(errOut, "no Graph connection") {
		t.Fatalf("a second --remove: %d %s", code, errOut)
	}
	// Connected again as before, it starts over: its delta links are gone.
	lost.connect(t)
	if run := syncJSON(t, lost); run["mode"] != "full" {
		t.Fatalf("the first run after reconnecting: %v", run)
	}
}

// TestRemoveForgetsRedisLinks: with Redis configured, --remove drops the
// tenant's delta links there too.
func TestRemoveForgetsRedisLinks(t *testing.T) {
	p := newPullEnv(t).with(map[string]string{"ENTRASYNC_REDIS": testRedisURL(t)})
	p.connect(t)
	syncJSON(t, p)
	if run := syncJSON(t, p); run["mode"] != "delta" {
		t.Fatalf("the second run with Redis: %v", run)
	}
	mustRunEnv(t, p, "tenant", "graph", "acme", "--remove")
	p.connect(t)
	if run := syncJSON(t, p); run["mode"] != "full" {
		t.Fatalf("the first run after reconnecting: %v (the links in Redis stayed)", run)
	}
}

// TestDemoRestarts: the demo makes a new key on each start; a restart on
// the same database re-saves its connection and pulls again.
func TestDemoRestarts(t *testing.T) {
	db := filepath.Join(t.TempDir(), "demo.db")
	for i := range 2 {
		base, out, errb, stop := startDemo(t, db)
		runs := demoRuns(t, base, field(t, out.String(), "Ops key (shown only this once)"), i+1)
		if len(runs) != i+1 || runs[0]["status"] != "succeeded" {
			t.Fatalf("start %d: runs %v\n%s", i+1, runs, errb)
		}
		if strings.Contains(errb.String(), "ENTRASYNC_SECRET_KEY") {
			t.Fatalf("start %d warned about its key:\n%s", i+1, errb)
		}
		stop()
	}
}
