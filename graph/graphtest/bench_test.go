package graphtest

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

const (
	benchUsers  = 100000
	benchGroups = 200
)

var benchSelect = q("$select", "displayName,userPrincipalName,mail,accountEnabled,jobTitle,department,givenName,surname")

// benchSetup populates 100,000 users in 200 groups and returns a func that
// reports the heap the directory takes (call it after the loop: ResetTimer
// drops metrics reported before it).
func benchSetup(b *testing.B) (*Server, *Directory, string, func()) {
	b.Helper()
	s, d, tok := setup(b, Options{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	d.Populate(rand.New(rand.NewSource(1)), benchUsers, benchGroups)
	took := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	report := func() {
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heapMB")
		b.ReportMetric(took.Seconds(), "populate-s")
	}
	return s, d, tok, report
}

// BenchmarkInitialUsersDelta walks the whole initial users delta over
// HTTPS through Client(), as a sync client would (client decoding included).
func BenchmarkInitialUsersDelta(b *testing.B) {
	s, _, tok, report := benchSetup(b)
	client := s.Client()
	var pages int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		pages = 0
		u := usersURL(s, benchSelect)
		for u != "" {
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			var p struct {
				Value []struct {
					ID string `json:"id"`
				} `json:"value"`
				Next string `json:"@odata.nextLink"`
			}
			err = json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("page: %d %v", resp.StatusCode, err)
			}
			n += len(p.Value)
			pages++
			u = p.Next
		}
		if n != benchUsers {
			b.Fatalf("%d users, want %d", n, benchUsers)
		}
	}
	b.ReportMetric(float64(pages), "pages/op")
	report()
}

// discard is a reusable ResponseWriter that keeps the last body.
type discard struct {
	h    http.Header
	body []byte
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(code int)        { d.code = code }
func (d *discard) Write(b []byte) (int, error) { d.body = append(d.body, b...); return len(b), nil }

func (d *discard) reset() {
	clear(d.h)
	d.body, d.code = d.body[:0], 0
}

var nextKey = []byte(`"@odata.nextLink":"`)

// walkInProcess drives the handler directly, so only the server's own work
// (and a small request value per page) is measured.
func walkInProcess(b *testing.B, s *Server, tok, u string) (objects, pages int) {
	w := &discard{h: http.Header{}}
	for u != "" {
		req := httptest.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w.reset()
		s.serveHTTP(w, req)
		if w.code != 200 {
			b.Fatalf("%d %s", w.code, w.body)
		}
		objects += bytes.Count(w.body, []byte(`,"id":`)) + bytes.Count(w.body, []byte(`{"id":`))
		pages++
		u = ""
		if i := bytes.LastIndex(w.body, nextKey); i >= 0 {
			rest := w.body[i+len(nextKey):]
			u = string(rest[:bytes.IndexByte(rest, '"')])
		}
	}
	return objects, pages
}

// BenchmarkInitialUsersDeltaServer is the server side alone.
func BenchmarkInitialUsersDeltaServer(b *testing.B) {
	s, _, tok, report := benchSetup(b)
	var pages int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var n int
		n, pages = walkInProcess(b, s, tok, usersURL(s, benchSelect))
		if n != benchUsers {
			b.Fatalf("%d users", n)
		}
	}
	b.ReportMetric(float64(pages), "pages/op")
	report()
}

// BenchmarkInitialGroupsDeltaServer walks 200 groups with ~200,000
// memberships, split into pages of 100 members.
func BenchmarkInitialGroupsDeltaServer(b *testing.B) {
	s, _, tok, report := benchSetup(b)
	var pages int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, pages = walkInProcess(b, s, tok, groupsURL(s, q("$select", "displayName,members")))
	}
	b.ReportMetric(float64(pages), "pages/op")
	report()
}
