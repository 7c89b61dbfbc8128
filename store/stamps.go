package store

import (
	"context"
	"sort"
	gosync "sync"
	"time"
)

// stampInterval is how often the last-use stamps authentication recorded
// are written: one transaction for all of them, whatever the traffic.
const stampInterval = 5 * time.Second

// stamps holds the last-use times of secrets (SCIM tokens, ops keys) that
// authentication found due, until a background flush writes them. A request
// never waits for the writer to say when a secret was last used.
type stamps struct {
	mu      gosync.Mutex
	due     map[stampKey]time.Time // the latest use of each secret not yet written
	running bool                   // the flusher goroutine is started
	closed  bool
	stop    chan struct{}
	done    chan struct{}
}

type stampKey struct {
	table string // scim_tokens or ops_keys
	id    string
}

// stamp records that the secret id of table was used at t, to be written
// by the flusher, which it starts on first use.
func (db *DB) stamp(table, id string, t time.Time) {
	s := &db.stamps
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || db.write == nil {
		return
	}
	if s.due == nil {
		s.due = map[stampKey]time.Time{}
	}
	k := stampKey{table, id}
	if t.After(s.due[k]) {
		s.due[k] = t
	}
	if !s.running {
		s.running = true
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go db.flushStampsEvery(stampInterval, s.stop, s.done)
	}
}

func (db *DB) flushStampsEvery(every time.Duration, stop, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			_ = db.FlushStamps(context.Background()) // what failed stays due for the next tick
		case <-stop:
			return
		}
	}
}

// FlushStamps writes every last-use stamp authentication recorded, in one
// transaction, now rather than at the next background flush. The write
// waits for the writer no longer than any write; when it fails the stamps
// stay due and merge with newer ones: a busy writer delays stamps, never
// requests.
func (db *DB) FlushStamps(ctx context.Context) error {
	s := &db.stamps
	s.mu.Lock()
	due := s.due
	s.due = nil
	s.mu.Unlock()
	if len(due) == 0 {
		return nil
	}
	keys := make([]stampKey, 0, len(due))
	for k := range due {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { // a fixed order: rows locked alike in every dialect
		return keys[i].table < keys[j].table || keys[i].table == keys[j].table && keys[i].id < keys[j].id
	})
	err := db.Write(ctx, func(tx *Tx) error {
		for _, k := range keys {
			at := formatTime(due[k])
			// Never move a stamp back: another process may have written a later one.
			if _, err := tx.exec(`UPDATE `+k.table+` SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`,
				at, k.id, at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.mu.Lock()
		if s.due == nil {
			s.due = map[stampKey]time.Time{}
		}
		for k, t := range due {
			if t.After(s.due[k]) {
				s.due[k] = t
			}
		}
		s.mu.Unlock()
	}
	return err
}

// stopStamps stops the flusher and writes what is still due.
func (db *DB) stopStamps() {
	s := &db.stamps
	s.mu.Lock()
	s.closed = true
	running, stop, done := s.running, s.stop, s.done
	s.mu.Unlock()
	if running {
		close(stop)
		<-done
	}
	if db.write != nil {
		_ = db.FlushStamps(context.Background()) // bounded by the write wait
	}
}
