package scim

import (
	"bufio"
	"bytes"
	"context"
	"net/http"

	"github.com/entrasync/entrasync/store"
)

// memberChunk is how many of a group's members are read from the store and
// held at once while an answer is written: a list of groups, or one group,
// costs this much memory per request whatever the groups' sizes.
const memberChunk = 1000

// listHead is a ListResponse without its Resources (RFC 7644 §3.4.2).
type listHead struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	StartIndex   int      `json:"startIndex"`
	ItemsPerPage int      `json:"itemsPerPage"`
}

type listResponse struct {
	listHead
	Resources []any `json:"Resources"`
}

// groupDoc is a group rendered without its members, which are streamed.
type groupDoc struct {
	id  string
	doc map[string]any
}

// memberValue is one element of a group's members (RFC 7643 §4.2).
type memberValue struct {
	Value   string `json:"value,omitempty"`
	Ref     string `json:"$ref,omitempty"`
	Type    string `json:"type,omitempty"`
	Display string `json:"display,omitempty"`
}

// streamsMembers reports whether an answer of ep's resources under p
// carries a group's members, which are then streamed.
func (s *Server) streamsMembers(ep *endpoint, p projection) bool {
	return ep.kind == store.GroupKind && p.wants(ep.related)
}

// memberFields is which sub-attributes of members a projection returns.
type memberFields struct{ value, ref, typ, display bool }

func (p projection) memberFields() memberFields {
	f := memberFields{true, true, true, true}
	if p.include != nil {
		whole, subs := false, map[string]bool{}
		for _, r := range p.include {
			if r.Ext == nil && r.Attr != nil && r.Attr.Name == "members" {
				if r.Sub == nil {
					whole = true
				} else {
					subs[r.Sub.Name] = true
				}
			}
		}
		if !whole {
			f = memberFields{subs["value"], subs["$ref"], subs["type"], subs["display"]}
		}
	}
	for _, r := range p.exclude {
		if r.Ext == nil && r.Attr != nil && r.Attr.Name == "members" && r.Sub != nil {
			switch r.Sub.Name {
			case "value":
				f.value = false
			case "$ref":
				f.ref = false
			case "type":
				f.typ = false
			case "display":
				f.display = false
			}
		}
	}
	return f
}

func (s *Server) memberValue(m store.Member, f memberFields) memberValue {
	var v memberValue
	if f.value {
		v.Value = m.ID
	}
	if f.ref {
		ep := userEndpoint
		if m.Kind == store.GroupKind {
			ep = groupEndpoint
		}
		v.Ref = s.location(ep, m.ID)
	}
	if f.typ {
		v.Type = string(m.Kind)
	}
	if f.display {
		v.Display = m.Display
	}
	return v
}

// streamGroups writes groups, each with all its members, as one resource
// (head nil) or as a ListResponse. Members are read memberChunk at a time,
// by id, and written out before the next chunk is read, so memory stays
// bounded whatever the groups' sizes.
//
// The first group's first chunk is read before anything is sent, so a
// failure there (and any failure for a group of up to memberChunk members)
// is an ordinary error answer. A failure after the status is sent cannot
// be answered: it is logged at ERROR and the connection is aborted
// (http.ErrAbortHandler), so the client sees a broken response rather than
// a truncated one that parses as valid JSON. A client that goes away
// mid-stream is noted as such, not as an error.
func (s *Server) streamGroups(w http.ResponseWriter, r *http.Request, status int, groups []groupDoc, head *listHead, p projection) error {
	ctx := r.Context()
	tenant := tenantOf(ctx).ID
	fields := p.memberFields()
	var first []store.Member
	if len(groups) > 0 && r.Method != http.MethodHead {
		var err error
		if first, err = s.members.MembersPage(ctx, tenant, groups[0].id, "", memberChunk); err != nil {
			return err
		}
	}
	w.Header().Set("Content-Type", "application/scim+json; charset=utf-8")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	out := &stickyWriter{w: bufio.NewWriterSize(w, 32<<10)}
	if head != nil {
		b, err := marshal(head)
		if err != nil {
			s.abort(w, r, out, err)
		}
		out.write(b[:len(b)-1]) // the object stays open for Resources
		out.writeString(`,"Resources":[`)
	}
	for i, g := range groups {
		if i > 0 {
			out.writeString(",")
		}
		if err := s.writeGroup(ctx, out, tenant, g, first, i == 0, fields); err != nil {
			s.abort(w, r, out, err)
			return nil
		}
	}
	if head != nil {
		out.writeString("]}")
	}
	if err := out.flush(); err != nil {
		s.abort(w, r, out, err)
	}
	return nil
}

// writeGroup writes one group as a JSON object; its members go last, read
// chunk by chunk (first is the first chunk when prefetched).
func (s *Server) writeGroup(ctx context.Context, out *stickyWriter, tenant int64, g groupDoc, first []store.Member, prefetched bool, f memberFields) error {
	doc, err := marshal(g.doc)
	if err != nil {
		return err
	}
	page := first
	if !prefetched {
		if page, err = s.members.MembersPage(ctx, tenant, g.id, "", memberChunk); err != nil {
			return err
		}
	}
	if len(page) == 0 { // no members: no attribute, as for any unassigned one
		out.write(doc)
		return out.err
	}
	out.write(bytes.TrimSuffix(doc, []byte("}")))
	out.writeString(`,"members":[`)
	for n := 0; ; {
		for _, m := range page {
			if n > 0 {
				out.writeString(",")
			}
			b, err := marshal(s.memberValue(m, f))
			if err != nil {
				return err
			}
			out.write(b)
			n++
		}
		if out.err != nil {
			return out.err
		}
		if len(page) < memberChunk {
			break
		}
		if page, err = s.members.MembersPage(ctx, tenant, g.id, page[len(page)-1].ID, memberChunk); err != nil {
			return err
		}
	}
	out.writeString("]}")
	return out.err
}

// abort ends an answer whose status was sent and that cannot be finished.
func (s *Server) abort(w http.ResponseWriter, r *http.Request, out *stickyWriter, err error) {
	rec := recorder(w)
	if clientGone(r) || (out.err != nil && err == out.err) {
		// The client closed the connection (or it broke): nothing to tell it.
		if rec != nil {
			rec.clientGone = true
		}
		s.log.DebugContext(r.Context(), "client went away mid-answer", "method", r.Method, "err", err)
		panic(http.ErrAbortHandler)
	}
	if rec != nil {
		rec.aborted = true
	}
	s.log.ErrorContext(r.Context(), "answer aborted mid-stream: the connection is closed so the client cannot take a partial answer for a whole one",
		"method", r.Method, "path", r.URL.Path, "err", err)
	panic(http.ErrAbortHandler)
}

// stickyWriter keeps the first write error and writes nothing after it.
type stickyWriter struct {
	w   *bufio.Writer
	err error
}

func (s *stickyWriter) write(b []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(b)
	}
}

func (s *stickyWriter) writeString(str string) {
	if s.err == nil {
		_, s.err = s.w.WriteString(str)
	}
}

func (s *stickyWriter) flush() error {
	if s.err == nil {
		s.err = s.w.Flush()
	}
	return s.err
}
