package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/entrasync/entrasync/store"
)

var opskeyCreateCmd = &command{name: "opskey create", args: "NAME [--role read|sync|admin] [--tenant T]...", nargs: 1,
	summary: "issue a key for the ops HTTP API (shown once); read-only for every tenant unless --role and --tenant say otherwise",
	flags:   opsKeyFlags, run: opsKeyCreate, json: true}

var opskeyListCmd = &command{name: "opskey list", summary: "list ops keys with their roles and tenants (never the keys)", run: opsKeyList, json: true}

var opskeyRevokeCmd = &command{name: "opskey revoke", args: "NAME", nargs: 1, summary: "revoke an ops key", run: opsKeyRevoke, json: true}

type opsKeyOpts struct {
	role    string
	tenants listFlag
}

// listFlag is a flag that may repeat, each time one value or a comma list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func opsKeyFlags(fs *flag.FlagSet) any {
	o := &opsKeyOpts{}
	fs.StringVar(&o.role, "role", string(store.OpsRead), "read (runs and status), sync (also start runs) or admin (also full runs and --confirm-deletions)")
	fs.Var(&o.tenants, "tenant", "a tenant the key may act on; repeat it or give a comma list (default: every tenant)")
	return o
}

func opsKeyCreate(e *env, inv *invocation) error {
	o := inv.flags.(*opsKeyOpts)
	role, err := store.ParseOpsRole(o.role)
	if err != nil {
		return usagef("--role %q: want read, sync or admin", o.role)
	}
	db, err := openStore(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	var k store.OpsKey
	var secret string
	err = db.Write(e.ctx, func(tx *store.Tx) error {
		var err error
		k, secret, err = tx.CreateOpsKey(inv.args[0], role, o.tenants)
		return err
	})
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(e.stdout, map[string]any{"name": k.Name, "key": secret, "role": k.Role, "tenants": k.Tenants})
	}
	fmt.Fprintf(e.stdout, "Ops key %q, role %s, for %s (shown only this once):\n\n  %s\n\nUse it as \"Authorization: Bearer <key>\" on %s/ops/v1/...\n",
		k.Name, k.Role, scopeText(k), secret, inv.cfg.Public(""))
	return nil
}

// scopeText says which tenants a key may act on.
func scopeText(k store.OpsKey) string {
	switch {
	case k.AllTenants():
		return "every tenant"
	case len(k.Tenants) == 0:
		return "no tenant (its tenants were deleted)"
	}
	return "tenant(s) " + strings.Join(k.Tenants, ", ")
}

func opsKeyList(e *env, inv *invocation) error {
	db, err := openReadOnly(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	keys, err := db.OpsKeys(e.ctx)
	if err != nil {
		return err
	}
	if inv.json {
		if keys == nil {
			keys = []store.OpsKey{}
		}
		return printJSON(e.stdout, keys)
	}
	rows := make([][]string, len(keys))
	for i, k := range keys {
		tenants := "(all)"
		if !k.AllTenants() {
			tenants = strings.Join(k.Tenants, ",")
			if tenants == "" {
				tenants = "(none)"
			}
		}
		rows[i] = []string{k.Name, string(k.Role), tenants, k.ID, k.Prefix + "…", k.CreatedAt.Format(time.RFC3339), optTime(k.LastUsedAt), optTime(k.RevokedAt)}
	}
	table(e.stdout, "NAME\tROLE\tTENANTS\tID\tPREFIX\tCREATED\tLAST USED\tREVOKED", rows)
	return nil
}

func opsKeyRevoke(e *env, inv *invocation) error {
	db, err := openStore(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Write(e.ctx, func(tx *store.Tx) error { return tx.RevokeOpsKey(inv.args[0]) }); err != nil {
		return err
	}
	if inv.json {
		return printJSON(e.stdout, map[string]string{"revoked": inv.args[0]})
	}
	fmt.Fprintf(e.stdout, "Revoked ops key %q.\n", inv.args[0])
	return nil
}
