package graph

import (
	"context"
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

// checkLink accepts a stored next or delta link only if it points at this
// client's Graph and at the expected delta endpoint: a link is data from
// storage, and must not send the bearer token anywhere else.
func (c *Client) checkLink(link, resource string) error {
	u, err := url.Parse(link)
	if err != nil {
		return errorf("a stored %s link is not a URL", resource)
	}
	if u.Scheme != c.graph.Scheme || !strings.EqualFold(u.Host, c.graph.Host) {
		return errorf("a stored %s link points at %s://%s, not at the configured Graph", resource, u.Scheme, u.Host)
	}
	if !strings.HasPrefix(u.Path, c.graph.Path+c.version+"/"+resource+"/delta") {
		return errorf("a stored %s link is not a %s delta link", resource, resource)
	}
	return nil
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
		if link != "" {
			if err := c.checkLink(link, "users"); err != nil {
				yield(UserPage{}, err)
				return
			}
		}
		prev := ""
		for page := 0; ; page++ {
			var resp users.DeltaGetResponseable
			var err error
			if link == "" && page == 0 {
				q := &users.DeltaRequestBuilderGetQueryParameters{Select: strings.Split(UserSelect, ",")}
				if filter != "" {
					q.Filter = &filter
				}
				resp, err = c.sdk.Users().Delta().GetAsDeltaGetResponse(ctx, &users.DeltaRequestBuilderGetRequestConfiguration{QueryParameters: q})
			} else {
				resp, err = c.sdk.Users().Delta().WithUrl(link).GetAsDeltaGetResponse(ctx, nil)
			}
			if err != nil {
				yield(UserPage{}, asError(err, permUsers))
				return
			}
			var p UserPage
			for _, u := range resp.GetValue() {
				p.Users = append(p.Users, userFrom(u))
			}
			next, delta := deref(resp.GetOdataNextLink()), deref(resp.GetOdataDeltaLink())
			if err := c.step(next, delta, prev, page, "users"); err != nil {
				yield(UserPage{}, err)
				return
			}
			p.DeltaLink = delta
			if !yield(p, nil) || delta != "" {
				return
			}
			prev, link = link, next
		}
	}
}

// step checks a page's links: exactly one of them, the next one new and on
// this Graph.
func (c *Client) step(next, delta, prev string, page int, resource string) error {
	switch {
	case next == "" && delta == "":
		return errorf("a %s delta page has neither a nextLink nor a deltaLink", resource)
	case next != "" && next == prev:
		return errorf("Graph repeated a %s nextLink", resource)
	case page >= maxPages:
		return errorf("a %s delta walk passed %d pages", resource, maxPages)
	case next != "":
		return c.checkLink(next, resource)
	}
	return c.checkLink(delta, resource)
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
		var err error
		if link == "" {
			f, err = idFilter("group", groupIDs)
		} else {
			err = c.checkLink(link, "groups")
		}
		if err != nil {
			yield(GroupPage{}, err)
			return
		}
		prev := ""
		for page := 0; ; page++ {
			var resp groups.DeltaGetResponseable
			if link == "" && page == 0 {
				resp, err = c.sdk.Groups().Delta().GetAsDeltaGetResponse(ctx, &groups.DeltaRequestBuilderGetRequestConfiguration{
					QueryParameters: &groups.DeltaRequestBuilderGetQueryParameters{Select: strings.Split(sel, ","), Filter: &f},
				})
			} else {
				resp, err = c.sdk.Groups().Delta().WithUrl(link).GetAsDeltaGetResponse(ctx, nil)
			}
			if err != nil {
				yield(GroupPage{}, asError(err, permGroupMembers))
				return
			}
			var p GroupPage
			for _, g := range resp.GetValue() {
				p.Groups = append(p.Groups, groupFrom(g))
			}
			next, delta := deref(resp.GetOdataNextLink()), deref(resp.GetOdataDeltaLink())
			if err := c.step(next, delta, prev, page, "groups"); err != nil {
				yield(GroupPage{}, err)
				return
			}
			p.DeltaLink = delta
			if !yield(p, nil) || delta != "" {
				return
			}
			prev, link = link, next
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
	q := url.Values{"$select": {UserSelect}, "$deltatoken": {"latest"}}
	raw := c.cfg.GraphURL + c.version + "/users/delta?" + q.Encode()
	resp, err := c.sdk.Users().Delta().WithUrl(raw).GetAsDeltaGetResponse(ctx, nil)
	if err != nil {
		return "", asError(err, permUsers)
	}
	link := deref(resp.GetOdataDeltaLink())
	if link == "" {
		return "", errorf("a $deltatoken=latest answer has no deltaLink")
	}
	return link, c.checkLink(link, "users")
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
// GET /directory/deletedItems/{id} once per id, a few at a time.
func (c *Client) DeletedUsers(ctx context.Context, ids []string) ([]string, error) {
	for _, id := range ids {
		if !ValidObjectID(id) {
			return nil, errorf("%q is not a user object id", id)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
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
		return nil, asError(err, "")
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
		e := asError(err, permUsers)
		if e.Status == http.StatusNotFound {
			return false, nil
		}
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
