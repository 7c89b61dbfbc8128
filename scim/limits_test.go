package scim_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/config"
	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/scim/schema"
	"github.com/entrasync/entrasync/store"
)

// emailList is n work emails, as JSON.
func emailList(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"type":"work","value":"e%d@contoso.com"}`, i)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// TestLimits: each document limit is answered 400 invalidValue with a
// detail naming the limit, its value, the attribute and the setting, on
// POST, PUT and PATCH, and the store is left as it was.
func TestLimits(t *testing.T) {
	e := newEnv(t, func(c *scim.Config) {
		c.Limits = schema.Limits{MaxValues: 5, MaxValueLength: 300, MaxDocumentSize: 1500}
	})
	c := e.tenant("contoso")
	uid := str(c.do("POST", "/Users", `{"userName":"ada@contoso.com","emails":`+emailList(5)+`}`).want(t, 201).body, "id")
	long := strings.Repeat("x", 301)
	// Nine stored attributes of 200 bytes: each within max_value_length,
	// together past max_document_size.
	var wide []string
	for _, a := range []string{"displayName", "nickName", "title", "userType", "profileUrl", "locale", "timezone", "preferredLanguage", "externalId", "password"} {
		wide = append(wide, fmt.Sprintf(`"%s":"%s"`, a, strings.Repeat("w", 200)))
	}
	wideUser := `{"userName":"wide@contoso.com",` + strings.Join(wide, ",") + `}`
	wideExt := `{"userName":"ada@contoso.com","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"` + long + `"}}`

	tests := []struct {
		name, method, path, body string
		want                     []string // in the detail
	}{
		{"POST values", "POST", "/Users", `{"userName":"x@contoso.com","emails":` + emailList(6) + `}`, []string{"emails", "6 values", "limit of 5", "max_values"}},
		{"PUT values", "PUT", "/Users/" + uid, `{"userName":"ada@contoso.com","phoneNumbers":` + strings.ReplaceAll(emailList(6), "@", "") + `}`, []string{"phoneNumbers", "limit of 5", "max_values"}},
		{"PATCH add values", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"add","path":"emails","value":[{"value":"new@contoso.com"}]}]}`, []string{"emails", "6 values", "limit of 5", "max_values"}},
		{"PATCH path-less values", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"add","value":{"emails":[{"value":"new@contoso.com"}]}}]}`, []string{"emails", "limit of 5", "max_values"}},
		// The limit holds after each operation, so a PATCH cannot grow a
		// list past it and scan it op after op.
		{"PATCH values grown then cut", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"add","path":"emails","value":` + strings.ReplaceAll(emailList(10), "contoso", "fabrikam") + `},{"op":"remove","path":"emails[value ew \"fabrikam.com\"]"}]}`, []string{"operation 1", "emails", "limit of 5", "max_values"}},
		{"POST length", "POST", "/Users", `{"userName":"x@contoso.com","title":"` + long + `"}`, []string{"title", "301 bytes", "limit of 300", "max_value_length"}},
		{"POST length in element", "POST", "/Users", `{"userName":"x@contoso.com","emails":[{"value":"` + long + `"}]}`, []string{"emails.value", "limit of 300", "max_value_length"}},
		{"PUT length in extension", "PUT", "/Users/" + uid, wideExt, []string{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "limit of 300", "max_value_length"}},
		{"PATCH length", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"replace","path":"name.givenName","value":"` + long + `"}]}`, []string{"name.givenName", "limit of 300", "max_value_length"}},
		{"POST size", "POST", "/Users", wideUser, []string{"limit of 1500 bytes", "max_document_size", "largest attribute"}},
		{"PUT size", "PUT", "/Users/" + uid, strings.Replace(wideUser, "wide@", "ada@", 1), []string{"limit of 1500 bytes", "max_document_size"}},
		{"PATCH size", "PATCH", "/Users/" + uid, `{"Operations":[{"op":"add","value":{` + strings.Join(wide, ",") + `}}]}`, []string{"limit of 1500 bytes", "max_document_size"}},
		{"group POST length", "POST", "/Groups", `{"displayName":"` + long + `"}`, []string{"displayName", "max_value_length"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := c.snapshot()
			r := c.do(tc.method, tc.path, tc.body).wantError(t, 400, "invalidValue")
			for _, w := range tc.want {
				if !strings.Contains(str(r.body, "detail"), w) {
					t.Errorf("detail %q does not say %q", str(r.body, "detail"), w)
				}
			}
			if after := c.snapshot(); after != before {
				t.Fatalf("the store changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}

	// At the limits, everything is accepted.
	c.do("PATCH", "/Users/"+uid, `{"Operations":[{"op":"replace","path":"title","value":"`+long[1:]+`"}]}`).want(t, 200)
	c.do("POST", "/Users", `{"userName":"five@contoso.com","emails":`+emailList(5)+`}`).want(t, 201)
}

// TestLimitsSkipGroupMembers: a group's members are in their own table and
// count towards no limit.
func TestLimitsSkipGroupMembers(t *testing.T) {
	e := newEnv(t, func(c *scim.Config) {
		c.Limits = schema.Limits{MaxValues: 2, MaxValueLength: 300, MaxDocumentSize: 1024}
	})
	c := e.tenant("contoso")
	var members []any
	for i := range 40 { // 40 members of ~60 bytes each: past both limits if counted
		id := str(c.do("POST", "/Users", fmt.Sprintf(`{"userName":"u%d@contoso.com"}`, i)).want(t, 201).body, "id")
		members = append(members, map[string]any{"value": id, "display": fmt.Sprintf("u%d@contoso.com", i)})
	}
	body, _ := json.Marshal(map[string]any{"displayName": "All", "members": members})
	gid := str(c.do("POST", "/Groups", string(body)).want(t, 201).body, "id")
	body, _ = json.Marshal(map[string]any{"displayName": "All", "members": members[:30]})
	c.do("PUT", "/Groups/"+gid, string(body)).want(t, 200)
	ops, _ := json.Marshal(map[string]any{"Operations": []any{map[string]any{"op": "add", "path": "members", "value": members}}})
	c.do("PATCH", "/Groups/"+gid, string(ops)).want(t, 204)
	if got := len(c.members(gid)); got != 40 {
		t.Fatalf("group has %d members, want 40", got)
	}
}

// TestLimitsDefaults: the defaults apply when none are configured, and
// are the settings' defaults; max_value_length cannot be set past what the
// attribute index holds.
func TestLimitsDefaults(t *testing.T) {
	d := config.Default()
	if d.MaxValues != schema.DefaultMaxValues || d.MaxValueLength != schema.DefaultMaxValueLength || d.MaxDocumentSize != schema.DefaultMaxDocumentSize {
		t.Fatalf("config defaults %+v differ from schema's", d.ScimLimits())
	}
	maxValueLength := func(v int) error {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		f := config.Register(fs)
		if err := fs.Parse([]string{"--max-value-length", fmt.Sprint(v)}); err != nil {
			return err
		}
		_, err := f.Load(func(string) string { return "" })
		return err
	}
	if err := maxValueLength(store.MaxIndexedValue); err != nil {
		t.Fatalf("max_value_length at the index's bound refused: %v", err)
	}
	if err := maxValueLength(store.MaxIndexedValue + 1); err == nil {
		t.Fatal("max_value_length past the index's bound accepted")
	}

	e := newEnv(t)
	c := e.tenant("contoso")
	c.do("POST", "/Users", `{"userName":"x@contoso.com","emails":`+emailList(schema.DefaultMaxValues+1)+`}`).wantError(t, 400, "invalidValue")
	c.do("POST", "/Users", `{"userName":"x@contoso.com","title":"`+strings.Repeat("t", schema.DefaultMaxValueLength+1)+`"}`).wantError(t, 400, "invalidValue")
	c.do("POST", "/Users", `{"userName":"x@contoso.com","emails":`+emailList(schema.DefaultMaxValues)+`}`).want(t, 201)

	r := c.do("GET", "/ServiceProviderConfig", nil).want(t, 200)
	if num(r.body, "bulk", "maxPayloadSize") != scim.DefaultBodyLimit || num(r.body, "filter", "maxResults") != 1000 {
		t.Fatalf("ServiceProviderConfig does not advertise the limits: %s", r.raw)
	}
}

// TestLongValuesFound: a value far past the old 1,024-byte index cut is
// found by eq; one past max_value_length is refused on write, never stored
// unfindable.
func TestLongValuesFound(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	long := strings.Repeat("d", 3000)
	id := str(c.do("POST", "/Users", `{"userName":"ada@contoso.com","title":"`+long+`","emails":[{"value":"`+long+`@contoso.com"}],`+
		`"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"`+long+`"}}`).want(t, 201).body, "id")
	for _, f := range []string{
		`title eq "` + long + `"`,
		`emails.value eq "` + long + `@contoso.com"`,
		`emails[value eq "` + long + `@contoso.com"]`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "` + long + `"`,
	} {
		r := c.do("POST", "/Users/.search", map[string]any{"filter": f}).want(t, 200)
		if total(t, r) != 1 || str(r.body, "Resources", 0, "id") != id {
			t.Errorf("filter on a 3,000-byte value found %s", r.raw)
		}
	}
	before := c.snapshot()
	tooLong := strings.Repeat("d", schema.DefaultMaxValueLength+1)
	c.do("PATCH", "/Users/"+id, `{"Operations":[{"op":"replace","path":"title","value":"`+tooLong+`"}]}`).wantError(t, 400, "invalidValue")
	if c.snapshot() != before {
		t.Fatal("a refused value changed the store")
	}
}

// TestFilterErrorsInMeaning: a filter that parses but means nothing for
// the attribute (a value of the wrong type, an operator the type has not,
// an unknown sub-attribute) is invalidFilter (RFC 7644 §3.4.2.2, §3.12),
// on GET and on POST /.search; in a PATCH path, invalidPath or noTarget
// (§3.5.2).
func TestFilterErrorsInMeaning(t *testing.T) {
	e := newEnv(t)
	c := e.tenant("contoso")
	uid := str(c.do("POST", "/Users", `{"userName":"ada@contoso.com","emails":[{"type":"work","value":"ada@contoso.com"}]}`).want(t, 201).body, "id")
	for _, f := range []string{
		`active eq "yes"`,
		`active eq 1`,
		`active gt true`,
		`meta.lastModified gt 5`,
		`meta.created gt "yesterday"`,
		`meta.created co "2024"`,
		`userName eq 5`,
		`userName eq true`,
		`emails.primary eq "yes"`,
		`emails[primary eq 2]`,
		`emails[value eq true]`,
		`name.nosuch eq "x"`,
		`emails.nosuch eq "x"`,
		`emails[nosuch eq "x"]`,
		`emails[type eq "work" and nosuch eq "x"]`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.nosuch eq "x"`,
		`members.value eq 5`,
		`userName gt null`,
		`members.value gt "x"`,
	} {
		t.Run(f, func(t *testing.T) {
			path := "/Users"
			if strings.HasPrefix(f, "members") {
				path = "/Groups"
			}
			c.do("GET", path+"?filter="+q(f), nil).wantError(t, 400, "invalidFilter")
			c.do("POST", path+"/.search", map[string]any{"filter": f}).wantError(t, 400, "invalidFilter")
		})
	}
	// Still accepted: Entra's quoted booleans, dates, numbers as written.
	for _, f := range []string{`active eq "True"`, `active eq true`, `meta.lastModified gt "2011-05-13T04:42:34Z"`, `emails[primary eq "False"]`, `userName eq null`} {
		c.do("GET", "/Users?filter="+q(f), nil).want(t, 200)
	}
	// In a PATCH path the same mistakes are invalidPath, or noTarget when
	// the filter is sound but selects nothing.
	before := c.snapshot()
	for _, tc := range []struct{ path, scimType string }{
		{`emails[nosuch eq "x"].value`, "invalidPath"},
		{`emails[type eq "home"]`, "noTarget"},
	} {
		c.do("PATCH", "/Users/"+uid, `{"Operations":[{"op":"replace","path":"`+strings.ReplaceAll(tc.path, `"`, `\"`)+`","value":"x@y"}]}`).wantError(t, 400, tc.scimType)
	}
	if c.snapshot() != before {
		t.Fatal("a refused PATCH changed the store")
	}
}
