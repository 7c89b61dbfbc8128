package scim

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/entrasync/entrasync/store"
	"github.com/entrasync/entrasync/sync"
)

// requestNote is what a request did, in words, filled in as it is served
// and told in its log line and activity record.
type requestNote struct {
	id           string // the request id, also sent as X-Request-Id
	resourceType string
	resourceID   string
	subject      string
	summary      string
	failed       bool
}

type noteKey struct{}

func noteOf(ctx context.Context) *requestNote {
	n, _ := ctx.Value(noteKey{}).(*requestNote)
	if n == nil {
		return &requestNote{} // a handler called outside route (tests): told nowhere
	}
	return n
}

// noteWrite notes what a write did: the resource and its effects in words.
func noteWrite(r *http.Request, ep *endpoint, id string, effects []sync.Effect) {
	n := noteOf(r.Context())
	n.resourceType, n.resourceID = string(ep.kind), id
	if len(effects) == 0 {
		n.summary = "Nothing changed (replay)"
		return
	}
	words := make([]string, len(effects))
	for i, e := range effects {
		words[i] = e.Words()
		if e.ID == id && e.Subject != "" {
			n.subject = e.Subject
		}
	}
	n.summary = strings.Join(words, "; ")
}

// noteRead notes what a read answered.
func noteRead(r *http.Request, ep *endpoint, res store.Resource) {
	n := noteOf(r.Context())
	n.resourceType, n.resourceID = string(ep.kind), res.ID
	n.subject = res.Str("userName")
	if ep.kind == store.GroupKind {
		n.subject = res.Str("displayName")
	}
	n.summary = "Read " + strings.ToLower(string(ep.kind)) + " " + cmp.Or(n.subject, res.ID)
}

// noteList notes what a list or search answered.
func noteList(r *http.Request, ep *endpoint, filtered bool, found, total int) {
	n := noteOf(r.Context())
	what := strings.ToLower(ep.name)
	switch {
	case filtered && total == 0:
		n.summary = "Searched " + what + ": none matched"
	case filtered:
		n.summary = fmt.Sprintf("Searched %s: %d matched", what, total)
	default:
		n.summary = fmt.Sprintf("Listed %d of %d %s", found, total, what)
	}
}

// noteFailure notes why a request failed: the detail its client was told,
// without the values it quoted (they may be personal data).
func noteFailure(r *http.Request, detail string) {
	n := noteOf(r.Context())
	n.failed, n.summary = true, scrubDetail(detail)
}

// quoted finds a double-quoted literal in an error detail.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// attributeLike is a quoted literal that names an attribute or a schema,
// which is kept: "filter uses attribute \"mail\"".
var attributeLike = regexp.MustCompile(`^"[A-Za-z][A-Za-z0-9_.$:-]*"$`)

// scrubDetail replaces the values an error detail quotes with "…", keeping
// attribute names, and the userName of a conflict (a userName may be kept:
// it is how ops find a person).
func scrubDetail(detail string) string {
	keepFirst := strings.HasPrefix(detail, "userName ")
	var out strings.Builder
	last := 0
	for _, m := range quoted.FindAllStringIndex(detail, -1) {
		q := detail[m[0]:m[1]]
		keep := keepFirst || attributeLike.MatchString(q) || strings.HasSuffix(detail[:m[0]], `W/`) // an ETag is a version
		keepFirst = false
		out.WriteString(detail[last:m[0]])
		if keep {
			out.WriteString(q)
		} else {
			out.WriteString(`"…"`)
		}
		last = m[1]
	}
	out.WriteString(detail[last:])
	return out.String()
}

// Request ids: a random prefix per process and a counter, so that making
// one costs no system call.
var (
	requestPrefix = func() string {
		var b [6]byte
		rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}()
	requestCount atomic.Uint64
)

// RequestID is the client's X-Request-Id when it is a short token, else a
// new one: a proxy's id ties our log to its own.
func RequestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 && isToken(id) {
		return id
	}
	return requestPrefix + "-" + strconv.FormatUint(requestCount.Add(1), 36)
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// record queues the request's activity record. A request no tenant was
// found for (no token, a bad one) belongs to no tenant's activity: the log
// has it.
func (s *Server) record(r *http.Request, n *requestNote, method, endpoint string, status int, elapsed time.Duration, tokenID, provider string) {
	t := tenantOf(r.Context())
	if s.activity == nil || t.ID == 0 {
		return
	}
	summary := n.summary
	if summary == "" {
		summary = fmt.Sprintf("%s %s answered %d", method, endpoint, status)
	}
	s.activity.Record(store.Activity{TenantID: t.ID, At: time.Now(), Channel: store.ChannelPush, Provider: provider,
		Method: method, Endpoint: endpoint, Status: status, LatencyMS: elapsed.Milliseconds(), TokenID: tokenID,
		RequestID: n.id, ResourceType: n.resourceType, ResourceID: n.resourceID, Subject: n.subject,
		Summary: summary, Failed: n.failed || status >= 400})
}
