package store

import (
	"slices"
	"testing"
)

// TestPadded: IN lists grow, with their last value, to a few lengths.
func TestPadded(t *testing.T) {
	for _, tc := range []struct{ n, want int }{{1, 1}, {2, 2}, {3, 4}, {5, 8}, {200, 256}, {300, maxParams}, {maxParams, maxParams}, {600, 1024}} {
		list := make([]string, tc.n)
		for i := range list {
			list[i] = string(rune('a' + i%26))
		}
		got := padded(list)
		if len(got) != tc.want || !slices.Equal(got[:tc.n], list) || got[len(got)-1] != list[tc.n-1] {
			t.Fatalf("padded(%d values) has %d", tc.n, len(got))
		}
	}
}
