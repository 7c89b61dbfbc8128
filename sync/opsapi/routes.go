package opsapi

import (
	"net/http"
	"slices"
	"strings"

	"github.com/entrasync/entrasync/store"
)

const (
	prefix      = "/ops/v1"
	openAPIPath = prefix + "/openapi.json"
)

// A route is one operation of the API. Its pattern's {tenant} and {id}
// parts match one non-empty path segment each.
type route struct {
	method  string
	pattern string
	role    store.OpsRole // what the key needs; "" for the public document
	what    string        // what the route does, as a 403 names it
	// ownPermit: the handler checks the key itself, since the role it needs
	// depends on the request (a full run needs admin).
	ownPermit bool
	handle    func(h *Handler, c *call)
	op        operation // its OpenAPI description
}

// call is one request matched to its route.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	key    store.OpsKey
	tenant string // the {tenant} part
	id     string // the {id} part
}

// routes is every route of the API.
var routes = []route{
	{method: "GET", pattern: openAPIPath, op: openAPIOp},
	{method: "GET", pattern: prefix + "/tenants", role: store.OpsRead, what: "reading tenants", handle: (*Handler).tenants, op: tenantsOp},
	{method: "GET", pattern: prefix + "/tenants/{tenant}", role: store.OpsRead, what: "reading tenants", handle: (*Handler).tenant, op: tenantOp},
	{method: "POST", pattern: prefix + "/tenants/{tenant}/sync", role: store.OpsSync, what: "starting runs", ownPermit: true,
		handle: func(h *Handler, c *call) { h.startSync(c.w, c.r, c.tenant, c.key) }, op: syncOp},
	{method: "GET", pattern: prefix + "/tenants/{tenant}/runs", role: store.OpsRead, what: "reading runs",
		handle: func(h *Handler, c *call) { h.runs(c.w, c.r, c.tenant) }, op: runsOp},
	{method: "GET", pattern: prefix + "/tenants/{tenant}/runs/{id}", role: store.OpsRead, what: "reading runs",
		handle: func(h *Handler, c *call) { h.run(c.w, c.r, c.tenant, c.id) }, op: runOp},
	{method: "GET", pattern: prefix + "/tenants/{tenant}/activity", role: store.OpsRead, what: "reading activity", handle: func(h *Handler, c *call) { h.activity(c.w, c.r, c.tenant) }, op: activityOp},
	{method: "GET", pattern: prefix + "/tenants/{tenant}/users", role: store.OpsRead, what: "reading users", handle: (*Handler).users, op: usersOp},
	{method: "GET", pattern: prefix + "/tenants/{tenant}/users/{id}", role: store.OpsRead, what: "reading users", handle: (*Handler).user, op: userOp},
	{method: "GET", pattern: prefix + "/tenants/{tenant}/groups", role: store.OpsRead, what: "reading groups", handle: (*Handler).groups, op: groupsOp},
	{method: "GET", pattern: prefix + "/tenants/{tenant}/groups/{id}/members", role: store.OpsRead, what: "reading groups", handle: (*Handler).members, op: membersOp},
}

// match reports whether path fits pattern, and its {tenant} and {id} parts.
func match(pattern, path string) (tenant, id string, ok bool) {
	ps, xs := strings.Split(pattern, "/"), strings.Split(strings.TrimSuffix(path, "/"), "/")
	if len(ps) != len(xs) {
		return "", "", false
	}
	for i, p := range ps {
		switch {
		case p == "{tenant}" && xs[i] != "":
			tenant = xs[i]
		case p == "{id}" && xs[i] != "":
			id = xs[i]
		case p != xs[i]:
			return "", "", false
		}
	}
	return tenant, id, true
}

// route finds the request's route and runs it after the key's checks:
// 404 for a path no route has, 405 (with Allow) for a method it lacks.
func (h *Handler) route(w http.ResponseWriter, r *http.Request, key store.OpsKey) {
	var allow []string
	for i := range routes {
		rt := &routes[i]
		tenant, id, ok := match(rt.pattern, r.URL.Path)
		if !ok {
			continue
		}
		if rt.method != r.Method {
			allow = append(allow, rt.method)
			continue
		}
		opsRequestOf(r).route = rt.pattern
		c := &call{w: w, r: r, key: key, tenant: tenant, id: id}
		switch {
		case rt.handle == nil: // the document, asked with a key
			writeJSON(w, http.StatusOK, Document())
			return
		case rt.ownPermit:
		case strings.Contains(rt.pattern, "{tenant}"):
			if !h.permit(w, r, key, tenant, rt.role, rt.what) {
				return
			}
		default:
			if !h.permitRole(w, r, key, rt.role, rt.what) {
				return
			}
		}
		rt.handle(h, c)
		return
	}
	if len(allow) > 0 {
		slices.Sort(allow)
		w.Header().Set("Allow", strings.Join(slices.Compact(allow), ", "))
		writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed here; use "+strings.Join(allow, " or "))
		return
	}
	writeError(w, http.StatusNotFound, "no such endpoint; the API is described at "+openAPIPath)
}
