package scim

import "time"

// FreezeLimits stops the clock of s's rate limits at now, so no token
// comes back while a test counts them.
func (s *Server) FreezeLimits(now time.Time) {
	clock := func() time.Time { return now }
	s.strangers.SetClock(clock)
	if s.tenants != nil {
		s.tenants.SetClock(clock)
	}
}
