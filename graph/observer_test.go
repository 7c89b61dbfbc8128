package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	gosync "sync"
	"testing"
	"time"
)

// recordingObserver keeps what an Observer hears.
type recordingObserver struct {
	mu       gosync.Mutex
	statuses []int
	waits    []time.Duration
	kinds    []Kind
}

func (o *recordingObserver) GraphAttempt(status int, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.statuses = append(o.statuses, status)
}

func (o *recordingObserver) GraphWait(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.waits = append(o.waits, d)
}

func (o *recordingObserver) GraphError(k Kind) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.kinds = append(o.kinds, k)
}

// The Observer hears every attempt with its status, every wait, and an
// attempt that got no answer as status 0; not the caller's own cancellation.
func TestObserverHearsAttempts(t *testing.T) {
	var b bodies
	calls := 0
	sleeper := &noSleep{}
	noAnswer := func(r *http.Request) (*http.Response, error) {
		if calls++; calls == 1 {
			return nil, errors.New("connection reset")
		}
		return script(&b, new(int), status(&b, 200, ""))(r)
	}
	tests := []struct {
		name     string
		next     http.RoundTripper
		statuses string
		waits    string
	}{
		{"throttled, unavailable, answered", script(&b, new(int), status(&b, 429, "3"), status(&b, 503, ""), status(&b, 200, "")),
			"[429 503 200]", "[3s 1s]"},
		{"no answer", roundTripFunc(noAnswer), "[0]", "[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := &recordingObserver{}
			tr := &retryTransport{next: tc.next, maxRetries: 4, maxWait: time.Minute, sleep: sleeper.sleep}
			res, _ := roundTrip(t, tr, newRequest(t, WithObserver(context.Background(), o), http.MethodGet, "https://graph.example/v1.0/users/delta", nil))
			if res != nil {
				res.Body.Close()
			}
			if got, waits := fmt.Sprint(o.statuses), fmt.Sprint(o.waits); got != tc.statuses || waits != tc.waits {
				t.Fatalf("attempts %s, waits %s; want %s, %s", got, waits, tc.statuses, tc.waits)
			}
		})
	}
	// The caller's cancellation is not Graph's outcome.
	o := &recordingObserver{}
	ctx, cancel := context.WithCancel(WithObserver(context.Background(), o))
	tr := &retryTransport{next: roundTripFunc(func(r *http.Request) (*http.Response, error) { cancel(); return nil, context.Canceled }),
		maxRetries: 4, maxWait: time.Minute, sleep: sleeper.sleep}
	roundTrip(t, tr, newRequest(t, ctx, http.MethodGet, "https://graph.example/v1.0/users/delta", nil))
	if len(o.statuses) != 0 {
		t.Fatalf("a cancelled request was counted: %v", o.statuses)
	}
}
