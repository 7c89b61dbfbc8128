package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/config"
)

// TestComposeSettings: every ENTRASYNC_ variable the docker compose file
// names is a setting, and the values it gives the nodes (with compose's
// ${VAR:-default} defaults, and a key for the one it requires) load.
func TestComposeSettings(t *testing.T) {
	data, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	names := regexp.MustCompile(`ENTRASYNC_[A-Z0-9_]+`).FindAllString(text, -1)
	if len(names) == 0 {
		t.Fatal("docker-compose.yml names no ENTRASYNC_ variable")
	}
	if bad := config.UnknownEnv(names); len(bad) > 0 {
		t.Fatalf("docker-compose.yml:\n%s", strings.Join(bad, "\n"))
	}
	// The nodes' environment: "    ENTRASYNC_NAME: value" lines.
	interp := regexp.MustCompile(`\$\{([A-Z0-9_]+)(?::-([^}]*)|:\?[^}]*)\}`)
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(ENTRASYNC_[A-Z0-9_]+):\s*(.*)$`).FindAllStringSubmatch(text, -1) {
		v := strings.Trim(m[2], `"`)
		v = interp.ReplaceAllStringFunc(v, func(ref string) string {
			sub := interp.FindStringSubmatch(ref)
			if sub[1] == "ENTRASYNC_SECRET_KEY" {
				return "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
			}
			return sub[2]
		})
		env[m[1]] = v
	}
	for _, want := range []string{"ENTRASYNC_DB", "ENTRASYNC_REDIS", "ENTRASYNC_SECRET_KEY", "ENTRASYNC_ADDR", "ENTRASYNC_PUBLIC_URL"} {
		if env[want] == "" {
			t.Errorf("docker-compose.yml gives the nodes no %s", want)
		}
	}
	var f *config.Flags
	cfg, err := f.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the compose file's settings: %v", err)
	}
	if !strings.HasPrefix(cfg.DB, "postgres://") || cfg.Redis == "" || len(cfg.SecretKey) != 32 {
		t.Fatalf("the compose file's settings: db %q, redis %q, key of %d bytes", cfg.DB, cfg.Redis, len(cfg.SecretKey))
	}
}
