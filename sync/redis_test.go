package sync

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/entrasync/entrasync/graph/graphtest"
	"github.com/entrasync/entrasync/store"
)

// testRedisURL is the Redis the tests use: ENTRASYNC_TEST_REDIS_URL, else
// logical database 15 of the local one, where they delete only keys they
// made (or, for a store tenant, claimed).
var testRedisURL = cmp.Or(os.Getenv("ENTRASYNC_TEST_REDIS_URL"), "redis://127.0.0.1:6379/15")

// inCI reports whether the tests run in CI (CI set), where a missing Redis
// fails the Redis tests instead of skipping them: a green CI has run them.
func inCI() bool { return os.Getenv("CI") != "" }

// testRedis connects to the test Redis, or skips the test when none runs
// (fails in CI).
func testRedis(t *testing.T) *Redis {
	t.Helper()
	rd, err := connectRedis(t)
	if err != nil {
		t.Skipf("no Redis at %s (%v): start one (redis-server), or set ENTRASYNC_TEST_REDIS_URL, to run this test", testRedisURL, err)
	}
	return rd
}

// reachableRedis connects to the test Redis, or returns nil when none runs
// (fails in CI).
func reachableRedis(t *testing.T) *Redis {
	t.Helper()
	rd, err := connectRedis(t)
	if err != nil {
		return nil
	}
	return rd
}

// connectRedis connects to the test Redis; it is closed after the test's
// other cleanups, which use it. In CI the URL must be given and Redis must
// answer, or the test fails.
func connectRedis(t *testing.T) (*Redis, error) {
	t.Helper()
	if inCI() && os.Getenv("ENTRASYNC_TEST_REDIS_URL") == "" {
		t.Fatal("CI is set but ENTRASYNC_TEST_REDIS_URL is not: CI must run the Redis tests against a Redis it names")
	}
	rd, err := NewRedis(testRedisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = rd.Ping(ctx)
	if err != nil && inCI() {
		t.Fatalf("CI is set and the Redis at %s does not answer: %v", testRedisURL, err)
	}
	return rd, err
}

// claimRedisTenant makes store tenant id's Redis keys this test's alone.
// Every fresh store numbers its tenants from 1, so tests in other processes
// use the same keys: a guard key serializes them, and the tenant's keys are
// deleted before and after.
func claimRedisTenant(t *testing.T, rd *Redis, tenant int64) {
	t.Helper()
	ctx := context.Background()
	guard, me := "entrasync-test:guard:t"+fmt.Sprint(tenant), randomHex()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ok, err := rd.client.SetNX(ctx, guard, me, 2*time.Minute).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis key %s is held by another test process", guard)
		}
		time.Sleep(100 * time.Millisecond)
	}
	clean := func() {
		keys, err := rd.client.Keys(ctx, rd.tokenKey(tenant, "*")).Result()
		if err != nil {
			t.Error(err)
		}
		keys = append(keys, "entrasync:lock:"+fmt.Sprintf("run:tenant:%d", tenant))
		if err := rd.client.Del(ctx, keys...).Err(); err != nil {
			t.Error(err)
		}
	}
	clean()
	t.Cleanup(func() {
		clean()
		releaseScript.Run(ctx, rd.client, []string{guard}, me)
	})
}

func randomHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// redisScratch is a tenant id and a lock name no other test uses, and
// deletes their keys when the test ends.
func redisScratch(t *testing.T, rd *Redis) (tenant int64, lock string) {
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<40))
	tenant, lock = 1<<40+n.Int64(), "test:"+randomHex()
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rd.client.Keys(ctx, rd.tokenKey(tenant, "*")).Result()
		rd.client.Del(ctx, append(keys, "entrasync:lock:"+lock)...)
	})
	return tenant, lock
}

func TestRedisTokens(t *testing.T) {
	rd := testRedis(t)
	tenant, _ := redisScratch(t, rd)
	ctx := context.Background()
	if link, saved, err := rd.Load(ctx, tenant, "users:x"); err != nil || link != "" || !saved.IsZero() {
		t.Fatalf("nothing saved: %q %v %v", link, saved, err)
	}
	start := time.Now().Add(-time.Second)
	for _, k := range []string{"users:x", "groups:a", "groups:b", "groups-manifest:m"} {
		if err := rd.Save(ctx, tenant, k, "https://graph/"+k); err != nil {
			t.Fatal(err)
		}
	}
	if err := rd.Save(ctx, tenant, "users:x", "https://graph/users:x?2"); err != nil {
		t.Fatal(err)
	}
	link, saved, err := rd.Load(ctx, tenant, "users:x")
	if err != nil || link != "https://graph/users:x?2" || saved.Before(start) || saved.After(time.Now().Add(time.Second)) {
		t.Fatalf("load: %q %v %v", link, saved, err)
	}
	// Graph keeps delta state 7 days: a link must not expire before that.
	if ttl, err := rd.client.TTL(ctx, rd.tokenKey(tenant, "groups:a")).Result(); err != nil || ttl <= 7*24*time.Hour {
		t.Fatalf("a saved link expires in %v (%v), want more than 7 days", ttl, err)
	}
	other := tenant + 1
	if err := rd.Save(ctx, other, "groups:a", "other tenant's"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.client.Del(ctx, rd.tokenKey(other, "groups:a")) })

	if err := rd.Forget(ctx, tenant, []string{"users:x", "groups:b"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"users:x": "https://graph/users:x?2", "groups:b": "https://graph/groups:b", "groups:a": "", "groups-manifest:m": ""}
	for k, w := range want {
		if link, _, err := rd.Load(ctx, tenant, k); err != nil || link != w {
			t.Fatalf("after Forget, %s = %q (%v), want %q", k, link, err, w)
		}
	}
	if link, _, _ := rd.Load(ctx, other, "groups:a"); link != "other tenant's" {
		t.Fatalf("Forget dropped another tenant's link: %q", link)
	}
	if err := rd.Forget(ctx, tenant, nil); err != nil {
		t.Fatal(err)
	}
	if link, _, _ := rd.Load(ctx, tenant, "users:x"); link != "" {
		t.Fatalf("Forget keeping nothing kept %q", link)
	}
}

// The lock tests run against both Lockers; new gives each test a fresh
// lock name; Redis ones skip without Redis.
type lockerCase struct {
	name string
	new  func(t *testing.T, ttl time.Duration) (Locker, string)
}

var lockerCases = []lockerCase{
	{"store", func(t *testing.T, ttl time.Duration) (Locker, string) {
		return StoreLocks{DB: lockDB(t), TTL: ttl}, "run:tenant:1"
	}},
	{"redis", func(t *testing.T, ttl time.Duration) (Locker, string) {
		rd := testRedis(t)
		_, lock := redisScratch(t, rd)
		rd.TTL = ttl
		return rd, lock
	}},
}

func lockDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "locks.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustLock(t *testing.T, l Locker, key string) Lease {
	t.Helper()
	lease, err := l.Lock(context.Background(), key)
	if err != nil {
		t.Fatalf("lock %s: %v", key, err)
	}
	t.Cleanup(lease.Release)
	return lease
}

func wantLocked(t *testing.T, l Locker, key string) {
	t.Helper()
	lease, err := l.Lock(context.Background(), key)
	if err == nil {
		lease.Release()
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock of %s: %v, want ErrLocked", key, err)
	}
}

func notLost(t *testing.T, l Lease) {
	t.Helper()
	select {
	case <-l.Lost():
		t.Fatal("lease lost while held")
	default:
	}
}

func TestLockExclusive(t *testing.T) {
	for _, lc := range lockerCases {
		t.Run(lc.name, func(t *testing.T) {
			l, key := lc.new(t, 0)
			first := mustLock(t, l, key)
			wantLocked(t, l, key)
			first.Release()
			first.Release() // twice is harmless
			mustLock(t, l, key)
			wantLocked(t, l, key)
		})
	}
}

// TestLockRenews holds a lease for more than three of its TTLs: renewals
// keep it.
func TestLockRenews(t *testing.T) {
	for _, lc := range lockerCases {
		t.Run(lc.name, func(t *testing.T) {
			l, key := lc.new(t, 300*time.Millisecond)
			lease := mustLock(t, l, key)
			time.Sleep(time.Second)
			wantLocked(t, l, key)
			notLost(t, lease)
		})
	}
}

func TestRedisLockLost(t *testing.T) {
	rd := testRedis(t)
	_, key := redisScratch(t, rd)
	rd.TTL = 300 * time.Millisecond
	lease := mustLock(t, rd, key)
	if err := rd.client.Del(context.Background(), "entrasync:lock:"+key).Err(); err != nil {
		t.Fatal(err)
	}
	waitLost(t, lease)
}

func waitLost(t *testing.T, lease Lease) {
	t.Helper()
	select {
	case <-lease.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost() not closed after the lock was taken away")
	}
}

// TestRedisReleaseKeepsOthersLock: a holder whose key was deleted (or
// expired) must not, on Release, delete the lock its successor took.
func TestRedisReleaseKeepsOthersLock(t *testing.T) {
	rd := testRedis(t)
	_, key := redisScratch(t, rd)
	rd.TTL = 300 * time.Millisecond
	stale := mustLock(t, rd, key)
	if err := rd.client.Del(context.Background(), "entrasync:lock:"+key).Err(); err != nil {
		t.Fatal(err)
	}
	next := mustLock(t, rd, key)
	waitLost(t, stale) // its renewal saw the other holder
	stale.Release()
	wantLocked(t, rd, key)
	notLost(t, next)
}

// TestStoreLockTakenOver: a holder whose lease ran out and was taken by
// another process loses it, and its Release leaves the new holder's lease.
func TestStoreLockTakenOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locks.db")
	open := func() *store.DB {
		db, err := store.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	db, later := open(), open()
	later.SetClock(func() time.Time { return time.Now().Add(time.Hour) }) // the first lease has run out there
	locks := StoreLocks{DB: db, TTL: 300 * time.Millisecond}
	stale := mustLock(t, locks, "run:tenant:1")
	var took bool
	err := later.Write(context.Background(), func(tx *store.Tx) (err error) {
		took, err = tx.AcquireLease("run:tenant:1", "other process", 300*time.Millisecond)
		return err
	})
	if err != nil || !took {
		t.Fatalf("taking an expired lease: %v %v", took, err)
	}
	waitLost(t, stale)
	stale.Release()
	wantLocked(t, locks, "run:tenant:1")
}

// failingTokens is a Redis (or store) that goes away at the end of a run:
// after the first allow Saves, every Save fails.
type failingTokens struct {
	DeltaTokens
	allow int
	saved []string
}

func (f *failingTokens) Save(ctx context.Context, tenant int64, key, link string) error {
	if len(f.saved) >= f.allow {
		return errors.New("redis at 127.0.0.1:6379: saving a delta link: connection reset by peer (simulated)")
	}
	f.saved = append(f.saved, key)
	return f.DeltaTokens.Save(ctx, tenant, key, link)
}

// deadAddr is an address where nothing listens.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestRedisUnreachable: with Redis down a run fails before it changes
// anything, saying so; the next cycle with Redis back catches up.
func TestRedisUnreachable(t *testing.T) {
	h := newHarness(t, graphtest.Options{PageSize: 10, MembersPerPage: 5})
	gs := h.populate(40, 3, 2, 5)
	h.sync(store.RunSucceeded)
	h.mutate(gs)
	before := h.snapshot()

	addr := deadAddr(t)
	dead, err := NewRedis("redis://" + addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	h.w.Tokens, h.w.Locks = dead, dead
	_, err = h.w.RunOnce(context.Background(), "contoso", Options{Trigger: "test"})
	if err == nil || !strings.Contains(err.Error(), "redis") || !strings.Contains(err.Error(), addr) ||
		!strings.Contains(err.Error(), "run lock") {
		t.Fatalf("run with Redis down: %v; want an error naming Redis at %s and the run lock", err, addr)
	}
	if h.snapshot() != before {
		t.Fatal("a run that could not take its lock changed the store")
	}
	if runs, err := h.db.Runs(context.Background(), "contoso", 10); err != nil || len(runs) != 1 {
		t.Fatalf("runs %+v (%v), want only the first", runs, err)
	}

	// The next cycle: Redis back (a full sync, as it holds no links yet)
	// or, where no Redis runs, the store's locks and links.
	h.w.Tokens, h.w.Locks = StoreTokens{DB: h.db}, StoreLocks{DB: h.db}
	if rd := reachableRedis(t); rd != nil {
		claimRedisTenant(t, rd, h.tenant.ID)
		h.w.Tokens, h.w.Locks = rd, rd
	} else {
		t.Log("no Redis at", testRedisURL, "- the next cycle uses the store's locks and links")
	}
	h.sync(store.RunSucceeded)
	h.checkMirror()
}

// TestTokenSaveFails: Redis goes away after a run's changes committed,
// before (or while) its links are saved. The run fails, and the next
// replays from the old links without changing anything twice. The failure
// is simulated around the test Redis, or around the store's links where no
// Redis runs.
func TestTokenSaveFails(t *testing.T) {
	for _, allow := range []int{0, 1} {
		t.Run(fmt.Sprintf("after %d saves", allow), func(t *testing.T) {
			h := newHarness(t, graphtest.Options{PageSize: 10, MembersPerPage: 5})
			var tokens DeltaTokens = StoreTokens{DB: h.db}
			if rd := reachableRedis(t); rd != nil {
				claimRedisTenant(t, rd, h.tenant.ID)
				tokens = rd
				h.w.Locks = rd
			} else {
				t.Log("no Redis at", testRedisURL, "- simulating with the store's links")
			}
			h.w.Tokens = tokens
			gs := h.populate(40, 3, 2, 9)
			h.sync(store.RunSucceeded)
			linksBefore := h.savedLinks(tokens)
			h.mutate(gs)

			failing := &failingTokens{DeltaTokens: tokens, allow: allow}
			h.w.Tokens = failing
			run, _ := h.sync(store.RunFailed)
			if !strings.Contains(run.Error, "saving a delta link") {
				t.Fatalf("failed run's error: %q", run.Error)
			}
			h.checkMirror() // the changes committed
			afterFail := h.snapshot()
			linksAfter := h.savedLinks(tokens)
			for _, k := range failing.saved {
				delete(linksBefore, k)
				delete(linksAfter, k)
			}
			if !mapsEqual(linksAfter, linksBefore) {
				t.Fatalf("links the failed run did not save moved:\n got %v\nwant %v", linksAfter, linksBefore)
			}

			h.w.Tokens = tokens
			run, c := h.sync(store.RunSucceeded)
			if run.Mode != ModeDelta || c.Total() != 0 || h.snapshot() != afterFail {
				t.Fatalf("replay: mode %s, counts %+v; want a delta that changes nothing", run.Mode, c)
			}
			h.checkMirror()
		})
	}
}

// TestLockReleaseDuringRenewal releases leases while renewals are going (a
// short TTL renews all the time): a renewal that ends after the release
// must not take the lock again, so the next Lock always succeeds.
func TestLockReleaseDuringRenewal(t *testing.T) {
	for _, lc := range lockerCases {
		t.Run(lc.name, func(t *testing.T) {
			l, key := lc.new(t, 30*time.Millisecond)
			for i := range 100 {
				lease, err := l.Lock(context.Background(), key)
				if err != nil {
					t.Fatalf("lock %d after a release: %v", i, err)
				}
				time.Sleep(time.Duration(i%13) * time.Millisecond)
				lease.Release()
			}
		})
	}
}
