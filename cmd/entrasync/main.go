// Command entrasync keeps a SaaS platform's copy of its customers' workforce
// current: a SCIM 2.0 endpoint Microsoft Entra ID (and Okta) push into, and
// a worker that pulls changes from Microsoft Graph.
//
// This package parses flags and wires the other packages together; it
// holds no logic of its own.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/entrasync/entrasync/config"
	"github.com/entrasync/entrasync/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// env is what a command runs with.
type env struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// command is one subcommand: its flags and what it does with its arguments.
type command struct {
	name    string
	args    string // usage of positional arguments
	summary string
	flags   func(fs *flag.FlagSet) any
	run     func(e *env, c *invocation) error
	nargs   int // positional arguments required
}

// invocation is a parsed command line.
type invocation struct {
	args  []string
	cfg   config.Config
	json  bool
	flags any // what command.flags returned
}

// usageError is a mistake on the command line (exit code 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// commands in the order help lists them.
var commands = []*command{
	serveCmd, demoCmd,
	tenantCreateCmd, tenantListCmd, tenantShowCmd, tenantGraphCmd, tenantDeleteCmd,
	tokenCreateCmd, tokenListCmd, tokenRevokeCmd,
	syncCmd, rekeyCmd,
	opskeyCreateCmd, opskeyListCmd, opskeyRevokeCmd,
	versionCmd,
}

// Main runs entrasync with args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printUsage(stdout)
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = append([]string{"version"}, args[1:]...)
	}
	name := args[0]
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		if c := find(name + " " + args[1]); c != nil {
			name, args = c.name, args[1:]
		}
	}
	c := find(name)
	if c == nil {
		if group := subcommands(name); group != "" {
			fmt.Fprintf(stderr, "entrasync: %s needs a subcommand: %s\n", name, group)
		} else {
			fmt.Fprintf(stderr, "entrasync: unknown command %q; run \"entrasync help\" for the list\n", name)
		}
		return 2
	}
	inv, err := parse(c, args[1:], getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		err = c.run(e, inv)
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "entrasync %s: %v\n", c.name, err)
	var xe *exitError
	if errors.As(err, &xe) {
		return xe.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "usage: entrasync %s %s\n", c.name, c.args)
		return 2
	}
	return 1
}

func find(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func subcommands(group string) string {
	var names []string
	for _, c := range commands {
		if first, rest, ok := strings.Cut(c.name, " "); ok && first == group {
			names = append(names, rest)
		}
	}
	return strings.Join(names, ", ")
}

// parse reads flags wherever they stand among the arguments.
func parse(c *command, args []string, getenv func(string) string, stderr io.Writer) (*invocation, error) {
	fs := flag.NewFlagSet("entrasync "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	settings := config.Register(fs)
	inv := &invocation{}
	fs.BoolVar(&inv.json, "json", false, "print machine-readable JSON")
	if c.flags != nil {
		inv.flags = c.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: entrasync %s %s\n\n%s\n\nflags:\n", c.name, c.args, c.summary)
		fs.PrintDefaults()
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			inv.args = append(inv.args, rest[1:]...)
			break
		}
		inv.args = append(inv.args, rest[0])
		args = rest[1:]
	}
	if len(inv.args) != c.nargs {
		return nil, usagef("want %d argument(s), got %d", c.nargs, len(inv.args))
	}
	cfg, err := settings.Load(getenv)
	if err != nil {
		return nil, err
	}
	inv.cfg = cfg
	return inv, nil
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `entrasync keeps your customers' workforce (Microsoft Entra ID users and groups)
current on your platform: a SCIM 2.0 endpoint Entra pushes into, and a worker
that pulls changes from Microsoft Graph.

usage: entrasync <command> [arguments] [flags]

commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, `
Every command takes --config FILE, --db PATH and the other settings as flags
(or ENTRASYNC_<NAME> environment variables); "entrasync <command> -h" lists them.
`)
}

// openStore opens the configured database.
func openStore(e *env, cfg config.Config) (*store.DB, error) {
	db, err := store.OpenWith(e.ctx, cfg.DB, store.Options{WriteWait: cfg.WriteWait})
	if err != nil {
		return nil, fmt.Errorf("%v (setting db, flag --db)", err)
	}
	return db, nil
}

func newLogger(w io.Writer, cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}
