package graph

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// trackedBody is a response body that knows whether it was closed.
type trackedBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackedBody) Close() error { b.closed.Store(true); return nil }

// bodies hands out tracked bodies and checks they were all closed.
type bodies struct {
	mu  gosync.Mutex
	all []*trackedBody
}

func (b *bodies) new(s string) *trackedBody {
	tb := &trackedBody{Reader: strings.NewReader(s)}
	b.mu.Lock()
	b.all = append(b.all, tb)
	b.mu.Unlock()
	return tb
}

func (b *bodies) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, tb := range b.all {
		if !tb.closed.Load() {
			n++
		}
	}
	return n
}

func (b *bodies) response(r *http.Request, status int, header http.Header, body string) *http.Response {
	if header == nil {
		header = http.Header{}
	}
	return &http.Response{StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status),
		Header: header, Body: b.new(body), Request: r, ProtoMajor: 1, ProtoMinor: 1}
}

// noSleep records waits and returns at once (or the context's error).
type noSleep struct {
	mu    gosync.Mutex
	waits []time.Duration
}

func (s *noSleep) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

// firedTimer is a timer that has fired but whose function has not run yet:
// Stop reports false.
type firedTimer struct{}

func (firedTimer) Stop() bool { return false }

// roundTrip calls t.RoundTrip, turning a panic into a test failure, and
// checks the transport's contract: a response or an error, never both or
// neither.
func roundTrip(t testing.TB, tr http.RoundTripper, req *http.Request) (res *http.Response, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("RoundTrip panicked: %v", p)
		}
	}()
	res, err = tr.RoundTrip(req)
	if (res == nil) == (err == nil) {
		t.Fatalf("RoundTrip returned response %v and error %v", res, err)
	}
	return res, err
}

func newRequest(t testing.TB, ctx context.Context, method, u string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// An answer that arrives exactly when an attempt's timer fires is either
// taken or treated as late, never lost: the transport used to return no
// response and no error there, and its caller panicked.
func TestAttemptTimerBoundary(t *testing.T) {
	t.Run("timer fired, its function not run yet", func(t *testing.T) {
		var b bodies
		calls := 0
		tr := &retryTransport{
			next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				calls++
				return b.response(r, http.StatusOK, nil, "ok"), nil
			}),
			maxRetries: 2, maxWait: time.Minute, timeout: time.Minute, sleep: (&noSleep{}).sleep,
			afterFunc: func(d time.Duration, f func()) stopper {
				if calls == 0 {
					return firedTimer{} // the first attempt's answer meets its timer
				}
				return time.AfterFunc(d, f)
			},
		}
		res, err := roundTrip(t, tr, newRequest(t, context.Background(), http.MethodGet, "https://graph.example/v1.0/users/delta", nil))
		if err != nil || res.StatusCode != http.StatusOK || calls != 2 {
			t.Fatalf("got %v, %v after %d calls; want the second attempt's answer", res, err, calls)
		}
		res.Body.Close()
		if n := b.open(); n != 0 {
			t.Fatalf("%d bodies left open", n)
		}
	})
	t.Run("the caller's context ends as the timer fires", func(t *testing.T) {
		var b bodies
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		tr := &retryTransport{
			next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				<-r.Context().Done()                                // the attempt's timer fired...
				cancel()                                            // ...and the caller gives up at the same moment,
				return b.response(r, http.StatusOK, nil, "ok"), nil // as the answer arrives
			}),
			maxRetries: 2, maxWait: time.Minute, timeout: time.Millisecond, sleep: (&noSleep{}).sleep,
		}
		res, err := roundTrip(t, tr, newRequest(t, ctx, http.MethodGet, "https://graph.example/v1.0/users/delta", nil))
		if res != nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, %v; want the caller's cancellation", res, err)
		}
		if n := b.open(); n != 0 {
			t.Fatalf("%d bodies left open", n)
		}
	})
	t.Run("a late answer when no retry is left", func(t *testing.T) {
		var b bodies
		tr := &retryTransport{
			next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				return b.response(r, http.StatusOK, nil, "ok"), nil
			}),
			timeout: time.Minute, sleep: (&noSleep{}).sleep,
			afterFunc: func(time.Duration, func()) stopper { return firedTimer{} },
		}
		_, err := roundTrip(t, tr, newRequest(t, context.Background(), http.MethodGet, "https://graph.example/v1.0/users/delta", nil))
		if !IsNetwork(err) || !strings.Contains(err.Error(), "no answer within 1m0s, 1 times") {
			t.Fatalf("got %v", err)
		}
		if n := b.open(); n != 0 {
			t.Fatalf("%d bodies left open", n)
		}
	})
}

// script answers each attempt in turn; past its end, 200.
func script(b *bodies, calls *int, answers ...func(r *http.Request) *http.Response) roundTripFunc {
	return func(r *http.Request) (*http.Response, error) {
		i := *calls
		*calls++
		if i < len(answers) {
			return answers[i](r), nil
		}
		return b.response(r, http.StatusOK, nil, "done"), nil
	}
}

func status(b *bodies, code int, retryAfter string) func(r *http.Request) *http.Response {
	return func(r *http.Request) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return b.response(r, code, h, `{"error":{"code":"TooManyRequests"}}`)
	}
}

// opaqueReader hides its type, so http.NewRequest sets no GetBody.
type opaqueReader struct{ io.Reader }

// A body is sent whole on every attempt, compressed or not, whether the
// request can rewind it itself or not.
func TestRetryResendsBody(t *testing.T) {
	plain := []byte(`{"ids":["6f1b2a3c-1111-4222-8333-944445555666"],"types":["user"]}`)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(plain)
	zw.Close()
	for _, tc := range []struct {
		name     string
		body     func() io.Reader
		encoding string
	}{
		{"gzip, no GetBody", func() io.Reader { return opaqueReader{bytes.NewReader(zipped.Bytes())} }, "gzip"},
		{"plain, no GetBody", func() io.Reader { return opaqueReader{bytes.NewReader(plain)} }, ""},
		{"plain, with GetBody", func() io.Reader { return bytes.NewReader(plain) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bodies
			var got [][]byte
			calls := 0
			answers := script(&b, &calls, status(&b, 429, "1"), status(&b, 503, ""), status(&b, 504, "0"))
			tr := &retryTransport{
				next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
					body, err := io.ReadAll(r.Body)
					r.Body.Close()
					if err != nil || r.Header.Get("Content-Encoding") != tc.encoding {
						t.Errorf("attempt %d: %v, encoding %q", calls, err, r.Header.Get("Content-Encoding"))
					}
					got = append(got, body)
					return answers(r)
				}),
				maxRetries: 4, maxWait: time.Minute, timeout: time.Minute, sleep: (&noSleep{}).sleep,
			}
			req := newRequest(t, context.Background(), http.MethodPost, "https://graph.example/v1.0/directoryObjects/getByIds", tc.body())
			req.Header.Set("Content-Encoding", tc.encoding)
			res, _ := roundTrip(t, tr, req)
			res.Body.Close()
			if res.StatusCode != 200 || len(got) != 4 {
				t.Fatalf("status %d after %d attempts", res.StatusCode, len(got))
			}
			for i, g := range got {
				if tc.encoding == "gzip" {
					zr, err := gzip.NewReader(bytes.NewReader(g))
					if err != nil {
						t.Fatalf("attempt %d: %v", i, err)
					}
					g, _ = io.ReadAll(zr)
				}
				if !bytes.Equal(g, plain) {
					t.Fatalf("attempt %d sent %q", i, g)
				}
			}
			if n := b.open(); n != 0 {
				t.Fatalf("%d bodies left open", n)
			}
		})
	}
}

// Without Retry-After the waits double; an HTTP-date Retry-After is read as
// a date; the observer hears every wait.
func TestRetryWaits(t *testing.T) {
	date := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name    string
		answers func(b *bodies) []func(*http.Request) *http.Response
		check   func(waits []time.Duration) bool
	}{
		{"no Retry-After: exponential", func(b *bodies) []func(*http.Request) *http.Response {
			return []func(*http.Request) *http.Response{status(b, 429, ""), status(b, 503, ""), status(b, 429, "soon"), status(b, 504, "")}
		}, func(w []time.Duration) bool {
			return len(w) == 4 && w[0] == time.Second && w[1] == 2*time.Second && w[2] == 4*time.Second && w[3] == 8*time.Second
		}},
		{"HTTP-date Retry-After", func(b *bodies) []func(*http.Request) *http.Response {
			return []func(*http.Request) *http.Response{status(b, 503, date)}
		}, func(w []time.Duration) bool { return len(w) == 1 && w[0] > 20*time.Second && w[0] <= 30*time.Second }},
		{"seconds, then none", func(b *bodies) []func(*http.Request) *http.Response {
			return []func(*http.Request) *http.Response{status(b, 429, "7"), status(b, 429, "")}
		}, func(w []time.Duration) bool { return len(w) == 2 && w[0] == 7*time.Second && w[1] == time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bodies
			calls := 0
			sleeper := &noSleep{}
			var observed []time.Duration
			tr := &retryTransport{next: script(&b, &calls, tc.answers(&b)...), maxRetries: 4, maxWait: time.Minute, timeout: time.Minute, sleep: sleeper.sleep}
			ctx := WithWaitObserver(context.Background(), func(d time.Duration) { observed = append(observed, d) })
			res, _ := roundTrip(t, tr, newRequest(t, ctx, http.MethodGet, "https://graph.example/v1.0/users/delta", nil))
			res.Body.Close()
			if res.StatusCode != 200 || !tc.check(sleeper.waits) || fmt.Sprint(observed) != fmt.Sprint(sleeper.waits) {
				t.Fatalf("status %d, waits %v, observed %v", res.StatusCode, sleeper.waits, observed)
			}
			if n := b.open(); n != 0 {
				t.Fatalf("%d bodies left open", n)
			}
		})
	}
}

// A Retry-After beyond MaxWait, or past the last retry, goes to the caller
// with its body unread.
func TestRetryAnswersTheCaller(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter string
		maxRetries int
		wantWaits  int
	}{
		{"beyond MaxWait", "600", 4, 0},
		{"past the last retry", "1", 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bodies
			calls := 0
			sleeper := &noSleep{}
			throttle := status(&b, 429, tc.retryAfter)
			tr := &retryTransport{next: script(&b, &calls, throttle, throttle, throttle, throttle, throttle), maxRetries: tc.maxRetries,
				maxWait: 2 * time.Minute, timeout: time.Minute, sleep: sleeper.sleep}
			res, _ := roundTrip(t, tr, newRequest(t, context.Background(), http.MethodGet, "https://graph.example/v1.0/users/delta", nil))
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 429 || res.Header.Get("Retry-After") != tc.retryAfter || !strings.Contains(string(body), "TooManyRequests") ||
				len(sleeper.waits) != tc.wantWaits || calls != tc.wantWaits+1 {
				t.Fatalf("status %d %q, %d waits, %d calls", res.StatusCode, body, len(sleeper.waits), calls)
			}
			if n := b.open(); n != 0 {
				t.Fatalf("%d bodies left open", n)
			}
		})
	}
}

// Cancelled while waiting out a Retry-After: the wait ends, nothing is sent
// again.
func TestRetryCancelledDuringWait(t *testing.T) {
	var b bodies
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	tr := &retryTransport{
		next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls++
			go cancel() // while the transport waits
			return status(&b, 429, "3600")(r), nil
		}),
		maxRetries: 4, maxWait: 2 * time.Hour, timeout: time.Minute, sleep: sleepCtx,
	}
	res, err := roundTrip(t, tr, newRequest(t, ctx, http.MethodGet, "https://graph.example/v1.0/users/delta", nil))
	if res != nil || !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("%v, %v after %d calls", res, err, calls)
	}
	if n := b.open(); n != 0 {
		t.Fatalf("%d bodies left open", n)
	}
}

// FuzzRetryTransport drives the transport with an inner RoundTripper that
// answers each attempt as the input says: early, at or after the attempt's
// timer, with an error, a status and a Retry-After, or cancelling the
// caller. Whatever happens, RoundTrip returns a response or an error (never
// both, never neither), makes at most MaxRetries+1 attempts, and every body
// it was given is closed once the caller closes the response.
func FuzzRetryTransport(f *testing.F) {
	f.Add([]byte{0, 0, 0}, uint8(2), uint8(255))
	f.Add([]byte{1, 0, 1, 1, 1, 2, 0, 0, 0}, uint8(3), uint8(255))
	f.Add([]byte{0, 2, 0, 0, 3, 0}, uint8(2), uint8(255))          // late answers
	f.Add([]byte{0, 4, 0, 0, 0, 0}, uint8(2), uint8(0))            // cancelled while answering at the timer
	f.Add([]byte{2, 0, 3, 2, 0, 4, 0, 0, 0}, uint8(4), uint8(1))   // 503 with a date, cancelled on the second attempt
	f.Add([]byte{5, 0, 0, 5, 1, 0, 1, 0, 2}, uint8(2), uint8(255)) // errors, then a long Retry-After
	f.Add([]byte{6, 0, 0, 6, 0, 0}, uint8(1), uint8(255))          // a contract-breaking inner transport
	f.Add([]byte{1, 3, 1, 3, 4, 4, 2, 2, 3}, uint8(0), uint8(2))
	f.Fuzz(func(t *testing.T, program []byte, maxRetries uint8, cancelAt uint8) {
		const timeout = 2 * time.Millisecond
		var b bodies
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		attempts := 0
		inner := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			i := attempts
			attempts++
			var op [3]byte
			if len(program) > 0 {
				copy(op[:], program[(3*i)%len(program):])
			}
			if uint8(i) == cancelAt {
				defer cancel()
			}
			switch op[1] % 5 { // when to answer
			case 1:
				time.Sleep(timeout / 2)
			case 2:
				time.Sleep(timeout + time.Millisecond) // late, ignoring the context
			case 3:
				<-r.Context().Done() // exactly as the timer fires
			case 4:
				<-r.Context().Done()
				cancel() // and the caller gives up at once
			}
			h := http.Header{}
			switch op[2] % 5 {
			case 1:
				h.Set("Retry-After", "1")
			case 2:
				h.Set("Retry-After", "86400") // beyond MaxWait
			case 3:
				h.Set("Retry-After", time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat))
			case 4:
				h.Set("Retry-After", "soon")
			}
			switch op[0] % 7 {
			case 0:
				return b.response(r, 200, h, "ok"), nil
			case 1:
				return b.response(r, 429, h, "throttled"), nil
			case 2:
				return b.response(r, 503, h, "unavailable"), nil
			case 3:
				return b.response(r, 504, h, "gateway"), nil
			case 4:
				return b.response(r, 500, h, "error"), nil
			case 5:
				return nil, errors.New("connection reset")
			}
			return b.response(r, 200, h, "both"), errors.New("a response and an error")
		})
		tr := &retryTransport{next: inner, maxRetries: int(maxRetries % 6), maxWait: time.Minute, timeout: timeout, sleep: (&noSleep{}).sleep}
		res, err := roundTrip(t, tr, newRequest(t, ctx, http.MethodGet, "https://graph.example/v1.0/users/delta?$skiptoken=secret", nil))
		if res != nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the query in %v", err)
		}
		if attempts > int(maxRetries%6)+1 {
			t.Errorf("%d attempts for %d retries", attempts, maxRetries%6)
		}
		if n := b.open(); n != 0 {
			t.Errorf("%d bodies left open", n)
		}
	})
}

// A Graph that is down (no answer, or only 503/504) is retried only while
// the request's attempts and waits stay within maxDown, so a run against
// it ends in bounded time; 429s are waited for as Graph says, outside it.
func TestRetryGivesUpOnADownGraph(t *testing.T) {
	t.Run("503 with Retry-After", func(t *testing.T) {
		var b bodies
		calls := 0
		sleeper := &noSleep{}
		tr := &retryTransport{next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls++
			return status(&b, 503, "30")(r), nil
		}), maxRetries: 4, maxWait: 2 * time.Minute, timeout: time.Minute, maxDown: 100 * time.Second, sleep: sleeper.sleep}
		res, _ := roundTrip(t, tr, newRequest(t, context.Background(), http.MethodGet, "https://graph.example/v1.0/users/delta", nil))
		res.Body.Close()
		var waited time.Duration
		for _, w := range sleeper.waits {
			waited += w
		}
		// Unbounded, the 4 retries would wait 2 minutes.
		if res.StatusCode != 503 || waited > 100*time.Second || len(sleeper.waits) != 3 || calls != 4 {
			t.Fatalf("status %d after %d calls, waits %v", res.StatusCode, calls, sleeper.waits)
		}
		if n := b.open(); n != 0 {
			t.Fatalf("%d bodies left open", n)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		calls := 0
		sleeper := &noSleep{}
		tr := &retryTransport{next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls++
			<-r.Context().Done() // a Graph that accepts and never answers
			return nil, r.Context().Err()
		}), maxRetries: 4, maxWait: 2 * time.Minute, timeout: 10 * time.Millisecond, maxDown: 5 * time.Second, sleep: sleeper.sleep}
		_, err := roundTrip(t, tr, newRequest(t, context.Background(), http.MethodGet, "https://graph.example/v1.0/users/delta", nil))
		// Waits of 1 s and 2 s fit 5 s; the next, 4 s, would not.
		if !IsNetwork(err) || !strings.Contains(err.Error(), "no answer within 10ms, 3 times") || calls != 3 ||
			fmt.Sprint(sleeper.waits) != "[1s 2s]" {
			t.Fatalf("%v after %d calls, waits %v", err, calls, sleeper.waits)
		}
	})
	t.Run("429 is not bounded by it", func(t *testing.T) {
		var b bodies
		calls := 0
		sleeper := &noSleep{}
		tr := &retryTransport{next: script(&b, &calls, status(&b, 429, "60"), status(&b, 429, "60"), status(&b, 503, "")),
			maxRetries: 4, maxWait: 2 * time.Minute, timeout: time.Minute, maxDown: 90 * time.Second, sleep: sleeper.sleep}
		res, _ := roundTrip(t, tr, newRequest(t, context.Background(), http.MethodGet, "https://graph.example/v1.0/users/delta", nil))
		res.Body.Close()
		if res.StatusCode != 200 || calls != 4 {
			t.Fatalf("status %d after %d calls, waits %v", res.StatusCode, calls, sleeper.waits)
		}
	})
}
