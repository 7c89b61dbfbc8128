// Package schema holds the SCIM schemas entrasync serves (RFC 7643: core
// User §4.1, Group §4.2, enterprise User extension §4.3) as data, and the
// functions that turn what a client sent into a canonical document: names
// in schema case, values of the declared types, read-only and unknown
// attributes dropped.
package schema

import "strings"

// URNs of the schemas and messages entrasync speaks.
const (
	UserURN           = "urn:ietf:params:scim:schemas:core:2.0:User"
	GroupURN          = "urn:ietf:params:scim:schemas:core:2.0:Group"
	EnterpriseUserURN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	ListResponseURN   = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	ErrorURN          = "urn:ietf:params:scim:api:messages:2.0:Error"
	PatchOpURN        = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SearchRequestURN  = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
	SPConfigURN       = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	ResourceTypeURN   = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	SchemaURN         = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

// Attribute types (RFC 7643 §2.3).
const (
	String    = "string"
	Boolean   = "boolean"
	Decimal   = "decimal"
	Integer   = "integer"
	DateTime  = "dateTime"
	Binary    = "binary"
	Reference = "reference"
	Complex   = "complex"
)

// Mutability and returned values (RFC 7643 §7).
const (
	ReadOnly  = "readOnly"
	ReadWrite = "readWrite"
	Immutable = "immutable"
	WriteOnly = "writeOnly"

	Always  = "always"
	Never   = "never"
	Default = "default"
	Request = "request"
)

// Attribute is an attribute definition, shaped as RFC 7643 §7 serialises it.
type Attribute struct {
	Name            string       `json:"name"`
	Type            string       `json:"type"`
	SubAttributes   []*Attribute `json:"subAttributes,omitempty"`
	MultiValued     bool         `json:"multiValued"`
	Description     string       `json:"description"`
	Required        bool         `json:"required"`
	CanonicalValues []string     `json:"canonicalValues,omitempty"`
	CaseExact       bool         `json:"caseExact"`
	Mutability      string       `json:"mutability"`
	Returned        string       `json:"returned"`
	Uniqueness      string       `json:"uniqueness"`
	ReferenceTypes  []string     `json:"referenceTypes,omitempty"`
}

// Sub returns the sub-attribute called name (any case), or nil.
func (a *Attribute) Sub(name string) *Attribute { return find(a.SubAttributes, name) }

func find(attrs []*Attribute, name string) *Attribute {
	for _, a := range attrs {
		if strings.EqualFold(a.Name, name) {
			return a
		}
	}
	return nil
}

// Schema is a SCIM schema.
type Schema struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Attributes  []*Attribute `json:"attributes"`
}

// Attr returns the attribute called name (any case), or nil.
func (s *Schema) Attr(name string) *Attribute { return find(s.Attributes, name) }

// ResourceType is a SCIM resource type: its core schema and extensions.
type ResourceType struct {
	Name       string
	Endpoint   string
	Desc       string
	Schema     *Schema
	Extensions []*Schema
}

// Extension returns the extension whose URN is urn (any case), or nil.
func (rt *ResourceType) Extension(urn string) *Schema {
	for _, e := range rt.Extensions {
		if strings.EqualFold(e.ID, urn) {
			return e
		}
	}
	return nil
}

// attribute constructors keep the tables below readable.
type opt func(*Attribute)

func attr(name, typ string, opts ...opt) *Attribute {
	a := &Attribute{Name: name, Type: typ, Mutability: ReadWrite, Returned: Default, Uniqueness: "none"}
	for _, o := range opts {
		o(a)
	}
	return a
}

func required(a *Attribute)  { a.Required = true }
func multi(a *Attribute)     { a.MultiValued = true }
func caseExact(a *Attribute) { a.CaseExact = true }
func readOnly(a *Attribute)  { a.Mutability = ReadOnly }
func immutable(a *Attribute) { a.Mutability = Immutable }
func serverUnique(a *Attribute) {
	a.Uniqueness = "server"
}
func desc(d string) opt                            { return func(a *Attribute) { a.Description = d } }
func returned(r string) opt                        { return func(a *Attribute) { a.Returned = r } }
func mutability(m string) opt                      { return func(a *Attribute) { a.Mutability = m } }
func canonical(vs ...string) opt                   { return func(a *Attribute) { a.CanonicalValues = vs } }
func refTypes(ts ...string) opt                    { return func(a *Attribute) { a.ReferenceTypes = ts } }
func subs(sub ...*Attribute) opt                   { return func(a *Attribute) { a.SubAttributes = sub } }
func complexAttr(name string, o ...opt) *Attribute { return attr(name, Complex, o...) }

// multiValuedComplex builds the usual value/display/type/primary attribute.
func multiValuedComplex(name, description, valueType string, types []string, o ...opt) *Attribute {
	value := attr("value", valueType, desc("The value of the "+name+" entry."))
	if valueType == Reference {
		value.ReferenceTypes = []string{"external"}
	}
	sub := []*Attribute{
		value,
		attr("display", String, desc("A human-readable name, primarily used for display purposes.")),
		attr("type", String, desc("A label indicating the attribute's function."), canonical(types...)),
		attr("primary", Boolean, desc("Whether this value is the preferred one; at most one value is primary.")),
	}
	return complexAttr(name, append([]opt{multi, desc(description), subs(sub...)}, o...)...)
}

// Common attributes every resource has (RFC 7643 §3.1).
var (
	idAttr = attr("id", String, caseExact, readOnly, returned(Always), serverUnique,
		desc("Unique identifier for the resource, assigned by the service provider."))
	externalIDAttr = attr("externalId", String, caseExact,
		desc("Identifier of the resource as defined by the provisioning client."))
	metaAttr = complexAttr("meta", readOnly, desc("Resource metadata."), subs(
		attr("resourceType", String, caseExact, readOnly, desc("The name of the resource type of the resource.")),
		attr("created", DateTime, readOnly, desc("When the resource was added to the service provider.")),
		attr("lastModified", DateTime, readOnly, desc("When the resource was last updated.")),
		attr("location", Reference, caseExact, readOnly, refTypes("uri"), desc("The URI of the resource.")),
		attr("version", String, caseExact, readOnly, desc("The version (weak ETag) of the resource.")),
	))
)

// User is the core User schema (RFC 7643 §4.1).
var User = &Schema{
	ID:          UserURN,
	Name:        "User",
	Description: "User Account",
	Attributes: []*Attribute{
		attr("userName", String, required, serverUnique,
			desc("Unique identifier for the User, typically used to authenticate; unique per tenant, case-insensitive.")),
		complexAttr("name", desc("The components of the user's real name."), subs(
			attr("formatted", String, desc("The full name, formatted for display.")),
			attr("familyName", String, desc("The family name of the User.")),
			attr("givenName", String, desc("The given name of the User.")),
			attr("middleName", String, desc("The middle name(s) of the User.")),
			attr("honorificPrefix", String, desc("The honorific prefix(es) of the User.")),
			attr("honorificSuffix", String, desc("The honorific suffix(es) of the User.")),
		)),
		attr("displayName", String, desc("The name of the User, suitable for display to end-users.")),
		attr("nickName", String, desc("The casual way to address the user.")),
		attr("profileUrl", Reference, refTypes("external"), desc("A URI pointing to the User's online profile.")),
		attr("title", String, desc("The user's title, such as \"Vice President\".")),
		attr("userType", String, desc("The relationship between the organization and the user.")),
		attr("preferredLanguage", String, desc("The User's preferred written or spoken language (RFC 7231 Accept-Language).")),
		attr("locale", String, desc("The User's default location for localizing.")),
		attr("timezone", String, desc("The User's time zone in IANA Time Zone database format.")),
		attr("active", Boolean, desc("The User's administrative status.")),
		attr("password", String, caseExact, mutability(WriteOnly), returned(Never),
			desc("The User's cleartext password; accepted on input, never stored nor returned.")),
		multiValuedComplex("emails", "Email addresses for the user.", String, []string{"work", "home", "other"}),
		multiValuedComplex("phoneNumbers", "Phone numbers for the User.", String, []string{"work", "home", "mobile", "fax", "pager", "other"}),
		multiValuedComplex("ims", "Instant messaging addresses for the User.", String, []string{"aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"}),
		multiValuedComplex("photos", "URLs of photos of the User.", Reference, []string{"photo", "thumbnail"}),
		complexAttr("addresses", multi, desc("A physical mailing address for this User."), subs(
			attr("formatted", String, desc("The full mailing address, formatted for display.")),
			attr("streetAddress", String, desc("The full street address component.")),
			attr("locality", String, desc("The city or locality component.")),
			attr("region", String, desc("The state or region component.")),
			attr("postalCode", String, desc("The zip code or postal code component.")),
			attr("country", String, desc("The country name component (ISO 3166-1 alpha-2).")),
			attr("type", String, canonical("work", "home", "other"), desc("A label indicating the attribute's function.")),
			attr("primary", Boolean, desc("Whether this is the preferred mailing address.")),
		)),
		complexAttr("groups", multi, readOnly, desc("Groups the user belongs to, maintained by the service provider."), subs(
			attr("value", String, readOnly, desc("The identifier of the User's group.")),
			attr("$ref", Reference, readOnly, refTypes("User", "Group"), desc("The URI of the corresponding Group resource.")),
			attr("display", String, readOnly, desc("A human-readable name of the group.")),
			attr("type", String, readOnly, canonical("direct", "indirect"), desc("How the membership was derived.")),
		)),
		multiValuedComplex("entitlements", "Entitlements for the User.", String, nil),
		multiValuedComplex("roles", "Roles for the User.", String, nil),
		multiValuedComplex("x509Certificates", "DER-encoded X.509 certificates of the User.", Binary, nil),
	},
}

// EnterpriseUser is the enterprise User extension (RFC 7643 §4.3).
var EnterpriseUser = &Schema{
	ID:          EnterpriseUserURN,
	Name:        "EnterpriseUser",
	Description: "Enterprise User",
	Attributes: []*Attribute{
		attr("employeeNumber", String, desc("Numeric or alphanumeric identifier assigned to a person by the organization.")),
		attr("costCenter", String, desc("Identifies the name of a cost center.")),
		attr("organization", String, desc("Identifies the name of an organization.")),
		attr("division", String, desc("Identifies the name of a division.")),
		attr("department", String, desc("Identifies the name of a department.")),
		complexAttr("manager", desc("The User's manager."), subs(
			attr("value", String, desc("The id of the SCIM resource representing the User's manager.")),
			// Read-only: the manager is its id; a $ref sent by the client
			// could name another host or go stale when value changes.
			attr("$ref", Reference, readOnly, refTypes("User"), desc("The URI of the SCIM resource representing the User's manager.")),
			attr("displayName", String, readOnly, desc("The displayName of the User's manager.")),
		)),
	},
}

// Group is the core Group schema (RFC 7643 §4.2).
var Group = &Schema{
	ID:          GroupURN,
	Name:        "Group",
	Description: "Group",
	Attributes: []*Attribute{
		attr("displayName", String, required, desc("A human-readable name for the Group.")),
		complexAttr("members", multi, desc("A list of members of the Group."), subs(
			attr("value", String, immutable, desc("Identifier of the member of this Group.")),
			attr("$ref", Reference, immutable, refTypes("User", "Group"), desc("The URI of the member resource.")),
			attr("display", String, readOnly, desc("A human-readable name of the member.")),
			attr("type", String, immutable, canonical("User", "Group"), desc("The type of the member.")),
		)),
	},
}

// The resource types entrasync serves.
var (
	UserType = &ResourceType{Name: "User", Endpoint: "/Users", Desc: "User Account",
		Schema: User, Extensions: []*Schema{EnterpriseUser}}
	GroupType = &ResourceType{Name: "Group", Endpoint: "/Groups", Desc: "Group", Schema: Group}
)

// Schemas lists every resource schema, for /Schemas.
var Schemas = []*Schema{User, Group, EnterpriseUser}

// Common returns the common attribute called name (id, externalId, meta), or nil.
func Common(name string) *Attribute {
	return find([]*Attribute{idAttr, externalIDAttr, metaAttr}, name)
}

// CommonAttributes are id, externalId and meta, for /Schemas listings that
// show them alongside each resource's own.
func CommonAttributes() []*Attribute { return []*Attribute{idAttr, externalIDAttr, metaAttr} }
