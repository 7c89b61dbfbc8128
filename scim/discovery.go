package scim

import (
	"net/http"
	"strings"

	"github.com/entrasync/entrasync/scim/schema"
	"github.com/entrasync/entrasync/store"
)

// serviceProviderConfig tells clients what this server supports (RFC 7643 §5),
// truthfully: PATCH, filters and ETags yes; bulk, sorting and password
// changes no. The limits go where §5 has a place for them, bulk or not:
// bulk.maxPayloadSize is the body limit of every request, filter.maxResults
// the most resources one list answer holds. §5 and §7 have no place for
// the per-document limits (max_values...): the README documents them, and
// each refusal names the limit.
func (s *Server) serviceProviderConfig(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"schemas":          []string{schema.SPConfigURN},
		"documentationUri": "https://www.rfc-editor.org/rfc/rfc7644",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": s.bodyLimit},
		"filter":           map[string]any{"supported": true, "maxResults": maxCount},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []any{map[string]any{
			"type":        "oauthbearertoken",
			"name":        "Secret Token",
			"description": "The tenant's Secret Token, sent as \"Authorization: Bearer <token>\".",
			"specUri":     "https://www.rfc-editor.org/rfc/rfc6750",
			"primary":     true,
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": s.base + "/ServiceProviderConfig"},
	})
}

func (s *Server) schemaJSON(sc *schema.Schema) map[string]any {
	return map[string]any{
		"schemas":     []string{schema.SchemaURN},
		"id":          sc.ID,
		"name":        sc.Name,
		"description": sc.Description,
		"attributes":  sc.Attributes,
		"meta":        map[string]any{"resourceType": "Schema", "location": s.base + "/Schemas/" + sc.ID},
	}
}

func (s *Server) schemas(w http.ResponseWriter, r *http.Request, id string) {
	if id != "" {
		for _, sc := range schema.Schemas {
			if strings.EqualFold(sc.ID, id) {
				writeJSON(w, http.StatusOK, s.schemaJSON(sc))
				return
			}
		}
		s.writeError(w, r, errorf(http.StatusNotFound, "", "no schema "+id))
		return
	}
	list := make([]any, len(schema.Schemas))
	for i, sc := range schema.Schemas {
		list[i] = s.schemaJSON(sc)
	}
	writeList(w, list)
}

func (s *Server) resourceTypeJSON(rt *schema.ResourceType) map[string]any {
	exts := make([]any, len(rt.Extensions))
	for i, e := range rt.Extensions {
		exts[i] = map[string]any{"schema": e.ID, "required": false}
	}
	return map[string]any{
		"schemas":          []string{schema.ResourceTypeURN},
		"id":               rt.Name,
		"name":             rt.Name,
		"endpoint":         rt.Endpoint,
		"description":      rt.Desc,
		"schema":           rt.Schema.ID,
		"schemaExtensions": exts,
		"meta":             map[string]any{"resourceType": "ResourceType", "location": s.base + "/ResourceTypes/" + rt.Name},
	}
}

func (s *Server) resourceTypes(w http.ResponseWriter, r *http.Request, name string) {
	types := []*schema.ResourceType{schema.UserType, schema.GroupType}
	if name != "" {
		for _, rt := range types {
			if strings.EqualFold(rt.Name, name) {
				writeJSON(w, http.StatusOK, s.resourceTypeJSON(rt))
				return
			}
		}
		s.writeError(w, r, errorf(http.StatusNotFound, "", "no resource type "+name))
		return
	}
	list := make([]any, len(types))
	for i, rt := range types {
		list[i] = s.resourceTypeJSON(rt)
	}
	writeList(w, list)
}

func writeList(w http.ResponseWriter, resources []any) {
	writeJSON(w, http.StatusOK, map[string]any{
		"schemas":      []string{schema.ListResponseURN},
		"totalResults": len(resources),
		"startIndex":   1,
		"itemsPerPage": len(resources),
		"Resources":    resources,
	})
}

// withDefaultLimits fills the limits not configured with their defaults
// and keeps the value length within what the attribute index holds.
func withDefaultLimits(l schema.Limits) schema.Limits {
	if l.MaxValues <= 0 {
		l.MaxValues = schema.DefaultMaxValues
	}
	if l.MaxValueLength <= 0 {
		l.MaxValueLength = schema.DefaultMaxValueLength
	}
	l.MaxValueLength = min(l.MaxValueLength, store.MaxIndexedValue)
	if l.MaxDocumentSize <= 0 {
		l.MaxDocumentSize = schema.DefaultMaxDocumentSize
	}
	return l
}
