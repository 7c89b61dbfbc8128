package graph

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
)

// Graph error codes the worker acts on.
const (
	CodeSyncStateNotFound = "syncStateNotFound"
	CodeResyncRequired    = "resyncRequired"
	CodeTooManyRequests   = "TooManyRequests"
	CodeAuthentication    = "authenticationFailed" // ours: the token endpoint refused the credentials
)

// Error is a failed Graph (or token endpoint) request.
type Error struct {
	Status     int           // HTTP status; 0 when no answer came
	Code       string        // Graph's error code, e.g. syncStateNotFound
	Message    string        // Graph's message: no secrets, no personal data
	RetryAfter time.Duration // from Retry-After, for 429 and 503
	// Permission is the least-privileged application permission the call
	// needs, set when Graph refused it (403): Graph does not say.
	Permission string
	Err        error // the underlying error, when there is one
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("microsoft graph")
	if e.Status != 0 {
		b.WriteString(": " + strconv.Itoa(e.Status))
	}
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		b.WriteString(" (retry after " + e.RetryAfter.String() + ")")
	}
	if e.Permission != "" {
		b.WriteString(" (the app needs the application permission " + e.Permission + ", granted with admin consent)")
	}
	if e.Status == 0 && e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// IsResyncRequired reports whether err means the delta link is no longer
// valid (410 Gone, or 400 with syncStateNotFound / resyncRequired): drop it
// and do a full sync.
func IsResyncRequired(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Status == http.StatusGone || strings.EqualFold(e.Code, CodeSyncStateNotFound) || strings.EqualFold(e.Code, CodeResyncRequired)
}

// IsThrottled reports whether Graph still asked us to come back later after
// the retries; RetryAfter tells when.
func IsThrottled(err error) (time.Duration, bool) {
	var e *Error
	if !errors.As(err, &e) || (e.Status != http.StatusTooManyRequests && e.Status != http.StatusServiceUnavailable) {
		return 0, false
	}
	return e.RetryAfter, true
}

// IsAuthentication reports whether the credentials were refused.
func IsAuthentication(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Code == CodeAuthentication || e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
}

// asError turns what the SDK returned into an *Error. permission is what
// the call needs: a 403 names it.
func asError(err error, permission string) *Error {
	e := classify(err)
	if e.Status == http.StatusForbidden {
		e.Permission = permission
	}
	return e
}

func classify(err error) *Error {
	var ge *Error
	if errors.As(err, &ge) {
		return ge
	}
	var odata *odataerrors.ODataError
	if errors.As(err, &odata) {
		e := &Error{Status: odata.ResponseStatusCode, Err: err}
		if main := odata.GetErrorEscaped(); main != nil {
			e.Code, e.Message = deref(main.GetCode()), deref(main.GetMessage())
		}
		e.RetryAfter = retryAfterHeader(odata.ResponseHeaders)
		return e
	}
	var api *abstractions.ApiError
	if errors.As(err, &api) {
		return &Error{Status: api.ResponseStatusCode, Message: api.Message, RetryAfter: retryAfterHeader(api.ResponseHeaders), Err: err}
	}
	var auth *azidentity.AuthenticationFailedError
	if errors.As(err, &auth) {
		status := 0
		if auth.RawResponse != nil {
			status = auth.RawResponse.StatusCode
		}
		// The AADSTS code and description are what an admin needs; the raw
		// response is not repeated (it may echo the request).
		msg := "the token endpoint refused the client credentials"
		if code := aadstsCode(auth.Error()); code != "" {
			msg += " (" + code + ")"
		}
		return &Error{Status: status, Code: CodeAuthentication, Message: msg, Err: err}
	}
	return &Error{Message: "request failed", Err: err}
}

// aadstsCode finds the first AADSTS error code in s.
func aadstsCode(s string) string {
	i := strings.Index(s, "AADSTS")
	if i < 0 {
		return ""
	}
	j := i + len("AADSTS")
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	return s[i:j]
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

// parseRetryAfter reads seconds or an HTTP date.
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

func errorf(format string, args ...any) error { return &Error{Message: fmt.Sprintf(format, args...)} }
