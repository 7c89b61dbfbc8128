package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCheckpointsOffTheWriter: the writer never checkpoints the log (its
// commits stay short), and the background connection does: what is
// written reaches the database file while the store is open.
func TestCheckpointsOffTheWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "es.db")
	db, err := OpenWith(ctx, path, Options{checkpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var auto int
	if err := db.write.GetContext(ctx, &auto, "PRAGMA wal_autocheckpoint"); err != nil || auto != walBackstopPages {
		t.Fatalf("the writer's wal_autocheckpoint: %d %v", auto, err)
	}
	db.stopCheckpoints() // none until restarted below
	db.checkpoints = nil
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	for i := range 50 { // well past the 1,000 pages the writer would checkpoint at
		err := db.Write(ctx, func(tx *Tx) error {
			if _, err := tx.CreateTenant(fmt.Sprintf("tenant-%d", i)); err != nil {
				return err
			}
			_, err := tx.tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS filler (b BLOB)")
			if err == nil {
				_, err = tx.tx.ExecContext(ctx, "INSERT INTO filler VALUES (randomblob(100000))")
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := size(); got != before {
		t.Fatalf("the writer checkpointed: the database file went from %d to %d bytes", before, got)
	}
	if err := db.startCheckpoints("file:"+filepath.ToSlash(path), 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for size() == before {
		if time.Now().After(deadline) {
			t.Fatal("no background checkpoint reached the database file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLogStaysBounded: when the background checkpoints fall behind a bulk
// writer, the writer's backstop checkpoints, the log starts over, and its
// file is cut back: it does not grow with everything ever written.
func TestLogStaysBounded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "es.db")
	db, err := OpenWith(ctx, path, Options{checkpointEvery: time.Hour, walBackstop: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 40 { // 4 MB: ~1,000 pages, ten times the backstop
		err := db.Write(ctx, func(tx *Tx) error {
			_, err := tx.tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS filler (b BLOB)")
			if err == nil {
				_, err = tx.tx.ExecContext(ctx, "INSERT INTO filler VALUES (randomblob(100000))")
			}
			return err
		})
		if err != nil {
			t.Fatal(err, i)
		}
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 2<<20 {
		t.Fatalf("the log holds %d bytes after 4 MB written with a backstop of 100 pages", fi.Size())
	}
}
