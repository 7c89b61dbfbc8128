// Package config reads entrasync's settings from, in rising precedence,
// built-in defaults, a JSON file (--config or ENTRASYNC_CONFIG), environment
// variables ENTRASYNC_<NAME> and command-line flags, and validates them
// once at start with errors that name the setting, where it came from and
// what is expected.
package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/entrasync/entrasync/scim/schema"
)

// Config is the service's settings.
type Config struct {
	Addr      string  // addr: listen address, host:port
	DB        string  // db: SQLite file path
	PublicURL string  // public_url: where clients reach this server (Tenant URLs, Location); see Public
	LogFormat string  // log_format: text or json
	LogLevel  string  // log_level: debug, info, warn or error
	BodyLimit int64   // body_limit: largest request body in bytes
	RateLimit float64 // rate_limit: SCIM requests per second per tenant; 0 is unlimited

	MaxValues       int            // max_values: elements per multi-valued attribute (group members excepted)
	MaxValueLength  int            // max_value_length: bytes per string value
	MaxDocumentSize int            // max_document_size: bytes of a stored resource as JSON (group members excepted)
	TrustedProxies  []netip.Prefix // trusted_proxies: peers whose Forwarded / X-Forwarded-For are believed
	MemoryLimit     int64          // memory_limit: the Go runtime's soft memory limit in bytes; 0 is off

	Redis        string        // redis: redis:// URL for delta tokens and run locks; empty keeps both in the store
	SecretKey    []byte        // secret_key: 32-byte key that encrypts Graph client secrets (base64)
	SyncSchedule string        // sync_schedule: default cron spec of a tenant's pull
	SyncWorkers  int           // sync_workers: tenants pulled at once
	SyncJitter   time.Duration // sync_jitter: largest random delay before a scheduled pull
	RunLockTTL   time.Duration // run_lock_ttl: how long a tenant's run lock outlives a node that died holding it

	ActivityRetention time.Duration // activity_retention: how long provisioning activity records are kept

	TLSCert    string        // tls_cert: PEM certificate chain file; with tls_key, serve HTTPS
	TLSKey     string        // tls_key: PEM private key file of tls_cert
	WriteWait  time.Duration // write_wait: longest wait for the database writer before a write answers 503
	DBMaxConns int           // db_max_conns: most PostgreSQL connections of this node (write and read pools together)
}

// setting describes one key: its name, help and how to parse it.
type setting struct {
	name  string
	usage string
	set   func(c *Config, v string) error
	get   func(c *Config) string
}

var settings = []setting{
	{"addr", "listen address, host:port", func(c *Config, v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("want host:port such as 127.0.0.1:8080 or :8080")
		}
		c.Addr = v
		return nil
	}, func(c *Config) string { return c.Addr }},
	{"db", "SQLite file or postgres:// URL (schema made on first start)", func(c *Config, v string) error {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("want a file path such as ./entrasync.db, or a postgres:// URL")
		}
		c.DB = v
		return nil
	}, func(c *Config) string { return redact(c.DB) }},
	// The floor is one writer and one reader; the ceiling only catches a
	// slip, as PostgreSQL's max_connections is the real bound.
	{"db_max_conns", "most PostgreSQL connections this node opens, split between writes and reads (2 to 1000; SQLite: ignored)", func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 2 || n > 1000 {
			return fmt.Errorf("want a whole number from 2 to 1000, such as 16")
		}
		c.DBMaxConns = n
		return nil
	}, func(c *Config) string { return strconv.Itoa(c.DBMaxConns) }},
	{"public_url", "URL clients reach this server at (default http://<addr>)", func(c *Config, v string) error {
		u, err := url.Parse(v)
		if v != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "") {
			return fmt.Errorf("want an absolute http(s) URL without query, such as https://scim.example.com")
		}
		c.PublicURL = strings.TrimRight(v, "/")
		return nil
	}, func(c *Config) string { return c.PublicURL }},
	{"log_format", "log format: text or json", func(c *Config, v string) error {
		if v != "text" && v != "json" {
			return fmt.Errorf("want text or json")
		}
		c.LogFormat = v
		return nil
	}, func(c *Config) string { return c.LogFormat }},
	{"log_level", "log level: debug, info, warn or error", func(c *Config, v string) error {
		switch v {
		case "debug", "info", "warn", "error":
			c.LogLevel = v
			return nil
		}
		return fmt.Errorf("want debug, info, warn or error")
	}, func(c *Config) string { return c.LogLevel }},
	{"body_limit", "largest request body: bytes, or with KiB/MiB (1KiB to 64MiB)", func(c *Config, v string) error {
		n, err := parseSize(v)
		if err != nil || n < 1<<10 || n > 64<<20 {
			return fmt.Errorf("want a size from 1KiB to 64MiB, such as 1MiB or 1048576")
		}
		c.BodyLimit = n
		return nil
	}, func(c *Config) string { return strconv.FormatInt(c.BodyLimit, 10) }},
	{"rate_limit", "SCIM requests per second per tenant (0: unlimited)", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return fmt.Errorf("want a number of requests per second, 0 or more")
		}
		c.RateLimit = f
		return nil
	}, func(c *Config) string { return strconv.FormatFloat(c.RateLimit, 'f', -1, 64) }},
	{"max_values", "most elements of a multi-valued attribute (group members: no limit)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			return fmt.Errorf("want a whole number from 1 to 100000")
		}
		c.MaxValues = n
		return nil
	}, func(c *Config) string { return strconv.Itoa(c.MaxValues) }},
	// The ceiling is store.MaxIndexedValue: every value stored must be
	// findable by a filter.
	{"max_value_length", "longest string value: bytes or KiB (256 to 64KiB)", func(c *Config, v string) error {
		n, err := parseSize(v)
		if err != nil || n < 256 || n > 64<<10 {
			return fmt.Errorf("want a size from 256 to 64KiB, such as 4KiB or 4096")
		}
		c.MaxValueLength = int(n)
		return nil
	}, func(c *Config) string { return strconv.Itoa(c.MaxValueLength) }},
	{"max_document_size", "largest stored resource as JSON, members not counted (1KiB to 64MiB)", func(c *Config, v string) error {
		n, err := parseSize(v)
		if err != nil || n < 1<<10 || n > 64<<20 {
			return fmt.Errorf("want a size from 1KiB to 64MiB, such as 64KiB or 65536")
		}
		c.MaxDocumentSize = int(n)
		return nil
	}, func(c *Config) string { return strconv.Itoa(c.MaxDocumentSize) }},
	{"trusted_proxies", "reverse proxies (CIDRs or addresses, comma-separated) whose Forwarded and X-Forwarded-For headers name the client", func(c *Config, v string) error {
		p, err := ParseProxies(v)
		if err != nil {
			return err
		}
		c.TrustedProxies = p
		return nil
	}, func(c *Config) string {
		list := make([]string, len(c.TrustedProxies))
		for i, p := range c.TrustedProxies {
			list[i] = p.String()
		}
		return strings.Join(list, ",")
	}},
	{"memory_limit", "soft memory limit of serve and demo (GOMEMLIMIT semantics), e.g. 512MiB or 2GiB; off or 0: none; the GOMEMLIMIT environment variable wins", func(c *Config, v string) error {
		if strings.EqualFold(strings.TrimSpace(v), "off") || strings.TrimSpace(v) == "0" {
			c.MemoryLimit = 0
			return nil
		}
		n, err := parseSize(v)
		if err != nil || n < minMemoryLimit {
			return fmt.Errorf("want a size of at least 32MiB, such as 512MiB or 2GiB, or off")
		}
		c.MemoryLimit = n
		return nil
	}, func(c *Config) string { return formatSize(c.MemoryLimit) }},
	{"write_wait", "longest a write waits for the database writer (this process's or another's lock) before it answers 503, e.g. 5s", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Millisecond || d > 10*time.Minute {
			return fmt.Errorf("want a duration from 10ms to 10m, such as 5s")
		}
		c.WriteWait = d
		return nil
	}, func(c *Config) string { return c.WriteWait.String() }},
	{"redis", "Redis URL for delta tokens and run locks, e.g. redis://127.0.0.1:6379/0 (empty: keep them in the database)", func(c *Config, v string) error {
		if v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
				return fmt.Errorf("want a redis:// or rediss:// URL such as redis://127.0.0.1:6379/0")
			}
		}
		c.Redis = v
		return nil
	}, func(c *Config) string { return redact(c.Redis) }},
	{"secret_key", "32-byte key, base64, that encrypts Graph client secrets (openssl rand -base64 32)", func(c *Config, v string) error {
		if v == "" {
			c.SecretKey = nil
			return nil
		}
		k, err := ParseSecretKey(v)
		if err != nil {
			return err
		}
		c.SecretKey = k
		return nil
	}, func(c *Config) string {
		if c.SecretKey == nil {
			return ""
		}
		return "(set)"
	}},
	{"sync_schedule", "default schedule of a tenant's Graph pull: a cron spec or @every duration", func(c *Config, v string) error {
		if _, err := cron.ParseStandard(v); err != nil {
			return fmt.Errorf("want a cron spec such as \"*/40 * * * *\" or \"@every 40m\": %v", err)
		}
		c.SyncSchedule = v
		return nil
	}, func(c *Config) string { return c.SyncSchedule }},
	{"sync_workers", "tenants pulled from Graph at once", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 256 {
			return fmt.Errorf("want a whole number from 1 to 256")
		}
		c.SyncWorkers = n
		return nil
	}, func(c *Config) string { return strconv.Itoa(c.SyncWorkers) }},
	{"sync_jitter", "largest random delay added to each scheduled pull, e.g. 2m", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("want a duration such as 2m or 0s")
		}
		c.SyncJitter = d
		return nil
	}, func(c *Config) string { return c.SyncJitter.String() }},
	{"run_lock_ttl", "how long a tenant's run lock outlives a node that died holding it (renewed every third of it while the run goes), e.g. 45s", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		// Under 3s a renewal (given a third of it) could miss on a busy
		// node and stop a healthy run; past an hour a dead node's tenant
		// waits too long.
		if err != nil || d < 3*time.Second || d > time.Hour {
			return fmt.Errorf("want a duration from 3s to 1h, such as 45s")
		}
		c.RunLockTTL = d
		return nil
	}, func(c *Config) string { return c.RunLockTTL.String() }},
	{"activity_retention", "how long provisioning activity (each SCIM request, each change a pull made) is kept, e.g. 30d or 72h", func(c *Config, v string) error {
		d, err := parseDays(v)
		if err != nil || d < time.Hour || d > 3660*24*time.Hour {
			return fmt.Errorf("want a duration from 1h to 3660d, such as 30d or 72h")
		}
		c.ActivityRetention = d
		return nil
	}, func(c *Config) string { return formatDays(c.ActivityRetention) }},
	{"tls_cert", "PEM certificate (chain) file: with tls_key, serve HTTPS; re-read when it changes", func(c *Config, v string) error {
		c.TLSCert = v
		return nil
	}, func(c *Config) string { return c.TLSCert }},
	{"tls_key", "PEM private key file of tls_cert", func(c *Config, v string) error {
		c.TLSKey = v
		return nil
	}, func(c *Config) string { return c.TLSKey }},
}

// DefaultMemoryLimit is memory_limit's default: ample for serving (a group
// list holds at most a chunk of members per request) and for a pull, and
// a bound at which the garbage collector works harder before a container's
// hard limit kills the process.
const DefaultMemoryLimit = 512 << 20

// minMemoryLimit keeps a typo (512 for 512MiB) from making the collector
// run without pause.
const minMemoryLimit = 32 << 20

// ApplyMemoryLimit sets the Go runtime's soft memory limit
// (runtime/debug.SetMemoryLimit) from memory_limit, unless the GOMEMLIMIT
// environment variable is set: the runtime applied that at start, and it
// wins. It returns what is in force, for the start-up log.
func (c Config) ApplyMemoryLimit(getenv func(string) string) string {
	if v := getenv("GOMEMLIMIT"); v != "" {
		return "GOMEMLIMIT=" + v
	}
	if c.MemoryLimit <= 0 {
		debug.SetMemoryLimit(math.MaxInt64)
		return "off"
	}
	debug.SetMemoryLimit(c.MemoryLimit)
	return formatSize(c.MemoryLimit)
}

// ParseProxies reads the trusted_proxies setting: CIDRs or single
// addresses, separated by commas or spaces.
func ParseProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or fd00::/8, nor an IP address", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// ParseSecretKey reads a secret key as secret_key holds it: 32 bytes in
// base64.
func ParseSecretKey(v string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("want 32 random bytes in base64, as `openssl rand -base64 32` prints")
	}
	return k, nil
}

// Default returns the built-in settings.
func Default() Config {
	return Config{
		Addr:         "127.0.0.1:8080",
		DB:           "./entrasync.db",
		LogFormat:    "text",
		LogLevel:     "info",
		BodyLimit:    1 << 20,
		RateLimit:    100,
		MemoryLimit:  DefaultMemoryLimit,
		SyncSchedule: "@every 40m",
		SyncWorkers:  4,
		SyncJitter:   2 * time.Minute,
		RunLockTTL:   45 * time.Second,

		ActivityRetention: 30 * 24 * time.Hour,

		MaxValues:       schema.DefaultMaxValues,
		MaxValueLength:  schema.DefaultMaxValueLength,
		MaxDocumentSize: schema.DefaultMaxDocumentSize,
		WriteWait:       5 * time.Second,
		DBMaxConns:      16,
	}
}

func lookup(name string) *setting {
	for i := range settings {
		if settings[i].name == name {
			return &settings[i]
		}
	}
	return nil
}

// flagName is the command-line spelling of a setting: public_url -> public-url.
func flagName(name string) string { return strings.ReplaceAll(name, "_", "-") }

// EnvName is the environment spelling: public_url -> ENTRASYNC_PUBLIC_URL.
func EnvName(name string) string { return "ENTRASYNC_" + strings.ToUpper(name) }

// Flags holds a flag set's view of the settings, filled by fs.Parse.
type Flags struct {
	fs     *flag.FlagSet
	config *string
	values map[string]*string
}

// Register adds --config and a flag per setting to fs. secret_key has no
// flag: a key on a command line shows in process listings.
func Register(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs, values: map[string]*string{}}
	f.config = fs.String("config", "", "settings file: a JSON object of settings (env ENTRASYNC_CONFIG)")
	for _, s := range settings {
		if s.name == "secret_key" {
			continue
		}
		f.values[s.name] = fs.String(flagName(s.name), "", s.usage+" (env "+EnvName(s.name)+")")
	}
	return f
}

// Load builds the Config: defaults, then the file, the environment and the
// flags that were set. getenv is os.Getenv outside tests.
func (f *Flags) Load(getenv func(string) string) (Config, error) {
	c := Default()
	set := map[string]bool{}
	if f != nil {
		f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	}
	path := getenv("ENTRASYNC_CONFIG")
	if f != nil && set["config"] {
		path = *f.config
	}
	if path != "" {
		if err := loadFile(&c, path); err != nil {
			return Config{}, err
		}
	}
	for _, s := range settings {
		if v, ok := lookupEnv(getenv, EnvName(s.name)); ok {
			if err := s.set(&c, v); err != nil {
				return Config{}, fmt.Errorf("config: %s=%q: %v", EnvName(s.name), shown(s.name, v), err)
			}
		}
	}
	if f != nil {
		for name, v := range f.values {
			if set[flagName(name)] {
				if err := lookup(name).set(&c, *v); err != nil {
					return Config{}, fmt.Errorf("config: --%s=%q: %v", flagName(name), *v, err)
				}
			}
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return Config{}, fmt.Errorf("config: tls_cert and tls_key go together: give both (PEM files) to serve HTTPS, or neither")
	}
	return c, nil
}

// Public is the public URL: public_url when set, else the scheme served
// (https with tls_cert) and the address the server listens on (listen,
// when known, else addr).
func (c Config) Public(listen string) string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	if listen == "" {
		listen = c.Addr
	}
	scheme := "http://"
	if c.TLSCert != "" {
		scheme = "https://"
	}
	return scheme + publicHost(listen)
}

// ScimLimits are the document limits the SCIM endpoint enforces.
func (c Config) ScimLimits() schema.Limits {
	return schema.Limits{MaxValues: c.MaxValues, MaxValueLength: c.MaxValueLength, MaxDocumentSize: c.MaxDocumentSize}
}

func lookupEnv(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// shown hides secret values in error messages.
func shown(name, v string) string {
	if name == "secret_key" {
		return "…"
	}
	if name == "redis" || name == "db" { // URLs that may hold a password
		return redact(v)
	}
	return v
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = url.User("…")
	return u.String()
}

// publicHost turns a listen address into one a client can dial: an
// unspecified host becomes localhost.
func publicHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func loadFile(c *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: cannot read settings file: %v", err)
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("config: %s: want a JSON object of settings: %v", path, err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s := lookup(k)
		if s == nil {
			hint := ""
			if near := Nearest(k, Names()); near != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", near)
			}
			return fmt.Errorf("config: %s: unknown setting %q%s; known settings: %s", path, k, hint, strings.Join(Names(), ", "))
		}
		var v any
		if err := json.Unmarshal(raw[k], &v); err != nil {
			return fmt.Errorf("config: %s: %s: %v", path, k, err)
		}
		text := ""
		switch x := v.(type) {
		case string:
			text = x
		case float64:
			text = strconv.FormatFloat(x, 'f', -1, 64)
		case []any: // a list, such as trusted_proxies: its strings, comma-separated
			parts := make([]string, len(x))
			for i, el := range x {
				str, ok := el.(string)
				if !ok {
					return fmt.Errorf("config: %s: %s: want a list of strings", path, k)
				}
				parts[i] = str
			}
			text = strings.Join(parts, ",")
		default:
			return fmt.Errorf("config: %s: %s: want a string or a number", path, k)
		}
		if err := s.set(c, text); err != nil {
			return fmt.Errorf("config: %s: %s=%q: %v", path, k, shown(k, text), err)
		}
	}
	return nil
}

// Setting is one setting as help shows it.
type Setting struct {
	Name    string // as in the settings file: public_url
	Flag    string // --public-url; empty when it has none (secret_key)
	Env     string // ENTRASYNC_PUBLIC_URL
	Usage   string
	Default string // built-in default, as a flag would take it; empty when none
}

// Settings describes every setting, in the order help lists them.
func Settings() []Setting {
	d := Default()
	out := make([]Setting, len(settings))
	for i, s := range settings {
		out[i] = Setting{Name: s.name, Flag: "--" + flagName(s.name), Env: EnvName(s.name), Usage: s.usage, Default: s.get(&d)}
		if s.name == "secret_key" {
			out[i].Flag = ""
		}
	}
	return out
}

// IsFlag reports whether a flag name (without dashes) is a setting's or
// --config, rather than a command's own.
func IsFlag(name string) bool {
	if name == "config" {
		return true
	}
	for _, s := range settings {
		if s.name != "secret_key" && flagName(s.name) == name {
			return true
		}
	}
	return false
}

// UnknownEnv names the ENTRASYNC_ variables among names (an environment's
// variable names) that are no setting, each with the setting meant when
// one is close. The test suites' ENTRASYNC_TEST_* and
// ENTRASYNC_PROPERTY_SEEDS and ENTRASYNC_CONFIG are known.
func UnknownEnv(names []string) []string {
	var out []string
	known := map[string]bool{"ENTRASYNC_CONFIG": true, "ENTRASYNC_PROPERTY_SEEDS": true}
	var candidates []string
	for _, s := range settings {
		known[EnvName(s.name)] = true
		candidates = append(candidates, EnvName(s.name))
	}
	candidates = append(candidates, "ENTRASYNC_CONFIG")
	for _, n := range names {
		if !strings.HasPrefix(n, "ENTRASYNC_") || known[n] || strings.HasPrefix(n, "ENTRASYNC_TEST_") {
			continue
		}
		msg := n + " is not a setting and is ignored"
		if near := Nearest(n, candidates); near != "" {
			msg += "; did you mean " + near + "?"
		}
		out = append(out, msg)
	}
	sort.Strings(out)
	return out
}

// Nearest is the candidate closest to s in edit distance, when close enough
// to be a slip (a third of s's length, at most 3 edits); else "".
func Nearest(s string, candidates []string) string {
	best, bestD := "", 0
	limit := min(3, max(1, len(s)/3))
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d <= limit && (best == "" || d < bestD) {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Damerau–Levenshtein distance (with adjacent
// transpositions) between a and b, in bytes.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// Names lists every setting's name.
func Names() []string {
	out := make([]string, len(settings))
	for i, s := range settings {
		out[i] = s.name
	}
	return out
}

// parseSize reads 1048576, 1024KiB, 1MiB, 1GiB, 1KB, 1MB, 1GB (KB, MB and
// GB as powers of 1024 too).
func parseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	mult := int64(1)
	lower := strings.ToLower(v)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(lower, u.suffix) {
			mult = u.mult
			v = strings.TrimSpace(v[:len(v)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size out of range")
	}
	return n * mult, nil
}

// formatSize writes a size as parseSize reads it, in the largest whole unit;
// 0 is "off".
func formatSize(n int64) string {
	switch {
	case n <= 0:
		return "off"
	case n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

// parseDays is time.ParseDuration that also takes whole days, "30d".
func parseDays(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("not a number of days: %q", v)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

// formatDays writes whole days as "30d", other durations as Go does.
func formatDays(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}
