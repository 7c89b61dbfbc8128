package main

import (
	"fmt"
	"strings"
)

var migrateCmd = &command{name: "migrate", run: migrate, json: true,
	summary: "bring the database's schema up to date and say what was applied (serve does it too, unless --no-migrate)"}

// migrateResult is what migrate prints with --json.
type migrateResult struct {
	Applied []string `json:"applied"` // migrations applied now, oldest first
	Version int      `json:"version"` // the schema version the database is at
}

func migrate(e *env, inv *invocation) error {
	db, err := openStore(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	res := migrateResult{Applied: db.Applied(), Version: db.SchemaVersion()}
	if res.Applied == nil {
		res.Applied = []string{}
	}
	if inv.json {
		return printJSON(e.stdout, res)
	}
	if len(res.Applied) == 0 {
		fmt.Fprintf(e.stdout, "The schema is up to date (version %d); nothing to apply.\n", res.Version)
		return nil
	}
	fmt.Fprintf(e.stdout, "Applied %s; the schema is at version %d.\n", strings.Join(res.Applied, ", "), res.Version)
	return nil
}
