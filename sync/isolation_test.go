package sync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
	"github.com/entrasync/entrasync/sync"
)

// The pull and the push share the store: these tests and the benchmark
// show that a pull of one tenant does not hold up SCIM writes of another
// for longer than one slice of its changes (SQLite), or at all
// (PostgreSQL).

// pushTenant is SCIM served on a harness's store, with another tenant
// ("fabrikam") and its token: the push beside the harness's pull.
type pushTenant struct {
	url, token string
	id         int64
}

func servePush(t testing.TB, h *sync.Harness) pushTenant {
	t.Helper()
	srv := httptest.NewServer(scim.New(scim.Config{DB: h.DB()}).Handler())
	t.Cleanup(srv.Close)
	p := pushTenant{url: srv.URL + "/scim/v2"}
	err := h.DB().Write(context.Background(), func(tx *store.Tx) error {
		tn, err := tx.CreateTenant("fabrikam")
		if err != nil {
			return err
		}
		p.id = tn.ID
		_, p.token, err = tx.CreateToken(tn)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// do sends one SCIM request and returns its status and body.
func (p pushTenant) do(ctx context.Context, method, path, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.url+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// want sends a request and fails the test unless it answers status.
func (p pushTenant) want(t testing.TB, ctx context.Context, status int, method, path, body string) []byte {
	t.Helper()
	got, b, err := p.do(ctx, method, path, body)
	if err != nil || got != status {
		t.Fatalf("%s %s: %d %s (%v), want %d", method, path, got, b, err, status)
	}
	return b
}

// TestSCIMWriteBesidePull: while a pull of one tenant holds a slice's
// transaction open, SCIM writes of another tenant go on. On PostgreSQL
// they complete while it is open; on SQLite, which has one writer, a POST
// waits for that slice and commits before the pull's next slice begins,
// not behind the rest of the page or the run.
func TestSCIMWriteBesidePull(t *testing.T) {
	h := sync.NewHarness(t, graphtest.Options{})
	h.Populate(300, 3, 3, 1)
	push := servePush(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ada := push.want(t, ctx, 201, "POST", "/Users", `{"userName":"ada@fabrikam.com"}`)
	var created struct{ ID string }
	if err := json.Unmarshal(ada, &created); err != nil || created.ID == "" {
		t.Fatalf("POST /Users answered %s (%v)", ada, err)
	}

	const heldSlice = 3
	held, release := make(chan struct{}), make(chan struct{})
	slice := 0
	var nextSliceSaw map[string]store.Resource // what the slice after the held one found committed
	var nextSliceErr error
	h.Worker().SetSlicing(50, func(tenant int64, _ sync.ChangeSet) error {
		slice++ // slices run one after another, in the pull's goroutine
		switch slice {
		case heldSlice:
			close(held)
			<-release
		case heldSlice + 1:
			nextSliceSaw, nextSliceErr = h.DB().UsersByUserName(ctx, push.id, []string{"bob@fabrikam.com"})
		}
		return nil
	})
	type result struct {
		run store.Run
		err error
	}
	pulled := make(chan result, 1)
	go func() {
		run, err := h.Worker().RunOnce(ctx, "contoso", sync.Options{Trigger: "test"})
		pulled <- result{run, err}
	}()
	select {
	case <-held:
	case r := <-pulled:
		t.Fatalf("the pull ended (%s: %v) before its slice %d", r.run.Status, r.err, heldSlice)
	}

	if pgtest.Selected() {
		// Row locks and a writer connection of its own: nothing to wait for.
		push.want(t, ctx, 201, "POST", "/Users", `{"userName":"bob@fabrikam.com"}`)
		push.want(t, ctx, 200, "PATCH", "/Users/"+created.ID,
			`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"title","value":"CTO"}]}`)
		close(release)
	} else {
		var posted gosync.WaitGroup
		var status int
		var body []byte
		var err error
		posted.Go(func() { status, body, err = push.do(ctx, "POST", "/Users", `{"userName":"bob@fabrikam.com"}`) })
		// The POST queues for the one writer the held slice has.
		for h.DB().WriteStats().Waiting == 0 {
			select {
			case <-ctx.Done():
				t.Fatal("the SCIM POST never waited for the writer")
			case <-time.After(time.Millisecond):
			}
		}
		close(release)
		posted.Wait()
		if err != nil || status != 201 {
			t.Fatalf("POST /Users beside the pull: %d %s (%v)", status, body, err)
		}
	}
	r := <-pulled
	if r.err != nil || r.run.Status != store.RunSucceeded {
		t.Fatalf("the pull ended %s: %v", r.run.Status, r.err)
	}
	if slice <= heldSlice+1 {
		t.Fatalf("the pull made %d transactions: too few to show anything", slice)
	}
	if nextSliceErr != nil {
		t.Fatal(nextSliceErr)
	}
	if len(nextSliceSaw) != 1 {
		t.Fatalf("the SCIM POST was not committed when the pull's next slice began: it waited for more than one slice")
	}
	h.CheckMirror()
}

// BenchmarkPullBesideSCIM: a first pull of 20,000 users in 800 groups
// (~50 members each, so that the fake Graph's default pages, 100 items,
// carry a whole query's 50 groups: ~2,500 memberships and the ~2,000
// users they bring, ~40,000 rows) while another tenant's SCIM client
// POSTs a user every 10 ms.
// It reports how long the SCIM writes took (end to end, in process: the
// wait for the writer is most of it), the writes' wait for the writer and
// the longest transaction (the pull's: a SCIM write holds it ~1 ms), and
// how many transactions the pull made and the most rows one wrote: in
// slices (the default), and whole, a transaction a page, as before
// slicing. SCIM writes answered 503 (they waited past write_wait) and a
// pull failed (its lock renewal, a write too, did) are counted, not fatal.
func BenchmarkPullBesideSCIM(b *testing.B) {
	b.Run("sliced", func(b *testing.B) { benchPullBesideSCIM(b, 0) })
	b.Run("whole", func(b *testing.B) { benchPullBesideSCIM(b, math.MaxInt) })
}

func benchPullBesideSCIM(b *testing.B, sliceRows int) {
	users, groups := 20_000, 800
	if n, err := strconv.Atoi(os.Getenv("ENTRASYNC_BENCH_USERS")); err == nil && n > 0 {
		users, groups = n, n/25
	}
	var took []time.Duration
	var stats store.WriteStats
	var slicesRun, maxRows, busy, pullsFailed int
	for range b.N {
		b.StopTimer()
		h := sync.NewHarness(b, graphtest.Options{})
		h.Populate(users, groups, groups, 1)
		push := servePush(b, h)
		pullSlices := 0
		h.Worker().SetSlicing(sliceRows, func(_ int64, s sync.ChangeSet) error {
			pullSlices++
			maxRows = max(maxRows, sync.Rows(s))
			return nil
		})
		ctx, stop := context.WithCancel(context.Background())
		var pushing gosync.WaitGroup
		var failed error
		pushing.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				start := time.Now()
				status, body, err := push.do(context.Background(), "POST", "/Users", `{"userName":"u`+strconv.Itoa(i)+`@fabrikam.com"}`)
				took = append(took, time.Since(start))
				switch {
				case status == http.StatusServiceUnavailable:
					busy++ // waited past write_wait
				case err != nil || status != 201:
					failed = fmt.Errorf("SCIM POST beside the pull: %d %s: %v", status, body, err)
					return
				}
			}
		})
		b.StartTimer()
		run, err := h.Worker().RunOnce(context.Background(), "contoso", sync.Options{Trigger: "bench"})
		b.StopTimer()
		stop()
		pushing.Wait()
		if err != nil || run.Status != store.RunSucceeded {
			// A writer held past write_wait fails the lock renewal too.
			b.Logf("the pull failed: %v", err)
			pullsFailed++
		}
		if failed != nil {
			b.Fatal(failed)
		}
		stats = h.DB().WriteStats()
		slicesRun += pullSlices
	}
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	if len(took) > 0 {
		b.ReportMetric(ms(took[len(took)-1]), "scim-max-ms")
		b.ReportMetric(ms(took[len(took)*99/100]), "scim-p99-ms")
	}
	b.ReportMetric(float64(len(took))/float64(b.N), "scim-writes")
	b.ReportMetric(float64(busy)/float64(b.N), "scim-503s")
	b.ReportMetric(float64(pullsFailed)/float64(b.N), "pulls-failed")
	b.ReportMetric(ms(stats.Wait.Max), "wait-max-ms")
	b.ReportMetric(ms(stats.Wait.Quantile(0.99)), "wait-p99-ms")
	b.ReportMetric(ms(stats.Hold.Max), "hold-max-ms")
	b.ReportMetric(ms(stats.Hold.Quantile(0.99)), "hold-p99-ms")
	b.ReportMetric(float64(maxRows), "pull-max-rows")
	b.ReportMetric(float64(slicesRun)/float64(b.N), "pull-slices")
}
