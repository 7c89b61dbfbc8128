// Package filter parses SCIM 2.0 filter expressions (RFC 7644 §3.4.2.2) and PATCH
// attribute paths (RFC 7644 §3.5.2) into an AST, and evaluates filters against decoded
// JSON objects.
//
// The parser accepts the RFC grammar plus the form Microsoft Entra ID sends, where a
// value filter is followed by a sub-attribute and compared:
//
//	emails[type eq "work"].value eq "ada@contoso.com"
//
// Attribute names are kept as written; resolving them against a schema (and deciding
// case sensitivity) is the caller's job. All malformed input yields an *Error whose
// message is suitable for the "detail" of a SCIM invalidFilter/invalidPath response.
package filter
