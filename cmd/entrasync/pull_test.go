package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
)

const (
	testAzureTenant = "6f1b2a3c-1111-4222-8333-944445555666"
	testClientID    = "0c5e8f4a-aaaa-4bbb-8ccc-dddddddddddd"
	testSecretKey   = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes, base64
)

// pullEnv is a fake Graph with a sample directory and a database with a
// tenant, and an environment holding the secret key and the client secret.
type pullEnv struct {
	fake   *graphtest.Server
	dir    *graphtest.Directory
	groups []string
	db     string
	env    map[string]string
}

func newPullEnv(t *testing.T) *pullEnv {
	t.Helper()
	fake := graphtest.NewServer(graphtest.Options{PageSize: 20})
	t.Cleanup(fake.Close)
	fake.AddApp(testAzureTenant, testClientID, "the-client-secret")
	fake.Grant(testAzureTenant, testClientID, graph.RequiredPermissions...) // what the README asks an admin to grant
	graphHTTPClient = fake.Client()
	t.Cleanup(func() { graphHTTPClient = nil })
	p := &pullEnv{fake: fake, dir: fake.Tenant(testAzureTenant), db: filepath.Join(t.TempDir(), "es.db"),
		env: map[string]string{"ENTRASYNC_SECRET_KEY": testSecretKey, "GRAPH_SECRET": "the-client-secret"}}
	p.groups = p.dir.Populate(rand.New(rand.NewSource(11)), 60, 4)
	sort.Strings(p.groups)
	mustRun(t, "tenant", "create", "acme", "--db", p.db)
	return p
}

func (p *pullEnv) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), append(args, "--db", p.db), &out, &errb, func(k string) string { return p.env[k] })
	return out.String(), errb.String(), code
}

func (p *pullEnv) connect(t *testing.T, extra ...string) {
	t.Helper()
	args := append([]string{"tenant", "graph", "acme", "--tenant-id", testAzureTenant, "--client-id", testClientID,
		"--client-secret-env", "GRAPH_SECRET", "--groups", p.groups[0] + "," + p.groups[1],
		"--authority-host", p.fake.URL(), "--graph-url", p.fake.URL()}, extra...)
	if out, errOut, code := p.run(t, args...); code != 0 {
		t.Fatalf("tenant graph: %d %s %s", code, out, errOut)
	}
}

func TestTenantGraphCommand(t *testing.T) {
	p := newPullEnv(t)
	base := []string{"tenant", "graph", "acme", "--tenant-id", testAzureTenant, "--client-id", testClientID, "--groups", p.groups[0]}
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{append(base, "--client-secret-env", "NOPE"), nil, "environment variable NOPE is empty or unset"},
		{base, nil, "give the app's credential"},
		{[]string{"tenant", "graph", "acme", "--tenant-id", "not-a-guid"}, nil, "is not a tenant id"},
		{append(base, "--client-secret-env", "GRAPH_SECRET", "--groups", "x,y"), nil, "is not a group object id"},
		{append(base, "--client-secret-env", "GRAPH_SECRET", "--schedule", "daily"), nil, "want a cron spec"},
		{append(base, "--client-secret-env", "GRAPH_SECRET", "--deprovision", "vanish"), nil, "must be deactivate or delete"},
		{append(base, "--client-secret-env", "GRAPH_SECRET", "--threshold", "150%"), nil, "from 1% to 100%"},
		{append(base, "--client-secret-env", "GRAPH_SECRET", "--graph-url", "http://graph.example.com"), nil, "must use https"},
		{append(base, "--client-secret-env", "GRAPH_SECRET", "--graph-url", "https://graph.microsoft.com/beta"), nil, "give the Graph host without a path"},
		{append(base, "--client-secret-env", "GRAPH_SECRET", "--authority-host", "https://login.microsoftonline.com/"+testAzureTenant+"/v2.0"), nil, "give only the host"},
		{append(base, "--client-secret-env", "GRAPH_SECRET", "--certificate", "x.pem"), nil, "give one of"},
		{append(base, "--client-secret-env", "GRAPH_SECRET"), map[string]string{"GRAPH_SECRET": "s"}, "ENTRASYNC_SECRET_KEY is not set"},
		{[]string{"tenant", "graph", "nobody", "--client-secret-env", "GRAPH_SECRET"}, nil, `no tenant "nobody"`},
	}
	for _, tc := range tests {
		saved := p.env
		if tc.env != nil {
			p.env = tc.env
		}
		out, errOut, code := p.run(t, tc.args...)
		p.env = saved
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q %q; want an error with %q", tc.args, code, out, errOut, tc.want)
		}
	}

	p.connect(t, "--schedule", "@every 30m", "--threshold", "50%")
	// Change one setting; the rest, the secret included, stays.
	out, _, code := p.run(t, "tenant", "graph", "acme", "--schedule", "@every 2h", "--json")
	if code != 0 || strings.Contains(out, "the-client-secret") {
		t.Fatalf("update: %d %s", code, out)
	}
	var shown map[string]any
	json.Unmarshal([]byte(out), &shown)
	if shown["schedule"] != "@every 2h" || shown["threshold"] != "50%" || shown["credential"] != "secret (encrypted)" {
		t.Fatalf("updated connection: %v", shown)
	}
	out, _, _ = p.run(t, "tenant", "show", "acme")
	if !strings.Contains(out, "@every 2h") || strings.Contains(out, "the-client-secret") {
		t.Fatalf("tenant show: %s", out)
	}
	// The form most docs print, with the version path, is taken as the host.
	out, errOut, code := p.run(t, "tenant", "graph", "acme", "--graph-url", "https://graph.microsoft.com/v1.0/",
		"--authority-host", "https://login.microsoftonline.com", "--json")
	json.Unmarshal([]byte(out), &shown)
	if code != 0 || shown["graphUrl"] != "https://graph.microsoft.com" || shown["authorityHost"] != "https://login.microsoftonline.com/" {
		t.Fatalf("docs-form URLs: %d %v %s", code, shown, errOut)
	}
}

func TestSyncCommand(t *testing.T) {
	p := newPullEnv(t)
	_, errOut, code := p.run(t, "sync", "acme")
	if code != 1 || !strings.Contains(errOut, "no Graph connection") {
		t.Fatalf("sync before connecting: %d %s", code, errOut)
	}
	p.connect(t)
	out, errOut, code := p.run(t, "sync", "acme", "--json")
	if code != 0 {
		t.Fatalf("sync: %d %s %s", code, out, errOut)
	}
	var run map[string]any
	if err := json.Unmarshal([]byte(out), &run); err != nil {
		t.Fatal(err)
	}
	changes := run["changes"].(map[string]any)
	if run["status"] != "succeeded" || run["mode"] != "full" || run["trigger"] != "cli" || changes["usersCreated"].(float64) == 0 {
		t.Fatalf("first sync: %v", run)
	}
	out, _, _ = p.run(t, "sync", "acme")
	if !strings.Contains(out, "succeeded") || !strings.Contains(out, "delta") {
		t.Fatalf("second sync: %s", out)
	}
	out, _, _ = p.run(t, "sync", "--full", "acme")
	if !strings.Contains(out, "full") {
		t.Fatalf("--full: %s", out)
	}
	// Over the threshold: held (exit 3) until confirmed.
	p.run(t, "tenant", "graph", "acme", "--threshold", "1")
	for _, u := range p.dir.Members(p.groups[0])[:5] {
		p.dir.RemoveMember(p.groups[0], u)
	}
	_, errOut, code = p.run(t, "sync", "acme")
	if code != exitHeld || !strings.Contains(errOut, "--confirm-deletions") {
		t.Fatalf("held sync: %d %s", code, errOut)
	}
	if _, errOut, code = p.run(t, "sync", "acme", "--confirm-deletions"); code != 0 {
		t.Fatalf("confirmed sync: %d %s", code, errOut)
	}
	if out, _, _ := p.run(t, "tenant", "show", "acme", "--json"); !strings.Contains(out, `"held"`) {
		t.Fatalf("tenant show lists no runs: %s", out)
	}
}

func TestOpsAPI(t *testing.T) {
	p := newPullEnv(t)
	p.connect(t)
	var key map[string]any
	out, _, _ := p.run(t, "opskey", "create", "ci", "--role", "admin", "--json")
	if err := json.Unmarshal([]byte(out), &key); err != nil || key["name"] != "ci" || !strings.HasPrefix(key["key"].(string), "eso_") ||
		key["role"] != "admin" || key["tenants"] != nil {
		t.Fatalf("opskey create: %s", out)
	}
	reader := opsKeyOf(t, mustRunEnv(t, p, "opskey", "create", "dashboard", "--tenant", "acme"))
	if _, errOut, code := p.run(t, "opskey", "create", "ci"); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("duplicate ops key: %s", errOut)
	}
	mustRun(t, "tenant", "create", "unconnected", "--db", p.db)

	s := startServeEnv(t, p)
	call := func(method, path, token string) (int, map[string]any, string) {
		code, body := bearerDo(t, method, s.base+path, token)
		var m map[string]any
		json.Unmarshal([]byte(body), &m)
		return code, m, body
	}
	if code, _, _ := call("POST", "/ops/v1/tenants/acme/sync", ""); code != 401 {
		t.Fatalf("no key: %d", code)
	}
	if code, _, _ := call("POST", "/ops/v1/tenants/acme/sync", "eso_wrong"); code != 401 {
		t.Fatalf("wrong key: %d", code)
	}
	p.fake.SetLatency(200 * time.Millisecond) // so the first run is still going
	code, first, body := call("POST", "/ops/v1/tenants/acme/sync?full=true", key["key"].(string))
	if code != 202 || first["status"] != "running" || first["mode"] != "full" || first["trigger"] != "api" || first["id"] == nil {
		t.Fatalf("start: %d %s", code, body)
	}
	code, second, body := call("POST", "/ops/v1/tenants/acme/sync", key["key"].(string))
	if code != 409 || second["run"].(map[string]any)["id"] != first["id"] {
		t.Fatalf("second start while running: %d %s", code, body)
	}
	p.fake.SetLatency(0)
	id := int(first["id"].(float64))
	runPath := "/ops/v1/tenants/acme/runs/" + itoa(id)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, run, body := call("GET", runPath, key["key"].(string))
		if code != 200 {
			t.Fatalf("GET run: %d %s", code, body)
		}
		if run["status"] != "running" {
			if run["status"] != "succeeded" || run["finishedAt"] == nil || run["changes"].(map[string]any)["usersCreated"].(float64) == 0 {
				t.Fatalf("finished run: %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run did not finish")
		}
		time.Sleep(50 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", s.base+"/ops/v1/tenants/acme/runs?limit=5", nil)
	req.Header.Set("Authorization", "Bearer "+key["key"].(string))
	res, _ := http.DefaultClient.Do(req)
	var runs []map[string]any
	json.NewDecoder(res.Body).Decode(&runs)
	res.Body.Close()
	if len(runs) != 1 || runs[0]["id"] != first["id"] {
		t.Fatalf("runs: %v", runs)
	}
	for path, want := range map[string]int{
		"/ops/v1/tenants/nobody/runs":          404,
		"/ops/v1/tenants/acme/runs/99999":      404,
		"/ops/v1/tenants/acme/runs?limit=zero": 400,
		"/ops/v1/tenants/acme/widgets":         404,
	} {
		if code, _, body := call("GET", path, key["key"].(string)); code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, want)
		}
	}
	if code, _, body := call("POST", "/ops/v1/tenants/unconnected/sync", key["key"].(string)); code != 404 || !strings.Contains(string(body), "no Graph connection") {
		t.Errorf("sync of an unconnected tenant: %d %s", code, body)
	}
	// The default role reads, and no more.
	if code, _, body := call("GET", "/ops/v1/tenants/acme/runs", reader); code != 200 {
		t.Fatalf("read key, GET runs: %d %s", code, body)
	}
	if code, _, body := call("POST", "/ops/v1/tenants/acme/sync", reader); code != 403 || !strings.Contains(string(body), "--role sync") {
		t.Fatalf("read key, POST sync: %d %s", code, body)
	}
	mustRunEnv(t, p, "opskey", "revoke", "ci")
	if code, _, _ := call("GET", "/ops/v1/tenants/acme/runs", key["key"].(string)); code != 401 {
		t.Fatalf("revoked key: %d", code)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func mustRunEnv(t *testing.T, p *pullEnv, args ...string) string {
	t.Helper()
	out, errOut, code := p.run(t, args...)
	if code != 0 {
		t.Fatalf("%v: %d %s %s", args, code, out, errOut)
	}
	return out
}

// startServeEnv runs serve on p's database with p's environment.
func startServeEnv(t *testing.T, p *pullEnv) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--db", p.db}, s.stdout, s.stderr, func(k string) string { return p.env[k] })
	}()
	var once gosync.Once
	code := 0
	s.stop = func() int {
		once.Do(func() { cancel(); code = <-done })
		return code
	}
	t.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := listening.FindStringSubmatch(s.stdout.String()); m != nil {
			s.base = "http://" + m[1]
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("serve did not start: %s %s", s.stdout, s.stderr)
	return nil
}

// TestDemo: the README's run command starts, prints what a newcomer needs,
// and its first pull brings the sample directory in.
func TestDemo(t *testing.T) {
	base, out, errb, stop := startDemo(t, filepath.Join(t.TempDir(), "demo.db"))
	defer stop()
	text := out.String()
	token, opsKey := field(t, text, "Secret Token"), field(t, text, "Ops key (shown only this once)")
	if field(t, text, "Tenant URL") != base+"/scim/v2" || !strings.Contains(text, "curl") {
		t.Fatalf("demo output:\n%s", text)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", base+"/scim/v2/Users?count=1", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var list map[string]any
		json.NewDecoder(res.Body).Decode(&list)
		res.Body.Close()
		if n, _ := list["totalResults"].(float64); n > 100 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	runs := demoRuns(t, base, opsKey, 1)
	if runs[len(runs)-1]["status"] != "succeeded" || runs[len(runs)-1]["trigger"] != "demo" {
		t.Fatalf("demo runs: %v", runs)
	}
	// The printed ops key reads the activity and /metrics, as the lines
	// the demo prints show.
	for path, want := range map[string]string{"/ops/v1/tenants/demo/activity?limit=5": "Created ", "/metrics": "entrasync_pull_runs_total"} {
		if status, body := httpGet(t, base+path, opsKey); status != 200 || !strings.Contains(body, want) {
			t.Fatalf("GET %s with the demo's ops key: %d %.300s", path, status, body)
		}
	}
	if strings.Contains(errb.String(), token) || strings.Contains(errb.String(), opsKey) {
		t.Fatal("a secret went to the log")
	}
}

// startDemo runs the demo on db until stop, which fails the test unless
// the demo exits 0.
func startDemo(t *testing.T, db string) (base string, out, errb *syncBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errb = &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- Main(ctx, []string{"demo", "--addr", "127.0.0.1:0", "--db", db}, out, errb, noEnv) }()
	var once gosync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("demo exited %d: %s", code, errb)
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := listening.FindStringSubmatch(out.String()); m != nil {
			return "http://" + m[1], out, errb, stop
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("demo did not start: %s %s", out, errb)
	return
}

// demoRuns waits until the demo has at least want runs, none running, and
// returns them, newest first.
func demoRuns(t *testing.T, base, opsKey string, want int) []map[string]any {
	t.Helper()
	var runs []map[string]any
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest("GET", base+"/ops/v1/tenants/demo/runs", nil)
		req.Header.Set("Authorization", "Bearer "+opsKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		runs = nil
		json.NewDecoder(res.Body).Decode(&runs)
		res.Body.Close()
		if len(runs) >= want && runs[0]["status"] != "running" {
			return runs
		}
	}
	t.Fatalf("the demo's runs did not finish: %v", runs)
	return nil
}

var opsKeyLine = regexp.MustCompile(`(?m)^  (eso_\S+)$`)

// opsKeyOf finds the key in opskey create's output.
func opsKeyOf(t *testing.T, out string) string {
	t.Helper()
	m := opsKeyLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no ops key in:\n%s", out)
	}
	return m[1]
}

func TestOpsKeyCommands(t *testing.T) {
	p := newPullEnv(t)
	mustRun(t, "tenant", "create", "globex", "--db", p.db)
	mustRun(t, "tenant", "create", "initech", "--db", p.db)
	out := mustRunEnv(t, p, "opskey", "create", "reader")
	if !strings.Contains(out, "role read, for every tenant") {
		t.Fatalf("default ops key: %s", out)
	}
	out = mustRunEnv(t, p, "opskey", "create", "deploy", "--role", "sync", "--tenant", "globex,acme", "--tenant", "initech", "--json")
	var k map[string]any
	if json.Unmarshal([]byte(out), &k); k["role"] != "sync" || fmt.Sprint(k["tenants"]) != "[acme globex initech]" {
		t.Fatalf("scoped ops key: %s", out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"opskey", "create", "x", "--role", "owner"}, 2, "want read, sync or admin"},
		{[]string{"opskey", "create", "x", "--tenant", "acme", "--tenant", "nobody"}, 1, `no tenant "nobody"`},
		{[]string{"opskey", "create", "reader"}, 1, "exists"},
	} {
		if out, errOut, code := p.run(t, tc.args...); code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %s %s; want exit %d with %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
	if keys, _, _ := p.run(t, "opskey", "list", "--json"); strings.Count(keys, `"name"`) != 2 {
		t.Fatalf("a refused create made a key: %s", keys)
	}
	out = mustRunEnv(t, p, "opskey", "list")
	if !regexp.MustCompile(`(?m)^deploy\s+sync\s+acme,globex,initech\s`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^reader\s+read\s+\(all\)\s`).MatchString(out) {
		t.Fatalf("opskey list:\n%s", out)
	}
}

// TestSyncFailuresInWords: each way a pull fails is told apart in what
// `entrasync sync` prints, with what to do about it.
func TestSyncFailuresInWords(t *testing.T) {
	dead := "https://" + closedAddr(t)
	tests := []struct {
		name  string
		setup func(p *pullEnv) []string // extra tenant graph flags
		code  int
		want  []string
	}{
		{"refused credentials", func(p *pullEnv) []string { p.env["GRAPH_SECRET"] = "not-the-secret"; return nil },
			1, []string{"Entra refused the app's credentials", "AADSTS7000215"}},
		{"missing permission", func(p *pullEnv) []string {
			p.fake.Grant(testAzureTenant, testClientID, "GroupMember.Read.All")
			return nil
		}, 1, []string{"lacks the application permission User.Read.All", "admin consent"}},
		{"token endpoint down for a while", func(p *pullEnv) []string { p.fake.FailTokenNext(10); return nil },
			1, []string{"temporarily unavailable", "AADSTS90033"}},
		{"network", func(p *pullEnv) []string { return []string{"--authority-host", dead, "--graph-url", dead} },
			1, []string{"no answer from " + strings.TrimPrefix(dead, "https://"), "refused"}},
		{"throttled", func(p *pullEnv) []string { p.fake.FailNext(100, http.StatusTooManyRequests, time.Hour); return nil },
			exitThrottled, []string{"throttled", "try again after 1h0m0s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPullEnv(t)
			p.connect(t, tc.setup(p)...)
			_, errOut, code := p.run(t, "sync", "acme")
			t.Log(errOut)
			for _, w := range tc.want {
				if code != tc.code || !strings.Contains(errOut, w) {
					t.Fatalf("exit %d (want %d), %q; want it to say %q", code, tc.code, errOut, w)
				}
			}
		})
	}
}
