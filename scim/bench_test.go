package scim_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
	"github.com/entrasync/entrasync/sync"
	"github.com/entrasync/entrasync/sync/metrics"
)

// benchUsers is the directory size the benchmarks run against: 100,000,
// or ENTRASYNC_BENCH_USERS (as the pull benchmarks), smaller for a quick
// run on a busy machine.
var benchUsers = func() int {
	if n, err := strconv.Atoi(os.Getenv("ENTRASYNC_BENCH_USERS")); err == nil && n > 10 {
		return n
	}
	return 100_000
}()

// fixture is one store holding benchUsers users, a group with all of them
// as members and a 10-member group, served over real HTTP. It is built
// once per store and benchmark process, and removed by TestMain.
type fixture struct {
	db     *store.DB
	srv    *httptest.Server
	token  string
	tenant store.Tenant
	users  []string // ids, in creation order
	spare  []string // users in neither group, to add and remove
	big    string   // group with benchUsers members
	small  string   // group with 10 members
	remove func() error
	dsn    string         // the store's (a SQLite path, or a PostgreSQL URL)
	served *sync.Recorder // f.srv's activity

	smallToken string // a second tenant's, of 10,000 users (BenchmarkLargeTenant)
}

var (
	fixturesMu gosync.Mutex
	fixtures   = map[string]*fixture{} // by store kind (pgtest.Stores)
)

// TestMain removes the benchmarks' shared fixtures (a SQLite file, a
// PostgreSQL schema) when the tests and benchmarks are done; a child
// started as a SCIM node (scimNodeEnv) serves instead.
func TestMain(m *testing.M) {
	if dsn := os.Getenv(scimNodeEnv); dsn != "" {
		serveSCIMNode(dsn)
	}
	code := m.Run()
	for kind, f := range fixtures {
		f.srv.Close()
		f.served.Close()
		f.db.Close()
		if err := f.remove(); err != nil {
			fmt.Fprintf(os.Stderr, "remove the %s benchmark fixture: %v\n", kind, err)
		}
	}
	os.Exit(code)
}

func benchFixture(b *testing.B, kind string) *fixture {
	b.Helper()
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	if f := fixtures[kind]; f != nil {
		return f
	}
	dsn, remove := pgtest.KeptDSN(b, kind)
	start := time.Now()
	f, err := buildFixture(dsn)
	if f != nil {
		f.dsn = dsn
	}
	if err != nil {
		if f != nil && f.db != nil {
			f.db.Close()
		}
		remove()
		b.Fatalf("build the %s benchmark fixture: %v", kind, err)
	}
	f.remove = remove
	fixtures[kind] = f
	b.Logf("the %s fixture (%d users, %d-member group) took %v to build", kind, benchUsers, benchUsers, time.Since(start).Round(time.Millisecond))
	return f
}

func benchUserDoc(i int) map[string]any {
	name := fmt.Sprintf("user%06d", i)
	return map[string]any{
		"userName":    name + "@contoso.com",
		"externalId":  fmt.Sprintf("0a21f0f2-8d2a-4f8e-bf98-%012d", i),
		"displayName": "User " + name,
		"active":      true,
		"name":        map[string]any{"givenName": "User", "familyName": name, "formatted": "User " + name},
		"emails":      []any{map[string]any{"type": "work", "value": name + "@contoso.com", "primary": true}},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"employeeNumber": fmt.Sprint(i), "department": "Sales"},
	}
}

// entraCreateBody is Entra's POST /Users for a new user (its current form,
// see scim/entra_test.go), unique by tag and i.
func entraCreateBody(tag string, i int) string {
	return fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
	  "externalId":"bench-%[1]s-%[2]d","userName":"new%[1]s-%[2]d@contoso.com","active":true,
	  "emails":[{"primary":true,"type":"work","value":"new%[2]d@contoso.com"}],
	  "name":{"formatted":"New User","familyName":"User","givenName":"New"},
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"%[2]d"}}`, tag, i)
}

// benchTenant creates a tenant and its SCIM token.
func benchTenant(ctx context.Context, db *store.DB, name string) (tn store.Tenant, token string, err error) {
	err = db.Write(ctx, func(tx *store.Tx) error {
		if tn, err = tx.CreateTenant(name); err != nil {
			return err
		}
		_, token, err = tx.CreateToken(tn)
		return err
	})
	return tn, token, err
}

// seedUsers inserts the users benchUserDoc(from) to benchUserDoc(to-1),
// 5,000 a transaction, and returns their ids.
func seedUsers(ctx context.Context, db *store.DB, tenant int64, from, to int) ([]string, error) {
	const batch = 5000
	ids := make([]string, 0, to-from)
	for start := from; start < to; start += batch {
		err := db.Write(ctx, func(tx *store.Tx) error {
			for i := start; i < min(start+batch, to); i++ {
				r := &store.Resource{Kind: store.UserKind, Doc: benchUserDoc(i)}
				if err := tx.Insert(tenant, r); err != nil {
					return err
				}
				ids = append(ids, r.ID)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// startSCIM serves db's SCIM API over real HTTP (the caller closes it).
func startSCIM(db *store.DB) *httptest.Server {
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = scim.New(scim.Config{DB: db, PublicURL: "http://" + srv.Listener.Addr().String()}).Handler()
	srv.Start()
	return srv
}

// startServed serves db's SCIM API as entrasync serve does by default,
// over real HTTP: each request logged (info, text; here into io.Discard),
// recorded as activity and counted in the metrics. The speed benchmarks
// measure this, not the bare handler. Only the rate limit is off, as the
// README's Performance section tells an operator of a trusted tenant.
// The caller closes both.
func startServed(db *store.DB) (*httptest.Server, *sync.Recorder) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec := sync.NewRecorder(db, sync.RecorderConfig{Log: log})
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = scim.New(scim.Config{DB: db, PublicURL: "http://" + srv.Listener.Addr().String(), Log: log,
		Activity: rec, Metrics: metrics.New(metrics.Config{DB: db, Log: log})}).Handler()
	srv.Start()
	return srv, rec
}

// startSCIMHandler is db's SCIM API as a handler, for calls without HTTP.
func startSCIMHandler(db *store.DB) http.Handler {
	return scim.New(scim.Config{DB: db, PublicURL: "http://127.0.0.1"}).Handler()
}

// benchRuns numbers the benchmark runs of this process, so that the users
// each creates are new (-count, repeated runs of one b.N).
var benchRuns atomic.Int64

func nextBenchRun() string { return strconv.FormatInt(benchRuns.Add(1), 10) }

func buildFixture(dsn string) (*fixture, error) {
	ctx := context.Background()
	db, err := store.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	f := &fixture{db: db}
	if f.tenant, f.token, err = benchTenant(ctx, db, "bench"); err != nil {
		return f, err
	}
	const spare = 1000
	ids, err := seedUsers(ctx, db, f.tenant.ID, 0, benchUsers+spare)
	if err != nil {
		return f, err
	}
	f.users, f.spare = ids[:benchUsers], ids[benchUsers:]
	err = db.Write(ctx, func(tx *store.Tx) error {
		big := &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": "Everyone"}}
		small := &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": "Board"}}
		if err := tx.Insert(f.tenant.ID, big); err != nil {
			return err
		}
		if err := tx.Insert(f.tenant.ID, small); err != nil {
			return err
		}
		f.big, f.small = big.ID, small.ID
		if _, err := tx.AddMembers(f.tenant.ID, big.ID, f.users); err != nil {
			return err
		}
		_, err := tx.AddMembers(f.tenant.ID, small.ID, f.users[:10])
		return err
	})
	if err != nil {
		return f, err
	}
	f.srv, f.served = startServed(db)
	return f, nil
}

func (f *fixture) do(b *testing.B, method, path, body string, want int) {
	req, _ := http.NewRequest(method, f.srv.URL+"/scim/v2"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", "application/scim+json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		b.Fatalf("%s %s: %d, want %d", method, path, res.StatusCode, want)
	}
}

// BenchmarkPostUser: POST /Users of an Entra-shaped user into a store of
// 100,000 (benchUsers).
func BenchmarkPostUser(b *testing.B) {
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		f := benchFixture(b, kind)
		run := nextBenchRun()
		b.ResetTimer()
		for i := range b.N {
			f.do(b, "POST", "/Users", entraCreateBody(run, i), http.StatusCreated)
		}
	})
}

// BenchmarkFilterUserName: Entra's lookup, GET /Users?filter=userName eq "...".
func BenchmarkFilterUserName(b *testing.B) {
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		f := benchFixture(b, kind)
		b.ResetTimer()
		for i := range b.N {
			name := fmt.Sprintf("USER%06d@contoso.com", (i*7919)%benchUsers)
			f.do(b, "GET", "/Users?filter=userName+eq+%22"+name+"%22", "", http.StatusOK)
		}
	})
}

// BenchmarkPatchAddMember: PATCH adding one member, to a 100,000-member
// (benchUsers) group and to a 10-member group; the cost must not grow with the group.
func BenchmarkPatchAddMember(b *testing.B) {
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		f := benchFixture(b, kind)
		for _, g := range []struct{ name, id string }{{"members=10", f.small}, {"members=" + strconv.Itoa(benchUsers), f.big}} {
			b.Run(g.name, func(b *testing.B) {
				for i := range b.N {
					member := f.spare[i%len(f.spare)]
					f.do(b, "PATCH", "/Groups/"+g.id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
					  "Operations":[{"op":"Add","path":"members","value":[{"value":"`+member+`"}]}]}`, http.StatusNoContent)
					b.StopTimer()
					err := f.db.Write(context.Background(), func(tx *store.Tx) error {
						_, err := tx.RemoveMembers(f.tenant.ID, g.id, []string{member})
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	})
}
