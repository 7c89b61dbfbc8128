package scim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/store/pgtest"
)

// Entra's initial cycle, as ../shared/idp/entra.md describes its
// requests: for each user a lookup by userName (empty) and a create; for
// each group a lookup by displayName (members excluded) and a create; then
// each membership as a PATCH adding one member (the most requests Entra
// can send for it); then an incremental cycle's updates, a fifth of them
// disables with the string "False". entraInFlight requests at once.
const (
	entraUsers       = 2000
	entraGroups      = 40
	entraGroupsEach  = 2 // memberships per user: ~4,000 in all
	entraUpdates     = 200
	entraInFlight    = 8
	entraReplayTotal = 2*entraUsers + 2*entraGroups + entraUsers*entraGroupsEach + entraUpdates
)

// BenchmarkEntraInitialCycle: requests per second through an Entra
// initial cycle into a new tenant (one cycle an iteration).
func BenchmarkEntraInitialCycle(b *testing.B) {
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		ctx := context.Background()
		db, err := store.Open(ctx, pgtest.DSN(b, kind))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		srv, rec := startServed(db)
		defer rec.Close()
		defer srv.Close()
		client := clientPool(entraInFlight)
		defer client.CloseIdleConnections()
		var requests float64
		b.ResetTimer()
		for n := range b.N {
			b.StopTimer()
			_, token, err := benchTenant(ctx, db, fmt.Sprintf("entra%d", n))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			replayEntraCycle(b, client, srv.URL+"/scim/v2", token)
			requests += entraReplayTotal
		}
		b.ReportMetric(requests/b.Elapsed().Seconds(), "req/s")
	})
}

func replayEntraCycle(b *testing.B, client *http.Client, base, token string) {
	created := func(raw []byte) string {
		var r struct{ ID string }
		if err := json.Unmarshal(raw, &r); err != nil || r.ID == "" {
			b.Fatalf("a create answered %s", raw)
		}
		return r.ID
	}
	users := make([]string, entraUsers)
	concurrently(b, entraInFlight, entraUsers, func(i int) error {
		name := fmt.Sprintf("user%05d@contoso.com", i)
		if _, err := send(client, "GET", base+"/Users?filter="+url.QueryEscape(`userName eq "`+name+`"`), token, "", http.StatusOK); err != nil {
			return err
		}
		raw, err := send(client, "POST", base+"/Users", token, fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		  "externalId":"0a21f0f2-8d2a-4f8e-bf98-%012d","userName":"%s","active":true,
		  "emails":[{"primary":true,"type":"work","value":"%s"}],"meta":{"resourceType":"User"},
		  "name":{"formatted":"User %[1]d","familyName":"%[1]d","givenName":"User"},"roles":[],
		  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"%[1]d","department":"Sales"}}`, i, name, name), http.StatusCreated)
		if err == nil {
			users[i] = created(raw)
		}
		return err
	})
	groups := make([]string, entraGroups)
	concurrently(b, entraInFlight, entraGroups, func(i int) error {
		name := fmt.Sprintf("Team %02d", i)
		if _, err := send(client, "GET", base+"/Groups?excludedAttributes=members&filter="+url.QueryEscape(`displayName eq "`+name+`"`), token, "", http.StatusOK); err != nil {
			return err
		}
		raw, err := send(client, "POST", base+"/Groups", token, fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
		  "externalId":"8aa1a0c0-c4c3-4bc0-b4a5-%012d","displayName":"%s","meta":{"resourceType":"Group"}}`, i, name), http.StatusCreated)
		if err == nil {
			groups[i] = created(raw)
		}
		return err
	})
	concurrently(b, entraInFlight, entraUsers*entraGroupsEach, func(i int) error {
		user, group := users[i/entraGroupsEach], groups[(i*7)%entraGroups]
		_, err := send(client, "PATCH", base+"/Groups/"+group, token, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		  "Operations":[{"op":"Add","path":"members","value":[{"$ref":null,"value":"`+user+`"}]}]}`, http.StatusNoContent)
		return err
	})
	concurrently(b, entraInFlight, entraUpdates, func(i int) error {
		ops := `{"op":"Replace","path":"name.familyName","value":"Renamed"},{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"7"}`
		if i%5 == 0 {
			ops = `{"op":"Replace","path":"active","value":"False"}`
		}
		_, err := send(client, "PATCH", base+"/Users/"+users[(i*37)%entraUsers], token,
			`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[`+ops+`]}`, http.StatusOK)
		return err
	})
}
