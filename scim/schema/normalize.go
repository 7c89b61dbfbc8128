package schema

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Error is a client error in a SCIM document or path (HTTP 400); ScimType
// is one of RFC 7644 §3.12's detail error keywords.
type Error struct {
	ScimType string
	Detail   string
}

func (e *Error) Error() string { return e.Detail }

// Errorf makes an *Error.
func Errorf(scimType, format string, args ...any) *Error {
	return &Error{ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

// Normalize turns a document a client sent (POST or PUT) into canonical
// form: attribute names in schema case, values of their declared types
// (Entra's "True"/"False" strings become booleans), extension attributes
// under their schema URN. Read-only, write-only (password) and unknown
// attributes are dropped; null means not set. Required attributes must be
// present.
func (rt *ResourceType) Normalize(in map[string]any) (map[string]any, error) {
	// In sorted order, so that the result never depends on map order: an
	// extension object comes before its URN-qualified keys, which add to it.
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(strings.Compare(strings.ToLower(a), strings.ToLower(b)), strings.Compare(a, b))
	})
	out := map[string]any{}
	for _, k := range keys {
		if err := rt.Set(out, k, in[k]); err != nil {
			return nil, err
		}
	}
	if err := rt.CheckRequired(out); err != nil {
		return nil, err
	}
	return out, nil
}

// Set normalises v and stores it in doc under the attribute that key names
// (a plain name, a URN-qualified name or an extension URN). A null value
// removes the attribute. Keys naming nothing writable are ignored.
func (rt *ResourceType) Set(doc map[string]any, key string, v any) error {
	if strings.EqualFold(key, "schemas") {
		if _, ok := v.([]any); !ok && v != nil {
			return Errorf("invalidValue", "schemas must be an array of schema URIs")
		}
		return nil
	}
	if ext := rt.Extension(key); ext != nil {
		return setExtension(doc, ext, v)
	}
	owner, name := rt.Schema, key
	if urn, rest, ok := splitURN(key); ok {
		switch {
		case strings.EqualFold(urn, rt.Schema.ID):
			name = rest
		case rt.Extension(urn) != nil:
			owner, name = rt.Extension(urn), rest
		default:
			return nil // a schema we do not know: not ours to keep
		}
	}
	a := owner.Attr(name)
	if a == nil && owner == rt.Schema {
		a = Common(name)
	}
	if a == nil || a.Mutability == ReadOnly || a.Mutability == WriteOnly {
		return nil
	}
	nv, ok, err := Value(a, v)
	if err != nil {
		return err
	}
	target := doc
	if owner != rt.Schema {
		ext, _ := doc[owner.ID].(map[string]any)
		if ext == nil {
			ext = map[string]any{}
		}
		target = ext
		defer func() {
			if len(ext) > 0 {
				doc[owner.ID] = ext
			} else {
				delete(doc, owner.ID)
			}
		}()
	}
	if ok {
		target[a.Name] = nv
	} else {
		delete(target, a.Name)
	}
	return nil
}

func setExtension(doc map[string]any, ext *Schema, v any) error {
	if v == nil {
		delete(doc, ext.ID)
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Errorf("invalidValue", "%s must be an object", ext.ID)
	}
	out := map[string]any{}
	for k, sv := range m {
		a := ext.Attr(k)
		if a == nil || a.Mutability == ReadOnly || a.Mutability == WriteOnly {
			continue
		}
		nv, ok, err := Value(a, sv)
		if err != nil {
			return err
		}
		if ok {
			out[a.Name] = nv
		}
	}
	if len(out) > 0 {
		doc[ext.ID] = out
	} else {
		delete(doc, ext.ID)
	}
	return nil
}

// splitURN splits "urn:...:Schema:attr.sub" at the colon before the
// attribute name.
func splitURN(key string) (urn, rest string, ok bool) {
	if len(key) < 4 || !strings.EqualFold(key[:4], "urn:") {
		return "", "", false
	}
	i := strings.LastIndexByte(key, ':')
	return key[:i], key[i+1:], true
}

// CheckRequired fails when a required attribute is missing from doc.
func (rt *ResourceType) CheckRequired(doc map[string]any) error {
	for _, a := range rt.Schema.Attributes {
		if !a.Required {
			continue
		}
		v, ok := doc[a.Name]
		if s, isStr := v.(string); !ok || (isStr && strings.TrimSpace(s) == "") {
			return Errorf("invalidValue", "%s is required", a.Name)
		}
	}
	return nil
}

// Value normalises one attribute value. ok is false when the value means
// "not set" (null, an empty array, an empty object).
func Value(a *Attribute, v any) (out any, ok bool, err error) {
	if v == nil {
		return nil, false, nil
	}
	if a.MultiValued {
		items, isArr := v.([]any)
		if !isArr {
			items = []any{v} // a single value where a list is expected
		}
		var list []any
		for _, item := range items {
			nv, ok, err := single(a, item)
			if err != nil {
				return nil, false, err
			}
			if ok {
				list = append(list, nv)
			}
		}
		if len(list) == 0 {
			return nil, false, nil
		}
		return list, true, nil
	}
	return single(a, v)
}

// single normalises one value of a (one element, for multi-valued ones).
func single(a *Attribute, v any) (any, bool, error) {
	if v == nil {
		return nil, false, nil
	}
	switch a.Type {
	case Complex:
		m, ok := v.(map[string]any)
		if !ok {
			return complexShorthand(a, v)
		}
		out := map[string]any{}
		for k, sv := range m {
			sub := a.Sub(k)
			if sub == nil || sub.Mutability == ReadOnly || sub.Mutability == WriteOnly {
				continue
			}
			nv, ok, err := single(sub, sv)
			if err != nil {
				return nil, false, err
			}
			if ok {
				out[sub.Name] = nv
			}
		}
		if len(out) == 0 {
			return nil, false, nil
		}
		return out, true, nil
	case Boolean:
		switch b := v.(type) {
		case bool:
			return b, true, nil
		case string:
			// Entra sends booleans as "True"/"False" unless the tenant opted
			// into aadOptscim062020.
			switch strings.ToLower(strings.TrimSpace(b)) {
			case "true":
				return true, true, nil
			case "false":
				return false, true, nil
			}
		}
		return nil, false, typeError(a, v, "a boolean")
	case Integer, Decimal:
		n, ok := v.(json.Number)
		if !ok {
			if f, isFloat := v.(float64); isFloat {
				n = json.Number(fmt.Sprint(f))
			} else {
				return nil, false, typeError(a, v, "a number")
			}
		}
		if a.Type == Integer {
			if _, err := n.Int64(); err != nil {
				return nil, false, typeError(a, v, "an integer")
			}
		}
		return n, true, nil
	case DateTime:
		s, ok := v.(string)
		if !ok {
			return nil, false, typeError(a, v, "an xsd:dateTime string")
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return nil, false, Errorf("invalidValue", "%s must be an xsd:dateTime such as 2011-05-13T04:42:34Z, not %q", a.Name, s)
		}
		return s, true, nil
	default: // string, reference, binary
		s, ok := v.(string)
		if !ok {
			return nil, false, typeError(a, v, "a string")
		}
		return s, true, nil
	}
}

// complexShorthand accepts the forms Entra uses for a complex attribute
// given as something else: manager as a bare id ("" clears it), or as a
// one-element list.
func complexShorthand(a *Attribute, v any) (any, bool, error) {
	if a.MultiValued { // each element of emails, members... must be an object
		return nil, false, typeError(a, v, "a list of objects")
	}
	switch x := v.(type) {
	case string:
		if a.Sub("value") == nil {
			break
		}
		if x == "" {
			return nil, false, nil
		}
		return map[string]any{"value": x}, true, nil
	case []any:
		switch len(x) {
		case 0:
			return nil, false, nil
		case 1:
			return single(a, x[0])
		}
	}
	return nil, false, typeError(a, v, "an object")
}

func typeError(a *Attribute, v any, want string) error {
	return Errorf("invalidValue", "%s must be %s, not %s", a.Name, want, describe(v))
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
