package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/scim/schema"
	"github.com/entrasync/entrasync/store"
)

// TestTokenRevokeUnderLoad: `entrasync token revoke` (its own process's
// store on the server's file) succeeds while a server takes heavy writes
// from the token's tenant, and the token is refused from the next request.
func TestTokenRevokeUnderLoad(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "entrasync.db")
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tok store.Token
	var secret, other string
	err = db.Write(ctx, func(tx *store.Tx) error {
		tn, err := tx.CreateTenant("acme")
		if err != nil {
			return err
		}
		if tok, secret, err = tx.CreateToken(tn); err != nil {
			return err
		}
		_, other, err = tx.CreateToken(tn)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(scim.New(scim.Config{DB: db}).Handler())
	defer srv.Close()
	// send sends one request and returns its status and, for a created
	// resource, its id.
	send := func(token, method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+"/scim/v2"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/scim+json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer res.Body.Close()
		var created struct{ ID string }
		json.NewDecoder(res.Body).Decode(&created)
		return res.StatusCode, created.ID
	}
	var emails strings.Builder
	for i := range schema.DefaultMaxValues { // as many as the limit lets one attribute hold
		fmt.Fprintf(&emails, `{"value":"e%d@acme.example"},`, i)
	}
	bigPatch := `{"Operations":[{"op":"replace","path":"emails","value":[` + strings.TrimSuffix(emails.String(), ",") + `]}]}`
	var done atomic.Bool
	var writes atomic.Int64
	var wg gosync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, big := send(other, "POST", "/Users", fmt.Sprintf(`{"userName":"big%d@acme.example"}`, w))
			if status != 201 {
				t.Errorf("create: %d", status)
				return
			}
			token := other
			if w == 0 {
				token = secret // the token to revoke is in use too
			}
			for i := 0; !done.Load(); i++ {
				if i%2 == 0 {
					status, _ = send(token, "POST", "/Users", fmt.Sprintf(`{"userName":"u%d.%d@acme.example"}`, w, i))
				} else {
					status, _ = send(token, "PATCH", "/Users/"+big, bigPatch)
				}
				if status == 401 && token == secret {
					return // revoked under it
				}
				if status == 503 {
					continue // the writer was busy past write_wait (slow machines, -race): retryable
				}
				if status != 200 && status != 201 {
					t.Errorf("load: %d", status)
					return
				}
				writes.Add(1)
			}
		}()
	}
	for writes.Load() < 6 {
		if t.Failed() {
			t.FailNow()
		}
		time.Sleep(10 * time.Millisecond)
	}
	var out, errOut bytes.Buffer
	code := Main(ctx, []string{"token", "revoke", tok.ID, "--db", path}, &out, &errOut, noEnv)
	if code != 0 {
		t.Fatalf("token revoke under load: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if got, _ := send(secret, "GET", "/Users?count=1", ""); got != 401 {
		t.Fatalf("the revoked token got %d, want 401", got)
	}
	if got, _ := send(other, "GET", "/Users?count=1", ""); got != 200 {
		t.Fatalf("the other token got %d", got)
	}
	done.Store(true)
	wg.Wait()
}

// TestCLIBusy: a command that cannot have the database writer within
// write_wait (another process holds it) says the database is busy and to
// retry, and changes nothing.
func TestCLIBusy(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "entrasync.db")
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	begun, free, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- db.Write(ctx, func(*store.Tx) error { close(begun); <-free; return nil })
	}()
	<-begun
	_, errOut, code := run(t, "tenant", "create", "acme", "--db", path, "--write-wait", "100ms")
	close(free)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code != 1 || !strings.Contains(errOut, "database is busy") || !strings.Contains(errOut, "retry") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := db.Tenant(ctx, "acme"); store.ErrorCode(err) != store.NotFound {
		t.Fatalf("the refused command wrote: %v", err)
	}
}
