package scim

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/entrasync/entrasync/scim/filter"
	"github.com/entrasync/entrasync/scim/schema"
	"github.com/entrasync/entrasync/store"
)

// apiError is an answer that is not a success: RFC 7644 §3.12.
type apiError struct {
	Status   int
	ScimType string
	Detail   string
	// RetryAfter, when set, is sent as Retry-After (RFC 9110 §10.2.3).
	RetryAfter time.Duration
}

func (e *apiError) Error() string { return e.Detail }

func errorf(status int, scimType, detail string) *apiError {
	return &apiError{Status: status, ScimType: scimType, Detail: detail}
}

// errorBody is the SCIM Error message; status is a string, as RFC 7644 §3.12 has it.
type errorBody struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail,omitempty"`
}

// asAPIError maps any error to the answer a client sees. Errors that are
// not the client's are "Internal error", with the cause left to the log.
func asAPIError(err error) (e *apiError, internal bool) {
	var ae *apiError
	var se *schema.Error
	var fe *filter.Error
	var de *store.Error
	switch {
	case errors.As(err, &ae):
		return ae, false
	case errors.As(err, &se):
		return errorf(http.StatusBadRequest, se.ScimType, se.Detail), false
	case errors.As(err, &fe):
		return errorf(http.StatusBadRequest, "invalidFilter", fe.Error()), false
	case errors.As(err, &de):
		switch de.Code {
		case store.NotFound:
			return errorf(http.StatusNotFound, "", de.Message), false
		case store.Conflict:
			return errorf(http.StatusConflict, "uniqueness", de.Message), false
		case store.Precondition:
			return errorf(http.StatusPreconditionFailed, "", de.Message), false
		case store.Invalid:
			return errorf(http.StatusBadRequest, "invalidValue", de.Message), false
		case store.Busy:
			// The writer stayed taken: the service, not the request, is at
			// fault, and a retry soon will likely succeed (RFC 7644 §3.12).
			e := errorf(http.StatusServiceUnavailable, "", de.Message)
			e.RetryAfter = max(de.RetryAfter, time.Second)
			return e, false
		}
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return errorf(http.StatusRequestEntityTooLarge, "", "the request body is larger than "+strconv.FormatInt(tooBig.Limit, 10)+" bytes"), false
	}
	return errorf(http.StatusInternalServerError, "", "Internal error"), true
}

// filterError is the answer to a list the store refused to run. The filter
// is the only part of a query a client writes, so a query the store calls
// invalid is invalidFilter (RFC 7644 §3.4.2.2), not invalidValue.
func filterError(err error) error {
	var de *store.Error
	if errors.As(err, &de) && de.Code == store.Invalid {
		return errorf(http.StatusBadRequest, "invalidFilter", de.Message)
	}
	return err
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, internal := asAPIError(err)
	if internal && clientGone(r) {
		// The store gave up because the client closed the connection: its
		// going away is no fault here, and there is no one to answer.
		if rec := recorder(w); rec != nil {
			rec.clientGone = true
		}
		s.log.DebugContext(r.Context(), "client went away before it was answered", "method", r.Method, "err", err)
		return
	}
	if internal {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	noteFailure(r, e.Detail)
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="entrasync"`)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, e.Status, errorBody{
		Schemas:  []string{schema.ErrorURN},
		Status:   strconv.Itoa(e.Status),
		ScimType: e.ScimType,
		Detail:   e.Detail,
	})
}
