package scim

import (
	"context"
	"fmt"
	gosync "sync"
	"time"

	"github.com/entrasync/entrasync/store"
)

// resourceLocks queues this process's PUTs and PATCHes of one resource, so
// that concurrent ones (Entra sends several PATCHes of a group at once)
// each read what the one before wrote instead of redoing each other. It
// holds nothing else: other resources and the database writer stay free
// while one resource's request reads and evaluates. Writes from other
// processes are caught by the version guard instead.
type resourceLocks struct {
	mu    gosync.Mutex
	locks map[resourceKey]*resourceLock
}

type resourceKey struct {
	tenant int64
	kind   store.Kind
	id     string
}

type resourceLock struct {
	held chan struct{} // one slot: the holder
	refs int           // holders and waiters; the lock is dropped at 0
}

// lock waits for the resource, at most wait (the store's write wait, past
// which a write is Busy too) or until ctx ends, and returns its unlock.
func (l *resourceLocks) lock(ctx context.Context, key resourceKey, wait time.Duration) (unlock func(), err error) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[resourceKey]*resourceLock{}
	}
	e := l.locks[key]
	if e == nil {
		e = &resourceLock{held: make(chan struct{}, 1)}
		l.locks[key] = e
	}
	e.refs++
	l.mu.Unlock()
	drop := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.locks, key)
		}
		l.mu.Unlock()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case e.held <- struct{}{}:
		return func() { <-e.held; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	case <-timer.C:
		drop()
		return nil, &store.Error{Code: store.Busy, RetryAfter: max(wait.Round(time.Second), time.Second),
			Message: fmt.Sprintf("another request has been changing this %s for longer than the write wait (%s); retry in a moment", key.kind, wait)}
	}
}
