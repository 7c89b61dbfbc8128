package sync

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/redis/go-redis/v9"
)

// DeltaTokens keeps the delta links of each tenant's queries between runs.
type DeltaTokens interface {
	// Load returns the link saved under key and when ("" when none).
	Load(ctx context.Context, tenant int64, key string) (link string, saved time.Time, err error)
	// Save saves a link; called only after the changes it covers committed.
	Save(ctx context.Context, tenant int64, key, link string) error
	// Forget drops the tenant's links whose keys are not in keep.
	Forget(ctx context.Context, tenant int64, keep []string) error
}

// Locker gives one run per tenant at a time, across processes.
type Locker interface {
	// Lock takes the lock called key, or fails with ErrLocked when someone
	// else holds it. The lease renews itself until Release.
	Lock(ctx context.Context, key string) (Lease, error)
}

// Lease is a held lock.
type Lease interface {
	// Lost is closed when the lock could not be renewed: the run must stop.
	Lost() <-chan struct{}
	Release()
}

// ErrLocked reports a lock held by someone else.
var ErrLocked = errors.New("locked: another run of this tenant is going")

// leaseTTL is how long a lock outlives a process that died holding it;
// renewals come at a third of it.
const leaseTTL = 45 * time.Second

func holderID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// StoreTokens keeps delta links in the store: the embedded default.
type StoreTokens struct{ DB *store.DB }

func (s StoreTokens) Load(ctx context.Context, tenant int64, key string) (string, time.Time, error) {
	return s.DB.LoadDeltaLink(ctx, tenant, key)
}

func (s StoreTokens) Save(ctx context.Context, tenant int64, key, link string) error {
	return s.DB.Write(ctx, func(tx *store.Tx) error { return tx.SaveDeltaLink(tenant, key, link) })
}

func (s StoreTokens) Forget(ctx context.Context, tenant int64, keep []string) error {
	return s.DB.Write(ctx, func(tx *store.Tx) error { return tx.ForgetDeltaLinks(tenant, keep) })
}

// StoreLocks are leases in the store's database: one holder across every
// process that shares it. TTL is how long a lock outlives a process that
// died holding it (default 45 s).
type StoreLocks struct {
	DB  *store.DB
	TTL time.Duration
}

func (s StoreLocks) Lock(ctx context.Context, key string) (Lease, error) {
	holder, ttl := holderID(), cmp.Or(s.TTL, leaseTTL)
	acquire := func(ctx context.Context) (bool, error) {
		var ok bool
		err := s.DB.Write(ctx, func(tx *store.Tx) error {
			var err error
			ok, err = tx.AcquireLease(key, holder, ttl)
			return err
		})
		if err != nil {
			return false, fmt.Errorf("taking the run lock in the database: %w", err)
		}
		return ok, nil
	}
	release := func(ctx context.Context) error {
		return s.DB.Write(ctx, func(tx *store.Tx) error { return tx.ReleaseLease(key, holder) })
	}
	return hold(ctx, ttl, acquire, release)
}

// hold takes a lease with acquire and keeps renewing it (acquire again,
// every third of ttl) until Release.
func hold(ctx context.Context, ttl time.Duration, acquire func(context.Context) (bool, error), release func(context.Context) error) (Lease, error) {
	ok, err := acquire(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrLocked
	}
	l := &lease{lost: make(chan struct{}), stop: make(chan struct{}), renewing: make(chan struct{}), release: release}
	go func() {
		defer close(l.renewing)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(context.Background(), ttl/3)
				ok, err := acquire(rctx)
				cancel()
				if err != nil || !ok {
					close(l.lost)
					return
				}
			}
		}
	}()
	return l, nil
}

type lease struct {
	lost     chan struct{}
	stop     chan struct{}
	renewing chan struct{} // closed when renewals have ended
	once     gosync.Once
	release  func(context.Context) error
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

func (l *lease) Release() {
	l.once.Do(func() {
		close(l.stop)
		// A renewal still going would take a released lock again.
		<-l.renewing
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.release(ctx) // an unreleased lease expires on its own
	})
}

// Redis keeps delta links and run locks in Redis, for many nodes sharing
// one database.
type Redis struct {
	client *redis.Client
	url    string        // without password, for messages
	TTL    time.Duration // of a run lock, as StoreLocks.TTL
	// Namespace keeps installations that share a Redis database apart; the
	// nodes of one installation (one database) share it.
	Namespace string
}

func (r *Redis) prefix() string {
	if r.Namespace == "" {
		return "entrasync:"
	}
	return "entrasync:" + r.Namespace + ":"
}

// quietRedis drops go-redis's own log lines (dial failures are reported as
// errors, with the address, where they matter).
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedis{}) }

// NewRedis connects to the Redis at rawURL (redis:// or rediss://). It
// does not dial until used.
func NewRedis(rawURL string) (*Redis, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 3*time.Second, 3*time.Second, 3*time.Second
	opts.MaxRetries = 1
	return &Redis{client: redis.NewClient(opts), url: opts.Addr}, nil
}

// Close closes the connections.
func (r *Redis) Close() error { return r.client.Close() }

// Ping checks that Redis answers; its error names the address.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return r.fail("ping", err)
	}
	return nil
}

func (r *Redis) fail(what string, err error) error {
	return fmt.Errorf("redis at %s: %s: %w", r.url, what, err)
}

// linkTTL lets a link outlive Graph's own 7 days a little; an expired link
// means a full sync anyway.
const linkTTL = 8 * 24 * time.Hour

func (r *Redis) tokenKey(tenant int64, key string) string {
	return r.prefix() + "t" + strconv.FormatInt(tenant, 10) + ":delta:" + key
}

func (r *Redis) Load(ctx context.Context, tenant int64, key string) (string, time.Time, error) {
	vals, err := r.client.HMGet(ctx, r.tokenKey(tenant, key), "link", "saved").Result()
	if err != nil {
		return "", time.Time{}, r.fail("loading a delta link", err)
	}
	link, _ := vals[0].(string)
	savedText, _ := vals[1].(string)
	saved, _ := time.Parse(time.RFC3339Nano, savedText)
	return link, saved, nil
}

func (r *Redis) Save(ctx context.Context, tenant int64, key, link string) error {
	k := r.tokenKey(tenant, key)
	pipe := r.client.TxPipeline()
	pipe.HSet(ctx, k, "link", link, "saved", time.Now().UTC().Format(time.RFC3339Nano))
	pipe.Expire(ctx, k, linkTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return r.fail("saving a delta link", err)
	}
	return nil
}

func (r *Redis) Forget(ctx context.Context, tenant int64, keep []string) error {
	prefix := r.tokenKey(tenant, "")
	kept := map[string]bool{}
	for _, k := range keep {
		kept[prefix+k] = true
	}
	iter := r.client.Scan(ctx, 0, prefix+"*", 100).Iterator()
	var gone []string
	for iter.Next(ctx) {
		if !kept[iter.Val()] {
			gone = append(gone, iter.Val())
		}
	}
	if err := iter.Err(); err != nil {
		return r.fail("listing delta links", err)
	}
	if len(gone) > 0 {
		if err := r.client.Del(ctx, gone...).Err(); err != nil {
			return r.fail("dropping delta links", err)
		}
	}
	return nil
}

// renewScript extends the lock only if we still hold it; releaseScript
// deletes it only if we hold it.
var (
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end`)
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)
)

// Lock takes the lock with SET NX and an expiry, renewed while held.
func (r *Redis) Lock(ctx context.Context, key string) (Lease, error) {
	k := r.prefix() + "lock:" + strings.ReplaceAll(key, " ", "_")
	holder, ttl := holderID(), cmp.Or(r.TTL, leaseTTL)
	first := true
	acquire := func(ctx context.Context) (bool, error) {
		if first {
			first = false
			ok, err := r.client.SetNX(ctx, k, holder, ttl).Result()
			if err != nil {
				return false, r.fail("taking the run lock", err)
			}
			return ok, nil
		}
		n, err := renewScript.Run(ctx, r.client, []string{k}, holder, ttl.Milliseconds()).Int()
		if err != nil {
			return false, r.fail("renewing the run lock", err)
		}
		return n == 1, nil
	}
	release := func(ctx context.Context) error {
		return releaseScript.Run(ctx, r.client, []string{k}, holder).Err()
	}
	return hold(ctx, ttl, acquire, release)
}
