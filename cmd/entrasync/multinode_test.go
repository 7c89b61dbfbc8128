package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
	"github.com/redis/go-redis/v9"
)

// graphCAEnv names a PEM file with the fake Graph's certificate: a child
// started through ENTRASYNC_TEST_MAIN then trusts the fake (test code only).
const graphCAEnv = "ENTRASYNC_TEST_GRAPH_CA"

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

// The cluster's pull schedule: short, so that a test sees many cycles.
const (
	clusterSchedule = "@every 3s"
	clusterInterval = 3 * time.Second
	clusterLockTTL  = "6s" // run_lock_ttl: a killed node's tenant is free again soon
	graphLatency    = 50 * time.Millisecond
)

// cluster is entrasync nodes in child processes on one PostgreSQL schema
// and one Redis, with tenants pulled from a fake Graph in this process.
type cluster struct {
	t        *testing.T
	fake     *graphtest.Server
	dbURL    string
	redisURL string
	caFile   string
	db       *store.DB // the test's own view of the database
	nodes    []*node
	tenants  []*clusterTenant
}

// clusterTenant is an entrasync tenant connected to its own Azure tenant.
type clusterTenant struct {
	name     string
	token    string // SCIM Secret Token
	dir      *graphtest.Directory
	assigned []string // the Entra groups it pulls
}

// node is one `entrasync serve` child process.
type node struct {
	name   string
	cmd    *exec.Cmd
	base   string      // http://127.0.0.1:PORT
	stdout *syncBuffer // the serving line
	log    *nodeLog    // stderr: the JSON log
	exited chan struct{}
}

// newCluster makes the database (tenants connected with the README's
// commands) and starts n nodes on it. It skips without PostgreSQL or Redis.
func newCluster(t *testing.T, nodes, tenants int) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts three server processes")
	}
	c := &cluster{t: t, dbURL: pgtest.Schema(t), redisURL: testRedisURL(t)}
	c.fake = graphtest.NewServer(graphtest.Options{PageSize: 10, MembersPerPage: 5})
	t.Cleanup(c.fake.Close)
	// Every Graph answer takes a while, as the real one's do.
	c.fake.SetLatency(graphLatency)
	c.caFile = t.TempDir() + "/fake-graph.pem"
	if err := os.WriteFile(c.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.fake.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range tenants {
		c.addTenant(i + 1)
	}
	db, err := store.OpenWith(context.Background(), c.dbURL, store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	c.db = db
	t.Cleanup(func() { db.Close() })
	t.Cleanup(c.forgetRedisKeys) // after the nodes stop (cleanups run last first)
	var wg gosync.WaitGroup
	c.nodes = make([]*node, nodes)
	for i := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); c.nodes[i] = c.startNode(fmt.Sprintf("node%d", i+1)) }()
	}
	wg.Wait()
	for _, n := range c.nodes {
		if n.base == "" {
			t.FailNow() // startNode said why
		}
	}
	return c
}

// cli runs an entrasync command in this process against the cluster's
// database, with the secret key and the Graph client secret in its
// environment.
func (c *cluster) cli(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{"ENTRASYNC_SECRET_KEY": testSecretKey, "GRAPH_SECRET": "the-client-secret"}
	code := Main(context.Background(), append(args, "--db", c.dbURL), &out, &errb, func(k string) string { return env[k] })
	if code != 0 {
		t.Fatalf("entrasync %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}

// addTenant makes tenant i: an Azure tenant in the fake with an app
// granted exactly the README's permissions and a sample directory, and an
// entrasync tenant connected to it as the README says.
func (c *cluster) addTenant(i int) {
	c.t.Helper()
	azure := fmt.Sprintf("6f1b2a3c-%04d-4222-8333-944445555666", i)
	client := fmt.Sprintf("0c5e8f4a-%04d-4bbb-8ccc-dddddddddddd", i)
	c.fake.AddApp(azure, client, "the-client-secret")
	c.fake.Grant(azure, client, graph.RequiredPermissions...)
	tn := &clusterTenant{name: fmt.Sprintf("customer%d", i), dir: c.fake.Tenant(azure)}
	groups := tn.dir.Populate(rand.New(rand.NewSource(int64(i))), 50, 4)
	sort.Strings(groups)
	tn.assigned = groups[:3]
	var cred credentials
	if err := json.Unmarshal([]byte(c.cli(c.t, "tenant", "create", tn.name, "--json")), &cred); err != nil || cred.SecretToken == "" {
		c.t.Fatalf("tenant create --json: %v %+v", err, cred)
	}
	tn.token = cred.SecretToken
	// --threshold 100%: the directory churns during the test, and a run
	// held by the deletion guard would leave the mirror behind on purpose.
	c.cli(c.t, "tenant", "graph", tn.name, "--tenant-id", azure, "--client-id", client, "--client-secret-env", "GRAPH_SECRET",
		"--groups", strings.Join(tn.assigned, ","), "--authority-host", c.fake.URL(), "--graph-url", c.fake.URL(),
		"--schedule", clusterSchedule, "--threshold", "100%")
	c.tenants = append(c.tenants, tn)
}

// startNode starts `entrasync serve` in a child process, set up through
// the environment as the README's "running many nodes" says.
func (c *cluster) startNode(name string) *node {
	t := c.t
	n := &node{name: name, stdout: &syncBuffer{}, log: &nodeLog{}, exited: make(chan struct{})}
	n.cmd = exec.Command(os.Args[0], "-test.run=^$")
	n.cmd.Env = append(os.Environ(),
		"ENTRASYNC_TEST_MAIN=serve\n--addr\n127.0.0.1:0",
		graphCAEnv+"="+c.caFile,
		"ENTRASYNC_DB="+c.dbURL,
		"ENTRASYNC_REDIS="+c.redisURL,
		"ENTRASYNC_SECRET_KEY="+testSecretKey,
		"ENTRASYNC_DB_MAX_CONNS=6", // three nodes and the test share a PostgreSQL other tests use too
		"ENTRASYNC_SYNC_JITTER=500ms",
		"ENTRASYNC_RUN_LOCK_TTL="+clusterLockTTL,
		"ENTRASYNC_LOG_FORMAT=json",
	)
	n.cmd.Stdout, n.cmd.Stderr = n.stdout, n.log
	if err := n.cmd.Start(); err != nil {
		t.Errorf("start %s: %v", name, err)
		return n
	}
	go func() { n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(n.stop)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if m := listening.FindStringSubmatch(n.stdout.String()); m != nil {
			n.base = "http://" + m[1]
			return n
		}
		select {
		case <-n.exited:
			t.Errorf("%s exited at start:\n%s\n%s", name, n.stdout, n.log)
			return n
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Errorf("%s did not start:\n%s\n%s", name, n.stdout, n.log)
	return n
}

// stop ends a node as an orchestrator does: SIGTERM, then SIGKILL.
func (n *node) stop() {
	select {
	case <-n.exited:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
	}
}

// kill ends a node at once, as a crash does.
func (n *node) kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// logRecord is one line of a node's JSON log, the fields the test reads.
type logRecord struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Msg     string    `json:"msg"`
	Tenant  string    `json:"tenant"`
	Run     int64     `json:"run"`
	Trigger string    `json:"trigger"`
	Status  string    `json:"status"`
}

// nodeLog is a node's JSON log as it is written: the raw text, and the
// records the test reads (pull runs and errors) parsed as their lines end.
type nodeLog struct {
	mu      gosync.Mutex
	raw     bytes.Buffer
	partial []byte
	recs    []logRecord
}

func (l *nodeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.raw.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := l.partial[:i]
		l.partial = l.partial[i+1:]
		// Most lines are SCIM requests; only these are decoded.
		if bytes.Contains(line, []byte(`"msg":"pull `)) || bytes.Contains(line, []byte(`"level":"ERROR"`)) {
			var r logRecord
			if json.Unmarshal(line, &r) == nil {
				l.recs = append(l.recs, r)
			}
		}
	}
	l.partial = append([]byte(nil), l.partial...)
	return len(p), nil
}

func (l *nodeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

// records returns the node's records so far.
func (n *node) records() []logRecord {
	n.log.mu.Lock()
	defer n.log.mu.Unlock()
	return slices.Clone(n.log.recs)
}

// ranRuns is the runs a node started (its "pull started" lines), by id.
func (n *node) ranRuns() map[int64]logRecord {
	out := map[int64]logRecord{}
	for _, r := range n.records() {
		if r.Msg == "pull started" {
			out[r.Run] = r
		}
	}
	return out
}

// runningNow is the runs the node started and has not finished.
func (n *node) runningNow() []logRecord {
	started := map[int64]logRecord{}
	for _, r := range n.records() {
		switch r.Msg {
		case "pull started":
			started[r.Run] = r
		case "pull finished":
			delete(started, r.Run)
		}
	}
	var out []logRecord
	for _, r := range started {
		out = append(out, r)
	}
	return out
}

// nodeOf names the node that ran a run, from the nodes' logs.
func (c *cluster) nodeOf(run int64) string {
	for _, n := range c.nodes {
		if _, ok := n.ranRuns()[run]; ok {
			return n.name
		}
	}
	return ""
}

// forgetRedisKeys removes what the cluster's installation left in the test
// Redis (delta links live 8 days there).
func (c *cluster) forgetRedisKeys() {
	ns, err := c.db.InstallationID(context.Background())
	if err != nil {
		c.t.Logf("cleaning Redis: %v", err)
		return
	}
	opts, err := redis.ParseURL(c.redisURL)
	if err != nil {
		return
	}
	rc := redis.NewClient(opts)
	defer rc.Close()
	ctx := context.Background()
	it := rc.Scan(ctx, 0, "entrasync:"+ns+":*", 100).Iterator()
	for it.Next(ctx) {
		rc.Del(ctx, it.Val())
	}
}

// waitFor polls cond until it holds, failing the test after timeout with
// what cond last said.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %s", timeout, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// balancer sends requests to the nodes in turn, as a round-robin load
// balancer does; one that finds no node (it died), or a node that asks to
// come back later (503, 429), is sent to the next node.
type balancer struct {
	nodes  []*node
	next   atomic.Uint64
	client *http.Client
}

func newBalancer(nodes []*node) *balancer {
	return &balancer{nodes: nodes, client: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
}

// answer is a node's response. uncertain says an earlier attempt got no
// answer: it may have been applied all the same.
type answer struct {
	status    int
	body      []byte
	node      string
	uncertain bool
}

func (b *balancer) do(method, path, bearer, body string) (answer, error) {
	var a answer
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		n := b.nodes[b.next.Add(1)%uint64(len(b.nodes))]
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, n.base+path, rd)
		if err != nil {
			return a, err
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		if body != "" {
			req.Header.Set("Content-Type", "application/scim+json")
		}
		res, err := b.client.Do(req)
		if err != nil {
			a.uncertain = true // the node died with the request; another takes it
			continue
		}
		a.body, err = io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			a.uncertain = true
			continue
		}
		if res.StatusCode == http.StatusServiceUnavailable || res.StatusCode == http.StatusTooManyRequests {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		a.status, a.node = res.StatusCode, n.name
		return a, nil
	}
	return a, fmt.Errorf("%s %s: no node answered for a minute", method, path)
}

// pushLog is what the nodes acknowledged, per tenant.
type pushLog struct {
	mu       gosync.Mutex
	users    map[string]map[string]string          // tenant → userName → id
	inactive map[string]map[string]bool            // tenant → id of a user made inactive
	members  map[string]map[string]map[string]bool // tenant → group id → member ids
	groups   map[string][]string                   // tenant → pushed group ids
	acked    int
}

func entraUser(userName string) string {
	return fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
 "externalId":%q,"userName":%q,"active":true,
 "emails":[{"primary":true,"type":"work","value":%q}],
 "meta":{"resourceType":"User"},
 "name":{"formatted":"Push Person","familyName":"Person","givenName":"Push"},
 "roles":[]}`, newGUID(), userName, userName)
}

func newGUID() string {
	var b [16]byte
	crand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// pushUsers is one Entra provisioning stream into tenant tn: it creates
// users, disables every third, and adds each to one of the tenant's
// groups, until stop closes, recording every change a node acknowledged.
func (c *cluster) pushUsers(t *testing.T, lb *balancer, tn *clusterTenant, worker int, log *pushLog, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		userName := fmt.Sprintf("push.%d.%d@%s.push.example", worker, i, tn.name)
		a, err := lb.do("POST", "/scim/v2/Users", tn.token, entraUser(userName))
		if err != nil {
			t.Error(err)
			return
		}
		var id string
		switch {
		case a.status == http.StatusCreated:
			var u struct{ ID string }
			json.Unmarshal(a.body, &u)
			id = u.ID
		case a.status == http.StatusConflict && a.uncertain:
			// The node that died had created it: Entra looks it up.
			filter := url.QueryEscape(fmt.Sprintf("userName eq %q", userName))
			l, err := lb.do("GET", "/scim/v2/Users?filter="+filter, tn.token, "")
			var list struct{ Resources []struct{ ID string } }
			json.Unmarshal(l.body, &list)
			if err != nil || l.status != http.StatusOK || len(list.Resources) != 1 {
				t.Errorf("looking up %s after a 409: %v %d %s", userName, err, l.status, l.body)
				return
			}
			id = list.Resources[0].ID
		default:
			t.Errorf("POST /Users %s on %s: %d %s", userName, a.node, a.status, a.body)
			return
		}
		log.mu.Lock()
		log.users[tn.name][userName] = id
		log.acked++
		groups := log.groups[tn.name]
		log.mu.Unlock()

		if i%3 == 0 {
			a, err := lb.do("PATCH", "/scim/v2/Users/"+id, tn.token,
				`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`)
			if err != nil || a.status != http.StatusOK {
				t.Errorf("PATCH active False on %s: %v %d %s", a.node, err, a.status, a.body)
				return
			}
			log.mu.Lock()
			log.inactive[tn.name][id] = true
			log.acked++
			log.mu.Unlock()
		}

		g := groups[i%len(groups)]
		a, err = lb.do("PATCH", "/scim/v2/Groups/"+g, tn.token, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
  {"op":"Add","path":"members","value":[{"$ref":null,"value":"`+id+`"}]}]}`)
		if err != nil || a.status != http.StatusNoContent {
			t.Errorf("PATCH /Groups add member on %s: %v %d %s", a.node, err, a.status, a.body)
			return
		}
		log.mu.Lock()
		log.members[tn.name][g][id] = true
		log.acked++
		log.mu.Unlock()
	}
}

// runs is a tenant's runs, oldest first.
func (c *cluster) runs(t *testing.T, tenant string) []store.Run {
	t.Helper()
	rs, err := c.db.Runs(context.Background(), tenant, 10000)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(rs)
	return rs
}

// succeededSince reports whether tenant has a run that started after since
// and succeeded.
func (c *cluster) succeededSince(t *testing.T, tenant string, since time.Time) bool {
	t.Helper()
	for _, r := range c.runs(t, tenant) {
		if r.StartedAt.After(since) && r.Status == store.RunSucceeded {
			return true
		}
	}
	return false
}

// TestThreeNodes runs three entrasync nodes on one PostgreSQL and one
// Redis, pulling four tenants from a fake Graph on a short schedule while
// Entra-like SCIM traffic goes through all three; one node is killed in the
// middle of a pull. Issue 8's acceptance test of "many nodes".
func TestThreeNodes(t *testing.T) {
	began := time.Now()
	c := newCluster(t, 3, 4)
	t.Logf("three nodes serving after %s", time.Since(began).Round(time.Millisecond))

	t.Run("manual trigger", c.testManualTrigger)
	t.Run("revoked token", c.testRevokedToken)
	t.Run("revoked ops key", c.testRevokedOpsKey)
	t.Run("traffic, a node killed mid-run", c.testTrafficAndKill)
}

// testManualTrigger: a POST on the ops API through any node starts one
// run; through the other nodes, while it goes, it is answered 409 naming
// that run, which runs on another node.
func (c *cluster) testManualTrigger(t *testing.T) {
	var key struct{ Key string }
	json.Unmarshal([]byte(c.cli(t, "opskey", "create", "deploy", "--role", "sync", "--json")), &key)
	tenant := c.tenants[0].name
	path := "/ops/v1/tenants/" + tenant + "/sync"
	post := func(n *node) (int, store.Run, string) {
		req, _ := http.NewRequest("POST", n.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+key.Key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var body struct {
			store.Run
			Error    string     `json:"error"`
			Conflict *store.Run `json:"run"`
		}
		json.Unmarshal(b, &body)
		if res.StatusCode == http.StatusConflict && body.Conflict != nil {
			return res.StatusCode, *body.Conflict, body.Error
		}
		return res.StatusCode, body.Run, string(b)
	}
	// A run that lasts: every Graph answer takes a second while the other
	// nodes are asked.
	c.fake.SetLatency(time.Second)
	defer c.fake.SetLatency(graphLatency)
	starter := c.nodes[1]
	var started store.Run
	waitFor(t, "a manual run to start", time.Minute, func() (bool, string) {
		code, run, msg := post(starter)
		switch code {
		case http.StatusAccepted:
			started = run
			return true, ""
		case http.StatusConflict: // a scheduled run is going; wait for its end
			if run.ID == 0 || run.Status != store.RunRunning {
				t.Fatalf("409 without the running run: %s", msg)
			}
			return false, "a scheduled run is going: " + msg
		}
		t.Fatalf("POST %s: %d %s", path, code, msg)
		return false, ""
	})
	if started.ID == 0 || started.Status != store.RunRunning || started.Trigger != "api" {
		t.Fatalf("202 with %+v", started)
	}
	for _, n := range c.nodes {
		if n == starter {
			continue
		}
		code, run, msg := post(n)
		if code != http.StatusConflict || run.ID != started.ID || run.Status != store.RunRunning ||
			!strings.Contains(msg, fmt.Sprintf("run %d ", started.ID)) {
			t.Errorf("POST through %s while run %d goes on %s: %d %+v %s", n.name, started.ID, starter.name, code, run, msg)
		}
	}
	if ran := c.nodeOf(started.ID); ran != starter.name {
		t.Errorf("run %d ran on %q, want %s, which started it", started.ID, ran, starter.name)
	}
}

// testRevokedToken: a SCIM token revoked (by the CLI, on the shared
// database) is refused by every node on its very next request.
func (c *cluster) testRevokedToken(t *testing.T) {
	tn := c.tenants[1]
	var cred credentials
	json.Unmarshal([]byte(c.cli(t, "token", "create", tn.name, "--json")), &cred)
	for _, n := range c.nodes {
		if code := scimGet(t, n.base+"/scim/v2/Users?count=1", cred.SecretToken); code != http.StatusOK {
			t.Fatalf("%s before the revocation: %d", n.name, code)
		}
	}
	c.cli(t, "token", "revoke", cred.TokenID)
	for _, n := range c.nodes {
		if code := scimGet(t, n.base+"/scim/v2/Users?count=1", cred.SecretToken); code != http.StatusUnauthorized {
			t.Errorf("%s on the first request after the revocation: %d, want 401", n.name, code)
		}
	}
}

// testRevokedOpsKey: the same for an ops key.
func (c *cluster) testRevokedOpsKey(t *testing.T) {
	var key struct{ Key string }
	json.Unmarshal([]byte(c.cli(t, "opskey", "create", "dashboard", "--json")), &key)
	path := "/ops/v1/tenants/" + c.tenants[0].name + "/runs?limit=1"
	for _, n := range c.nodes {
		if code := scimGet(t, n.base+path, key.Key); code != http.StatusOK {
			t.Fatalf("%s before the revocation: %d", n.name, code)
		}
	}
	c.cli(t, "opskey", "revoke", "dashboard")
	for _, n := range c.nodes {
		if code := scimGet(t, n.base+path, key.Key); code != http.StatusUnauthorized {
			t.Errorf("%s on the first request after the revocation: %d, want 401", n.name, code)
		}
	}
}

// testTrafficAndKill drives SCIM traffic through every node while the
// directories churn and the tenants are pulled, kills the node running a
// pull, and checks the end state.
func (c *cluster) testTrafficAndKill(t *testing.T) {
	lb := newBalancer(c.nodes)
	log := &pushLog{users: map[string]map[string]string{}, inactive: map[string]map[string]bool{},
		members: map[string]map[string]map[string]bool{}, groups: map[string][]string{}}
	for _, tn := range c.tenants {
		log.users[tn.name], log.inactive[tn.name], log.members[tn.name] = map[string]string{}, map[string]bool{}, map[string]map[string]bool{}
		for g := range 2 {
			a, err := lb.do("POST", "/scim/v2/Groups", tn.token, fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group",
 "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],"externalId":%q,"displayName":"Pushed %d","meta":{"resourceType":"Group"}}`, newGUID(), g))
			var grp struct{ ID string }
			json.Unmarshal(a.body, &grp)
			if err != nil || a.status != http.StatusCreated || grp.ID == "" {
				t.Fatalf("POST /Groups: %v %d %s", err, a.status, a.body)
			}
			log.groups[tn.name] = append(log.groups[tn.name], grp.ID)
			log.members[tn.name][grp.ID] = map[string]bool{}
		}
	}

	began := time.Now()
	stopPush, stopChurn := make(chan struct{}), make(chan struct{})
	var pushers, churner gosync.WaitGroup
	for w := range 8 {
		pushers.Add(1)
		go func() { defer pushers.Done(); c.pushUsers(t, lb, c.tenants[w%len(c.tenants)], w, log, stopPush) }()
	}
	churner.Add(1)
	go func() {
		defer churner.Done()
		rng := rand.New(rand.NewSource(8))
		for {
			select {
			case <-stopChurn:
				return
			case <-time.After(300 * time.Millisecond):
			}
			for _, tn := range c.tenants {
				tn.dir.Churn(rng, 1)
			}
		}
	}()
	stopAll := func() {
		select {
		case <-stopChurn:
		default:
			close(stopChurn)
		}
		select {
		case <-stopPush:
		default:
			close(stopPush)
		}
		churner.Wait()
		pushers.Wait()
	}
	defer stopAll()

	// Every tenant has been pulled once (its first, full run).
	waitFor(t, "every tenant's first pull", 2*time.Minute, func() (bool, string) {
		for _, tn := range c.tenants {
			if !c.succeededSince(t, tn.name, time.Time{}) {
				return false, tn.name + " has no succeeded run"
			}
		}
		return true, ""
	})

	// Graph slows down: every answer now takes 5 s. A scheduled pull that
	// has not finished a second later waits for Graph; its node is killed
	// there, in the middle of the run.
	c.fake.SetLatency(5 * time.Second)
	slowSince := time.Now()
	var victim *node
	var cut []logRecord // the runs going on it: it may hold several
	waitFor(t, "a node in the middle of a scheduled pull", time.Minute, func() (bool, string) {
		if time.Since(slowSince) < time.Second {
			return false, ""
		}
		for _, n := range c.nodes {
			going := n.runningNow()
			for _, r := range going {
				if r.Trigger == "schedule" {
					n.kill()
					victim, cut = n, n.runningNow() // as the log stood when it died
					return true, ""
				}
			}
		}
		return false, "no scheduled pull going"
	})
	c.fake.SetLatency(graphLatency)
	killedAt := time.Now()
	for _, r := range cut {
		t.Logf("killed %s during run %d of %s (%s after the traffic began)", victim.name, r.Run, r.Tenant, killedAt.Sub(began).Round(time.Millisecond))
		if got, err := c.db.Run(context.Background(), r.Tenant, r.Run); err != nil || got.Status != store.RunRunning && !strings.Contains(got.Error, "interrupted") {
			t.Fatalf("run %d after its node was killed: %+v %v; want it cut short", r.Run, got, err)
		}
	}

	// Another node pulls the killed node's tenants on a following cycle,
	// once the dead node's locks have expired.
	for _, r := range cut {
		waitFor(t, "another node to pull "+r.Tenant, time.Minute, func() (bool, string) {
			return c.succeededSince(t, r.Tenant, killedAt), "no run of it has succeeded since the kill"
		})
	}

	// The directories stop changing; one more cycle of every tenant
	// starts after that, and the SCIM traffic ends.
	close(stopChurn)
	churner.Wait()
	calm := time.Now()
	waitFor(t, "a pull of every tenant after the last change", time.Minute, func() (bool, string) {
		for _, tn := range c.tenants {
			if !c.succeededSince(t, tn.name, calm) {
				return false, tn.name + " has not been pulled since"
			}
		}
		return true, ""
	})
	close(stopPush)
	pushers.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d SCIM changes acknowledged in %s through three nodes, one killed", log.acked, time.Since(began).Round(time.Millisecond))

	// Everything the nodes acknowledged is there, once.
	for _, tn := range c.tenants {
		c.checkPushed(t, tn, log)
		c.checkPulled(t, tn)
	}

	// The interrupted runs are marked so by the runs that followed them.
	for _, r := range cut {
		if got, err := c.db.Run(context.Background(), r.Tenant, r.Run); err != nil || got.Status != store.RunFailed || !strings.Contains(got.Error, "interrupted") {
			t.Errorf("the killed node's run %d: %+v %v; want failed, interrupted", r.Run, got, err)
		}
	}
	c.checkRuns(t, cut, victim, killedAt)
}

// checkPushed: every acknowledged change of tenant tn is stored once, and
// nothing else was pushed.
func (c *cluster) checkPushed(t *testing.T, tn *clusterTenant, log *pushLog) {
	ctx := context.Background()
	st, err := c.db.Tenant(ctx, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	page, err := c.db.List(ctx, st.ID, store.UserKind, store.Query{Count: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]store.Resource{}
	for _, u := range page.Resources {
		if name := strings.ToLower(u.Str("userName")); strings.HasSuffix(name, ".push.example") {
			byName[name] = append(byName[name], u)
		}
	}
	for userName, id := range log.users[tn.name] {
		got := byName[strings.ToLower(userName)]
		if len(got) != 1 || got[0].ID != id {
			t.Errorf("%s: acknowledged user %s (%s) is stored as %d users", tn.name, userName, id, len(got))
			continue
		}
		if want := !log.inactive[tn.name][id]; got[0].Active() != want {
			t.Errorf("%s: user %s active %v, want %v", tn.name, userName, got[0].Active(), want)
		}
	}
	if len(byName) != len(log.users[tn.name]) {
		t.Errorf("%s: %d pushed users stored, %d acknowledged", tn.name, len(byName), len(log.users[tn.name]))
	}
	for g, want := range log.members[tn.name] {
		ms, err := c.db.Members(ctx, st.ID, g)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, m := range ms {
			if got[m.ID] {
				t.Errorf("%s: group %s holds %s twice", tn.name, g, m.ID)
			}
			got[m.ID] = true
		}
		for id := range want {
			if !got[id] {
				t.Errorf("%s: acknowledged member %s of group %s is lost", tn.name, id, g)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: group %s has %d members, %d were added", tn.name, g, len(got), len(want))
		}
	}
}

// checkPulled: the tenant's pulled groups and users agree with its
// directory in the fake (as the sync suite's checkMirror): every assigned
// group with its name and members, every member with its attributes, every
// other pulled user deprovisioned.
func (c *cluster) checkPulled(t *testing.T, tn *clusterTenant) {
	ctx := context.Background()
	st, err := c.db.Tenant(ctx, tn.name)
	if err != nil {
		t.Fatal(err)
	}
	byEntra := func(kind store.Kind, id string) (store.Resource, bool) {
		m, err := c.db.ByEntraID(ctx, st.ID, kind, []string{id})
		if err != nil {
			t.Fatal(err)
		}
		r, ok := m[strings.ToLower(id)]
		return r, ok
	}
	inScope := map[string]bool{}
	for _, gid := range tn.assigned {
		fg, ok := tn.dir.Group(gid)
		if !ok {
			continue
		}
		lg, ok := byEntra(store.GroupKind, gid)
		if !ok || lg.Str("displayName") != fg.DisplayName {
			t.Errorf("%s: group %s is %q here, %q in Entra", tn.name, gid, lg.Str("displayName"), fg.DisplayName)
			continue
		}
		ms, err := c.db.Members(ctx, st.ID, lg.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range ms {
			r, err := c.db.Get(ctx, st.ID, m.Kind, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, r.EntraID)
		}
		want := slices.Clone(tn.dir.Members(gid))
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: group %s members\n got %v\nwant %v", tn.name, gid, got, want)
		}
		for _, id := range want {
			inScope[id] = true
		}
	}
	for id := range inScope {
		fu, _ := tn.dir.User(id)
		lu, ok := byEntra(store.UserKind, id)
		if !ok || lu.Active() != fu.AccountEnabled || lu.Str("userName") != fu.UserPrincipalName ||
			lu.Str("displayName") != fu.DisplayName || lu.Str("title") != fu.JobTitle {
			t.Errorf("%s: user %s here (found %v, active %v) %q %q %q; in Entra %+v", tn.name, id, ok, lu.Active(),
				lu.Str("userName"), lu.Str("displayName"), lu.Str("title"), fu)
		}
	}
	page, err := c.db.List(ctx, st.ID, store.UserKind, store.Query{Count: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range page.Resources {
		if u.EntraID != "" && !inScope[u.EntraID] && u.Active() {
			t.Errorf("%s: user %s (%s) is out of scope but active", tn.name, u.ID, u.EntraID)
		}
	}
}

// checkRuns: a tenant's runs never overlap; a scheduled run starts at
// least half the schedule's interval after the run before it (one run
// per tenant per cycle, whichever node fires); every run but the killed
// one succeeded; the killed node's tenant was pulled by another node after
// the kill; and the runs were spread over more than one node.
func (c *cluster) checkRuns(t *testing.T, cut []logRecord, victim *node, killedAt time.Time) {
	killed := map[int64]bool{}
	for _, r := range cut {
		killed[r.Run] = true
	}
	byNode := map[string]int{}
	ranBy := map[int64]string{}
	for _, n := range c.nodes {
		for id := range n.ranRuns() {
			ranBy[id] = n.name
			byNode[n.name]++
		}
	}
	for _, tn := range c.tenants {
		rs := c.runs(t, tn.name)
		scheduled := 0
		for i, r := range rs {
			if r.Trigger == "schedule" {
				scheduled++
			}
			if ranBy[r.ID] == "" {
				t.Errorf("%s: run %d is in no node's log", tn.name, r.ID)
			}
			if !killed[r.ID] && r.Status != store.RunSucceeded && !(i == len(rs)-1 && r.Status == store.RunRunning) {
				t.Errorf("%s: run %d on %s ended %s: %s", tn.name, r.ID, ranBy[r.ID], r.Status, r.Error)
			}
			if i == 0 {
				continue
			}
			prev := rs[i-1]
			if prev.FinishedAt == nil || prev.FinishedAt.After(r.StartedAt) {
				t.Errorf("%s: run %d (%s, %s) started at %s while run %d (%s) had not finished (%v)", tn.name, r.ID, r.Trigger, ranBy[r.ID],
					r.StartedAt.Format(time.StampMilli), prev.ID, ranBy[prev.ID], prev.FinishedAt)
			}
			// Start times are kept to the millisecond.
			if gap := r.StartedAt.Sub(prev.StartedAt); r.Trigger == "schedule" && gap < clusterInterval/2-time.Millisecond {
				t.Errorf("%s: scheduled run %d on %s started %s after run %d on %s: twice in one cycle", tn.name, r.ID, ranBy[r.ID],
					gap, prev.ID, ranBy[prev.ID])
			}
		}
		if scheduled < 2 {
			t.Errorf("%s: %d scheduled runs", tn.name, scheduled)
		}
		var lines []string
		for _, r := range rs {
			took := "-"
			if r.FinishedAt != nil {
				took = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
			}
			lines = append(lines, fmt.Sprintf("%d %s %s %s %s %s %s", r.ID, ranBy[r.ID], r.Trigger, r.Mode, r.Status, r.StartedAt.Format("15:04:05.000"), took))
		}
		t.Logf("%s: %d runs, %d scheduled:\n\t%s", tn.name, len(rs), scheduled, strings.Join(lines, "\n\t"))
	}
	// The killed node's tenants: the run after a killed one is another node's.
	for _, k := range cut {
		for _, r := range c.runs(t, k.Tenant) {
			if r.ID > k.Run {
				if ranBy[r.ID] == "" || ranBy[r.ID] == victim.name || !r.StartedAt.After(killedAt) {
					t.Errorf("run %d of %s, after the killed run %d, ran on %q at %s", r.ID, k.Tenant, k.Run, ranBy[r.ID], r.StartedAt)
				}
				break
			}
		}
	}
	if len(byNode) < 2 {
		t.Errorf("every run ran on one node: %v", byNode)
	}
	t.Logf("runs by node: %v", byNode)
	var errs []error
	for _, n := range c.nodes {
		for _, r := range n.records() {
			if r.Level == "ERROR" {
				errs = append(errs, fmt.Errorf("%s: %s", n.name, r.Msg))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Logf("errors in the nodes' logs:\n%v", err)
	}
}
