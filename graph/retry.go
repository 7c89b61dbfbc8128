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

// retryTransport is the one request path to Graph: it answers 429 and
// 503/504 by waiting as Retry-After says (or backing off when it says
// nothing), a bounded number of times, and reports each wait.
type retryTransport struct {
	next       http.RoundTripper
	maxRetries int
	maxWait    time.Duration // a longer Retry-After is not waited for here: the run comes back later
	timeout    time.Duration // for an answer's headers, per attempt; 0: none
	sleep      func(ctx context.Context, d time.Duration) error
}

// errNoAnswer is a request whose answer did not start within the timeout.
var errNoAnswer = errors.New("no answer in time")

type waitObserverKey struct{}

// WithWaitObserver returns a context whose Graph requests report every
// throttling wait to observe (a run counts them).
func WithWaitObserver(ctx context.Context, observe func(time.Duration)) context.Context {
	return context.WithValue(ctx, waitObserverKey{}, observe)
}

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A body must be sent again on a retry; the SDK's bodies are small.
	if req.Body != nil && req.GetBody == nil {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	backoff := time.Second
	for attempt := 0; ; attempt++ {
		res, err := t.send(req)
		timedOut := errors.Is(err, errNoAnswer)
		if timedOut && attempt < t.maxRetries {
			if err := t.sleep(req.Context(), backoff); err != nil {
				return nil, err
			}
			backoff *= 2
			req = req.Clone(req.Context())
			if req.GetBody != nil {
				if req.Body, err = req.GetBody(); err != nil {
					return nil, err
				}
			}
			continue
		}
		if timedOut {
			return nil, fmt.Errorf("%s %s: no answer within %s, %d times", req.Method, req.URL.Host, t.timeout, attempt+1)
		}
		if err != nil || !retryable(res.StatusCode) || attempt >= t.maxRetries {
			return res, err
		}
		wait := parseRetryAfter(res.Header.Get("Retry-After"), time.Now())
		if wait == 0 {
			wait = backoff
			backoff *= 2
		}
		if wait > t.maxWait {
			return res, nil // the caller sees the 429 and its Retry-After
		}
		io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		res.Body.Close()
		if observe, ok := req.Context().Value(waitObserverKey{}).(func(time.Duration)); ok {
			observe(wait)
		}
		if err := t.sleep(req.Context(), wait); err != nil {
			return nil, err
		}
		// A RoundTripper must not change the request it was given: send a copy.
		req = req.Clone(req.Context())
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
	}
}

// send is one attempt, whose answer must start within the timeout; the
// body may take as long as it takes.
func (t *retryTransport) send(req *http.Request) (*http.Response, error) {
	if t.timeout <= 0 {
		return t.next.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(t.timeout, func() { cancel(errNoAnswer) })
	res, err := t.next.RoundTrip(req.WithContext(ctx))
	if !timer.Stop() || err != nil {
		if err == nil {
			res.Body.Close() // the timer won the race
		}
		late := context.Cause(ctx) == errNoAnswer && req.Context().Err() == nil
		cancel(nil)
		if late {
			return nil, errNoAnswer
		}
		return nil, err
	}
	res.Body = &cancelOnClose{ReadCloser: res.Body, cancel: func() { cancel(nil) }}
	return res, nil
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
