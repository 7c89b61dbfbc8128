package patch

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/scim/schema"
)

// The pairwise comparisons appendValues and removeValues made before they
// kept elements in maps (quadratic), kept here as the reference the map
// versions must agree with.
func refSameElement(have, added any) bool {
	hm, _ := have.(map[string]any)
	am, _ := added.(map[string]any)
	if hm != nil && am != nil && hm["value"] != nil && am["value"] != nil {
		return fmt.Sprint(hm["value"]) == fmt.Sprint(am["value"]) &&
			(am["type"] == nil || fmt.Sprint(hm["type"]) == fmt.Sprint(am["type"]))
	}
	return reflect.DeepEqual(have, added)
}

func refContainsValue(list []any, v any) bool {
	vm, _ := v.(map[string]any)
	for _, el := range list {
		em, _ := el.(map[string]any)
		if vm != nil && em != nil && vm["value"] != nil && em["value"] != nil {
			if fmt.Sprint(vm["value"]) == fmt.Sprint(em["value"]) {
				return true
			}
			continue
		}
		if reflect.DeepEqual(el, v) {
			return true
		}
	}
	return false
}

func refAppendValues(list, add []any) []any {
	out := append([]any(nil), list...)
	var newPrimary map[string]any
	for _, v := range add {
		if slices.ContainsFunc(out, func(el any) bool { return refSameElement(el, v) }) {
			continue
		}
		if m, ok := v.(map[string]any); ok && m["primary"] == true {
			newPrimary = m
		}
		out = append(out, v)
	}
	return exclusivePrimary(out, newPrimary)
}

func refRemoveValues(list, gone []any) []any {
	out := list[:0:0]
	for _, el := range list {
		if !refContainsValue(gone, el) {
			out = append(out, el)
		}
	}
	return out
}

// randomElement draws from a small space, so that repeats are common: complex
// values with and without value, type and primary, numbers and strings
// that print alike, and plain values.
func randomElement(r *rand.Rand) any {
	switch r.IntN(6) {
	case 0:
		return []any{"a", "b", json.Number("1"), "1", true}[r.IntN(5)]
	case 1:
		return map[string]any{"display": []any{"x", "y"}[r.IntN(2)]}
	}
	m := map[string]any{}
	switch r.IntN(4) {
	case 0:
		m["value"] = json.Number(fmt.Sprint(r.IntN(3)))
	default:
		m["value"] = fmt.Sprint(r.IntN(3))
	}
	switch r.IntN(3) {
	case 0:
		m["type"] = "work"
	case 1:
		m["type"] = "home"
	}
	if r.IntN(4) == 0 {
		m["primary"] = true
	}
	return m
}

func randomList(r *rand.Rand, n int) []any {
	l := make([]any, n)
	for i := range l {
		l[i] = randomElement(r)
	}
	return l
}

// TestKeyedMatchesPairwise: keyed on maps, adding and removing values
// keeps exactly the elements the pairwise comparisons kept, in order.
func TestKeyedMatchesPairwise(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for i := range 5000 {
		list, other := randomList(r, r.IntN(8)), randomList(r, r.IntN(8))
		want := refAppendValues(deepCopy(list).([]any), deepCopy(other).([]any))
		got := appendValues(deepCopy(list).([]any), deepCopy(other).([]any))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: appendValues(%v, %v) = %v, pairwise %v", i, list, other, got, want)
		}
		want = refRemoveValues(deepCopy(list).([]any), other)
		got = removeValues(deepCopy(list).([]any), other)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: removeValues(%v, %v) = %v, pairwise %v", i, list, other, got, want)
		}
	}
}

// TestApplyWithin: a PATCH may not grow a list past max_values even for a
// moment (each later operation would scan it), nor leave the document
// past a limit; within the limits it applies as Apply does.
func TestApplyWithin(t *testing.T) {
	lim := schema.Limits{MaxValues: 3, MaxValueLength: 20, MaxDocumentSize: 400}
	base := doc(t, `{"userName":"ada","emails":[{"value":"a@x"},{"value":"b@x"}]}`)
	tests := []struct {
		name string
		ops  string
		want string // in the error; "" for success
	}{
		{"within", `[{"op":"add","path":"emails","value":[{"value":"c@x"}]}]`, ""},
		{"repeat is no growth", `[{"op":"add","path":"emails","value":[{"value":"a@x"},{"value":"b@x"},{"value":"c@x"}]}]`, ""},
		{"past max_values", `[{"op":"add","path":"emails","value":[{"value":"c@x"},{"value":"d@x"}]}]`, "emails has 4 values, over the limit of 3 values per attribute (the max_values setting raises it)"},
		{"past for a moment", `[{"op":"add","path":"emails","value":[{"value":"c@x"},{"value":"d@x"}]},{"op":"remove","path":"emails[value eq \"d@x\"]"}]`, "operation 1: emails has 4 values"},
		{"path-less", `[{"op":"replace","value":{"phoneNumbers":[{"value":"1"},{"value":"2"},{"value":"3"},{"value":"4"}]}}]`, "phoneNumbers has 4 values"},
		{"extension", `[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"` + strings.Repeat("d", 21) + `"}]`,
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department is 21 bytes long, over the limit of 20 bytes per value (the max_value_length setting raises it)"},
		{"sub-attribute", `[{"op":"replace","path":"emails[value eq \"a@x\"].display","value":"` + strings.Repeat("d", 21) + `"}]`, "emails.display is 21 bytes long"},
		{"document", `[{"op":"add","value":{"title":"` + strings.Repeat("t", 20) + `","nickName":"` + strings.Repeat("n", 20) + `","addresses":[{"formatted":"` + strings.Repeat("f", 20) + `","locality":"` + strings.Repeat("l", 20) + `","region":"` + strings.Repeat("r", 20) + `"},{"formatted":"` + strings.Repeat("g", 20) + `","locality":"` + strings.Repeat("m", 20) + `","region":"` + strings.Repeat("s", 20) + `"},{"formatted":"` + strings.Repeat("h", 20) + `","locality":"` + strings.Repeat("o", 20) + `","region":"` + strings.Repeat("u", 20) + `"}]}}]`,
			"over the limit of 400 bytes per resource (its largest attribute is addresses"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ops, _ := toOps(decode(t, tc.ops).([]any))
			before := deepCopy(base)
			out, _, err := ApplyWithin(schema.UserType, base, ops, lim)
			if !reflect.DeepEqual(base, before) {
				t.Fatal("ApplyWithin changed its input")
			}
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				plain, _, _ := Apply(schema.UserType, base, ops)
				if !reflect.DeepEqual(out, plain) {
					t.Fatalf("ApplyWithin %v, Apply %v", out, plain)
				}
				return
			}
			se, ok := err.(*schema.Error)
			if !ok || se.ScimType != "invalidValue" || !strings.Contains(se.Detail, tc.want) {
				t.Fatalf("error %v, want invalidValue with %q", err, tc.want)
			}
		})
	}
}
