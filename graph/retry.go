package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// retryTransport is the one request path to Graph and the token endpoint:
// it answers 429 and 503/504 by waiting as Retry-After says (or backing off
// when it says nothing), a bounded number of times, reports each wait, and
// turns a request that got no answer into a KindNetwork *Error.
//
// Like every RoundTripper it returns a response or an error, never both and
// never neither.
type retryTransport struct {
	next       http.RoundTripper
	maxRetries int
	maxWait    time.Duration // a longer Retry-After is not waited for here: the run comes back later
	timeout    time.Duration // for an answer's headers, per attempt; 0: none
	// maxDown bounds a Graph that is down: once a request's attempts and
	// waits, with no answer or only 503/504, would pass it, the request is
	// not tried again, so a run against a dead Graph ends (and frees its
	// worker) in bounded time. 429s are not counted: Graph said when to
	// come back. 0: no bound.
	maxDown time.Duration
	sleep   func(ctx context.Context, d time.Duration) error
	// afterFunc starts an attempt's timer; time.AfterFunc unless a test
	// needs to choose when it fires.
	afterFunc func(d time.Duration, f func()) stopper
}

// stopper is the part of *time.Timer an attempt uses.
type stopper interface{ Stop() bool }

// errNoAnswer is a request whose answer did not start within the timeout.
var errNoAnswer = errors.New("no answer in time")

type waitObserverKey struct{}

// WithWaitObserver returns a context whose Graph requests report every
// throttling wait to observe (a run counts them).
func WithWaitObserver(ctx context.Context, observe func(time.Duration)) context.Context {
	return context.WithValue(ctx, waitObserverKey{}, observe)
}

// Observer hears of Graph requests as they happen, for metrics: each
// attempt (retries included) with its status (0: no answer came), each
// throttling wait, and each failure a call returns, by kind.
type Observer interface {
	GraphAttempt(status int, elapsed time.Duration)
	GraphWait(d time.Duration)
	GraphError(kind Kind)
}

type observerKey struct{}

// WithObserver returns a context whose Graph requests report to o.
func WithObserver(ctx context.Context, o Observer) context.Context {
	return context.WithValue(ctx, observerKey{}, o)
}

func observerOf(ctx context.Context) Observer {
	o, _ := ctx.Value(observerKey{}).(Observer)
	return o
}

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req, err := rewindable(req)
	if err != nil {
		return nil, err
	}
	ctx := req.Context()
	obs := observerOf(ctx)
	backoff := time.Second
	var spent time.Duration // on attempts, and on waits for a Graph that is down (not 429's)
	downBy := func(wait time.Duration) bool { return t.maxDown > 0 && spent+wait > t.maxDown }
	for attempt := 0; ; attempt++ {
		sent := time.Now()
		res, err := t.send(req)
		took := time.Since(sent)
		spent += took
		if obs != nil && (err == nil || ctx.Err() == nil) { // the caller's cancellation is no outcome of Graph's
			status := 0
			if res != nil {
				status = res.StatusCode
			}
			obs.GraphAttempt(status, took)
		}
		var wait time.Duration
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, err // the caller's cancellation, not the network's failure
		case errors.Is(err, errNoAnswer) && attempt < t.maxRetries && !downBy(backoff):
			wait, backoff = backoff, backoff*2
		case errors.Is(err, errNoAnswer):
			e := networkError(req, err)
			e.Message = fmt.Sprintf("no answer within %s, %d times", t.timeout, attempt+1)
			noteFailure(ctx, e)
			return nil, e
		case err != nil:
			return nil, networkError(req, err)
		case !retryable(res.StatusCode) || attempt >= t.maxRetries:
			return res, nil
		default:
			wait = parseRetryAfter(res.Header.Get("Retry-After"), time.Now())
			if wait == 0 {
				wait, backoff = backoff, backoff*2
			}
			if wait > t.maxWait {
				return res, nil // the caller sees the 429 and its Retry-After
			}
			if res.StatusCode != http.StatusTooManyRequests && downBy(wait) {
				return res, nil // Graph is down: the run fails, and the next cycle tries again
			}
			io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
			res.Body.Close()
			if observe, ok := ctx.Value(waitObserverKey{}).(func(time.Duration)); ok {
				observe(wait)
			}
			if obs != nil {
				obs.GraphWait(wait)
			}
		}
		if err := t.sleep(ctx, wait); err != nil {
			return nil, err
		}
		if res == nil || res.StatusCode != http.StatusTooManyRequests {
			spent += wait
		}
		// A RoundTripper must not change the request it was given: send a copy.
		req = req.Clone(ctx)
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
	}
}

// rewindable returns req, or a copy whose body can be sent again on a
// retry (the SDK's bodies are small).
func rewindable(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody || req.GetBody != nil {
		return req, nil
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	req = req.Clone(req.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return req, nil
}

// send is one attempt, whose answer must start within the timeout; the
// body may take as long as it takes. It returns a response or an error,
// whatever order the answer, the timer and the caller's context end in.
func (t *retryTransport) send(req *http.Request) (*http.Response, error) {
	if t.timeout <= 0 {
		return checked(t.next.RoundTrip(req))
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	after := t.afterFunc
	if after == nil {
		after = func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }
	}
	timer := after(t.timeout, func() { cancel(errNoAnswer) })
	res, err := checked(t.next.RoundTrip(req.WithContext(ctx)))
	// Stop reports false once the timer has fired, even if its function
	// has not run yet: the attempt's context is (about to be) cancelled,
	// so an answer in hand can no longer be read. It is late.
	inTime := timer.Stop()
	if err == nil && inTime {
		res.Body = &cancelOnClose{ReadCloser: res.Body, cancel: func() { cancel(nil) }}
		return res, nil
	}
	if res != nil {
		res.Body.Close()
	}
	cancel(nil)
	switch {
	case req.Context().Err() != nil:
		return nil, req.Context().Err() // the caller's end wins
	case !inTime:
		return nil, errNoAnswer
	}
	return nil, err
}

// checked holds the inner RoundTripper to its contract: exactly one of a
// response (with a body) and an error.
func checked(res *http.Response, err error) (*http.Response, error) {
	switch {
	case err != nil && res != nil:
		if res.Body != nil {
			res.Body.Close()
		}
		return nil, err
	case err == nil && res == nil:
		return nil, errors.New("the HTTP transport returned neither a response nor an error")
	case err == nil && res.Body == nil:
		res.Body = http.NoBody
	}
	return res, err
}

// cancelOnClose ends an attempt's context once its body is done with.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
