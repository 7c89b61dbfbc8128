package opsapi

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

// Pages: limit defaults to 100, at most store.MaxPage; cursor is opaque to
// clients (the last key of the page before, encoded), handed back as next
// while more remain.
const defaultLimit = 100

// Page is one page of a listing.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// paging is a request's limit and decoded cursor.
type paging struct {
	limit int
	after string
}

func cursorOf(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("c1:" + key))
}

func parsePaging(r *http.Request) (paging, error) {
	p := paging{limit: defaultLimit}
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxPage {
			return p, fmt.Errorf("limit must be a whole number from 1 to %d, not %q", store.MaxPage, v)
		}
		p.limit = n
	}
	if v := q.Get("cursor"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		key, ok := strings.CutPrefix(string(b), "c1:")
		if err != nil || !ok || key == "" {
			return p, fmt.Errorf("cursor %q is not one this API returned: pass the \"next\" of the page before, unchanged, or no cursor for the first page", v)
		}
		p.after = key
	}
	return p, nil
}

// page cuts items, read with one more than the limit, to the limit, and
// names the cursor of the next page when there is one.
func page[T any](items []T, limit int, key func(T) string) Page[T] {
	if items == nil {
		items = []T{}
	}
	if len(items) > limit {
		return Page[T]{Items: items[:limit], Next: cursorOf(key(items[limit-1]))}
	}
	return Page[T]{Items: items}
}

// TenantStatus is what the ops API and `entrasync status` tell of a tenant.
type TenantStatus struct {
	Name      string             `json:"name"`
	CreatedAt time.Time          `json:"createdAt"`
	Counts    store.TenantCounts `json:"counts"`
	LastPush  *store.Activity    `json:"lastPush"` // the newest push request recorded
	LastPull  *store.Run         `json:"lastPull"` // the newest run
	Health    sync.Health        `json:"health"`
}

// Status reads a tenant's status; defaultSchedule is the pull schedule of
// a connection that sets none (the sync_schedule setting).
func Status(ctx context.Context, db *store.DB, t store.Tenant, now time.Time, defaultSchedule string) (TenantStatus, error) {
	s := TenantStatus{Name: t.Name, CreatedAt: t.CreatedAt}
	var err error
	if s.Counts, err = db.Counts(ctx, t.ID); err != nil {
		return s, err
	}
	push, err := db.Activity(ctx, t.ID, store.ActivityQuery{Channel: store.ChannelPush, Limit: 1})
	if err != nil {
		return s, err
	}
	if len(push) > 0 {
		s.LastPush = &push[0]
	}
	runs, err := db.Runs(ctx, t.Name, 1)
	if err != nil {
		return s, err
	}
	if len(runs) > 0 {
		s.LastPull = &runs[0]
	}
	s.Health, err = sync.TenantHealth(ctx, db, t, now, defaultSchedule)
	return s, err
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// tenantOf resolves the call's tenant; false when it answered 404.
func (h *Handler) tenantOf(c *call) (store.Tenant, bool) {
	t, err := h.Worker.DB.Tenant(c.r.Context(), c.tenant)
	if err != nil {
		h.fail(c.w, c.r, err)
		return t, false
	}
	return t, true
}

// paramsTenant answers 400 when the request's parameters did not parse
// (bad), else finds the call's tenant as tenantOf does.
func (h *Handler) paramsTenant(c *call, bad error) (store.Tenant, bool) {
	if bad != nil {
		writeError(c.w, http.StatusBadRequest, bad.Error())
		return store.Tenant{}, false
	}
	return h.tenantOf(c)
}

func (h *Handler) tenants(c *call) {
	p, err := parsePaging(c.r)
	if err != nil {
		writeError(c.w, http.StatusBadRequest, err.Error())
		return
	}
	var only []string
	if !c.key.AllTenants() {
		only = append([]string{}, c.key.Tenants...)
	}
	ts, err := h.Worker.DB.TenantsPage(c.r.Context(), p.after, only, p.limit+1)
	if err != nil {
		h.fail(c.w, c.r, err)
		return
	}
	out := make([]TenantStatus, 0, len(ts))
	for _, t := range ts {
		s, err := Status(c.r.Context(), h.Worker.DB, t, h.now(), h.DefaultSchedule)
		if err != nil {
			h.fail(c.w, c.r, err)
			return
		}
		out = append(out, s)
	}
	writeJSON(c.w, http.StatusOK, page(out, p.limit, func(s TenantStatus) string { return s.Name }))
}

func (h *Handler) tenant(c *call) {
	t, ok := h.tenantOf(c)
	if !ok {
		return
	}
	s, err := Status(c.r.Context(), h.Worker.DB, t, h.now(), h.DefaultSchedule)
	if err != nil {
		h.fail(c.w, c.r, err)
		return
	}
	writeJSON(c.w, http.StatusOK, s)
}

// timeParam reads an RFC 3339 time; absent is the zero time.
func timeParam(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, fmt.Errorf("%s must be an RFC 3339 time such as 2025-01-02T15:04:05Z, not %q", name, v)
	}
	return t, nil
}

// User is a user as listed.
type User struct {
	ID           string    `json:"id"`
	UserName     string    `json:"userName"`
	DisplayName  string    `json:"displayName,omitempty"`
	Active       bool      `json:"active"`
	Emails       []any     `json:"emails,omitempty"`
	ExternalID   string    `json:"externalId,omitempty"`
	EntraID      string    `json:"entraObjectId,omitempty"`
	LastModified time.Time `json:"lastModified"`
}

// UserOf lists a stored user.
func UserOf(r store.Resource) User {
	emails, _ := r.Doc["emails"].([]any)
	return User{ID: r.ID, UserName: r.Str("userName"), DisplayName: r.Str("displayName"), Active: r.Active(), Emails: emails,
		ExternalID: r.Str("externalId"), EntraID: r.EntraID, LastModified: r.LastModified}
}

// UserDetail is one user, whole.
type UserDetail struct {
	User
	ManagedBy  string           `json:"managedBy"` // push, pull or both
	Attributes map[string]any   `json:"attributes"`
	Groups     []GroupRef       `json:"groups"`
	Activity   []store.Activity `json:"activity"` // the newest 20 records of it
}

// GroupRef names a group.
type GroupRef struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
}

// userQuery reads the users listing's filters.
func userQuery(r *http.Request) (store.UserQuery, error) {
	q := r.URL.Query()
	uq := store.UserQuery{Search: q.Get("search"), Group: q.Get("group")}
	if len(uq.Search) > 256 {
		return uq, fmt.Errorf("search is a prefix of at most 256 bytes")
	}
	switch v := q.Get("active"); v {
	case "":
	case "true", "false":
		b := v == "true"
		uq.Active = &b
	default:
		return uq, fmt.Errorf("active must be true or false, not %q", v)
	}
	var err error
	uq.ChangedSince, err = timeParam(r, "changedSince")
	return uq, err
}

func (h *Handler) users(c *call) {
	p, err := parsePaging(c.r)
	var uq store.UserQuery
	if err == nil {
		uq, err = userQuery(c.r)
	}
	t, ok := h.paramsTenant(c, err)
	if !ok {
		return
	}
	if uq.Group != "" {
		if _, err := h.Worker.DB.Get(c.r.Context(), t.ID, store.GroupKind, uq.Group); err != nil {
			h.fail(c.w, c.r, err)
			return
		}
	}
	uq.After, uq.Limit = p.after, p.limit+1
	rs, err := h.Worker.DB.UsersPage(c.r.Context(), t.ID, uq)
	if err != nil {
		h.fail(c.w, c.r, err)
		return
	}
	out := make([]User, len(rs))
	for i, r := range rs {
		out[i] = UserOf(r)
	}
	writeJSON(c.w, http.StatusOK, page(out, p.limit, func(u User) string { return u.ID }))
}

func (h *Handler) user(c *call) {
	t, ok := h.tenantOf(c)
	if !ok {
		return
	}
	ctx, db := c.r.Context(), h.Worker.DB
	r, err := db.Get(ctx, t.ID, store.UserKind, c.id)
	if err != nil {
		h.fail(c.w, c.r, err)
		return
	}
	d := UserDetail{User: UserOf(r), Attributes: r.Doc, Groups: []GroupRef{}}
	if d.ManagedBy, err = db.ManagedBy(ctx, t.ID, r.ID); err != nil {
		h.fail(c.w, c.r, err)
		return
	}
	groups, err := db.GroupsOf(ctx, t.ID, []string{r.ID})
	if err != nil {
		h.fail(c.w, c.r, err)
		return
	}
	for _, g := range groups[r.ID] {
		d.Groups = append(d.Groups, GroupRef{ID: g.ID, DisplayName: g.Display})
	}
	if d.Activity, err = db.Activity(ctx, t.ID, store.ActivityQuery{User: r.ID, Limit: 20}); err != nil {
		h.fail(c.w, c.r, err)
		return
	}
	if d.Activity == nil {
		d.Activity = []store.Activity{}
	}
	writeJSON(c.w, http.StatusOK, d)
}

// Group is a group as listed.
type Group struct {
	ID           string    `json:"id"`
	DisplayName  string    `json:"displayName"`
	ExternalID   string    `json:"externalId,omitempty"`
	EntraID      string    `json:"entraObjectId,omitempty"`
	LastModified time.Time `json:"lastModified"`
}

func (h *Handler) groups(c *call) {
	p, err := parsePaging(c.r)
	search := c.r.URL.Query().Get("search")
	if err == nil && len(search) > 256 {
		err = fmt.Errorf("search is a prefix of at most 256 bytes")
	}
	t, ok := h.paramsTenant(c, err)
	if !ok {
		return
	}
	rs, err := h.Worker.DB.GroupsPage(c.r.Context(), t.ID, store.GroupQuery{Search: search, After: p.after, Limit: p.limit + 1})
	if err != nil {
		h.fail(c.w, c.r, err)
		return
	}
	out := make([]Group, len(rs))
	for i, r := range rs {
		out[i] = Group{ID: r.ID, DisplayName: r.Str("displayName"), ExternalID: r.Str("externalId"), EntraID: r.EntraID, LastModified: r.LastModified}
	}
	writeJSON(c.w, http.StatusOK, page(out, p.limit, func(g Group) string { return g.ID }))
}

// Member is a member of a group.
type Member struct {
	ID          string     `json:"id"`
	Type        store.Kind `json:"type"` // User or Group
	DisplayName string     `json:"displayName"`
}

func (h *Handler) members(c *call) {
	p, err := parsePaging(c.r)
	t, ok := h.paramsTenant(c, err)
	if !ok {
		return
	}
	ctx := c.r.Context()
	if _, err := h.Worker.DB.Get(ctx, t.ID, store.GroupKind, c.id); err != nil {
		h.fail(c.w, c.r, err)
		return
	}
	ms, err := h.Worker.DB.MembersPage(ctx, t.ID, c.id, p.after, p.limit+1)
	if err != nil {
		h.fail(c.w, c.r, err)
		return
	}
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{ID: m.ID, Type: m.Kind, DisplayName: m.Display}
	}
	writeJSON(c.w, http.StatusOK, page(out, p.limit, func(m Member) string { return m.ID }))
}
