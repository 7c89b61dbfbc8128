package scim

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/entrasync/entrasync/scim/filter"
	"github.com/entrasync/entrasync/scim/schema"
	"github.com/entrasync/entrasync/store"
)

// endpoint ties a SCIM resource type to its store kind and URL segment.
type endpoint struct {
	rt   *schema.ResourceType
	kind store.Kind
	name string // "Users"
	// related is the membership attribute this type shows: a user's groups,
	// a group's members.
	related string
}

var (
	userEndpoint  = &endpoint{rt: schema.UserType, kind: store.UserKind, name: "Users", related: "groups"}
	groupEndpoint = &endpoint{rt: schema.GroupType, kind: store.GroupKind, name: "Groups", related: "members"}
)

func (s *Server) location(ep *endpoint, id string) string { return s.base + "/" + ep.name + "/" + id }

func etag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// render builds the SCIM representation of a stored resource; related is
// its groups (user) or members (group), nil when not wanted.
func (s *Server) render(ep *endpoint, res store.Resource, related []any) map[string]any {
	out := make(map[string]any, len(res.Doc)+4)
	schemas := []any{ep.rt.Schema.ID}
	for k, v := range res.Doc {
		out[k] = v
	}
	for _, ext := range ep.rt.Extensions {
		if _, ok := res.Doc[ext.ID]; ok {
			schemas = append(schemas, ext.ID)
		}
	}
	out["schemas"] = schemas
	out["id"] = res.ID
	if len(related) > 0 {
		out[ep.related] = related
	}
	out["meta"] = s.meta(ep, res)
	return out
}

// meta is a resource's meta attribute (RFC 7643 §3.1).
func (s *Server) meta(ep *endpoint, res store.Resource) map[string]any {
	return map[string]any{
		"resourceType": ep.rt.Name,
		"created":      res.Created.UTC().Format("2006-01-02T15:04:05.000Z"),
		"lastModified": res.LastModified.UTC().Format("2006-01-02T15:04:05.000Z"),
		"location":     s.location(ep, res.ID),
		"version":      etag(res.Version),
	}
}

func (s *Server) groupValues(groups []store.GroupRef) []any {
	out := make([]any, len(groups))
	for i, g := range groups {
		v := map[string]any{"value": g.ID, "$ref": s.location(groupEndpoint, g.ID), "type": "direct"}
		if g.Display != "" {
			v["display"] = g.Display
		}
		out[i] = v
	}
	return out
}

// projection is what attributes= and excludedAttributes= ask for.
type projection struct {
	include []schema.Resolved // nil: the default set
	exclude []schema.Resolved
}

func parseProjection(rt *schema.ResourceType, attributes, excluded string) (projection, error) {
	var p projection
	var err error
	if p.include, err = resolveList(rt, attributes); err != nil {
		return p, err
	}
	p.exclude, err = resolveList(rt, excluded)
	return p, err
}

// resolveList resolves a comma-separated attribute list; names that are
// not attributes of rt are ignored, as RFC 7644 §3.9 allows.
func resolveList(rt *schema.ResourceType, list string) ([]schema.Resolved, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	out := []schema.Resolved{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		path, err := filter.ParsePath(name)
		if err != nil || path.Filter != nil {
			return nil, errorf(400, "invalidValue", "attribute list entry "+strconv.Quote(name)+" is not an attribute name")
		}
		if r, err := rt.Resolve(path); err == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// wants reports whether the top-level attribute name is returned.
func (p projection) wants(name string) bool {
	for _, r := range p.exclude {
		if r.Ext == nil && r.Attr != nil && r.Sub == nil && r.Attr.Name == name {
			return false
		}
	}
	if p.include == nil {
		return true
	}
	for _, r := range p.include {
		if r.Ext == nil && r.Attr != nil && r.Attr.Name == name {
			return true
		}
	}
	return false
}

// apply trims a rendered resource to the projection. id and schemas are
// always returned (RFC 7643 §7, returned "always").
func (p projection) apply(m map[string]any) map[string]any {
	if p.include != nil {
		out := map[string]any{"schemas": m["schemas"], "id": m["id"]}
		for _, r := range p.include {
			copyPath(out, m, r)
		}
		m = out
	}
	for _, r := range p.exclude {
		if r.Attr != nil && r.Attr.Returned == schema.Always {
			continue
		}
		deletePath(m, r)
	}
	return m
}

// container returns the map r's attribute lives in (the resource or its
// extension object).
func container(m map[string]any, r schema.Resolved, create bool) map[string]any {
	if r.Ext == nil {
		return m
	}
	ext, _ := m[r.Ext.ID].(map[string]any)
	if ext == nil && create {
		ext = map[string]any{}
		m[r.Ext.ID] = ext
	}
	return ext
}

func copyPath(dst, src map[string]any, r schema.Resolved) {
	from := container(src, r, false)
	if from == nil {
		return
	}
	if r.Attr == nil { // a whole extension
		dst[r.Ext.ID] = from
		return
	}
	v, ok := from[r.Attr.Name]
	if !ok {
		return
	}
	to := container(dst, r, true)
	if r.Sub == nil {
		to[r.Attr.Name] = v
		return
	}
	switch x := v.(type) {
	case map[string]any:
		if sv, ok := x[r.Sub.Name]; ok {
			cur, _ := to[r.Attr.Name].(map[string]any)
			if cur == nil {
				cur = map[string]any{}
			}
			cur[r.Sub.Name] = sv
			to[r.Attr.Name] = cur
		}
	case []any:
		var list []any
		for _, el := range x {
			if em, ok := el.(map[string]any); ok {
				if sv, ok := em[r.Sub.Name]; ok {
					list = append(list, map[string]any{r.Sub.Name: sv})
				}
			}
		}
		if list != nil {
			to[r.Attr.Name] = list
		}
	}
}

func deletePath(m map[string]any, r schema.Resolved) {
	if r.Attr == nil {
		delete(m, r.Ext.ID)
		return
	}
	c := container(m, r, false)
	if c == nil {
		return
	}
	if r.Sub == nil {
		delete(c, r.Attr.Name)
		return
	}
	switch x := c[r.Attr.Name].(type) {
	case map[string]any:
		delete(x, r.Sub.Name)
	case []any:
		for _, el := range x {
			if em, ok := el.(map[string]any); ok {
				delete(em, r.Sub.Name)
			}
		}
	}
}

// renderStored is render for a resource whose document is as the store
// keeps it (store.Query.RawDocs), with the default projection: the stored
// JSON is spliced into the answer instead of being decoded into a map and
// encoded again, which was a third of a lookup's handler time. ok is false
// when the document holds a key that render sets itself (not expected:
// the store keeps none): render it the usual way.
func (s *Server) renderStored(ep *endpoint, res store.Resource, related []any) (doc json.RawMessage, ok bool) {
	schemas := []string{ep.rt.Schema.ID}
	clash := false
	members := topLevelKeys(res.Raw, func(key string) {
		switch key {
		case "schemas", "id", "meta", ep.related:
			clash = true
		}
		for _, ext := range ep.rt.Extensions {
			if key == ext.ID {
				schemas = append(schemas, ext.ID)
			}
		}
	})
	if clash || members < 0 {
		return nil, false
	}
	head := map[string]any{"schemas": schemas, "id": res.ID, "meta": s.meta(ep, res)}
	if len(related) > 0 {
		head[ep.related] = related
	}
	b, err := marshal(head)
	if err != nil {
		return nil, false
	}
	if members == 0 {
		return b, true
	}
	// {head…} and {doc…} make {head…,doc…}.
	return append(append(b[:len(b)-1], ','), res.Raw[1:]...), true
}

// topLevelKeys calls fn with each key of the JSON object doc, as written
// (the store writes keys without escapes but for characters no attribute
// name has), and returns how many there are, or -1 when doc is not an
// object. doc must be valid JSON, as the store's documents are.
func topLevelKeys(doc string, fn func(key string)) int {
	i := skipSpace(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return -1
	}
	i = skipSpace(doc, i+1)
	if i < len(doc) && doc[i] == '}' {
		return 0
	}
	for n := 1; ; n++ {
		if i >= len(doc) || doc[i] != '"' {
			return -1
		}
		end := stringEnd(doc, i)
		if end < 0 {
			return -1
		}
		fn(doc[i+1 : end-1])
		i = skipSpace(doc, end)
		if i >= len(doc) || doc[i] != ':' {
			return -1
		}
		if i = valueEnd(doc, skipSpace(doc, i+1)); i < 0 {
			return -1
		}
		if i = skipSpace(doc, i); i >= len(doc) {
			return -1
		}
		switch doc[i] {
		case ',':
			i = skipSpace(doc, i+1)
		case '}':
			return n
		default:
			return -1
		}
	}
}

func skipSpace(doc string, i int) int {
	for i < len(doc) && (doc[i] == ' ' || doc[i] == '\t' || doc[i] == '\n' || doc[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at doc[i]
// (a quote), or -1.
func stringEnd(doc string, i int) int {
	for i++; i < len(doc); i++ {
		switch doc[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// valueEnd returns the index just past the JSON value starting at doc[i],
// or -1: a string to its closing quote, an object or array to its match,
// a number or literal up to the , or } after it.
func valueEnd(doc string, i int) int {
	depth := 0
	for i < len(doc) {
		switch doc[i] {
		case '"':
			if i = stringEnd(doc, i); i < 0 || depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return -1
}
