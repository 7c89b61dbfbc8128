package scim

import "testing"

// TestScrubDetail: an activity record keeps an error's words and attribute
// names, not the values the client sent.
func TestScrubDetail(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`userName "jane@contoso.com" is already taken`, `userName "jane@contoso.com" is already taken`},
		{`unknown attribute "mail" in filter`, `unknown attribute "mail" in filter`},
		{`operation 1: no emails value matches emails[value eq "jane.private@example.com"]`, `operation 1: no emails value matches emails[value eq "…"]`},
		{`birthdate must be an xsd:dateTime such as 2011-05-13T04:42:34Z, not "13/05/1980"`, `birthdate must be an xsd:dateTime such as 2011-05-13T04:42:34Z, not "…"`},
		{`phoneNumbers "+1 555 0100" and "x\"y"`, `phoneNumbers "…" and "…"`},
		{`the resource has changed: its version is now W/"12"`, `the resource has changed: its version is now W/"12"`},
	} {
		if got := scrubDetail(c.in); got != c.want {
			t.Errorf("scrubDetail(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
