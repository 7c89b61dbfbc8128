package schema

import (
	"encoding/json"
	"sort"
	"strings"
)

// Default limits, the defaults of the settings that change them.
const (
	DefaultMaxValues       = 100
	DefaultMaxValueLength  = 4096
	DefaultMaxDocumentSize = 64 << 10
	settingMaxValues       = "max_values"
	settingMaxValueLength  = "max_value_length"
	settingMaxDocumentSize = "max_document_size"
)

// Limits bounds what one stored resource document may hold, so that no
// client can make a document that costs every later read and write (issue
// 7: a 1,000 KB title was stored). A zero field means no limit. A group's
// members are not counted: they live in their own table, one row each.
type Limits struct {
	MaxValues       int // elements of one multi-valued attribute
	MaxValueLength  int // bytes of one string value
	MaxDocumentSize int // bytes of the document encoded as JSON
}

// Check refuses a document (after normalisation, or after a PATCH) that
// goes past a limit, with an invalidValue error that names the limit, its
// value, the attribute and the setting that raises it. It reads doc only.
func (l Limits) Check(rt *ResourceType, doc map[string]any) error {
	for _, k := range sortedKeys(doc) {
		if l.excepted(rt, k) {
			continue
		}
		if ext, ok := doc[k].(map[string]any); ok && rt.Extension(k) != nil {
			for _, ek := range sortedKeys(ext) {
				if err := l.checkValue(k+":"+ek, ext[ek]); err != nil {
					return err
				}
			}
			continue
		}
		if err := l.checkValue(k, doc[k]); err != nil {
			return err
		}
	}
	return l.checkSize(rt, doc)
}

// CheckValues is the part of Check a PATCH applies after each operation:
// the element count of each multi-valued attribute, so that operations
// that each scan a list cannot be run over a list grown past the limit.
func (l Limits) CheckValues(rt *ResourceType, doc map[string]any) error {
	if l.MaxValues <= 0 {
		return nil
	}
	for k, v := range doc {
		if l.excepted(rt, k) {
			continue
		}
		if ext, ok := v.(map[string]any); ok && rt.Extension(k) != nil {
			for ek, ev := range ext {
				if err := l.checkCount(k+":"+ek, ev); err != nil {
					return err
				}
			}
			continue
		}
		if err := l.checkCount(k, v); err != nil {
			return err
		}
	}
	return nil
}

func (l Limits) excepted(rt *ResourceType, key string) bool {
	return rt == GroupType && strings.EqualFold(key, "members")
}

func (l Limits) checkCount(name string, v any) error {
	if list, ok := v.([]any); ok && l.MaxValues > 0 && len(list) > l.MaxValues {
		return Errorf("invalidValue", "%s has %d values, over the limit of %d values per attribute (the %s setting raises it)",
			name, len(list), l.MaxValues, settingMaxValues)
	}
	return nil
}

// checkValue checks one attribute's value; name is its path, as in
// emails.value, for the error.
func (l Limits) checkValue(name string, v any) error {
	switch x := v.(type) {
	case string:
		if l.MaxValueLength > 0 && len(x) > l.MaxValueLength {
			return Errorf("invalidValue", "%s is %d bytes long, over the limit of %d bytes per value (the %s setting raises it)",
				name, len(x), l.MaxValueLength, settingMaxValueLength)
		}
	case []any:
		if err := l.checkCount(name, x); err != nil {
			return err
		}
		for _, el := range x {
			if err := l.checkValue(name, el); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if err := l.checkValue(name+"."+k, x[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkSize measures the document as the store keeps it: JSON, without a
// group's members. The error names the largest attribute, the one to trim.
func (l Limits) checkSize(rt *ResourceType, doc map[string]any) error {
	if l.MaxDocumentSize <= 0 {
		return nil
	}
	counted := make(map[string]any, len(doc))
	for k, v := range doc {
		if !l.excepted(rt, k) {
			counted[k] = v
		}
	}
	b, err := json.Marshal(counted)
	if err != nil {
		return Errorf("invalidValue", "the document cannot be encoded as JSON: %v", err)
	}
	if len(b) <= l.MaxDocumentSize {
		return nil
	}
	largest, largestSize := "", -1
	for _, k := range sortedKeys(counted) {
		ab, _ := json.Marshal(counted[k])
		if len(ab) > largestSize {
			largest, largestSize = k, len(ab)
		}
	}
	return Errorf("invalidValue", "the document is %d bytes as JSON, over the limit of %d bytes per resource (its largest attribute is %s, %d bytes; the %s setting raises the limit)",
		len(b), l.MaxDocumentSize, largest, largestSize, settingMaxDocumentSize)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
