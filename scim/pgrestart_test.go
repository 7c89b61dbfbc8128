package scim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
)

// userSchema is the core User schema URN (RFC 7643 §4.1).
const userSchema = "urn:ietf:params:scim:schemas:core:2.0:User"

// A PostgreSQL restart under SCIM traffic: every request while it is down
// answers 503 with Retry-After (never a 500, never a 2xx with wrong data),
// the same server answers again once it is back, and every acknowledged
// create is there exactly once.
func TestPostgresRestartSCIMAnswers503ThenRecovers(t *testing.T) {
	pg := pgtest.Start(t)
	db, err := store.Open(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = scim.New(scim.Config{DB: db, PublicURL: "http://" + srv.Listener.Addr().String()}).Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	e := &env{t: t, db: db, srv: srv}
	c := e.tenant("acme")

	// A user every read checks it gets back exactly, or a 503.
	known := c.do("POST", "/Users", map[string]any{"schemas": []string{userSchema}, "userName": "known@example.com"})
	if known.status != http.StatusCreated {
		t.Fatalf("create: %d %s", known.status, known.raw)
	}
	knownID := known.body["id"].(string)

	var (
		mu        gosync.Mutex
		acked     = map[string]int{} // userName → 201s
		statuses  = map[string]int{} // "phase status" → count
		down      atomic.Bool
		seq       atomic.Int64
		wrong     []string
		stop      = make(chan struct{})
		workers   gosync.WaitGroup
		sawOutage atomic.Int64
	)
	send := func(method, path string, body any) (int, http.Header, map[string]any) {
		var rd io.Reader
		if body != nil {
			j, _ := json.Marshal(body)
			rd = bytes.NewReader(j)
		}
		req, _ := http.NewRequest(method, c.base+path, rd)
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("Content-Type", "application/scim+json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, nil
		}
		defer res.Body.Close()
		var m map[string]any
		json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, res.Header, m
	}
	record := func(what string, status int, hdr http.Header, isDown bool) {
		mu.Lock()
		defer mu.Unlock()
		phase := "up"
		if isDown {
			phase = "down"
		}
		statuses[fmt.Sprintf("%s %s %d", phase, what, status)]++
		switch {
		case status == http.StatusServiceUnavailable:
			if hdr.Get("Retry-After") == "" {
				wrong = append(wrong, what+": 503 without Retry-After")
			}
		case status >= 500 || status == 0:
			wrong = append(wrong, fmt.Sprintf("%s: %d", what, status))
		case isDown && status < 300:
			// Requests are classified "down" only strictly between the
			// stop returning and the start beginning: nothing can succeed.
			wrong = append(wrong, fmt.Sprintf("%s: %d while PostgreSQL is down", what, status))
		}
	}
	for w := range 4 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := seq.Add(1)
				wasDown := down.Load()
				switch n % 3 {
				case 0: // create
					name := fmt.Sprintf("u%d-%d@example.com", w, n)
					status, hdr, _ := send("POST", "/Users", map[string]any{"schemas": []string{userSchema}, "userName": name})
					isDown := wasDown && down.Load()
					record("POST /Users", status, hdr, isDown)
					if status == http.StatusCreated {
						mu.Lock()
						acked[name]++
						mu.Unlock()
					}
				case 1: // read one
					status, hdr, body := send("GET", "/Users/"+knownID, nil)
					isDown := wasDown && down.Load()
					record("GET /Users/{id}", status, hdr, isDown)
					if status == http.StatusOK && (body["id"] != knownID || body["userName"] != "known@example.com") {
						mu.Lock()
						wrong = append(wrong, fmt.Sprintf("GET /Users/{id}: wrong user %v", body))
						mu.Unlock()
					}
				case 2: // filter
					status, hdr, body := send("GET", `/Users?filter=userName%20eq%20%22known@example.com%22`, nil)
					isDown := wasDown && down.Load()
					record("GET /Users?filter", status, hdr, isDown)
					if status == http.StatusOK && fmt.Sprint(body["totalResults"]) != "1" {
						mu.Lock()
						wrong = append(wrong, fmt.Sprintf("filter: totalResults %v, want 1", body["totalResults"]))
						mu.Unlock()
					}
				}
				if wasDown {
					sawOutage.Add(1)
				}
			}
		}()
	}

	time.Sleep(300 * time.Millisecond) // traffic before the stop
	pg.Stop()
	down.Store(true)
	for end := time.Now().Add(30 * time.Second); sawOutage.Load() < 60 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	down.Store(false)
	pg.Start()
	// Recovery by itself: the same server and store answer again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := c.do("GET", "/Users/"+knownID, nil)
		if r.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SCIM still answers %d %s 30s after PostgreSQL is back", r.status, r.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // traffic after the start
	close(stop)
	workers.Wait()

	t.Logf("answers: %v", statuses)
	for _, w := range wrong {
		t.Error(w)
	}
	for _, what := range []string{"POST /Users", "GET /Users/{id}", "GET /Users?filter"} {
		if statuses["down "+what+" 503"] == 0 {
			t.Errorf("no %s was answered 503 while PostgreSQL was down: %v", what, statuses)
		}
	}

	// Every acknowledged create is there exactly once.
	users := map[string]int{}
	for start := 1; ; start += 100 {
		r := c.do("GET", fmt.Sprintf("/Users?startIndex=%d&count=100", start), nil)
		if r.status != http.StatusOK {
			t.Fatalf("list after the restart: %d %s", r.status, r.raw)
		}
		res, _ := r.body["Resources"].([]any)
		for _, u := range res {
			users[u.(map[string]any)["userName"].(string)]++
		}
		if len(res) < 100 {
			break
		}
	}
	if len(acked) == 0 {
		t.Fatal("no create was acknowledged")
	}
	for name, n := range acked {
		if n != 1 || users[name] != 1 {
			t.Errorf("%s: acknowledged %d times, present %d times", name, n, users[name])
		}
	}
	for name, n := range users {
		if n != 1 {
			t.Errorf("%s present %d times", name, n)
		}
	}
}
