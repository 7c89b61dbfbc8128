package graph

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/microsoftgraph/msgraph-sdk-go/directoryobjects"
)

// The SDK compresses request bodies; a POST throttled twice is sent again,
// whole, through the one request path, and Graph (the fake) reads it each
// time. It also shows getByIds needs Directory.Read.All.
func TestSDKPostRetriedWithGzipBody(t *testing.T) {
	const tenant, client, secret = "6f1b2a3c-1111-4222-8333-944445555666", "0c5e8f4a-aaaa-4bbb-8ccc-dddddddddddd", "s3cr3t"
	srv := graphtest.NewServer(graphtest.Options{})
	defer srv.Close()
	srv.AddApp(tenant, client, secret)
	srv.Grant(tenant, client, "Directory.Read.All")
	id := srv.Tenant(tenant).AddUser(graphtest.User{DisplayName: "Zip", AccountEnabled: true})
	c, err := New(Config{TenantID: tenant, ClientID: client, ClientSecret: secret, AuthorityHost: srv.URL(), GraphURL: srv.URL(),
		HTTPClient: srv.Client(), Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }})
	if err != nil {
		t.Fatal(err)
	}
	post := func() ([]string, error) {
		body := directoryobjects.NewGetByIdsPostRequestBody()
		body.SetIds([]string{id})
		body.SetTypes([]string{"user"})
		resp, err := c.sdk.DirectoryObjects().GetByIds().PostAsGetByIdsPostResponse(context.Background(), body, nil)
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, o := range resp.GetValue() {
			ids = append(ids, deref(o.GetId()))
		}
		return ids, nil
	}
	if _, err := post(); err != nil { // a token first, so the faults hit Graph
		t.Fatal(err)
	}
	srv.ResetRequests()
	srv.FailNext(2, http.StatusTooManyRequests, time.Second)
	ids, err := post()
	if err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("%v %v", ids, err)
	}
	var statuses []int
	for _, r := range srv.Requests() {
		statuses = append(statuses, r.Status)
		if r.Encoding != "gzip" {
			t.Errorf("request %+v: the SDK's body was not compressed", r)
		}
	}
	if len(statuses) != 3 || statuses[2] != http.StatusOK {
		t.Fatalf("statuses %v", statuses)
	}
}
