package store

import (
	"testing"

	"github.com/entrasync/entrasync/store/pgtest"
)

// PostgresForTest is pgtest.Schema, for the tests of package store and
// store_test alike.
func PostgresForTest(t testing.TB) string { return pgtest.Schema(t) }
