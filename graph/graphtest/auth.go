package graphtest

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// accessTokenLifetime is what Entra answers for app-only tokens.
const accessTokenLifetime = 3599 * time.Second

// clockSkew is the leeway Entra allows on client assertion times.
const clockSkew = 5 * time.Minute

// app is an application registration (with its service principal) in one tenant.
type app struct {
	secrets []string
	certs   []*x509.Certificate
	roles   []string // admin-consented application permissions, sorted
	spID    string   // the service principal's object id: a token's oid
}

func appKey(tenantID, clientID string) string {
	return strings.ToLower(tenantID) + "/" + strings.ToLower(clientID)
}

// AddApp registers an application in a tenant with a client secret (more
// calls add more secrets, as an app may have several). The tenant is created.
// The app is granted no permission: see Grant.
func (s *Server) AddApp(tenantID, clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tenantLocked(tenantID)
	a := s.appLocked(tenantID, clientID)
	if secret != "" {
		a.secrets = append(a.secrets, secret)
	}
}

// AddAppCertificate registers a certificate credential for an application
// in a tenant, creating both when needed.
func (s *Server) AddAppCertificate(tenantID, clientID string, cert *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tenantLocked(tenantID)
	a := s.appLocked(tenantID, clientID)
	a.certs = append(a.certs, cert)
}

func (s *Server) appLocked(tenantID, clientID string) *app {
	k := appKey(tenantID, clientID)
	a := s.apps[k]
	if a == nil {
		a = &app{spID: newGUID()}
		s.apps[k] = a
	}
	return a
}

// NewCertificate makes a self-signed certificate and a 2048-bit RSA key for
// certificate-credential tests. The PEM holds the certificate and the
// PKCS#8 key, the form azidentity.ParseCertificates reads.
func NewCertificate(commonName string) (*x509.Certificate, *rsa.PrivateKey, []byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	var buf bytes.Buffer
	pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return cert, key, buf.Bytes(), nil
}

// wellKnownTenants answer discovery even though nobody registered them.
var wellKnownTenants = map[string]bool{"common": true, "organizations": true, "consumers": true}

func (s *Server) serveOpenIDConfig(e *exchange, r *http.Request, tenant string) {
	if r.Method != http.MethodGet {
		aadError(e, r, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts GET requests.")
		return
	}
	if !wellKnownTenants[strings.ToLower(tenant)] && s.lookupTenant(tenant) == nil {
		aadError(e, r, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	t := url.PathEscape(tenant)
	base := s.base + "/" + t
	writeJSON(e, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/v2.0",
		"request_uri_parameter_supported":       false,
		"userinfo_endpoint":                     s.base + "/oidc/userinfo",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "tid", "oid"},
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "microsoftonline.com",
		"cloud_graph_host_name":                 "graph.windows.net",
		"msgraph_host":                          strings.TrimPrefix(s.base, "https://"),
		"rbac_url":                              "https://pas.windows.net",
	})
}

// serveInstanceDiscovery answers MSAL's instance discovery, used only when a
// client leaves it enabled: the fake's host is its only alias.
func (s *Server) serveInstanceDiscovery(e *exchange, r *http.Request) {
	host := strings.TrimPrefix(s.base, "https://")
	tenant := "common"
	if u, err := url.Parse(r.URL.Query().Get("authorization_endpoint")); err == nil {
		if p := strings.Split(strings.Trim(u.Path, "/"), "/"); p[0] != "" {
			tenant = p[0]
		}
	}
	writeJSON(e, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": s.base + "/" + url.PathEscape(tenant) + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []map[string]any{{
			"preferred_network": host,
			"preferred_cache":   host,
			"aliases":           []string{host},
		}},
	})
}

// aadError writes the token endpoint's error shape.
func aadError(w http.ResponseWriter, r *http.Request, status int, code string, aadsts int, text string) {
	now := time.Now().UTC()
	ts := now.Format("2006-01-02 15:04:05Z")
	trace := newGUID()
	corr := r.Header.Get("client-request-id")
	if corr == "" {
		corr = newGUID()
	}
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s", aadsts, text, trace, corr, ts),
		"error_codes":       []int{aadsts},
		"timestamp":         ts,
		"trace_id":          trace,
		"correlation_id":    corr,
		"error_uri":         "https://login.microsoftonline.com/error?code=" + fmt.Sprint(aadsts),
	})
}

// graphResources are the scope prefixes accepted as "Microsoft Graph".
func (s *Server) isGraphResource(res string) bool {
	switch strings.TrimSuffix(strings.ToLower(res), "/") {
	case "https://graph.microsoft.com", "https://graph.microsoft.us", "https://dod-graph.microsoft.us",
		"https://microsoftgraph.chinacloudapi.cn", "00000003-0000-0000-c000-000000000000",
		strings.ToLower(s.base), strings.ToLower(s.base) + "/v1.0":
		return true
	}
	return false
}

func (s *Server) serveToken(e *exchange, r *http.Request, tenant string) {
	if r.Method != http.MethodPost {
		aadError(e, r, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST, OPTIONS requests. Received a "+r.Method+" request.")
		return
	}
	s.mu.Lock()
	fail := s.failTokenN > 0
	if fail {
		s.failTokenN--
	}
	s.mu.Unlock()
	if fail {
		aadError(e, r, http.StatusInternalServerError, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again.")
		return
	}
	r.Body = http.MaxBytesReader(e, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		aadError(e, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	f := r.PostForm
	if s.lookupTenant(tenant) == nil {
		aadError(e, r, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	for _, p := range []string{"grant_type", "client_id", "scope"} {
		if f.Get(p) == "" && !(p == "client_id" && hasBasic(r)) {
			aadError(e, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: '"+p+"'.")
			return
		}
	}
	if gt := f.Get("grant_type"); gt != "client_credentials" {
		aadError(e, r, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+gt+"'. The fake supports only client_credentials.")
		return
	}
	// MSAL appends openid, profile and offline_access; exactly one resource's
	// /.default must be there as well.
	var resource string
	for _, sc := range strings.Fields(f.Get("scope")) {
		switch sc {
		case "openid", "profile", "offline_access", "email":
			continue
		}
		res, ok := strings.CutSuffix(sc, "/.default")
		if !ok || resource != "" {
			aadError(e, r, http.StatusBadRequest, "invalid_scope", 1002012, "The provided value for scope "+sc+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
			return
		}
		resource = res
	}
	if resource == "" {
		aadError(e, r, http.StatusBadRequest, "invalid_scope", 1002012, "The provided value for scope "+f.Get("scope")+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
		return
	}
	if !s.isGraphResource(resource) {
		aadError(e, r, http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.", resource, tenant))
		return
	}

	clientID := f.Get("client_id")
	secret := f.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		if clientID == "" {
			clientID, _ = url.QueryUnescape(u)
		}
		secret, _ = url.QueryUnescape(p)
	}
	s.mu.Lock()
	a := s.apps[appKey(tenant, clientID)]
	var secrets []string
	var certs []*x509.Certificate
	if a != nil {
		secrets = append(secrets, a.secrets...)
		certs = append(certs, a.certs...)
	}
	s.mu.Unlock()
	if a == nil {
		aadError(e, r, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, tenant))
		return
	}

	assertion := f.Get("client_assertion")
	switch {
	case secret != "" && assertion != "":
		aadError(e, r, http.StatusBadRequest, "invalid_request", 90014, "Only one of 'client_secret' and 'client_assertion' may be sent.")
		return
	case secret != "":
		ok := false
		for _, want := range secrets {
			if hmac.Equal([]byte(want), []byte(secret)) {
				ok = true
			}
		}
		if !ok {
			aadError(e, r, http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID))
			return
		}
	case assertion != "":
		if at := f.Get("client_assertion_type"); at != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			aadError(e, r, http.StatusBadRequest, "invalid_request", 90014, "The request body must contain the following parameter: 'client_assertion_type' with the value urn:ietf:params:oauth:client-assertion-type:jwt-bearer.")
			return
		}
		audiences := []string{s.base + "/" + tenant + "/oauth2/v2.0/token", s.base + "/" + tenant + "/v2.0"}
		if code, text := verifyAssertion(assertion, certs, clientID, audiences, time.Now()); code != 0 {
			aadError(e, r, http.StatusUnauthorized, "invalid_client", code, text)
			return
		}
	default:
		aadError(e, r, http.StatusUnauthorized, "invalid_client", 7000216, "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")
		return
	}

	s.mu.Lock()
	roles := append([]string(nil), a.roles...) // as consented now: a later Grant needs a new token
	spID := a.spID
	s.mu.Unlock()
	acr := "1"
	if assertion != "" {
		acr = "2"
	}
	now := time.Now()
	tok := s.issueToken(tokenClaims{
		Aud: strings.TrimSuffix(resource, "/"), Iss: "https://sts.windows.net/" + strings.ToLower(tenant) + "/",
		Iat: now.Unix(), Nbf: now.Unix(), Exp: now.Add(accessTokenLifetime).Unix(),
		AppID: strings.ToLower(clientID), AppIDAC: acr, IDTyp: "app", OID: spID, Sub: spID,
		Roles: roles, TID: strings.ToLower(tenant), Ver: "1.0",
	})
	e.Header().Set("Cache-Control", "no-store, no-cache")
	writeJSON(e, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int(accessTokenLifetime / time.Second),
		"ext_expires_in": int(accessTokenLifetime / time.Second),
		"access_token":   tok,
	})
}

func hasBasic(r *http.Request) bool {
	_, _, ok := r.BasicAuth()
	return ok
}

// checkBearer returns the claims of a valid bearer token, or the message
// Graph gives for a bad one.
func (s *Server) checkBearer(r *http.Request) (*tokenClaims, string) {
	h := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if h == "" || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, "Access token is empty."
	}
	return s.readToken(tok, time.Now())
}

// decodeB64 accepts the base64 flavours found in JWT headers: MSAL puts a
// padded standard-alphabet thumbprint in x5t#S256.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "+/") {
		return base64.RawStdEncoding.DecodeString(s)
	}
	return base64.RawURLEncoding.DecodeString(s)
}

// verifyAssertion checks a client assertion JWT. It returns 0 or the
// AADSTS code and text Entra would answer with.
func verifyAssertion(assertion string, certs []*x509.Certificate, clientID string, audiences []string, now time.Time) (int, string) {
	const badSig = 700027
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return 50027, "JWT token is invalid or malformed."
	}
	hb, err1 := decodeB64(parts[0])
	cb, err2 := decodeB64(parts[1])
	sig, err3 := decodeB64(parts[2])
	var hdr struct {
		Alg     string `json:"alg"`
		X5t     string `json:"x5t"`
		X5tS256 string `json:"x5t#S256"`
	}
	var claims struct {
		Aud json.RawMessage `json:"aud"`
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Exp *float64        `json:"exp"`
		Nbf *float64        `json:"nbf"`
	}
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(cb, &claims) != nil {
		return 50027, "JWT token is invalid or malformed."
	}

	var cert *x509.Certificate
	sha1Want, _ := decodeB64(hdr.X5t)
	sha256Want, _ := decodeB64(hdr.X5tS256)
	for _, c := range certs {
		s1 := sha1.Sum(c.Raw)
		s256 := sha256.Sum256(c.Raw)
		if (len(sha256Want) > 0 && bytes.Equal(s256[:], sha256Want)) || (len(sha1Want) > 0 && bytes.Equal(s1[:], sha1Want)) {
			cert = c
			break
		}
	}
	if cert == nil {
		return badSig, fmt.Sprintf("Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '%s']", strings.ToUpper(fmt.Sprintf("%x", sha1Want)))
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return badSig, "Client assertion failed signature validation. [Reason - The certificate key is not an RSA key.]"
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	var err error
	switch hdr.Alg {
	case "RS256":
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
	case "PS256":
		err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	default:
		return badSig, "Client assertion failed signature validation. [Reason - The algorithm '" + hdr.Alg + "' is not supported.]"
	}
	if err != nil {
		return badSig, "Client assertion failed signature validation. [Reason - The provided signature value did not match the expected signature value.]"
	}
	if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return 700027, "Client assertion failed signature validation. [Reason - The certificate is not within its validity period.]"
	}

	if !strings.EqualFold(claims.Iss, clientID) || !strings.EqualFold(claims.Sub, clientID) {
		return 700021, "Client assertion application identifier doesn't match 'client_id' parameter."
	}
	var auds []string
	if json.Unmarshal(claims.Aud, &auds) != nil {
		var one string
		json.Unmarshal(claims.Aud, &one)
		auds = []string{one}
	}
	audOK := false
	for _, a := range auds {
		for _, want := range audiences {
			if strings.EqualFold(strings.TrimSuffix(a, "/"), want) {
				audOK = true
			}
		}
	}
	if !audOK {
		return 50013, fmt.Sprintf("Assertion audience claim does not match the required value. The audience in the assertion was '%s' and the expected audience is '%s'.", strings.Join(auds, ","), audiences[0])
	}
	switch {
	case claims.Exp == nil:
		return 700024, "Client assertion is missing the 'exp' claim."
	case now.After(time.Unix(int64(*claims.Exp), 0).Add(clockSkew)):
		return 700024, "Client assertion is not within its valid time range."
	case claims.Nbf != nil && now.Add(clockSkew).Before(time.Unix(int64(*claims.Nbf), 0)):
		return 700024, "Client assertion is not within its valid time range."
	}
	return 0, ""
}
