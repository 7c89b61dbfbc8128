package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
)

// SQLite copies its write-ahead log into the database file (a checkpoint)
// by default inside the commit that takes the log past 1,000 pages: that
// commit holds the one writer while pages are copied and the file synced,
// and every write of every tenant waits. Beside a pull those were the
// longest waits a SCIM write saw (BenchmarkPullBesideSCIM: 227 ms at
// most, 98 ms with checkpoints off the commit path). So the writer turns
// automatic checkpoints off, and a connection of its own checkpoints in
// the background, PASSIVE: it waits for neither readers nor the writer, and
// a commit's durability does not depend on it (the log is synced).
const checkpointEvery = time.Second

// noAutoCheckpoint is the writer's DSN option that turns them off.
const noAutoCheckpoint = "wal_autocheckpoint(0)"

type checkpointer struct {
	conn *sqlx.DB
	stop chan struct{}
	done chan struct{}
}

// startCheckpoints checkpoints the database at dsn every interval until
// stopCheckpoints. A checkpoint that fails is tried again at the next
// tick; meanwhile the log only grows, and readers still read it.
func (db *DB) startCheckpoints(dsn string, every time.Duration) error {
	conn, err := sqlx.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	conn.SetMaxOpenConns(1)
	c := &checkpointer{conn: conn, stop: make(chan struct{}), done: make(chan struct{})}
	db.checkpoints = c
	go func() {
		defer close(c.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				conn.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
				cancel()
			}
		}
	}()
	return nil
}

// stopCheckpoints ends the background checkpoints; closing the last
// connection checkpoints what is left.
func (db *DB) stopCheckpoints() {
	if c := db.checkpoints; c != nil {
		close(c.stop)
		<-c.done
		c.conn.Close()
	}
}
