package scim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// patchAdding is a PATCH adding n short distinct emails.
func patchAdding(n, round int) string {
	var sb strings.Builder
	sb.WriteString(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"emails","value":[`)
	for i := range n {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"value":"r%di%d@x.io"}`, round, i)
	}
	sb.WriteString(`]}]}`)
	return sb.String()
}

// BenchmarkWorstPatch: one PATCH adding many emails to a fresh user, up to
// the body limit (issue 7's worst case): its time (ns/op) and how long its
// write transaction held the writer (hold-ms/op; hold-max-ms is the
// longest single hold). values=100 is the most max_values lets through; the
// body-limit case is refused (400) before any transaction.
func BenchmarkWorstPatch(b *testing.B) {
	cases := []struct {
		name string
		body func(round int) string
	}{
		{"values=100", func(r int) string { return patchAdding(100, r) }},
		{"body=1MiB", func(r int) string { return worstPatch(1<<20, r) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ls := newLatencySetup(b)
			ctx := context.Background()
			statuses := map[int]int{}
			var hold time.Duration
			for i := range b.N {
				b.StopTimer()
				body := c.body(i)
				status, _, raw, err := ls.attacker.sendRead(ctx, "POST", "/Users", fmt.Sprintf(`{"userName":"fresh%d@attacker.example"}`, i))
				var created struct{ ID string }
				if err != nil || status != http.StatusCreated || json.Unmarshal(raw, &created) != nil {
					b.Fatalf("create: %d %v %s", status, err, raw)
				}
				id := created.ID
				before := ls.db.WriteStats().Hold.Sum
				b.StartTimer()
				status, _, err = ls.attacker.send(ctx, "PATCH", "/Users/"+id, body)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				statuses[status]++
				hold += ls.db.WriteStats().Hold.Sum - before
				b.StartTimer()
			}
			b.ReportMetric(float64(hold.Microseconds())/1000/float64(b.N), "hold-ms/op")
			b.ReportMetric(float64(ls.db.WriteStats().Hold.Max.Microseconds())/1000, "hold-max-ms")
			b.ReportMetric(float64(len(c.body(0)))/1024, "body-KiB")
			b.Logf("answers: %v", statuses)
		})
	}
}

// BenchmarkCreateBesideWorstPatch: another tenant's POST /Users latency,
// alone and while one tenant sends the worst PATCH (body limit, many
// emails) in a loop; p50-ms and p99-ms over the b.N creates.
func BenchmarkCreateBesideWorstPatch(b *testing.B) {
	for _, attacked := range []bool{false, true} {
		name := "alone"
		if attacked {
			name = "beside-worst-patch"
		}
		b.Run(name, func(b *testing.B) {
			ls := newLatencySetup(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if attacked {
				ls.attack(ctx)
				time.Sleep(50 * time.Millisecond)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				status, d, err := ls.bystander.send(context.Background(), "POST", "/Users", fmt.Sprintf(`{"userName":"u%d.%d@bystander.example"}`, b.N, i))
				if err != nil || status != http.StatusCreated {
					b.Fatalf("create: %d %v", status, err)
				}
				lat = append(lat, d)
			}
			b.StopTimer()
			cancel()
			slices.Sort(lat)
			b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
			hold := ls.db.WriteStats().Hold
			b.ReportMetric(float64(hold.Max.Microseconds())/1000, "hold-max-ms")
			if attacked {
				b.Logf("attacker PATCHes sent %d, answered %d (%s)", ls.patchesSent.Load(), ls.answers.Load(), ls.statusText())
			}
		})
	}
}
