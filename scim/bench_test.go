package scim_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
)

// benchUsers is the directory size the benchmarks run against.
const benchUsers = 100_000

// fixture is one SQLite store holding benchUsers users, a group with all
// of them as members and a 10-member group, served over real HTTP. It is
// built once per benchmark process.
type fixture struct {
	db     *store.DB
	srv    *httptest.Server
	token  string
	tenant store.Tenant
	users  []string // ids, in creation order
	spare  []string // users in neither group, to add and remove
	big    string   // group with benchUsers members
	small  string   // group with 10 members
}

var (
	fixtureOnce gosync.Once
	theFixture  *fixture
	fixtureErr  error
)

func benchFixture(b *testing.B) *fixture {
	b.Helper()
	fixtureOnce.Do(func() { theFixture, fixtureErr = buildFixture() })
	if fixtureErr != nil {
		b.Fatal(fixtureErr)
	}
	return theFixture
}

func benchUserDoc(i int) map[string]any {
	name := fmt.Sprintf("user%06d", i)
	return map[string]any{
		"userName":    name + "@contoso.com",
		"externalId":  fmt.Sprintf("0a21f0f2-8d2a-4f8e-bf98-%012d", i),
		"displayName": "User " + name,
		"active":      true,
		"name":        map[string]any{"givenName": "User", "familyName": name, "formatted": "User " + name},
		"emails":      []any{map[string]any{"type": "work", "value": name + "@contoso.com", "primary": true}},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"employeeNumber": fmt.Sprint(i), "department": "Sales"},
	}
}

func buildFixture() (*fixture, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "entrasync-bench-")
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, filepath.Join(dir, "bench.db"))
	if err != nil {
		return nil, err
	}
	f := &fixture{db: db}
	err = db.Write(ctx, func(tx *store.Tx) error {
		if f.tenant, err = tx.CreateTenant("bench"); err != nil {
			return err
		}
		_, f.token, err = tx.CreateToken(f.tenant)
		return err
	})
	if err != nil {
		return nil, err
	}
	const spare, batch = 1000, 5000
	for start := 0; start < benchUsers+spare; start += batch {
		err := db.Write(ctx, func(tx *store.Tx) error {
			for i := start; i < min(start+batch, benchUsers+spare); i++ {
				r := &store.Resource{Kind: store.UserKind, Doc: benchUserDoc(i)}
				if err := tx.Insert(f.tenant.ID, r); err != nil {
					return err
				}
				if i < benchUsers {
					f.users = append(f.users, r.ID)
				} else {
					f.spare = append(f.spare, r.ID)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	err = db.Write(ctx, func(tx *store.Tx) error {
		big := &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": "Everyone"}}
		small := &store.Resource{Kind: store.GroupKind, Doc: map[string]any{"displayName": "Board"}}
		if err := tx.Insert(f.tenant.ID, big); err != nil {
			return err
		}
		if err := tx.Insert(f.tenant.ID, small); err != nil {
			return err
		}
		f.big, f.small = big.ID, small.ID
		if _, err := tx.AddMembers(f.tenant.ID, big.ID, f.users); err != nil {
			return err
		}
		_, err := tx.AddMembers(f.tenant.ID, small.ID, f.users[:10])
		return err
	})
	if err != nil {
		return nil, err
	}
	f.srv = httptest.NewUnstartedServer(nil)
	f.srv.Config.Handler = scim.New(scim.Config{DB: db, PublicURL: "http://" + f.srv.Listener.Addr().String()}).Handler()
	f.srv.Start()
	return f, nil
}

func (f *fixture) do(b *testing.B, method, path, body string, want int) {
	req, _ := http.NewRequest(method, f.srv.URL+"/scim/v2"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", "application/scim+json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		b.Fatalf("%s %s: %d, want %d", method, path, res.StatusCode, want)
	}
}

// BenchmarkPostUser: POST /Users of an Entra-shaped user into a store of 100,000.
func BenchmarkPostUser(b *testing.B) {
	f := benchFixture(b)
	b.ResetTimer()
	for i := range b.N {
		f.do(b, "POST", "/Users", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		  "externalId":"bench-%d-%d","userName":"new%d-%d@contoso.com","active":true,
		  "emails":[{"primary":true,"type":"work","value":"new%d@contoso.com"}],
		  "name":{"formatted":"New User","familyName":"User","givenName":"New"},
		  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"%d"}}`, b.N, i, b.N, i, i, i), http.StatusCreated)
	}
}

// BenchmarkFilterUserName: Entra's lookup, GET /Users?filter=userName eq "...".
func BenchmarkFilterUserName(b *testing.B) {
	f := benchFixture(b)
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("USER%06d@contoso.com", (i*7919)%benchUsers)
		f.do(b, "GET", "/Users?filter=userName+eq+%22"+name+"%22", "", http.StatusOK)
	}
}

// BenchmarkPatchAddMember: PATCH adding one member, to a 100,000-member
// group and to a 10-member group; the cost must not grow with the group.
func BenchmarkPatchAddMember(b *testing.B) {
	f := benchFixture(b)
	for _, g := range []struct{ name, id string }{{"members=10", f.small}, {"members=100000", f.big}} {
		b.Run(g.name, func(b *testing.B) {
			for i := range b.N {
				member := f.spare[i%len(f.spare)]
				f.do(b, "PATCH", "/Groups/"+g.id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
				  "Operations":[{"op":"Add","path":"members","value":[{"value":"`+member+`"}]}]}`, http.StatusNoContent)
				b.StopTimer()
				err := f.db.Write(context.Background(), func(tx *store.Tx) error {
					_, err := tx.RemoveMembers(f.tenant.ID, g.id, []string{member})
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
