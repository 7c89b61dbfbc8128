package opsapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/entrasync/entrasync/store"
)

// ActivityQuery reads the activity filters a request asks for: failed,
// since (RFC 3339), user (an id or a userName), kind (push or pull), limit
// (1 to 1000) and cursor (a page's "next"). The CLI takes the same.
func ActivityQuery(q map[string][]string) (store.ActivityQuery, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	var aq store.ActivityQuery
	switch v := get("failed"); v {
	case "", "false":
	case "true":
		aq.Failed = true
	default:
		return aq, fmt.Errorf("failed must be true or false, not %q", v)
	}
	switch v := get("kind"); v {
	case "", store.ChannelPush, store.ChannelPull:
		aq.Channel = v
	default:
		return aq, fmt.Errorf("kind must be push or pull, not %q", v)
	}
	if v := get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return aq, fmt.Errorf("since must be an RFC 3339 time such as 2026-12-01T09:00:00Z, not %q", v)
		}
		aq.Since = t
	}
	if v := get("user"); len(v) > 256 {
		return aq, fmt.Errorf("user must be a user id or userName of at most 256 bytes")
	} else {
		aq.User = v
	}
	aq.Limit = 100
	if v := get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxActivityPage {
			return aq, fmt.Errorf("limit must be a whole number from 1 to %d", store.MaxActivityPage)
		}
		aq.Limit = n
	}
	if v := get("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return aq, fmt.Errorf("cursor %q is not one this API gave: pass a page's \"next\" as it is", v)
		}
		aq.Before = n
	}
	return aq, nil
}

// activityPage is a page of activity, newest first; next, when set, is the
// cursor of the page after.
type activityPage struct {
	Items []store.Activity `json:"items"`
	Next  string           `json:"next,omitempty"`
}

func (h *Handler) activity(w http.ResponseWriter, r *http.Request, tenant string) {
	q, err := ActivityQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	t, err := h.Worker.DB.Tenant(r.Context(), tenant)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	items, err := h.Worker.DB.Activity(r.Context(), t.ID, q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	page := activityPage{Items: items}
	if page.Items == nil {
		page.Items = []store.Activity{}
	}
	if len(items) == q.Limit {
		page.Next = strconv.FormatInt(items[len(items)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, page)
}
