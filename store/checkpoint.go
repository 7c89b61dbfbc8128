package store

import (
	"context"
	"fmt"
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
//
// Off but for a backstop: a bulk writer (a first pull, a fixture of a
// million users) can fill the log faster than a checkpoint a second
// copies it back, and a log is only started over once a checkpoint has
// caught up. Left alone it grew past 4 GB while a million users were
// written; so the writer still checkpoints in its commit once the log
// passes walBackstopPages, and a log started over is cut back to
// walSizeLimit bytes on disk.
const checkpointEvery = time.Second

const (
	walBackstopPages = 16384    // 64 MiB of 4 KiB pages, 16× SQLite's default
	walSizeLimit     = 64 << 20 // bytes a log file keeps once started over
)

// writerPragmas are the writer's DSN options for checkpoints.
func writerPragmas(backstop int) []string {
	return []string{fmt.Sprintf("wal_autocheckpoint(%d)", backstop), fmt.Sprintf("journal_size_limit(%d)", walSizeLimit)}
}

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
