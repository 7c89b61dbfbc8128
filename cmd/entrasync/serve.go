package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/entrasync/entrasync/config"
	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
	"github.com/entrasync/entrasync/sync/metrics"
	"github.com/entrasync/entrasync/sync/opsapi"
)

var serveCmd = &command{name: "serve", summary: "serve the SCIM endpoint, the ops API, /metrics, /healthz and /readyz, and pull connected tenants on schedule", run: serve,
	flags: func(fs *flag.FlagSet) any {
		return fs.Bool("no-migrate", false, "apply no migration: refuse to start on a schema older than this entrasync (run entrasync migrate first)")
	}}

func serve(e *env, inv *invocation) error {
	svc, err := openService(e, inv.cfg, *inv.flags.(*bool))
	if err != nil {
		return err
	}
	defer svc.close()
	if err := bootstrap(e, svc); err != nil {
		return err
	}
	cfg := inv.cfg
	return svc.run(e, &sync.Scheduler{Worker: svc.worker, Workers: cfg.SyncWorkers, Jitter: cfg.SyncJitter,
		DefaultSchedule: cfg.SyncSchedule, Log: svc.log})
}

// service is what serve and demo run: the store, the listeners, the
// metrics and the pull worker, wired from the settings.
type service struct {
	cfg       config.Config
	log       *slog.Logger
	db        *store.DB
	ln        net.Listener
	metricsLn net.Listener // metrics_addr's, serving /metrics without authentication; nil: none
	public    string       // the public URL, from the setting or the listener
	metrics   *metrics.Metrics
	worker    *sync.Worker
	close     func()
}

func openService(e *env, cfg config.Config, noMigrate bool) (*service, error) {
	svc := &service{cfg: cfg, log: newLogger(e.stderr, cfg)}
	svc.log.Info("soft memory limit", "memory_limit", cfg.ApplyMemoryLimit(e.getenv))
	var err error
	if svc.db, err = openStoreWith(e, cfg, noMigrate); err != nil {
		return nil, err
	}
	if svc.ln, err = listen(cfg); err != nil {
		svc.db.Close()
		return nil, err
	}
	if cfg.TLSCert != "" {
		tln, err := listenTLS(svc.ln, cfg.TLSCert, cfg.TLSKey, svc.log)
		if err != nil {
			svc.ln.Close()
			svc.db.Close()
			return nil, err
		}
		svc.ln = tln
	}
	svc.public = cfg.Public(svc.ln.Addr().String())
	if why := insecureTenantURL(tenantURL(svc.public)); why != "" {
		svc.log.Warn(why)
	}
	w, closeWorker, err := newWorker(e.ctx, cfg, svc.db, svc.log)
	if err != nil {
		svc.ln.Close()
		svc.db.Close()
		return nil, err
	}
	if cfg.MetricsAddr != "" {
		if svc.metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			closeWorker()
			svc.ln.Close()
			svc.db.Close()
			return nil, fmt.Errorf("cannot listen on %s (setting metrics_addr, flag --metrics-addr): %v", cfg.MetricsAddr, err)
		}
	}
	svc.metrics = metrics.New(metrics.Config{DB: svc.db, DefaultSchedule: cfg.SyncSchedule,
		TenantLabel: cfg.MetricsTenantLabel, Log: svc.log})
	w.Metrics = svc.metrics
	svc.worker = w
	svc.close = func() {
		svc.ln.Close()
		if svc.metricsLn != nil {
			svc.metricsLn.Close()
		}
		closeWorker()
		svc.db.Close()
	}
	return svc, nil
}

func listen(cfg config.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s (setting addr, flag --addr): %v", cfg.Addr, err)
	}
	return ln, nil
}

// run serves SCIM, the ops API, /metrics, /healthz and /readyz, and runs
// the scheduler, until the context ends; then it shuts down cleanly.
func (svc *service) run(e *env, sched *sync.Scheduler) error {
	cfg, db, log, ln, public, w := svc.cfg, svc.db, svc.log, svc.ln, svc.public, svc.worker
	activity := sync.NewRecorder(db, sync.RecorderConfig{Retention: cfg.ActivityRetention, Log: log})
	defer activity.Close() // after the server's shutdown: the last requests' records are written
	svc.metrics.Activity(activity)
	srv := scim.New(scim.Config{DB: db, PublicURL: public, BodyLimit: cfg.BodyLimit, RateLimit: cfg.RateLimit,
		TrustedProxies: cfg.TrustedProxies, Log: log, Limits: cfg.ScimLimits(), Activity: activity, Metrics: svc.metrics})
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
	mux.HandleFunc("GET /readyz", readyz(dependencies(db, w), log))
	ops := &opsapi.Handler{Worker: w, Log: log, TrustedProxies: cfg.TrustedProxies, DefaultSchedule: cfg.SyncSchedule}
	mux.Handle("/ops/", ops)
	// On the main listener, /metrics takes an ops key for every tenant;
	// metrics_addr serves it openly, for a private network.
	mux.Handle(metrics.Path, ops.WithKey(metrics.Path, svc.metrics.ForKey()))
	mux.Handle("/", srv.Handler())
	httpSrv := &http.Server{
		Handler:           srv.Front(mux), // /scim paths as sent: the mux would redirect uncleaned ones
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      5 * time.Minute, // a large group's members take a while to write out
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn), // TLS handshake failures, in the log's format
	}
	warnUnopenable(e.ctx, db, cfg.SecretKey, log)
	ctx, stop := context.WithCancel(e.ctx)
	defer stop()
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		sched.Run(ctx)
	}()
	fmt.Fprintf(e.stdout, "entrasync is serving the SCIM endpoint at %s%s and the ops API at %s/ops/v1 (listening on %s)\n",
		public, scim.BasePath, public, ln.Addr())
	log.Info("serving", "addr", ln.Addr().String(), "scim", public+scim.BasePath)
	errc := make(chan error, 2)
	go func() { errc <- httpSrv.Serve(ln) }()
	var metricsSrv *http.Server
	if svc.metricsLn != nil {
		open := http.NewServeMux()
		open.Handle(metrics.Path, svc.metrics.Open())
		metricsSrv = &http.Server{Handler: open, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		log.Info("serving metrics without authentication", "addr", svc.metricsLn.Addr().String(), "path", metrics.Path)
		go func() { errc <- metricsSrv.Serve(svc.metricsLn) }()
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-e.ctx.Done():
	}
	log.Info("shutting down")
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) && serveErr == nil {
		serveErr = err
	}
	if metricsSrv != nil {
		metricsSrv.Shutdown(sctx)
	}
	<-schedDone
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	fmt.Fprintln(e.stdout, "entrasync stopped")
	return nil
}

// bootstrap makes the tenant "default" on a database's first start when
// no tenant exists yet (one made by hand before the first serve is the
// one meant), and shows its credentials, the only time they are shown: on
// stdout for a person, or as one log record under log_format=json, so a
// log pipeline reads every line. It is the one log record with a secret.
func bootstrap(e *env, svc *service) error {
	var cred *credentials
	err := svc.db.Write(e.ctx, func(tx *store.Tx) error {
		first, err := tx.FirstStart()
		if err != nil || !first {
			return err
		}
		if exists, err := tx.HasTenants(); err != nil || exists {
			return err
		}
		t, err := tx.CreateTenant("default")
		if err != nil {
			return err
		}
		tok, secret, err := tx.CreateToken(t)
		cred = &credentials{Tenant: t.Name, TenantURL: tenantURL(svc.public), SecretToken: secret, TokenID: tok.ID}
		return err
	})
	if err != nil || cred == nil {
		return err
	}
	if svc.cfg.LogFormat == "json" {
		svc.log.Info("first start: made tenant \"default\"; in Microsoft Entra ID, open the Enterprise Application's "+
			"Provisioning page and enter its Tenant URL and Secret Token; the Secret Token is shown only this once",
			"tenant", cred.Tenant, "tenantUrl", cred.TenantURL, "secretToken", cred.SecretToken, "tokenId", cred.TokenID)
		return nil
	}
	return printCredentials(e.stdout, *cred, false)
}

// warnUnopenable says at start which tenants' runs will be refused because
// the configured key does not open their Graph credentials.
func warnUnopenable(ctx context.Context, db *store.DB, key []byte, log *slog.Logger) {
	names, err := db.UnopenableConnections(ctx, key)
	if err != nil {
		log.Error("checking the stored Graph credentials against ENTRASYNC_SECRET_KEY failed", "err", err)
		return
	}
	if len(names) == 0 {
		return
	}
	why := "ENTRASYNC_SECRET_KEY (setting secret_key) is not set"
	if len(key) > 0 {
		why = "ENTRASYNC_SECRET_KEY (setting secret_key) is not the key their Graph credentials were stored with"
	}
	log.Warn(why+": runs of these tenants will be refused until the key they were stored with is set, "+
		"they are re-sealed with `entrasync rekey --old-key-env VAR`, or their credentials are given again with "+
		"`entrasync tenant graph NAME --client-secret-env VAR`", "tenants", names)
}
