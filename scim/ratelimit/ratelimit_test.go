package ratelimit

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New[string](2, 3)
	l.SetClock(func() time.Time { return now })
	for i := range 3 {
		if !l.Allow("a") {
			t.Fatalf("token %d of the burst refused", i+1)
		}
	}
	if l.Allowed("a") || l.Allow("a") {
		t.Fatal("a token past the burst")
	}
	if !l.Allowed("b") || !l.Allowed("b") {
		t.Fatal("one key's use limited another, or Allowed took a token")
	}
	now = now.Add(500 * time.Millisecond) // one token back at 2 a second
	if !l.Allow("a") || l.Allow("a") {
		t.Fatal("refill: want exactly one token after half a second")
	}
	now = now.Add(time.Hour)
	for i := range 3 {
		if !l.Allow("a") {
			t.Fatalf("after a long wait, token %d refused", i+1)
		}
	}
	if l.Allow("a") {
		t.Fatal("a long wait filled the bucket past its burst")
	}
	if got := l.RetryAfter(); got != "1" {
		t.Fatalf("RetryAfter = %q", got)
	}
	if got := New[int](0.1, 1).RetryAfter(); got != "10" {
		t.Fatalf("RetryAfter at 0.1/s = %q", got)
	}
}

// TestPrune: the map stays bounded; keys still limited are kept.
func TestPrune(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New[int](1, 1)
	l.SetClock(func() time.Time { return now })
	l.Allow(-1) // empty, and stays so: the clock does not move
	for i := range maxBuckets {
		l.Allowed(i) // full buckets; the last one finds the map at its bound
	}
	if len(l.buckets) > 2 {
		t.Fatalf("%d buckets after pruning", len(l.buckets))
	}
	if l.Allowed(-1) {
		t.Fatal("pruning forgot a key that is still limited")
	}
}
