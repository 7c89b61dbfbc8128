package metrics_test

import (
	"testing"
	"time"

	"github.com/entrasync/entrasync/sync/metrics"
)

// BenchmarkSCIMRequest is the cost a SCIM request pays for its metrics.
func BenchmarkSCIMRequest(b *testing.B) {
	m := metrics.New(metrics.Config{NoProcess: true})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.SCIMRequest("PATCH", "users", 200+i%2*204, "entra", 3*time.Millisecond)
	}
}
