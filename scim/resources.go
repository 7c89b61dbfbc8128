package scim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/entrasync/entrasync/scim/filter"
	"github.com/entrasync/entrasync/scim/patch"
	"github.com/entrasync/entrasync/scim/schema"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

const (
	defaultCount = 100
	maxCount     = 1000 // advertised as filter.maxResults
	// writeAttempts bounds how often a PUT or PATCH is redone when a
	// concurrent write moved the resource's version between its read and
	// its write.
	writeAttempts = 5
)

func (s *Server) resource(w http.ResponseWriter, r *http.Request, ep *endpoint, id string) {
	if id != "" && id != ".search" {
		n := noteOf(r.Context())
		n.resourceType, n.resourceID = string(ep.kind), id
	}
	var err error
	switch {
	case id == "" && isGet(r):
		err = s.list(w, r, ep, r.URL.Query())
	case id == "" && r.Method == http.MethodPost:
		err = s.create(w, r, ep)
	case id == ".search" && r.Method == http.MethodPost:
		err = s.search(w, r, ep)
	case id != "" && id != ".search" && isGet(r):
		err = s.getOne(w, r, ep, id)
	case id != "" && id != ".search" && r.Method == http.MethodPut:
		err = s.replace(w, r, ep, id)
	case id != "" && id != ".search" && r.Method == http.MethodPatch:
		err = s.patch(w, r, ep, id)
	case id != "" && id != ".search" && r.Method == http.MethodDelete:
		err = s.delete(w, r, ep, id)
	default:
		allow := "GET, HEAD, PUT, PATCH, DELETE"
		switch id {
		case "":
			allow = "GET, HEAD, POST"
		case ".search":
			allow = "POST"
		}
		w.Header().Set("Allow", allow)
		err = errorf(http.StatusMethodNotAllowed, "", r.Method+" is not allowed here")
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

// isGet reports whether r reads: GET, or HEAD (the same headers, no body;
// RFC 9110 §9.3.2).
func isGet(r *http.Request) bool { return r.Method == http.MethodGet || r.Method == http.MethodHead }

// readResource reads and normalises a POST or PUT body. For a group it
// also returns the member ids named, and whether members were given.
func (s *Server) readResource(w http.ResponseWriter, r *http.Request, ep *endpoint) (map[string]any, []string, bool, error) {
	var in map[string]any
	if err := s.readJSON(w, r, &in); err != nil {
		return nil, nil, false, err
	}
	if in == nil {
		return nil, nil, false, errorf(http.StatusBadRequest, "invalidSyntax", "the body must be a JSON object")
	}
	doc, err := ep.rt.Normalize(in)
	if err != nil {
		return nil, nil, false, err
	}
	if err := s.limits.Check(ep.rt, doc); err != nil {
		return nil, nil, false, err
	}
	if ep.kind != store.GroupKind {
		return doc, nil, false, nil
	}
	raw := doc["members"]
	delete(doc, "members")
	list, _ := raw.([]any)
	ids := []string{}
	for _, m := range list {
		el, _ := m.(map[string]any)
		if v, ok := el["value"].(string); ok && v != "" {
			ids = append(ids, v)
		} else {
			return nil, nil, false, errorf(http.StatusBadRequest, "invalidValue", "each member needs a \"value\" with the member's id")
		}
	}
	// "members": [] empties the group; "members": null, like no members
	// at all, is not given (RFC 7643 §2.5: null is unassigned).
	return doc, ids, hasNonNull(in, "members"), nil
}

// hasNonNull reports whether m has key, in any case, with a value that is
// not null.
func hasNonNull(m map[string]any, key string) bool {
	for k, v := range m {
		if strings.EqualFold(k, key) && v != nil {
			return true
		}
	}
	return false
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, ep *endpoint) error {
	doc, members, _, err := s.readResource(w, r, ep)
	if err != nil {
		return err
	}
	res := &store.Resource{Kind: ep.kind, ID: store.NewID(), Doc: doc}
	cs := sync.ChangeSet{{Op: sync.Create, Resource: res}}
	if len(members) > 0 {
		cs = append(cs, sync.Change{Op: sync.AddMembers, ID: res.ID, Members: members})
	}
	t := tenantOf(r.Context())
	_, effects, err := sync.ApplyTold(r.Context(), s.db, t.ID, cs)
	if err != nil {
		return err
	}
	noteWrite(r, ep, res.ID, effects)
	w.Header().Set("Location", s.location(ep, res.ID))
	// A resource just created is in no group yet: nothing to look up.
	return s.answer(w, r, ep, *res, http.StatusCreated, projection{}, nil)
}

// respond renders res with its related memberships, as the projection
// asks. A group's members are streamed (see writeGroup).
func (s *Server) respond(w http.ResponseWriter, r *http.Request, ep *endpoint, res store.Resource, status int, p projection) error {
	related, err := s.related(r, ep, []store.Resource{res}, p)
	if err != nil {
		return err
	}
	return s.answer(w, r, ep, res, status, p, related[res.ID])
}

// answer writes res with the given related values (its groups).
func (s *Server) answer(w http.ResponseWriter, r *http.Request, ep *endpoint, res store.Resource, status int, p projection, related []any) error {
	w.Header().Set("ETag", etag(res.Version))
	doc := p.apply(s.render(ep, res, related))
	if !s.streamsMembers(ep, p) {
		writeJSON(w, status, doc)
		return nil
	}
	return s.streamGroups(w, r, status, []groupDoc{{id: res.ID, doc: doc}}, nil, p)
}

// related loads the groups of users, unless the projection leaves them
// out. A user is in few groups; a group's members, which may be many, are
// not loaded here but streamed as the answer is written.
func (s *Server) related(r *http.Request, ep *endpoint, list []store.Resource, p projection) (map[string][]any, error) {
	if len(list) == 0 || !wantsGroups(ep, p) {
		return map[string][]any{}, nil
	}
	ids := make([]string, len(list))
	for i, res := range list {
		ids[i] = res.ID
	}
	groups, err := s.db.GroupsOf(r.Context(), tenantOf(r.Context()).ID, ids)
	if err != nil {
		return nil, err
	}
	return s.groupsValues(groups), nil
}

// wantsGroups tells whether users' groups are to be shown.
func wantsGroups(ep *endpoint, p projection) bool {
	return ep.kind == store.UserKind && p.wants(ep.related)
}

// groupsValues renders users' groups, by user id.
func (s *Server) groupsValues(groups map[string][]store.GroupRef) map[string][]any {
	out := make(map[string][]any, len(groups))
	for id, g := range groups {
		out[id] = s.groupValues(g)
	}
	return out
}

func (s *Server) getOne(w http.ResponseWriter, r *http.Request, ep *endpoint, id string) error {
	q := r.URL.Query()
	p, err := parseProjection(ep.rt, q.Get("attributes"), q.Get("excludedAttributes"))
	if err != nil {
		return err
	}
	res, err := s.db.Get(r.Context(), tenantOf(r.Context()).ID, ep.kind, id)
	if err != nil {
		return err
	}
	noteRead(r, ep, res)
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag(res.Version) {
		w.Header().Set("ETag", inm)
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	return s.respond(w, r, ep, res, http.StatusOK, p)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, ep *endpoint, q map[string][]string) error {
	get := func(k string) string {
		for key, v := range q { // parameter names are case-insensitive in practice
			if strings.EqualFold(key, k) && len(v) > 0 {
				return v[0]
			}
		}
		return ""
	}
	return s.runList(w, r, ep, get("filter"), get("startIndex"), get("count"), get("attributes"), get("excludedAttributes"))
}

// search is POST /.search (RFC 7644 §3.4.3): the list parameters in a body.
func (s *Server) search(w http.ResponseWriter, r *http.Request, ep *endpoint) error {
	var body map[string]any
	if err := s.readJSON(w, r, &body); err != nil {
		return err
	}
	str := func(k string) (string, error) {
		for key, v := range body {
			if !strings.EqualFold(key, k) {
				continue
			}
			switch x := v.(type) {
			case string:
				return x, nil
			case json.Number:
				return x.String(), nil
			case []any:
				parts := make([]string, 0, len(x))
				for _, p := range x {
					ps, ok := p.(string)
					if !ok {
						return "", errorf(http.StatusBadRequest, "invalidValue", k+" must list attribute names")
					}
					parts = append(parts, ps)
				}
				return strings.Join(parts, ","), nil
			case nil:
				return "", nil
			}
			return "", errorf(http.StatusBadRequest, "invalidValue", k+" has the wrong type")
		}
		return "", nil
	}
	var vals [5]string
	for i, k := range []string{"filter", "startIndex", "count", "attributes", "excludedAttributes"} {
		v, err := str(k)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	return s.runList(w, r, ep, vals[0], vals[1], vals[2], vals[3], vals[4])
}

func (s *Server) runList(w http.ResponseWriter, r *http.Request, ep *endpoint, filterText, startText, countText, attributes, excluded string) error {
	start, err := intParam("startIndex", startText, 1)
	if err != nil {
		return err
	}
	count, err := intParam("count", countText, defaultCount)
	if err != nil {
		return err
	}
	start = max(start, 1)
	count = min(max(count, 0), maxCount)
	p, err := parseProjection(ep.rt, attributes, excluded)
	if err != nil {
		return err
	}
	// A page's users and their groups are one query; with the default
	// projection their stored documents are spliced into the answer.
	stored := ep.kind == store.UserKind && p.include == nil && p.exclude == nil
	q := store.Query{StartIndex: start, Count: count, Groups: wantsGroups(ep, p), RawDocs: stored}
	if strings.TrimSpace(filterText) != "" {
		expr, err := filter.Parse(filterText)
		if err != nil {
			return err
		}
		if q.Filter, q.CaseExact, err = ep.rt.CanonicalFilter(expr); err != nil {
			return err
		}
	}
	page, err := s.db.List(r.Context(), tenantOf(r.Context()).ID, ep.kind, q)
	if err != nil {
		return filterError(err)
	}
	noteList(r, ep, q.Filter != nil, len(page.Resources), page.Total)
	related := s.groupsValues(page.Groups)
	head := listHead{Schemas: []string{schema.ListResponseURN}, TotalResults: page.Total, StartIndex: start, ItemsPerPage: len(page.Resources)}
	if s.streamsMembers(ep, p) {
		groups := make([]groupDoc, len(page.Resources))
		for i, res := range page.Resources {
			groups[i] = groupDoc{id: res.ID, doc: p.apply(s.render(ep, res, nil))}
		}
		return s.streamGroups(w, r, http.StatusOK, groups, &head, p)
	}
	resources := make([]any, len(page.Resources))
	for i, res := range page.Resources {
		if stored {
			doc, ok := s.renderStored(ep, res, related[res.ID])
			if ok {
				resources[i] = doc
				continue
			}
			if res.Doc, err = res.Decode(); err != nil {
				return err
			}
		}
		resources[i] = p.apply(s.render(ep, res, related[res.ID]))
	}
	writeJSON(w, http.StatusOK, listResponse{listHead: head, Resources: resources})
	return nil
}

func intParam(name, text string, dflt int) (int, error) {
	if strings.TrimSpace(text) == "" {
		return dflt, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(text))
	if err != nil {
		return 0, errorf(http.StatusBadRequest, "invalidValue", name+" must be an integer, not "+strconv.Quote(text))
	}
	return n, nil
}

// ifMatch checks an If-Match header against the stored version.
func ifMatch(r *http.Request, res store.Resource) error {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" || h == "*" {
		return nil
	}
	for _, tag := range strings.Split(h, ",") {
		tag = strings.TrimSpace(tag)
		if tag == etag(res.Version) || "W/"+tag == etag(res.Version) {
			return nil
		}
	}
	return errorf(http.StatusPreconditionFailed, "", "the resource has changed: its version is now "+etag(res.Version))
}

// pinned reports whether the client named the version it writes over
// (If-Match with an entity tag): then a moved version is its 412, not a
// reason to redo the request.
func pinned(r *http.Request) bool {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	return h != "" && h != "*"
}

// readEvaluateWrite runs attempt: read the resource from the read pool,
// work out and encode the change, and apply it guarded by the version read,
// so that the write transaction holds only that check and the writes. This
// process's writes of the resource queue (resourceLocks); when a write from
// elsewhere moved the version in between, the whole attempt is redone
// (unless the client pinned the version), at most writeAttempts times.
func (s *Server) readEvaluateWrite(r *http.Request, ep *endpoint, id string, attempt func() error) error {
	unlock, err := s.writing.lock(r.Context(), resourceKey{tenantOf(r.Context()).ID, ep.kind, id}, s.db.WriteWait())
	if err != nil {
		return err
	}
	defer unlock()
	for n := 1; ; n++ {
		err := attempt()
		if store.ErrorCode(err) != store.Precondition || pinned(r) {
			return err
		}
		if n == writeAttempts {
			return &store.Error{Code: store.Busy, RetryAfter: time.Second,
				Message: "the resource changed " + strconv.Itoa(n) + " times while this request was applied to it; retry"}
		}
	}
}

func (s *Server) replace(w http.ResponseWriter, r *http.Request, ep *endpoint, id string) error {
	doc, members, membersGiven, err := s.readResource(w, r, ep)
	if err != nil {
		return err
	}
	t := tenantOf(r.Context())
	err = s.readEvaluateWrite(r, ep, id, func() error {
		cur, err := s.db.Get(r.Context(), t.ID, ep.kind, id)
		if err != nil {
			return err
		}
		if err := ifMatch(r, cur); err != nil {
			return err
		}
		res := &store.Resource{Kind: ep.kind, ID: id, EntraID: cur.EntraID, Doc: doc}
		cs := sync.ChangeSet{{Op: sync.Update, Resource: res, IfVersion: cur.Version}}
		// Members left out of a PUT are kept: a client that omits them must
		// not empty a group by accident (RFC 7644 §3.5.1 leaves this to us).
		if membersGiven {
			cs = append(cs, sync.Change{Op: sync.SetMembers, ID: id, Members: members})
		}
		_, effects, err := sync.ApplyTold(r.Context(), s.db, t.ID, cs)
		noteWrite(r, ep, id, effects)
		return err
	})
	if err != nil {
		return err
	}
	return s.reread(w, r, ep, id)
}

// reread answers with the stored resource after a write that may have
// changed more than the document (memberships bump a group's version).
func (s *Server) reread(w http.ResponseWriter, r *http.Request, ep *endpoint, id string) error {
	res, err := s.db.Get(r.Context(), tenantOf(r.Context()).ID, ep.kind, id)
	if err != nil {
		return err
	}
	return s.respond(w, r, ep, res, http.StatusOK, projection{})
}

func (s *Server) readPatch(w http.ResponseWriter, r *http.Request) ([]patch.Operation, error) {
	var body map[string]any
	if err := s.readJSON(w, r, &body); err != nil {
		return nil, err
	}
	var raw any
	found := false
	for k, v := range body {
		if strings.EqualFold(k, "Operations") {
			raw, found = v, true
		}
	}
	list, ok := raw.([]any)
	if !found || !ok {
		return nil, errorf(http.StatusBadRequest, "invalidSyntax", "a PatchOp needs an \"Operations\" array")
	}
	ops := make([]patch.Operation, 0, len(list))
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, errorf(http.StatusBadRequest, "invalidSyntax", "operation "+strconv.Itoa(i+1)+" is not an object")
		}
		var op patch.Operation
		for k, v := range m {
			switch strings.ToLower(k) {
			case "op":
				op.Op, ok = v.(string)
				if !ok {
					return nil, errorf(http.StatusBadRequest, "invalidSyntax", "operation "+strconv.Itoa(i+1)+": op must be a string")
				}
			case "path":
				if v != nil {
					if op.Path, ok = v.(string); !ok {
						return nil, errorf(http.StatusBadRequest, "invalidPath", "operation "+strconv.Itoa(i+1)+": path must be a string")
					}
				}
			case "value":
				op.Value = v
			}
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, ep *endpoint, id string) error {
	ops, err := s.readPatch(w, r)
	if err != nil {
		return err
	}
	t := tenantOf(r.Context())
	// Read, patch and encode before the write, which checks the version read.
	err = s.readEvaluateWrite(r, ep, id, func() error {
		cur, err := s.db.Get(r.Context(), t.ID, ep.kind, id)
		if err != nil {
			return err
		}
		if err := ifMatch(r, cur); err != nil {
			return err
		}
		doc, memberOps, err := patch.ApplyWithin(ep.rt, cur.Doc, ops, s.limits)
		if err != nil {
			return err
		}
		var cs sync.ChangeSet
		// A PATCH that leaves the document as it read it (a group's member
		// changes, or a replay) writes no document, so needs no version
		// guard either: member changes do not depend on what was read, and
		// concurrent member PATCHes of one group then never redo each
		// other. An If-Match is still checked where the writes happen.
		if !store.SameDoc(doc, cur.Doc) || pinned(r) {
			res := &store.Resource{Kind: ep.kind, ID: id, EntraID: cur.EntraID, Doc: doc}
			cs = append(cs, sync.Change{Op: sync.Update, Resource: res, IfVersion: cur.Version})
		}
		name, _ := doc["displayName"].(string) // as this PATCH leaves it; its resource lock keeps it so
		for _, m := range memberOps {
			op := map[string]sync.Op{"add": sync.AddMembers, "remove": sync.RemoveMembers, "set": sync.SetMembers}[m.Kind]
			cs = append(cs, sync.Change{Op: op, ID: id, Members: m.IDs, Subject: name})
		}
		_, effects, err := sync.ApplyTold(r.Context(), s.db, t.ID, cs)
		noteWrite(r, ep, id, effects)
		return err
	})
	if err != nil {
		return err
	}
	if ep.kind == store.GroupKind {
		// Returning every member of a large group is what Entra asks us
		// not to do: 204, as RFC 7644 §3.5.2 allows.
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return s.reread(w, r, ep, id)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, ep *endpoint, id string) error {
	t := tenantOf(r.Context())
	cs := sync.ChangeSet{{Op: sync.Delete, Kind: ep.kind, ID: id}}
	if r.Header.Get("If-Match") != "" {
		cur, err := s.db.Get(r.Context(), t.ID, ep.kind, id)
		if err != nil {
			return err
		}
		if err := ifMatch(r, cur); err != nil {
			return err
		}
		if pinned(r) {
			cs[0].IfVersion = cur.Version
		}
	}
	_, effects, err := sync.ApplyTold(r.Context(), s.db, t.ID, cs)
	if err != nil {
		return err
	}
	noteWrite(r, ep, id, effects)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
