// Package patch applies SCIM PATCH operations (RFC 7644 §3.5.2) to a
// resource document, as a pure function: it reads a document and returns a
// new one, touching nothing else. It accepts every form Microsoft Entra ID
// (default and aadOptscim062020) and Okta send: capitalised ops, booleans
// as "True"/"False", path-less replaces whose value keys are paths,
// filtered paths, and member changes by value list or by filter.
package patch

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/entrasync/entrasync/scim/filter"
	"github.com/entrasync/entrasync/scim/schema"
)

// Operation is one PATCH operation as sent.
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// MemberOp is a membership change a PATCH asks of a group. Group members
// are not part of the document, so they come back separately, in order.
type MemberOp struct {
	Kind string // "add", "remove" or "set" (the whole membership)
	IDs  []string
}

// Apply applies ops, in order, to a copy of doc. Either every operation
// applies or Apply returns an error (*schema.Error) and no document.
func Apply(rt *schema.ResourceType, doc map[string]any, ops []Operation) (map[string]any, []MemberOp, error) {
	return ApplyWithin(rt, doc, ops, schema.Limits{})
}

// ApplyWithin is Apply that keeps the document within limits: the element
// count of every multi-valued attribute after each operation (each
// operation is linear in the elements it scans, so a long list of them
// over a list grown past the limit would not be), and all of lim.Check on
// the result.
func ApplyWithin(rt *schema.ResourceType, doc map[string]any, ops []Operation, lim schema.Limits) (map[string]any, []MemberOp, error) {
	if doc == nil {
		doc = map[string]any{}
	}
	p := &patcher{rt: rt, doc: deepCopy(doc).(map[string]any)}
	for i, op := range ops {
		err := p.apply(op)
		if err == nil {
			err = lim.CheckValues(rt, p.doc)
		}
		if err != nil {
			if se, ok := err.(*schema.Error); ok && len(ops) > 1 {
				se.Detail = fmt.Sprintf("operation %d: %s", i+1, se.Detail)
			}
			return nil, nil, err
		}
	}
	if err := rt.CheckRequired(p.doc); err != nil {
		return nil, nil, err
	}
	if err := lim.Check(rt, p.doc); err != nil {
		return nil, nil, err
	}
	return p.doc, p.members, nil
}

type patcher struct {
	rt      *schema.ResourceType
	doc     map[string]any
	members []MemberOp
}

func (p *patcher) apply(op Operation) error {
	kind := strings.ToLower(strings.TrimSpace(op.Op))
	switch kind {
	case "add", "replace", "remove":
	default:
		return schema.Errorf("invalidSyntax", "op must be add, replace or remove, not %q", op.Op)
	}
	if strings.TrimSpace(op.Path) == "" {
		if kind == "remove" {
			return schema.Errorf("noTarget", "a remove operation needs a path")
		}
		m, ok := op.Value.(map[string]any)
		if !ok {
			return schema.Errorf("invalidValue", "an %s without a path needs an object value", kind)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if strings.EqualFold(k, "schemas") {
				continue
			}
			if err := p.applyPath(kind, k, m[k], true); err != nil {
				return err
			}
		}
		return nil
	}
	return p.applyPath(kind, op.Path, op.Value, false)
}

// applyPath applies one operation at path. inValue marks keys of a
// path-less value object, where read-only attributes (Okta sends the id)
// are ignored rather than refused.
func (p *patcher) applyPath(kind, rawPath string, v any, inValue bool) error {
	path, err := filter.ParsePath(rawPath)
	if err != nil {
		return schema.Errorf("invalidPath", "%v", err)
	}
	r, err := p.rt.Resolve(path)
	if _, unknown := err.(*schema.ErrUnknown); unknown {
		return nil // attributes we do not keep are dropped, as on POST
	}
	if err != nil {
		return err
	}
	if r.Attr == nil { // the extension URN itself
		return p.extension(kind, r.Ext, v)
	}
	// The target, so that read-only sub-attributes (manager.displayName) are
	// refused too.
	switch r.Target().Mutability {
	case schema.ReadOnly:
		if inValue {
			return nil
		}
		return schema.Errorf("mutability", "%s is read-only", r.Target().Name)
	case schema.WriteOnly:
		return nil // accepted, never stored
	}
	if r.Ext == nil && r.Attr.Name == "members" && p.rt == schema.GroupType {
		return p.memberOp(kind, path, v)
	}
	container := p.doc
	if r.Ext != nil {
		ext, _ := p.doc[r.Ext.ID].(map[string]any)
		if ext == nil {
			ext = map[string]any{}
		}
		container = ext
		defer func() {
			if len(ext) > 0 {
				p.doc[r.Ext.ID] = ext
			} else {
				delete(p.doc, r.Ext.ID)
			}
		}()
	}
	switch {
	case path.Filter != nil:
		return p.filtered(kind, container, path, r, v)
	case r.Sub != nil:
		return subOp(kind, container, r, v)
	default:
		return wholeOp(kind, container, r.Attr, v)
	}
}

func (p *patcher) extension(kind string, ext *schema.Schema, v any) error {
	if kind == "remove" {
		delete(p.doc, ext.ID)
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return schema.Errorf("invalidValue", "%s needs an object value", ext.ID)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := p.applyPath(kind, ext.ID+":"+k, m[k], true); err != nil {
			return err
		}
	}
	return nil
}

// wholeOp applies an operation to an attribute as a whole.
func wholeOp(kind string, container map[string]any, a *schema.Attribute, v any) error {
	if kind == "remove" {
		if a.MultiValued && v != nil {
			// Entra's default form: remove just the listed values.
			gone, _, err := schema.Value(a, v)
			if err != nil {
				return err
			}
			keep := removeValues(asList(container[a.Name]), asList(gone))
			setOrDelete(container, a.Name, keep)
			return nil
		}
		delete(container, a.Name)
		return nil
	}
	nv, ok, err := schema.Value(a, v)
	if err != nil {
		return err
	}
	switch {
	case !ok && kind == "replace":
		delete(container, a.Name)
	case !ok: // add of nothing
	case a.MultiValued && kind == "add":
		container[a.Name] = appendValues(asList(container[a.Name]), nv.([]any))
	case a.MultiValued:
		container[a.Name] = exclusivePrimary(nv.([]any), nil)
	case a.Type == schema.Complex:
		// Sub-attributes not named are kept (RFC 7644 §3.5.2.1 and .3).
		cur, _ := container[a.Name].(map[string]any)
		if cur == nil {
			cur = map[string]any{}
		}
		for k, sv := range nv.(map[string]any) {
			cur[k] = sv
		}
		container[a.Name] = cur
	default:
		container[a.Name] = nv
	}
	return nil
}

// subOp applies an operation to a sub-attribute (name.givenName); on a
// multi-valued attribute without a filter it applies to every element.
func subOp(kind string, container map[string]any, r schema.Resolved, v any) error {
	var nv any
	ok := false
	if kind != "remove" {
		var err error
		if nv, ok, err = schema.Value(r.Sub, v); err != nil {
			return err
		}
	}
	if r.Attr.MultiValued {
		if kind == "add" {
			return schema.Errorf("invalidPath", "say which %s to add to with a filter, as in %s[type eq \"work\"].%s", r.Attr.Name, r.Attr.Name, r.Sub.Name)
		}
		list := asList(container[r.Attr.Name])
		for _, el := range list {
			setSub(el.(map[string]any), r.Sub.Name, nv, ok)
		}
		setOrDelete(container, r.Attr.Name, exclusivePrimary(pruneEmpty(list), nil))
		return nil
	}
	obj, _ := container[r.Attr.Name].(map[string]any)
	if obj == nil {
		obj = map[string]any{}
	}
	setSub(obj, r.Sub.Name, nv, ok)
	if len(obj) == 0 {
		delete(container, r.Attr.Name)
	} else {
		container[r.Attr.Name] = obj
	}
	return nil
}

// filtered applies an operation to the elements of a multi-valued
// attribute that a value filter selects: emails[type eq "work"].value.
func (p *patcher) filtered(kind string, container map[string]any, path filter.Path, r schema.Resolved, v any) error {
	cf, err := p.canonicalElementFilter(path.Filter, r.Attr)
	if err != nil {
		return err
	}
	exact := func(name string) bool {
		sub := r.Attr.Sub(strings.TrimPrefix(strings.ToLower(name), strings.ToLower(r.Attr.Name)+"."))
		return sub != nil && sub.CaseExact
	}
	list := asList(container[r.Attr.Name])
	var matched []map[string]any
	keep := list[:0:0]
	for _, el := range list {
		m, _ := el.(map[string]any)
		if m != nil && filter.Match(cf, m, exact) {
			matched = append(matched, m)
			if kind == "remove" && r.Sub == nil {
				continue
			}
		}
		keep = append(keep, el)
	}
	switch {
	case kind == "remove" && r.Sub == nil:
		setOrDelete(container, r.Attr.Name, keep)
		return nil
	case kind == "remove":
		for _, m := range matched {
			delete(m, r.Sub.Name)
		}
		setOrDelete(container, r.Attr.Name, pruneEmpty(list))
		return nil
	}
	// One element of the attribute, to normalise element objects with.
	element := &schema.Attribute{Name: r.Attr.Name, Type: schema.Complex, SubAttributes: r.Attr.SubAttributes}
	if r.Sub == nil {
		el, ok, err := schema.Value(element, v)
		if err != nil {
			return err
		}
		if len(matched) == 0 {
			if kind == "replace" {
				return schema.Errorf("noTarget", "no %s value matches %s", r.Attr.Name, cf)
			}
			if ok {
				container[r.Attr.Name] = appendValues(list, []any{el})
			}
			return nil
		}
		for _, m := range matched {
			for k := range m {
				if kind == "replace" {
					delete(m, k)
				}
			}
			if ok {
				for k, sv := range el.(map[string]any) {
					m[k] = sv
				}
			}
		}
		setOrDelete(container, r.Attr.Name, exclusivePrimary(pruneEmpty(list), madePrimary(matched)))
		return nil
	}
	nv, ok, err := schema.Value(r.Sub, v)
	if err != nil {
		return err
	}
	if len(matched) == 0 {
		if !ok {
			return nil
		}
		// Entra sets emails[type eq "work"].value on a user with no work
		// email: create the element the filter describes.
		el, isEq := elementFromFilter(cf)
		if !isEq {
			return schema.Errorf("noTarget", "no %s value matches %s", r.Attr.Name, cf)
		}
		el[r.Sub.Name] = nv
		// The filter's literals become values: check their types too.
		nel, _, err := schema.Value(element, el)
		if err != nil {
			return err
		}
		container[r.Attr.Name] = appendValues(list, []any{nel})
		return nil
	}
	for _, m := range matched {
		setSub(m, r.Sub.Name, nv, ok)
	}
	setOrDelete(container, r.Attr.Name, exclusivePrimary(pruneEmpty(list), madePrimary(matched)))
	return nil
}

// madePrimary is the first matched element that is primary after the
// operation: the document had at most one primary, so a matched one is
// either that one or the one this operation chose, and keeps the flag.
func madePrimary(matched []map[string]any) map[string]any {
	for _, m := range matched {
		if m["primary"] == true {
			return m
		}
	}
	return nil
}

// canonicalElementFilter checks a value filter's names against the
// attribute's sub-attributes and puts them in schema case.
func (p *patcher) canonicalElementFilter(e filter.Expr, parent *schema.Attribute) (filter.Expr, error) {
	switch e := e.(type) {
	case *filter.And:
		l, err := p.canonicalElementFilter(e.Left, parent)
		if err != nil {
			return nil, err
		}
		r, err := p.canonicalElementFilter(e.Right, parent)
		return &filter.And{Left: l, Right: r}, err
	case *filter.Or:
		l, err := p.canonicalElementFilter(e.Left, parent)
		if err != nil {
			return nil, err
		}
		r, err := p.canonicalElementFilter(e.Right, parent)
		return &filter.Or{Left: l, Right: r}, err
	case *filter.Not:
		x, err := p.canonicalElementFilter(e.X, parent)
		return &filter.Not{X: x}, err
	case *filter.Compare:
		sub := parent.Sub(e.Path.Attr)
		if sub == nil || e.Path.URN != "" || e.Path.Sub != "" || e.Path.Filter != nil {
			return nil, schema.Errorf("invalidPath", "%s is not a sub-attribute of %s", e.Path, parent.Name)
		}
		v := e.Value
		if sub.Type == schema.Boolean && v.Kind == filter.String {
			// Entra writes primary eq "True" as readily as primary eq true.
			switch strings.ToLower(v.Str) {
			case "true":
				v = filter.Value{Kind: filter.Bool, Bool: true}
			case "false":
				v = filter.Value{Kind: filter.Bool}
			}
		}
		return &filter.Compare{Path: filter.Path{Attr: sub.Name}, Op: e.Op, Value: v}, nil
	}
	return nil, schema.Errorf("invalidPath", "unsupported value filter %s", e)
}

// elementFromFilter builds the element a filter of eq-comparisons joined
// by and describes: type eq "work" -> {"type":"work"}.
func elementFromFilter(e filter.Expr) (map[string]any, bool) {
	switch e := e.(type) {
	case *filter.And:
		l, ok := elementFromFilter(e.Left)
		if !ok {
			return nil, false
		}
		r, ok := elementFromFilter(e.Right)
		if !ok {
			return nil, false
		}
		for k, v := range r {
			l[k] = v
		}
		return l, true
	case *filter.Compare:
		if e.Op != filter.Eq {
			return nil, false
		}
		switch e.Value.Kind {
		case filter.String:
			return map[string]any{e.Path.Attr: e.Value.Str}, true
		case filter.Bool:
			return map[string]any{e.Path.Attr: e.Value.Bool}, true
		case filter.Number:
			return map[string]any{e.Path.Attr: json.Number(e.Value.Num)}, true
		}
	}
	return nil, false
}

// memberOp turns an operation on a group's members into a MemberOp.
func (p *patcher) memberOp(kind string, path filter.Path, v any) error {
	if path.Sub != "" {
		return schema.Errorf("invalidPath", "members.%s cannot be patched; patch members", path.Sub)
	}
	if path.Filter != nil {
		if kind != "remove" {
			return schema.Errorf("invalidPath", "members[...] takes only remove; add members with path \"members\"")
		}
		ids, err := memberFilterIDs(path.Filter)
		if err != nil {
			return err
		}
		p.members = append(p.members, MemberOp{Kind: "remove", IDs: ids})
		return nil
	}
	ids, err := memberValueIDs(v)
	if err != nil {
		return err
	}
	switch {
	case kind == "add":
		p.members = append(p.members, MemberOp{Kind: "add", IDs: ids})
	case kind == "remove" && v != nil:
		p.members = append(p.members, MemberOp{Kind: "remove", IDs: ids})
	default: // replace, or remove of all members
		if ids == nil {
			ids = []string{}
		}
		p.members = append(p.members, MemberOp{Kind: "set", IDs: ids})
	}
	return nil
}

// memberValueIDs reads [{"value":"id",...}, ...] (or one such object).
func memberValueIDs(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	items, ok := v.([]any)
	if !ok {
		items = []any{v}
	}
	var ids []string
	for _, it := range items {
		switch x := it.(type) {
		case map[string]any:
			var id string
			for k, val := range x {
				if strings.EqualFold(k, "value") {
					id, _ = val.(string)
				}
			}
			if id == "" {
				return nil, schema.Errorf("invalidValue", "each member needs a \"value\" with the member's id")
			}
			ids = append(ids, id)
		case string:
			ids = append(ids, x)
		default:
			return nil, schema.Errorf("invalidValue", "members must be objects like {\"value\":\"<id>\"}")
		}
	}
	return ids, nil
}

// memberFilterIDs reads the ids from members[value eq "a" or value eq "b"].
func memberFilterIDs(e filter.Expr) ([]string, error) {
	switch e := e.(type) {
	case *filter.Or:
		l, err := memberFilterIDs(e.Left)
		if err != nil {
			return nil, err
		}
		r, err := memberFilterIDs(e.Right)
		return append(l, r...), err
	case *filter.Compare:
		if strings.EqualFold(e.Path.Attr, "value") && e.Path.URN == "" && e.Path.Sub == "" && e.Op == filter.Eq && e.Value.Kind == filter.String {
			return []string{e.Value.Str}, nil
		}
	}
	return nil, schema.Errorf("invalidFilter", "members can be selected only by value eq \"<id>\" (joined by or), not by %s", e)
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func setOrDelete(m map[string]any, k string, list []any) {
	if len(list) == 0 {
		delete(m, k)
	} else {
		m[k] = list
	}
}

func setSub(m map[string]any, k string, v any, ok bool) {
	if ok {
		m[k] = v
	} else {
		delete(m, k)
	}
}

// pruneEmpty drops elements left with no sub-attributes.
func pruneEmpty(list []any) []any {
	out := list[:0:0]
	for _, el := range list {
		if m, ok := el.(map[string]any); ok && len(m) == 0 {
			continue
		}
		out = append(out, el)
	}
	return out
}

// appendValues adds values not already present; a new primary value takes
// the primary flag from the others (RFC 7643 §2.4: at most one primary).
// Elements are found by key in a map, so the work grows with
// len(list)+len(add), not with their product (issue 7: a PATCH adding
// 16,000 emails to as many held the writer for minutes).
func appendValues(list, add []any) []any {
	out := append([]any(nil), list...)
	seen := newElementSet(len(list) + len(add))
	for _, el := range list {
		seen.put(el)
	}
	var newPrimary map[string]any
	for _, v := range add {
		if seen.repeats(v) {
			continue
		}
		if m, ok := v.(map[string]any); ok && m["primary"] == true {
			newPrimary = m
		}
		seen.put(v)
		out = append(out, v)
	}
	return exclusivePrimary(out, newPrimary)
}

// exclusivePrimary keeps primary=true on one element only: keep, or else
// the first one that has it.
func exclusivePrimary(list []any, keep map[string]any) []any {
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok || m["primary"] != true {
			continue
		}
		if keep == nil {
			keep = m
		} else if !sameMap(m, keep) {
			delete(m, "primary")
		}
	}
	return list
}

func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// removeValues drops the elements of list that gone names: complex values
// by their "value" sub-attribute when both have one (Entra removes an
// email by its address alone), others by equality.
func removeValues(list, gone []any) []any {
	byValue := make(map[string]bool, len(gone))
	whole := map[string]bool{}
	for _, g := range gone {
		if v, ok := elementValue(g); ok {
			byValue[v] = true
		} else {
			whole[canonical(g)] = true
		}
	}
	out := list[:0:0]
	for _, el := range list {
		v, ok := elementValue(el)
		if ok && byValue[v] || !ok && len(whole) > 0 && whole[canonical(el)] {
			continue
		}
		out = append(out, el)
	}
	return out
}

// elementSet answers whether an added value repeats one already there:
// complex values with the same value and, when the added one has a type,
// the same type (so a work and a home email with one address stay two);
// others by equality. A complex value with a value never equals one
// without, so the two kinds are kept apart.
type elementSet struct {
	values     map[string]bool // the value of each complex element that has one
	valueTypes map[string]bool // its value and type together
	whole      map[string]bool // canonical encoding of every other element
}

func newElementSet(n int) *elementSet {
	return &elementSet{values: make(map[string]bool, n), valueTypes: make(map[string]bool, n), whole: map[string]bool{}}
}

func (s *elementSet) put(el any) {
	if v, ok := elementValue(el); ok {
		s.values[v] = true
		s.valueTypes[valueTypeKey(v, el)] = true
		return
	}
	s.whole[canonical(el)] = true
}

func (s *elementSet) repeats(el any) bool {
	v, ok := elementValue(el)
	switch {
	case !ok:
		return len(s.whole) > 0 && s.whole[canonical(el)]
	case el.(map[string]any)["type"] == nil:
		return s.values[v]
	}
	return s.valueTypes[valueTypeKey(v, el)]
}

// elementValue is the "value" sub-attribute of a complex element, as text.
func elementValue(el any) (string, bool) {
	m, _ := el.(map[string]any)
	if m == nil || m["value"] == nil {
		return "", false
	}
	return text(m["value"]), true
}

func valueTypeKey(value string, el any) string {
	return strconv.Itoa(len(value)) + ":" + value + text(el.(map[string]any)["type"])
}

// text is fmt.Sprint(v), without its cost for the usual string.
func text(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// canonical encodes v so that two values have one encoding exactly when
// they are deeply equal: object keys sorted, every scalar tagged with its
// Go type (the number 1 and the string "1" differ, as in the document).
func canonical(v any) string {
	var b strings.Builder
	writeCanonical(&b, v)
	return b.String()
}

func writeCanonical(b *strings.Builder, v any) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for _, k := range keys {
			b.WriteString(strconv.Quote(k))
			b.WriteByte(':')
			writeCanonical(b, x[k])
			b.WriteByte(',')
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for _, e := range x {
			writeCanonical(b, e)
			b.WriteByte(',')
		}
		b.WriteByte(']')
	case string:
		b.WriteString(strconv.Quote(x))
	default:
		fmt.Fprintf(b, "%T(%v)", x, x)
	}
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}
