package config

import (
	"flag"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, file string, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f := Register(fs)
	if file != "" {
		path := filepath.Join(t.TempDir(), "cfg.json")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f.Load(func(k string) string { return env[k] })
}

func TestDefaults(t *testing.T) {
	c, err := load(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DB != "./entrasync.db" || c.BodyLimit != 1<<20 || c.LogFormat != "text" ||
		c.Public("") != "http://127.0.0.1:8080" || c.SyncSchedule != "@every 40m" || c.SecretKey != nil || c.RunLockTTL != 45*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	if got := c.Public("[::]:9000"); got != "http://localhost:9000" {
		t.Fatalf("Public of an unspecified address: %s", got)
	}
}

func TestPrecedence(t *testing.T) {
	file := `{"addr":"127.0.0.1:1","db":"file.db","body_limit":"2MiB","log_level":"warn","rate_limit":5}`
	env := map[string]string{"ENTRASYNC_DB": "env.db", "ENTRASYNC_LOG_LEVEL": "error",
		"ENTRASYNC_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
	c, err := load(t, file, env, "--log-level", "debug", "--public-url", "https://scim.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:1" || c.DB != "env.db" || c.LogLevel != "debug" || c.BodyLimit != 2<<20 || c.RateLimit != 5 ||
		c.Public("x") != "https://scim.example.com" || len(c.SecretKey) != 32 {
		t.Fatalf("precedence: %+v", c)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		file string
		env  map[string]string
		args []string
		want string
	}{
		{args: []string{"--addr", "8080"}, want: `--addr="8080": want host:port`},
		{args: []string{"--body-limit", "100GiB"}, want: "--body-limit"},
		{args: []string{"--sync-schedule", "every day"}, want: "want a cron spec"},
		{args: []string{"--redis", "http://x"}, want: "want a redis://"},
		{args: []string{"--run-lock-ttl", "1s"}, want: "want a duration from 3s to 1h"},
		{env: map[string]string{"ENTRASYNC_RUN_LOCK_TTL": "forever"}, want: "ENTRASYNC_RUN_LOCK_TTL"},
		{env: map[string]string{"ENTRASYNC_SECRET_KEY": "short"}, want: `ENTRASYNC_SECRET_KEY="…": want 32 random bytes`},
		{env: map[string]string{"ENTRASYNC_RATE_LIMIT": "-1"}, want: "ENTRASYNC_RATE_LIMIT"},
		{file: `{"adr":"x"}`, want: `unknown setting "adr"`},
		{file: `{"addr":{"host":"x"}}`, want: "want a string, a number or true/false"},
		{file: `{"addr":true}`, want: "want host:port"},
		{file: `{"metrics_tenant_label":"sometimes"}`, want: "metrics_tenant_label=\"sometimes\": want true or false"},
		{args: []string{"--metrics-addr", "9090"}, want: `--metrics-addr="9090": want host:port`},
		{file: `not json`, want: "want a JSON object of settings"},
	}
	for _, tc := range tests {
		_, err := load(t, tc.file, tc.env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v %s: got %v, want %q", tc.args, tc.env, tc.file, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "short") {
			t.Errorf("an error shows the secret key: %v", err)
		}
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "1MiB": 1 << 20, "512KiB": 512 << 10, "2mb": 2 << 20, "4k": 4 << 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v", in, got, err)
		}
	}
}

func TestTLSPair(t *testing.T) {
	if _, err := load(t, "", nil, "--tls-cert", "c.pem"); err == nil || !strings.Contains(err.Error(), "tls_cert and tls_key go together") {
		t.Fatalf("cert without key: %v", err)
	}
	c, err := load(t, "", map[string]string{"ENTRASYNC_TLS_CERT": "c.pem", "ENTRASYNC_TLS_KEY": "k.pem"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Public("") != "https://127.0.0.1:8080" || c.Public("[::]:8443") != "https://localhost:8443" {
		t.Fatalf("Public with TLS: %s", c.Public(""))
	}
}

func TestUnknownEnv(t *testing.T) {
	got := UnknownEnv([]string{"PATH", "ENTRASYNC_PUBLC_URL", "ENTRASYNC_DB", "ENTRASYNC_CONFIG", "ENTRASYNC_TEST_REDIS_URL",
		"ENTRASYNC_PROPERTY_SEEDS", "ENTRASYNC_WHATEVER_ELSE"})
	want := []string{
		"ENTRASYNC_PUBLC_URL is not a setting and is ignored; did you mean ENTRASYNC_PUBLIC_URL?",
		"ENTRASYNC_WHATEVER_ELSE is not a setting and is ignored",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("UnknownEnv:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSettingsDescribed(t *testing.T) {
	for _, s := range Settings() {
		if s.Name == "body_limit" && s.Default != "1048576" || s.Name == "addr" && (s.Default != "127.0.0.1:8080" || s.Flag != "--addr") {
			t.Errorf("%+v", s)
		}
		if s.Name == "secret_key" && (s.Flag != "" || IsFlag("secret-key")) {
			t.Errorf("secret_key has a flag: %+v", s)
		}
		if s.Flag != "" && !IsFlag(s.Flag[2:]) {
			t.Errorf("IsFlag(%s) is false", s.Flag)
		}
	}
	if IsFlag("json") || !IsFlag("config") {
		t.Error("IsFlag")
	}
	if Nearest("sevre", []string{"serve", "demo"}) != "serve" || Nearest("frobnicate", []string{"serve", "tenant"}) != "" {
		t.Error("Nearest")
	}
}

func TestTrustedProxies(t *testing.T) {
	c, err := load(t, `{"trusted_proxies":["10.0.0.0/8","192.0.2.1"]}`, nil)
	if err != nil || len(c.TrustedProxies) != 2 || c.TrustedProxies[1].String() != "192.0.2.1/32" {
		t.Fatalf("from a file list: %v %v", c.TrustedProxies, err)
	}
	c, err = load(t, "", map[string]string{"ENTRASYNC_TRUSTED_PROXIES": "10.0.0.1/8, fd00::/8"})
	if err != nil || len(c.TrustedProxies) != 2 || c.TrustedProxies[0].String() != "10.0.0.0/8" || lookup("trusted_proxies").get(&c) != "10.0.0.0/8,fd00::/8" {
		t.Fatalf("from the environment: %v %v", c.TrustedProxies, err)
	}
	if c, _ := load(t, "", nil); len(c.TrustedProxies) != 0 {
		t.Fatalf("default: %v", c.TrustedProxies)
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example.com", "10.0.0.0/8,x"} {
		if _, err := load(t, "", nil, "--trusted-proxies", bad); err == nil || !strings.Contains(err.Error(), "--trusted-proxies") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := load(t, `{"trusted_proxies":["10.0.0.0/8",1]}`, nil); err == nil || !strings.Contains(err.Error(), "list of strings") {
		t.Errorf("a list with a number: %v", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	c, _ := load(t, "", nil)
	if c.MemoryLimit != 512<<20 || lookup("memory_limit").get(&c) != "512MiB" {
		t.Fatalf("default %d", c.MemoryLimit)
	}
	for in, want := range map[string]int64{"2GiB": 2 << 30, "768MiB": 768 << 20, "off": 0, "OFF": 0, "0": 0, "1g": 1 << 30} {
		c, err := load(t, "", map[string]string{"ENTRASYNC_MEMORY_LIMIT": in})
		if err != nil || c.MemoryLimit != want {
			t.Errorf("%q: %d, %v", in, c.MemoryLimit, err)
		}
	}
	for _, bad := range []string{"512", "1KiB", "lots", "-1GiB", "99999999999GiB"} {
		if _, err := load(t, "", nil, "--memory-limit", bad); err == nil || !strings.Contains(err.Error(), "at least 32MiB") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// Applied: the runtime's limit is the setting's, or the environment's.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	c.MemoryLimit = 300 << 20
	if got := c.ApplyMemoryLimit(func(string) string { return "" }); got != "300MiB" || debug.SetMemoryLimit(-1) != 300<<20 {
		t.Fatalf("applied %q, runtime limit %d", got, debug.SetMemoryLimit(-1))
	}
	c.MemoryLimit = 0
	if got := c.ApplyMemoryLimit(func(string) string { return "" }); got != "off" || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("off: %q, runtime limit %d", got, debug.SetMemoryLimit(-1))
	}
	c.MemoryLimit = 300 << 20
	env := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "1GiB"
		}
		return ""
	}
	if got := c.ApplyMemoryLimit(env); got != "GOMEMLIMIT=1GiB" || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("with GOMEMLIMIT set: %q, and the setting was applied: %d", got, debug.SetMemoryLimit(-1))
	}
}

func TestDBMaxConns(t *testing.T) {
	if c, err := load(t, "", nil); err != nil || c.DBMaxConns != 16 {
		t.Fatalf("default db_max_conns: %d, %v", c.DBMaxConns, err)
	}
	c, err := load(t, `{"db_max_conns":40}`, map[string]string{"ENTRASYNC_DB_MAX_CONNS": "4"})
	if err != nil || c.DBMaxConns != 4 {
		t.Fatalf("ENTRASYNC_DB_MAX_CONNS=4 over the file's 40: %d, %v", c.DBMaxConns, err)
	}
	if c, err := load(t, `{"db_max_conns":40}`, nil); err != nil || c.DBMaxConns != 40 {
		t.Fatalf("file db_max_conns 40: %d, %v", c.DBMaxConns, err)
	}
	if c, err := load(t, "", nil, "--db-max-conns", "1000"); err != nil || c.DBMaxConns != 1000 {
		t.Fatalf("--db-max-conns 1000: %d, %v", c.DBMaxConns, err)
	}
	for _, bad := range []string{"1", "1001", "0", "-3", "ten", "2.5"} {
		_, err := load(t, "", nil, "--db-max-conns", bad)
		if err == nil || !strings.Contains(err.Error(), "--db-max-conns") || !strings.Contains(err.Error(), "from 2 to 1000") {
			t.Errorf("--db-max-conns %s: %v", bad, err)
		}
	}
}

func TestMetricsSettings(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		env   map[string]string
		args  []string
		label bool
		addr  string
	}{
		{name: "defaults: no label, no open listener"},
		{name: "file, JSON true", file: `{"metrics_tenant_label":true,"metrics_addr":"10.0.0.5:9090"}`, label: true, addr: "10.0.0.5:9090"},
		{name: "environment", env: map[string]string{"ENTRASYNC_METRICS_TENANT_LABEL": "true", "ENTRASYNC_METRICS_ADDR": ":9090"}, label: true, addr: ":9090"},
		{name: "flag wins over the file", file: `{"metrics_tenant_label":true}`, args: []string{"--metrics-tenant-label=false"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.file, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if c.MetricsTenantLabel != tc.label || c.MetricsAddr != tc.addr {
				t.Fatalf("got label %v addr %q, want %v %q", c.MetricsTenantLabel, c.MetricsAddr, tc.label, tc.addr)
			}
		})
	}
}
