// Package ratelimit is a token bucket per key (golang.org/x/time/rate):
// the SCIM endpoint's limit per tenant, and the limit on failed
// authentication per client address that the SCIM endpoint and the ops API
// share. It also tells the client address behind trusted proxies.
package ratelimit

import (
	"math"
	"strconv"
	gosync "sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter gives each key rate tokens a second, up to burst. Keys are
// forgotten once their bucket is full again (a forgotten key starts full,
// so forgetting changes nothing), and the map never holds more than
// maxKeys of them.
type Limiter[K comparable] struct {
	mu        gosync.Mutex
	limit     rate.Limit
	burst     int
	keys      map[K]*entry
	now       func() time.Time
	lastSweep time.Time
}

type entry struct {
	lim  *rate.Limiter
	seen time.Time
}

const (
	// maxKeys bounds the map: one entry per tenant or client address.
	maxKeys = 10000
	// sweepEvery is how often idle keys are looked for.
	sweepEvery = time.Minute
)

// New returns a Limiter of rate tokens a second per key, up to burst
// (at least 1).
func New[K comparable](perSecond float64, burst int) *Limiter[K] {
	return &Limiter[K]{limit: rate.Limit(perSecond), burst: max(burst, 1), keys: map[K]*entry{}, now: time.Now}
}

// SetClock replaces the clock (tests).
func (l *Limiter[K]) SetClock(now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now = now
}

// get returns key's limiter, made full when new. l.mu is held.
func (l *Limiter[K]) get(key K, now time.Time) *rate.Limiter {
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.sweep(now)
	}
	e := l.keys[key]
	if e == nil {
		if len(l.keys) >= maxKeys {
			l.sweep(now)
		}
		if len(l.keys) >= maxKeys {
			l.evictOldest()
		}
		e = &entry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.keys[key] = e
	}
	e.seen = now
	return e.lim
}

// sweep forgets the keys whose bucket is full again.
func (l *Limiter[K]) sweep(now time.Time) {
	l.lastSweep = now
	for k, e := range l.keys {
		if e.lim.TokensAt(now) >= float64(l.burst) {
			delete(l.keys, k)
		}
	}
}

// evictOldest forgets the key seen longest ago, when every key is still
// limited and the map is full: the bound on memory wins over one key's
// limit.
func (l *Limiter[K]) evictOldest() {
	var oldest K
	var at time.Time
	first := true
	for k, e := range l.keys {
		if first || e.seen.Before(at) {
			oldest, at, first = k, e.seen, false
		}
	}
	delete(l.keys, oldest)
}

// Allow takes a token for key, reporting whether there was one.
func (l *Limiter[K]) Allow(key K) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	return l.get(key, now).AllowN(now, 1)
}

// Allowed reports whether key has a token, without taking it.
func (l *Limiter[K]) Allowed(key K) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.keys[key]; e != nil {
		return e.lim.TokensAt(l.now()) >= 1
	}
	return true
}

// RetryAfter is a Retry-After value (RFC 9110 §10.2.3, delay-seconds) for
// key: the whole seconds until it has a token again, at least 1.
func (l *Limiter[K]) RetryAfter(key K) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	tokens := float64(l.burst)
	if e := l.keys[key]; e != nil {
		tokens = e.lim.TokensAt(l.now())
	}
	wait := 1.0
	if tokens < 1 && l.limit > 0 {
		wait = (1 - tokens) / float64(l.limit)
	}
	return strconv.Itoa(max(1, int(math.Ceil(wait-1e-9))))
}

// Len is how many keys are remembered (tests).
func (l *Limiter[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}
