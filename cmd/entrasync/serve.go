package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
)

func init() {
	register(&command{name: "serve", summary: "serve the SCIM 2.0 endpoint and /healthz", run: serve})
}

func serve(e *env, inv *invocation) error {
	cfg := inv.cfg
	log := newLogger(e.stderr, cfg)
	db, err := openStore(e, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (setting addr, flag --addr): %v", cfg.Addr, err)
	}
	public := cfg.Public(ln.Addr().String())
	if err := bootstrap(e, db, public); err != nil {
		ln.Close()
		return err
	}
	srv := scim.New(scim.Config{DB: db, PublicURL: public, BodyLimit: cfg.BodyLimit, RateLimit: cfg.RateLimit, Log: log})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := db.Ping(r.Context()); err != nil {
			log.Error("health check failed", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"status":"unavailable"}`)
			return
		}
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.Handle("/", srv.Handler())
	httpSrv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      5 * time.Minute, // a large group's members take a while to write out
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	fmt.Fprintf(e.stdout, "entrasync is serving the SCIM endpoint at %s%s (listening on %s)\n", public, scim.BasePath, ln.Addr())
	log.Info("serving", "addr", ln.Addr().String(), "scim", public+scim.BasePath)
	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-e.ctx.Done():
	}
	log.Info("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	fmt.Fprintln(e.stdout, "entrasync stopped")
	return nil
}

// bootstrap makes the tenant "default" on a database's first start and
// prints its credentials, the only time they are shown.
func bootstrap(e *env, db *store.DB, public string) error {
	var cred *credentials
	err := db.Write(e.ctx, func(tx *store.Tx) error {
		first, err := tx.FirstStart()
		if err != nil || !first {
			return err
		}
		t, err := tx.CreateTenant("default")
		if store.ErrorCode(err) == store.Conflict {
			return nil // created by hand before the first serve
		}
		if err != nil {
			return err
		}
		tok, secret, err := tx.CreateToken(t)
		cred = &credentials{Tenant: t.Name, TenantURL: tenantURL(public), SecretToken: secret, TokenID: tok.ID}
		return err
	})
	if err != nil || cred == nil {
		return err
	}
	return printCredentials(e.stdout, *cred, false)
}
