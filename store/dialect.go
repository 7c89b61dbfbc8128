package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"
)

// dialect holds what differs between SQLite and PostgreSQL, so the SQL
// elsewhere is written once.
type dialect struct {
	name string // "sqlite" or "postgres": also the migrations directory
	// concurrentWrites: write transactions run side by side (PostgreSQL), so
	// read-modify-write takes row locks and migrations an advisory lock.
	concurrentWrites bool
	// tableExists counts the tables named by its one argument.
	tableExists string
	// userGroups is a column of a users row r: its direct groups as a JSON
	// array of [id, displayName] pairs, so a page of users and their groups
	// are one query.
	userGroups string
}

var (
	sqliteDialect = dialect{name: "sqlite",
		tableExists: `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`,
		userGroups: `(SELECT json_group_array(json_array(g.id, g.display_name)) FROM memberships m
			JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id WHERE m.tenant_id = r.tenant_id AND m.member_id = r.id)`}
	postgresDialect = dialect{name: "postgres", concurrentWrites: true,
		tableExists: `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`,
		userGroups: `(SELECT COALESCE(json_agg(json_build_array(g.id, g.display_name)), '[]')::text FROM memberships m
			JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id WHERE m.tenant_id = r.tenant_id AND m.member_id = r.id)`}
)

// Row locks a write transaction takes on rows it read and then decides on,
// so that a concurrent transaction cannot change them in between. SQLite
// needs none: its one writer already excludes every other.
const (
	lockUpdate   = " FOR UPDATE"    // the row will change or go: writers of it wait
	lockKeyShare = " FOR KEY SHARE" // the row must stay: its deletion waits
)

// lock is the locking clause to end a SELECT with, or "" where the dialect
// needs none.
func (d dialect) lock(clause string) string {
	if !d.concurrentWrites {
		return ""
	}
	return clause
}

// classify turns a driver error a caller can act on into the store's own:
// a write that lost to another (Busy), or a database that cannot be
// reached (Busy too, so SCIM answers 503 with Retry-After). It returns nil
// for other errors, and for errors that already are *Error.
func (d dialect) classify(err error, db *DB) error {
	var e *Error
	switch {
	case err == nil || errors.As(err, &e):
		return nil
	case pgCode(err) == "40001" || pgCode(err) == "40P01":
		return db.collided()
	case isBusy(err):
		return db.busy()
	case d.concurrentWrites && isUnreachable(err):
		return db.unreachable()
	}
	return nil
}

// Pool sizes on PostgreSQL, per node: writes run side by side there, so the
// write pool is the number of write transactions a node has open at once.
// Options.MaxConns (db_max_conns) is split between the two, half each, the
// odd one to the writers; DefaultMaxConns is 8+8.
const DefaultMaxConns = 16

// postgresPools is the write and read pool sizes for a node's MaxConns.
func postgresPools(maxConns int) (write, read int) {
	if maxConns < 2 {
		maxConns = DefaultMaxConns
	}
	return maxConns - maxConns/2, maxConns / 2
}

func openPostgres(ctx context.Context, dsn string, readOnly bool, opts Options) (*DB, error) {
	if opts.WriteWait <= 0 {
		opts.WriteWait = DefaultWriteWait
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, errors.New("store: the PostgreSQL URL does not parse: check the db setting")
	}
	postgresWriteConns, postgresReadConns := postgresPools(opts.MaxConns)
	db := &DB{dialect: postgresDialect, now: time.Now, writer: make(chan struct{}, postgresWriteConns), writeWait: opts.WriteWait, listings: newListings()}
	// Unknown URL parameters are session settings for pgx. A row lock
	// waited for past the write wait fails (55P03 → Busy) instead of
	// holding a request; the reader's sessions cannot write.
	session := func(extra map[string]string) string {
		q := u.Query()
		for k, v := range extra {
			if !q.Has(k) {
				q.Set(k, v)
			}
		}
		c := *u
		c.RawQuery = q.Encode()
		return c.String()
	}
	if !readOnly {
		write, err := sqlx.Open("pgx", session(map[string]string{
			"lock_timeout": strconv.FormatInt(max(opts.WriteWait.Milliseconds(), 1), 10),
		}))
		if err != nil {
			return nil, fmt.Errorf("store: open PostgreSQL: %w", err)
		}
		write.SetMaxOpenConns(postgresWriteConns)
		write.SetMaxIdleConns(postgresWriteConns)
		write.SetConnMaxIdleTime(5 * time.Minute)
		db.write = write
	}
	read, err := sqlx.Open("pgx", session(map[string]string{"default_transaction_read_only": "on"}))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open PostgreSQL: %w", err)
	}
	read.SetMaxOpenConns(postgresReadConns)
	read.SetMaxIdleConns(postgresReadConns)
	read.SetConnMaxIdleTime(5 * time.Minute)
	db.read = &reader{DB: read, db: db}
	return db.readySchema(ctx, readOnly || opts.NoMigrate)
}
