package scim

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/entrasync/entrasync/store"
)

// TestTopLevelKeys: the keys of an object, however its values nest or
// quote brackets, and -1 for what is not an object.
func TestTopLevelKeys(t *testing.T) {
	for doc, want := range map[string][]string{
		`{}`:                                   nil,
		` { } `:                                nil,
		`{"a":1,"b":true,"c":null,"d":-1.5e3}`: {"a", "b", "c", "d"},
		`{"a":"}","b":"\"{[","c":{"x":{"y":[1,{"z":"]"}]}},"d":[[],{}],"e":"\\"}`: {"a", "b", "c", "d", "e"},
		`{ "a" : [ 1 , 2 ] , "b" : { } }`:                                         {"a", "b"},
		`{"k\"q":1}`:                                                              {`k\"q`},
	} {
		var got []string
		n := topLevelKeys(doc, func(k string) { got = append(got, k) })
		if n != len(want) || !slices.Equal(got, want) {
			t.Errorf("%s: %d keys %q, want %q", doc, n, got, want)
		}
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{"a"}`, `{"a":1`, `{"a":"1}`, `{1:2}`} {
		if n := topLevelKeys(bad, func(string) {}); n != -1 {
			t.Errorf("%q: %d keys, want -1", bad, n)
		}
	}
}

// TestRenderStored: a user answered from its stored JSON is, as JSON, the
// user render gives; a document holding a key render sets is left to it.
func TestRenderStored(t *testing.T) {
	s := New(Config{DB: nil, PublicURL: "https://scim.example.com"})
	created := time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC)
	docs := []map[string]any{
		{},
		{"userName": "ada@example.com", "active": true, "name": map[string]any{"givenName": "Ada <&>"},
			"emails": []any{map[string]any{"value": "ada@example.com", "primary": true}},
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"employeeNumber": "7", "manager": map[string]any{"value": "x"}}},
		{"userName": "bob", "title": "}{\"[", "x509Certificates": []any{map[string]any{"value": "AAA="}}},
	}
	groups := []any{map[string]any{"value": "g1", "display": "Sales", "type": "direct"}}
	for i, doc := range docs {
		raw, _ := json.Marshal(doc)
		res := store.Resource{Kind: store.UserKind, ID: "u1", Version: 3, Created: created, LastModified: created.Add(time.Hour), Raw: string(raw)}
		for _, related := range [][]any{nil, groups} {
			got, ok := s.renderStored(userEndpoint, res, related)
			if !ok {
				t.Fatalf("doc %d: not rendered from storage", i)
			}
			res.Doc = doc
			want, _ := marshal(s.render(userEndpoint, res, related))
			res.Doc = nil
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("doc %d: %s is not JSON: %v", i, got, err)
			}
			json.Unmarshal(want, &w)
			if !reflect.DeepEqual(g, w) {
				t.Errorf("doc %d:\n got %s\nwant %s", i, got, want)
			}
		}
	}
	res := store.Resource{Kind: store.UserKind, ID: "u1", Raw: `{"id":"other","userName":"x"}`}
	if _, ok := s.renderStored(userEndpoint, res, nil); ok {
		t.Error("a stored document with an id key was spliced")
	}
}
