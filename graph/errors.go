package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
)

// Graph error codes the worker acts on.
const (
	CodeSyncStateNotFound = "syncStateNotFound"
	CodeResyncRequired    = "resyncRequired"
	CodeTooManyRequests   = "TooManyRequests"
	CodeRequestDenied     = "Authorization_RequestDenied"
)

// Kind tells failures apart by what to do about them.
type Kind string

const (
	// KindPermission: Graph refused the call (403): the app lacks an
	// application permission, named in Error.Permission. An admin must
	// grant it.
	KindPermission Kind = "permission"
	// KindCredentials: the token endpoint refused the app's credentials
	// (an AADSTS code: wrong or expired secret, unknown app or tenant,
	// certificate not accepted).
	KindCredentials Kind = "credentials"
	// KindTokenUnavailable: the token endpoint is temporarily unavailable
	// (5xx, 429, temporarily_unavailable, a transient AADSTS code). Try later.
	KindTokenUnavailable Kind = "token-unavailable"
	// KindNetwork: no answer came (DNS, connection, TLS, timeout), from the
	// token endpoint or Graph; Error.Host names the host.
	KindNetwork Kind = "network"
	// KindThrottled: Graph still asked to come back later after the retries.
	KindThrottled Kind = "throttled"
	// KindResync: the delta link is no longer valid: a full sync is needed.
	KindResync Kind = "resync"
	// KindGraph: any other error Graph answered with (Status and Code).
	KindGraph Kind = "graph"
	// KindInvalid: entrasync refused an input (an id, a stored link) or a
	// Graph answer that breaks the delta protocol; nothing was sent, or
	// the walk stopped.
	KindInvalid Kind = "invalid"
	// KindCanceled: the caller's context ended the request.
	KindCanceled Kind = "canceled"
	// KindOther: anything else.
	KindOther Kind = "other"
)

// Error is a failed Graph (or token endpoint) request. Its text says what
// failed and what to do, and never holds a URL's query (delta and skip
// tokens), an access token, a secret or a client assertion.
type Error struct {
	Kind       Kind
	Status     int           // HTTP status; 0 when no answer came
	Code       string        // Graph's error code (e.g. syncStateNotFound), or the token endpoint's error (invalid_client)
	Message    string        // what Graph or Entra said, or what went wrong: no secrets, no personal data
	RetryAfter time.Duration // from Retry-After, for 429 and 503
	// Permission is the least-privileged application permission the call
	// needs, set when Graph refused it (403): Graph does not say.
	Permission string
	// AADSTS is the token endpoint's error code, e.g. 7000215 (wrong secret).
	AADSTS int
	// Request is the failed request's method, host and path, never its query.
	Request string
	// Host is the host that could not be reached (KindNetwork).
	Host string
	Err  error // the underlying error, when there is one; its text is not repeated

	advice string // what to do, in words
	token  bool   // the token endpoint failed, not Graph
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("microsoft graph: ")
	if e.Request != "" {
		b.WriteString(e.Request + ": ")
	}
	switch e.Kind {
	case KindCredentials:
		if e.AADSTS == 0 && e.Status == http.StatusNotFound {
			b.WriteString("404: the authority host has no Entra token endpoint")
			break
		}
		b.WriteString("Entra refused the app's credentials (" + e.tokenDetail(false) + ")")
	case KindTokenUnavailable:
		b.WriteString("the Entra token endpoint is temporarily unavailable (" + e.tokenDetail(true) + ")")
	case KindNetwork:
		b.WriteString("no answer from " + e.Host + ": " + e.Message)
	case KindPermission:
		b.WriteString(e.statusLine() + "Graph refused the call: ")
		if e.Permission != "" {
			b.WriteString("the app lacks the application permission " + e.Permission)
		} else {
			b.WriteString("the app lacks a permission it needs")
		}
	case KindThrottled:
		b.WriteString(e.statusLine() + "Graph is throttling the app")
		if e.RetryAfter > 0 {
			b.WriteString(" (retry after " + e.RetryAfter.String() + ")")
		}
	case KindResync:
		b.WriteString(e.statusLine() + "the delta link is no longer valid")
	default:
		b.WriteString(e.statusLine())
		b.WriteString(Redact(e.Message))
	}
	msg := strings.TrimSuffix(strings.TrimSpace(b.String()), ":")
	switch {
	case e.advice == "":
		return msg
	case strings.HasSuffix(msg, "."):
		return msg + " " + e.advice
	}
	return msg + ". " + e.advice
}

// statusLine is "403 Authorization_RequestDenied: " or "".
func (e *Error) statusLine() string {
	var parts []string
	if e.Status != 0 {
		parts = append(parts, strconv.Itoa(e.Status))
	}
	if e.Code != "" {
		parts = append(parts, e.Code)
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, " ") + ": "
}

// tokenDetail is what the token endpoint said: "AADSTS7000215: Invalid
// client secret provided.", after the status and error code when asked.
func (e *Error) tokenDetail(withStatus bool) string {
	var parts []string
	if withStatus {
		if s := strings.TrimSuffix(e.statusLine(), ": "); s != "" {
			parts = append(parts, s)
		}
	}
	if e.AADSTS != 0 {
		parts = append(parts, "AADSTS"+strconv.Itoa(e.AADSTS))
	}
	if msg := Redact(e.Message); msg != "" {
		parts = append(parts, msg)
	}
	if len(parts) == 0 {
		parts = append(parts, strings.TrimSuffix(e.statusLine(), ": "))
	}
	return strings.Join(parts, ": ")
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of err: KindOther when it is no *Error.
func KindOf(err error) Kind {
	var e *Error
	if !errors.As(err, &e) || e.Kind == "" {
		return KindOther
	}
	return e.Kind
}

// IsResyncRequired reports whether err means the delta link is no longer
// valid (410 Gone, or 400 with syncStateNotFound / resyncRequired): drop it
// and do a full sync.
func IsResyncRequired(err error) bool { return KindOf(err) == KindResync }

// IsThrottled reports whether Graph still asked us to come back later after
// the retries; RetryAfter tells when.
func IsThrottled(err error) (time.Duration, bool) {
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindThrottled {
		return 0, false
	}
	return e.RetryAfter, true
}

// IsAuthentication reports whether the token endpoint refused the app's
// credentials (or Graph refused its token). A missing permission is not
// one: see IsPermission.
func IsAuthentication(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Kind == KindCredentials || e.Kind == KindGraph && e.Status == http.StatusUnauthorized)
}

// IsPermission reports whether Graph refused a call for a missing
// application permission; Error.Permission names it.
func IsPermission(err error) bool { return KindOf(err) == KindPermission }

// IsNetwork reports whether no answer came from the token endpoint or Graph.
func IsNetwork(err error) bool { return KindOf(err) == KindNetwork }

// IsTransient reports whether trying again later may well succeed with
// nothing changed: no answer, a token endpoint temporarily unavailable, or
// throttling.
func IsTransient(err error) bool {
	switch KindOf(err) {
	case KindNetwork, KindTokenUnavailable, KindThrottled:
		return true
	}
	return false
}

// fail turns what a call returned into an *Error: request is the call
// ("GET /users/delta", path below the version) and permission what it
// needs, named when Graph refuses it.
func (c *Client) fail(ctx context.Context, err error, request, permission string) *Error {
	e := c.describe(ctx, err, request, permission)
	noteError(ctx, e)
	return e
}

// noteError tells the context's Observer of a failure a call returns;
// not of a call the caller cancelled (a run that stopped, or a lookup
// whose sibling failed first): that is no failure of Graph's.
func noteError(ctx context.Context, e *Error) {
	if o := observerOf(ctx); o != nil && e.Kind != KindCanceled {
		o.GraphError(e.Kind)
	}
}

// describe is fail without telling the Observer, for an answer that may
// turn out to be no failure.
func (c *Client) describe(ctx context.Context, err error, request, permission string) *Error {
	e := c.classify(ctx, err)
	if request != "" && !e.token {
		method, path, _ := strings.Cut(request, " ")
		e.Request = method + " " + c.graph.Host + c.graph.Path + c.version + path
	}
	switch e.Kind {
	case KindPermission:
		e.Permission = permission
		e.advice = c.consentAdvice(permission)
	case KindNetwork:
		flag := "--graph-url"
		if e.token {
			flag = "--authority-host"
		}
		e.advice = "Check this machine's network and DNS, the proxy settings (HTTPS_PROXY, NO_PROXY), and " + flag
	case KindThrottled:
		e.advice = "The run comes back later"
	case KindResync:
		e.advice = "A full sync takes a new one"
	case KindTokenUnavailable:
		e.advice = "This is on Microsoft's side and passes: the next run tries again"
	case KindCredentials:
		e.advice = c.credentialAdvice(e)
	case KindGraph:
		if e.Status == http.StatusUnauthorized {
			e.advice = "Graph refused the app's access token: check that --graph-url and --authority-host name the same cloud"
		} else if e.Status >= 500 {
			e.advice = "Microsoft Graph failed on its side: the next run tries again; if this lasts, " +
				"see Service health in the Microsoft 365 admin center"
		}
	}
	return e
}

// consentAdvice is the admin-consent step for permission, as the Microsoft
// Entra admin center lays it out.
func (c *Client) consentAdvice(permission string) string {
	if permission == "" {
		permission = "the permission the call needs"
	}
	return fmt.Sprintf("An admin of the tenant grants it in the Microsoft Entra admin center: App registrations → the app (client id %s) → "+
		"API permissions → Add a permission → Microsoft Graph → Application permissions → %s, then \"Grant admin consent for <tenant>\" (tenant id %s); "+
		"the app's next access token carries it", c.cfg.ClientID, permission, c.cfg.TenantID)
}

// credentialAdvice says what to check for an AADSTS code
// (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
func (c *Client) credentialAdvice(e *Error) string {
	const secrets = "App registrations → the app → Certificates & secrets"
	if e.AADSTS == 0 && e.Status == http.StatusNotFound {
		return "Check --authority-host: the cloud's login host, such as https://login.microsoftonline.com"
	}
	switch e.AADSTS {
	case 7000215, 70002:
		return "The client secret is wrong: give the secret's Value (shown once, when it is created), not its Secret ID, or create a new secret under " + secrets
	case 7000222:
		return "The client secret has expired: create a new one under " + secrets + " and give it to entrasync"
	case 700016, 700011:
		return fmt.Sprintf("No app with client id %s is registered in tenant %s: check the client id and the tenant id (a multi-tenant app must first be consented to in the tenant)", c.cfg.ClientID, c.cfg.TenantID)
	case 90002:
		return fmt.Sprintf("Tenant %s was not found: check the tenant id, and that --authority-host is the tenant's cloud", c.cfg.TenantID)
	case 700027, 50012, 700030, 50013:
		return "The certificate was not accepted: upload its public part under " + secrets + " → Certificates, and check that it has not expired and matches the key entrasync holds"
	case 700024:
		return "The client assertion's times were refused: check this machine's clock"
	case 7000112, 70001:
		return "The app is disabled in the tenant: an admin enables it under Enterprise applications → the app → Properties"
	case 500011, 650057:
		return "Microsoft Graph is not known as a resource there: check that --graph-url and --authority-host are the same cloud"
	case 7000216, 7000218:
		return "No secret or certificate was sent: give entrasync the app's credential"
	}
	return "Check the tenant id, the client id and the app's client secret or certificate"
}

// classify reads the error types of the SDK, azidentity and the transport.
func (c *Client) classify(ctx context.Context, err error) *Error {
	var ge *Error
	if errors.As(err, &ge) {
		return ge
	}
	var odata *odataerrors.ODataError
	if errors.As(err, &odata) {
		e := &Error{Status: odata.ResponseStatusCode, Err: err, RetryAfter: retryAfterHeader(odata.ResponseHeaders)}
		if main := odata.GetErrorEscaped(); main != nil {
			e.Code, e.Message = deref(main.GetCode()), deref(main.GetMessage())
		}
		e.Kind = graphKind(e.Status, e.Code, e.RetryAfter)
		return e
	}
	var api *abstractions.ApiError
	if errors.As(err, &api) {
		e := &Error{Status: api.ResponseStatusCode, Message: api.Message, RetryAfter: retryAfterHeader(api.ResponseHeaders), Err: err}
		e.Kind = graphKind(e.Status, "", e.RetryAfter)
		return e
	}
	var auth *azidentity.AuthenticationFailedError
	if errors.As(err, &auth) {
		if auth.RawResponse != nil {
			return tokenAnswer(auth)
		}
		// No answer: azidentity keeps only the text of what the transport
		// said, so the transport left its typed error where we look.
		if ne := failureFrom(ctx); ne != nil {
			ne.token = true
			return ne
		}
	}
	// azidentity keeps only the text of a cancelled token request: the
	// context tells.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || (ctx != nil && ctx.Err() != nil) {
		why := err
		if cause := context.Cause(ctx); cause != nil {
			why = cause
		}
		if errors.Is(why, context.DeadlineExceeded) {
			return &Error{Kind: KindCanceled, Message: "stopped: the caller's deadline passed", Err: err}
		}
		// The cause (say, a lost lock) stays reachable with errors.Is.
		return &Error{Kind: KindCanceled, Message: "stopped: " + Redact(why.Error()), Err: errors.Join(why, err)}
	}
	return &Error{Kind: KindOther, Message: "the request failed: " + Redact(err.Error()), Err: err}
}

// graphKind sorts a Graph answer. A 503 is throttling when it says when to
// come back (Retry-After); without, Graph is unavailable, a failure the
// next cycle retries.
func graphKind(status int, code string, retryAfter time.Duration) Kind {
	switch {
	case status == http.StatusForbidden:
		return KindPermission
	case status == http.StatusGone || strings.EqualFold(code, CodeSyncStateNotFound) || strings.EqualFold(code, CodeResyncRequired):
		return KindResync
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable && retryAfter > 0:
		return KindThrottled
	}
	return KindGraph
}

// transientAADSTS are token endpoint codes that mean "try again later"
// (https://learn.microsoft.com/entra/identity-platform/reference-error-codes):
// ExternalServerRetryableError, RequestTimeout, RequestBudgetExceededError,
// MsodsServiceUnavailable, TenantThrottlingError, GraphRetryableError,
// GraphServiceUnreachable.
var transientAADSTS = map[int]bool{90006: true, 90012: true, 90024: true, 90033: true, 90055: true, 90090: true, 90091: true}

// tokenAnswer reads the token endpoint's error answer (RFC 6749 section
// 5.2, with Entra's error_codes and AADSTS description).
func tokenAnswer(auth *azidentity.AuthenticationFailedError) *Error {
	res := auth.RawResponse
	e := &Error{Kind: KindCredentials, Status: res.StatusCode, Err: auth, token: true}
	if res.Request != nil {
		e.Request = res.Request.Method + " " + res.Request.URL.Host + res.Request.URL.Path
	}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Codes       []int  `json:"error_codes"`
	}
	if b, err := runtime.Payload(res); err == nil {
		json.Unmarshal(b, &body)
	}
	e.Code = body.Error
	if len(body.Codes) > 0 {
		e.AADSTS = body.Codes[0]
	}
	e.Message = firstSentence(body.Description)
	if m := aadstsRE.FindStringSubmatch(body.Description); m != nil && e.AADSTS == 0 {
		e.AADSTS, _ = strconv.Atoi(m[1])
	}
	if res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests || body.Error == "temporarily_unavailable" || transientAADSTS[e.AADSTS] {
		e.Kind = KindTokenUnavailable
		e.RetryAfter = parseRetryAfter(res.Header.Get("Retry-After"), time.Now())
	}
	return e
}

var aadstsRE = regexp.MustCompile(`AADSTS(\d+)`)

// firstSentence is the first sentence of an AADSTS description, without
// the code: "AADSTS7000215: Invalid client secret provided. Ensure…" gives
// "Invalid client secret provided.".
func firstSentence(desc string) string {
	desc, _, _ = strings.Cut(desc, "\n")
	desc = strings.TrimSpace(desc)
	if m := aadstsRE.FindStringIndex(desc); m != nil && m[0] == 0 {
		desc = strings.TrimSpace(strings.TrimPrefix(desc[m[1]:], ":"))
	}
	if i := strings.Index(desc, ". "); i >= 0 {
		desc = desc[:i+1]
	}
	return desc
}

func retryAfterHeader(h *abstractions.ResponseHeaders) time.Duration {
	if h == nil {
		return 0
	}
	for _, k := range []string{"Retry-After", "retry-after"} {
		if v := h.Get(k); len(v) > 0 {
			return parseRetryAfter(v[0], time.Now())
		}
	}
	return 0
}

// parseRetryAfter reads seconds or an HTTP date (RFC 9110 section 10.2.3).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func errorf(format string, args ...any) error {
	return &Error{Kind: KindInvalid, Message: fmt.Sprintf(format, args...)}
}

var (
	urlRE    = regexp.MustCompile(`(?i)\bhttps?://[^\s"'<>]+`)
	bearerRE = regexp.MustCompile(`(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+`)
	jwtRE    = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)
	formRE   = regexp.MustCompile(`(?i)\b(client_secret|client_assertion|access_token|refresh_token|\$?deltatoken|\$?skiptoken)=[^&\s"']*`)
)

// Redact keeps free text from other libraries safe to show: URLs lose
// their query and fragment (delta and skip tokens), and tokens, secrets
// and assertions are cut out.
func Redact(s string) string {
	s = urlRE.ReplaceAllStringFunc(s, func(raw string) string {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			return raw[:i]
		}
		return raw
	})
	s = bearerRE.ReplaceAllString(s, "Bearer [redacted]")
	s = jwtRE.ReplaceAllString(s, "[redacted]")
	return formRE.ReplaceAllString(s, "$1=[redacted]")
}
