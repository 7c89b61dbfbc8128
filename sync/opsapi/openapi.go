package opsapi

import (
	"strconv"
	"strings"
	gosync "sync"
)

// The OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0) is Go
// data built from the route table, so a route cannot be left out of it; a
// test checks every route's real answers against its schemas.

// operation describes a route for the document.
type operation struct {
	id, summary, description string
	params                   []param
	status                   int    // the success status
	schema                   string // the success body, a component name
	errors                   []int  // error statuses besides those every keyed route has
}

type param struct {
	name, in, description string
	schema                map[string]any
	required              bool
}

// Schema helpers, for brevity.
func str() map[string]any            { return map[string]any{"type": "string"} }
func dateTime() map[string]any       { return map[string]any{"type": "string", "format": "date-time"} }
func integer() map[string]any        { return map[string]any{"type": "integer"} }
func boolean() map[string]any        { return map[string]any{"type": "boolean"} }
func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }
func array(items map[string]any) map[string]any {
	return map[string]any{"type": "array", "items": items}
}
func enum(values ...any) map[string]any { return map[string]any{"type": "string", "enum": values} }

// orNull allows null besides a schema's type (JSON Schema 2020-12, as
// OpenAPI 3.1 has it: "nullable" is gone).
func orNull(s map[string]any) map[string]any {
	if r, ok := s["$ref"]; ok {
		return map[string]any{"oneOf": []any{map[string]any{"$ref": r}, map[string]any{"type": "null"}}}
	}
	out := map[string]any{}
	for k, v := range s {
		out[k] = v
	}
	out["type"] = []any{s["type"], "null"}
	return out
}

func object(required []string, props map[string]any) map[string]any {
	o := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		req := make([]any, len(required))
		for i, r := range required {
			req[i] = r
		}
		o["required"] = req
	}
	return o
}

func pageOf(item string) map[string]any {
	return object([]string{"items"}, map[string]any{
		"items": array(ref(item)),
		"next":  map[string]any{"type": "string", "description": "The cursor of the next page; absent on the last page."},
	})
}

var (
	tenantParam = param{name: "tenant", in: "path", required: true, schema: str(), description: "The tenant's name."}
	idParam     = func(what string) param {
		return param{name: "id", in: "path", required: true, schema: str(), description: "The " + what + "'s id."}
	}
	limitParam = param{name: "limit", in: "query", schema: map[string]any{"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
		description: "Items per page, 1 to 1000."}
	cursorParam = param{name: "cursor", in: "query", schema: str(),
		description: "The `next` of the page before, unchanged; absent for the first page. A cursor not given by the API is answered 400."}
)

var (
	openAPIOp = operation{id: "getOpenAPI", summary: "This document", description: "Served without an ops key: it describes the API and holds no data.",
		status: 200, schema: "Document"}
	tenantsOp = operation{id: "listTenants", summary: "Tenants the key covers, with counts, last push, last pull and health",
		description: "A key scoped to tenants sees only those. Sorted by name.", params: []param{limitParam, cursorParam},
		status: 200, schema: "TenantPage"}
	tenantOp = operation{id: "getTenant", summary: "One tenant: counts, last push, last pull and health",
		params: []param{tenantParam}, status: 200, schema: "Tenant"}
	syncOp = operation{id: "startSync", summary: "Start a pull of the tenant from Microsoft Graph",
		description: "Role sync; role admin with full=true or confirmDeletions=true. 409 while a run of the tenant is going.",
		params: []param{tenantParam,
			{name: "full", in: "query", schema: boolean(), description: "A full pass instead of a delta (role admin)."},
			{name: "confirmDeletions", in: "query", schema: boolean(), description: "Apply deprovisions over the tenant's threshold (role admin)."}},
		status: 202, schema: "Run", errors: []int{409}}
	runsOp = operation{id: "listRuns", summary: "The tenant's pull runs, newest first",
		params: []param{tenantParam, {name: "limit", in: "query", schema: map[string]any{"type": "integer", "minimum": 1, "maximum": 1000, "default": 20},
			description: "Runs to return, 1 to 1000."}},
		status: 200, schema: "RunList"}
	runOp      = operation{id: "getRun", summary: "One pull run", params: []param{tenantParam, idParam("run")}, status: 200, schema: "Run"}
	activityOp = operation{id: "listActivity", summary: "The tenant's provisioning activity, newest first",
		description: "One record per SCIM request (kind push) and per change a pull run applied (kind pull), in plain words.",
		params: []param{tenantParam,
			{name: "failed", in: "query", schema: boolean(), description: "Only failures."},
			{name: "since", in: "query", schema: dateTime(), description: "Only records at or after this RFC 3339 time."},
			{name: "user", in: "query", schema: str(), description: "Only records of this resource id, or of this userName or displayName (case-insensitive, exact)."},
			{name: "kind", in: "query", schema: enum("push", "pull"), description: "Only records of one channel."},
			limitParam, cursorParam},
		status: 200, schema: "ActivityPage"}
	usersOp = operation{id: "listUsers", summary: "The tenant's users, by id",
		params: []param{tenantParam,
			{name: "search", in: "query", schema: str(), description: "A case-insensitive PREFIX (not a substring) of userName, an email address, " +
				"displayName, name.givenName or name.familyName; answered from indexes."},
			{name: "active", in: "query", schema: boolean(), description: "Only active (true) or inactive (false) users."},
			{name: "group", in: "query", schema: str(), description: "Only direct members of this group id (404 for an unknown group)."},
			{name: "changedSince", in: "query", schema: dateTime(), description: "Only users modified at or after this RFC 3339 time."},
			limitParam, cursorParam},
		status: 200, schema: "UserPage"}
	userOp = operation{id: "getUser", summary: "One user: every attribute, its groups, the channel that manages it, its recent activity",
		description: "managedBy: pull when the Graph pull linked the user to an Entra object, push when SCIM wrote it " +
			"(or it has no Entra object id), both when both did.",
		params: []param{tenantParam, idParam("user")}, status: 200, schema: "UserDetail"}
	groupsOp = operation{id: "listGroups", summary: "The tenant's groups, by id",
		params: []param{tenantParam, {name: "search", in: "query", schema: str(), description: "A case-insensitive PREFIX of displayName."},
			limitParam, cursorParam},
		status: 200, schema: "GroupPage"}
	membersOp = operation{id: "listMembers", summary: "A group's members, by id", params: []param{tenantParam, idParam("group"), limitParam, cursorParam},
		status: 200, schema: "MemberPage"}
)

// keyedErrors are the statuses every route behind a key may answer.
var keyedErrors = []int{400, 401, 403, 404, 429, 500, 503}

var statusText = map[int]string{400: "A parameter is not valid; the error says which and why.", 401: "No ops key, or one not valid.",
	403: "The key may not do this (role or tenant); the error says what it lacks.", 404: "No such tenant, resource or endpoint.",
	409: "A run of the tenant is going.", 429: "Too many failed key attempts from this address; see Retry-After.",
	500: "Internal error.", 503: "The database or a dependency is busy or unavailable; see Retry-After when given."}

var (
	docOnce gosync.Once
	doc     map[string]any
)

// Document returns the OpenAPI document.
func Document() map[string]any {
	docOnce.Do(func() { doc = buildDocument() })
	return doc
}

func buildDocument() map[string]any {
	paths := map[string]any{}
	for _, rt := range routes {
		item, _ := paths[rt.pattern].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.pattern] = item
		}
		op := rt.op
		responses := map[string]any{strconv.Itoa(op.status): map[string]any{
			"description": op.summary,
			"content":     map[string]any{"application/json": map[string]any{"schema": ref(op.schema)}},
		}}
		errs := op.errors
		if rt.handle != nil {
			errs = append(append([]int{}, keyedErrors...), errs...)
		}
		for _, s := range errs {
			body := "Error"
			if s == 409 {
				body = "RunningError"
			}
			responses[strconv.Itoa(s)] = map[string]any{"description": statusText[s],
				"content": map[string]any{"application/json": map[string]any{"schema": ref(body)}}}
		}
		o := map[string]any{"operationId": op.id, "summary": op.summary, "responses": responses}
		if op.description != "" {
			o["description"] = op.description
		}
		if rt.role != "" {
			o["description"] = strings.TrimSpace(op.description + " Needs an ops key with role " + string(rt.role) + " or above.")
		} else {
			o["security"] = []any{}
		}
		var ps []any
		for _, p := range op.params {
			m := map[string]any{"name": p.name, "in": p.in, "schema": p.schema, "description": p.description}
			if p.required {
				m["required"] = true
			}
			ps = append(ps, m)
		}
		if ps != nil {
			o["parameters"] = ps
		}
		item[strings.ToLower(rt.method)] = o
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "entrasync ops API", "version": "1",
			"description": "Read a tenant's sync: counts, health, activity, users and groups; start pulls. " +
				"Every route but this document needs an ops key (entrasync opskey create) as a bearer token. " +
				"Listings are cursor-paged: pass a page's `next` as `cursor` for the next page."},
		"security": []any{map[string]any{"opsKey": []any{}}},
		"paths":    paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"opsKey": map[string]any{"type": "http", "scheme": "bearer",
				"description": "An ops key, as `Authorization: Bearer eso_...`."}},
			"schemas": schemas(),
		},
	}
}

func schemas() map[string]any {
	return map[string]any{
		"Error":        object([]string{"error"}, map[string]any{"error": map[string]any{"type": "string", "description": "What is wrong, and how to fix it."}}),
		"RunningError": object([]string{"error", "run"}, map[string]any{"error": str(), "run": ref("Run")}),
		"Document":     map[string]any{"type": "object", "description": "An OpenAPI 3.1 document."},
		"Counts": object([]string{"users", "activeUsers", "groups"}, map[string]any{
			"users": integer(), "activeUsers": integer(), "groups": integer()}),
		"Health": object([]string{"status", "push"}, map[string]any{
			"status":   enum("ok", "warning", "failing", "idle"),
			"problems": map[string]any{"type": "array", "items": str(), "description": "What is wrong, in words."},
			"push": object([]string{"lastRequest", "lastSuccess", "cycleRequests", "cycleFailed", "errorRate"}, map[string]any{
				"lastRequest": orNull(dateTime()), "lastSuccess": orNull(dateTime()), "cycleRequests": integer(), "cycleFailed": integer(),
				"errorRate": map[string]any{"type": "number", "description": "Failed share of the requests over the last push cycle (40 minutes)."}}),
			"pull": map[string]any{"description": "Absent when the tenant has no Graph connection.", "allOf": []any{
				object([]string{"schedule", "interval", "lastRun", "lastSuccess"}, map[string]any{
					"schedule": str(), "interval": str(), "lastRun": orNull(ref("Run")), "lastSuccess": orNull(dateTime()), "lastStatus": str()})}}}),
		"Tenant": object([]string{"name", "createdAt", "counts", "lastPush", "lastPull", "health"}, map[string]any{
			"name": str(), "createdAt": dateTime(), "counts": ref("Counts"),
			"lastPush": orNull(ref("Activity")), "lastPull": orNull(ref("Run")), "health": ref("Health")}),
		"TenantPage": pageOf("Tenant"),
		"Run": object([]string{"id", "tenant", "trigger", "mode", "status", "startedAt", "finishedAt", "changes", "error"}, map[string]any{
			"id": integer(), "tenant": str(), "trigger": enum("schedule", "cli", "api", "demo"), "mode": enum("delta", "full"),
			"status":    enum("running", "succeeded", "failed", "held", "throttled"),
			"startedAt": dateTime(), "finishedAt": orNull(dateTime()), "pages": integer(), "usersSeen": integer(), "groupsSeen": integer(),
			"changes": map[string]any{"type": "object", "description": "Changes applied, counted by kind."},
			"held":    integer(), "throttleWaits": integer(), "throttleMs": integer(), "retryAfterMs": integer(), "error": str()}),
		"RunList": array(ref("Run")),
		"Activity": object([]string{"id", "at", "kind", "summary", "failed"}, map[string]any{
			"id": integer(), "at": dateTime(), "kind": enum("push", "pull"), "provider": str(), "method": str(), "endpoint": str(),
			"status": integer(), "latencyMs": integer(), "tokenId": str(), "requestId": str(), "runId": integer(),
			"resourceType": enum("User", "Group"), "resourceId": str(), "subject": str(),
			"summary": map[string]any{"type": "string", "description": "What the request or change did, or why it failed, in plain words."},
			"failed":  boolean()}),
		"ActivityPage": pageOf("Activity"),
		"User": object([]string{"id", "userName", "active", "lastModified"}, map[string]any{
			"id": str(), "userName": str(), "displayName": str(), "active": boolean(),
			"emails": array(map[string]any{"type": "object"}), "externalId": str(),
			"entraObjectId": map[string]any{"type": "string", "description": "The Microsoft Entra object id, when the pull linked the user."},
			"lastModified":  dateTime()}),
		"UserPage": pageOf("User"),
		"GroupRef": object([]string{"id", "displayName"}, map[string]any{"id": str(), "displayName": str()}),
		"UserDetail": map[string]any{"allOf": []any{ref("User"), object([]string{"managedBy", "attributes", "groups", "activity"}, map[string]any{
			"managedBy":  enum("push", "pull", "both"),
			"attributes": map[string]any{"type": "object", "description": "The stored SCIM document, every attribute."},
			"groups":     array(ref("GroupRef")),
			"activity":   array(ref("Activity"))})}},
		"Group": object([]string{"id", "displayName", "lastModified"}, map[string]any{
			"id": str(), "displayName": str(), "externalId": str(), "entraObjectId": str(), "lastModified": dateTime()}),
		"GroupPage":  pageOf("Group"),
		"Member":     object([]string{"id", "type", "displayName"}, map[string]any{"id": str(), "type": enum("User", "Group"), "displayName": str()}),
		"MemberPage": pageOf("Member"),
	}
}
