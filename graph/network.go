package graph

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	gosync "sync"
	"syscall"
)

// failureSlot holds the last network failure of a call's requests.
// azidentity reports a token request that got no answer by text only, so
// the transport also leaves its typed error here, where the call finds it.
type failureSlot struct {
	mu  gosync.Mutex
	err *Error
}

type failureSlotKey struct{}

// withFailureSlot gives a call's context a slot for network failures.
func withFailureSlot(ctx context.Context) context.Context {
	if _, ok := ctx.Value(failureSlotKey{}).(*failureSlot); ok {
		return ctx
	}
	return context.WithValue(ctx, failureSlotKey{}, &failureSlot{})
}

func noteFailure(ctx context.Context, e *Error) {
	if s, ok := ctx.Value(failureSlotKey{}).(*failureSlot); ok {
		s.mu.Lock()
		s.err = e
		s.mu.Unlock()
	}
}

// failureFrom returns a copy of the network failure the transport noted
// for the call of ctx, or nil.
func failureFrom(ctx context.Context) *Error {
	if ctx == nil {
		return nil
	}
	s, ok := ctx.Value(failureSlotKey{}).(*failureSlot)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		return nil
	}
	e := *s.err
	return &e
}

// requestLine is a request's method, host and path: never the query.
func requestLine(req *http.Request) string {
	return req.Method + " " + req.URL.Host + req.URL.Path
}

// networkError describes a request that got no answer, by the error's type.
func networkError(req *http.Request, err error) *Error {
	e := &Error{Kind: KindNetwork, Request: requestLine(req), Host: req.URL.Host, Message: describeNetwork(req.URL.Hostname(), err), Err: err}
	noteFailure(req.Context(), e)
	return e
}

func describeNetwork(host string, err error) string {
	var (
		dnsErr     *net.DNSError
		unknownCA  x509.UnknownAuthorityError
		badHost    x509.HostnameError
		invalid    x509.CertificateInvalidError
		verify     *tls.CertificateVerificationError
		recordErr  tls.RecordHeaderError
		alert      tls.AlertError
		opErr      *net.OpError
		netErr     net.Error
		proxyError = func() bool { return errors.As(err, &opErr) && opErr.Op == "proxyconnect" }
	)
	switch {
	case errors.Is(err, errNoAnswer):
		return err.Error()
	case proxyError():
		return "the proxy " + addrOf(opErr) + " could not be reached (" + syscallWords(opErr.Err) + ")"
	case errors.As(err, &dnsErr):
		switch {
		case dnsErr.IsNotFound:
			return "DNS lookup of " + dnsErr.Name + " found no such host"
		case dnsErr.IsTimeout:
			return "DNS lookup of " + dnsErr.Name + " timed out"
		}
		return "DNS lookup of " + dnsErr.Name + " failed"
	case errors.As(err, &unknownCA):
		return "TLS: the server's certificate is signed by an authority this machine does not trust"
	case errors.As(err, &badHost):
		return "TLS: the server's certificate is not valid for " + host
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return "TLS: the server's certificate has expired or is not yet valid"
		}
		return "TLS: the server's certificate is not valid"
	case errors.As(err, &verify):
		return "TLS: the server's certificate was not accepted"
	case errors.As(err, &recordErr):
		return "TLS handshake failed: the server did not answer in TLS (is it plain HTTP?)"
	case errors.As(err, &alert):
		return "TLS handshake failed: the server sent the alert \"" + alert.Error() + "\""
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (nothing listens at " + hostPort(err, host) + ")"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		if opErr.Timeout() {
			return "connecting to " + hostPort(err, host) + " timed out"
		}
		return "could not connect to " + hostPort(err, host) + " (" + syscallWords(opErr.Err) + ")"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "the connection timed out"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection was closed before an answer came"
	}
	return "the request failed (" + Redact(err.Error()) + ")"
}

// hostPort is the address a dial failed for, or host.
func hostPort(err error, host string) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		if a := addrOf(opErr); a != "" {
			return a
		}
	}
	return host
}

func addrOf(opErr *net.OpError) string {
	if opErr.Addr != nil {
		return opErr.Addr.String()
	}
	return ""
}

// syscallWords names the common socket errors in words.
func syscallWords(err error) string {
	switch {
	case err == nil:
		return "failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ETIMEDOUT):
		return "timed out"
	}
	return Redact(err.Error())
}
