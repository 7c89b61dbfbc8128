package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync/opsapi"
)

var activityCmd = &command{name: "activity", args: "TENANT [--failed] [--kind push|pull] [--user ID|USERNAME] [--since TIME] [--limit N] [--follow]",
	nargs: 1, summary: "show a tenant's provisioning activity in words: each SCIM request and each change a pull made, newest last",
	flags: activityFlags, run: showActivity, json: true}

type activityOpts struct {
	failed, follow    bool
	kind, user, since string
	limit             int
	every             time.Duration // --follow's polling interval
}

func activityFlags(fs *flag.FlagSet) any {
	o := &activityOpts{}
	fs.BoolVar(&o.failed, "failed", false, "only requests and changes that failed")
	fs.StringVar(&o.kind, "kind", "", "only push (SCIM requests) or pull (changes a Graph pull made)")
	fs.StringVar(&o.user, "user", "", "only what concerns one user or group: its id, userName or displayName")
	fs.StringVar(&o.since, "since", "", "only records since this RFC 3339 time, e.g. 2026-12-01T09:00:00Z")
	fs.IntVar(&o.limit, "limit", 50, "show at most this many records (1 to 1000), the newest")
	fs.BoolVar(&o.follow, "follow", false, "keep showing new records as they come, until interrupted")
	fs.DurationVar(&o.every, "follow-interval", 2*time.Second, "how often --follow looks for new records")
	return o
}

func showActivity(e *env, inv *invocation) error {
	o := inv.flags.(*activityOpts)
	params := map[string][]string{"kind": {o.kind}, "user": {o.user}, "since": {o.since}, "limit": {strconv.Itoa(o.limit)}}
	if o.failed {
		params["failed"] = []string{"true"}
	}
	q, err := opsapi.ActivityQuery(params)
	if err != nil {
		return usagef("%s (entrasync activity --help)", flagWords(err.Error()))
	}
	if o.every < 100*time.Millisecond {
		return usagef("--follow-interval must be at least 100ms")
	}
	db, t, err := openTenant(e, inv)
	if err != nil {
		return err
	}
	defer db.Close()
	records, err := db.Activity(e.ctx, t.ID, q)
	if err != nil {
		return err
	}
	slices.Reverse(records) // oldest first, as a log reads
	if inv.json && !o.follow {
		if records == nil {
			records = []store.Activity{}
		}
		return printJSON(e.stdout, records)
	}
	print := func(a store.Activity) {
		if inv.json { // --follow --json: one record a line
			line, _ := json.Marshal(a)
			fmt.Fprintf(e.stdout, "%s\n", line)
			return
		}
		printActivityLine(e.stdout, a)
	}
	if !inv.json && len(records) == 0 && !o.follow {
		fmt.Fprintf(e.stdout, "No activity recorded for tenant %s that matches.\n", t.Name)
	}
	var last int64
	for _, a := range records {
		print(a)
		last = a.ID
	}
	if !o.follow {
		return nil
	}
	if last == 0 { // nothing yet: follow from the newest record there is
		newest, err := db.Activity(e.ctx, t.ID, store.ActivityQuery{Limit: 1})
		if err != nil {
			return err
		}
		if len(newest) == 1 {
			last = newest[0].ID
		}
	}
	q.Before, q.Limit = 0, store.MaxActivityPage
	tick := time.NewTicker(o.every)
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return nil
		case <-tick.C:
		}
		for {
			q.After = last
			more, err := db.Activity(e.ctx, t.ID, q)
			if err != nil {
				if e.ctx.Err() != nil {
					return nil
				}
				return err
			}
			for _, a := range more {
				print(a)
				last = a.ID
			}
			if len(more) < q.Limit {
				break
			}
		}
	}
}

// flagWords turns an ops API parameter's message into the CLI's words.
func flagWords(msg string) string {
	for _, p := range [][2]string{{"failed must", "--failed must"}, {"kind must", "--kind must"}, {"since must", "--since must"},
		{"user must", "--user must"}, {"limit must", "--limit must"}} {
		if len(msg) >= len(p[0]) && msg[:len(p[0])] == p[0] {
			return p[1] + msg[len(p[0]):]
		}
	}
	return msg
}

func printActivityLine(w io.Writer, a store.Activity) {
	what := a.Channel
	switch {
	case a.Channel == store.ChannelPush:
		what = fmt.Sprintf("push %-6s %s %-4s %d", a.Provider, a.Method, a.Endpoint, a.Status)
	case a.RunID != 0:
		what = fmt.Sprintf("pull run %d", a.RunID)
	}
	mark := " "
	if a.Failed {
		mark = "!"
	}
	fmt.Fprintf(w, "%s %s %s  %s", a.At.Local().Format("2006-01-02 15:04:05"), mark, what, a.Summary)
	if a.RequestID != "" {
		fmt.Fprintf(w, "  [%s]", a.RequestID)
	}
	fmt.Fprintln(w)
}
