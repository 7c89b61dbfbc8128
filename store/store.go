// Package store holds entrasync's data: tenants, their SCIM tokens, users,
// groups and memberships, and the attribute index that SCIM filters run on.
// It is the only package that writes SQL. SQLite (modernc.org/sqlite, no cgo)
// is the embedded default; PostgreSQL (jackc/pgx through database/sql) is
// selected by a postgres:// DSN, and the dialect type keeps the few places
// where the two differ in one spot.
//
// Reads run on a pool of connections; every write runs in DB.Write, in a
// transaction committed before Write returns (on SQLite shared by
// concurrent writes: group commit, see groupcommit.go). On SQLite there is one writer,
// so a write transaction holds only the version checks and the writes:
// callers read, evaluate and encode (Resource.Prepare) before it. On
// PostgreSQL writes run side by side on a pool, and what SQLite's one writer
// guarantees comes from row locks (dialect.lock) and constraints. A write
// that cannot begin, or wait for a row, within the write wait fails with Busy.
package store

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations
var migrationFiles embed.FS

// DB is an open store.
type DB struct {
	write   *sqlx.DB // SQLite: one connection, as SQLite allows one writer at a time
	read    *reader  // the read pool, whose errors are classified as writes' are
	dialect dialect
	now     func() time.Time

	// writer is the right to use write, taken by Write before it begins: a
	// wait for it can be bounded, where database/sql's pool wait cannot
	// without also bounding the transaction. One slot on SQLite, one per
	// write connection on PostgreSQL.
	writer    chan struct{}
	writeWait time.Duration
	batchMu   gosync.Mutex
	forming   *batch // the batch waiting for a writer, which Writes join (groupcommit.go)
	listings  *listings
	stats     writeStats
	stamps    stamps
	closeOnce gosync.Once
	applied   []string // migrations this Open applied

	checkpoints *checkpointer // SQLite: the log's checkpoints, off the writer
	writeStmts  *stmtCache    // SQLite: the writer's prepared statements; nil on PostgreSQL
}

// Options tune an open store; the zero value means the defaults.
type Options struct {
	// WriteWait bounds how long a write waits for the writer, both for this
	// process's one write connection and for SQLite's lock when another
	// process holds it; past it, Write fails with Busy. 0: DefaultWriteWait.
	WriteWait time.Duration
	// NoMigrate opens a writable store without bringing its schema up to
	// date: one older than this binary fails with Unavailable instead
	// (serve --no-migrate, where migrations are run on their own).
	NoMigrate bool
	// MaxConns is the most PostgreSQL connections this store opens, split
	// between its write and read pools; 0 (or under 2): DefaultMaxConns.
	// SQLite ignores it: its writer is one connection by nature.
	MaxConns int

	checkpointEvery time.Duration // SQLite; 0: checkpointEvery (tests shorten it)
	walBackstop     int           // SQLite, pages; 0: walBackstopPages (tests lower it)
}

// DefaultWriteWait is the write wait when none is configured: long enough
// for any healthy write to finish, short enough that a client hears 503
// and retries instead of timing out.
const DefaultWriteWait = 5 * time.Second

// Open opens (creating when needed) the database named by dsn and brings its
// schema up to date. A dsn is a file path or a "file:" URI for SQLite, or a
// postgres:// (postgresql://) URL for PostgreSQL, whose database must exist.
func Open(ctx context.Context, dsn string) (*DB, error) {
	return OpenWith(ctx, dsn, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, dsn string, opts Options) (*DB, error) {
	if isPostgres(dsn) {
		return openPostgres(ctx, dsn, false, opts)
	}
	return openSQLite(ctx, dsn, false, opts)
}

// OpenReadOnly opens an existing database for reading only: it creates no
// file, applies no migration and takes no lock, so it works beside a busy
// server (on PostgreSQL its sessions are read-only). A missing file, or a
// schema older than this binary, fails with NotFound or Unavailable in words
// an operator can act on. DB.Write fails.
func OpenReadOnly(ctx context.Context, dsn string) (*DB, error) {
	if isPostgres(dsn) {
		return openPostgres(ctx, dsn, true, Options{})
	}
	return openSQLite(ctx, dsn, true, Options{})
}

func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

func sqlitePath(dsn string) string {
	path := strings.TrimPrefix(dsn, "file:")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	return path
}

func openSQLite(ctx context.Context, dsn string, readOnly bool, opts Options) (*DB, error) {
	if opts.WriteWait <= 0 {
		opts.WriteWait = DefaultWriteWait
	}
	path := sqlitePath(dsn)
	if path == "" {
		return nil, errors.New("store: empty SQLite path")
	}
	if readOnly || opts.NoMigrate {
		// Neither may create the file: without migrations it would stay empty.
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, Errorf(NotFound, "no database at %s: check the db setting (--db), or create it with entrasync migrate (or a start without --no-migrate)", path)
		}
	}
	// WAL lets readers run beside the writer; FULL sync makes a commit survive
	// power loss, not just a crash; IMMEDIATE takes the write lock at BEGIN so two
	// processes on one file queue on busy_timeout instead of failing mid-transaction;
	// busy_timeout is the write wait, so a wait for another process is bounded too.
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(max(opts.WriteWait.Milliseconds(), 1), 10))
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "1")
	q.Set("_synchronous", "FULL")
	q.Set("_txlock", "immediate")
	base := "file:" + filepath.ToSlash(path)
	db := &DB{dialect: sqliteDialect, now: time.Now, writer: make(chan struct{}, 1), writeWait: opts.WriteWait, listings: newListings()}
	if !readOnly {
		wq := url.Values{}
		for k, v := range q {
			wq[k] = v
		}
		for _, p := range writerPragmas(cmp.Or(opts.walBackstop, walBackstopPages)) {
			wq.Add("_pragma", p)
		}
		// Savepoints (group commit) and multi-row statements keep undo
		// pages in a journal of their own: in memory, not a temp file.
		wq.Add("_pragma", "temp_store(memory)")
		write, err := sqlx.Open("sqlite", base+"?"+wq.Encode())
		if err != nil {
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
		write.SetMaxOpenConns(1)
		write.SetConnMaxIdleTime(0)
		db.write = write
		db.writeStmts = newStmtCache(write, maxWriterStmts)
		if err := db.startCheckpoints(base+"?"+q.Encode(), cmp.Or(opts.checkpointEvery, checkpointEvery)); err != nil {
			write.Close()
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
	}
	q.Set("_query_only", "1")
	if readOnly {
		// mode=ro: never create the file, nor write to it.
		q.Del("_journal_mode")
		q.Set("mode", "ro")
	}
	read, err := sqlx.Open("sqlite", base+"?"+q.Encode())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	read.SetMaxOpenConns(8)
	read.SetMaxIdleConns(8) // prepared statements live on connections: keep them
	db.read = &reader{DB: read, db: db, stmts: newStmtCache(read, maxReaderStmts)}
	return db.readySchema(ctx, readOnly || opts.NoMigrate)
}

// readySchema finishes an open: it checks the schema is current (a
// read-only or no-migrate open) or brings it up to date, closing the
// database when it cannot.
func (db *DB) readySchema(ctx context.Context, checkOnly bool) (*DB, error) {
	var err error
	if checkOnly {
		err = db.checkSchema(ctx)
	} else {
		err = db.migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the database, after writing the last-use stamps it holds.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.stopStamps()
		db.stopCheckpoints()
	})
	var errs []error
	var read *sqlx.DB
	if db.read != nil {
		read = db.read.DB
	}
	for _, pool := range []*sqlx.DB{read, db.write} {
		if pool != nil {
			errs = append(errs, pool.Close())
		}
	}
	return errors.Join(errs...)
}

// SetClock replaces the clock used for created/lastModified stamps (tests).
func (db *DB) SetClock(now func() time.Time) { db.now = now }

// migration is one embedded schema change.
type migration struct {
	version int
	name    string
	body    string
}

// migrations lists the embedded migrations of the dialect, oldest first.
func (db *DB) migrations() ([]migration, error) {
	dir := "migrations/" + db.dialect.name
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	out := make([]migration, 0, len(entries))
	for _, e := range entries {
		version, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number", e.Name())
		}
		body, err := migrationFiles.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: version, name: e.Name(), body: string(body)})
	}
	return out, nil
}

// pending lists the migrations the database has not applied, read without
// any lock. A database without the migrations table has applied none.
func (db *DB) pending(ctx context.Context) ([]migration, error) {
	all, err := db.migrations()
	if err != nil {
		return nil, err
	}
	var exists int
	// The raw pool: at a start, the operator needs the driver's reason.
	if err := db.read.DB.GetContext(ctx, &exists, db.dialect.tableExists, "schema_migrations"); err != nil {
		if db.dialect.concurrentWrites && isUnreachable(err) {
			return nil, fmt.Errorf("the database cannot be reached (%w): check that it is running and the db setting, then retry", err)
		}
		return nil, err
	}
	applied := map[int]bool{}
	if exists > 0 {
		var versions []int
		if err := db.read.DB.SelectContext(ctx, &versions, `SELECT version FROM schema_migrations`); err != nil {
			return nil, err
		}
		for _, v := range versions {
			applied[v] = true
		}
	}
	var out []migration
	for _, m := range all {
		if !applied[m.version] {
			out = append(out, m)
		}
	}
	return out, nil
}

// checkSchema fails unless every migration this binary knows is applied.
func (db *DB) checkSchema(ctx context.Context) error {
	todo, err := db.pending(ctx)
	if err != nil {
		return fmt.Errorf("store: read schema version: %w", err)
	}
	if len(todo) > 0 {
		return Errorf(Unavailable, "the database schema is older than this entrasync (migration %s is not applied): run entrasync migrate, or start the server once, to upgrade it", todo[0].name)
	}
	return nil
}

// migrate applies the embedded migrations that the database has not seen,
// each in its own transaction. When none is pending it only reads, so
// opening a database takes no write lock.
func (db *DB) migrate(ctx context.Context) error {
	todo, err := db.pending(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if len(todo) == 0 {
		return nil
	}
	if !db.dialect.concurrentWrites {
		// SQLite makes the table atomically on the file. Two PostgreSQL
		// nodes could race on it: they make it under the advisory lock.
		if err := db.createMigrationsTable(ctx, db.write); err != nil {
			return err
		}
	}
	for _, m := range todo {
		applied := false
		err := db.Write(ctx, func(tx *Tx) error {
			if db.dialect.concurrentWrites {
				// Nodes starting together queue here, one at a time; each
				// sees what the one before it applied. A node may wait for
				// another's migration longer than the write wait that
				// lock_timeout is otherwise set to.
				if _, err := tx.tx.ExecContext(ctx, `SET LOCAL lock_timeout = '5min'`); err != nil {
					return err
				}
				if _, err := tx.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
					return err
				}
				if err := db.createMigrationsTable(ctx, tx.tx); err != nil {
					return err
				}
			}
			// Another process may have applied it since pending looked.
			var n int
			if err := tx.tx.GetContext(ctx, &n, tx.rebind(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), m.version); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.tx.ExecContext(ctx, m.body); err != nil {
				return fmt.Errorf("apply: %w", err)
			}
			applied = true
			_, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), m.version, formatTime(tx.now))
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
		if applied {
			db.applied = append(db.applied, m.name)
		}
	}
	return nil
}

// Applied lists the migrations that opening this store applied, oldest
// first (none when the schema was already current, or another node applied
// them first).
func (db *DB) Applied() []string { return db.applied }

// SchemaVersion is the newest schema version this binary knows, which an
// open store's database has.
func (db *DB) SchemaVersion() int {
	all, _ := db.migrations()
	if len(all) == 0 {
		return 0
	}
	return all[len(all)-1].version
}

// migrationLockKey names the PostgreSQL advisory lock that migrations are
// applied under (an arbitrary constant: "entrasync" in ASCII, truncated).
const migrationLockKey int64 = 0x656e74726173796e

func (db *DB) createMigrationsTable(ctx context.Context, ex sqlx.ExecerContext) error {
	_, err := ex.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`)
	if err != nil && isBusy(err) && !db.dialect.concurrentWrites {
		return fmt.Errorf("store: migrate: %w", db.busy())
	}
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}

// Tx is a write transaction. Its methods are the only way data changes.
type Tx struct {
	tx  *sqlx.Tx
	ctx context.Context
	db  *DB
	now time.Time // one timestamp for everything the transaction writes
	in  *batch    // the transaction it is part of
}

// changed notes that the transaction changes the tenant's users, groups
// or memberships: once it commits, remembered listings of the tenant are
// dropped (listings).
func (tx *Tx) changed(tenant int64) { tx.in.touched[tenant] = true }

// takeWriter waits, at most the write wait, for this process's writer.
func (db *DB) takeWriter(ctx context.Context) error {
	select {
	case db.writer <- struct{}{}:
		return nil
	default:
	}
	db.stats.waiting.Add(1)
	defer db.stats.waiting.Add(-1)
	timer := time.NewTimer(db.writeWait)
	defer timer.Stop()
	select {
	case db.writer <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return db.busy()
	}
}

// busy is the error of a write that waited the write wait in vain.
func (db *DB) busy() error {
	db.stats.busy.Add(1)
	return &Error{Code: Busy, RetryAfter: max(db.writeWait.Round(time.Second), time.Second),
		Message: fmt.Sprintf("the database is busy: another write held it for longer than the write wait (%s); retry in a moment", db.writeWait)}
}

// unreachable is the error of a write the database could not take because
// it is down, restarting or cut off. A write cut off mid-transaction was
// rolled back; one cut off in its commit may have been applied, which a
// retry of an idempotent SCIM request finds.
func (db *DB) unreachable() error {
	return &Error{Code: Busy, RetryAfter: 2 * time.Second,
		Message: "the database cannot be reached at the moment: retry in a moment"}
}

// collided is the error of a PostgreSQL write rolled back so that another
// could go on (a deadlock or serialization failure): retrying it will do.
func (db *DB) collided() error {
	db.stats.busy.Add(1)
	return &Error{Code: Busy, RetryAfter: time.Second,
		Message: "the database is busy: this write collided with another one and was rolled back; retry in a moment"}
}

// WriteWait is how long a write waits for the writer before it is Busy.
func (db *DB) WriteWait() time.Duration { return db.writeWait }

// Now is the time the transaction stamps what it writes with.
func (tx *Tx) Now() time.Time { return tx.now }

func (tx *Tx) rebind(q string) string { return tx.tx.Rebind(q) }

func (tx *Tx) exec(q string, args ...any) (sql.Result, error) {
	q = tx.rebind(q)
	if s := tx.db.writeStmts.cached(q); s != nil {
		return tx.tx.StmtxContext(tx.ctx, s).ExecContext(tx.ctx, args...)
	}
	return tx.tx.ExecContext(tx.ctx, q, args...)
}

func (tx *Tx) get(dest any, q string, args ...any) error {
	q = tx.rebind(q)
	if s := tx.db.writeStmts.cached(q); s != nil {
		return tx.tx.StmtxContext(tx.ctx, s).GetContext(tx.ctx, dest, args...)
	}
	return tx.tx.GetContext(tx.ctx, dest, q, args...)
}

func (tx *Tx) selectRows(dest any, q string, args ...any) error {
	q = tx.rebind(q)
	if s := tx.db.writeStmts.cached(q); s != nil {
		return tx.tx.StmtxContext(tx.ctx, s).SelectContext(tx.ctx, dest, args...)
	}
	return tx.tx.SelectContext(tx.ctx, dest, q, args...)
}

// reader is the read pool. Its reads fail the way writes do when the
// database is busy or cannot be reached (a PostgreSQL restart, failover or
// network cut): with Busy and a RetryAfter, so every edge answers "retry
// later" (SCIM 503 with Retry-After) instead of an internal error. The
// pool itself recovers: database/sql drops the broken connections and
// dials new ones on the next read.
type reader struct {
	*sqlx.DB
	db    *DB
	stmts *stmtCache // SQLite; nil: unprepared
}

func (r *reader) classify(err error) error {
	if known := r.db.dialect.classify(err, r.db); known != nil {
		return known
	}
	return err
}

func (r *reader) GetContext(ctx context.Context, dest any, query string, args ...any) error {
	if s := r.stmts.get(ctx, query); s != nil {
		return r.classify(s.GetContext(ctx, dest, args...))
	}
	return r.classify(r.DB.GetContext(ctx, dest, query, args...))
}

func (r *reader) SelectContext(ctx context.Context, dest any, query string, args ...any) error {
	if s := r.stmts.get(ctx, query); s != nil {
		return r.classify(s.SelectContext(ctx, dest, args...))
	}
	return r.classify(r.DB.SelectContext(ctx, dest, query, args...))
}

func (r *reader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := r.stmts.get(ctx, query); s != nil {
		rows, err := s.QueryContext(ctx, args...)
		return rows, r.classify(err)
	}
	rows, err := r.DB.QueryContext(ctx, query, args...)
	return rows, r.classify(err)
}

func (r *reader) QueryxContext(ctx context.Context, query string, args ...any) (*sqlx.Rows, error) {
	if s := r.stmts.get(ctx, query); s != nil {
		rows, err := s.QueryxContext(ctx, args...)
		return rows, r.classify(err)
	}
	rows, err := r.DB.QueryxContext(ctx, query, args...)
	return rows, r.classify(err)
}

// queryer is what reads need: the read pool or a write transaction, so the
// same helpers serve both.
type queryer interface {
	sqlx.QueryerContext
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
	Rebind(string) string
}

const timeLayout = "2006-01-02T15:04:05.000Z"

// formatTime gives the fixed-width UTC text that timestamps are stored as, so
// they sort and compare as strings in every dialect.
func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) time.Time {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		t, _ = time.Parse(time.RFC3339Nano, s)
	}
	return t
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.read.GetContext(ctx, &one, `SELECT 1`)
}
