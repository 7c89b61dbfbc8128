package graphtest

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// grantToken grants appA exactly perms and returns a fresh token.
func grantToken(t testing.TB, s *Server, perms ...string) string {
	t.Helper()
	s.Grant(tenantA, appA, perms...)
	return secretToken(t, s, tenantA, appA, secretA)
}

// jwtPart decodes part i (0 header, 1 claims) of a token.
func jwtPart(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGrantRefusesUnknownPermissions(t *testing.T) {
	s := NewServer(Options{})
	defer s.Close()
	for _, bad := range []string{"User.Read", "user.read.all", "Directory.Read", "Users.Read.All", ""} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Grant(%q) was taken", bad)
				}
			}()
			s.Grant(tenantA, appA, "User.Read.All", bad)
		}()
	}
	for _, good := range []string{"User.Read.All", "User.ReadWrite.All", "User.ReadBasic.All", "GroupMember.Read.All",
		"Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"} {
		s.Grant(tenantA, appA, good)
	}
}

// Tokens are Entra-shaped app-only JWTs carrying the roles granted when
// they were issued.
func TestAccessTokenClaims(t *testing.T) {
	s, _, _ := setup(t, Options{})
	none := grantToken(t, s)
	if _, ok := jwtPart(t, none, 1)["roles"]; ok {
		t.Fatalf("a token of an app granted nothing has roles: %v", jwtPart(t, none, 1))
	}
	tok := grantToken(t, s, "User.Read.All", "GroupMember.Read.All", "User.Read.All")
	if h := jwtPart(t, tok, 0); h["alg"] != "HS256" || h["typ"] != "JWT" {
		t.Fatalf("header %v", h)
	}
	c := jwtPart(t, tok, 1)
	now := float64(time.Now().Unix())
	want := map[string]any{"aud": "https://graph.microsoft.com", "iss": "https://sts.windows.net/" + tenantA + "/",
		"tid": tenantA, "appid": appA, "idtyp": "app", "appidacr": "1", "ver": "1.0"}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
	roles, _ := c["roles"].([]any)
	if fmt.Sprint(roles) != "[GroupMember.Read.All User.Read.All]" {
		t.Errorf("roles %v", c["roles"])
	}
	iat, _ := c["iat"].(float64)
	nbf, _ := c["nbf"].(float64)
	exp, _ := c["exp"].(float64)
	if iat > now+1 || nbf > iat || exp-iat != 3599 || c["oid"] == "" || c["oid"] != c["sub"] {
		t.Errorf("times/oid: %v", c)
	}

	// A later grant reaches clients with their next token, as in Entra.
	s.Grant(tenantA, appA, "GroupMember.Read.All")
	if status, _, _ := get(t, s, tok, usersURL(s, "")); status != http.StatusOK {
		t.Fatalf("old token after a narrower grant: %d", status)
	}
	fresh := secretToken(t, s, tenantA, appA, secretA)
	if status, _, _ := get(t, s, fresh, usersURL(s, "")); status != http.StatusForbidden {
		t.Fatalf("new token after a narrower grant: %d", status)
	}
}

// Graph authorises from the token alone: a forged, expired or foreign
// token is refused before any permission is looked at.
func TestForgedTokensRefused(t *testing.T) {
	s, _, tok := setup(t, Options{})
	parts := strings.Split(tok, ".")
	claims := jwtPart(t, tok, 1)
	claims["roles"] = []string{"Directory.ReadWrite.All"}
	cb, _ := json.Marshal(claims)
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(cb) + "." + parts[2]

	base := tokenClaims{Aud: "https://graph.microsoft.com", TID: tenantA, AppID: appA, Roles: []string{"User.Read.All"},
		Iat: time.Now().Unix(), Nbf: time.Now().Unix(), Exp: time.Now().Add(time.Hour).Unix()}
	expired, future, foreign := base, base, base
	expired.Exp = time.Now().Add(-time.Minute).Unix()
	future.Nbf = time.Now().Add(time.Hour).Unix()
	foreign.Aud = "https://management.azure.com"
	for name, bad := range map[string]string{
		"forged roles": forged, "expired": s.issueToken(expired), "not yet valid": s.issueToken(future),
		"another audience": s.issueToken(foreign), "not a JWT": "abc",
	} {
		status, _, b := get(t, s, bad, usersURL(s, ""))
		if code, _ := graphErr(t, b); status != http.StatusUnauthorized || code != "InvalidAuthenticationToken" {
			t.Errorf("%s: %d %s", name, status, b)
		}
	}
	if status, _, _ := get(t, s, s.issueToken(base), usersURL(s, "")); status != http.StatusOK {
		t.Fatalf("a well-made token: %d", status)
	}
}

// postJSON posts body (gzip-compressed when asked) with a bearer token.
func postJSON(t testing.TB, s *Server, token, u, encoding string, body []byte) (int, []byte) {
	t.Helper()
	if strings.EqualFold(encoding, "gzip") {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(body)
		zw.Close()
		body = buf.Bytes()
	}
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Each endpoint refuses without one of the permissions its reference page
// lists and takes the least-privileged one alone.
func TestEndpointPermissions(t *testing.T) {
	s, d, _ := setup(t, Options{})
	user := d.AddUser(User{DisplayName: "Soft", AccountEnabled: true})
	group := d.AddGroup(Group{DisplayName: "Gone", MailEnabled: true})
	d.SoftDeleteUser(user)
	d.DeleteGroup(group, false)
	getByIDs := func(tok string) (int, []byte) {
		return postJSON(t, s, tok, s.URL()+"/v1.0/directoryObjects/getByIds", "", []byte(`{"ids":["`+user+`"],"types":["user"]}`))
	}
	getURL := func(u string) func(string) (int, []byte) {
		return func(tok string) (int, []byte) {
			status, _, b := get(t, s, tok, u)
			return status, b
		}
	}
	endpoints := []struct {
		name    string
		call    func(tok string) (int, []byte)
		least   string
		refused [][]string
	}{
		{"users/delta", getURL(usersURL(s, "")), "User.Read.All",
			[][]string{nil, {"GroupMember.Read.All"}, {"User.ReadBasic.All", "Group.Read.All"}}},
		{"groups/delta", getURL(groupsURL(s, "")), "GroupMember.Read.All",
			[][]string{nil, {"User.Read.All"}, {"User.ReadWrite.All"}}},
		{"getByIds", getByIDs, "Directory.Read.All",
			[][]string{nil, {"GroupMember.Read.All", "User.Read.All"}, {"User.ReadWrite.All", "Group.ReadWrite.All"}}},
		{"deleted user", getURL(s.URL() + "/v1.0/directory/deletedItems/" + user), "User.Read.All",
			[][]string{nil, {"GroupMember.Read.All"}, {"Group.Read.All"}}},
		{"deleted group", getURL(s.URL() + "/v1.0/directory/deletedItems/" + group), "Group.Read.All",
			[][]string{nil, {"GroupMember.Read.All", "User.Read.All"}}},
	}
	for _, ep := range endpoints {
		t.Run(ep.name, func(t *testing.T) {
			for _, perms := range ep.refused {
				status, b := ep.call(grantToken(t, s, perms...))
				code, msg := graphErr(t, b)
				if status != http.StatusForbidden || code != "Authorization_RequestDenied" || msg != "Insufficient privileges to complete the operation." {
					t.Errorf("with %v: %d %s", perms, status, b)
				}
			}
			if status, b := ep.call(grantToken(t, s, ep.least)); status != http.StatusOK {
				t.Errorf("with %s alone: %d %s", ep.least, status, b)
			}
			if status, b := ep.call(grantToken(t, s, "Directory.ReadWrite.All")); status != http.StatusOK {
				t.Errorf("with Directory.ReadWrite.All: %d %s", status, b)
			}
		})
	}
}

// Request bodies are taken plain or gzip-compressed, as Graph takes them.
func TestRequestBodyEncodings(t *testing.T) {
	s, d, _ := setup(t, Options{})
	id := d.AddUser(User{DisplayName: "Zipped", AccountEnabled: true})
	tok := grantToken(t, s, "Directory.Read.All")
	u := s.URL() + "/v1.0/directoryObjects/getByIds?$select=displayName"
	body := []byte(`{"ids":["` + id + `"],"types":["user"]}`)
	for _, enc := range []string{"", "identity", "gzip", "GZIP"} {
		status, b := postJSON(t, s, tok, u, enc, body)
		if status != http.StatusOK || !strings.Contains(string(b), `"displayName":"Zipped"`) {
			t.Errorf("encoding %q: %d %s", enc, status, b)
		}
	}
	status, b := postJSON(t, s, tok, u, "br", body)
	if code, _ := graphErr(t, b); status != http.StatusUnsupportedMediaType || code == "" {
		t.Errorf("br: %d %s", status, b)
	}
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader("not gzip at all"))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if code, _ := graphErr(t, b); resp.StatusCode != http.StatusBadRequest || code != "BadRequest" {
		t.Errorf("corrupt gzip: %d %s", resp.StatusCode, b)
	}
}

func TestDeletedItems(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s, d, _ := setup(t, Options{Now: clock.Now})
	tok := grantToken(t, s, "User.Read.All", "Group.Read.All")
	soft := d.AddUser(User{UserPrincipalName: "soft@contoso.example", DisplayName: "Soft Deleted", Department: "Sales", AccountEnabled: true})
	active := d.AddUser(User{DisplayName: "Active"})
	hard := d.AddUser(User{DisplayName: "Hard"})
	restored := d.AddUser(User{DisplayName: "Restored"})
	group := d.AddGroup(Group{DisplayName: "Old team", MailEnabled: true})
	d.SoftDeleteUser(soft)
	d.SoftDeleteUser(restored)
	d.RestoreUser(restored)
	d.SoftDeleteUser(hard)
	d.HardDeleteUser(hard)
	d.DeleteGroup(group, false)
	item := func(id, query string) (int, map[string]any, []byte) {
		status, _, b := get(t, s, tok, s.URL()+"/v1.0/directory/deletedItems/"+id+query)
		var m map[string]any
		json.Unmarshal(b, &m)
		return status, m, b
	}

	status, m, b := item(soft, "")
	if status != http.StatusOK || m["@odata.type"] != "#microsoft.graph.user" || m["id"] != soft ||
		m["userPrincipalName"] != "soft@contoso.example" || m["deletedDateTime"] != "2026-03-01T12:00:00Z" ||
		m["@odata.context"] != s.URL()+"/v1.0/$metadata#directoryObjects/$entity" {
		t.Fatalf("soft-deleted user: %d %s", status, b)
	}
	status, m, b = item(strings.ToUpper(soft), "?$select=id,department")
	if status != http.StatusOK || len(m) != 4 || m["department"] != "Sales" || m["id"] != soft {
		t.Fatalf("$select=id,department: %d %s", status, b)
	}
	if status, m, b = item(soft, "?$select=deletedDateTime"); status != http.StatusOK || len(m) != 4 || m["deletedDateTime"] == nil {
		t.Fatalf("$select=deletedDateTime: %d %s", status, b)
	}
	if status, _, b = item(soft, "?$select=nickname"); status != http.StatusBadRequest {
		t.Fatalf("unknown property: %d %s", status, b)
	}
	if status, _, b = item(soft, "?$top=1"); status != http.StatusBadRequest {
		t.Fatalf("$top: %d %s", status, b)
	}
	status, m, b = item(group, "")
	if status != http.StatusOK || m["@odata.type"] != "#microsoft.graph.group" || m["displayName"] != "Old team" || m["members@delta"] != nil {
		t.Fatalf("soft-deleted group: %d %s", status, b)
	}
	// The SDK's and OData's spellings reach the same item.
	for _, u := range []string{"/v1.0/directory/deleteditems/" + soft, "/v1.0/directory/deletedItems('" + soft + "')"} {
		if status, _, b := get(t, s, tok, s.URL()+u); status != http.StatusOK {
			t.Errorf("%s: %d %s", u, status, b)
		}
	}

	for name, id := range map[string]string{"active": active, "hard-deleted": hard, "restored": restored, "unknown": newGUID()} {
		status, _, b := item(id, "")
		code, msg := graphErr(t, b)
		if status != http.StatusNotFound || code != "Request_ResourceNotFound" ||
			msg != "Resource '"+id+"' does not exist or one of its queried reference-property objects are not present." {
			t.Errorf("%s: %d %s", name, status, b)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, s.URL()+"/v1.0/directory/deletedItems/"+soft, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if !slices.Contains(d.Users(), active) {
		t.Fatal("directory changed")
	}
}
