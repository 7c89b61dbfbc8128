package main

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand"
	"sort"
	"time"

	"github.com/entrasync/entrasync/config"
	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

var demoCmd = &command{name: "demo", summary: "serve with a fake Microsoft Graph in-process: a sample tenant that keeps changing, pulled every minute",
	run: demo}

// The demo directory's identity in the fake Graph.
const (
	demoAzureTenant = "11111111-2222-4333-8444-555555555555"
	demoClientID    = "66666666-7777-4888-8999-aaaaaaaaaaaa"
	demoTenant      = "demo"
	demoDB          = "./entrasync-demo.db"
)

// demo runs serve on its own database beside a fake Microsoft Graph whose
// sample directory changes every few seconds: joiners, leavers, renames,
// moves. The tenant "demo" pulls it every minute; Entra-style SCIM pushes
// can be sent to the same server.
func demo(e *env, inv *invocation) error {
	cfg := inv.cfg
	if cfg.DB == config.Default().DB {
		cfg.DB = demoDB // keep the sample apart from a real database
	}
	if len(cfg.SecretKey) == 0 {
		cfg.SecretKey = make([]byte, 32) // a demo-only key, new on each start
		rand.Read(cfg.SecretKey)
	}
	svc, err := openService(e, cfg, false)
	if err != nil {
		return err
	}
	defer svc.close()
	db, log, public := svc.db, svc.log, svc.public

	fake := graphtest.NewServer(graphtest.Options{PageSize: 50, MembersPerPage: 50})
	defer fake.Close()
	secret := rand.Text()
	fake.AddApp(demoAzureTenant, demoClientID, secret)
	fake.Grant(demoAzureTenant, demoClientID, graph.RequiredPermissions...)
	dir := fake.Tenant(demoAzureTenant)
	groups := dir.Populate(mrand.New(mrand.NewSource(42)), 300, 6)
	sort.Strings(groups)

	var cred credentials
	var opsKey string
	err = db.Write(e.ctx, func(tx *store.Tx) error {
		t, err := tx.Tenant(demoTenant)
		if store.ErrorCode(err) == store.NotFound {
			t, err = tx.CreateTenant(demoTenant)
		}
		if err != nil {
			return err
		}
		tok, token, err := tx.CreateToken(t)
		if err != nil {
			return err
		}
		cred = credentials{Tenant: t.Name, TenantURL: tenantURL(public), SecretToken: token, TokenID: tok.ID}
		if err := tx.RevokeOpsKey(demoTenant); err != nil && store.ErrorCode(err) != store.NotFound {
			return err
		}
		// Every tenant: the demo's own database holds only "demo", and
		// /metrics wants a key that covers them all.
		if _, opsKey, err = tx.CreateOpsKey(demoTenant, store.OpsAdmin, nil); err != nil {
			return err
		}
		return tx.SaveGraphConnection(store.GraphConnection{
			Tenant: demoTenant, AzureTenantID: demoAzureTenant, ClientID: demoClientID, Credential: "secret", Secret: []byte(secret),
			Groups: groups[:4], Schedule: "@every 1m", Deprovision: "deactivate", ThresholdPercent: 50,
			AuthorityHost: fake.URL(), GraphURL: fake.URL(),
		}, cfg.SecretKey)
	})
	if err != nil {
		return err
	}
	w := svc.worker
	w.Connect = func(_ context.Context, c store.GraphConnection) (sync.Source, error) {
		return graph.New(graph.Config{TenantID: c.AzureTenantID, ClientID: c.ClientID, ClientSecret: string(c.Secret),
			AuthorityHost: c.AuthorityHost, GraphURL: c.GraphURL, HTTPClient: fake.Client()})
	}
	sched := &sync.Scheduler{Worker: w, Workers: 2, Log: log}

	fmt.Fprintf(e.stdout, "entrasync demo: a fake Microsoft Graph at %s holds a sample directory of %d users in %d groups;\n"+
		"tenant %q pulls the %d groups assigned to it every minute, and the directory changes every 15 seconds.\n\n",
		fake.URL(), len(dir.Users()), len(groups), demoTenant, 4)
	printCredentials(e.stdout, cred, false)
	fmt.Fprintf(e.stdout, "\nOps key (shown only this once): %s\n\nWatch it work:\n"+
		"  curl -s -H 'Authorization: Bearer %s' '%s/scim/v2/Users?count=3'\n"+
		"  curl -s -H 'Authorization: Bearer %s' '%s/ops/v1/tenants/demo/runs?limit=3'\n"+
		"  curl -s -H 'Authorization: Bearer %s' '%s/ops/v1/tenants/demo/activity?limit=5'\n"+
		"  curl -s -X POST -H 'Authorization: Bearer %s' '%s/ops/v1/tenants/demo/sync'\n"+
		"  curl -s -H 'Authorization: Bearer %s' '%s/metrics' | grep '^entrasync_'\n\n",
		opsKey, cred.SecretToken, public, opsKey, public, opsKey, public, opsKey, public, opsKey, public)

	ctx, stop := context.WithCancel(e.ctx)
	defer stop()
	go churn(ctx, dir, log)
	go func() { // the first pull now, not in a minute
		if _, err := w.RunOnce(ctx, demoTenant, sync.Options{Trigger: "demo"}); err != nil {
			log.Error("first demo pull failed", "err", err)
		}
	}()
	return svc.run(e, sched)
}

// churn changes the sample directory now and then, as a real one changes.
func churn(ctx context.Context, dir *graphtest.Directory, log interface {
	Info(string, ...any)
}) {
	r := mrand.New(mrand.NewSource(time.Now().UnixNano()))
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, line := range dir.Churn(r, 3) {
				log.Info("demo directory changed", "change", line)
			}
		}
	}
}
