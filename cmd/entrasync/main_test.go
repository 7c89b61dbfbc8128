package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
)

// TestMain lets a test run the real binary's Main in a child process (for
// crash tests and many nodes): ENTRASYNC_TEST_MAIN holds the arguments, one
// per line; ENTRASYNC_TEST_GRAPH_CA, a PEM file, makes the child trust a
// fake Graph's certificate. SIGTERM stops it as it stops the binary.
func TestMain(m *testing.M) {
	if args := os.Getenv("ENTRASYNC_TEST_MAIN"); args != "" {
		if ca := os.Getenv(graphCAEnv); ca != "" {
			client, err := trustingClient(ca)
			if err != nil {
				fmt.Fprintln(os.Stderr, "test child:", err)
				os.Exit(2)
			}
			graphHTTPClient = client
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Main(ctx, strings.Split(args, "\n"), os.Stdout, os.Stderr, os.Getenv)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer safe to write from a server goroutine.
type syncBuffer struct {
	mu gosync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func noEnv(string) string { return "" }

// run runs one command to completion.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, &out, &errb, noEnv)
	return out.String(), errb.String(), code
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, args...)
	if code != 0 {
		t.Fatalf("entrasync %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// server is entrasync serve running in this process.
type server struct {
	stdout *syncBuffer
	stderr *syncBuffer
	base   string // http://host:port
	stop   func() int
}

var listening = regexp.MustCompile(`listening on (\S+)\)`)

func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), s.stdout, s.stderr, noEnv)
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
		select {
		case c := <-done:
			t.Fatalf("serve exited with %d:\n%s\n%s", c, s.stdout, s.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start:\n%s\n%s", s.stdout, s.stderr)
	return nil
}

func field(t *testing.T, out, label string) string {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(label) + `:\s+(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q in:\n%s", label, out)
	}
	return m[1]
}

func scimGet(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func TestServeFirstStart(t *testing.T) {
	db := filepath.Join(t.TempDir(), "es.db")
	s := startServe(t, "--db", db)
	out := s.stdout.String()
	tenantURL, token := field(t, out, "Tenant URL"), field(t, out, "Secret Token")
	if tenantURL != s.base+"/scim/v2" || !strings.HasPrefix(token, "es_") {
		t.Fatalf("Tenant URL %q, token %q", tenantURL, token)
	}
	if strings.Contains(s.stderr.String(), token) {
		t.Fatal("the Secret Token went to the log")
	}
	res, err := http.Get(s.base + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", res, err)
	}
	// Entra's Test Connection succeeds with the printed values.
	if code := scimGet(t, tenantURL+"/Users?filter=userName+eq+%22x%22", token); code != 200 {
		t.Fatalf("Test Connection: %d", code)
	}
	// An uncleaned SCIM path is answered by SCIM, not redirected by the mux.
	req, _ := http.NewRequest("GET", tenantURL+"/Users/../x", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if res, err := http.DefaultTransport.RoundTrip(req); err != nil || res.StatusCode != 404 || res.Header.Get("Location") != "" {
		t.Fatalf("uncleaned path: %v %v", res, err)
	}
	if !strings.Contains(s.stderr.String(), "memory_limit=512MiB") {
		t.Fatalf("no soft memory limit logged at start:\n%s", s.stderr)
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("serve exited %d after SIGINT-like cancel: %s", code, s.stderr)
	}
	if !strings.Contains(s.stdout.String(), "entrasync stopped") {
		t.Fatal("no clean shutdown")
	}
	// The credentials are printed once in a database's life.
	s2 := startServe(t, "--db", db)
	if strings.Contains(s2.stdout.String(), "Secret Token") {
		t.Fatalf("second start printed credentials again:\n%s", s2.stdout)
	}
	if code := scimGet(t, s2.base+"/scim/v2/Users", token); code != 200 {
		t.Fatalf("token from the first start: %d", code)
	}
}

func TestTenantAndTokenCommands(t *testing.T) {
	db := filepath.Join(t.TempDir(), "es.db")
	s := startServe(t, "--db", db)

	// Flags before or after the argument.
	var cred map[string]string
	out := mustRun(t, "tenant", "create", "--json", "--db", db, "acme", "--public-url", "https://scim.example.com")
	if err := json.Unmarshal([]byte(out), &cred); err != nil {
		t.Fatalf("tenant create --json: %v\n%s", err, out)
	}
	if cred["tenant"] != "acme" || cred["tenantUrl"] != "https://scim.example.com/scim/v2" || !strings.HasPrefix(cred["secretToken"], "es_") {
		t.Fatalf("credentials %v", cred)
	}
	// The running server accepts the token made by another process.
	if code := scimGet(t, s.base+"/scim/v2/Users", cred["secretToken"]); code != 200 {
		t.Fatalf("new tenant's token: %d", code)
	}
	out = mustRun(t, "tenant", "create", "globex", "--db", db)
	if field(t, out, "Tenant URL") == "" || field(t, out, "Secret Token") == "" {
		t.Fatal(out)
	}
	_, errOut, code := run(t, "tenant", "create", "acme", "--db", db)
	if code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("duplicate tenant: %d %s", code, errOut)
	}
	_, errOut, code = run(t, "tenant", "create", "Not Valid", "--db", db)
	if code != 1 || !strings.Contains(errOut, "lower-case letters") {
		t.Fatalf("bad name: %d %s", code, errOut)
	}

	var tenants []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "tenant", "list", "--json", "--db", db)), &tenants); err != nil {
		t.Fatal(err)
	}
	if len(tenants) != 3 || tenants[0]["name"] != "acme" || tenants[0]["id"] == nil || tenants[1]["name"] != "default" {
		t.Fatalf("tenant list: %v", tenants)
	}
	if out := mustRun(t, "tenant", "list", "--db", db); !strings.Contains(out, "NAME") || !strings.Contains(out, "globex") {
		t.Fatal(out)
	}

	// Tokens: a second one, listed without secrets, revoked at once.
	var second map[string]string
	json.Unmarshal([]byte(mustRun(t, "token", "create", "acme", "--json", "--db", db)), &second)
	var toks []map[string]any
	listOut := mustRun(t, "token", "list", "--db", db, "--json", "acme")
	if err := json.Unmarshal([]byte(listOut), &toks); err != nil || len(toks) != 2 {
		t.Fatalf("token list: %v %s", err, listOut)
	}
	if strings.Contains(listOut, cred["secretToken"]) || strings.Contains(listOut, second["secretToken"]) {
		t.Fatal("token list shows a secret")
	}
	for _, tk := range toks {
		if tk["id"] == "" || tk["prefix"] == "" || tk["createdAt"] == nil {
			t.Fatalf("token entry %v", tk)
		}
	}
	mustRun(t, "token", "revoke", cred["tokenId"], "--db", db)
	if code := scimGet(t, s.base+"/scim/v2/Users", cred["secretToken"]); code != 401 {
		t.Fatalf("revoked token answered %d", code)
	}
	if code := scimGet(t, s.base+"/scim/v2/Users", second["secretToken"]); code != 200 {
		t.Fatalf("the other token: %d", code)
	}
	if out := mustRun(t, "token", "list", "acme", "--db", db); !strings.Contains(out, "REVOKED") {
		t.Fatal(out)
	}
	_, errOut, code = run(t, "token", "revoke", "tok_nope", "--db", db)
	if code != 1 || !strings.Contains(errOut, "no token") {
		t.Fatalf("revoke unknown: %d %s", code, errOut)
	}

	// Delete needs --yes, then takes the data and tokens with it.
	_, errOut, code = run(t, "tenant", "delete", "acme", "--db", db)
	if code != 2 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("delete without --yes: %d %s", code, errOut)
	}
	mustRun(t, "tenant", "delete", "--yes", "acme", "--db", db)
	if code := scimGet(t, s.base+"/scim/v2/Users", second["secretToken"]); code != 401 {
		t.Fatalf("a deleted tenant's token answered %d", code)
	}
	_, errOut, code = run(t, "token", "list", "acme", "--db", db)
	if code != 1 || !strings.Contains(errOut, "no tenant") {
		t.Fatalf("token list of deleted tenant: %d %s", code, errOut)
	}
}

func TestCommandLineErrors(t *testing.T) {
	db := filepath.Join(t.TempDir(), "es.db")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"tenant"}, 2, "needs a subcommand: create, list, show, graph, delete"},
		{[]string{"tenant", "create", "--db", db}, 2, "want 1 argument(s), got 0"},
		{[]string{"tenant", "create", "a", "b", "--db", db}, 2, "want 1 argument(s), got 2"},
		{[]string{"tenant", "list", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"serve", "--addr", "nonsense"}, 1, "--addr=\"nonsense\": want host:port"},
		{[]string{"serve", "--body-limit", "3"}, 1, "--body-limit=\"3\": want a size from 1KiB to 64MiB"},
		{[]string{"serve", "--public-url", "ftp://x"}, 1, "--public-url"},
		{[]string{"serve", "--log-format", "xml"}, 1, "want text or json"},
	}
	for _, tc := range tests {
		out, errOut, code := run(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("entrasync %s: exit %d, stderr %q (stdout %q); want exit %d and %q", strings.Join(tc.args, " "), code, errOut, out, tc.code, tc.want)
		}
	}
	// Environment and file settings name their source.
	var errb bytes.Buffer
	code := Main(context.Background(), []string{"tenant", "list"}, io.Discard, &errb, func(k string) string {
		if k == "ENTRASYNC_RATE_LIMIT" {
			return "fast"
		}
		return ""
	})
	if code != 1 || !strings.Contains(errb.String(), "ENTRASYNC_RATE_LIMIT=\"fast\"") {
		t.Errorf("env error: %d %s", code, errb.String())
	}
	cfg := filepath.Join(t.TempDir(), "cfg.json")
	os.WriteFile(cfg, []byte(`{"db":"`+db+`","adress":"x"}`), 0o600)
	_, errOut, code := run(t, "tenant", "list", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, `unknown setting "adress"`) {
		t.Errorf("config file error: %d %s", code, errOut)
	}
	if out, _, code := run(t, "help"); code != 0 || !strings.Contains(out, "tenant create NAME") {
		t.Errorf("help: %d %s", code, out)
	}
}

// TestAcknowledgedWriteSurvivesKill: a 201 means committed, even if the
// process is killed right after answering, and while 16 clients' creates
// are in flight, so that group commits are under way at the kill.
func TestAcknowledgedWriteSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "es.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ENTRASYNC_TEST_MAIN=serve\n--addr\n127.0.0.1:0\n--db\n"+db,
		"ENTRASYNC_RATE_LIMIT=0") // the default 100/s per tenant would answer 429s
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var out strings.Builder
	base, token := "", ""
	sc := bufio.NewScanner(stdout)
	for base == "" && sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if m := listening.FindStringSubmatch(line); m != nil {
			base = "http://" + m[1]
		}
	}
	token = field(t, out.String(), "Secret Token")
	const clients, killAfter = 16, 300
	var (
		mu      gosync.Mutex
		ids     []string
		next    atomic.Int64
		posting gosync.WaitGroup
	)
	killed := make(chan struct{})
	for range clients {
		posting.Go(func() {
			for {
				i := next.Add(1)
				req, _ := http.NewRequest("POST", base+"/scim/v2/Users", strings.NewReader(fmt.Sprintf(`{"userName":"u%d@example.com"}`, i)))
				req.Header.Set("Authorization", "Bearer "+token)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					return // the server is gone: this request was not acknowledged
				}
				var body map[string]any
				json.NewDecoder(res.Body).Decode(&body)
				res.Body.Close()
				if res.StatusCode != 201 {
					select {
					case <-killed:
						return
					default:
						t.Errorf("POST before the kill: %d", res.StatusCode)
						return
					}
				}
				mu.Lock()
				ids = append(ids, body["id"].(string))
				if len(ids) == killAfter {
					cmd.Process.Signal(syscall.SIGKILL)
					close(killed)
				}
				mu.Unlock()
			}
		})
	}
	posting.Wait()
	cmd.Wait()
	if len(ids) < killAfter {
		t.Fatalf("only %d creates were acknowledged", len(ids))
	}
	t.Logf("%d creates acknowledged and %d in flight when the server was killed", len(ids), next.Load()-int64(len(ids)))

	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tn, err := st.Tenant(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := st.Get(context.Background(), tn.ID, store.UserKind, id); err != nil {
			t.Fatalf("acknowledged user %s lost after kill -9: %v", id, err)
		}
	}
}
