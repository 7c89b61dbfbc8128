package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// scimSend sends one SCIM request with the Secret Token and returns its
// status and X-Request-Id.
func scimSend(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/scim+json")
	req.Header.Set("User-Agent", "Okta SCIM Client 1.0.0")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("X-Request-Id")
}

// TestActivityCommand: what a served request did is shown by `entrasync
// activity`, in words, with the request id the client got; --failed,
// --json and --follow; bad flags say what is wrong.
func TestActivityCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "es.db")
	s := startServe(t, "--db", db)
	out := s.stdout.String()
	tenantURL, token := field(t, out, "Tenant URL"), field(t, out, "Secret Token")
	const jane = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"jane@contoso.com","password":"Hunter2-secret!"}`
	status, created := scimSend(t, "POST", tenantURL+"/Users", token, jane)
	if status != 201 || created == "" {
		t.Fatalf("create: %d, request id %q", status, created)
	}
	if status, _ := scimSend(t, "POST", tenantURL+"/Users", token, jane); status != 409 {
		t.Fatalf("second create: %d", status)
	}
	// The recorder writes in the background: wait for both records.
	var lines string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if lines = mustRun(t, "activity", "default", "--db", db); strings.Count(lines, "\n") >= 2 {
			break
		}
	}
	if !strings.Contains(lines, "Created jane@contoso.com  ["+created+"]") || !strings.Contains(lines, `! push okta   POST users 409  userName "jane@contoso.com" is already taken`) {
		t.Fatalf("activity:\n%s", lines)
	}
	if failed := mustRun(t, "activity", "default", "--failed", "--db", db); strings.Count(failed, "\n") != 1 || !strings.Contains(failed, "409") {
		t.Fatalf("--failed:\n%s", failed)
	}
	var records []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "activity", "default", "--json", "--db", db)), &records); err != nil || len(records) != 2 {
		t.Fatalf("--json: %v %v", records, err)
	}
	if records[0]["summary"] != "Created jane@contoso.com" || records[0]["requestId"] != created || records[0]["provider"] != "okta" {
		t.Fatalf("--json record: %v", records[0])
	}
	for _, bad := range [][]string{{"--kind", "both"}, {"--since", "yesterday"}, {"--limit", "0"}} {
		_, errOut, code := run(t, append([]string{"activity", "default", "--db", db}, bad...)...)
		if code != exitUsage || !strings.Contains(errOut, bad[0]+" must") {
			t.Errorf("activity %v: exit %d, %q", bad, code, errOut)
		}
	}
	if _, errOut, code := run(t, "activity", "nobody", "--db", db); code != exitFailure || !strings.Contains(errOut, "nobody") {
		t.Errorf("unknown tenant: exit %d, %q", code, errOut)
	}

	// --follow shows what comes after it started.
	ctx, cancel := context.WithCancel(context.Background())
	var follow syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"activity", "default", "--follow", "--follow-interval", "100ms", "--db", db}, &follow, &bytes.Buffer{}, noEnv)
	}()
	scimSend(t, "DELETE", tenantURL+"/Users/"+strings.Repeat("0", 36), token, "")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !strings.Contains(follow.String(), "DELETE"); {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 || !strings.Contains(follow.String(), "DELETE users 404") {
		t.Fatalf("--follow: exit %d\n%s", code, follow.String())
	}

	// Neither the log nor the activity holds the token or the password.
	s.stop()
	all := s.stderr.String() + mustRun(t, "activity", "default", "--json", "--limit", "1000", "--db", db)
	for _, secret := range []string{token, "Hunter2-secret!"} {
		if strings.Contains(all, secret) {
			t.Fatalf("%q is in the log or the activity", secret)
		}
	}
	if !strings.Contains(s.stderr.String(), `reason="userName \"jane@contoso.com\" is already taken"`) {
		t.Fatalf("the log line of the failed request does not say why:\n%s", s.stderr)
	}
	if !strings.Contains(s.stderr.String(), "request_id="+created) {
		t.Fatalf("the log line does not carry the request id %s:\n%s", created, s.stderr)
	}
}
