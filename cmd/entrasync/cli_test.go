package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHelpWidthAndOrder: every command's help goes to stdout, fits 100
// columns, and lists the command's own flags before the settings, with
// the settings' defaults.
func TestHelpWidthAndOrder(t *testing.T) {
	check := func(args []string) string {
		t.Helper()
		out, errOut, code := run(t, args...)
		if code != 0 || errOut != "" || out == "" {
			t.Fatalf("entrasync %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
		for i, line := range strings.Split(out, "\n") {
			if len(line) > helpWidth {
				t.Errorf("entrasync %s: line %d is %d columns: %q", strings.Join(args, " "), i+1, len(line), line)
			}
		}
		return out
	}
	check([]string{"help"})
	check([]string{"--help"})
	check(nil)
	for _, g := range groups() {
		if out := check([]string{g, "-h"}); !strings.Contains(out, "subcommands:") {
			t.Errorf("%s -h: %s", g, out)
		}
		check([]string{"help", g})
	}
	for _, c := range commands {
		args := append(strings.Fields(c.name), "-h")
		out := check(args)
		if again := check(append([]string{"help"}, strings.Fields(c.name)...)); again != out {
			t.Errorf("help %s differs from %s -h", c.name, c.name)
		}
		if !strings.HasPrefix(out, "usage: entrasync "+c.name) {
			t.Errorf("%s -h starts %q", c.name, out[:min(len(out), 60)])
		}
		flags, settings, ok := strings.Cut(out, "\nsettings (")
		if c.bare {
			if ok {
				t.Errorf("%s takes no settings but lists them", c.name)
			}
			continue
		}
		if !ok || !strings.Contains(settings, "--db FILE, ENTRASYNC_DB") || !strings.Contains(settings, "(default ./entrasync.db)") ||
			!strings.Contains(settings, "(default 127.0.0.1:8080)") || !strings.Contains(settings, "ENTRASYNC_SECRET_KEY") {
			t.Errorf("%s -h: settings with defaults missing:\n%s", c.name, out)
		}
		if strings.Contains(flags, "--db") || strings.Contains(settings, "\n  --json") {
			t.Errorf("%s -h: a setting among the flags, or a flag among the settings:\n%s", c.name, out)
		}
		if strings.Contains(flags, "--json") != c.json {
			t.Errorf("%s -h: --json shown %v, want %v", c.name, !c.json, c.json)
		}
	}
	// Flags of the command come first.
	out := check([]string{"sync", "-h"})
	if i, j := strings.Index(out, "--full"), strings.Index(out, "--addr"); i < 0 || j < 0 || i > j {
		t.Errorf("sync -h: --full should come before --addr:\n%s", out)
	}
	if !strings.Contains(out, "3  sync: the run is held") {
		t.Errorf("sync -h does not list its exit codes:\n%s", out)
	}
	if out := check([]string{"help"}); !strings.Contains(out, "exit codes:") || !strings.Contains(out, "2  usage error") {
		t.Errorf("help lists no exit codes:\n%s", out)
	}
}

func TestCommandSuggestions(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"tenat", "list"}, []string{`unknown command "tenat"`, `did you mean "tenant"?`}},
		{[]string{"sevre"}, []string{`did you mean "serve"?`}},
		{[]string{"tenant", "frob"}, []string{`"frob" is not a subcommand of tenant`, "create, list, show, graph, delete"}},
		{[]string{"tenant", "lsit"}, []string{`did you mean "tenant list"?`}},
		{[]string{"token", "revok", "x"}, []string{`did you mean "token revoke"?`}},
		{[]string{"tenant", "list", "--jsno"}, []string{"flag provided but not defined: -jsno; did you mean --json?"}},
		{[]string{"serve", "--json"}, []string{"flag provided but not defined: -json"}},
		{[]string{"demo", "--json"}, []string{"flag provided but not defined: -json"}},
		{[]string{"completion", "tcsh"}, []string{`no completion for "tcsh"`}},
		{[]string{"help", "frobnicate"}, []string{`unknown command "frobnicate"`}},
	}
	for _, tc := range tests {
		out, errOut, code := run(t, tc.args...)
		if code != 2 || out != "" {
			t.Errorf("entrasync %s: exit %d, stdout %q; want 2 and nothing", strings.Join(tc.args, " "), code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("entrasync %s: stderr %q lacks %q", strings.Join(tc.args, " "), errOut, w)
			}
		}
	}
}

// TestUnknownEnvironment: a misspelt ENTRASYNC_ variable is warned about,
// with the setting meant; the test suites' own variables are not.
func TestUnknownEnvironment(t *testing.T) {
	t.Setenv("ENTRASYNC_PUBLC_URL", "https://scim.example.com")
	t.Setenv("ENTRASYNC_TEST_WHATEVER", "1")
	t.Setenv("ENTRASYNC_PROPERTY_SEEDS", "1")
	t.Setenv("ENTRASYNC_MY_GRAPH_SECRET", "s3cret")
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"version"}, &out, &errb, os.Getenv)
	log := errb.String()
	if code != 0 || !strings.Contains(log, "ENTRASYNC_PUBLC_URL is not a setting and is ignored; did you mean ENTRASYNC_PUBLIC_URL?") {
		t.Fatalf("exit %d, log:\n%s", code, log)
	}
	if strings.Contains(log, "ENTRASYNC_TEST_WHATEVER") || strings.Contains(log, "ENTRASYNC_PROPERTY_SEEDS") {
		t.Fatalf("a test variable was warned about:\n%s", log)
	}
	// A variable the command line names is the user's own, not a setting.
	errb.Reset()
	db := filepath.Join(t.TempDir(), "es.db")
	Main(context.Background(), []string{"tenant", "graph", "acme", "--client-secret-env", "ENTRASYNC_MY_GRAPH_SECRET", "--db", db},
		&out, &errb, os.Getenv)
	if strings.Contains(errb.String(), "ENTRASYNC_MY_GRAPH_SECRET is not a setting") {
		t.Fatalf("warned about the variable --client-secret-env names:\n%s", errb.String())
	}
	// Under log_format=json the warning is JSON.
	errb.Reset()
	t.Setenv("ENTRASYNC_LOG_FORMAT", "json")
	Main(context.Background(), []string{"tenant", "list", "--db", db}, &out, &errb, os.Getenv)
	first, _, _ := strings.Cut(errb.String(), "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(first), &rec); err != nil || rec["level"] != "WARN" {
		t.Fatalf("warning under log_format=json: %v %q", err, first)
	}
}

func TestCompletionScripts(t *testing.T) {
	bash := mustRun(t, "completion", "bash")
	for _, shell := range []string{"zsh", "fish"} {
		out := mustRun(t, "completion", shell)
		if !strings.Contains(out, "tenant create") && !strings.Contains(out, "__fish_seen_subcommand_from tenant; and __fish_seen_subcommand_from create") {
			t.Errorf("%s script lacks tenant create:\n%s", shell, out)
		}
		if path, err := exec.LookPath(shell); err == nil {
			f := filepath.Join(t.TempDir(), "c."+shell)
			os.WriteFile(f, []byte(out), 0o600)
			if msg, err := exec.Command(path, "-n", f).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", shell, err, msg)
			}
		}
	}
	bashPath, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the bash script")
	}
	// complete WORDS... asks the script for the last word's completions.
	complete := func(words ...string) []string {
		t.Helper()
		script := bash + `
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
_entrasync
printf '%s\n' "${COMPREPLY[@]}"
`
		cmd := exec.Command(bashPath, "-c", script, "bash")
		cmd.Args = append(cmd.Args, append([]string{"entrasync"}, words...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	eq := func(got []string, want ...string) {
		t.Helper()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("got %v, want %v", got, want)
		}
	}
	eq(complete("te"), "tenant")
	eq(complete("tenant", "c"), "create")
	eq(complete("token", ""), "create", "list", "revoke")
	eq(complete("tenant", "delete", "acme", "--y"), "--yes")
	eq(complete("sync", "--db", "x.db", "acme", "--fu"), "--full")
	eq(complete("completion", ""), "bash", "zsh", "fish")
	eq(complete("serve", "--js")) // serve takes no --json
	eq(complete("tenant", "list", "--js"), "--json")
}

// TestReadOnlyCommandsCreateNothing: commands that only read say the
// database is missing and leave no file behind.
func TestReadOnlyCommandsCreateNothing(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "missing.db")
	for _, args := range [][]string{
		{"tenant", "list"}, {"tenant", "show", "acme"}, {"tenant", "graph", "acme"}, {"token", "list", "acme"}, {"opskey", "list"},
	} {
		_, errOut, code := run(t, append(args, "--db", db)...)
		if code != 1 || !strings.Contains(errOut, "no database at "+db) || !strings.Contains(errOut, "entrasync serve") {
			t.Errorf("entrasync %s: exit %d, %s", strings.Join(args, " "), code, errOut)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("entrasync %s left %v behind", strings.Join(args, " "), entries[0].Name())
		}
	}
	// On an existing database they change nothing: the file keeps its
	// bytes and nothing is added to its log. (SQLite may make an empty -wal
	// and the -shm index beside it: they hold no data.)
	mustRun(t, "tenant", "create", "acme", "--db", db)
	before := dbSnapshot(db)
	for _, args := range [][]string{{"tenant", "list"}, {"tenant", "show", "acme"}, {"token", "list", "acme"}, {"opskey", "list"}} {
		mustRun(t, append(args, "--db", db)...)
	}
	if after := dbSnapshot(db); after != before {
		t.Fatalf("read-only commands changed the database:\n%s\n%s", before, after)
	}
}

// dbSnapshot digests a SQLite file and its write-ahead log (a missing log
// is an empty one).
func dbSnapshot(db string) string {
	data, _ := os.ReadFile(db)
	wal, _ := os.ReadFile(db + "-wal")
	return fmt.Sprintf("db %x, wal %x", sha256.Sum256(data), sha256.Sum256(wal))
}

// TestDefaultTenantOnlyWhenNoneExists: a tenant made by hand before the
// first serve is the one meant; no "default" is added beside it.
func TestDefaultTenantOnlyWhenNoneExists(t *testing.T) {
	db := filepath.Join(t.TempDir(), "es.db")
	mustRun(t, "tenant", "create", "acme", "--db", db, "--public-url", "https://scim.example.com")
	s := startServe(t, "--db", db)
	if strings.Contains(s.stdout.String(), "Secret Token") {
		t.Fatalf("first serve printed credentials although a tenant exists:\n%s", s.stdout)
	}
	s.stop()
	var tenants []map[string]any
	json.Unmarshal([]byte(mustRun(t, "tenant", "list", "--json", "--db", db)), &tenants)
	if len(tenants) != 1 || tenants[0]["name"] != "acme" {
		t.Fatalf("tenants after the first serve: %v", tenants)
	}
}

// TestDefaultTenantBannerJSON: under log_format=json the first start's
// banner is one JSON log record, and stdout carries no credentials.
func TestDefaultTenantBannerJSON(t *testing.T) {
	db := filepath.Join(t.TempDir(), "es.db")
	s := startServe(t, "--db", db, "--log-format", "json")
	var banner map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for banner == nil && time.Now().Before(deadline) {
		for _, line := range strings.Split(s.stderr.String(), "\n") {
			var rec map[string]any
			if line == "" {
				continue
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("a log line that is not JSON: %q", line)
			}
			if rec["secretToken"] != nil {
				banner = rec
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if banner == nil || banner["tenant"] != "default" || banner["tenantUrl"] != s.base+"/scim/v2" || banner["level"] != "INFO" {
		t.Fatalf("banner record %v\nlog:\n%s", banner, s.stderr)
	}
	if strings.Contains(s.stdout.String(), "Secret Token") {
		t.Fatalf("credentials on stdout under log_format=json:\n%s", s.stdout)
	}
	if code := scimGet(t, s.base+"/scim/v2/Users", banner["secretToken"].(string)); code != 200 {
		t.Fatalf("the logged Secret Token answers %d", code)
	}
}

// TestTenantURLWarning: a Tenant URL Entra will refuse (plain http, not
// loopback) is printed with a warning on stderr.
func TestTenantURLWarning(t *testing.T) {
	db := filepath.Join(t.TempDir(), "es.db")
	tests := []struct {
		public string
		warn   bool
	}{
		{"http://scim.example.com", true},
		{"http://10.0.0.5:8080", true},
		{"https://scim.example.com", false},
		{"", false}, // the default, http://127.0.0.1:8080
		{"http://localhost:8080", false},
		{"http://[::1]:8080", false},
	}
	for i, tc := range tests {
		args := []string{"tenant", "create", "t" + string(rune('a'+i)), "--db", db}
		if tc.public != "" {
			args = append(args, "--public-url", tc.public)
		}
		out, errOut, code := run(t, args...)
		if code != 0 {
			t.Fatalf("%v: %d %s", args, code, errOut)
		}
		want := tc.public
		if want == "" {
			want = "http://127.0.0.1:8080"
		}
		if field(t, out, "Tenant URL") != want+"/scim/v2" {
			t.Errorf("%s: Tenant URL %s", tc.public, field(t, out, "Tenant URL"))
		}
		if got := strings.Contains(errOut, "Microsoft Entra ID accepts only https Tenant URLs"); got != tc.warn {
			t.Errorf("public_url %q: warned %v, want %v: %q", tc.public, got, tc.warn, errOut)
		}
		_, errOut, _ = run(t, "token", "create", "t"+string(rune('a'+i)), "--db", db, "--public-url", want)
		if got := strings.Contains(errOut, "accepts only https"); got != tc.warn {
			t.Errorf("token create, public_url %q: warned %v", want, got)
		}
	}
}

// TestTenantGraphJSONUpdatedAt: the JSON shows when the connection was
// stored, not Go's zero time; tenant graph NAME alone shows it, read-only.
func TestTenantGraphJSONUpdatedAt(t *testing.T) {
	db := filepath.Join(t.TempDir(), "es.db")
	mustRun(t, "tenant", "create", "acme", "--db", db)
	env := func(k string) string {
		switch k {
		case "ENTRASYNC_SECRET_KEY":
			return "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
		case "GRAPH_SECRET":
			return "s3cret"
		}
		return ""
	}
	var out, errb bytes.Buffer
	before := time.Now().Add(-time.Second)
	code := Main(context.Background(), []string{"tenant", "graph", "acme", "--json", "--db", db,
		"--tenant-id", "6f1b2a3c-1111-4222-8333-944445555666", "--client-id", "6f1b2a3c-1111-4222-8333-944445555667",
		"--client-secret-env", "GRAPH_SECRET", "--groups", "6f1b2a3c-1111-4222-8333-944445555668"}, &out, &errb, env)
	if code != 0 {
		t.Fatalf("tenant graph: %d %s", code, errb.String())
	}
	var c struct{ UpdatedAt time.Time }
	if err := json.Unmarshal(out.Bytes(), &c); err != nil || c.UpdatedAt.Before(before) || c.UpdatedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("updatedAt %v (%v):\n%s", c.UpdatedAt, err, out.String())
	}
	shown := mustRun(t, "tenant", "graph", "acme", "--json", "--db", db)
	var again struct{ UpdatedAt time.Time }
	if err := json.Unmarshal([]byte(shown), &again); err != nil || !again.UpdatedAt.Equal(c.UpdatedAt) {
		t.Fatalf("tenant graph acme --json shows %v, stored %v", again.UpdatedAt, c.UpdatedAt)
	}
	if out := mustRun(t, "tenant", "graph", "acme", "--db", db); !strings.Contains(out, "updated "+c.UpdatedAt.Format(time.RFC3339)) {
		t.Fatalf("tenant graph acme:\n%s", out)
	}
}

// writePair writes a self-signed certificate for 127.0.0.1 named cn, and
// its key, to the two files.
func writePair(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	replaceFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// replaceFile replaces a file at once, as certbot and cert-manager do, with
// a modification time of its own (file systems with coarse timestamps
// would otherwise give two versions the same one).
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	stamp := time.Now().Add(time.Duration(len(data)) * time.Millisecond)
	if st, err := os.Stat(path); err == nil && !stamp.After(st.ModTime()) {
		stamp = st.ModTime().Add(time.Second)
	}
	os.Chtimes(tmp, stamp, stamp)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// servedName is the common name of the certificate the server presents.
func servedName(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestServeTLS: with tls_cert and tls_key, serve speaks HTTPS, prints an
// https Tenant URL, and serves a replaced certificate from the next
// handshake on; a broken replacement leaves the last good one in service.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, certFile, keyFile, "first")
	s := startServe(t, "--db", filepath.Join(dir, "es.db"), "--tls-cert", certFile, "--tls-key", keyFile)
	addr := strings.TrimPrefix(s.base, "http://")
	tenantURL, token := field(t, s.stdout.String(), "Tenant URL"), field(t, s.stdout.String(), "Secret Token")
	if tenantURL != "https://"+addr+"/scim/v2" {
		t.Fatalf("Tenant URL %s", tenantURL)
	}
	pool := x509.NewCertPool()
	first, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(first)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", tenantURL+"/Users", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET over HTTPS: %v %v", res, err)
	}
	res.Body.Close()
	if res, err := http.Get(s.base + "/healthz"); err == nil && res.StatusCode == 200 {
		t.Fatal("plain http answered on the TLS port")
	}
	if got := servedName(t, addr); got != "first" {
		t.Fatalf("served %q", got)
	}
	writePair(t, certFile, keyFile, "second")
	if got := servedName(t, addr); got != "second" {
		t.Fatalf("after replacing the pair, served %q", got)
	}
	if !strings.Contains(s.stderr.String(), "TLS certificate reloaded") {
		t.Fatalf("no reload logged:\n%s", s.stderr)
	}
	// A certificate whose key does not match is refused; the old pair stays.
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o700)
	writePair(t, filepath.Join(other, "cert.pem"), filepath.Join(other, "key.pem"), "third")
	third, _ := os.ReadFile(filepath.Join(other, "cert.pem"))
	replaceFile(t, certFile, third)
	for range 3 {
		if got := servedName(t, addr); got != "second" {
			t.Fatalf("after a mismatched certificate, served %q", got)
		}
	}
	if n := strings.Count(s.stderr.String(), "does not load"); n != 1 {
		t.Fatalf("the bad pair was logged %d times, want once:\n%s", n, s.stderr)
	}
}

func TestServeTLSBadFiles(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := run(t, "serve", "--addr", "127.0.0.1:0", "--db", filepath.Join(dir, "es.db"),
		"--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", filepath.Join(dir, "none.key"))
	if code != 1 || !strings.Contains(errOut, "cannot serve HTTPS (settings tls_cert and tls_key)") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, errOut, code = run(t, "serve", "--tls-cert", "x.pem")
	if code != 1 || !strings.Contains(errOut, "tls_cert and tls_key go together") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
