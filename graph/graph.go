// Package graph talks to Microsoft Graph for one customer tenant and
// nothing else: client-credentials authentication (azidentity), delta
// queries over users and the assigned groups, lookups by id, and
// throttling. It stores nothing and returns plain values of its own, never
// SDK types. graph/graphtest is a fake Graph to run it against.
package graph

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	kiotaauth "github.com/microsoft/kiota-authentication-azure-go"
	khttp "github.com/microsoft/kiota-http-go"
	msgraph "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"
)

// National clouds: authority host and Graph endpoint.
var Clouds = map[string]struct{ AuthorityHost, GraphURL string }{
	"global": {"https://login.microsoftonline.com/", "https://graph.microsoft.com"},
	"usgov":  {"https://login.microsoftonline.us/", "https://graph.microsoft.us"},
	"china":  {"https://login.chinacloudapi.cn/", "https://microsoftgraph.chinacloudapi.cn"},
}

// The least-privileged application permissions of the calls the pull makes.
const (
	permUsers        = "User.Read.All"
	permGroupMembers = "GroupMember.Read.All"
)

// RequiredPermissions are the Microsoft Graph application permissions (with
// admin consent) the pull needs, and all it needs. Each call it makes, with
// the least-privileged permission that covers it, from the "Permissions"
// table of the call's Microsoft Graph v1.0 reference page:
//
//	GET /groups/delta?$filter=id eq '…'&$select=…,members  (GroupsDelta)       GroupMember.Read.All
//	GET /users/delta?$select=…                              (UsersDelta)        User.Read.All
//	GET /users/delta?$deltatoken=latest                     (LatestUsersLink)   User.Read.All
//	GET /groups/delta?$filter=id eq '…'&$select=id,displayName (ExistingGroups) GroupMember.Read.All
//	GET /users/delta?$filter=id eq '…' or …                 (UsersByID)         User.Read.All
//	GET /directory/deletedItems/{id}                        (DeletedUsers)      User.Read.All
//
// Not needed: Directory.Read.All (the pull does not call
// directoryObjects/getByIds), Group.Read.All, any write permission.
var RequiredPermissions = []string{permGroupMembers, permUsers}

// Config is what a client for one customer tenant needs.
type Config struct {
	TenantID     string // the customer's Entra tenant (directory) id
	ClientID     string // the app registration's application (client) id
	ClientSecret string // either this,
	Certificate  []byte // or a PEM certificate with its private key

	AuthorityHost string // default the global cloud's login.microsoftonline.com
	GraphURL      string // default https://graph.microsoft.com

	// HTTPClient carries every request (tokens and Graph); default a client
	// whose transport has timeouts. Tests pass the fake Graph's.
	HTTPClient *http.Client
	// Timeout bounds the wait for an answer's headers, per attempt.
	Timeout time.Duration
	// MaxRetries bounds the retries of one throttled request; MaxWait is
	// the longest Retry-After waited for in place.
	MaxRetries int
	MaxWait    time.Duration
	// MaxDownTime bounds the time one request spends on a Graph (or token
	// endpoint) that does not answer or answers only 503/504, attempts and
	// waits together: a retry that would pass it is not made. A request
	// may end up to Timeout past it. Default 90 s.
	MaxDownTime time.Duration
	// Sleep waits (tests pass a fake clock); default a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// SetDefaults fills what is unset, and puts GraphURL and AuthorityHost in
// their canonical form when they have one (Validate reports them when not).
func (c *Config) SetDefaults() {
	if c.AuthorityHost == "" {
		c.AuthorityHost = Clouds["global"].AuthorityHost
	}
	if c.GraphURL == "" {
		c.GraphURL = Clouds["global"].GraphURL
	}
	if u, err := NormalizeGraphURL(c.GraphURL); err == nil {
		c.GraphURL = u
	}
	if u, err := NormalizeAuthorityHost(c.AuthorityHost); err == nil {
		c.AuthorityHost = u
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 4
	}
	if c.MaxWait == 0 {
		c.MaxWait = 2 * time.Minute
	}
	if c.MaxDownTime == 0 {
		c.MaxDownTime = 90 * time.Second
	}
	if c.Sleep == nil {
		c.Sleep = sleepCtx
	}
}

// Validate reports what is missing or wrong.
func (c *Config) Validate() error {
	if c.TenantID == "" || c.ClientID == "" {
		return errors.New("graph: tenant id and client id are required")
	}
	if (c.ClientSecret == "") == (len(c.Certificate) == 0) {
		return errors.New("graph: give either a client secret or a certificate")
	}
	if _, err := NormalizeAuthorityHost(c.AuthorityHost); err != nil {
		return fmt.Errorf("graph: authority host: %w", err)
	}
	if _, err := NormalizeGraphURL(c.GraphURL); err != nil {
		return fmt.Errorf("graph: Graph URL: %w", err)
	}
	return nil
}

// NormalizeGraphURL returns the Graph endpoint as scheme and host
// ("https://graph.microsoft.com"). The version path most documentation
// prints ("https://graph.microsoft.com/v1.0", with or without a final
// slash) is removed: entrasync adds /v1.0 itself. Any other path, /beta
// included, is refused.
func NormalizeGraphURL(raw string) (string, error) {
	u, err := parseEndpoint(raw)
	if err != nil {
		return "", err
	}
	path := strings.TrimRight(u.Path, "/")
	switch {
	case path == "" || strings.EqualFold(path, "/v1.0"):
		return u.Scheme + "://" + u.Host, nil
	case strings.EqualFold(path, "/beta"):
		return "", fmt.Errorf("%q names Graph's beta endpoint; entrasync reads v1.0: give the Graph host without a path, such as https://graph.microsoft.com", raw)
	}
	return "", fmt.Errorf("%q has a path (%s): give the Graph host without a path, such as https://graph.microsoft.com", raw, u.Path)
}

// NormalizeAuthorityHost returns the Entra authority host as scheme and
// host with a final slash ("https://login.microsoftonline.com/"), the form
// azidentity takes. A path (a tenant, /v2.0, /oauth2/v2.0/token) is
// refused: the tenant comes from the tenant id.
func NormalizeAuthorityHost(raw string) (string, error) {
	u, err := parseEndpoint(raw)
	if err != nil {
		return "", err
	}
	if strings.Trim(u.Path, "/") != "" {
		return "", fmt.Errorf("%q has a path (%s): give only the host, such as https://login.microsoftonline.com (the tenant comes from --tenant-id)", raw, u.Path)
	}
	return u.Scheme + "://" + u.Host + "/", nil
}

// parseEndpoint accepts an absolute https URL (http only for loopback
// hosts) without user, query or fragment.
func parseEndpoint(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return nil, errors.New("it is empty")
	case err != nil || u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("%q is not an absolute URL such as https://host", Redact(raw))
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(raw, "?") || strings.HasSuffix(raw, "#"):
		return nil, fmt.Errorf("the URL for %s carries a user, a query or a fragment: give scheme and host only, such as %s://%s", u.Hostname(), strings.ToLower(u.Scheme), u.Host)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme == "https" || (u.Scheme == "http" && isLoopback(u.Hostname())) {
		return u, nil
	}
	return nil, fmt.Errorf("%q must use https", Redact(raw))
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Client is a Graph client for one customer tenant.
type Client struct {
	cfg     Config
	sdk     *msgraph.GraphServiceClient
	graph   *url.URL // GraphURL parsed, to check links against
	version string   // "/v1.0"
}

// New builds a client. It does not contact Graph.
func New(cfg Config) (*Client, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base := cfg.HTTPClient
	if base == nil {
		base = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   15 * time.Second,
			ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		}}
	}
	parent := base.Transport
	if parent == nil {
		parent = http.DefaultTransport
	}
	retrying := &retryTransport{next: parent, maxRetries: cfg.MaxRetries, maxWait: cfg.MaxWait, timeout: cfg.Timeout,
		maxDown: cfg.MaxDownTime, sleep: cfg.Sleep}

	co := azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: cfg.AuthorityHost},
		Transport: &http.Client{Transport: retrying},
		// retrying is the one retry layer (on cfg.Sleep's clock, honouring
		// Retry-After); azcore's own would wait again on the real clock.
		Retry: policy.RetryOptions{MaxRetries: -1},
	}
	var cred azcore.TokenCredential
	var err error
	if cfg.ClientSecret != "" {
		cred, err = azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: true})
	} else {
		var certs []*x509.Certificate
		var key crypto.PrivateKey
		certs, key, err = azidentity.ParseCertificates(cfg.Certificate, nil)
		if err != nil {
			return nil, fmt.Errorf("graph: certificate: %w", err)
		}
		cred, err = azidentity.NewClientCertificateCredential(cfg.TenantID, cfg.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: true, SendCertificateChain: true})
	}
	if err != nil {
		return nil, fmt.Errorf("graph: credential: %w", err)
	}
	graphURL, _ := url.Parse(cfg.GraphURL)
	// The SDK attaches the token only to hosts it is told about, silently:
	// a configured Graph URL must be one of them.
	scopes := []string{scopeFor(graphURL)}
	auth, err := kiotaauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, scopes, []string{graphURL.Hostname()})
	if err != nil {
		return nil, fmt.Errorf("graph: auth provider: %w", err)
	}
	opts := msgraph.GetDefaultClientOptions()
	var middleware []khttp.Middleware
	for _, m := range msgraphcore.GetDefaultMiddlewaresWithOptions(&opts) {
		if _, isRetry := m.(*khttp.RetryHandler); !isRetry { // retries are retryTransport's
			middleware = append(middleware, m)
		}
	}
	hc := &http.Client{Transport: khttp.NewCustomTransportWithParentTransport(retrying, middleware...)}
	adapter, err := msgraph.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, hc)
	if err != nil {
		return nil, fmt.Errorf("graph: request adapter: %w", err)
	}
	adapter.SetBaseUrl(cfg.GraphURL + "/v1.0")
	// NewGraphServiceClient sets the SDK's global backing store factory
	// (to the value it already holds) on every call: a data race with the
	// models other tenants' runs are decoding at the time. A nil factory
	// leaves the global alone.
	sdk := &msgraph.GraphServiceClient{GraphBaseServiceClient: *msgraph.NewGraphBaseServiceClient(adapter, nil)}
	return &Client{cfg: cfg, sdk: sdk, graph: graphURL, version: "/v1.0"}, nil
}

// scopeFor is the .default scope of the Graph resource: the national
// clouds' Graph hosts for them, graph.microsoft.com for anything else (the
// fake Graph accepts it).
func scopeFor(u *url.URL) string {
	for _, c := range Clouds {
		if strings.EqualFold(strings.TrimRight(c.GraphURL, "/"), u.Scheme+"://"+u.Host) {
			return c.GraphURL + "/.default"
		}
	}
	return "https://graph.microsoft.com/.default"
}

// CheckCertificate reports whether pemBytes holds a certificate and its
// private key, as a certificate credential needs.
func CheckCertificate(pemBytes []byte) error {
	certs, key, err := azidentity.ParseCertificates(pemBytes, nil)
	if err != nil {
		return err
	}
	if len(certs) == 0 || key == nil {
		return errors.New("the file needs a certificate and its private key, PEM-encoded")
	}
	return nil
}
