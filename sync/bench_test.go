package sync

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
)

// The benchmarks pull from a fake Graph in a child process, so the peak
// RSS measured here is the worker's own, not the fake directory's.

// The directory the benchmarks pull; ENTRASYNC_BENCH_USERS sets a
// smaller one for profiling.
var benchUsers, benchGroups = benchSize()

func benchSize() (int, int) {
	if n, err := strconv.Atoi(os.Getenv("ENTRASYNC_BENCH_USERS")); err == nil && n > 0 {
		return n, max(n/500, 2)
	}
	return 100_000, 200
}

// fakeGraphEnv, when set ("users,groups"), makes the test binary serve a
// populated fake Graph instead of running tests (see TestMain). It prints
// the URL and the certificate file, then takes commands on stdin:
// "churn N" makes N changes.
const fakeGraphEnv = "ENTRASYNC_BENCH_FAKE_GRAPH"

// serveFakeGraph is the child's side; it never returns.
func serveFakeGraph(spec string) {
	users, groups := 0, 0
	fmt.Sscanf(spec, "%d,%d", &users, &groups)
	srv := graphtest.NewServer(graphtest.Options{PageSize: 200, MembersPerPage: 500})
	srv.AddApp(azureTenant, appID, appSecret)
	srv.Grant(azureTenant, appID, graph.RequiredPermissions...)
	dir := srv.Tenant(azureTenant)
	ids := dir.Populate(rand.New(rand.NewSource(1)), users, groups)
	sort.Strings(ids)
	certFile := filepath.Join(os.TempDir(), fmt.Sprintf("entrasync-bench-%d.pem", os.Getpid()))
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	defer os.Remove(certFile)
	fmt.Printf("READY %s %s %s\n", srv.URL(), certFile, strings.Join(ids, ","))
	r := rand.New(rand.NewSource(2))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var n int
		if _, err := fmt.Sscanf(in.Text(), "churn %d", &n); err == nil {
			dir.Churn(r, n)
			fmt.Println("DONE")
		}
	}
	os.Exit(0)
}

// benchGraph is a running child fake Graph.
type benchGraph struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	url    string
	client *http.Client
	groups []string
}

func startBenchGraph(b *testing.B, users, groups int) *benchGraph {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), fakeGraphEnv+"="+strconv.Itoa(users)+","+strconv.Itoa(groups))
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	outPipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	g := &benchGraph{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
	g.out.Buffer(make([]byte, 1<<20), 1<<24)
	b.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	for g.out.Scan() {
		f := strings.Fields(g.out.Text())
		if len(f) == 4 && f[0] == "READY" {
			g.url, g.groups = f[1], strings.Split(f[3], ",")
			pemBytes, err := os.ReadFile(f[2])
			if err != nil {
				b.Fatal(err)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pemBytes)
			g.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 4}}
			return g
		}
	}
	b.Fatal("the fake Graph did not start")
	return nil
}

func (g *benchGraph) churn(b *testing.B, n int) {
	fmt.Fprintf(g.in, "churn %d\n", n)
	for g.out.Scan() {
		if g.out.Text() == "DONE" {
			return
		}
	}
	b.Fatal("the fake Graph stopped")
}

// benchWorker makes a fresh store of the kind named (pgtest.Stores) with a
// tenant connected to g.
func benchWorker(b *testing.B, kind string, g *benchGraph, groups []string) *Worker {
	b.Helper()
	db, err := store.Open(context.Background(), pgtest.DSN(b, kind))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	err = db.Write(context.Background(), func(tx *store.Tx) error {
		if _, err := tx.CreateTenant("contoso"); err != nil {
			return err
		}
		return tx.SaveGraphConnection(store.GraphConnection{Tenant: "contoso", AzureTenantID: azureTenant, ClientID: appID,
			Credential: "secret", Secret: []byte(appSecret), Groups: groups, Schedule: "@every 40m", Deprovision: "deactivate",
			ThresholdPercent: 100, AuthorityHost: g.url, GraphURL: g.url}, testKey)
	})
	if err != nil {
		b.Fatal(err)
	}
	return &Worker{DB: db, Tokens: StoreTokens{DB: db}, Locks: StoreLocks{DB: db}, Key: testKey,
		Connect: func(ctx context.Context, c store.GraphConnection) (Source, error) {
			return graph.New(graph.Config{TenantID: c.AzureTenantID, ClientID: c.ClientID, ClientSecret: string(c.Secret),
				AuthorityHost: c.AuthorityHost, GraphURL: c.GraphURL, HTTPClient: g.client})
		}}
}

// resetPeakRSS starts a new peak-RSS measurement (Linux: clear_refs 5),
// from the heap in use: what earlier steps freed (the download-only
// client's pages) is returned to the system first, not counted.
func resetPeakRSS() bool {
	debug.FreeOSMemory()
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS is the process's peak resident set since the last reset, in MiB.
func peakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// downloadOnly is the baseline a full pull is measured against: a client
// that downloads what the pull downloads from g, through the same Graph
// client and HTTP connections, and discards it. It walks every group's
// delta with members, 50 groups a query, and looks each member up by id
// once, 50 a request, page by page, as runner.fetch does; it returns how
// long that took and how many users it found.
func downloadOnly(b *testing.B, g *benchGraph) (time.Duration, int) {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	src, err := graph.New(graph.Config{TenantID: azureTenant, ClientID: appID, ClientSecret: appSecret,
		AuthorityHost: g.url, GraphURL: g.url, HTTPClient: g.client})
	if err != nil {
		b.Fatal(err)
	}
	seen := map[string]bool{}
	users := 0
	for _, chunk := range chunked(lowerSorted(g.groups), graph.MaxGroupsPerQuery) {
		for page, err := range src.GroupsDelta(ctx, "", chunk) {
			if err != nil {
				b.Fatal(err)
			}
			var need []string
			for _, grp := range page.Groups {
				for _, m := range grp.Members {
					if !m.Group && !m.Removed && !seen[m.ID] {
						seen[m.ID] = true
						need = append(need, m.ID)
					}
				}
			}
			for _, ids := range chunked(lowerSorted(need), graph.MaxIDsPerLookup) {
				found, err := src.UsersByID(ctx, ids)
				if err != nil {
					b.Fatal(err)
				}
				users += len(found)
			}
		}
	}
	return time.Since(start), users
}

// BenchmarkInitialSync: the first, full pull of 100,000 users in 200
// groups, with the worker's peak RSS (PostgreSQL's own memory is its
// processes', not counted), on each store; x-download is the pull's time
// over that of downloadOnly from the same fake Graph, in the same run.
func BenchmarkInitialSync(b *testing.B) {
	g := startBenchGraph(b, benchUsers, benchGroups)
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		var peak float64
		var download time.Duration
		for range b.N {
			b.StopTimer()
			took, found := downloadOnly(b, g)
			download += took
			w := benchWorker(b, kind, g, g.groups)
			measured := resetPeakRSS()
			b.StartTimer()
			run, err := w.RunOnce(context.Background(), "contoso", Options{Trigger: "bench"})
			b.StopTimer()
			if err != nil || run.Mode != ModeFull {
				b.Fatalf("run %+v: %v", run, err)
			}
			if measured {
				peak = max(peak, peakRSS())
			}
			t, _ := w.DB.Tenant(context.Background(), "contoso")
			active, err := w.DB.CountPulledUsers(context.Background(), t.ID)
			if err != nil || active < benchUsers*8/10 || run.UsersSeen < found {
				b.Fatalf("%d users pulled, %d seen, %d downloaded: %v", active, run.UsersSeen, found, err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(benchUsers)*float64(b.N)/b.Elapsed().Seconds(), "users/s")
		b.ReportMetric(b.Elapsed().Seconds()/download.Seconds(), "x-download")
		if peak > 0 {
			b.ReportMetric(peak, "peak-RSS-MiB")
		}
	})
}

// BenchmarkIncrementalSync: a delta pull carrying 1,000 changes (joiners,
// leavers, renames, moves, disables, title changes, soft deletes,
// restores) against a store of 100,000 users, on each store.
func BenchmarkIncrementalSync(b *testing.B) {
	g := startBenchGraph(b, benchUsers, benchGroups)
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		w := benchWorker(b, kind, g, g.groups)
		if _, err := w.RunOnce(context.Background(), "contoso", Options{Trigger: "bench"}); err != nil {
			b.Fatal(err)
		}
		var changes int
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			g.churn(b, 1000)
			b.StartTimer()
			run, err := w.RunOnce(context.Background(), "contoso", Options{Trigger: "bench"})
			if err != nil || run.Mode != ModeDelta {
				b.Fatalf("run %+v: %v", run, err)
			}
			var c Counts
			if err := json.Unmarshal(run.Changes, &c); err != nil {
				b.Fatal(err)
			}
			changes += c.Total()
		}
		b.ReportMetric(float64(changes)/float64(b.N), "changes/run")
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/run")
	})
}

// BenchmarkFullResync: a full pull (as after an expired delta link) of a
// tenant already pulled, with nothing changed: every group read from
// scratch, every user looked up again, 50 a request (the users delta by
// id, under User.Read.All), and nothing written; on each store.
func BenchmarkFullResync(b *testing.B) {
	g := startBenchGraph(b, benchUsers, benchGroups)
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		w := benchWorker(b, kind, g, g.groups)
		if _, err := w.RunOnce(context.Background(), "contoso", Options{Trigger: "bench"}); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			run, err := w.RunOnce(context.Background(), "contoso", Options{Trigger: "bench", Full: true})
			if err != nil || run.Mode != ModeFull {
				b.Fatalf("run %+v: %v", run, err)
			}
			var c Counts
			if err := json.Unmarshal(run.Changes, &c); err != nil || c.Total() != 0 {
				b.Fatalf("a full run over an unchanged directory changed %+v (%v)", c, err)
			}
		}
		b.ReportMetric(float64(benchUsers)*float64(b.N)/b.Elapsed().Seconds(), "users/s")
	})
}
