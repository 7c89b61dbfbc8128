package store

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// Code classifies an error so each edge (SCIM, CLI, ops API) can map it once.
type Code string

const (
	NotFound     Code = "not_found"    // no such object in this tenant
	Conflict     Code = "conflict"     // a uniqueness rule would break
	Precondition Code = "precondition" // the object changed since it was read
	Invalid      Code = "invalid"      // the input cannot be stored as given
	Unavailable  Code = "unavailable"  // the service cannot do this now: a setting or a dependency is missing
	Busy         Code = "busy"         // the writer stayed taken past the write wait: retry later
	Internal     Code = "internal"
)

// Error is an error whose message is safe to show to the caller.
type Error struct {
	Code    Code
	Message string
	// RetryAfter is, for Busy, when a retry is worth trying.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// Errorf makes an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of an *Error in err's chain, or Internal.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// RetryAfter returns the RetryAfter of a Busy error in err's chain, or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) && e.Code == Busy {
		return e.RetryAfter
	}
	return 0
}

// isBusy recognises a write that lost to another one and is worth retrying
// soon: SQLite's SQLITE_BUSY (and its extended codes), when another
// connection, usually another process on the same file, held the lock past
// busy_timeout; on PostgreSQL a lock wait past lock_timeout (55P03), a
// serialization failure (40001) or a deadlock (40P01), where the database
// rolled this transaction back so that the other could go on.
func isBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == 5 // SQLITE_BUSY
	}
	switch pgCode(err) {
	case "55P03", "40001", "40P01":
		return true
	}
	return false
}

// pgCode is the SQLSTATE of a PostgreSQL error in err's chain, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// isUnreachable recognises a PostgreSQL that cannot be reached or went away
// mid-transaction (a restart, a failover, a network cut): the request did
// nothing durable, and a retry once it is back will do. Class 08 is
// connection exceptions; 57P01-57P03 are the server shutting down or
// starting up.
func isUnreachable(err error) bool {
	if err == nil {
		return false
	}
	code := pgCode(err)
	if strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "57P03" {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.Is(err, driver.ErrBadConn) || pgconn.SafeToRetry(err) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// errNoRows reports a missing row.
func errNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// isUniqueViolation recognises a unique-constraint failure from either
// driver: SQLite's extended code SQLITE_CONSTRAINT_UNIQUE or
// SQLITE_CONSTRAINT_PRIMARYKEY, PostgreSQL's SQLSTATE 23505.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	if pgCode(err) == "23505" {
		return true
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed") // SQLite
}

// constraintName is the constraint a PostgreSQL error names, or the whole
// message for SQLite, which names the columns in it instead.
func constraintName(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.ConstraintName
	}
	return err.Error()
}
