package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/entrasync/entrasync/config"
	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

var tenantGraphCmd = &command{name: "tenant graph", args: "NAME --tenant-id ID --client-id ID (--client-secret-env VAR | --client-secret-file F | --certificate F) --groups ID,ID [flags] | NAME --remove",
	nargs: 1, summary: "connect a tenant to Microsoft Graph for pulling, change its connection, or remove it", flags: graphFlags, run: tenantGraph, json: true}

var tenantShowCmd = &command{name: "tenant show", args: "NAME", nargs: 1, summary: "show a tenant: tokens, Graph connection, recent runs", run: tenantShow, json: true}

var syncCmd = &command{name: "sync", args: "TENANT [--full] [--confirm-deletions]", nargs: 1,
	summary: "pull a tenant from Microsoft Graph now and print what it did", flags: syncFlags, run: syncNow, json: true}

type graphOpts struct {
	tenantID, clientID, secretEnv, secretFile, certFile, groups, schedule, deprovision, threshold string
	authority, graphURL, cloud                                                                    string
	nested, noNested, remove                                                                      bool

	fs    *flag.FlagSet
	names []string // the connection's flags, which --remove refuses beside it
}

// given lists the connection flags given on the command line.
func (o *graphOpts) given() []string {
	var out []string
	o.fs.Visit(func(f *flag.Flag) {
		if slices.Contains(o.names, f.Name) {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

func graphFlags(fs *flag.FlagSet) any {
	o := &graphOpts{fs: fs}
	settings := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { settings[f.Name] = true })
	fs.StringVar(&o.tenantID, "tenant-id", "", "the customer's Entra tenant (directory) id")
	fs.StringVar(&o.clientID, "client-id", "", "the app registration's application (client) id")
	fs.StringVar(&o.secretEnv, "client-secret-env", "", "name of an environment variable holding the client secret")
	fs.StringVar(&o.secretFile, "client-secret-file", "", "file holding the client secret")
	fs.StringVar(&o.certFile, "certificate", "", "PEM file with the app's certificate and private key")
	fs.StringVar(&o.groups, "groups", "", "object ids of the assigned groups, comma-separated")
	fs.StringVar(&o.schedule, "schedule", "", "when to pull: a cron spec or @every duration (default: setting sync_schedule)")
	fs.BoolVar(&o.nested, "nested", false, "also pull the members of groups nested in the assigned ones")
	fs.BoolVar(&o.noNested, "no-nested", false, "pull direct members only (the default)")
	fs.StringVar(&o.deprovision, "deprovision", "", "what happens to users who leave scope: deactivate (default) or delete")
	fs.StringVar(&o.threshold, "threshold", "", "hold a run deprovisioning more than this: a percentage of active users (20%, the default) or a number")
	fs.StringVar(&o.cloud, "cloud", "", "national cloud: global (default), usgov or china")
	fs.StringVar(&o.authority, "authority-host", "", "Entra authority host URL (overrides --cloud)")
	fs.StringVar(&o.graphURL, "graph-url", "", "Microsoft Graph URL (overrides --cloud)")
	fs.VisitAll(func(f *flag.Flag) {
		if !settings[f.Name] {
			o.names = append(o.names, f.Name)
		}
	})
	fs.BoolVar(&o.remove, "remove", false, "remove the tenant's Graph connection and its delta links (its users and groups stay)")
	return o
}

// readSecret takes the client secret or certificate from where the flags say.
func (o *graphOpts) readSecret(getenv func(string) string) (kind string, secret []byte, err error) {
	given := 0
	for _, s := range []string{o.secretEnv, o.secretFile, o.certFile} {
		if s != "" {
			given++
		}
	}
	switch {
	case given > 1:
		return "", nil, usagef("give one of --client-secret-env, --client-secret-file and --certificate")
	case o.secretEnv != "":
		v := getenv(o.secretEnv)
		if v == "" {
			return "", nil, fmt.Errorf("environment variable %s is empty or unset; export the client secret in it first", o.secretEnv)
		}
		return "secret", []byte(v), nil
	case o.secretFile != "":
		b, err := os.ReadFile(o.secretFile)
		if err != nil {
			return "", nil, fmt.Errorf("cannot read the client secret: %v", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", nil, fmt.Errorf("%s is empty", o.secretFile)
		}
		return "secret", []byte(v), nil
	case o.certFile != "":
		b, err := os.ReadFile(o.certFile)
		if err != nil {
			return "", nil, fmt.Errorf("cannot read the certificate: %v", err)
		}
		if err := graph.CheckCertificate(b); err != nil {
			return "", nil, fmt.Errorf("%s: %v", o.certFile, err)
		}
		return "certificate", b, nil
	}
	return "", nil, nil
}

func tenantGraph(e *env, inv *invocation) error {
	o := inv.flags.(*graphOpts)
	if o.remove {
		if given := o.given(); len(given) > 0 {
			return usagef("--remove removes the connection; it takes no connection flags (%s)", strings.Join(given, ", "))
		}
		return removeGraph(e, inv)
	}
	if len(o.given()) == 0 {
		return showGraph(e, inv)
	}
	db, err := openStore(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	name := inv.args[0]
	// An existing connection is changed: what is not given stays. It is read
	// sealed, so a new credential replaces one the key cannot open.
	c, err := db.GraphConnection(e.ctx, name)
	exists := err == nil
	switch {
	case store.ErrorCode(err) == store.NotFound && strings.Contains(err.Error(), "no Graph connection"):
		c = store.GraphConnection{Tenant: name, Deprovision: "deactivate", ThresholdPercent: 20,
			AuthorityHost: graph.Clouds["global"].AuthorityHost, GraphURL: graph.Clouds["global"].GraphURL}
	case err != nil:
		return err
	}
	kind, secret, err := o.readSecret(e.getenv)
	if err != nil {
		return err
	}
	if secret != nil {
		c.Credential, c.Secret = kind, secret
	}
	if err := applyGraphFlags(&c, o); err != nil {
		return err
	}
	if c.Schedule == "" {
		c.Schedule = inv.cfg.SyncSchedule
	}
	switch {
	case c.AzureTenantID == "":
		return usagef("--tenant-id is required (the customer's Entra tenant id)")
	case c.ClientID == "":
		return usagef("--client-id is required (the app registration's client id)")
	case c.Secret == nil && !exists:
		return usagef("give the app's credential: --client-secret-env VAR, --client-secret-file F or --certificate F")
	case len(c.Groups) == 0:
		return usagef("--groups is required: the object ids of the groups assigned for provisioning")
	}
	if c.Secret == nil {
		// No new credential: the stored one is kept, so the key must open it.
		opened, err := db.OpenGraphConnection(e.ctx, name, inv.cfg.SecretKey)
		if err != nil {
			return fmt.Errorf("no new credential given, and the stored one cannot be kept: %w", err)
		}
		c.Secret = opened.Secret
	}
	if len(inv.cfg.SecretKey) == 0 {
		return errors.New("ENTRASYNC_SECRET_KEY is not set: the Graph credential is stored encrypted with it; make one with `openssl rand -base64 32` and keep it with your other secrets")
	}
	if err := db.Write(e.ctx, func(tx *store.Tx) error { return tx.SaveGraphConnection(c, inv.cfg.SecretKey) }); err != nil {
		return err
	}
	if inv.json {
		// As stored: the store stamps createdAt and updatedAt.
		saved, err := db.GraphConnection(e.ctx, name)
		if err != nil {
			return err
		}
		return printJSON(e.stdout, connectionJSON(saved))
	}
	fmt.Fprintf(e.stdout, "Tenant %q pulls from Microsoft Graph: %d assigned group(s), schedule %q. Run `entrasync sync %s` to pull now.\n",
		name, len(c.Groups), c.Schedule, name)
	return nil
}

// showGraph shows a tenant's Graph connection; given no connection flags,
// tenant graph only reads.
func showGraph(e *env, inv *invocation) error {
	db, err := openReadOnly(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	name := inv.args[0]
	if _, err := db.Tenant(e.ctx, name); err != nil {
		return err
	}
	c, err := db.GraphConnection(e.ctx, name)
	if store.ErrorCode(err) == store.NotFound {
		return fmt.Errorf("tenant %q has no Graph connection; connect it with "+
			"`entrasync tenant graph %s --tenant-id ID --client-id ID --client-secret-env VAR --groups ID,...`", name, name)
	}
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(e.stdout, connectionJSON(c))
	}
	threshold := connectionJSON(c)["threshold"]
	fmt.Fprintf(e.stdout, "Tenant %q pulls from Microsoft Graph: directory %s, app %s, credential %s (encrypted)\n"+
		"  groups %s\n  schedule %s, nested %v, deprovision %s, threshold %s\n  authority %s, Graph %s\n  updated %s\n",
		name, c.AzureTenantID, c.ClientID, c.Credential, strings.Join(c.Groups, ","), c.Schedule, c.Nested, c.Deprovision,
		threshold, c.AuthorityHost, c.GraphURL, c.UpdatedAt.Format(time.RFC3339))
	return nil
}

// removeGraph removes a tenant's Graph connection and its delta links,
// wherever they are kept; its users and groups stay as they are.
func removeGraph(e *env, inv *invocation) error {
	db, err := openStore(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	name := inv.args[0]
	t, err := db.Tenant(e.ctx, name)
	if err != nil {
		return err
	}
	if _, err := db.GraphConnection(e.ctx, name); err != nil {
		return err
	}
	w, closeWorker, err := newWorker(e.ctx, inv.cfg, db, newLogger(e.stderr, inv.cfg))
	if err != nil {
		return err
	}
	defer closeWorker()
	// Links first: should Redis fail, the connection stays and the command
	// can be run again.
	if err := w.Tokens.Forget(e.ctx, t.ID, nil); err != nil {
		return fmt.Errorf("the connection was not removed: its delta links could not be dropped: %w", err)
	}
	if err := db.Write(e.ctx, func(tx *store.Tx) error { return tx.RemoveGraphConnection(name) }); err != nil {
		return err
	}
	if inv.json {
		return printJSON(e.stdout, map[string]any{"tenant": name, "graph": nil})
	}
	fmt.Fprintf(e.stdout, "Removed the Graph connection of tenant %q; its users and groups stay as they are. "+
		"Connect it again with `entrasync tenant graph %s ...`.\n", name, name)
	return nil
}

func applyGraphFlags(c *store.GraphConnection, o *graphOpts) error {
	if o.tenantID != "" {
		if !graph.ValidObjectID(o.tenantID) {
			return usagef("--tenant-id %q is not a tenant id (a GUID such as 6f1b2a3c-1111-4222-8333-944445555666)", o.tenantID)
		}
		c.AzureTenantID = strings.ToLower(o.tenantID)
	}
	if o.clientID != "" {
		if !graph.ValidObjectID(o.clientID) {
			return usagef("--client-id %q is not an application id (a GUID)", o.clientID)
		}
		c.ClientID = strings.ToLower(o.clientID)
	}
	if o.groups != "" {
		c.Groups = nil
		for _, g := range strings.Split(o.groups, ",") {
			g = strings.TrimSpace(g)
			if !graph.ValidObjectID(g) {
				return usagef("--groups: %q is not a group object id (a GUID)", g)
			}
			c.Groups = append(c.Groups, strings.ToLower(g))
		}
	}
	if o.schedule != "" {
		if _, err := sync.ParseSchedule(o.schedule); err != nil {
			return usagef("--schedule %q: want a cron spec such as \"*/40 * * * *\" or \"@every 40m\": %v", o.schedule, err)
		}
		c.Schedule = o.schedule
	}
	switch {
	case o.nested && o.noNested:
		return usagef("give --nested or --no-nested, not both")
	case o.nested:
		c.Nested = true
	case o.noNested:
		c.Nested = false
	}
	switch o.deprovision {
	case "":
	case "deactivate", "delete":
		c.Deprovision = o.deprovision
	default:
		return usagef("--deprovision must be deactivate or delete, not %q", o.deprovision)
	}
	if o.threshold != "" {
		if pct, ok := strings.CutSuffix(o.threshold, "%"); ok {
			n, err := strconv.Atoi(pct)
			if err != nil || n < 1 || n > 100 {
				return usagef("--threshold %q: a percentage must be from 1%% to 100%%", o.threshold)
			}
			c.ThresholdPercent, c.ThresholdCount = n, 0
		} else {
			n, err := strconv.Atoi(o.threshold)
			if err != nil || n < 1 {
				return usagef("--threshold %q: want a percentage such as 20%% or a number of users such as 500", o.threshold)
			}
			c.ThresholdPercent, c.ThresholdCount = 0, n
		}
	}
	if o.cloud != "" {
		cl, ok := graph.Clouds[o.cloud]
		if !ok {
			return usagef("--cloud must be global, usgov or china, not %q", o.cloud)
		}
		c.AuthorityHost, c.GraphURL = cl.AuthorityHost, cl.GraphURL
	}
	if o.authority != "" {
		host, err := graph.NormalizeAuthorityHost(o.authority)
		if err != nil {
			return usagef("--authority-host: %v", err)
		}
		c.AuthorityHost = host
	}
	if o.graphURL != "" {
		u, err := graph.NormalizeGraphURL(o.graphURL) // the docs' https://graph.microsoft.com/v1.0 is taken too
		if err != nil {
			return usagef("--graph-url: %v", err)
		}
		c.GraphURL = u
	}
	return nil
}

// connectionJSON shows a connection; the secret never appears.
func connectionJSON(c store.GraphConnection) map[string]any {
	threshold := strconv.Itoa(c.ThresholdCount)
	if c.ThresholdCount == 0 {
		threshold = strconv.Itoa(c.ThresholdPercent) + "%"
	}
	return map[string]any{"tenant": c.Tenant, "azureTenantId": c.AzureTenantID, "clientId": c.ClientID,
		"credential": c.Credential + " (encrypted)", "groups": c.Groups, "schedule": c.Schedule, "nested": c.Nested,
		"deprovision": c.Deprovision, "threshold": threshold, "authorityHost": c.AuthorityHost, "graphUrl": c.GraphURL,
		"updatedAt": c.UpdatedAt}
}

func tenantShow(e *env, inv *invocation) error {
	db, err := openReadOnly(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	name := inv.args[0]
	t, err := db.Tenant(e.ctx, name)
	if err != nil {
		return err
	}
	toks, err := db.Tokens(e.ctx, name)
	if err != nil {
		return err
	}
	active := 0
	for _, tk := range toks {
		if tk.RevokedAt == nil {
			active++
		}
	}
	out := map[string]any{"id": t.ID, "name": t.Name, "createdAt": t.CreatedAt, "activeTokens": active, "graph": nil}
	c, err := db.GraphConnection(e.ctx, name)
	keyProblem := ""
	if err == nil {
		out["graph"] = connectionJSON(c)
		// Whether the configured key opens the credential: runs are refused
		// until it does.
		if _, err := db.OpenGraphConnection(e.ctx, name, inv.cfg.SecretKey); store.ErrorCode(err) == store.Unavailable {
			keyProblem = err.Error()
			out["graph"].(map[string]any)["credentialProblem"] = keyProblem
		}
	} else if store.ErrorCode(err) != store.NotFound {
		return err
	}
	runs, err := db.Runs(e.ctx, name, 5)
	if err != nil {
		return err
	}
	out["recentRuns"] = runs
	if inv.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "Tenant %s (created %s), %d active SCIM token(s)\n", t.Name, t.CreatedAt.Format(time.RFC3339), active)
	if out["graph"] == nil {
		fmt.Fprintf(e.stdout, "Graph: not connected (entrasync tenant graph %s ...)\n", name)
	} else {
		j := out["graph"].(map[string]any)
		fmt.Fprintf(e.stdout, "Graph: directory %s, app %s, credential %s\n  groups %v\n  schedule %s, nested %v, deprovision %s, threshold %s\n  authority %s, Graph %s\n",
			j["azureTenantId"], j["clientId"], j["credential"], j["groups"], j["schedule"], j["nested"], j["deprovision"], j["threshold"], j["authorityHost"], j["graphUrl"])
		if keyProblem != "" {
			fmt.Fprintf(e.stdout, "  runs are refused: %s\n", keyProblem)
		}
	}
	for _, r := range runs {
		printRunLine(e.stdout, r)
	}
	return nil
}

func printRunLine(w io.Writer, r store.Run) {
	end := "-"
	if r.FinishedAt != nil {
		end = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
	}
	fmt.Fprintf(w, "run %d  %s  %-9s %-5s %s  took %s  changes %s", r.ID, r.StartedAt.Format(time.RFC3339), r.Status, r.Mode, r.Trigger, end, r.Changes)
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s", r.Error)
	}
	fmt.Fprintln(w)
}

type syncOpts struct{ full, confirm bool }

func syncFlags(fs *flag.FlagSet) any {
	o := &syncOpts{}
	fs.BoolVar(&o.full, "full", false, "ignore stored delta links: read everything, reconcile what left scope")
	fs.BoolVar(&o.confirm, "confirm-deletions", false, "apply deprovisions even over the tenant's threshold")
	return o
}

// Exit codes of `entrasync sync` beyond 0 and 1.
const (
	exitHeld      = 3 // deprovisions over the threshold wait for --confirm-deletions
	exitThrottled = 4 // Graph asked to come back later
)

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func syncNow(e *env, inv *invocation) error {
	o := inv.flags.(*syncOpts)
	db, err := openStore(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	log := newLogger(e.stderr, inv.cfg)
	w, closeWorker, err := newWorker(e.ctx, inv.cfg, db, log)
	if err != nil {
		return err
	}
	defer closeWorker()
	run, err := w.RunOnce(e.ctx, inv.args[0], sync.Options{Trigger: "cli", Full: o.full, ConfirmDeletions: o.confirm})
	if run.ID == 0 && err != nil {
		return err
	}
	if inv.json {
		printJSON(e.stdout, run)
	} else {
		printRunLine(e.stdout, run)
	}
	switch run.Status {
	case store.RunHeld:
		return &exitError{exitHeld, run.Error}
	case store.RunThrottled:
		return &exitError{exitThrottled, "throttled by Microsoft Graph; try again after " + (time.Duration(run.RetryAfterMS) * time.Millisecond).String()}
	case store.RunFailed:
		return errors.New(run.Error)
	}
	return nil
}

// newWorker wires a pull worker from the settings: delta links and run
// locks in Redis when one is configured, in the database otherwise. A
// configured Redis must answer (within redisStartWait): a worker that
// cannot lock or keep links would fail every run.
func newWorker(ctx context.Context, cfg config.Config, db *store.DB, log *slog.Logger) (*sync.Worker, func(), error) {
	w := &sync.Worker{DB: db, Key: cfg.SecretKey, Connect: connectGraph, Log: log}
	closer := func() {}
	if cfg.Redis != "" {
		r, err := sync.NewRedis(cfg.Redis)
		if err != nil {
			return nil, nil, fmt.Errorf("%v (setting redis)", err)
		}
		if err := pingRedis(ctx, r); err != nil {
			r.Close()
			return nil, nil, fmt.Errorf("cannot reach Redis (setting redis, ENTRASYNC_REDIS, flag --redis): %v; "+
				"start it or fix the setting, or leave redis unset to keep delta links and run locks in the database", err)
		}
		if r.Namespace, err = db.InstallationID(ctx); err != nil {
			r.Close()
			return nil, nil, err
		}
		r.TTL = cfg.RunLockTTL
		w.Tokens, w.Locks, closer = r, r, func() { r.Close() }
	} else {
		w.Tokens, w.Locks = sync.StoreTokens{DB: db}, sync.StoreLocks{DB: db, TTL: cfg.RunLockTTL}
	}
	return w, closer, nil
}

// redisStartWait is how long a start waits for a configured Redis to
// answer, for one starting beside entrasync.
const redisStartWait = 5 * time.Second

func pingRedis(ctx context.Context, r *sync.Redis) error {
	ctx, cancel := context.WithTimeout(ctx, redisStartWait)
	defer cancel()
	for {
		err := r.Ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// graphHTTPClient carries Graph requests; nil (the default transport with
// timeouts) outside tests, which point it at a fake Graph.
var graphHTTPClient *http.Client

// connectGraph makes the Graph client for a stored connection.
func connectGraph(_ context.Context, c store.GraphConnection) (sync.Source, error) {
	cfg := graph.Config{TenantID: c.AzureTenantID, ClientID: c.ClientID, AuthorityHost: c.AuthorityHost, GraphURL: c.GraphURL, HTTPClient: graphHTTPClient}
	if c.Credential == "certificate" {
		cfg.Certificate = c.Secret
	} else {
		cfg.ClientSecret = string(c.Secret)
	}
	return graph.New(cfg)
}
