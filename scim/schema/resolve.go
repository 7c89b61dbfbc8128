package schema

import (
	"strings"
	"time"

	"github.com/entrasync/entrasync/scim/filter"
)

// Resolved is an attribute path resolved against a resource type.
type Resolved struct {
	Ext  *Schema    // the extension the attribute belongs to; nil for the core schema
	Attr *Attribute // nil when the path names the whole extension (Ext set)
	Sub  *Attribute // the sub-attribute, when the path names one
}

// Target is the attribute whose values the path addresses.
func (r Resolved) Target() *Attribute {
	if r.Sub != nil {
		return r.Sub
	}
	return r.Attr
}

// Path is the canonical filter path of r (core attributes carry no URN).
func (r Resolved) Path() filter.Path {
	var p filter.Path
	if r.Attr == nil && r.Ext != nil {
		// A whole extension, split as ParsePath splits a bare schema URN.
		i := strings.LastIndexByte(r.Ext.ID, ':')
		return filter.Path{URN: r.Ext.ID[:i], Attr: r.Ext.ID[i+1:]}
	}
	if r.Ext != nil {
		p.URN = r.Ext.ID
	}
	if r.Attr != nil {
		p.Attr = r.Attr.Name
	}
	if r.Sub != nil {
		p.Sub = r.Sub.Name
	}
	return p
}

// ErrUnknown reports a path naming no attribute of the resource type.
type ErrUnknown struct{ Path string }

func (e *ErrUnknown) Error() string { return "unknown attribute " + e.Path }

// Resolve finds what p names: a core, common or extension attribute
// (unqualified names are looked up in the core schema, then the
// extensions), a sub-attribute, or a whole extension (its URN alone).
func (rt *ResourceType) Resolve(p filter.Path) (Resolved, error) {
	var r Resolved
	switch {
	case p.URN == "":
		if r.Attr = rt.Schema.Attr(p.Attr); r.Attr == nil {
			r.Attr = Common(p.Attr)
		}
		for _, ext := range rt.Extensions {
			if r.Attr != nil {
				break
			}
			if a := ext.Attr(p.Attr); a != nil {
				r.Ext, r.Attr = ext, a
			}
		}
	case strings.EqualFold(p.URN, rt.Schema.ID):
		if r.Attr = rt.Schema.Attr(p.Attr); r.Attr == nil {
			r.Attr = Common(p.Attr)
		}
	default:
		if ext := rt.Extension(p.URN + ":" + p.Attr); ext != nil && p.Sub == "" && p.Filter == nil {
			return Resolved{Ext: ext}, nil
		}
		if r.Ext = rt.Extension(p.URN); r.Ext != nil {
			r.Attr = r.Ext.Attr(p.Attr)
		}
	}
	if r.Attr == nil {
		return Resolved{}, &ErrUnknown{Path: p.String()}
	}
	if p.Sub != "" {
		if r.Attr.Type != Complex {
			return Resolved{}, Errorf("invalidPath", "%s has no sub-attributes", r.Attr.Name)
		}
		if r.Sub = r.Attr.Sub(p.Sub); r.Sub == nil {
			return Resolved{}, &ErrUnknown{Path: p.String()}
		}
	}
	if p.Filter != nil && !r.Attr.MultiValued {
		return Resolved{}, Errorf("invalidPath", "%s is single-valued: it cannot take a [filter]", r.Attr.Name)
	}
	return r, nil
}

// CanonicalFilter resolves every path in e: names in schema case, core
// attributes without URN, extension attributes with their URN, and a
// complex multi-valued attribute compared as a whole (emails co "x")
// compared by its value. Unknown attributes are an invalidFilter error.
// caseExact tells the store how each resulting path compares.
func (rt *ResourceType) CanonicalFilter(e filter.Expr) (filter.Expr, func(filter.Path) bool, error) {
	out, err := rt.canonical(e, nil)
	if err != nil {
		return nil, nil, err
	}
	return out, rt.caseExact, nil
}

func (rt *ResourceType) canonical(e filter.Expr, parent *Attribute) (filter.Expr, error) {
	switch e := e.(type) {
	case *filter.And:
		l, err := rt.canonical(e.Left, parent)
		if err != nil {
			return nil, err
		}
		r, err := rt.canonical(e.Right, parent)
		return &filter.And{Left: l, Right: r}, err
	case *filter.Or:
		l, err := rt.canonical(e.Left, parent)
		if err != nil {
			return nil, err
		}
		r, err := rt.canonical(e.Right, parent)
		return &filter.Or{Left: l, Right: r}, err
	case *filter.Not:
		x, err := rt.canonical(e.X, parent)
		return &filter.Not{X: x}, err
	case *filter.Compare:
		p, err := rt.canonicalPath(e.Path, parent, true)
		if err != nil {
			return nil, err
		}
		out := &filter.Compare{Path: p, Op: e.Op, Value: e.Value}
		return out, rt.checkComparison(out, parent)
	case *filter.ValuePath:
		p, err := rt.canonicalPath(e.Path, parent, false)
		return &filter.ValuePath{Path: p}, err
	}
	return nil, Errorf("invalidFilter", "unsupported filter")
}

func (rt *ResourceType) canonicalPath(p filter.Path, parent *Attribute, compared bool) (filter.Path, error) {
	if parent != nil { // inside brackets: a sub-attribute of parent
		sub := parent.Sub(p.Attr)
		if sub == nil || p.URN != "" || p.Sub != "" || p.Filter != nil {
			return filter.Path{}, Errorf("invalidFilter", "%s is not a sub-attribute of %s", p, parent.Name)
		}
		return filter.Path{Attr: sub.Name}, nil
	}
	r, err := rt.Resolve(p)
	if err != nil {
		if u, ok := err.(*ErrUnknown); ok {
			return filter.Path{}, Errorf("invalidFilter", "unknown attribute %q in filter", u.Path)
		}
		if se, ok := err.(*Error); ok {
			se.ScimType = "invalidFilter"
		}
		return filter.Path{}, err
	}
	if r.Attr == nil {
		return filter.Path{}, Errorf("invalidFilter", "%s names a schema, not an attribute", p)
	}
	out := r.Path()
	if p.Filter != nil {
		f, err := rt.canonical(p.Filter, r.Attr)
		if err != nil {
			return filter.Path{}, err
		}
		out.Filter = f
	}
	if compared && r.Sub == nil && r.Attr.Type == Complex {
		if !r.Attr.MultiValued || r.Attr.Sub("value") == nil {
			return filter.Path{}, Errorf("invalidFilter", "%s is complex: compare one of its sub-attributes, as in %s.%s", r.Attr.Name, r.Attr.Name, r.Attr.SubAttributes[0].Name)
		}
		out.Sub = "value"
	}
	return out, nil
}

// caseExact reports whether a canonical path compares case-sensitively.
func (rt *ResourceType) caseExact(p filter.Path) bool {
	r, err := rt.Resolve(filter.Path{URN: p.URN, Attr: p.Attr, Sub: p.Sub})
	if err != nil || r.Target() == nil {
		return false
	}
	return r.Target().CaseExact
}

// checkComparison refuses a comparison that parses but cannot mean
// anything for the attribute's type: a value of another type, or an
// operator the type has not (RFC 7644 §3.4.2.2: "invalidFilter" for "the
// specified attribute and filter comparison combination is not
// supported"). Booleans may be quoted, as Entra writes them.
func (rt *ResourceType) checkComparison(e *filter.Compare, parent *Attribute) error {
	var a *Attribute
	if parent != nil {
		a = parent.Sub(e.Path.Attr)
	} else if r, err := rt.Resolve(filter.Path{URN: e.Path.URN, Attr: e.Path.Attr, Sub: e.Path.Sub}); err == nil {
		a = r.Target()
	}
	if a == nil || e.Op == filter.Pr {
		return nil
	}
	name := e.Path.String()
	v := e.Value
	if v.Kind == filter.Null {
		if e.Op != filter.Eq && e.Op != filter.Ne {
			return Errorf("invalidFilter", "%s cannot be compared with null using %s; use eq null, ne null or pr", name, e.Op)
		}
		return nil
	}
	ordering := e.Op == filter.Gt || e.Op == filter.Ge || e.Op == filter.Lt || e.Op == filter.Le
	substring := e.Op == filter.Co || e.Op == filter.Sw || e.Op == filter.Ew
	switch a.Type {
	case Boolean:
		quoted := v.Kind == filter.String && (strings.EqualFold(v.Str, "true") || strings.EqualFold(v.Str, "false"))
		if v.Kind != filter.Bool && !quoted {
			return Errorf("invalidFilter", "%s is a boolean: compare it with true or false, not %s", name, v)
		}
		if ordering || substring {
			return Errorf("invalidFilter", "operator %s does not apply to the boolean %s: use eq or ne", e.Op, name)
		}
	case DateTime:
		if v.Kind != filter.String {
			return Errorf("invalidFilter", "%s is a dateTime: compare it with a quoted xsd:dateTime such as \"2011-05-13T04:42:34Z\", not %s", name, v)
		}
		if _, err := time.Parse(time.RFC3339Nano, v.Str); err != nil {
			return Errorf("invalidFilter", "%s is a dateTime: %s is not an xsd:dateTime such as \"2011-05-13T04:42:34Z\"", name, v)
		}
		if substring {
			return Errorf("invalidFilter", "operator %s does not apply to the dateTime %s: use eq, ne, gt, ge, lt or le", e.Op, name)
		}
	case Integer, Decimal:
		if v.Kind != filter.Number {
			return Errorf("invalidFilter", "%s is a number: compare it with an unquoted number, not %s", name, v)
		}
	default: // string, reference, binary
		if v.Kind != filter.String {
			return Errorf("invalidFilter", "%s is a string: compare it with a quoted string, not %s", name, v)
		}
	}
	return nil
}
