package graph

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// tokenFailure is what azidentity returns when the token endpoint answers
// with an error.
func tokenFailure(status int, header http.Header, body string) error {
	req := &http.Request{Method: http.MethodPost, URL: &url.URL{Scheme: "https", Host: "login.microsoftonline.com", Path: "/t/oauth2/v2.0/token"}}
	if header == nil {
		header = http.Header{}
	}
	res := &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body)), Request: req}
	return &azidentity.AuthenticationFailedError{RawResponse: res}
}

func aadBody(errCode string, aadsts int, text string) string {
	return `{"error":"` + errCode + `","error_description":"AADSTS` + strconv.Itoa(aadsts) + `: ` + text +
		`\r\nTrace ID: 0000\r\nCorrelation ID: 1111\r\nTimestamp: 2026-01-01 00:00:00Z","error_codes":[` + strconv.Itoa(aadsts) + `]}`
}

func TestTokenAnswers(t *testing.T) {
	c := &Client{cfg: Config{TenantID: "tid-1", ClientID: "cid-1"}, graph: &url.URL{Scheme: "https", Host: "graph.microsoft.com"}, version: "/v1.0"}
	tests := []struct {
		name   string
		err    error
		kind   Kind
		aadsts int
		says   []string
		retry  time.Duration
	}{
		{"expired secret", tokenFailure(401, nil, aadBody("invalid_client", 7000222, "The provided client secret keys for app 'cid-1' are expired. Visit the Azure portal to create new keys for your app.")),
			KindCredentials, 7000222, []string{"AADSTS7000222: The provided client secret keys for app 'cid-1' are expired.", "has expired: create a new one"}, 0},
		{"app disabled", tokenFailure(400, nil, aadBody("unauthorized_client", 7000112, "Application is disabled.")),
			KindCredentials, 7000112, []string{"enables it"}, 0},
		{"unknown code", tokenFailure(400, nil, aadBody("invalid_request", 12345, "Something new.")),
			KindCredentials, 12345, []string{"AADSTS12345: Something new.", "Check the tenant id, the client id"}, 0},
		{"transient code on a 400", tokenFailure(400, nil, aadBody("invalid_request", 90055, "There are too many incoming requests.")),
			KindTokenUnavailable, 90055, []string{"temporarily unavailable", "AADSTS90055"}, 0},
		{"temporarily_unavailable", tokenFailure(400, nil, `{"error":"temporarily_unavailable","error_description":"Try later."}`),
			KindTokenUnavailable, 0, []string{"temporarily_unavailable", "Try later."}, 0},
		{"503 without a body", tokenFailure(503, http.Header{"Retry-After": {"12"}}, ""),
			KindTokenUnavailable, 0, []string{"temporarily unavailable (503"}, 12 * time.Second},
		{"429", tokenFailure(429, nil, `{"error":"too_many_requests"}`), KindTokenUnavailable, 0, []string{"429"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := c.fail(context.Background(), tc.err, "GET /users/delta", permUsers)
			if e.Kind != tc.kind || e.AADSTS != tc.aadsts || e.RetryAfter != tc.retry {
				t.Fatalf("%#v", e)
			}
			msg := e.Error()
			if !strings.HasPrefix(msg, "microsoft graph: POST login.microsoftonline.com/t/oauth2/v2.0/token: ") {
				t.Errorf("request line: %s", msg)
			}
			for _, p := range tc.says {
				if !strings.Contains(msg, p) {
					t.Errorf("%q not in %s", p, msg)
				}
			}
			if strings.Contains(msg, "Trace ID") || strings.Contains(msg, "Correlation") {
				t.Errorf("Entra's trace in %s", msg)
			}
		})
	}
}

func TestFirstSentence(t *testing.T) {
	for in, want := range map[string]string{
		"AADSTS7000215: Invalid client secret provided. Ensure the secret...\r\nTrace ID: x": "Invalid client secret provided.",
		"AADSTS90002: Tenant 'x' not found. Check to make sure.":                             "Tenant 'x' not found.",
		"No code here": "No code here",
		"":             "",
	} {
		if got := firstSentence(in); got != want {
			t.Errorf("firstSentence(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	in := `Get "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=abc123&x=1": dial tcp; ` +
		`Authorization: Bearer eyJhbGciOi.eyJhdWQiOi.c2lnbmF0dXJl; client_secret=hunter2&client_assertion=eyJx.eyJy.z; ` +
		`$skiptoken=zzz https://h.example/p#frag`
	out := Redact(in)
	for _, bad := range []string{"abc123", "x=1", "eyJ", "hunter2", "zzz", "#frag"} {
		if strings.Contains(out, bad) {
			t.Errorf("%q survived: %s", bad, out)
		}
	}
	for _, keep := range []string{"https://graph.microsoft.com/v1.0/users/delta", "dial tcp", "https://h.example/p"} {
		if !strings.Contains(out, keep) {
			t.Errorf("%q lost: %s", keep, out)
		}
	}
}
