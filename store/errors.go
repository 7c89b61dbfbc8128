package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

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

// isBusy recognises SQLite's SQLITE_BUSY (and its extended codes): another
// connection, usually another process on the same file, held the lock past
// busy_timeout.
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == 5 // SQLITE_BUSY
}

// errNoRows reports a missing row.
func errNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// isUniqueViolation recognises a unique-constraint failure from either driver
// without importing driver-specific error types.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || // SQLite
		strings.Contains(s, "SQLSTATE 23505") || strings.Contains(s, "duplicate key value") // PostgreSQL
}
