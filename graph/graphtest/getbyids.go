package graphtest

import (
	"encoding/json"
	"net/http"
	"strings"
)

// maxGetByIDs is Graph's limit on ids in one getByIds request.
const maxGetByIDs = 1000

// serveGetByIDs answers POST /v1.0/directoryObjects/getByIds for users
// (the caller has checked the permissions): the existing (not deleted)
// users among the ids, with the $select properties (Graph's default subset
// without one); ids it does not know are left out, as Graph does.
func (s *Server) serveGetByIDs(e *exchange, r *http.Request, d *Directory) {
	if r.Method != http.MethodPost {
		graphError(e, r, http.StatusMethodNotAllowed, "Request_BadRequest", "getByIds takes POST.")
		return
	}
	var body struct {
		IDs   []string `json:"ids"`
		Types []string `json:"types"`
	}
	raw, ok := readBody(e, r)
	if !ok {
		return
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		graphError(e, r, http.StatusBadRequest, "BadRequest", "Invalid request body: "+err.Error())
		return
	}
	if len(body.IDs) == 0 || len(body.IDs) > maxGetByIDs {
		graphError(e, r, http.StatusBadRequest, "Request_BadRequest", "ids must hold 1 to 1000 identifiers.")
		return
	}
	for _, t := range body.Types {
		if !strings.EqualFold(t, "user") && !strings.EqualFold(t, "microsoft.graph.user") {
			graphError(e, r, http.StatusBadRequest, "Request_BadRequest", "The fake answers getByIds for users only.")
			return
		}
	}
	sel, unknown := parseSelect("users", r.URL.Query().Get("$select"))
	if unknown != "" {
		graphError(e, r, http.StatusBadRequest, "Request_BadRequest", "Could not find a property named '"+unknown+"' on type 'microsoft.graph.user'.")
		return
	}
	mask := selectMask("users", sel)
	b := []byte(`{"@odata.context":"` + s.base + `/v1.0/$metadata#directoryObjects","value":[`)
	d.mu.Lock()
	first := true
	for _, id := range body.IDs {
		i, ok := d.lookupUser(id)
		if !ok || d.uState[i] != stActive {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"@odata.type":"#microsoft.graph.user",`...)
		b = appendUserProps(b, &d.users[i], mask)
		b = append(b, '}')
	}
	d.mu.Unlock()
	b = append(b, "]}"...)
	writeBody(e, http.StatusOK, pageContentType, b)
}
