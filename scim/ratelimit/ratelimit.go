// Package ratelimit is a token bucket per key: the SCIM endpoint's limit per
// tenant, and the limit on failed authentication per client address that
// the SCIM endpoint and the ops API share.
package ratelimit

import (
	"math"
	"net"
	"net/http"
	"strconv"
	gosync "sync"
	"time"
)

// Limiter gives each key rate tokens a second, up to burst.
type Limiter[K comparable] struct {
	mu      gosync.Mutex
	rate    float64
	burst   float64
	buckets map[K]*bucket
	now     func() time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the map; full buckets are forgotten first, since a
// forgotten key starts full anyway.
const maxBuckets = 10000

// New returns a Limiter of rate tokens a second per key, up to burst.
func New[K comparable](rate, burst float64) *Limiter[K] {
	return &Limiter[K]{rate: rate, burst: burst, buckets: map[K]*bucket{}, now: time.Now}
}

// SetClock replaces the clock (tests).
func (l *Limiter[K]) SetClock(now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now = now
}

func (l *Limiter[K]) refill(key K) *bucket {
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

func (l *Limiter[K]) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// Allow takes a token for key, reporting whether there was one.
func (l *Limiter[K]) Allow(key K) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(key)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Allowed reports whether key has a token, without taking it.
func (l *Limiter[K]) Allowed(key K) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refill(key).tokens >= 1
}

// RetryAfter is a Retry-After value (RFC 9110 §10.2.3, delay-seconds): the
// whole seconds until a token is back.
func (l *Limiter[K]) RetryAfter() string {
	return strconv.Itoa(int(math.Ceil(1 / l.rate)))
}

// ClientAddr is the key of per-address limits: the client's IP address,
// without the port (one client opens many connections).
func ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
