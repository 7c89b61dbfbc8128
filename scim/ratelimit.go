package scim

import (
	"math"
	"strconv"
	gosync "sync"
	"time"
)

// limiter is a token bucket per key: rate tokens a second, up to burst.
type limiter struct {
	mu      gosync.Mutex
	rate    float64
	burst   float64
	buckets map[any]*bucket
	now     func() time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the map; full buckets are forgotten first, since a
// forgotten key starts full anyway.
const maxBuckets = 10000

func newLimiter(rate, burst float64) *limiter {
	return &limiter{rate: rate, burst: burst, buckets: map[any]*bucket{}, now: time.Now}
}

func (l *limiter) refill(key any) *bucket {
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	return b
}

func (l *limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// allow takes a token for key, reporting whether there was one.
func (l *limiter) allow(key any) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(key)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// allowed reports whether key has a token, without taking it.
func (l *limiter) allowed(key any) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refill(key).tokens >= 1
}

// retryAfter is the Retry-After value: the seconds until a token is back.
func (l *limiter) retryAfter() string {
	return strconv.Itoa(int(math.Ceil(1 / l.rate)))
}
