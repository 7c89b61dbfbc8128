// Command entrasync keeps a SaaS platform's copy of its customers' workforce
// current: a SCIM 2.0 endpoint Microsoft Entra ID (and Okta) push into, and
// a worker that pulls changes from Microsoft Graph.
//
// This package parses flags and wires the other packages together; it
// holds no logic of its own. The command line is parsed here over the
// standard flag package rather than with cobra or kong: every command's
// flags are a flag.FlagSet that config.Register fills with the settings,
// and what a library would add (help layout, suggestions, completion
// scripts) is a few small functions over the command table.
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
	"slices"
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
	// optional: positional arguments that may follow the required ones
	optional int
	json     bool // takes --json: its result can be printed as JSON
	bare     bool // takes no settings: it reads no database and serves nothing
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
	syncCmd, runsCmd, activityCmd, statusCmd, usersCmd, rekeyCmd, migrateCmd,
	opskeyCreateCmd, opskeyListCmd, opskeyRevokeCmd,
	completionCmd, versionCmd,
}

// Exit codes, as help and the README list them; sync adds exitHeld and
// exitThrottled.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const exitCodesHelp = `exit codes:
  0  success
  1  failure: the message on stderr says what failed and what to do
  2  usage error: an unknown command, subcommand or flag, or a missing argument
  3  sync: the run is held, deprovisions over the tenant's threshold wait for --confirm-deletions
  4  sync: Microsoft Graph throttled the run; try again after the time the message gives
`

// helpWidth is the widest line help prints.
const helpWidth = 100

// Main runs entrasync with args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		printUsage(stdout)
		return exitOK
	}
	if args[0] == "help" {
		return help(e, args[1:])
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = append([]string{"version"}, args[1:]...)
	}
	c, rest, err := resolve(args)
	if errors.Is(err, flag.ErrHelp) {
		printGroupHelp(stdout, args[0])
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "entrasync: %v\n", err)
		return exitUsage
	}
	inv, err := parse(c, rest, getenv)
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stdout, c)
		return exitOK
	}
	if err == nil {
		warnUnknownEnv(e, inv.cfg, rest)
		err = c.run(e, inv)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "entrasync %s: %v\n", c.name, err)
	var xe *exitError
	if errors.As(err, &xe) {
		return xe.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprint(stderr, hang("usage: entrasync "+c.name+" "+c.args, "    "))
		fmt.Fprintf(stderr, "Run \"entrasync %s -h\" for its flags and settings.\n", c.name)
		return exitUsage
	}
	return exitFailure
}

// resolve finds the command args name: one word, or a group and its
// subcommand. It fails with flag.ErrHelp for "GROUP -h".
func resolve(args []string) (*command, []string, error) {
	name := args[0]
	if c := find(name); c != nil {
		return c, args[1:], nil
	}
	subs := subcommands(name)
	if subs == nil {
		return nil, nil, unknownCommand(name)
	}
	if len(args) < 2 || strings.HasPrefix(args[1], "-") {
		if len(args) >= 2 && isHelpFlag(args[1]) {
			return nil, nil, flag.ErrHelp
		}
		return nil, nil, fmt.Errorf("%s needs a subcommand: %s", name, strings.Join(subs, ", "))
	}
	if c := find(name + " " + args[1]); c != nil {
		return c, args[2:], nil
	}
	msg := fmt.Sprintf("%q is not a subcommand of %s; its subcommands: %s", args[1], name, strings.Join(subs, ", "))
	if near := config.Nearest(args[1], subs); near != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", name+" "+near)
	}
	return nil, nil, errors.New(msg)
}

func unknownCommand(name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if near := config.Nearest(name, topWords()); near != "" {
		msg += fmt.Sprintf("; did you mean %q?", near)
	}
	return errors.New(msg + ` Run "entrasync help" for the list.`)
}

func isHelpFlag(s string) bool { return s == "-h" || s == "--help" || s == "-help" }

func find(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// subcommands lists a group's subcommands (nil when group is none).
func subcommands(group string) []string {
	var names []string
	for _, c := range commands {
		if first, rest, ok := strings.Cut(c.name, " "); ok && first == group {
			names = append(names, rest)
		}
	}
	return names
}

// topWords are the words a command line may start with.
func topWords() []string {
	words := []string{"help"}
	for _, c := range commands {
		first, _, _ := strings.Cut(c.name, " ")
		if !slices.Contains(words, first) {
			words = append(words, first)
		}
	}
	return words
}

// help answers "entrasync help [COMMAND...]".
func help(e *env, args []string) int {
	if len(args) == 0 {
		printUsage(e.stdout)
		return exitOK
	}
	if subcommands(args[0]) != nil && len(args) == 1 {
		printGroupHelp(e.stdout, args[0])
		return exitOK
	}
	c, _, err := resolve(args)
	if err != nil {
		fmt.Fprintf(e.stderr, "entrasync help: %v\n", err)
		return exitUsage
	}
	printHelp(e.stdout, c)
	return exitOK
}

// newFlagSet makes a command's flags: its own, --json when it takes it,
// and, unless it is bare, --config and a flag per setting.
func newFlagSet(c *command, inv *invocation) (*flag.FlagSet, *config.Flags) {
	fs := flag.NewFlagSet("entrasync "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are printed by Main
	fs.Usage = func() {}
	var settings *config.Flags
	if !c.bare {
		settings = config.Register(fs)
	}
	if c.json {
		fs.BoolVar(&inv.json, "json", false, "print the result as JSON")
	}
	if c.flags != nil {
		inv.flags = c.flags(fs)
	}
	return fs, settings
}

// parse reads flags wherever they stand among the arguments.
func parse(c *command, args []string, getenv func(string) string) (*invocation, error) {
	inv := &invocation{}
	fs, settings := newFlagSet(c, inv)
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, flagError(fs, err)
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
	if n := len(inv.args); n < c.nargs || n > c.nargs+c.optional {
		if c.optional > 0 {
			return nil, usagef("want %d to %d argument(s), got %d", c.nargs, c.nargs+c.optional, n)
		}
		return nil, usagef("want %d argument(s), got %d", c.nargs, n)
	}
	if settings == nil {
		inv.cfg = config.Default()
		return inv, nil
	}
	cfg, err := settings.Load(getenv)
	if err != nil {
		return nil, err
	}
	inv.cfg = cfg
	return inv, nil
}

// flagError is a flag package error, with the flag meant when an unknown
// one is a slip of the keyboard.
func flagError(fs *flag.FlagSet, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: ")
	if !ok {
		return usagef("%v", err)
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if near := config.Nearest(strings.TrimLeft(name, "-"), names); near != "" {
		return usagef("%v; did you mean --%s?", err, near)
	}
	return usagef("%v", err)
}

// warnUnknownEnv warns about ENTRASYNC_ variables that are no setting,
// most likely a misspelt one. Variables the command line names (as
// --client-secret-env does) are the user's own.
func warnUnknownEnv(e *env, cfg config.Config, args []string) {
	var names []string
	for _, kv := range processEnviron() {
		name, _, _ := strings.Cut(kv, "=")
		if e.getenv(name) != "" && !slices.Contains(args, name) {
			names = append(names, name)
		}
	}
	unknown := config.UnknownEnv(names)
	if len(unknown) == 0 {
		return
	}
	log := newLogger(e.stderr, cfg)
	for _, msg := range unknown {
		log.Warn(msg)
	}
}

// processEnviron lists the environment; only variables getenv also sees
// are looked at, so a test's getenv decides.
var processEnviron = os.Environ

// shortArgs is a command's arguments as the command list shows them: its
// leading upper-case names, or the whole when it is short.
func shortArgs(c *command) string {
	if len(c.args) <= 20 {
		return c.args
	}
	var out []string
	for _, w := range strings.Fields(c.args) {
		if w != strings.ToUpper(w) || strings.HasPrefix(w, "-") || strings.ContainsAny(w, "[(|") {
			break
		}
		out = append(out, w)
	}
	return strings.Join(append(out, "[flags]"), " ")
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `entrasync keeps your customers' workforce (Microsoft Entra ID users and groups)
current on your platform: a SCIM 2.0 endpoint Entra pushes into, and a worker
that pulls changes from Microsoft Graph.

usage: entrasync <command> [arguments] [flags]

commands:
`)
	col := 0
	for _, c := range commands {
		col = max(col, len(c.name)+1+len(shortArgs(c)))
	}
	col += 4
	for _, c := range commands {
		left := "  " + strings.TrimSpace(c.name+" "+shortArgs(c))
		fmt.Fprint(w, wrapLines(c.summary, left+strings.Repeat(" ", col-len(left)), strings.Repeat(" ", col)))
	}
	fmt.Fprint(w, wrapLines("show this, or a command's flags and settings",
		"  help [COMMAND]"+strings.Repeat(" ", col-len("  help [COMMAND]")), strings.Repeat(" ", col)))
	fmt.Fprintf(w, `
Every command takes --config FILE, --db PATH and the other settings as flags
(or ENTRASYNC_<NAME> environment variables, or a settings file);
"entrasync <command> -h" lists a command's flags, then the settings with their defaults.

%s`, exitCodesHelp)
}

// printGroupHelp lists a group's subcommands.
func printGroupHelp(w io.Writer, group string) {
	fmt.Fprintf(w, "usage: entrasync %s <subcommand> [arguments] [flags]\n\nsubcommands:\n", group)
	for _, c := range commands {
		if first, rest, ok := strings.Cut(c.name, " "); ok && first == group {
			fmt.Fprintf(w, "  %s\n", strings.TrimSpace(rest+" "+shortArgs(c)))
			fmt.Fprint(w, wrap(c.summary, "      "))
		}
	}
	fmt.Fprintf(w, "\nRun \"entrasync %s <subcommand> -h\" for its flags and settings.\n", group)
}

// printHelp shows a command: usage, what it does, its own flags, then the
// settings with their environment variables and defaults.
func printHelp(w io.Writer, c *command) {
	inv := &invocation{}
	fs, _ := newFlagSet(c, inv)
	fmt.Fprint(w, hang("usage: entrasync "+c.name+" "+c.args, "    "))
	fmt.Fprintln(w)
	fmt.Fprint(w, wrap(strings.ToUpper(c.summary[:1])+c.summary[1:]+".", ""))
	fmt.Fprintln(w, "\nflags:")
	fs.VisitAll(func(f *flag.Flag) {
		if config.IsFlag(f.Name) {
			return
		}
		printFlag(w, f, "", "")
	})
	fmt.Fprintln(w, "  -h, --help")
	fmt.Fprint(w, wrap("show this help", "      "))
	if c.name == "sync" {
		fmt.Fprintln(w)
		fmt.Fprint(w, exitCodesHelp)
	}
	if c.bare {
		return
	}
	fmt.Fprintln(w, "\nsettings (a flag wins over its environment variable, which wins over the settings file):")
	printFlag(w, fs.Lookup("config"), "ENTRASYNC_CONFIG", "")
	for _, s := range config.Settings() {
		if s.Flag == "" {
			fmt.Fprintf(w, "  %s (environment or settings file only)\n", s.Env)
			fmt.Fprint(w, wrap(s.Usage, "      "))
			continue
		}
		printFlag(w, fs.Lookup(s.Flag[2:]), s.Env, s.Default)
	}
}

func printFlag(w io.Writer, f *flag.Flag, envName, def string) {
	value, usage := flag.UnquoteUsage(f)
	if i := strings.Index(usage, " (env ENTRASYNC_"); i >= 0 {
		usage = usage[:i] // the environment variable is shown on the flag's line
	}
	if value == "string" || value == "value" {
		value = placeholder(f.Name)
	}
	line := "  --" + f.Name
	if value != "" {
		line += " " + value
	}
	if envName != "" {
		line += ", " + envName
	}
	fmt.Fprintln(w, line)
	if def == "" && envName == "" && f.DefValue != "" && f.DefValue != "false" {
		def = f.DefValue
	}
	if def != "" {
		usage += " (default " + def + ")"
	}
	fmt.Fprint(w, wrap(usage, "      "))
}

// placeholder names a flag's value in help.
func placeholder(flagName string) string {
	switch flagName {
	case "addr":
		return "HOST:PORT"
	case "config", "db", "tls-cert", "tls-key", "certificate", "client-secret-file", "old-key-file":
		return "FILE"
	case "public-url", "redis", "authority-host", "graph-url":
		return "URL"
	case "log-format":
		return "text|json"
	case "log-level":
		return "LEVEL"
	case "body-limit":
		return "SIZE"
	case "rate-limit", "sync-workers":
		return "N"
	case "sync-schedule", "schedule":
		return "SPEC"
	case "sync-jitter", "run-lock-ttl":
		return "DURATION"
	case "client-secret-env", "old-key-env":
		return "VAR"
	case "tenant-id", "client-id", "group", "after":
		return "ID"
	case "search":
		return "PREFIX"
	case "active":
		return "true|false"
	case "groups":
		return "ID,ID"
	case "threshold":
		return "PCT%|N"
	case "role":
		return "read|sync|admin"
	case "tenant":
		return "TENANT"
	case "deprovision":
		return "deactivate|delete"
	case "cloud":
		return "global|usgov|china"
	}
	return "VALUE"
}

// wrap breaks text into lines of at most helpWidth columns, each
// indented by indent; a word longer than a line stands alone.
func wrap(text, indent string) string { return wrapLines(text, indent, indent) }

// hang is wrap with only the lines after the first indented.
func hang(text, indent string) string { return wrapLines(text, "", indent) }

// wrapLines breaks text into lines of at most helpWidth columns, the first
// starting with first and the others with rest.
func wrapLines(text, first, rest string) string {
	var b strings.Builder
	line, start := first, len(first)
	for _, word := range strings.Fields(text) {
		if len(line) > start && len(line)+1+len(word) > helpWidth {
			b.WriteString(line + "\n")
			line, start = rest, len(rest)
		}
		if len(line) > start {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
	return b.String()
}

// openStore opens the configured database, bringing its schema up to date.
func openStore(e *env, cfg config.Config) (*store.DB, error) { return openStoreWith(e, cfg, false) }

// openStoreWith is openStore; with noMigrate an old schema fails the open
// instead (serve --no-migrate).
func openStoreWith(e *env, cfg config.Config, noMigrate bool) (*store.DB, error) {
	db, err := store.OpenWith(e.ctx, cfg.DB, store.Options{WriteWait: cfg.WriteWait, NoMigrate: noMigrate, MaxConns: cfg.DBMaxConns})
	if err != nil {
		return nil, fmt.Errorf("%v (setting db, flag --db)", err)
	}
	return db, nil
}

// openReadOnly opens the configured database for a command that only
// reads: a missing file is not created, nothing is migrated or written,
// and a running server's write lock is no obstacle.
func openReadOnly(e *env, cfg config.Config) (*store.DB, error) {
	db, err := store.OpenReadOnly(e.ctx, cfg.DB)
	switch {
	case store.ErrorCode(err) == store.NotFound:
		return nil, fmt.Errorf("no database at %s: check the db setting (--db, ENTRASYNC_DB), "+
			"or make it: `entrasync serve` or `entrasync tenant create NAME` creates it", cfg.DB)
	case err != nil:
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
