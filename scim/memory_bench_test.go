package scim_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
)

// BenchmarkGroupListMemory: six parallel GET /Groups?count=1000 over 20
// groups of 2,000 members each (issue 7's measurement). It reports the
// peak heap sampled during the requests, above the heap before them, and
// the process's peak RSS (VmHWM, reset before the requests where Linux
// allows it).
func BenchmarkGroupListMemory(b *testing.B) {
	pgtest.EachStore(b, benchGroupListMemory)
}

func benchGroupListMemory(b *testing.B, kind string) {
	const groups, members, parallel = 20, 2000, 6
	ctx := context.Background()
	db, err := store.Open(ctx, pgtest.DSN(b, kind))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tn, token, err := benchTenant(ctx, db, "mem")
	if err != nil {
		b.Fatal(err)
	}
	users, err := seedUsers(ctx, db, tn.ID, 0, members)
	if err != nil {
		b.Fatal(err)
	}
	err = db.Write(ctx, func(tx *store.Tx) error {
		for i := range groups {
			g := &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": fmt.Sprintf("Group %02d", i)}}
			if err := tx.Insert(tn.ID, g); err != nil {
				return err
			}
			if _, err := tx.AddMembers(tn.ID, g.ID, users); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := startSCIM(db)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: parallel}}

	get := func() int64 {
		req, _ := http.NewRequest("GET", srv.URL+"/scim/v2/Groups?count=1000", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return 0
		}
		defer res.Body.Close()
		n, _ := io.Copy(io.Discard, res.Body)
		if res.StatusCode != 200 {
			b.Errorf("status %d", res.StatusCode)
		}
		return n
	}
	bodyBytes := get() // warm: connections, statements, page cache

	var peakHeap, baseHeap uint64
	var peakRSS int64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		runtime.GC()
		debug.FreeOSMemory()
		base := heapObjects()
		resetHWM()
		stop := make(chan struct{})
		var peak atomic.Uint64
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			t := time.NewTicker(500 * time.Microsecond)
			defer t.Stop()
			for {
				if h := heapObjects(); h > peak.Load() {
					peak.Store(h)
				}
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
		b.StartTimer()
		var wg gosync.WaitGroup
		for range parallel {
			wg.Add(1)
			go func() { defer wg.Done(); get() }()
		}
		wg.Wait()
		b.StopTimer()
		close(stop)
		<-sampled
		if p := peak.Load(); p > peakHeap {
			peakHeap, baseHeap = p, base
		}
		peakRSS = max(peakRSS, vmHWM())
		b.StartTimer()
	}
	b.ReportMetric(float64(peakHeap-min(baseHeap, peakHeap))/(1<<20), "peak-heap-growth-MB")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-RSS-MB")
	b.ReportMetric(float64(bodyBytes)/(1<<20), "body-MB")
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// resetHWM resets the process's peak RSS (Linux: 5 to clear_refs); where
// that is refused, VmHWM is the peak since the process started.
func resetHWM() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// vmHWM is the process's peak resident set in bytes, or 0 where unknown.
func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
