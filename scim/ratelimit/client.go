package ratelimit

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddr is the key of per-address limits and the address logs show:
// the peer's IP address (without the port: one client opens many
// connections), unless the peer is a trusted proxy. Then it is the
// right-most address of the forwarding chain that is not itself a trusted
// proxy: each proxy appends the address it received from, so everything to
// the left of the first untrusted hop may have been written by the client.
//
// The chain is X-Forwarded-For, or, in a request without it, the for=
// parameters of Forwarded (RFC 7239 §5.2). X-Forwarded-For comes first
// because most proxies append it and pass a client's Forwarded through
// untouched; a proxy that sets only Forwarded must drop a client's
// X-Forwarded-For.
func ClientAddr(r *http.Request, trusted []netip.Prefix) string {
	peer, ok := parseNode(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	chain := forwardedFor(r.Header)
	last := peer // the nearest hop known to be a trusted proxy
	for i := len(chain) - 1; i >= 0; i-- {
		a, ok := parseNode(chain[i])
		if !ok {
			// "unknown" or an obfuscated node (RFC 7239 §6.2, §6.3): the
			// trusted proxy that wrote it did not know the client either.
			return last.String()
		}
		if !isTrusted(a, trusted) {
			return a.String()
		}
		last = a
	}
	return last.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor lists the hops a request names, nearest last.
func forwardedFor(h http.Header) []string {
	var out []string
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, line := range xff {
			for _, hop := range strings.Split(line, ",") {
				out = append(out, strings.TrimSpace(hop))
			}
		}
		return out
	}
	for _, line := range h.Values("Forwarded") {
		for _, element := range splitQuoted(line, ',') {
			hop := ""
			for _, pair := range splitQuoted(element, ';') {
				k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
				if strings.EqualFold(strings.TrimSpace(k), "for") {
					hop = strings.Trim(strings.TrimSpace(v), `"`)
				}
			}
			// An element without for= says nothing of the client: keep a
			// place for it, so it cannot be skipped over as trusted.
			out = append(out, hop)
		}
	}
	return out
}

// splitQuoted splits s at sep outside double quotes.
func splitQuoted(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			quoted = !quoted
		case s[i] == '\\' && quoted:
			i++
		case s[i] == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// parseNode reads an address as peers and proxies write it: 192.0.2.1,
// 192.0.2.1:4711, 2001:db8::1, [2001:db8::1]:4711.
func parseNode(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
