package store

import (
	"sync/atomic"
	"time"
)

// WriteStats tells how write transactions fared since the store opened:
// how long each waited for the writer and how long it held it. It is cheap
// to keep (a few atomic adds a write) and cheap to read, for benchmarks
// and for metrics.
type WriteStats struct {
	Busy    uint64    // writes refused with Busy after the write wait
	Waiting int64     // writes waiting for the writer now
	Wait    Histogram // from Write being called to its transaction begun
	Hold    Histogram // from begin to commit or rollback: the writer held
}

// Histogram counts durations into buckets with fixed upper bounds.
type Histogram struct {
	Count  uint64
	Sum    time.Duration
	Max    time.Duration
	Bounds []time.Duration // upper bounds, rising; a last bucket above them all is implied
	Counts []uint64        // len(Bounds)+1 counts; Counts[i] counts durations in (Bounds[i-1], Bounds[i]]
}

// Quantile estimates the q-th quantile (0 < q <= 1) as the upper bound of
// the bucket it falls in (Max for the last bucket): an upper estimate.
func (h Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(q*float64(h.Count) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, n := range h.Counts {
		seen += n
		if seen >= rank {
			if i < len(h.Bounds) {
				return min(h.Bounds[i], h.Max)
			}
			break
		}
	}
	return h.Max
}

// Mean is the mean duration, or 0 when nothing was counted.
func (h Histogram) Mean() time.Duration {
	if h.Count == 0 {
		return 0
	}
	return h.Sum / time.Duration(h.Count)
}

// histogramBounds are Prometheus-style bounds from 100µs to 10s.
var histogramBounds = []time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

type writeStats struct {
	busy    atomic.Uint64
	waiting atomic.Int64
	wait    histogram
	hold    histogram
}

type histogram struct {
	count  atomic.Uint64
	sum    atomic.Int64
	max    atomic.Int64
	counts [17]atomic.Uint64 // len(histogramBounds)+1
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(histogramBounds) && d > histogramBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.count.Add(1)
	h.sum.Add(int64(d))
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Count: h.count.Load(), Sum: time.Duration(h.sum.Load()), Max: time.Duration(h.max.Load()),
		Bounds: histogramBounds, Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	return out
}

// WriteStats returns the write statistics so far.
func (db *DB) WriteStats() WriteStats {
	return WriteStats{Busy: db.stats.busy.Load(), Waiting: db.stats.waiting.Load(), Wait: db.stats.wait.snapshot(), Hold: db.stats.hold.snapshot()}
}
