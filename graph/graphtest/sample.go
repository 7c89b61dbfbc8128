package graphtest

import (
	"fmt"
	"math/rand"
	"strings"
)

// Sample data. Every name is made up; domains use .example (RFC 2606).
var (
	firstNames = []string{
		"Ava", "Ben", "Chloe", "Daniel", "Emma", "Felix", "Grace", "Hugo", "Isla", "Jonas",
		"Karin", "Liam", "Maya", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sami", "Tara",
		"Umar", "Vera", "Wes", "Xena", "Yusuf", "Zoe", "Aiko", "Bruno", "Carmen", "Dev",
		"Elif", "Farah", "Gustav", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Mateo", "Nina",
		"Omar", "Priya", "Rafael", "Sofia", "Theo", "Uma", "Viktor", "Wanjiru", "Yara", "Zain",
	}
	lastNames = []string{
		"Martin", "Schmidt", "Okafor", "Nakamura", "Garcia", "Rossi", "Dubois", "Novak", "Silva", "Kowalski",
		"Jensen", "Murphy", "Haddad", "Chen", "Patel", "Andersson", "Moreau", "Fischer", "Costa", "Ivanova",
		"Tanaka", "Hughes", "Lindqvist", "Mensah", "Romero", "Bauer", "Kaya", "Nguyen", "Oduya", "Petrov",
		"Quint", "Reyes", "Sato", "Toure", "Urban", "Varga", "Weber", "Xu", "Yilmaz", "Zimmer",
		"Abbott", "Berger", "Castillo", "Dahl", "Eriksen", "Ferreira", "Gallo", "Hartmann", "Iqbal", "Jovanovic",
	}
	departments = []string{
		"Engineering", "Sales", "Marketing", "Finance", "Human Resources",
		"Legal", "Operations", "Customer Support", "Product", "IT",
	}
	titles = map[string][]string{
		"Engineering":      {"Software Engineer", "Senior Software Engineer", "Staff Engineer", "Engineering Manager", "QA Engineer"},
		"Sales":            {"Account Executive", "Sales Development Representative", "Regional Sales Manager", "Sales Engineer"},
		"Marketing":        {"Marketing Specialist", "Content Strategist", "Brand Manager", "Growth Analyst"},
		"Finance":          {"Accountant", "Financial Analyst", "Controller", "Payroll Specialist"},
		"Human Resources":  {"HR Business Partner", "Recruiter", "People Operations Specialist"},
		"Legal":            {"Legal Counsel", "Paralegal", "Compliance Officer"},
		"Operations":       {"Operations Manager", "Logistics Coordinator", "Facilities Coordinator"},
		"Customer Support": {"Support Engineer", "Customer Success Manager", "Support Team Lead"},
		"Product":          {"Product Manager", "Product Designer", "UX Researcher"},
		"IT":               {"IT Administrator", "Service Desk Analyst", "Security Engineer"},
	}
	offices = []struct{ city, country, usage, lang, phone string }{
		{"Berlin", "Germany", "DE", "de-DE", "+49 30 5550"},
		{"Munich", "Germany", "DE", "de-DE", "+49 89 5550"},
		{"Paris", "France", "FR", "fr-FR", "+33 1 5550"},
		{"London", "United Kingdom", "GB", "en-GB", "+44 20 5550"},
		{"Dublin", "Ireland", "IE", "en-IE", "+353 1 555"},
		{"Madrid", "Spain", "ES", "es-ES", "+34 91 555"},
		{"Seattle", "United States", "US", "en-US", "+1 206 555"},
		{"Toronto", "Canada", "CA", "en-CA", "+1 416 555"},
	}
	teams    = []string{"Team", "Leads", "Core", "Platform", "EMEA", "Americas", "Onboarding", "Champions"}
	projects = []string{"Aurora", "Basalt", "Cobalt", "Dune", "Ember", "Fjord", "Granite", "Harbor", "Iris", "Juniper", "Kestrel", "Lumen"}
)

const sampleDomain = "contoso.example"

func pick[T any](r *rand.Rand, s []T) T { return s[r.Intn(len(s))] }

func randGUID(r *rand.Rand) string {
	var b [16]byte
	r.Read(b[:])
	return formatGUID(b)
}

func slug(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// sampleUser makes a realistic user with a unique UPN (d.mu held).
func (d *Directory) sampleUser(r *rand.Rand) User {
	first, last := pick(r, firstNames), pick(r, lastNames)
	base := strings.ToLower(first + "." + last)
	d.nameCount[base]++
	local := base
	if n := d.nameCount[base]; n > 1 {
		local = fmt.Sprintf("%s%d", base, n)
	}
	upn := local + "@" + sampleDomain
	dept := pick(r, departments)
	off := pick(r, offices)
	emp := "Employee"
	if r.Intn(10) == 0 {
		emp = "Contractor"
	}
	return User{
		ID:                randGUID(r),
		UserPrincipalName: upn,
		DisplayName:       first + " " + last,
		GivenName:         first,
		Surname:           last,
		Mail:              upn,
		JobTitle:          pick(r, titles[dept]),
		Department:        dept,
		EmployeeID:        fmt.Sprintf("E%06d", len(d.users)+1),
		CompanyName:       "Contoso",
		OfficeLocation:    fmt.Sprintf("%s %d.%02d", off.city, 1+r.Intn(6), 1+r.Intn(40)),
		MobilePhone:       fmt.Sprintf("%s %04d", off.phone, r.Intn(10000)),
		PreferredLanguage: off.lang,
		City:              off.city,
		Country:           off.country,
		UsageLocation:     off.usage,
		EmployeeType:      emp,
		BusinessPhones:    []string{fmt.Sprintf("%s %04d", off.phone, r.Intn(10000))},
		AccountEnabled:    r.Intn(50) != 0,
	}
}

// sampleGroupName names the i-th sample group after a department: the
// department itself, then department + team or city, then projects.
func sampleGroupName(i int) (name, dept string) {
	nd := len(departments)
	dept = departments[i%nd]
	round := i / nd
	switch {
	case round == 0:
		return dept, dept
	case round <= len(teams):
		return dept + " " + teams[round-1], dept
	case round <= len(teams)+len(offices):
		return dept + " " + offices[round-1-len(teams)].city, dept
	default:
		k := round - 1 - len(teams) - len(offices)
		return fmt.Sprintf("Project %s %s %d", projects[k%len(projects)], dept, k/len(projects)+1), dept
	}
}

// Populate adds a realistic sample: groups named after departments, teams,
// offices and projects, and users (first.last@contoso.example) each in one
// to three groups, the first one of their department. It returns the new
// groups' ids.
func (d *Directory) Populate(r *rand.Rand, users, groups int) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	byDept := make(map[string][]int32)
	var slots []int32
	for i := 0; i < groups; i++ {
		name, dept := sampleGroupName(i)
		m365 := i%4 == 3
		g := Group{
			ID:              randGUID(r),
			DisplayName:     name,
			Description:     "Members of " + name,
			MailNickname:    slug(name),
			SecurityEnabled: !m365,
			MailEnabled:     m365,
		}
		gi := d.addGroup(g)
		ids = append(ids, g.ID)
		slots = append(slots, gi)
		byDept[dept] = append(byDept[dept], gi)
	}
	for i := 0; i < users; i++ {
		u := d.sampleUser(r)
		ui := d.addUser(u)
		if len(slots) == 0 {
			continue
		}
		first := slots[r.Intn(len(slots))]
		if same := byDept[u.Department]; len(same) > 0 {
			first = same[r.Intn(len(same))]
		}
		d.addMember(d.groups[first], refUser(ui))
		for k := r.Intn(3); k > 0; k-- {
			d.addMember(d.groups[slots[r.Intn(len(slots))]], refUser(ui))
		}
	}
	return ids
}

// randomUser returns an active user slot, or -1 (d.mu held).
func (d *Directory) randomUser(r *rand.Rand, want func(int) bool) int {
	if len(d.users) == 0 {
		return -1
	}
	for try := 0; try < 64; try++ {
		i := r.Intn(len(d.users))
		if d.uState[i] == stActive && (want == nil || want(i)) {
			return i
		}
	}
	return -1
}

func (d *Directory) randomGroup(r *rand.Rand) int {
	if len(d.groups) == 0 {
		return -1
	}
	for try := 0; try < 64; try++ {
		if i := r.Intn(len(d.groups)); d.groups[i].state == stActive {
			return i
		}
	}
	return -1
}

// groupsOf returns the group slots the user is a present member of.
func (d *Directory) groupsOf(ui int) []int {
	var gs []int
	ref := refUser(int32(ui))
	for gi, g := range d.groups {
		if j, ok := g.memberIdx[ref]; ok && g.members[j].present && g.state == stActive {
			gs = append(gs, gi)
		}
	}
	return gs
}

// Churn makes n random, realistic changes (joiners, leavers, renamed
// groups, moves between groups, disabled accounts, new job titles, soft
// deletes and restores) and returns one line per change for a demo log.
// The lines name only the fake people and groups.
func (d *Directory) Churn(r *rand.Rand, n int) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	lines := make([]string, 0, n)
	// Some picks find nothing to change (say, no group yet); give up
	// rather than spin on an empty directory.
	for tries := 0; len(lines) < n && tries < 100*n+100; tries++ {
		if line := d.churnOne(r); line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

func (d *Directory) churnOne(r *rand.Rand) string {
	k := r.Intn(100)
	switch {
	case k < 20: // join
		gi := d.randomGroup(r)
		if gi < 0 {
			return ""
		}
		u := d.sampleUser(r)
		u.AccountEnabled = true
		ui := d.addUser(u)
		d.addMember(d.groups[gi], refUser(ui))
		return fmt.Sprintf("join: %s starts in %s and joins %q", u.DisplayName, u.Department, d.groups[gi].g.DisplayName)
	case k < 30: // leave
		ui := d.randomUser(r, func(i int) bool { return len(d.groupsOf(i)) > 0 })
		if ui < 0 {
			return ""
		}
		gs := d.groupsOf(ui)
		for _, gi := range gs {
			d.removeMember(d.groups[gi], refUser(int32(ui)))
		}
		return fmt.Sprintf("leave: %s leaves all %d of their groups", d.users[ui].DisplayName, len(gs))
	case k < 35: // rename group
		gi := d.randomGroup(r)
		if gi < 0 {
			return ""
		}
		g := d.groups[gi]
		old := g.g.DisplayName
		d.churnN++
		g.g.DisplayName = fmt.Sprintf("%s (%s %d)", strings.SplitN(old, " (", 2)[0], pick(r, projects), d.churnN)
		g.seq = d.next()
		return fmt.Sprintf("rename: group %q is now %q", old, g.g.DisplayName)
	case k < 55: // move
		ui := d.randomUser(r, func(i int) bool { return len(d.groupsOf(i)) > 0 })
		to := d.randomGroup(r)
		if ui < 0 || to < 0 {
			return ""
		}
		gs := d.groupsOf(ui)
		from := gs[r.Intn(len(gs))]
		if from == to {
			return ""
		}
		ref := refUser(int32(ui))
		d.removeMember(d.groups[from], ref)
		d.addMember(d.groups[to], ref)
		return fmt.Sprintf("move: %s moves from %q to %q", d.users[ui].DisplayName, d.groups[from].g.DisplayName, d.groups[to].g.DisplayName)
	case k < 65: // disable
		ui := d.randomUser(r, func(i int) bool { return d.users[i].AccountEnabled })
		if ui < 0 {
			return ""
		}
		d.users[ui].AccountEnabled = false
		d.uSeq[ui] = d.next()
		return fmt.Sprintf("disable: %s's account is disabled", d.users[ui].DisplayName)
	case k < 85: // new job title
		ui := d.randomUser(r, nil)
		if ui < 0 {
			return ""
		}
		u := &d.users[ui]
		t := pick(r, titles[pick(r, departments)])
		if ts, ok := titles[u.Department]; ok {
			t = pick(r, ts)
		}
		if t == u.JobTitle {
			return ""
		}
		u.JobTitle = t
		d.uSeq[ui] = d.next()
		return fmt.Sprintf("title: %s is now %s", u.DisplayName, t)
	case k < 95: // soft delete
		ui := d.randomUser(r, nil)
		if ui < 0 {
			return ""
		}
		d.softDeleteUser(int32(ui))
		return fmt.Sprintf("soft-delete: %s is deleted (restorable for 30 days)", d.users[ui].DisplayName)
	default: // restore
		var soft []int
		for i, st := range d.uState {
			if st == stSoftDeleted {
				soft = append(soft, i)
			}
		}
		if len(soft) == 0 {
			return ""
		}
		ui := soft[r.Intn(len(soft))]
		d.restoreUser(int32(ui))
		return fmt.Sprintf("restore: %s is restored with their group memberships", d.users[ui].DisplayName)
	}
}
