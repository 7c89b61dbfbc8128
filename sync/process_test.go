package sync

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
)

// A test re-executes this binary as a child process with these variables
// set; TestMain then runs the child's part instead of the tests.
const (
	childRoleEnv     = "ENTRASYNC_TEST_CHILD"    // "kill", "killtx" or "redis"
	childDBEnv       = "ENTRASYNC_TEST_DB"       // the store's DSN
	childCAEnv       = "ENTRASYNC_TEST_CA"       // PEM file with the fake Graph's certificate
	childRedisEnv    = "ENTRASYNC_TEST_REDIS"    // Redis URL, role "redis"
	childKillAtEnv   = "ENTRASYNC_TEST_KILL_AT"  // role "killtx": "call:write", see killInsideApply
	childSnapshotEnv = "ENTRASYNC_TEST_SNAPSHOT" // role "killtx": where to write what the store held
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runChild(role))
	}
	if spec := os.Getenv(fakeGraphEnv); spec != "" {
		serveFakeGraph(spec) // the benchmarks' fake Graph, in its own process
	}
	os.Exit(m.Run())
}

// runChild is a worker process on the parent's store and fake Graph.
//
// Role "kill" runs one pull with StoreLocks (TTL 1 s) and SIGKILLs itself
// after the run's changes committed, before its delta links are saved.
// Role "killtx" SIGKILLs itself inside an Apply transaction (see
// killInsideApply).
// Role "redis" keeps links and locks in Redis, prints READY, waits for a
// line on stdin (so two children start their runs together), runs one pull
// and prints "RESULT ok <run id>", "RESULT locked" or "RESULT error <msg>".
func runChild(role string) int {
	ctx := context.Background()
	db, err := store.Open(ctx, os.Getenv(childDBEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open store:", err)
		return 2
	}
	defer db.Close()
	client, err := trustingClient(os.Getenv(childCAEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	w := &Worker{DB: db, Key: testKey, Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Connect: func(ctx context.Context, c store.GraphConnection) (Source, error) {
			return graph.New(graph.Config{TenantID: c.AzureTenantID, ClientID: c.ClientID, ClientSecret: string(c.Secret),
				AuthorityHost: c.AuthorityHost, GraphURL: c.GraphURL, HTTPClient: client})
		}}
	switch role {
	case "kill":
		w.Tokens, w.Locks = StoreTokens{DB: db}, StoreLocks{DB: db, TTL: time.Second}
		w.beforeSave = func() {
			p, _ := os.FindProcess(os.Getpid())
			p.Signal(os.Kill)
			time.Sleep(time.Minute) // the signal lands before this ends
		}
	case "killtx":
		w.Tokens, w.Locks = StoreTokens{DB: db}, StoreLocks{DB: db, TTL: time.Second}
		if err := killInsideApply(db, os.Getenv(childKillAtEnv), os.Getenv(childSnapshotEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 2
		}
	case "redis":
		rd, err := NewRedis(os.Getenv(childRedisEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 2
		}
		defer rd.Close()
		w.Tokens, w.Locks = rd, rd
		fmt.Println("READY")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			fmt.Fprintln(os.Stderr, "child: waiting for the go:", err)
			return 2
		}
	default:
		fmt.Fprintln(os.Stderr, "child: unknown role", role)
		return 2
	}
	run, err := w.RunOnce(ctx, "contoso", Options{Trigger: "test"})
	var running *RunningError
	switch {
	case errors.As(err, &running):
		fmt.Println("RESULT locked")
	case err != nil:
		fmt.Println("RESULT error", strings.ReplaceAll(err.Error(), "\n", " "))
	default:
		fmt.Println("RESULT ok", run.ID)
	}
	return 0
}

// trustingClient is an HTTP client whose only root is the certificate in
// the PEM file at path.
func trustingClient(path string) (*http.Client, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("no certificate in %s", path)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

// child prepares a child process of role on h's store and fake Graph.
func (h *harness) child(role string, env ...string) *exec.Cmd {
	h.t.Helper()
	ca := filepath.Join(h.t.TempDir(), "fake-graph.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.fake.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		h.t.Fatal(err)
	}
	// A child that hangs is stopped with SIGTERM, which the kill test
	// tells apart from its own SIGKILL.
	ctx, cancel := context.WithTimeout(h.t.Context(), 2*time.Minute)
	h.t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.Env = append(os.Environ(), childRoleEnv+"="+role, childDBEnv+"="+h.dbPath, childCAEnv+"="+ca)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// savedLinks is every delta link tokens holds for h's connection (users,
// groups manifest, and the groups chunks the manifest lists), with when
// each was saved.
func (h *harness) savedLinks(tokens DeltaTokens) map[string]string {
	h.t.Helper()
	ctx := context.Background()
	r := &runner{conn: h.conn}
	out := map[string]string{}
	load := func(key string) string {
		link, saved, err := tokens.Load(ctx, h.tenant.ID, key)
		if err != nil {
			h.t.Fatal(err)
		}
		if link != "" {
			out[key] = link + " @" + saved.Format(time.RFC3339Nano)
		}
		return link
	}
	load(r.usersKey())
	var chunks [][]string
	if m := load(r.manifestKey()); m != "" {
		if err := json.Unmarshal([]byte(m), &chunks); err != nil {
			h.t.Fatal(err)
		}
	}
	for _, c := range chunks {
		load(r.groupsKey(c))
	}
	return out
}

// waitLeaseFree waits until the tenant's run lock in the store is free
// (its holder died and its lease ran out), by taking and giving it back.
func (h *harness) waitLeaseFree() {
	h.t.Helper()
	name := fmt.Sprintf("run:tenant:%d", h.tenant.ID)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ok bool
		err := h.db.Write(context.Background(), func(tx *store.Tx) error {
			var err error
			if ok, err = tx.AcquireLease(name, "probe", time.Second); err != nil || !ok {
				return err
			}
			return tx.ReleaseLease(name, "probe")
		})
		if err != nil {
			h.t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the run lock %s is still held", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mutate makes one change of each kind in the fake directory.
func (h *harness) mutate(gs []string) {
	h.t.Helper()
	j1 := h.dir.AddUser(graphtest.User{UserPrincipalName: "joiner.one@contoso.example", DisplayName: "Joiner One", AccountEnabled: true, JobTitle: "Analyst"})
	j2 := h.dir.AddUser(graphtest.User{UserPrincipalName: "joiner.two@contoso.example", DisplayName: "Joiner Two", AccountEnabled: true})
	h.dir.AddMember(gs[0], j1)
	h.dir.AddMember(gs[1], j2)
	leaver := h.userOnlyIn(gs[0])
	h.dir.RemoveMember(gs[0], leaver)
	h.dir.RenameGroup(gs[1], "Renamed in Entra")
	var titled, disabled string
	for _, u := range h.dir.Members(gs[1]) {
		if u == j2 || u == leaver {
			continue
		}
		if titled == "" {
			titled = u
		} else if disabled == "" {
			disabled = u
		}
	}
	h.dir.UpdateUser(titled, func(u *graphtest.User) { u.JobTitle = "Head of Replays" })
	h.dir.UpdateUser(disabled, func(u *graphtest.User) { u.AccountEnabled = false })
}

// TestReplayAfterKill kills a worker process between committing a run's
// changes and saving its delta links: the next run must replay from the old
// links and change nothing twice.
func TestReplayAfterKill(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 10, MembersPerPage: 5})
	h.w.Locks = StoreLocks{DB: h.db, TTL: time.Second} // as the child's, so its lease runs out as fast
	gs := h.populate(60, 3, 2, 7)
	h.sync(store.RunSucceeded)
	tokens := StoreTokens{DB: h.db}
	linksBefore := h.savedLinks(tokens)
	if len(linksBefore) < 3 {
		t.Fatalf("links after the first run: %v", linksBefore)
	}
	h.mutate(gs)

	cmd := h.child("kill")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("child ended with %v, want killed; output:\n%s", err, out)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended %v, want SIGKILL; output:\n%s", exit, out)
	}

	// Killed after the commit: the changes are all here...
	h.checkMirror()
	afterKill := h.snapshot()
	// ...the links are the first run's...
	if got := h.savedLinks(tokens); !mapsEqual(got, linksBefore) {
		t.Fatalf("delta links moved although the run died before saving them:\n got %v\nwant %v", got, linksBefore)
	}
	// ...and the run is still marked running.
	killed, ok, err := h.db.RunningRun(context.Background(), "contoso")
	if err != nil || !ok || killed.Mode != ModeDelta {
		t.Fatalf("the killed run's record: %+v %v %v", killed, ok, err)
	}

	h.waitLeaseFree()
	run, c := h.sync(store.RunSucceeded)
	if run.Mode != ModeDelta || c.Total() != 0 {
		t.Fatalf("replay: mode %s, counts %+v; want a delta that changes nothing", run.Mode, c)
	}
	if h.snapshot() != afterKill {
		t.Fatal("the replay changed the store")
	}
	old, err := h.db.Run(context.Background(), "contoso", killed.ID)
	if err != nil || old.Status != store.RunFailed || !strings.Contains(old.Error, "interrupted") {
		t.Fatalf("the killed run after the replay: %+v %v", old, err)
	}
	if got := h.savedLinks(tokens); mapsEqual(got, linksBefore) {
		t.Fatal("the replay did not save its delta links")
	}
	h.checkMirror()
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestTwoProcessesOneRedis starts two worker processes on one tenant at
// once, with the lock in Redis: one runs, the other is told a run is going.
func TestTwoProcessesOneRedis(t *testing.T) {
	rd := testRedis(t)
	h := newHarness(t, graphtest.Options{PageSize: 25, MembersPerPage: 10})
	claimRedisTenant(t, rd, h.tenant.ID)
	h.populate(40, 3, 2, 11)
	h.fake.SetLatency(300 * time.Millisecond) // a run lasts many answers: the two overlap

	type proc struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		lines  *bufio.Scanner
		stderr strings.Builder
	}
	procs := make([]*proc, 2)
	for i := range procs {
		p := &proc{cmd: h.child("redis", childRedisEnv+"="+testRedisURL)}
		p.cmd.Stderr = &p.stderr
		var err error
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		stdout, err := p.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		p.lines = bufio.NewScanner(stdout)
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = p
	}
	// readLine returns the next line starting with prefix.
	readLine := func(p *proc, prefix string) string {
		for p.lines.Scan() {
			if strings.HasPrefix(p.lines.Text(), prefix) {
				return p.lines.Text()
			}
		}
		p.cmd.Wait()
		t.Fatalf("child ended without %q; stderr:\n%s", prefix, p.stderr.String())
		return ""
	}
	for _, p := range procs {
		readLine(p, "READY")
	}
	for _, p := range procs {
		if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
	}
	var results []string
	for _, p := range procs {
		results = append(results, readLine(p, "RESULT "))
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("child: %v; stderr:\n%s", err, p.stderr.String())
		}
	}
	var ranID int64
	locked := 0
	for _, r := range results {
		f := strings.Fields(r)
		switch {
		case len(f) == 3 && f[1] == "ok" && ranID == 0:
			ranID, _ = strconv.ParseInt(f[2], 10, 64)
		case len(f) == 2 && f[1] == "locked":
			locked++
		default:
			t.Fatalf("results %q: want one run and one RunningError", results)
		}
	}
	if ranID == 0 || locked != 1 {
		t.Fatalf("results %q: want one run and one RunningError", results)
	}
	runs, err := h.db.Runs(context.Background(), "contoso", 10)
	if err != nil || len(runs) != 1 || runs[0].ID != ranID || runs[0].Status != store.RunSucceeded {
		t.Fatalf("runs %+v (%v), want only run %d, succeeded", runs, err, ranID)
	}

	// The links the winner saved in Redis serve the next run here.
	h.fake.SetLatency(0)
	h.w.Tokens, h.w.Locks = rd, rd
	run, c := h.sync(store.RunSucceeded)
	if run.Mode != ModeDelta || c.Total() != 0 {
		t.Fatalf("next run: mode %s, counts %+v", run.Mode, c)
	}
	h.checkMirror()
}

// TestRunOnceReleasesLock: when RunOnce returns, the run lock is free, so
// the next run never finds its own finished predecessor going.
func TestRunOnceReleasesLock(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	h.populate(5, 1, 1, 3)
	for i := range 30 {
		if _, err := h.w.RunOnce(context.Background(), "contoso", Options{Trigger: "test"}); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
}
