package graphtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// applicationPermissions are Microsoft Graph application permissions (app
// roles of the Microsoft Graph service principal) the fake knows by name,
// from the permissions reference
// (https://learn.microsoft.com/graph/permissions-reference). Grant refuses
// any other name, so a typo cannot pass for a permission.
var applicationPermissions = map[string]bool{
	"User.Read.All":                 true,
	"User.ReadBasic.All":            true,
	"User.ReadWrite.All":            true,
	"User.Export.All":               true,
	"GroupMember.Read.All":          true,
	"GroupMember.ReadWrite.All":     true,
	"Group.Read.All":                true,
	"Group.ReadWrite.All":           true,
	"Directory.Read.All":            true,
	"Directory.ReadWrite.All":       true,
	"Application.Read.All":          true,
	"Application.ReadWrite.All":     true,
	"Application.ReadWrite.OwnedBy": true,
	"Organization.Read.All":         true,
	"AuditLog.Read.All":             true,
	"Device.Read.All":               true,
	"Member.Read.Hidden":            true,
}

// Permissions each endpoint accepts, application column of its Microsoft
// Graph v1.0 reference page; any one of them suffices.
var (
	// user: delta, https://learn.microsoft.com/graph/api/user-delta
	permUsersDelta = []string{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
	// group: delta, https://learn.microsoft.com/graph/api/group-delta
	permGroupsDelta = []string{"GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
	// directoryObject: getByIds, https://learn.microsoft.com/graph/api/directoryobject-getbyids
	permGetByIDs = []string{"Directory.Read.All", "Directory.ReadWrite.All"}
	// Get deleted item, https://learn.microsoft.com/graph/api/directory-deleteditems-get
	// ("For users" and "For groups" tables).
	permDeletedUser  = []string{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
	permDeletedGroup = []string{"Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)

// Grant sets the application permissions an admin consented to for an app
// in a tenant, replacing earlier grants (none: the app may sign in but read
// nothing). The tenant and app are created when needed. As in Entra, a
// client sees the change with its next access token. An unknown permission
// name panics: it is a mistake in the test, not a case to handle.
func (s *Server) Grant(tenantID, clientID string, permissions ...string) {
	roles := make([]string, 0, len(permissions))
	for _, p := range permissions {
		if !applicationPermissions[p] {
			panic(fmt.Sprintf("graphtest: %q is not a Microsoft Graph application permission the fake knows", p))
		}
		if !slices.Contains(roles, p) {
			roles = append(roles, p)
		}
	}
	sort.Strings(roles)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tenantLocked(tenantID)
	s.appLocked(tenantID, clientID).roles = roles
}

// tokenClaims are the claims of an Entra app-only (client credentials)
// access token for Microsoft Graph that the fake issues and reads
// (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference).
type tokenClaims struct {
	Aud     string   `json:"aud"`
	Iss     string   `json:"iss"`
	Iat     int64    `json:"iat"`
	Nbf     int64    `json:"nbf"`
	Exp     int64    `json:"exp"`
	AppID   string   `json:"appid"`
	AppIDAC string   `json:"appidacr"` // 1: client secret, 2: certificate
	IDTyp   string   `json:"idtyp"`
	OID     string   `json:"oid"`
	Sub     string   `json:"sub"`
	Roles   []string `json:"roles,omitempty"` // Entra leaves the claim out when nothing is granted
	TID     string   `json:"tid"`
	Ver     string   `json:"ver"`
}

// issueToken signs an access token (HS256 with the fake's own key: only the
// fake verifies it).
func (s *Server) issueToken(c tokenClaims) string {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","alg":"HS256"}`))
	body, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	signing := hdr + "." + base64.RawURLEncoding.EncodeToString(body)
	m := hmac.New(sha256.New, s.jwtKey)
	m.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// readToken verifies an access token's signature, lifetime and audience and
// returns its claims, or the message Graph answers a bad token with.
func (s *Server) readToken(tok string, now time.Time) (*tokenClaims, string) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, "IDX14100: JWT is not well formed, there are no dots (.)."
	}
	m := hmac.New(sha256.New, s.jwtKey)
	m.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, m.Sum(nil)) {
		return nil, "Invalid JWT token. The token signature is not valid."
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c tokenClaims
	if err != nil || json.Unmarshal(body, &c) != nil {
		return nil, "Invalid JWT token. The token is malformed."
	}
	switch {
	case now.Unix() >= c.Exp:
		return nil, "Lifetime validation failed, the token is expired."
	case now.Unix() < c.Nbf:
		return nil, "Lifetime validation failed, the token is not yet valid."
	case !s.isGraphResource(c.Aud):
		return nil, "Invalid audience."
	}
	return &c, ""
}

// allowed reports whether the token holds one of the permissions.
func (c *tokenClaims) allowed(permissions []string) bool {
	for _, r := range c.Roles {
		if slices.Contains(permissions, r) {
			return true
		}
	}
	return false
}

// denied writes Graph's answer to a call the app's permissions do not
// cover. Graph does not say which permission is missing.
func denied(w http.ResponseWriter, r *http.Request) {
	graphError(w, r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
}
