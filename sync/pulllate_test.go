package sync

import (
	"testing"
	"time"
)

func TestPullLate(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC) // a Monday
	tests := []struct {
		spec  string
		since time.Duration // before now
		late  bool
	}{
		{"@every 40m", 45 * time.Minute, false}, // within a cycle and the slack
		{"@every 40m", 51 * time.Minute, true},
		{"@every 2h", 2 * time.Hour, false},
		{"@every 2h", 3 * time.Hour, true},
		{"*/40 * * * *", 30 * time.Minute, false},
		{"not a schedule", 1000 * time.Hour, false}, // the scheduler refuses it, and says so
	}
	for _, tc := range tests {
		if got := PullLate(tc.spec, now.Add(-tc.since), now); got != tc.late {
			t.Errorf("%s, last %s ago: late %v, want %v", tc.spec, tc.since, got, tc.late)
		}
	}
}
