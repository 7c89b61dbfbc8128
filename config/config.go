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
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
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

	Redis        string        // redis: redis:// URL for delta tokens and run locks; empty keeps both in the store
	SecretKey    []byte        // secret_key: 32-byte key that encrypts Graph client secrets (base64)
	SyncSchedule string        // sync_schedule: default cron spec of a tenant's pull
	SyncWorkers  int           // sync_workers: tenants pulled at once
	SyncJitter   time.Duration // sync_jitter: largest random delay before a scheduled pull
	WriteWait    time.Duration // write_wait: longest wait for the database writer before a write answers 503
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
	{"db", "SQLite database file (made with its schema on first start)", func(c *Config, v string) error {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("want a file path such as ./entrasync.db")
		}
		c.DB = v
		return nil
	}, func(c *Config) string { return c.DB }},
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
		SyncSchedule: "@every 40m",
		SyncWorkers:  4,
		SyncJitter:   2 * time.Minute,
		WriteWait:    5 * time.Second,
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
	f.config = fs.String("config", "", "settings file (JSON object of settings); also ENTRASYNC_CONFIG")
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
	return c, nil
}

// Public is the public URL: public_url when set, else http:// and the
// address the server listens on (listen, when known, else addr).
func (c Config) Public(listen string) string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	if listen == "" {
		listen = c.Addr
	}
	return "http://" + publicHost(listen)
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
	if name == "redis" {
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
			return fmt.Errorf("config: %s: unknown setting %q; known settings: %s", path, k, strings.Join(Names(), ", "))
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
		default:
			return fmt.Errorf("config: %s: %s: want a string or a number", path, k)
		}
		if err := s.set(c, text); err != nil {
			return fmt.Errorf("config: %s: %s=%q: %v", path, k, shown(k, text), err)
		}
	}
	return nil
}

// Names lists every setting's name.
func Names() []string {
	out := make([]string, len(settings))
	for i, s := range settings {
		out[i] = s.name
	}
	return out
}

// parseSize reads 1048576, 1024KiB, 1MiB, 1KB, 1MB (KB and MB as 1024 too).
func parseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	mult := int64(1)
	lower := strings.ToLower(v)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"k", 1 << 10}, {"m", 1 << 20}, {"b", 1}} {
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
	return n * mult, nil
}
