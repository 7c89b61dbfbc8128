package sync

import "time"

// PullLate reports whether a tenant's pull is late at now by the rule its
// Health warns on: nothing succeeded since `since` (its last successful
// run, or its connection's last change when later) for longer than its
// schedule's interval plus the slack a scheduled run may take. The
// metrics count tenants behind by it.
func PullLate(spec string, since, now time.Time) bool {
	interval := scheduleInterval(spec, now)
	return interval > 0 && now.Sub(since) > interval+pullSlack
}
