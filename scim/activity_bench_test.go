package scim_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/entrasync/entrasync/scim"
	"github.com/entrasync/entrasync/store/pgtest"
	"github.com/entrasync/entrasync/sync"
)

// BenchmarkActivityOverhead: SCIM throughput with activity recording off
// and on, in the same run against the same store: Entra's creates from 16
// clients, and its userName lookups from 32. Reports both rates and on as
// a percentage of off (issue 10: recording never slows a request
// noticeably).
func BenchmarkActivityOverhead(b *testing.B) {
	pgtest.EachStore(b, func(b *testing.B, kind string) {
		f := benchFixture(b, kind)
		off := startSCIM(f.db)
		defer off.Close()
		rec := sync.NewRecorder(f.db, sync.RecorderConfig{})
		defer rec.Close()
		on := httptest.NewUnstartedServer(nil)
		on.Config.Handler = scim.New(scim.Config{DB: f.db, PublicURL: "http://" + on.Listener.Addr().String(), Activity: rec}).Handler()
		on.Start()
		defer on.Close()
		for _, w := range []struct {
			name    string
			clients int
			status  int
			req     func(base, run string, i int) (method, url, body string)
		}{
			{"creates", 16, http.StatusCreated, func(base, run string, i int) (string, string, string) {
				return "POST", base + "/scim/v2/Users", entraCreateBody("a"+run, i)
			}},
			{"lookups", 32, http.StatusOK, func(base, _ string, i int) (string, string, string) {
				name := fmt.Sprintf("USER%06d@contoso.com", (i*7919)%benchUsers)
				return "GET", base + "/scim/v2/Users?filter=userName+eq+%22" + name + "%22", ""
			}},
		} {
			b.Run(w.name, func(b *testing.B) {
				client := clientPool(w.clients)
				defer client.CloseIdleConnections()
				rate := func(srv *httptest.Server) float64 {
					run := nextBenchRun()
					return concurrently(b, w.clients, b.N, func(i int) error {
						method, url, body := w.req(srv.URL, run, i)
						_, err := send(client, method, url, f.token, body, w.status)
						return err
					})
				}
				written := rec.Written()
				b.ResetTimer()
				// Off, on, off, on: the machine's drift falls on both.
				offRate := rate(off)
				onRate := rate(on)
				offRate = (offRate + rate(off)) / 2
				onRate = (onRate + rate(on)) / 2
				b.StopTimer()
				rec.Flush()
				b.ReportMetric(offRate, "off/s")
				b.ReportMetric(onRate, "on/s")
				b.ReportMetric(100*onRate/offRate, "%on/off")
				b.ReportMetric(float64(rec.Dropped()), "dropped")
				if got := rec.Written() - written; got != int64(2*b.N) {
					b.Logf("%d records written for %d requests (%d dropped in all)", got, 2*b.N, rec.Dropped())
				}
			})
		}
	})
}
