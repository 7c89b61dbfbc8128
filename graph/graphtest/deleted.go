package graphtest

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// deletedItemID reads the id from the segments after "directory":
// deletedItems/{id} (as the SDK and the docs spell it) or deletedItems('{id}')
// (OData key syntax), "deletedItems" in any case.
func deletedItemID(segs []string) (string, bool) {
	switch {
	case len(segs) == 2 && strings.EqualFold(segs[0], "deletedItems") && segs[1] != "":
		return segs[1], true
	case len(segs) == 1 && len(segs[0]) > len("deletedItems('')") &&
		strings.EqualFold(segs[0][:len("deletedItems('")], "deletedItems('") && strings.HasSuffix(segs[0], "')"):
		return segs[0][len("deletedItems('") : len(segs[0])-2], true
	}
	return "", false
}

// serveDeletedItem answers GET /v1.0/directory/deletedItems/{id}
// (https://learn.microsoft.com/graph/api/directory-deleteditems-get): a
// soft-deleted user or group as a directoryObject, with its @odata.type,
// the $select properties (the default ones without) and deletedDateTime.
// Anything else (active, permanently deleted, unknown) is not in the deleted
// items: 404. The permission needed depends on the object's type.
func (s *Server) serveDeletedItem(e *exchange, r *http.Request, d *Directory, c *tokenClaims, id string) {
	if r.Method != http.MethodGet {
		graphError(e, r, http.StatusMethodNotAllowed, "Request_BadRequest", "The requested HTTP method is not allowed on a deleted item.")
		return
	}
	if !c.allowed(permDeletedUser) && !c.allowed(permDeletedGroup) {
		denied(e, r)
		return
	}
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		graphError(e, r, http.StatusBadRequest, "BadRequest", "The query specified in the URI is not valid.")
		return
	}
	var sel *string
	for k, v := range vals {
		switch {
		case !strings.HasPrefix(k, "$"):
			continue // custom query options are ignored, as OData says
		case len(v) > 1:
			graphError(e, r, http.StatusBadRequest, "BadRequest", "Query option '"+k+"' was specified more than once, but it must be specified at most once.")
			return
		case strings.EqualFold(k, "$select"):
			sel = &v[0]
		default:
			graphError(e, r, http.StatusBadRequest, "Request_UnsupportedQuery", "The fake supports only $select on a deleted item.")
			return
		}
	}

	d.mu.Lock()
	var res string
	var deletedAt time.Time
	var user User
	var group Group
	if i, ok := d.lookupUser(id); ok && d.uState[i] == stSoftDeleted {
		res, user, deletedAt = "users", d.users[i], d.uDeleted[i]
	} else if i, ok := d.lookupGroup(id); ok && d.groups[i].state == stSoftDeleted {
		res, group, deletedAt = "groups", d.groups[i].g, d.groups[i].deletedAt
	}
	d.mu.Unlock()

	switch {
	case res == "":
		graphError(e, r, http.StatusNotFound, "Request_ResourceNotFound", "Resource '"+id+"' does not exist or one of its queried reference-property objects are not present.")
		return
	case res == "users" && !c.allowed(permDeletedUser), res == "groups" && !c.allowed(permDeletedGroup):
		denied(e, r)
		return
	}

	mask, withDeleted := selectMask(res, ""), true
	if res == "groups" {
		mask &^= 1 << gpMembers // a relationship, not a property
	}
	if sel != nil {
		var rest []string
		withDeleted = false
		for _, p := range strings.Split(*sel, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "deletedDateTime") {
				withDeleted = true
			} else {
				rest = append(rest, p)
			}
		}
		mask = 0
		if len(rest) > 0 {
			canon, bad := parseSelect(res, strings.Join(rest, ","))
			if bad != "" || (res == "groups" && strings.Contains(","+canon+",", ",members,")) {
				if bad == "" {
					bad = "members"
				}
				graphError(e, r, http.StatusBadRequest, "Request_BadRequest", "Could not find a property named '"+bad+"' on type 'microsoft.graph."+strings.TrimSuffix(res, "s")+"'.")
				return
			}
			mask = selectMask(res, canon)
		}
	}

	b := []byte(`{"@odata.context":"` + s.base + `/v1.0/$metadata#directoryObjects/$entity","@odata.type":"#microsoft.graph.` + strings.TrimSuffix(res, "s") + `",`)
	if withDeleted {
		b = append(b, `"deletedDateTime":"`...)
		b = deletedAt.AppendFormat(b, "2006-01-02T15:04:05Z")
		b = append(b, `",`...)
	}
	if res == "users" {
		b = appendUserProps(b, &user, mask)
	} else {
		b = appendGroupProps(b, &group, mask)
	}
	b = append(b, '}')
	writeBody(e, http.StatusOK, pageContentType, b)
}

// lookupUser finds a user slot by id, in any case (d.mu held).
func (d *Directory) lookupUser(id string) (int32, bool) {
	if i, ok := d.userIdx[id]; ok {
		return i, true
	}
	i, ok := d.userIdx[strings.ToLower(id)]
	return i, ok
}

// lookupGroup finds a group slot by id, in any case (d.mu held).
func (d *Directory) lookupGroup(id string) (int32, bool) {
	if i, ok := d.groupIdx[id]; ok {
		return i, true
	}
	i, ok := d.groupIdx[strings.ToLower(id)]
	return i, ok
}
