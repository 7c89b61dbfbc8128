package scim_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
)

// The throughput benchmark's load: Entra's provisioning sends a lookup by
// userName before each create, so half the requests are lookups of the
// seeded users and half are creates, from throughputClients at once.
const (
	throughputClients = 16
	throughputSeed    = 5_000
)

// BenchmarkSCIMThroughput: SCIM requests per second through one node and
// through three on one database, the clients' requests going round robin
// over the nodes (as a load balancer sends them). A node is a child
// process (this test binary, see serveSCIMNode) with a store.DB and SCIM
// server of its own. On one machine the nodes share its CPUs with the
// database and the clients: the figure shows what three nodes' pools and
// the database's row locks cost or gain, not the CPU that separate
// machines would add. SQLite serves one node, for reference.
func BenchmarkSCIMThroughput(b *testing.B) {
	nodeCounts := map[string][]int{"sqlite": {1}, "postgres": {1, 3}}
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		ctx := context.Background()
		dsn := pgtest.DSN(b, kind) // kept across the nodes=N runs below
		setup, err := store.Open(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer setup.Close()
		tn, token, err := benchTenant(ctx, setup, "throughput")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := seedUsers(ctx, setup, tn.ID, 0, throughputSeed); err != nil {
			b.Fatal(err)
		}
		for _, nodes := range nodeCounts[kind] {
			b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
				benchThroughput(b, dsn, token, nodes)
			})
		}
	})
}

// scimNodeEnv, when set to a store's DSN, makes the test binary serve
// SCIM on that store instead of running tests (see TestMain): a node of
// BenchmarkSCIMThroughput.
const scimNodeEnv = "ENTRASYNC_BENCH_SCIM_NODE"

// serveSCIMNode is the child's side: it prints "LISTENING http://ADDR" and
// serves until killed; it never returns.
func serveSCIMNode(dsn string) {
	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		fmt.Fprintf(os.Stderr, "SCIM node: open the store: %v\n", err)
		os.Exit(1)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "SCIM node: listen: %v\n", err)
		os.Exit(1)
	}
	url := "http://" + l.Addr().String()
	fmt.Println("LISTENING", url)
	err = http.Serve(l, scim.New(scim.Config{DB: db, PublicURL: url}).Handler())
	fmt.Fprintf(os.Stderr, "SCIM node: %v\n", err)
	os.Exit(1)
}

// startSCIMNode starts a SCIM node on dsn in a child process, killed when
// b's run ends, and returns its URL.
func startSCIMNode(b *testing.B, dsn string) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), scimNodeEnv+"="+dsn)
	cmd.Stderr = os.Stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatalf("start a SCIM node: %v", err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if url, ok := strings.CutPrefix(lines.Text(), "LISTENING "); ok {
			return url
		}
	}
	b.Fatal("a SCIM node did not start (its error is above)")
	return ""
}

// benchThroughput starts nodes SCIM nodes on dsn and sends b.N requests
// through them from throughputClients clients.
func benchThroughput(b *testing.B, dsn, token string, nodes int) {
	var urls []string
	for range nodes {
		urls = append(urls, startSCIMNode(b, dsn)+"/scim/v2")
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: throughputClients * nodes, MaxIdleConnsPerHost: throughputClients}}
	b.Cleanup(client.CloseIdleConnections)
	run := nextBenchRun()
	b.ResetTimer()
	concurrently(b, throughputClients, b.N, func(i int) error {
		base := urls[i%nodes]
		if i%2 == 0 {
			name := fmt.Sprintf("user%06d@contoso.com", (i*7919)%throughputSeed)
			_, err := send(client, "GET", base+`/Users?filter=userName+eq+%22`+name+`%22`, token, "", http.StatusOK)
			return err
		}
		_, err := send(client, "POST", base+"/Users", token, entraCreateBody("t"+run, i), http.StatusCreated)
		return err
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
