package main

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func httpGet(t *testing.T, url, key string) (int, string) {
	t.Helper()
	return bearerDo(t, "GET", url, key)
}

// TestServeMetrics: /metrics on the main listener takes an ops key for
// every tenant; metrics_addr serves it openly; SCIM requests show.
func TestServeMetrics(t *testing.T) {
	db := filepath.Join(t.TempDir(), "es.db")
	s := startServe(t, "--db", db, "--metrics-addr", "127.0.0.1:0", "--metrics-tenant-label=true")
	token := field(t, s.stdout.String(), "Secret Token")
	if code := scimGet(t, s.base+"/scim/v2/Users", token); code != 200 {
		t.Fatalf("SCIM: %d", code)
	}
	if code, body := httpGet(t, s.base+"/metrics", ""); code != http.StatusUnauthorized || !strings.Contains(body, `"error"`) {
		t.Fatalf("/metrics without a key: %d %s", code, body)
	}
	key := opsKeyOf(t, mustRun(t, "opskey", "create", "prometheus", "--db", db))
	code, body := httpGet(t, s.base+"/metrics", key)
	want := `entrasync_scim_requests_total{endpoint="users",method="GET",provider="other",status="2xx"} 1`
	if code != 200 || !strings.Contains(body, want) || !strings.Contains(body, "entrasync_tenants_connected 0") {
		t.Fatalf("/metrics with an all-tenant key: %d\n%s", code, body)
	}
	var open string
	for deadline := time.Now().Add(10 * time.Second); open == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := regexp.MustCompile(`serving metrics without authentication.*addr=(\S+)`).FindStringSubmatch(s.stderr.String()); m != nil {
			open = m[1]
		}
	}
	if open == "" {
		t.Fatalf("metrics_addr's listener not logged:\n%s", s.stderr)
	}
	if code, body := httpGet(t, "http://"+open+"/metrics", ""); code != 200 || !strings.Contains(body, want) {
		t.Fatalf("metrics_addr: %d\n%s", code, body)
	}
	if code, _ := httpGet(t, "http://"+open+"/scim/v2/Users", token); code != http.StatusNotFound {
		t.Fatalf("metrics_addr serves more than /metrics: %d", code)
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, s.stderr)
	}
}

func TestServeMetricsAddrTaken(t *testing.T) {
	db := filepath.Join(t.TempDir(), "es.db")
	_, errOut, code := run(t, "serve", "--addr", "127.0.0.1:0", "--db", db, "--metrics-addr", "256.0.0.1:1")
	if code == 0 || !strings.Contains(errOut, "metrics_addr") {
		t.Fatalf("a metrics_addr that cannot be listened on: exit %d\n%s", code, errOut)
	}
}
