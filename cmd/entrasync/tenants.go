package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store"
)

var tenantCreateCmd = &command{name: "tenant create", args: "NAME", nargs: 1,
	summary: "create a tenant and print its Tenant URL and Secret Token", run: tenantCreate, json: true}

var tenantListCmd = &command{name: "tenant list", summary: "list tenants", run: tenantList, json: true}

var tenantDeleteCmd = &command{name: "tenant delete", args: "NAME --yes", nargs: 1,
	summary: "delete a tenant with all its users, groups and tokens",
	flags:   func(fs *flag.FlagSet) any { return fs.Bool("yes", false, "confirm the deletion") },
	run:     tenantDelete, json: true}

var tokenCreateCmd = &command{name: "token create", args: "TENANT", nargs: 1,
	summary: "issue another Secret Token for a tenant", run: tokenCreate, json: true}

var tokenListCmd = &command{name: "token list", args: "TENANT", nargs: 1,
	summary: "list a tenant's tokens (never their secrets)", run: tokenList, json: true}

var tokenRevokeCmd = &command{name: "token revoke", args: "TOKEN-ID", nargs: 1,
	summary: "revoke a token at once, also for running servers", run: tokenRevoke, json: true}

// credentials is what an admin pastes into Entra's provisioning page.
type credentials struct {
	Tenant      string `json:"tenant"`
	TenantURL   string `json:"tenantUrl"`
	SecretToken string `json:"secretToken"`
	TokenID     string `json:"tokenId"`
}

func tenantURL(publicURL string) string { return publicURL + scim.BasePath }

// insecureTenantURL says why Entra will refuse a Tenant URL: it is not
// https, and not on this machine (where plain http is only for tests); ""
// when it is fine.
func insecureTenantURL(tenantURL string) string {
	u, err := url.Parse(tenantURL)
	if err != nil || u.Scheme == "https" || isLoopback(u.Hostname()) {
		return ""
	}
	return "the Tenant URL " + tenantURL + " is not https, and Microsoft Entra ID accepts only https Tenant URLs: " +
		"serve HTTPS (settings tls_cert and tls_key) or put an HTTPS reverse proxy in front, and set public_url " +
		"to the https URL clients reach (see README, \"HTTPS\")"
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// warnTenantURL warns on stderr, beside the credentials, when Entra will
// refuse the Tenant URL.
func warnTenantURL(w io.Writer, tenantURL string) {
	if why := insecureTenantURL(tenantURL); why != "" {
		fmt.Fprintf(w, "entrasync: warning: %s\n", why)
	}
}

// printCredentials shows the two values with Entra's own labels.
func printCredentials(w io.Writer, c credentials, asJSON bool) error {
	if asJSON {
		return printJSON(w, c)
	}
	fmt.Fprintf(w, "Tenant %q: in Microsoft Entra ID, open the Enterprise Application's Provisioning page and enter:\n\n", c.Tenant)
	fmt.Fprintf(w, "  Tenant URL:    %s\n", c.TenantURL)
	fmt.Fprintf(w, "  Secret Token:  %s\n\n", c.SecretToken)
	fmt.Fprintf(w, "The Secret Token is shown only this once (token id %s); keep it like a password.\n", c.TokenID)
	return nil
}

func tenantCreate(e *env, inv *invocation) error {
	db, err := openStore(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	var cred credentials
	err = db.Write(e.ctx, func(tx *store.Tx) error {
		t, err := tx.CreateTenant(inv.args[0])
		if err != nil {
			return err
		}
		tok, secret, err := tx.CreateToken(t)
		cred = credentials{Tenant: t.Name, TenantURL: tenantURL(inv.cfg.Public("")), SecretToken: secret, TokenID: tok.ID}
		return err
	})
	if err != nil {
		return err
	}
	warnTenantURL(e.stderr, cred.TenantURL)
	return printCredentials(e.stdout, cred, inv.json)
}

func tenantList(e *env, inv *invocation) error {
	db, err := openReadOnly(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	list, err := db.Tenants(e.ctx)
	if err != nil {
		return err
	}
	if inv.json {
		out := make([]map[string]any, len(list))
		for i, t := range list {
			out[i] = map[string]any{"id": t.ID, "name": t.Name, "createdAt": t.CreatedAt,
				"users": t.Users, "groups": t.Groups, "activeTokens": t.Tokens}
		}
		return printJSON(e.stdout, out)
	}
	rows := make([][]string, len(list))
	for i, t := range list {
		rows[i] = []string{t.Name, strconv.Itoa(t.Users), strconv.Itoa(t.Groups), strconv.Itoa(t.Tokens), t.CreatedAt.Format(time.RFC3339)}
	}
	table(e.stdout, "NAME\tUSERS\tGROUPS\tTOKENS\tCREATED", rows)
	return nil
}

func tenantDelete(e *env, inv *invocation) error {
	if !*inv.flags.(*bool) {
		return usagef("this deletes tenant %q with all its users, groups and tokens; add --yes to confirm", inv.args[0])
	}
	db, err := openStore(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Write(e.ctx, func(tx *store.Tx) error { return tx.DeleteTenant(inv.args[0]) }); err != nil {
		return err
	}
	if inv.json {
		return printJSON(e.stdout, map[string]any{"deleted": inv.args[0]})
	}
	fmt.Fprintf(e.stdout, "Deleted tenant %q and all its data.\n", inv.args[0])
	return nil
}

func tokenCreate(e *env, inv *invocation) error {
	db, err := openStore(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	var cred credentials
	err = db.Write(e.ctx, func(tx *store.Tx) error {
		t, err := tx.Tenant(inv.args[0])
		if err != nil {
			return err
		}
		tok, secret, err := tx.CreateToken(t)
		cred = credentials{Tenant: t.Name, TenantURL: tenantURL(inv.cfg.Public("")), SecretToken: secret, TokenID: tok.ID}
		return err
	})
	if err != nil {
		return err
	}
	warnTenantURL(e.stderr, cred.TenantURL)
	return printCredentials(e.stdout, cred, inv.json)
}

func tokenList(e *env, inv *invocation) error {
	db, err := openReadOnly(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	list, err := db.Tokens(e.ctx, inv.args[0])
	if err != nil {
		return err
	}
	if inv.json {
		if list == nil {
			list = []store.Token{}
		}
		return printJSON(e.stdout, list)
	}
	rows := make([][]string, len(list))
	for i, t := range list {
		rows[i] = []string{t.ID, t.Prefix + "…", t.CreatedAt.Format(time.RFC3339), optTime(t.LastUsedAt), optTime(t.RevokedAt)}
	}
	table(e.stdout, "ID\tPREFIX\tCREATED\tLAST USED\tREVOKED", rows)
	return nil
}

func optTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func tokenRevoke(e *env, inv *invocation) error {
	db, err := openStore(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	var tok store.Token
	err = db.Write(e.ctx, func(tx *store.Tx) error {
		var err error
		tok, err = tx.RevokeToken(inv.args[0])
		return err
	})
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(e.stdout, tok)
	}
	fmt.Fprintf(e.stdout, "Revoked token %s of tenant %q; it is refused from now on.\n", tok.ID, tok.Tenant)
	return nil
}
