package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
)

// Server is a throwaway PostgreSQL of one test's own, started from the
// installed binaries, which the test may stop and start again (fault
// tests: a database restart).
type Server struct {
	t    testing.TB
	bin  string   // the directory of initdb and pg_ctl
	as   []string // runuser -u postgres --, when the test runs as root
	dir  string
	port int
}

// Start initialises and starts a throwaway PostgreSQL on a free port of
// 127.0.0.1, stopped and removed when the test ends. Without installed
// binaries (/usr/lib/postgresql/*/bin) the test is skipped, saying how to
// run it.
func Start(t testing.TB) *Server {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		// Skipped even under CI: a CI whose PostgreSQL is a service of its
		// own need not have the binaries (.ci/run installs them when it
		// starts PostgreSQL itself).
		t.Skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl): install it (apt-get install postgresql) to run this test")
	}
	sort.Strings(bins)
	s := &Server{t: t, bin: filepath.Dir(bins[len(bins)-1])}
	// PostgreSQL refuses to run as root: run it as postgres, in a
	// directory of its own (t.TempDir's parent is closed to other users).
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Getuid() == 0 {
		if _, err := exec.LookPath("runuser"); err != nil {
			t.Skip("running as root without runuser: PostgreSQL will not run as root")
		}
		s.as = []string{"runuser", "-u", "postgres", "--"}
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			t.Skipf("running as root and cannot hand %s to the postgres user (%v: %s): PostgreSQL will not run as root", dir, err, out)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.run("initdb", "-D", s.data(), "-A", "trust", "-U", "postgres", "--no-sync")
	s.Start()
	t.Cleanup(func() {
		// Stop whatever state the test left it in; a stopped server says so.
		cmd := s.cmd("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop")
		cmd.Run()
	})
	return s
}

// URL is the server's database "postgres", as its superuser.
func (s *Server) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Stop shuts the server down the way an operator restarting it does
// (pg_ctl stop -m fast): sessions are ended, open transactions rolled back.
func (s *Server) Stop() {
	s.t.Helper()
	s.run("pg_ctl", "-D", s.data(), "-m", "fast", "-w", "-t", "60", "stop")
}

// Start starts a stopped server again, on the same port and data.
func (s *Server) Start() {
	s.t.Helper()
	s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "server.log"), "-w", "-t", "60",
		"-o", "-h 127.0.0.1 -p "+strconv.Itoa(s.port)+" -k "+s.dir+" -F", "start")
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) cmd(name string, args ...string) *exec.Cmd {
	argv := append(append([]string{}, s.as...), filepath.Join(s.bin, name))
	argv = append(argv, args...)
	return exec.Command(argv[0], argv[1:]...)
}

func (s *Server) run(name string, args ...string) {
	s.t.Helper()
	if out, err := s.cmd(name, args...).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
		s.t.Fatalf("%s: %v\n%s\nserver log:\n%s", name, err, out, log)
	}
}
