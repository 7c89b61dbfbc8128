package ratelimit

import (
	"net/http/httptest"
	"net/netip"
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
	if got := l.RetryAfter("a"); got != "1" {
		t.Fatalf("RetryAfter of an empty bucket at 2/s = %q", got)
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
}

// TestRetryAfter: the delay is the key's own, until one token is back.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New[int](0.1, 2) // a token every 10 s
	l.SetClock(func() time.Time { return now })
	if got := l.RetryAfter(1); got != "1" {
		t.Fatalf("RetryAfter of an unknown key = %q", got)
	}
	l.Allow(1)
	l.Allow(1)
	if got := l.RetryAfter(1); got != "10" {
		t.Fatalf("RetryAfter of an empty bucket at 0.1/s = %q", got)
	}
	now = now.Add(4 * time.Second)
	if got := l.RetryAfter(1); got != "6" {
		t.Fatalf("RetryAfter 4 s later = %q", got)
	}
	now = now.Add(6 * time.Second)
	if !l.Allow(1) {
		t.Fatal("no token once Retry-After passed")
	}
}

// TestForgetting: the map stays bounded; keys still limited are kept
// while there is room, and idle keys are forgotten.
func TestForgetting(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New[int](1, 1)
	l.SetClock(func() time.Time { return now })
	l.Allow(-1) // empty, and stays so: the clock does not move
	for i := range maxKeys {
		l.Allow(i) // each emptied: nothing can be swept
	}
	if n := l.Len(); n > maxKeys {
		t.Fatalf("%d keys remembered; the bound is %d", n, maxKeys)
	}
	// Time passes: every bucket is full again, and the next use sweeps.
	now = now.Add(2 * sweepEvery)
	l.Allow(-2)
	if n := l.Len(); n != 1 {
		t.Fatalf("%d keys remembered after all went idle; want 1", n)
	}
	// A key still limited survives a sweep.
	l.Allow(-3)
	now = now.Add(sweepEvery)
	l.Allow(-3)
	now = now.Add(time.Second / 2)
	l.sweep(now)
	if l.Allowed(-3) {
		t.Fatal("a sweep forgot a key that is still limited")
	}
}

func TestClientAddr(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("2001:db8::/48")}
	tests := []struct {
		name, peer string
		hdr        map[string]string
		want       string
	}{
		{"direct", "198.51.100.7:4000", nil, "198.51.100.7"},
		{"spoofed XFF from an untrusted peer", "198.51.100.7:4000", map[string]string{"X-Forwarded-For": "203.0.113.1"}, "198.51.100.7"},
		{"spoofed Forwarded from an untrusted peer", "198.51.100.7:4000", map[string]string{"Forwarded": "for=203.0.113.1"}, "198.51.100.7"},
		{"proxy, XFF", "10.1.2.3:4000", map[string]string{"X-Forwarded-For": "203.0.113.1"}, "203.0.113.1"},
		{"proxy passes a spoofed left part", "10.1.2.3:4000", map[string]string{"X-Forwarded-For": "1.1.1.1, 203.0.113.1"}, "203.0.113.1"},
		{"two trusted proxies", "10.1.2.3:4000", map[string]string{"X-Forwarded-For": "1.1.1.1, 203.0.113.1, 192.0.2.10"}, "203.0.113.1"},
		{"all trusted: the left-most", "10.1.2.3:4000", map[string]string{"X-Forwarded-For": "10.9.9.9, 192.0.2.10"}, "10.9.9.9"},
		{"proxy without a header", "10.1.2.3:4000", nil, "10.1.2.3"},
		{"Forwarded", "10.1.2.3:4000", map[string]string{"Forwarded": `for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https, for=192.0.2.10;by=10.0.0.1`}, "2001:db8:cafe::17"},
		{"Forwarded, quoted v4 with port", "10.1.2.3:4000", map[string]string{"Forwarded": `for="203.0.113.9:555"`}, "203.0.113.9"},
		{"Forwarded unknown", "10.1.2.3:4000", map[string]string{"Forwarded": `for=unknown`}, "10.1.2.3"},
		{"Forwarded obfuscated behind a second proxy", "10.1.2.3:4000", map[string]string{"Forwarded": `for=_hidden, for=10.5.5.5`}, "10.5.5.5"},
		{"Forwarded element without for", "10.1.2.3:4000", map[string]string{"Forwarded": `for=1.1.1.1, proto=https`}, "10.1.2.3"},
		{"XFF wins over Forwarded", "10.1.2.3:4000", map[string]string{"X-Forwarded-For": "203.0.113.1", "Forwarded": "for=1.1.1.1"}, "203.0.113.1"},
		{"v6 proxy", "[2001:db8::1]:4000", map[string]string{"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"},
		{"v4-mapped peer", "[::ffff:10.1.2.3]:4000", map[string]string{"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.peer
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		if got := ClientAddr(r, proxies); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		// With no trusted proxies, no header is believed.
		if got := ClientAddr(r, nil); got != mustNode(t, tc.peer) {
			t.Errorf("%s without trusted proxies: %q", tc.name, got)
		}
	}
	// Several header lines make one chain.
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.1.2.3:1"
	r.Header.Add("X-Forwarded-For", "1.1.1.1")
	r.Header.Add("X-Forwarded-For", "203.0.113.5, 10.0.0.9")
	if got := ClientAddr(r, proxies); got != "203.0.113.5" {
		t.Errorf("two X-Forwarded-For lines: %q", got)
	}
}

func mustNode(t *testing.T, s string) string {
	a, ok := parseNode(s)
	if !ok {
		t.Fatalf("parseNode(%q)", s)
	}
	return a.String()
}
