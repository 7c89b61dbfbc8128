package store

import (
	"context"
	"fmt"
	gosync "sync"
	"time"

	"github.com/jmoiron/sqlx"
)

// Group commit. A durable commit costs an fsync (SQLite with
// synchronous=FULL), and that, not the few statements of a SCIM write, is
// what a write mostly waits for. So Writes
// that arrive while the writer is taken do not each wait for it: they
// gather in one batch, and when a writer is free the batch runs their
// functions one after another in a single transaction, each in a savepoint
// of its own, and commits once. A function that fails is rolled back to
// its savepoint and fails alone; the others still commit. Every Write
// returns only after the commit that holds its change (or with the reason
// it was not made), so an acknowledged write is as durable as before.
//
// A Write that finds a writer free runs at once, alone, with no savepoint:
// batching costs nothing when there is nothing to wait for.
//
// SQLite only. PostgreSQL runs writes side by side on a pool and already
// flushes the WAL once for the commits that arrive together (its own
// group commit); a batch there would also hold the row locks of all its
// writes until the last, so two batches writing the same two groups in
// opposite orders would deadlock, where two single writes never do.

// maxBatch bounds the functions in one batch, and so how long its commit
// keeps the first of them waiting (a SCIM write's function takes well
// under a millisecond; the large writes of a pull run alone).
const maxBatch = 64

// batch is one transaction that concurrent Writes share.
type batch struct {
	begun   chan struct{} // closed when tx is begun, or err says why not
	done    chan struct{} // closed when the batch is committed or rolled back
	tx      *sqlx.Tx
	begunAt time.Time
	err     error // why the batch was not begun or not committed; set before begun or done closes
	size    int   // Writes in the batch; final once begun (db.batchMu until then)
	pending gosync.WaitGroup

	conn    gosync.Mutex   // held by the function running on tx
	touched map[int64]bool // tenants whose resources the batch changes (Tx.changed)
	broken  error          // a savepoint could not be undone: nothing more runs, all roll back
	failed  bool           // the only function failed: roll back
}

// Write runs fn in a transaction and returns once that transaction is
// committed; when fn fails, nothing fn wrote is kept (a failed request
// leaves no trace) and Write returns fn's error. fn may share its
// transaction with other Writes (group commit, above), each in a
// savepoint, so fn should only check and write, and it must not call
// Write. When no writer frees up within the write wait, Write fails with
// Busy. Once fn has begun, the caller's cancellation no longer interrupts
// it: a statement interrupted on SQLite would roll back the whole batch.
func (db *DB) Write(ctx context.Context, fn func(tx *Tx) error) error {
	return db.runWrite(ctx, fn, false)
}

// WriteAlone is Write for a large write, a slice of a pull's page: it runs
// in a transaction of its own, which no other Write joins. A small write
// that arrives while a large one runs waits for that one transaction and
// then commits in its own batch, not after the next large one too.
func (db *DB) WriteAlone(ctx context.Context, fn func(tx *Tx) error) error {
	return db.runWrite(ctx, fn, true)
}

// Slices of one large write share a transaction, on SQLite, while no
// other write waits for the writer, up to these bounds: what a failure or
// a crash leaves undone, and how long a reader's view goes without the
// write's changes.
const (
	maxSlicesShared = 4
	maxSlicesHold   = 200 * time.Millisecond
)

// WriteSlices runs fn(tx, 0) … fn(tx, n-1), the slices of a large write
// (a pull's page), in transactions no other Write joins, and calls
// committed after each commit. Each slice is sized so that a write
// waiting behind it waits little. On SQLite, where every write waits for
// the one writer, slices go on in one transaction while no other write
// waits and the caller has not left (up to maxSlicesShared and
// maxSlicesHold): a commit rewrites every page its slices touched, so
// fewer commits write far less. A write that comes waits for the slice
// running and its commit, as before. On
// PostgreSQL each slice commits alone: a longer transaction would hold
// its row locks longer, and writers do not queue there.
//
// Measured (sync's BenchmarkPullBesideSCIM, SQLite, a SCIM create every
// 10 ms beside a 20,000-user pull): the longest create 78-81 ms and a p99
// wait of 25 ms, against 58-64 ms and 10 ms with a commit a slice; the
// pull alone (BenchmarkInitialSync) 7-16 % faster.
//
// A slice that fails rolls back the slices of its transaction with it;
// WriteSlices returns how many slices were committed before.
func (db *DB) WriteSlices(ctx context.Context, n int, fn func(tx *Tx, slice int) error, committed func()) (int, error) {
	done := 0
	for done < n {
		end := done
		err := db.runWrite(ctx, func(tx *Tx) error {
			begun := time.Now()
			for end = done; end < n; {
				if err := fn(tx, end); err != nil {
					return err
				}
				end++
				if db.dialect.concurrentWrites || db.stats.waiting.Load() > 0 || ctx.Err() != nil ||
					end-done >= maxSlicesShared || time.Since(begun) >= maxSlicesHold {
					break
				}
			}
			return nil
		}, true)
		if err != nil {
			return done, err
		}
		done = end
		committed()
	}
	return done, nil
}

func (db *DB) runWrite(ctx context.Context, fn func(tx *Tx) error, alone bool) error {
	if db.write == nil {
		return Errorf(Unavailable, "the database was opened read-only")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	asked := time.Now()
	b, leader := db.joinBatch(alone || db.dialect.concurrentWrites)
	if leader {
		db.beginBatch(ctx, b)
	} else {
		db.stats.waiting.Add(1)
		<-b.begun // within the write wait: the leader's wait for a writer is bounded
		db.stats.waiting.Add(-1)
	}
	var err error
	func() {
		if leader {
			defer db.endBatch(b) // also when fn panics, or the batch would hang
		}
		err = db.runInBatch(ctx, b, fn, asked)
	}()
	<-b.done
	if err != nil {
		return err
	}
	return b.err
}

// joinBatch adds a Write to the batch that is waiting for a writer, or
// starts a new one (always, for a Write alone), whose leader the caller
// then is.
func (db *DB) joinBatch(alone bool) (b *batch, leader bool) {
	b = &batch{begun: make(chan struct{}), done: make(chan struct{}), size: 1, touched: map[int64]bool{}}
	b.pending.Add(1)
	if alone {
		return b, true
	}
	db.batchMu.Lock()
	defer db.batchMu.Unlock()
	if f := db.forming; f != nil && f.size < maxBatch {
		f.size++
		f.pending.Add(1)
		return f, false
	}
	db.forming = b
	return b, true
}

// beginBatch takes a writer for b, closes b to newcomers and begins its
// transaction. Neither waits on the leader's context: the batch is not
// the leader's alone.
func (db *DB) beginBatch(ctx context.Context, b *batch) {
	defer close(b.begun)
	err := db.takeWriter(context.WithoutCancel(ctx))
	db.batchMu.Lock()
	if db.forming == b {
		db.forming = nil
	}
	db.batchMu.Unlock()
	if err != nil {
		b.err = err
		return
	}
	b.tx, err = db.write.BeginTxx(context.WithoutCancel(ctx), nil)
	b.begunAt = time.Now()
	if err != nil {
		<-db.writer
		// SQLite: another process held the lock past busy_timeout;
		// PostgreSQL: the server is down or restarting.
		if known := db.dialect.classify(err, db); known != nil {
			b.err = known
		} else {
			b.err = fmt.Errorf("store: begin: %w", err)
		}
	}
}

// runInBatch runs one Write's fn in b, in a savepoint when b has others.
func (db *DB) runInBatch(ctx context.Context, b *batch, fn func(tx *Tx) error, asked time.Time) (err error) {
	defer b.pending.Done() // last: after the savepoint is undone
	if b.err != nil {
		return b.err
	}
	b.conn.Lock()
	defer b.conn.Unlock()
	if b.broken != nil {
		return b.broken
	}
	if err := ctx.Err(); err != nil {
		return err // the caller left before its turn: nothing written
	}
	db.stats.wait.observe(time.Since(asked))
	stmtCtx := context.WithoutCancel(ctx)
	savepoint := b.size > 1
	if savepoint {
		if _, err := b.tx.ExecContext(stmtCtx, "SAVEPOINT write"); err != nil {
			b.broken = db.classified(err)
			return b.broken
		}
	}
	ok := false
	defer func() {
		if ok {
			return
		}
		// fn failed or panicked: undo what it wrote, and only that.
		if !savepoint {
			b.failed = true
			return
		}
		if _, uerr := b.tx.ExecContext(stmtCtx, "ROLLBACK TO SAVEPOINT write"); uerr != nil {
			b.broken = db.classified(uerr)
		} else if _, uerr := b.tx.ExecContext(stmtCtx, "RELEASE SAVEPOINT write"); uerr != nil {
			b.broken = db.classified(uerr)
		}
	}()
	tx := &Tx{tx: b.tx, ctx: stmtCtx, db: db, now: db.now().UTC().Truncate(time.Millisecond), in: b}
	if err = fn(tx); err != nil {
		return db.classified(err)
	}
	if savepoint {
		if _, err = b.tx.ExecContext(stmtCtx, "RELEASE SAVEPOINT write"); err != nil {
			return db.classified(err)
		}
	}
	ok = true
	return nil
}

// endBatch waits for every function of b to have run, then commits b (or
// rolls it back when nothing can be kept) and answers its Writes.
func (db *DB) endBatch(b *batch) {
	defer close(b.done)
	b.pending.Wait()
	if b.tx == nil {
		return // never begun: b.err says why
	}
	defer func() {
		db.stats.hold.observe(time.Since(b.begunAt))
		db.writeStmts.prepareWanted(context.Background()) // the connection is free now
		<-db.writer
	}()
	switch {
	case b.broken != nil:
		b.tx.Rollback()
		b.err = b.broken
	case b.failed:
		b.tx.Rollback()
	default:
		err := b.tx.Commit()
		// Also after a failed commit: it may have been applied.
		db.listings.changed(b.touched)
		if err != nil {
			if known := db.dialect.classify(err, db); known != nil {
				b.err = known
			} else {
				b.err = fmt.Errorf("store: commit: %w", err)
			}
		}
	}
}

// classified turns a database error into the store's Busy or Unavailable
// where it is one, and leaves others as they are.
func (db *DB) classified(err error) error {
	if known := db.dialect.classify(err, db); known != nil {
		return known
	}
	return err
}
