package scim_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entrasync/entrasync/scim/filter"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
	"github.com/jmoiron/sqlx"
)

// The speed benchmarks of issue 9 send requests from many clients at once
// over real HTTP (loopback), as Entra's provisioning does, and report
// requests per second.

// clientPool sends requests with a keep-alive connection per client.
func clientPool(clients int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
}

// send does one request and checks its status; it returns the body.
func send(client *http.Client, method, url, token, body string, want int) ([]byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	if res.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d, want %d: %s", method, url, res.StatusCode, want, raw)
	}
	return raw, nil
}

// concurrently runs do(0) … do(n-1) from clients goroutines and returns
// the rate per second; the first error fails b.
func concurrently(b *testing.B, clients, n int, do func(i int) error) float64 {
	var next atomic.Int64
	var failed atomic.Bool
	var wg gosync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := do(i); err != nil && !failed.Swap(true) {
					b.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkCreates: durable creates per second, Entra's POST /Users form
// from 16 clients at once, into a tenant of benchUsers users.
func BenchmarkCreates(b *testing.B) {
	const clients = 16
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		f := benchFixture(b, kind)
		client := clientPool(clients)
		defer client.CloseIdleConnections()
		run := nextBenchRun()
		before := f.db.WriteStats()
		b.ResetTimer()
		rate := concurrently(b, clients, b.N, func(i int) error {
			_, err := send(client, "POST", f.srv.URL+"/scim/v2/Users", f.token, entraCreateBody("c"+run, i), http.StatusCreated)
			return err
		})
		b.StopTimer()
		after := f.db.WriteStats()
		floor := createFloor(b, f, kind)
		defer floor.Close()
		least := concurrently(b, clients, b.N, func(i int) error {
			_, err := send(client, "POST", floor.URL+"/scim/v2/Users", f.token, entraCreateBody("f"+run, i), http.StatusCreated)
			return err
		})
		b.ReportMetric(rate, "creates/s")
		b.ReportMetric(least, "floor/s")
		b.ReportMetric(float64(b.N)/float64(after.Hold.Count-before.Hold.Count), "writes/commit")
		b.ReportMetric(float64((after.Hold.Sum-before.Hold.Sum).Microseconds())/float64(after.Hold.Count-before.Hold.Count), "µs/commit")
	})
}

// BenchmarkLookups: Entra's lookup (GET /Users?filter=userName eq "…")
// from 32 clients at once, beside a no-op Go HTTP server that answers the
// same body to the same clients in the same run: lookups/s, no-op/s and
// their ratio (the issue asks at least 50 %).
func BenchmarkLookups(b *testing.B) {
	const clients = 32
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		f := benchFixture(b, kind)
		client := clientPool(clients)
		defer client.CloseIdleConnections()
		lookup := func(i int) string {
			name := fmt.Sprintf("USER%06d@contoso.com", (i*7919)%benchUsers)
			return f.srv.URL + "/scim/v2/Users?filter=userName+eq+%22" + name + "%22"
		}
		body, err := send(client, "GET", lookup(0), f.token, "", http.StatusOK)
		if err != nil {
			b.Fatal(err)
		}
		noop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/scim+json; charset=utf-8")
			w.Write(body)
		}))
		defer noop.Close()
		floor := lookupFloor(b, f, kind, body)
		defer floor.Close()
		floorLookup := func(i int) string { return floor.URL + strings.TrimPrefix(lookup(i), f.srv.URL) }
		b.ResetTimer()
		ours := concurrently(b, clients, b.N, func(i int) error {
			_, err := send(client, "GET", lookup(i), f.token, "", http.StatusOK)
			return err
		})
		base := concurrently(b, clients, b.N, func(i int) error {
			_, err := send(client, "GET", noop.URL+"/scim/v2/Users?filter=userName+eq+%22x%22", f.token, "", http.StatusOK)
			return err
		})
		least := concurrently(b, clients, b.N, func(i int) error {
			_, err := send(client, "GET", floorLookup(i), f.token, "", http.StatusOK)
			return err
		})
		b.StopTimer()
		b.ReportMetric(ours, "lookups/s")
		b.ReportMetric(base, "noop/s")
		b.ReportMetric(100*ours/base, "%ofnoop")
		b.ReportMetric(100*least/base, "floor%ofnoop")
	})
}

// lookupFloor serves what no lookup can do without, and nothing else: the
// token's row found by its hash, the user's row found by userName, each
// one indexed read through the store's own driver and a pool of the
// store's size, then body. Its rate is the ceiling of a lookup on this
// store and machine with every SCIM step free (no filter parsing, no
// groups, no rendering, no log, no activity record).
func lookupFloor(b *testing.B, f *fixture, kind string, body []byte) *httptest.Server {
	driver, dsn := "pgx", f.dsn
	if kind == "sqlite" {
		driver, dsn = "sqlite", "file:"+f.dsn+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)"
	}
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	token, err := db.Preparex(db.Rebind(`SELECT k.id, t.name FROM scim_tokens k JOIN tenants t ON t.id = k.tenant_id WHERE k.hash = ? AND k.revoked_at IS NULL`))
	if err != nil {
		b.Fatal(err)
	}
	user, err := db.Preparex(db.Rebind(`SELECT doc FROM users WHERE tenant_id = ? AND user_name_fold = ?`))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.Sum256([]byte(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")))
		var id, tenant, doc string
		if err := token.QueryRowContext(r.Context(), sum[:]).Scan(&id, &tenant); err != nil {
			http.Error(w, "token: "+err.Error(), http.StatusUnauthorized)
			return
		}
		_, name, _ := strings.Cut(r.URL.Query().Get("filter"), `"`)
		name = strings.TrimSuffix(name, `"`)
		if err := user.QueryRowContext(r.Context(), f.tenant.ID, strings.ToLower(name)).Scan(&doc); err != nil {
			http.Error(w, "user: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/scim+json; charset=utf-8")
		w.Write(body)
	}))
	b.Cleanup(func() { db.Close() })
	return srv
}

// createFloor serves the least a durable create is: the token's row found
// by its hash, then the body stored as one users row by one statement
// that commits itself, durably as the store commits (FULL sync on SQLite,
// synchronous_commit on PostgreSQL), through the store's driver and a
// writer pool of the store's size. No JSON is parsed, no index row or
// activity record written, nothing grouped into shared commits: the
// ceiling of what one create's durable commit allows on this machine.
func createFloor(b *testing.B, f *fixture, kind string) *httptest.Server {
	driver, dsn, writers := "pgx", f.dsn, 8
	if kind == "sqlite" {
		driver, dsn, writers = "sqlite", "file:"+f.dsn+"?_pragma=busy_timeout(5000)&_pragma=synchronous(FULL)&_txlock=immediate", 1
	}
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(writers)
	db.SetMaxIdleConns(writers)
	b.Cleanup(func() { db.Close() })
	token := db.Rebind(`SELECT k.id FROM scim_tokens k JOIN tenants t ON t.id = k.tenant_id WHERE k.hash = ? AND k.revoked_at IS NULL`)
	insert := db.Rebind(`INSERT INTO users (tenant_id, id, version, created_at, modified_at, doc, user_name, user_name_fold, active)
		VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?)`)
	b.Cleanup(func() {
		// The fixture is shared by the benchmarks after this one.
		if _, err := db.Exec(db.Rebind(`DELETE FROM users WHERE tenant_id = ? AND id LIKE 'floor-%'`), f.tenant.ID); err != nil {
			b.Errorf("remove the floor's users: %v", err)
		}
	})
	var n atomic.Int64
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.Sum256([]byte(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")))
		var id string
		if err := db.QueryRowContext(r.Context(), token, sum[:]).Scan(&id); err != nil {
			http.Error(w, "token: "+err.Error(), http.StatusUnauthorized)
			return
		}
		doc, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		name := fmt.Sprintf("floor-%d-%d", time.Now().UnixNano(), n.Add(1))
		now := time.Now().UTC().Format(time.RFC3339Nano)
		if _, err := db.ExecContext(r.Context(), insert, f.tenant.ID, name, now, now, string(doc), name, name, true); err != nil {
			http.Error(w, "insert: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/scim+json; charset=utf-8")
		w.WriteHeader(http.StatusCreated)
		w.Write(doc)
	}))
}

// BenchmarkListPage: a page of 100 users (GET /Users?startIndex=…&count=100)
// at the start of a tenant of benchUsers users and at its end, reached
// the way a client pages (each page after the one before it), and by a
// jump to near the last page where no page ended (an OFFSET that steps
// over every user before it).
func BenchmarkListPage(b *testing.B) {
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		f := benchFixture(b, kind)
		page := func(b *testing.B, start int) {
			f.do(b, "GET", fmt.Sprintf("/Users?startIndex=%d&count=100", start), "", http.StatusOK)
		}
		last := benchUsers + len(f.spare) - 99
		b.Run("page=first", func(b *testing.B) {
			for range b.N {
				page(b, 1)
			}
		})
		b.Run("page=last/paged", func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				page(b, last-100) // the page before it
				b.StartTimer()
				page(b, last)
			}
		})
		b.Run("page=last/jump", func(b *testing.B) {
			for i := range b.N {
				page(b, last-1-i%50) // where no page ended: an OFFSET
			}
		})
	})
}

// BenchmarkLargeTenant: creates (16 clients) and lookups (32 clients) on
// a tenant of benchUsers users beside the same on a tenant of 10,000 in
// the same store, in alternating rounds so that both see the same
// machine: the large tenant's rates and their ratio to the small one's
// (the issue asks at least 80 % at 1,000,000 users).
func BenchmarkLargeTenant(b *testing.B) {
	const smallUsers, rounds = 10_000, 4
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		f := benchFixture(b, kind)
		small := f.smallTenant(b, smallUsers)
		client := clientPool(32)
		defer client.CloseIdleConnections()
		type tenant struct {
			token string
			users int
		}
		tenants := []tenant{{small, smallUsers}, {f.token, benchUsers}}
		run := nextBenchRun()
		var creates, lookups [2]float64
		b.ResetTimer()
		for round := range rounds {
			for i, tn := range tenants {
				n := b.N / rounds
				creates[i] += concurrently(b, 16, n, func(j int) error {
					_, err := send(client, "POST", f.srv.URL+"/scim/v2/Users", tn.token, entraCreateBody(fmt.Sprintf("l%s-%d-%d", run, round, i), j), http.StatusCreated)
					return err
				}) / rounds
				lookups[i] += concurrently(b, 32, n, func(j int) error {
					name := fmt.Sprintf("user%06d@contoso.com", (j*7919)%tn.users)
					_, err := send(client, "GET", f.srv.URL+"/scim/v2/Users?filter=userName+eq+%22"+name+"%22", tn.token, "", http.StatusOK)
					return err
				}) / rounds
			}
		}
		b.StopTimer()
		b.ReportMetric(creates[1], "creates/s")
		b.ReportMetric(100*creates[1]/creates[0], "%creates-of-10k")
		b.ReportMetric(lookups[1], "lookups/s")
		b.ReportMetric(100*lookups[1]/lookups[0], "%lookups-of-10k")
	})
}

// smallTenant returns the token of a second tenant of n users in f's
// store, made on first use.
func (f *fixture) smallTenant(b *testing.B, n int) string {
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	if f.smallToken != "" {
		return f.smallToken
	}
	ctx := context.Background()
	tn, token, err := benchTenant(ctx, f.db, "small")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := seedUsers(ctx, f.db, tn.ID, 0, n); err != nil {
		b.Fatal(err)
	}
	f.smallToken = token
	return token
}

// BenchmarkLookupSteps: what one lookup costs, step by step, on one
// goroutine and without the network: the token check, the filter's query
// (users and their groups), and the whole handler (those two, parsing,
// rendering and encoding the answer).
func BenchmarkLookupSteps(b *testing.B) {
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		f := benchFixture(b, kind)
		ctx := context.Background()
		name := func(i int) string { return fmt.Sprintf("USER%06d@contoso.com", (i*7919)%benchUsers) }
		b.Run("step=authenticate", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, _, err := f.db.Authenticate(ctx, f.token); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("step=query", func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				expr, err := filter.Parse(`userName eq "` + name(i) + `"`)
				if err != nil {
					b.Fatal(err)
				}
				page, err := f.db.List(ctx, f.tenant.ID, store.UserKind, store.Query{Filter: expr, Count: 100, Groups: true})
				if err != nil || len(page.Resources) != 1 {
					b.Fatalf("%d users: %v", len(page.Resources), err)
				}
			}
		})
		handler := startSCIMHandler(f.db)
		b.Run("step=handler", func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				req := httptest.NewRequest("GET", "/scim/v2/Users?filter=userName+eq+%22"+name(i)+"%22", nil)
				req.Header.Set("Authorization", "Bearer "+f.token)
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	})
}
