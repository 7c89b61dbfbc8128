package graphtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Properties the fake serves, in the order it writes them. Graph writes id
// after the selected properties; so does the fake.
var userProps = []string{
	"businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
	"preferredLanguage", "surname", "userPrincipalName", "accountEnabled", "city", "companyName",
	"country", "department", "employeeId", "employeeType", "usageLocation", "id",
}

const (
	upBusinessPhones = iota
	upDisplayName
	upGivenName
	upJobTitle
	upMail
	upMobilePhone
	upOfficeLocation
	upPreferredLanguage
	upSurname
	upUserPrincipalName
	upAccountEnabled
	upCity
	upCompanyName
	upCountry
	upDepartment
	upEmployeeID
	upEmployeeType
	upUsageLocation
)

// userDefaultMask is what users/delta returns without $select: Graph's
// default user properties (businessPhones .. userPrincipalName). Notably
// not accountEnabled: a client must select it.
const userDefaultMask = 1<<(upUserPrincipalName+1) - 1

var groupProps = []string{"displayName", "description", "mailNickname", "securityEnabled", "mailEnabled", "id", "members"}

const (
	gpDisplayName = iota
	gpDescription
	gpMailNickname
	gpSecurityEnabled
	gpMailEnabled
	gpID
	gpMembers
)

// groupDefaultMask: without $select groups/delta returns every property
// and members@delta.
const groupDefaultMask = 1<<(gpMembers+1) - 1

// maxFilterIDs is Graph's limit of id clauses in a delta $filter.
const maxFilterIDs = 50

func propList(res string) []string {
	if res == "users" {
		return userProps
	}
	return groupProps
}

// selectMask turns a canonical $select ("" = default) into a property mask.
func selectMask(res, sel string) uint32 {
	if sel == "" {
		if res == "users" {
			return userDefaultMask
		}
		return groupDefaultMask
	}
	var m uint32
	props := propList(res)
	for _, p := range strings.Split(sel, ",") {
		for i, name := range props {
			if name == p {
				m |= 1 << i
			}
		}
	}
	return m
}

// parseSelect canonicalises a $select list: names matched without regard
// to case, written in the fake's order. It returns the unknown name if any.
func parseSelect(res, raw string) (string, string) {
	props := propList(res)
	var m uint32
	for _, p := range strings.Split(raw, ",") {
		p = strings.TrimSpace(p)
		found := false
		for i, name := range props {
			if strings.EqualFold(name, p) {
				m |= 1 << i
				found = true
			}
		}
		if !found {
			return "", p
		}
	}
	var names []string
	for i, name := range props {
		if m&(1<<i) != 0 {
			names = append(names, name)
		}
	}
	return strings.Join(names, ","), ""
}

// parseFilter accepts only what Graph's delta accepts: id eq '...' clauses
// joined by "or". It returns the ids sorted and de-duplicated.
func parseFilter(raw string) ([]string, bool) {
	var toks []string
	for i := 0; i < len(raw); {
		switch c := raw[i]; {
		case c == ' ' || c == '\t':
			i++
		case c == '\'':
			var lit strings.Builder
			lit.WriteByte('\'')
			j := i + 1
			for ; j < len(raw); j++ {
				if raw[j] == '\'' {
					if j+1 < len(raw) && raw[j+1] == '\'' {
						lit.WriteByte('\'')
						j++
						continue
					}
					break
				}
				lit.WriteByte(raw[j])
			}
			if j >= len(raw) {
				return nil, false // unterminated literal
			}
			toks = append(toks, lit.String())
			i = j + 1
		default:
			j := i
			for j < len(raw) && raw[j] != ' ' && raw[j] != '\t' && raw[j] != '\'' {
				j++
			}
			toks = append(toks, raw[i:j])
			i = j
		}
	}
	var ids []string
	for k := 0; ; k += 4 {
		if len(toks) < k+3 || !strings.EqualFold(toks[k], "id") || !strings.EqualFold(toks[k+1], "eq") ||
			!strings.HasPrefix(toks[k+2], "'") || len(toks[k+2]) < 2 {
			return nil, false
		}
		ids = append(ids, toks[k+2][1:])
		if len(toks) == k+3 {
			break
		}
		if !strings.EqualFold(toks[k+3], "or") {
			return nil, false
		}
	}
	sort.Strings(ids)
	out := ids[:1]
	for _, id := range ids[1:] {
		if id != out[len(out)-1] {
			out = append(out, id)
		}
	}
	return out, true
}

// walk is the state a skip token or delta token carries, so paging needs no
// server-side state. Keys are short to keep links short.
type walk struct {
	Kind   string `json:"k"` // "skip" or "delta"
	Tenant string `json:"t"`
	Res    string `json:"r"`           // "users" or "groups"
	Sel    string `json:"s,omitempty"` // canonical $select; "" = default
	Filter string `json:"f,omitempty"` // sorted ids joined by ","; "" = none
	From   uint64 `json:"a,omitempty"` // change-log position the walk reports changes after
	To     uint64 `json:"b,omitempty"` // head when the walk began; the next delta's From
	Init   bool   `json:"i,omitempty"` // initial walk: current objects only, no removals
	Cur    int    `json:"c,omitempty"` // next object slot to look at
	Mem    int    `json:"m,omitempty"` // next member slot of object Cur (groups)
	Page   int    `json:"n,omitempty"`
	Replay int    `json:"ro,omitempty"` // 1 + slot of an object to send again (Replays)
	RMem   int    `json:"rm,omitempty"` // its first member slot
	Issued int64  `json:"at"`           // Unix ms on the server's clock
	Gen    uint64 `json:"g"`
}

func (w *walk) sameQuery(sel, filter string) bool { return w.Sel == sel && w.Filter == filter }

// macSize bytes of HMAC-SHA256 precede the JSON in a token.
const macSize = 16

func (s *Server) seal(w *walk) string {
	payload, err := json.Marshal(w)
	if err != nil {
		panic(err)
	}
	m := hmac.New(sha256.New, s.key)
	m.Write(payload)
	buf := make([]byte, 0, macSize+len(payload))
	buf = append(m.Sum(buf)[:macSize], payload...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// open checks a token's signature, kind, tenant, resource, generation and
// age. Any failure means "resync", as Graph answers.
func (s *Server) open(tok, kind, tenant, res string) (*walk, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) <= macSize {
		return nil, false
	}
	m := hmac.New(sha256.New, s.key)
	m.Write(raw[macSize:])
	if !hmac.Equal(m.Sum(nil)[:macSize], raw[:macSize]) {
		return nil, false
	}
	var w walk
	if json.Unmarshal(raw[macSize:], &w) != nil {
		return nil, false
	}
	s.mu.Lock()
	gen := s.gen
	s.mu.Unlock()
	age := s.opts.Now().Sub(time.UnixMilli(w.Issued))
	if w.Kind != kind || w.Tenant != tenant || w.Res != res || w.Gen != gen || age > s.opts.TokenTTL {
		return nil, false
	}
	return &w, true
}

func (s *Server) resync(w http.ResponseWriter, r *http.Request, res string) {
	if s.opts.ResyncAs400 {
		graphError(w, r, http.StatusBadRequest, "resyncRequired",
			"Resync required. Replace any local cached copies of the directory objects with the results of a new delta query without a delta token.")
		return
	}
	w.Header().Set("Location", s.base+"/v1.0/"+res+"/delta?$deltatoken=")
	graphError(w, r, http.StatusGone, "syncStateNotFound", "The sync state generation is not found. Please resync.")
}

func (s *Server) serveDelta(e *exchange, r *http.Request, res string, d *Directory) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		graphError(e, r, http.StatusBadRequest, "BadRequest", "The query specified in the URI is not valid.")
		return
	}
	var sel, filter, skip, delta *string
	for k, v := range vals {
		if !strings.HasPrefix(k, "$") {
			continue // custom query options are ignored, as OData says
		}
		if len(v) > 1 {
			graphError(e, r, http.StatusBadRequest, "BadRequest", "Query option '"+k+"' was specified more than once, but it must be specified at most once.")
			return
		}
		switch strings.ToLower(k) {
		case "$select":
			sel = &v[0]
		case "$filter":
			filter = &v[0]
		case "$skiptoken":
			skip = &v[0]
		case "$deltatoken":
			delta = &v[0]
		default:
			graphError(e, r, http.StatusBadRequest, "Request_UnsupportedQuery", "Unsupported query option '"+k+"' on delta: the server chooses the page size and order, and delta supports only $select, $filter (by id), $deltatoken and $skiptoken.")
			return
		}
	}

	var qSel, qFilter string
	if sel != nil {
		canon, bad := parseSelect(res, *sel)
		if bad != "" {
			graphError(e, r, http.StatusBadRequest, "Request_BadRequest", "Could not find a property named '"+bad+"' on type 'microsoft.graph."+strings.TrimSuffix(res, "s")+"'.")
			return
		}
		qSel = canon
	}
	if filter != nil {
		ids, ok := parseFilter(*filter)
		if !ok {
			graphError(e, r, http.StatusBadRequest, "Request_UnsupportedQuery", "Unsupported query: delta accepts only a $filter of the form id eq '...' or id eq '...'.")
			return
		}
		if len(ids) > maxFilterIDs {
			graphError(e, r, http.StatusBadRequest, "Request_UnsupportedQuery", "Too many id values in the filter: a delta query accepts at most 50.")
			return
		}
		qFilter = strings.Join(ids, ",")
	}
	explicit := sel != nil || filter != nil

	s.mu.Lock()
	gen := s.gen
	s.mu.Unlock()
	now := s.opts.Now().UnixMilli()
	tenant := d.id
	var w *walk
	switch {
	case skip != nil && delta != nil:
		graphError(e, r, http.StatusBadRequest, "BadRequest", "$skiptoken and $deltatoken cannot be used together.")
		return
	case skip != nil:
		t, ok := s.open(*skip, "skip", tenant, res)
		if !ok || (explicit && !t.sameQuery(qSel, qFilter)) {
			s.resync(e, r, res)
			return
		}
		w = t
	case delta != nil && strings.EqualFold(*delta, "latest"):
		w = &walk{Kind: "delta", Tenant: tenant, Res: res, Sel: qSel, Filter: qFilter, To: d.position(), Issued: now, Gen: gen}
		s.writePage(e, r, d, w, true)
		return
	case delta != nil && *delta != "":
		t, ok := s.open(*delta, "delta", tenant, res)
		if !ok || (explicit && !t.sameQuery(qSel, qFilter)) {
			s.resync(e, r, res)
			return
		}
		w = &walk{Kind: "skip", Tenant: tenant, Res: res, Sel: t.Sel, Filter: t.Filter, From: t.To, To: d.position(), Issued: now, Gen: gen}
	default: // no token, or the empty one a 410's Location carries: a full walk
		w = &walk{Kind: "skip", Tenant: tenant, Res: res, Sel: qSel, Filter: qFilter, Init: true, To: d.position(), Issued: now, Gen: gen}
	}
	if w.From > w.To {
		s.resync(e, r, res)
		return
	}
	s.writePage(e, r, d, w, false)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// pageContentType is what Graph sends with collection pages.
const pageContentType = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"

// writePage builds one page in a pooled buffer, holding the directory lock
// only while the objects are written into it, then sends it.
func (s *Server) writePage(e *exchange, r *http.Request, d *Directory, w *walk, latest bool) {
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"@odata.context":"`...)
	b = append(b, s.base...)
	b = append(b, "/v1.0/$metadata#"...)
	b = append(b, w.Res...)
	if w.Sel != "" {
		b = append(b, '(')
		b = append(b, w.Sel...)
		b = append(b, ')')
	}
	b = append(b, `","value":[`...)
	var next *walk
	if !latest {
		o := pageOpts{size: s.opts.PageSize, members: s.opts.MembersPerPage, replays: s.opts.Replays && !w.Init}
		d.mu.Lock()
		switch {
		case s.opts.EmptyPages && w.Page%4 == 0:
			nw := *w
			nw.Page++
			next = &nw
		case w.Res == "users":
			b, next = d.usersPage(b, w, o)
		default:
			b, next = d.groupsPage(b, w, o)
		}
		d.mu.Unlock()
	}
	b = append(b, ']')
	if next != nil {
		b = append(b, `,"@odata.nextLink":`...)
		b = appendJSONString(b, s.base+"/v1.0/"+w.Res+"/delta?$skiptoken="+s.seal(next))
	} else {
		s.mu.Lock()
		gen := s.gen
		s.mu.Unlock()
		dt := &walk{Kind: "delta", Tenant: w.Tenant, Res: w.Res, Sel: w.Sel, Filter: w.Filter, To: w.To, Issued: s.opts.Now().UnixMilli(), Gen: gen}
		if gen != w.Gen {
			dt.Gen = w.Gen // expired while walking: the link is stale too
		}
		b = append(b, `,"@odata.deltaLink":`...)
		b = appendJSONString(b, s.base+"/v1.0/"+w.Res+"/delta?$deltatoken="+s.seal(dt))
	}
	b = append(b, '}')

	requestID := newGUID()
	h := e.Header()
	h.Set("request-id", requestID)
	if c := r.Header.Get("client-request-id"); c != "" {
		h.Set("client-request-id", c)
	} else {
		h.Set("client-request-id", requestID)
	}
	writeBody(e, http.StatusOK, pageContentType, b)
	if cap(b) <= 1<<20 { // don't keep huge buffers around
		*bp = b
		bufPool.Put(bp)
	}
}

type pageOpts struct {
	size, members int
	replays       bool
}

// filterSlots returns the slots a filtered walk looks at, ascending (nil
// without a filter).
func filterSlots(filter string, idx map[string]int32) []int {
	if filter == "" {
		return nil
	}
	var slots []int
	for _, id := range strings.Split(filter, ",") {
		if i, ok := idx[id]; ok {
			slots = append(slots, int(i))
		}
	}
	sort.Ints(slots)
	return slots
}

// nextSlot returns the first slot >= from, among cands when filtered, for
// which ok holds; -1 when none is left.
func nextSlot(from, n int, filtered bool, cands []int, ok func(int) bool) int {
	if filtered {
		for _, i := range cands[sort.SearchInts(cands, from):] {
			if ok(i) {
				return i
			}
		}
		return -1
	}
	for i := from; i < n; i++ {
		if ok(i) {
			return i
		}
	}
	return -1
}

// usersPage writes the users of one page into b (d.mu held) and returns the
// state of the next page, or nil when the walk is complete.
func (d *Directory) usersPage(b []byte, w *walk, o pageOpts) ([]byte, *walk) {
	mask := selectMask("users", w.Sel)
	cands := filterSlots(w.Filter, d.userIdx)
	ok := func(i int) bool {
		if w.Init {
			return d.uState[i] == stActive
		}
		return d.uSeq[i] > w.From
	}
	first := true
	emit := func(i int) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = d.appendUser(b, i, mask)
	}
	if o.replays && w.Replay > 0 && w.Replay-1 < len(d.users) && ok(w.Replay-1) {
		emit(w.Replay - 1) // Graph replays: an object from the previous page again
	}
	i := nextSlot(w.Cur, len(d.users), w.Filter != "", cands, ok)
	last := -1
	for n := 0; i >= 0 && n < o.size; n++ {
		emit(i)
		if o.replays && n == 0 {
			emit(i) // and the same object twice on one page
		}
		last = i
		i = nextSlot(i+1, len(d.users), w.Filter != "", cands, ok)
	}
	if i < 0 {
		return b, nil
	}
	nw := *w
	nw.Cur, nw.Mem, nw.Page, nw.Replay = i, 0, w.Page+1, last+1
	return b, &nw
}

func (d *Directory) appendUser(b []byte, i int, mask uint32) []byte {
	switch d.uState[i] {
	case stSoftDeleted:
		return appendRemoved(b, d.users[i].ID, "changed")
	case stHardDeleted:
		return appendRemoved(b, d.users[i].ID, "deleted")
	}
	b = append(b, '{')
	b = appendUserProps(b, &d.users[i], mask)
	return append(b, '}')
}

// appendUserProps writes a user's selected properties and its id as JSON
// members, without braces.
func appendUserProps(b []byte, u *User, mask uint32) []byte {
	for p := 0; p < len(userProps)-1; p++ {
		if mask&(1<<p) == 0 {
			continue
		}
		b = append(b, '"')
		b = append(b, userProps[p]...)
		b = append(b, `":`...)
		switch p {
		case upBusinessPhones:
			b = append(b, '[')
			for k, ph := range u.BusinessPhones {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, ph)
			}
			b = append(b, ']')
		case upAccountEnabled:
			b = appendBool(b, u.AccountEnabled)
		default:
			b = appendNullable(b, userString(u, p))
		}
		b = append(b, ',')
	}
	b = append(b, `"id":`...)
	return appendJSONString(b, u.ID)
}

func userString(u *User, p int) string {
	switch p {
	case upDisplayName:
		return u.DisplayName
	case upGivenName:
		return u.GivenName
	case upJobTitle:
		return u.JobTitle
	case upMail:
		return u.Mail
	case upMobilePhone:
		return u.MobilePhone
	case upOfficeLocation:
		return u.OfficeLocation
	case upPreferredLanguage:
		return u.PreferredLanguage
	case upSurname:
		return u.Surname
	case upUserPrincipalName:
		return u.UserPrincipalName
	case upCity:
		return u.City
	case upCompanyName:
		return u.CompanyName
	case upCountry:
		return u.Country
	case upDepartment:
		return u.Department
	case upEmployeeID:
		return u.EmployeeID
	case upEmployeeType:
		return u.EmployeeType
	case upUsageLocation:
		return u.UsageLocation
	}
	return ""
}

// groupsPage is usersPage for groups. A group whose member changes do not
// fit in o.members ends the page; the next page starts with the same group
// and the rest of its members.
func (d *Directory) groupsPage(b []byte, w *walk, o pageOpts) ([]byte, *walk) {
	mask := selectMask("groups", w.Sel)
	cands := filterSlots(w.Filter, d.groupIdx)
	ok := func(i int) bool {
		if w.Init {
			return d.groups[i].state == stActive
		}
		return d.groups[i].seq > w.From
	}
	first := true
	emit := func(i, slot int) int {
		if !first {
			b = append(b, ',')
		}
		first = false
		var more int
		b, more = d.appendGroup(b, i, slot, mask, w, o.members)
		return more
	}
	if o.replays && w.Replay > 0 && w.Replay-1 < len(d.groups) && ok(w.Replay-1) {
		emit(w.Replay-1, w.RMem)
	}
	i := nextSlot(w.Cur, len(d.groups), w.Filter != "", cands, ok)
	slot := 0
	if i == w.Cur {
		slot = w.Mem
	}
	last, lastMem := -1, 0
	for n := 0; i >= 0 && n < o.size; n++ {
		more := emit(i, slot)
		if o.replays && n == 0 {
			emit(i, slot)
		}
		last, lastMem = i, slot
		if more >= 0 {
			slot = more
			break
		}
		i, slot = nextSlot(i+1, len(d.groups), w.Filter != "", cands, ok), 0
	}
	if i < 0 {
		return b, nil
	}
	nw := *w
	nw.Cur, nw.Mem, nw.Page, nw.Replay, nw.RMem = i, slot, w.Page+1, last+1, lastMem
	return b, &nw
}

// appendGroup writes group i with its member changes from member slot on,
// at most limit of them. It returns the slot to continue from, or -1.
func (d *Directory) appendGroup(b []byte, i, slot int, mask uint32, w *walk, limit int) ([]byte, int) {
	g := d.groups[i]
	switch g.state {
	case stSoftDeleted:
		return appendRemoved(b, g.g.ID, "changed"), -1
	case stHardDeleted:
		return appendRemoved(b, g.g.ID, "deleted"), -1
	}
	b = append(b, '{')
	b = appendGroupProps(b, &g.g, mask)
	more := -1
	if mask&(1<<gpMembers) != 0 {
		ok := func(m *member) bool {
			if w.Init {
				return m.present && d.refActive(m.ref)
			}
			// Hard deletes remove members silently; a deleted object's
			// membership is hidden until it is restored.
			return m.seq > w.From && !m.silent && (!m.present || d.refActive(m.ref))
		}
		n := 0
		for j := slot; j < len(g.members); j++ {
			m := &g.members[j]
			if !ok(m) {
				continue
			}
			if n == limit {
				more = j
				break
			}
			if n == 0 {
				b = append(b, `,"members@delta":[`...)
			} else {
				b = append(b, ',')
			}
			n++
			b = append(b, `{"@odata.type":"#microsoft.graph.`...)
			if m.ref&1 == 1 {
				b = append(b, `group","id":`...)
			} else {
				b = append(b, `user","id":`...)
			}
			b = appendJSONString(b, d.refID(m.ref))
			if !m.present {
				b = append(b, `,"@removed":{"reason":"deleted"}`...)
			}
			b = append(b, '}')
		}
		if n > 0 {
			b = append(b, ']')
		}
	}
	return append(b, '}'), more
}

// appendGroupProps writes a group's selected properties (members aside)
// and its id as JSON members, without braces.
func appendGroupProps(b []byte, g *Group, mask uint32) []byte {
	if mask&(1<<gpDisplayName) != 0 {
		b = append(b, `"displayName":`...)
		b = appendNullable(b, g.DisplayName)
		b = append(b, ',')
	}
	if mask&(1<<gpDescription) != 0 {
		b = append(b, `"description":`...)
		b = appendNullable(b, g.Description)
		b = append(b, ',')
	}
	if mask&(1<<gpMailNickname) != 0 {
		b = append(b, `"mailNickname":`...)
		b = appendNullable(b, g.MailNickname)
		b = append(b, ',')
	}
	if mask&(1<<gpSecurityEnabled) != 0 {
		b = append(b, `"securityEnabled":`...)
		b = appendBool(b, g.SecurityEnabled)
		b = append(b, ',')
	}
	if mask&(1<<gpMailEnabled) != 0 {
		b = append(b, `"mailEnabled":`...)
		b = appendBool(b, g.MailEnabled)
		b = append(b, ',')
	}
	b = append(b, `"id":`...)
	return appendJSONString(b, g.ID)
}

func appendRemoved(b []byte, id, reason string) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"@removed":{"reason":"`...)
	b = append(b, reason...)
	return append(b, `"}}`...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, "true"...)
	}
	return append(b, "false"...)
}

// appendNullable writes "" as null, the way Graph sends unset properties.
func appendNullable(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s as a JSON string without allocating.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
