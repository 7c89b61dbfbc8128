package store

// TEMPORARY (ops-read branch): the contract of the lead's store/activity.go,
// so the ops reads compile before it lands on main. On merge, the lead's
// file replaces this one whole.

import (
	"context"
	"time"
)

type Activity struct {
	ID           int64     `json:"id"`
	TenantID     int64     `json:"-"`
	At           time.Time `json:"at"`
	Channel      string    `json:"kind"`
	Provider     string    `json:"provider,omitempty"`
	Method       string    `json:"method,omitempty"`
	Endpoint     string    `json:"endpoint,omitempty"`
	Status       int       `json:"status,omitempty"`
	LatencyMS    int64     `json:"latencyMs,omitempty"`
	TokenID      string    `json:"tokenId,omitempty"`
	RequestID    string    `json:"requestId,omitempty"`
	RunID        int64     `json:"runId,omitempty"`
	ResourceType string    `json:"resourceType,omitempty"`
	ResourceID   string    `json:"resourceId,omitempty"`
	Subject      string    `json:"subject,omitempty"`
	Summary      string    `json:"summary"`
	Failed       bool      `json:"failed"`
}

type ActivityQuery struct {
	Channel string
	Failed  bool
	Since   time.Time
	User    string
	Before  int64
	Limit   int
}

// Activity: none recorded until the lead's version lands.
func (db *DB) Activity(ctx context.Context, tenant int64, q ActivityQuery) ([]Activity, error) {
	return nil, nil
}
