package scim

import (
	"context"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
)

// TestResourceLocks: writes of one resource queue, past the wait they are
// Busy, other resources are not held, and no lock outlives its users.
func TestResourceLocks(t *testing.T) {
	var l resourceLocks
	ctx := context.Background()
	a := resourceKey{1, store.UserKind, "a"}
	unlockA, err := l.lock(ctx, a, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	unlockB, err := l.lock(ctx, resourceKey{2, store.UserKind, "a"}, time.Second) // another tenant's "a"
	if err != nil {
		t.Fatalf("another resource waited: %v", err)
	}
	unlockB()
	if _, err := l.lock(ctx, a, 20*time.Millisecond); store.ErrorCode(err) != store.Busy || store.RetryAfter(err) <= 0 {
		t.Fatalf("second lock of a held resource: %v, want Busy with RetryAfter", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.lock(cancelled, a, time.Second); err != context.Canceled {
		t.Fatalf("lock with an ended context: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		unlock, err := l.lock(ctx, a, time.Minute)
		if err == nil {
			unlock()
		}
		got <- err
	}()
	unlockA()
	if err := <-got; err != nil {
		t.Fatalf("the queued lock after unlock: %v", err)
	}
	if n := len(l.locks); n != 0 {
		t.Fatalf("%d locks left behind", n)
	}
}
