package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync/opsapi"
)

// status, users and runs read what the ops API reads, through the same
// functions (opsapi.Status, store.UsersPage), from a read-only database.

var statusCmd = &command{name: "status", args: "[TENANT]", optional: 1,
	summary: "show each tenant's (or one tenant's) counts, last push, last pull and health", run: status, json: true}

var usersCmd = &command{name: "users", args: "TENANT [--search PREFIX] [--active true|false] [--group ID] [--limit N]", nargs: 1,
	summary: "list a tenant's users, by id; --search is a prefix of userName, email, displayName or name", flags: usersFlags, run: users, json: true}

var runsCmd = &command{name: "runs", args: "TENANT [--limit N]", nargs: 1,
	summary: "list a tenant's pull runs, newest first",
	flags:   func(fs *flag.FlagSet) any { return fs.Int("limit", 20, "runs to show, 1 to 1000") },
	run:     runs, json: true}

// tenantNamed reads a tenant, saying how to find the right name when
// there is none by that name.
func tenantNamed(e *env, db *store.DB, name string) (store.Tenant, error) {
	t, err := db.Tenant(e.ctx, name)
	if store.ErrorCode(err) == store.NotFound {
		return t, fmt.Errorf("no tenant %q: `entrasync tenant list` shows the tenants", name)
	}
	return t, err
}

// openTenant opens the database read-only and finds the tenant the
// command's first argument names.
func openTenant(e *env, inv *invocation) (*store.DB, store.Tenant, error) {
	db, err := openReadOnly(e, inv.cfg)
	if err != nil {
		return nil, store.Tenant{}, err
	}
	t, err := tenantNamed(e, db, inv.args[0])
	if err != nil {
		db.Close()
		return nil, store.Tenant{}, err
	}
	return db, t, nil
}

func status(e *env, inv *invocation) error {
	db, err := openReadOnly(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	var ts []store.Tenant
	if len(inv.args) == 1 {
		t, err := tenantNamed(e, db, inv.args[0])
		if err != nil {
			return err
		}
		ts = []store.Tenant{t}
	} else {
		for after := ""; ; {
			page, err := db.TenantsPage(e.ctx, after, nil, store.MaxPage)
			if err != nil {
				return err
			}
			ts = append(ts, page...)
			if len(page) < store.MaxPage {
				break
			}
			after = page[len(page)-1].Name
		}
	}
	out := make([]opsapi.TenantStatus, 0, len(ts))
	for _, t := range ts {
		s, err := opsapi.Status(e.ctx, db, t, time.Now(), inv.cfg.SyncSchedule)
		if err != nil {
			return err
		}
		out = append(out, s)
	}
	if inv.json {
		if len(inv.args) == 1 {
			return printJSON(e.stdout, out[0])
		}
		return printJSON(e.stdout, out)
	}
	if len(out) == 0 {
		fmt.Fprintln(e.stdout, "No tenants yet: `entrasync tenant create NAME` makes one.")
		return nil
	}
	rows := make([][]string, len(out))
	for i, s := range out {
		push, pull := "-", "-"
		if s.LastPush != nil {
			push = s.LastPush.At.Format(time.RFC3339) + " " + strconv.Itoa(s.LastPush.Status)
		}
		if s.LastPull != nil {
			pull = s.LastPull.StartedAt.Format(time.RFC3339) + " " + s.LastPull.Status
		}
		rows[i] = []string{s.Name, strconv.Itoa(s.Counts.Users), strconv.Itoa(s.Counts.ActiveUsers), strconv.Itoa(s.Counts.Groups), push, pull, s.Health.Status}
	}
	table(e.stdout, "TENANT\tUSERS\tACTIVE\tGROUPS\tLAST PUSH\tLAST PULL\tHEALTH", rows)
	for _, s := range out {
		for _, p := range s.Health.Problems {
			fmt.Fprintf(e.stdout, "%s: %s\n", s.Name, p)
		}
	}
	return nil
}

type usersOpts struct {
	search, active, group, after *string
	limit                        *int
}

func usersFlags(fs *flag.FlagSet) any {
	return &usersOpts{
		search: fs.String("search", "", "only users whose userName, an email, displayName, given or family name starts with this (any case)"),
		active: fs.String("active", "", "only active (true) or inactive (false) users"),
		group:  fs.String("group", "", "only direct members of this group id"),
		after:  fs.String("after", "", "start after this user id (the last one a page showed)"),
		limit:  fs.Int("limit", 100, "users to show, 1 to 1000"),
	}
}

func users(e *env, inv *invocation) error {
	o := inv.flags.(*usersOpts)
	q := store.UserQuery{Search: *o.search, Group: *o.group, After: *o.after, Limit: *o.limit}
	if q.Limit < 1 || q.Limit > store.MaxPage {
		return usagef("--limit must be from 1 to %d, not %d", store.MaxPage, q.Limit)
	}
	switch *o.active {
	case "":
	case "true", "false":
		b := *o.active == "true"
		q.Active = &b
	default:
		return usagef("--active must be true or false, not %q", *o.active)
	}
	db, t, err := openTenant(e, inv)
	if err != nil {
		return err
	}
	defer db.Close()
	if q.Group != "" {
		if _, err := db.Get(e.ctx, t.ID, store.GroupKind, q.Group); store.ErrorCode(err) == store.NotFound {
			return fmt.Errorf("tenant %s has no group %q: give a group id, as `entrasync users` and the ops API show them", t.Name, q.Group)
		} else if err != nil {
			return err
		}
	}
	q.Limit++ // one more tells whether more remain
	rs, err := db.UsersPage(e.ctx, t.ID, q)
	if err != nil {
		return err
	}
	more := len(rs) > *o.limit
	if more {
		rs = rs[:*o.limit]
	}
	list := make([]opsapi.User, len(rs))
	for i, r := range rs {
		list[i] = opsapi.UserOf(r)
	}
	if inv.json {
		return printJSON(e.stdout, list)
	}
	rows := make([][]string, len(list))
	for i, u := range list {
		active := "yes"
		if !u.Active {
			active = "no"
		}
		var emails []string
		for _, m := range u.Emails {
			if v, ok := m.(map[string]any)["value"].(string); ok {
				emails = append(emails, v)
			}
		}
		rows[i] = []string{u.ID, u.UserName, u.DisplayName, active, strings.Join(emails, ","), u.LastModified.Format(time.RFC3339)}
	}
	table(e.stdout, "ID\tUSERNAME\tDISPLAY NAME\tACTIVE\tEMAILS\tLAST MODIFIED", rows)
	if more {
		fmt.Fprintf(e.stderr, "More users match: add --after %s for the next page.\n", list[len(list)-1].ID)
	}
	return nil
}

func runs(e *env, inv *invocation) error {
	limit := *inv.flags.(*int)
	if limit < 1 || limit > store.MaxPage {
		return usagef("--limit must be from 1 to %d, not %d", store.MaxPage, limit)
	}
	db, t, err := openTenant(e, inv)
	if err != nil {
		return err
	}
	defer db.Close()
	list, err := db.Runs(e.ctx, t.Name, limit)
	if err != nil {
		return err
	}
	if inv.json {
		if list == nil {
			list = []store.Run{}
		}
		return printJSON(e.stdout, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(e.stdout, "Tenant %s has no runs yet: `entrasync sync %s` starts one.\n", t.Name, t.Name)
	}
	for _, r := range list {
		printRunLine(e.stdout, r)
	}
	return nil
}
