package graph

import (
	"context"
	"hash/fnv"
	"iter"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	gosync "sync"

	"github.com/microsoftgraph/msgraph-sdk-go/directory"
	"github.com/microsoftgraph/msgraph-sdk-go/groups"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"
)

// maxPages guards against a Graph that never ends a walk.
const maxPages = 1_000_000

var objectIDRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidObjectID reports whether id is an Entra object id (a GUID); only
// such ids are put into queries.
func ValidObjectID(id string) bool { return objectIDRE.MatchString(id) }

// checkLink accepts a next or delta link (what names it: "a stored", or
// "Graph's next") only if it points at this client's Graph and at the
// expected delta endpoint: a link is data, from storage or from an answer,
// and must not send the bearer token anywhere else. The error names the
// link's scheme and host, never its query (the tokens).
func (c *Client) checkLink(link, resource, what string) error {
	u, err := url.Parse(link)
	if err != nil {
		return errorf("%s %s delta link is not a URL", what, resource)
	}
	if u.Scheme != c.graph.Scheme || !strings.EqualFold(u.Host, c.graph.Host) {
		return errorf("%s %s delta link points at %s://%s, not at the configured Graph %s://%s", what, resource, u.Scheme, u.Host, c.graph.Scheme, c.graph.Host)
	}
	if !strings.HasPrefix(u.Path, c.graph.Path+c.version+"/"+resource+"/delta") {
		return errorf("%s %s delta link is not a %s delta link (its path is %s)", what, resource, resource, u.Path)
	}
	return nil
}

// deltaResponse is a page of users/delta or groups/delta as the SDK reads it.
type deltaResponse[T any] interface {
	GetValue() []T
	GetOdataNextLink() *string
	GetOdataDeltaLink() *string
}

// deltaWalk is one delta walk: how to ask for its first page and for a
// link, and how to hand on a page.
type deltaWalk[T any, R deltaResponse[T]] struct {
	resource, permission string
	link                 string // where to start; "" for first
	first                func(ctx context.Context) (R, error)
	follow               func(ctx context.Context, link string) (R, error)
	page                 func(values []T, deltaLink string) bool // false stops
}

// run follows the walk to its deltaLink, checking every page's links:
// exactly one of nextLink and deltaLink, on this Graph, and no nextLink
// seen before in the walk (a loop).
func (w deltaWalk[T, R]) run(ctx context.Context, c *Client) error {
	ctx = withFailureSlot(ctx)
	if w.link != "" {
		if err := c.checkLink(w.link, w.resource, "a stored"); err != nil {
			return err
		}
	}
	seen := map[uint64]bool{}
	link := w.link
	for page := 0; ; page++ {
		var resp R
		var err error
		if link == "" {
			resp, err = w.first(ctx)
		} else {
			resp, err = w.follow(ctx, link)
		}
		if err != nil {
			return c.fail(ctx, err, "GET /"+w.resource+"/delta", w.permission)
		}
		next, delta := deref(resp.GetOdataNextLink()), deref(resp.GetOdataDeltaLink())
		switch {
		case next == "" && delta == "":
			return errorf("a %s delta page has neither a nextLink nor a deltaLink", w.resource)
		case next != "" && delta != "":
			return errorf("a %s delta page has both a nextLink and a deltaLink", w.resource)
		case page+1 >= maxPages && delta == "":
			return errorf("a %s delta walk passed %d pages", w.resource, maxPages)
		case next != "":
			h := linkHash(next)
			if seen[h] || next == link {
				return errorf("Graph repeated a %s nextLink: the walk would not end", w.resource)
			}
			seen[h] = true
			if err := c.checkLink(next, w.resource, "Graph's next"); err != nil {
				return err
			}
		default:
			if err := c.checkLink(delta, w.resource, "Graph's"); err != nil {
				return err
			}
		}
		if !w.page(resp.GetValue(), delta) || delta != "" {
			return nil
		}
		link = next
	}
}

// linkHash keeps a walk's seen links small: a walk may have many pages.
func linkHash(link string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(link))
	return h.Sum64()
}

// UsersDelta walks /users/delta from link (a stored delta link, or "" for
// a new walk of every user) and yields its pages; the last carries the
// delta link for the next walk. Stop early by breaking out of the loop.
func (c *Client) UsersDelta(ctx context.Context, link string) iter.Seq2[UserPage, error] {
	return c.usersWalk(ctx, link, "")
}

// usersWalk is UsersDelta; a new walk (link "") is restricted by filter
// when it is not "".
func (c *Client) usersWalk(ctx context.Context, link, filter string) iter.Seq2[UserPage, error] {
	return func(yield func(UserPage, error) bool) {
		stopped := false
		err := deltaWalk[models.Userable, users.DeltaGetResponseable]{
			resource: "users", permission: permUsers, link: link,
			first: func(ctx context.Context) (users.DeltaGetResponseable, error) {
				q := &users.DeltaRequestBuilderGetQueryParameters{Select: strings.Split(UserSelect, ",")}
				if filter != "" {
					q.Filter = &filter
				}
				return c.sdk.Users().Delta().GetAsDeltaGetResponse(ctx, &users.DeltaRequestBuilderGetRequestConfiguration{QueryParameters: q})
			},
			follow: func(ctx context.Context, link string) (users.DeltaGetResponseable, error) {
				return c.sdk.Users().Delta().WithUrl(link).GetAsDeltaGetResponse(ctx, nil)
			},
			page: func(values []models.Userable, deltaLink string) bool {
				p := UserPage{DeltaLink: deltaLink}
				for _, u := range values {
					p.Users = append(p.Users, userFrom(u))
				}
				stopped = !yield(p, nil)
				return !stopped
			},
		}.run(ctx, c)
		if err != nil && !stopped {
			yield(UserPage{}, err)
		}
	}
}

// idFilter is the $filter that restricts a users or groups delta to ids
// (the only filter delta takes).
func idFilter(kind string, ids []string) (string, error) {
	if len(ids) == 0 || len(ids) > maxFilterIDs {
		return "", errorf("a %ss delta takes 1 to %d %s ids, not %d", kind, maxFilterIDs, kind, len(ids))
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		if !ValidObjectID(id) {
			return "", errorf("%q is not a %s object id", id, kind)
		}
		parts[i] = "id eq '" + strings.ToLower(id) + "'"
	}
	return strings.Join(parts, " or "), nil
}

// GroupsDelta walks /groups/delta for the given groups (at most
// MaxGroupsPerQuery), members selected, from link or, when link is "",
// from the start. A group whose members span pages comes back on each.
func (c *Client) GroupsDelta(ctx context.Context, link string, groupIDs []string) iter.Seq2[GroupPage, error] {
	return c.groupsWalk(ctx, link, groupIDs, GroupSelect)
}

// groupsWalk is GroupsDelta with the properties a new walk selects.
func (c *Client) groupsWalk(ctx context.Context, link string, groupIDs []string, sel string) iter.Seq2[GroupPage, error] {
	return func(yield func(GroupPage, error) bool) {
		var f string
		if link == "" {
			var err error
			if f, err = idFilter("group", groupIDs); err != nil {
				yield(GroupPage{}, err)
				return
			}
		}
		stopped := false
		err := deltaWalk[models.Groupable, groups.DeltaGetResponseable]{
			resource: "groups", permission: permGroupMembers, link: link,
			first: func(ctx context.Context) (groups.DeltaGetResponseable, error) {
				return c.sdk.Groups().Delta().GetAsDeltaGetResponse(ctx, &groups.DeltaRequestBuilderGetRequestConfiguration{
					QueryParameters: &groups.DeltaRequestBuilderGetQueryParameters{Select: strings.Split(sel, ","), Filter: &f},
				})
			},
			follow: func(ctx context.Context, link string) (groups.DeltaGetResponseable, error) {
				return c.sdk.Groups().Delta().WithUrl(link).GetAsDeltaGetResponse(ctx, nil)
			},
			page: func(values []models.Groupable, deltaLink string) bool {
				p := GroupPage{DeltaLink: deltaLink}
				for _, g := range values {
					p.Groups = append(p.Groups, groupFrom(g))
				}
				stopped = !yield(p, nil)
				return !stopped
			},
		}.run(ctx, c)
		if err != nil && !stopped {
			yield(GroupPage{}, err)
		}
	}
}

// ExistingGroups returns those of ids (MaxGroupsPerQuery at most) that are
// groups Graph has; deleted ones (soft or hard) are left out. It reads a
// groups delta restricted to the ids, without members, to its end and
// drops the delta link (GroupMember.Read.All suffices).
func (c *Client) ExistingGroups(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var out []string
	for p, err := range c.groupsWalk(ctx, "", ids, "id,displayName") {
		if err != nil {
			return nil, err
		}
		for _, g := range p.Groups {
			if g.Removed == "" {
				out = append(out, g.ID)
			}
		}
	}
	return out, nil
}

// LatestUsersLink returns a users delta link for "from now on"
// ($deltatoken=latest), without listing anyone.
func (c *Client) LatestUsersLink(ctx context.Context) (string, error) {
	ctx = withFailureSlot(ctx)
	q := url.Values{"$select": {UserSelect}, "$deltatoken": {"latest"}}
	raw := c.cfg.GraphURL + c.version + "/users/delta?" + q.Encode()
	resp, err := c.sdk.Users().Delta().WithUrl(raw).GetAsDeltaGetResponse(ctx, nil)
	if err != nil {
		return "", c.fail(ctx, err, "GET /users/delta", permUsers)
	}
	link := deref(resp.GetOdataDeltaLink())
	if link == "" {
		return "", errorf("a $deltatoken=latest answer has no deltaLink")
	}
	return link, c.checkLink(link, "users", "Graph's")
}

// UsersByID looks users up by object id (MaxIDsPerLookup at most). Ids
// that name no existing user (deleted, or never a user) are left out.
//
// It reads a users delta restricted to the ids (User.Read.All suffices, where
// directoryObjects/getByIds needs Directory.Read.All) to its end and drops
// the delta link: one request for up to 50 people, more only when Graph
// splits the answer into pages.
func (c *Client) UsersByID(ctx context.Context, ids []string) ([]User, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	filter, err := idFilter("user", ids)
	if err != nil {
		return nil, err
	}
	var out []User
	for p, err := range c.usersWalk(ctx, "", filter) {
		if err != nil {
			return nil, err
		}
		for _, u := range p.Users {
			if u.Removed == "" {
				out = append(out, u)
			}
		}
	}
	return out, nil
}

// deletedLookups bounds the deleted-items requests one DeletedUsers call
// has in flight.
const deletedLookups = 4

// DeletedUsers returns those of ids that are users in Entra's deleted items:
// soft-deleted, restorable for 30 days. An id that is not there (permanently
// deleted, never a user, or an active user) is left out. It asks
// GET /directory/deletedItems/{id} once per id, a few at a time. Give user
// ids: a deleted group's id needs Group.Read.All, which the pull does not
// ask for (Graph answers 403).
func (c *Client) DeletedUsers(ctx context.Context, ids []string) ([]string, error) {
	for _, id := range ids {
		if !ValidObjectID(id) {
			return nil, errorf("%q is not a user object id", id)
		}
	}
	ctx, cancel := context.WithCancel(withFailureSlot(ctx))
	defer cancel()
	deleted := make([]bool, len(ids))
	var (
		wg       gosync.WaitGroup
		once     gosync.Once
		firstErr error
	)
	sem := make(chan struct{}, deletedLookups)
	for i, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ok, err := c.deletedUser(ctx, id)
			if err != nil {
				once.Do(func() { firstErr = err; cancel() })
				return
			}
			deleted[i] = ok
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, c.fail(ctx, err, "", "")
	}
	var out []string
	for i, id := range ids {
		if deleted[i] {
			out = append(out, id)
		}
	}
	return out, nil
}

// deletedUser reports whether id is a user in the deleted items.
func (c *Client) deletedUser(ctx context.Context, id string) (bool, error) {
	obj, err := c.sdk.Directory().DeletedItems().ByDirectoryObjectId(id).Get(ctx, &directory.DeletedItemsDirectoryObjectItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &directory.DeletedItemsDirectoryObjectItemRequestBuilderGetQueryParameters{Select: []string{"id"}},
	})
	if err != nil {
		e := c.describe(ctx, err, "GET /directory/deletedItems/{id}", permUsers)
		if e.Status == http.StatusNotFound {
			return false, nil // permanently deleted: an answer, not a failure
		}
		noteError(ctx, e)
		return false, e
	}
	_, isUser := obj.(models.Userable)
	return isUser, nil
}

func userFrom(u models.Userable) User {
	out := User{
		ID:                strings.ToLower(deref(u.GetId())),
		UserPrincipalName: deref(u.GetUserPrincipalName()),
		DisplayName:       deref(u.GetDisplayName()),
		GivenName:         deref(u.GetGivenName()),
		Surname:           deref(u.GetSurname()),
		Mail:              deref(u.GetMail()),
		AccountEnabled:    u.GetAccountEnabled(),
		JobTitle:          deref(u.GetJobTitle()),
		Department:        deref(u.GetDepartment()),
		EmployeeID:        deref(u.GetEmployeeId()),
		CompanyName:       deref(u.GetCompanyName()),
		MobilePhone:       deref(u.GetMobilePhone()),
		BusinessPhones:    u.GetBusinessPhones(),
		PreferredLanguage: deref(u.GetPreferredLanguage()),
		City:              deref(u.GetCity()),
		Country:           deref(u.GetCountry()),
		EmployeeType:      deref(u.GetEmployeeType()),
	}
	out.Removed = removedReason(u.GetAdditionalData())
	return out
}

func groupFrom(g models.Groupable) Group {
	out := Group{
		ID:          strings.ToLower(deref(g.GetId())),
		DisplayName: deref(g.GetDisplayName()),
		Description: deref(g.GetDescription()),
		Removed:     removedReason(g.GetAdditionalData()),
	}
	list, _ := g.GetAdditionalData()["members@delta"].([]any)
	for _, item := range list {
		m, _ := item.(map[string]any)
		id := strings.ToLower(rawString(m["id"]))
		if id == "" {
			continue
		}
		_, removed := m["@removed"]
		out.Members = append(out.Members, MemberChange{
			ID:      id,
			Group:   strings.EqualFold(rawString(m["@odata.type"]), "#microsoft.graph.group"),
			Removed: removed,
		})
	}
	return out
}

// removedReason reads the @removed annotation the SDK leaves in the
// additional data.
func removedReason(extra map[string]any) string {
	r, ok := extra["@removed"]
	if !ok {
		return ""
	}
	m, _ := r.(map[string]any)
	if reason := rawString(m["reason"]); reason != "" {
		return reason
	}
	return "changed"
}

// rawString reads a string the JSON parse node kept as *string or string.
func rawString(v any) string {
	switch s := v.(type) {
	case *string:
		return deref(s)
	case string:
		return s
	}
	return ""
}
