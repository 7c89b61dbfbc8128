package sync

import (
	"cmp"
	"context"
	"log/slog"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/entrasync/entrasync/store"
)

// Recorder keeps SCIM requests' activity records off the requests' path:
// Record queues a record and returns at once; one goroutine writes queued
// records in batches. When the database is slower than the requests, the
// queue fills and records are dropped, and counted, rather than making a
// request wait. It also prunes records older than the retention.
//
// Records still queued when the process dies are lost: they are what was
// done, not a write anyone was promised.
type Recorder struct {
	db        *store.DB
	log       *slog.Logger
	retention time.Duration
	queue     chan store.Activity
	dropped   atomic.Int64
	written   atomic.Int64
	flushes   chan chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce gosync.Once
	now       func() time.Time
}

// RecorderConfig configures a Recorder; zero fields take their defaults.
type RecorderConfig struct {
	Retention time.Duration // records older are pruned; 0: 30 days
	Queue     int           // records waiting at most; 0: 30,000
	Batch     int           // records written at once at most; 0: 5,000
	Flush     time.Duration // longest a record waits to be written; 0: 1s
	Prune     time.Duration // time between prunings; 0: 10 minutes
	Log       *slog.Logger
}

// NewRecorder starts a Recorder writing to db. Close stops it.
func NewRecorder(db *store.DB, c RecorderConfig) *Recorder {
	c.Retention = cmp.Or(max(c.Retention, 0), 30*24*time.Hour)
	// Few, large commits: on SQLite each commit empties every reader's page
	// cache, and a saturated node's lookups, each recorded, read their pages
	// again after each one (lookups went from 20 to 24 % of a no-op server
	// at batches of 500 every 200 ms to 5,000 every second, BenchmarkLookups).
	// A full batch holds the SQLite writer 35-47 ms (measured on a quiet
	// machine); it forms only when 5,000 requests come within a second.
	c.Flush = cmp.Or(max(c.Flush, 0), time.Second) // a ticker takes no negative period
	c.Prune = cmp.Or(max(c.Prune, 0), 10*time.Minute)
	if c.Queue <= 0 {
		c.Queue = 30_000
	}
	if c.Batch <= 0 {
		c.Batch = 5000
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{db: db, log: c.Log, retention: c.Retention, queue: make(chan store.Activity, c.Queue),
		flushes: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{}), now: time.Now}
	go r.loop(c.Batch, c.Flush, c.Prune)
	return r
}

// Record queues a; it never blocks. A nil Recorder records nothing.
func (r *Recorder) Record(a store.Activity) {
	if r == nil {
		return
	}
	select {
	case r.queue <- a:
	default:
		r.dropped.Add(1)
	}
}

// Dropped is how many records were lost: a full queue, or a failed write.
func (r *Recorder) Dropped() int64 {
	if r == nil {
		return 0
	}
	return r.dropped.Load()
}

// Written is how many records were stored.
func (r *Recorder) Written() int64 {
	if r == nil {
		return 0
	}
	return r.written.Load()
}

// Flush returns when every record queued before it has been written (or
// dropped).
func (r *Recorder) Flush() {
	if r == nil {
		return
	}
	ack := make(chan struct{})
	select {
	case r.flushes <- ack:
		<-ack
	case <-r.done:
	}
}

// Close writes what is queued and stops.
func (r *Recorder) Close() {
	if r == nil {
		return
	}
	r.closeOnce.Do(func() { close(r.stop) })
	<-r.done
}

func (r *Recorder) loop(batch int, flush, prune time.Duration) {
	defer close(r.done)
	ticker := time.NewTicker(flush)
	defer ticker.Stop()
	pruner := time.NewTimer(time.Minute) // not at once: a start is busy enough
	defer pruner.Stop()
	buf := make([]store.Activity, 0, batch)
	lastDropped, lastWarned := int64(0), time.Time{}
	for {
		select {
		case a := <-r.queue:
			buf = append(buf, a)
			if len(buf) < batch {
				continue
			}
		case <-ticker.C:
		case <-pruner.C:
			r.prune()
			pruner.Reset(prune)
			continue
		case ack := <-r.flushes:
			buf = r.write(r.drain(buf, batch))
			close(ack)
			continue
		case <-r.stop:
			r.write(r.drain(buf, batch))
			return
		}
		buf = r.write(buf)
		// A warning a minute at most while records are dropped.
		if d := r.dropped.Load(); d != lastDropped && time.Since(lastWarned) > time.Minute {
			r.log.Warn("activity records dropped: the database writes them slower than requests come; the requests themselves were served",
				"dropped", d-lastDropped, "dropped_total", d)
			lastDropped, lastWarned = d, time.Now()
		}
	}
}

// drain takes what is queued into buf, writing each full batch.
func (r *Recorder) drain(buf []store.Activity, batch int) []store.Activity {
	for {
		select {
		case a := <-r.queue:
			if buf = append(buf, a); len(buf) >= batch {
				buf = r.write(buf)
			}
		default:
			return buf
		}
	}
}

// write stores buf and returns it emptied.
func (r *Recorder) write(buf []store.Activity) []store.Activity {
	if len(buf) == 0 {
		return buf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.db.RecordActivity(ctx, buf); err != nil {
		r.dropped.Add(int64(len(buf)))
		r.log.Warn("could not store activity records; they are dropped (the requests themselves were served): check the database",
			"records", len(buf), "err", err)
	} else {
		r.written.Add(int64(len(buf)))
	}
	clear(buf)
	return buf[:0]
}

// prune deletes records older than the retention.
func (r *Recorder) prune() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := r.db.PruneActivity(ctx, r.now().Add(-r.retention))
	switch {
	case err != nil:
		r.log.Warn("could not prune old activity records; the next pruning retries", "err", err)
	case n > 0:
		r.log.Info("pruned activity records", "deleted", n, "older_than", r.retention.String())
	}
}
