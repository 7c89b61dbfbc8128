//go:build race

package scim_test

// raceEnabled: the race detector slows everything several times over, so
// latency targets are logged, not asserted.
const raceEnabled = true
