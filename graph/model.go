package graph

// User is a user as Graph reports it, in entrasync's own terms.
type User struct {
	ID                string
	UserPrincipalName string
	DisplayName       string
	GivenName         string
	Surname           string
	Mail              string
	AccountEnabled    *bool // nil when Graph did not say
	JobTitle          string
	Department        string
	EmployeeID        string
	CompanyName       string
	MobilePhone       string
	BusinessPhones    []string
	PreferredLanguage string
	City              string
	Country           string
	EmployeeType      string
	// Removed is "" for a present user, "changed" for a soft-deleted one
	// (restorable for 30 days) and "deleted" for one that is gone.
	Removed string
}

// Group is one group item of a groups/delta page. A large group's member
// changes come in several items with the same ID; merge them.
type Group struct {
	ID          string
	DisplayName string
	Description string
	Removed     string // as User.Removed
	Members     []MemberChange
}

// MemberChange is one entry of a group's members@delta.
type MemberChange struct {
	ID      string
	Group   bool // a nested group, not a user
	Removed bool // the member left (or is gone)
}

// UserPage is one page of a users/delta walk. DeltaLink is set on the
// last page only.
type UserPage struct {
	Users     []User
	DeltaLink string
}

// GroupPage is one page of a groups/delta walk. DeltaLink is set on the
// last page only.
type GroupPage struct {
	Groups    []Group
	DeltaLink string
}

// UserSelect is the user properties entrasync maps. Changing it changes
// every users delta link (they encode it), which means a full sync.
const UserSelect = "id,userPrincipalName,displayName,givenName,surname,mail,accountEnabled,jobTitle,department," +
	"employeeId,companyName,mobilePhone,businessPhones,preferredLanguage,city,country,employeeType"

// GroupSelect is the group properties entrasync reads, members included.
const GroupSelect = "id,displayName,description,members"

// maxFilterIDs is Graph's limit on ids in one delta $filter (user-delta and
// group-delta reference pages: "There is a limit of 50 filtered objects").
const maxFilterIDs = 50

// MaxGroupsPerQuery is the most groups one groups delta walks.
const MaxGroupsPerQuery = maxFilterIDs

// MaxIDsPerLookup is the most ids one UsersByID call takes: it reads a users
// delta filtered by them.
const MaxIDsPerLookup = maxFilterIDs
