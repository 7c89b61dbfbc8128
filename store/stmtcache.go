package store

import (
	"context"
	gosync "sync"

	"github.com/jmoiron/sqlx"
)

// stmtCache keeps prepared statements by their SQL text, for one pool.
// SQLite's driver otherwise parses and plans every statement it is given
// anew, and that was a sixth of a SCIM create's time; database/sql then
// prepares a cached statement once on each connection that runs it. The
// PostgreSQL driver (pgx) keeps a statement cache of its own, so only the
// SQLite store has these.
type stmtCache struct {
	pool   *sqlx.DB
	max    int // statements kept; past it a statement runs unprepared, as before
	mu     gosync.Mutex
	m      map[string]*sqlx.Stmt
	wanted []string // statements run unprepared, to prepare when the pool is free (the writer's)
}

// A statement is prepared on every connection of its pool that runs it,
// and a prepared statement holds SQLite memory, so the caches are bounded.
// The store's statements are a few dozen shapes, and a multi-row statement
// one per row count up to its bound (the writer's index and membership
// inserts, worth preparing: they are the longest to parse). The readers'
// long statements, IN lists of a page of ids, are left unprepared.
const (
	maxWriterStmts     = 512
	maxReaderStmts     = 128
	maxReaderStmtBytes = 2048
)

func newStmtCache(pool *sqlx.DB, max int) *stmtCache {
	return &stmtCache{pool: pool, max: max, m: map[string]*sqlx.Stmt{}}
}

// get returns the prepared statement of query, preparing it on the pool
// the first time; nil when there is no cache, the cache is full, the
// statement is long, or it does not prepare (running it unprepared gives the error in
// full). For a pool whose connections may all be taken by the caller
// (the writer's one), use cached instead.
func (c *stmtCache) get(ctx context.Context, query string) *sqlx.Stmt {
	if c == nil || len(query) > maxReaderStmtBytes {
		return nil
	}
	c.mu.Lock()
	s, ok := c.m[query]
	full := len(c.m) >= c.max
	c.mu.Unlock()
	if ok || full {
		return s
	}
	// Not under the lock: preparing waits for a free connection.
	s, err := c.pool.PreparexContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prior, ok := c.m[query]; ok {
		s.Close()
		return prior
	}
	c.m[query] = s
	return s
}

// cached returns the prepared statement of query if there is one, and
// otherwise notes query for prepareWanted and returns nil. A write
// transaction holds the writer's one connection, so it cannot prepare on
// the pool itself.
func (c *stmtCache) cached(query string) *sqlx.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[query]; ok {
		return s
	}
	if len(c.m)+len(c.wanted) < c.max {
		c.wanted = append(c.wanted, query)
	}
	return nil
}

// prepareWanted prepares the statements cached has noted; the caller holds
// the writer, whose transaction has ended.
func (c *stmtCache) prepareWanted(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.Lock()
	wanted := c.wanted
	c.wanted = nil
	c.mu.Unlock()
	for _, q := range wanted {
		c.mu.Lock()
		_, done := c.m[q]
		c.mu.Unlock()
		if done {
			continue
		}
		if s, err := c.pool.PreparexContext(context.WithoutCancel(ctx), q); err == nil {
			c.mu.Lock()
			c.m[q] = s
			c.mu.Unlock()
		}
	}
}
