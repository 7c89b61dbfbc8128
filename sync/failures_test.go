package sync

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"log/slog"
	"strings"
	"testing"

	"github.com/entrasync/entrasync/graph"
	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
)

// losingLocks hands out leases that are lost when lose is closed.
type losingLocks struct {
	Locker
	lose chan struct{}
}

type losingLease struct {
	Lease
	lose chan struct{}
}

func (l losingLocks) Lock(ctx context.Context, key string) (Lease, error) {
	lease, err := l.Locker.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	return losingLease{lease, l.lose}, nil
}

func (l losingLease) Lost() <-chan struct{} { return l.lose }

// pageHook is a Source that calls hook before each groups page it yields.
type pageHook struct {
	Source
	hook func()
}

func (p pageHook) GroupsDelta(ctx context.Context, link string, ids []string) iter.Seq2[graph.GroupPage, error] {
	return func(yield func(graph.GroupPage, error) bool) {
		for page, err := range p.Source.GroupsDelta(ctx, link, ids) {
			p.hook()
			if !yield(page, err) {
				return
			}
		}
	}
}

// TestLostLockNamesItself: a run whose lock could not be renewed stops and
// says so, not "context canceled" with a link in it; the next run repairs.
func TestLostLockNamesItself(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 5, MembersPerPage: 3})
	gs := h.populate(40, 2, 2, 17)
	h.sync(store.RunSucceeded)
	h.dir.UpdateUser(h.dir.Members(gs[0])[0], func(u *graphtest.User) { u.JobTitle = "After the lost lock" })

	lose := make(chan struct{})
	locks := h.w.Locks
	h.w.Locks = losingLocks{Locker: locks, lose: lose}
	connect := h.w.Connect
	pages := 0
	h.w.Connect = func(ctx context.Context, c store.GraphConnection) (Source, error) {
		src, err := connect(ctx, c)
		return pageHook{src, func() {
			if pages++; pages == 1 {
				close(lose)
				<-ctx.Done() // the run notices before its next request
			}
		}}, err
	}
	run, _ := h.sync(store.RunFailed)
	if run.Error != errLockLost.Error() {
		t.Fatalf("a run that lost its lock says %q", run.Error)
	}
	h.w.Locks, h.w.Connect = locks, connect
	h.sync(store.RunSucceeded)
	h.checkMirror()
}

// leakyUsers fails its users delta with an error that quotes a link and a
// bearer token, as transport errors do.
type leakyUsers struct{ Source }

const leakedToken = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln"

func (leakyUsers) UsersDelta(context.Context, string) iter.Seq2[graph.UserPage, error] {
	return func(yield func(graph.UserPage, error) bool) {
		yield(graph.UserPage{}, errors.New(`Get "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=SECRETSTATE&$select=id": `+
			`proxy said: Authorization: Bearer `+leakedToken+`; client_secret=hunter2: connection reset`))
	}
}

// TestRunErrorsKeepNoSecrets: whatever a failure's text quotes, the run's
// record and log keep no delta or skip token, bearer token or secret.
func TestRunErrorsKeepNoSecrets(t *testing.T) {
	h := newHarness(t, graphtest.Options{})
	h.populate(10, 1, 1, 18)
	h.sync(store.RunSucceeded)
	var logs bytes.Buffer
	h.w.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	connect := h.w.Connect
	h.w.Connect = func(ctx context.Context, c store.GraphConnection) (Source, error) {
		src, err := connect(ctx, c)
		return leakyUsers{src}, err
	}
	run, _ := h.sync(store.RunFailed)
	for _, secret := range []string{"SECRETSTATE", leakedToken, "hunter2"} {
		if strings.Contains(run.Error, secret) || strings.Contains(logs.String(), secret) {
			t.Fatalf("%q leaked:\nrun error: %s\nlog: %s", secret, run.Error, logs.String())
		}
	}
	if !strings.Contains(run.Error, "connection reset") || !strings.Contains(run.Error, "/v1.0/users/delta") {
		t.Fatalf("the redacted error lost what failed: %s", run.Error)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), `"changes":{"usersCreated":0`) {
		t.Fatalf("a failed run is logged %s", logs.String())
	}
}

// TestPullNeedsOnlyTheREADMEPermissions: every other test of the pull runs
// with exactly the README's two permissions; without one of them a run
// fails saying which one and that an admin must consent to it.
func TestPullNeedsOnlyTheREADMEPermissions(t *testing.T) {
	for _, missing := range graph.RequiredPermissions {
		t.Run("without "+missing, func(t *testing.T) {
			h := newHarness(t, graphtest.Options{})
			h.populate(10, 1, 1, 19)
			var granted []string
			for _, p := range graph.RequiredPermissions {
				if p != missing {
					granted = append(granted, p)
				}
			}
			h.fake.Grant(azureTenant, appID, granted...)
			run, _ := h.sync(store.RunFailed)
			if !strings.Contains(run.Error, missing) || !strings.Contains(strings.ToLower(run.Error), "admin consent") {
				t.Fatalf("a run without %s says %q", missing, run.Error)
			}
		})
	}
}
