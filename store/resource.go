package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Kind is the type of a stored resource.
type Kind string

const (
	UserKind  Kind = "User"
	GroupKind Kind = "Group"
)

// Resource is a stored user or group. Doc holds its SCIM attributes under
// their canonical names, without id, meta, schemas and without group
// members (those live in the memberships table).
type Resource struct {
	Kind         Kind
	ID           string
	EntraID      string // Microsoft Entra object id, when known
	Version      int64
	Created      time.Time
	LastModified time.Time
	Doc          map[string]any
	// Raw is the document as stored, JSON, instead of Doc, from a listing
	// that asked for it (Query.RawDocs).
	Raw string

	enc *encoded // Doc as the next Insert or Update stores it (Prepare)
}

// encoded is a document as a write stores it: its JSON, its lookup
// columns and its attribute index rows.
type encoded struct {
	doc    string
	names  []string
	values []any
	rows   []attrRow
}

// Prepare encodes r's document for the next Insert or Update of r, so that
// the write transaction holds the writer only to check and write. Insert
// and Update use the encoding once; without one they encode themselves.
// Prepare again after changing Doc. A document that cannot be stored is
// an Invalid error.
func (r *Resource) Prepare() error {
	enc, err := encode(r.Kind, r.Doc)
	if err != nil {
		return err
	}
	r.enc = enc
	return nil
}

func encode(k Kind, doc map[string]any) (*encoded, error) {
	b, err := marshalDoc(doc)
	if err != nil {
		return nil, Errorf(Invalid, "cannot store %s: %v", k, err)
	}
	names, values := k.info().columns(doc)
	return &encoded{doc: string(b), names: names, values: values, rows: indexRows(doc)}, nil
}

// Rows is how many rows an Insert of r writes: its own and its attribute
// index rows (an Update rewrites at most as many). The pull sizes its
// transactions by it.
func (r *Resource) Rows() int {
	if r.enc != nil {
		return 1 + len(r.enc.rows)
	}
	return 1 + len(indexRows(r.Doc))
}

// encoding returns r's prepared encoding, once, or encodes it now.
func (r *Resource) encoding() (*encoded, error) {
	if enc := r.enc; enc != nil {
		r.enc = nil
		return enc, nil
	}
	return encode(r.Kind, r.Doc)
}

// SameDoc reports whether two documents are the same once stored.
func SameDoc(a, b map[string]any) bool {
	ea, err := marshalDoc(a)
	if err != nil {
		return false
	}
	eb, err := marshalDoc(b)
	return err == nil && bytes.Equal(ea, eb)
}

// Str returns the string attribute name of the document, or "".
func (r Resource) Str(name string) string {
	s, _ := r.Doc[name].(string)
	return s
}

// Active reports the user's active flag; a user without one is active.
func (r Resource) Active() bool {
	b, ok := r.Doc["active"].(bool)
	return !ok || b
}

// kindInfo is where the two kinds differ: table, index tag and the lookup
// columns derived from the document.
type kindInfo struct {
	table   string
	tag     string // attrs.resource
	active  string // SQL for the active flag
	columns func(doc map[string]any) (names []string, values []any)
}

var kinds = map[Kind]kindInfo{
	UserKind: {table: "users", tag: "U", active: "active", columns: func(doc map[string]any) ([]string, []any) {
		userName, _ := doc["userName"].(string)
		display, _ := doc["displayName"].(string)
		active, ok := doc["active"].(bool)
		if !ok {
			active = true
		}
		return []string{"user_name", "user_name_fold", "external_id", "display_name", "display_fold", "active"},
			[]any{userName, fold(userName), nullable(doc["externalId"]), nullable(doc["displayName"]), nullable(fold(display)), active}
	}},
	GroupKind: {table: "groups", tag: "G", active: "1", columns: func(doc map[string]any) ([]string, []any) {
		display, _ := doc["displayName"].(string)
		return []string{"external_id", "display_name", "display_fold"},
			[]any{nullable(doc["externalId"]), display, fold(display)}
	}},
}

func (k Kind) info() kindInfo {
	ki, ok := kinds[k]
	if !ok {
		panic(fmt.Sprintf("store: unknown kind %q", k))
	}
	return ki
}

func fold(s string) string { return strings.ToLower(s) }

// Subject returns the name activity records call a stored resource by: a
// user's userName, a group's displayName; "" when there is none.
func (tx *Tx) Subject(tenant int64, kind Kind, id string) (string, error) {
	col := "display_name"
	if kind == UserKind {
		col = "user_name"
	}
	var names []string
	err := tx.selectRows(&names, `SELECT `+col+` FROM `+kind.info().table+` WHERE tenant_id = ? AND id = ?`, tenant, id)
	if err != nil || len(names) == 0 {
		return "", err
	}
	return names[0], nil
}

func nullable(v any) any {
	if s, ok := v.(string); ok && s != "" {
		return s
	}
	return nil
}

// NewID returns a new resource id: a UUIDv7, so ids sort by creation.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

type resourceRow struct {
	ID         string         `db:"id"`
	EntraID    sql.NullString `db:"entra_id"`
	Version    int64          `db:"version"`
	CreatedAt  string         `db:"created_at"`
	ModifiedAt string         `db:"modified_at"`
	Doc        string         `db:"doc"`
	Groups     sql.NullString `db:"user_groups"` // a listing's, when asked (Query.Groups)
}

func (r resourceRow) resource(k Kind) (Resource, error) {
	res := Resource{Kind: k, ID: r.ID, EntraID: r.EntraID.String, Version: r.Version,
		Created: parseTime(r.CreatedAt), LastModified: parseTime(r.ModifiedAt)}
	dec := json.NewDecoder(strings.NewReader(r.Doc))
	dec.UseNumber()
	if err := dec.Decode(&res.Doc); err != nil {
		return Resource{}, fmt.Errorf("store: %s %s: corrupt document: %w", k, r.ID, err)
	}
	return res, nil
}

// Decode returns the document of a resource listed with Query.RawDocs.
func (r Resource) Decode() (map[string]any, error) {
	if r.Doc != nil || r.Raw == "" {
		return r.Doc, nil
	}
	row := resourceRow{ID: r.ID, Doc: r.Raw}
	decoded, err := row.resource(r.Kind)
	return decoded.Doc, err
}

// resources decodes rows of one kind; raw leaves their documents as
// stored, in Raw.
func resources(rows []resourceRow, kind Kind, raw bool) ([]Resource, error) {
	out := make([]Resource, 0, len(rows))
	for _, row := range rows {
		if raw {
			out = append(out, Resource{Kind: kind, ID: row.ID, EntraID: row.EntraID.String, Version: row.Version,
				Created: parseTime(row.CreatedAt), LastModified: parseTime(row.ModifiedAt), Raw: row.Doc})
			continue
		}
		r, err := row.resource(kind)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

const resourceColumns = `id, entra_id, version, created_at, modified_at, doc`

// Get returns one resource of tenant.
func (db *DB) Get(ctx context.Context, tenant int64, kind Kind, id string) (Resource, error) {
	return getResource(ctx, db.read, tenant, kind, id)
}

// Get returns one resource as this transaction sees it.
func (tx *Tx) Get(tenant int64, kind Kind, id string) (Resource, error) {
	return getResource(tx.ctx, tx.tx, tenant, kind, id)
}

func getResource(ctx context.Context, q queryer, tenant int64, kind Kind, id string) (Resource, error) {
	var r resourceRow
	err := q.GetContext(ctx, &r, q.Rebind(`SELECT `+resourceColumns+` FROM `+kind.info().table+` WHERE tenant_id = ? AND id = ?`), tenant, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Resource{}, Errorf(NotFound, "%s %q not found", kind, id)
	}
	if err != nil {
		return Resource{}, err
	}
	return r.resource(kind)
}

func marshalDoc(doc map[string]any) ([]byte, error) {
	if doc == nil {
		doc = map[string]any{}
	}
	return json.Marshal(doc) // map keys marshal sorted: equal documents give equal bytes
}

// Insert stores a new resource. It assigns an id when r.ID is empty and sets
// version and timestamps; r is updated in place.
func (tx *Tx) Insert(tenant int64, r *Resource) error {
	return tx.InsertMany(tenant, []*Resource{r})
}

// insertRows bounds the rows of one multi-row INSERT of resources: a user
// row binds 13 parameters.
const insertRows = 100

// InsertMany is Insert for new resources of one kind, all or none, in
// multi-row statements: the pull's creates, a round trip per hundred rows
// rather than three a resource. A taken userName or Entra object id is a
// Conflict naming it, found before anything is written.
func (tx *Tx) InsertMany(tenant int64, rs []*Resource) error {
	if len(rs) == 0 {
		return nil
	}
	kind := rs[0].Kind
	ki := kind.info()
	encs := make([]*encoded, len(rs))
	for i, r := range rs {
		if r.Kind != kind {
			return fmt.Errorf("store: InsertMany of a %s among %ss", r.Kind, kind)
		}
		if r.ID == "" {
			r.ID = NewID()
		}
		enc, err := r.encoding()
		if err != nil {
			return err
		}
		encs[i] = enc
	}
	if kind == UserKind {
		if err := tx.checkUserNames(tenant, rs); err != nil {
			return err
		}
	}
	if err := tx.checkEntraIDs(tenant, rs); err != nil {
		return err
	}
	tx.changed(tenant)
	names := append([]string{"tenant_id", "id", "entra_id", "version", "created_at", "modified_at", "doc"}, encs[0].names...)
	// A user the push creates is marked in the row itself (ManagedBy).
	pushed := kind == UserKind && tx.pushing()
	if pushed {
		names = append(names, "pushed_at")
	}
	row := "(" + placeholders(len(names)) + ")"
	var owned []ownedRow
	for start := 0; start < len(rs); start += insertRows {
		part := rs[start:min(start+insertRows, len(rs))]
		var sb strings.Builder
		sb.WriteString(`INSERT INTO ` + ki.table + ` (` + strings.Join(names, ", ") + `) VALUES `)
		args := make([]any, 0, len(part)*len(names))
		for i, r := range part {
			enc := encs[start+i]
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(row)
			r.Version, r.Created, r.LastModified = 1, tx.now, tx.now
			args = append(args, tenant, r.ID, nullable(strings.ToLower(r.EntraID)), r.Version, formatTime(tx.now), formatTime(tx.now), enc.doc)
			args = append(args, enc.values...)
			if pushed {
				args = append(args, formatTime(tx.now))
			}
			for _, a := range enc.rows {
				owned = append(owned, ownedRow{id: r.ID, attrRow: a})
			}
		}
		_, err := tx.exec(sb.String(), args...)
		if isUniqueViolation(err) {
			if len(rs) == 1 {
				return tx.uniquenessError(tenant, rs[0], err)
			}
			// Checked above: only a write committed meanwhile gets here.
			return Errorf(Conflict, "a new %s conflicts with one just stored (a userName or Entra object id taken)", kind)
		}
		if err != nil {
			return err
		}
	}
	return tx.index(tenant, kind, owned)
}

// checkUserNames gives the clear error for a taken or repeated userName
// among new users before the unique index would give an opaque one.
func (tx *Tx) checkUserNames(tenant int64, rs []*Resource) error {
	if len(rs) == 1 {
		return tx.checkUserName(tenant, rs[0].Str("userName"), "")
	}
	folded := make([]string, 0, len(rs))
	byFold := make(map[string]string, len(rs))
	for _, r := range rs {
		name := r.Str("userName")
		if name == "" {
			return Errorf(Invalid, "userName is required")
		}
		if _, twice := byFold[fold(name)]; twice {
			return Errorf(Conflict, "userName %q is already taken", name)
		}
		byFold[fold(name)] = name
		folded = append(folded, fold(name))
	}
	for _, part := range chunks(folded) {
		var taken []string
		q, args, err := inQuery(`SELECT user_name_fold FROM users WHERE tenant_id = ? AND user_name_fold IN (?)`, tenant, part)
		if err != nil {
			return err
		}
		if err := tx.selectRows(&taken, q, args...); err != nil {
			return err
		}
		if len(taken) > 0 {
			return Errorf(Conflict, "userName %q is already taken", byFold[taken[0]])
		}
	}
	return nil
}

// checkEntraIDs fails with Conflict when another resource of the kind has
// the Entra object id of one of rs (a pull's creates; SCIM's have none).
func (tx *Tx) checkEntraIDs(tenant int64, rs []*Resource) error {
	var ids []string
	for _, r := range rs {
		if r.EntraID != "" {
			ids = append(ids, strings.ToLower(r.EntraID))
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if len(dedupe(ids)) < len(ids) {
		return Errorf(Conflict, "two new %ss have the same Entra object id", rs[0].Kind)
	}
	for _, part := range chunks(ids) {
		var taken []string
		q, args, err := inQuery(`SELECT entra_id FROM `+rs[0].Kind.info().table+` WHERE tenant_id = ? AND entra_id IN (?)`, tenant, part)
		if err != nil {
			return err
		}
		if err := tx.selectRows(&taken, q, args...); err != nil {
			return err
		}
		if len(taken) > 0 {
			return Errorf(Conflict, "another %s already has Entra object id %q", rs[0].Kind, taken[0])
		}
	}
	return nil
}

// Prior is what an Update found stored before it: read from the row's
// columns, without decoding the stored document.
type Prior struct {
	Version int64
	Active  bool   // a user's active flag; true for a group
	Doc     string // the stored document's JSON, to tell what changed
}

// Update replaces a stored resource's document (and Entra id). With
// ifVersion > 0 it fails with Precondition unless the stored version is
// ifVersion. Writing what is already stored changes nothing, not even the
// version, so replaying a change is harmless; changed reports whether it
// wrote, prior tells the state before.
func (tx *Tx) Update(tenant int64, r *Resource, ifVersion int64) (prior Prior, changed bool, err error) {
	ki := r.Kind.info()
	enc, err := r.encoding()
	if err != nil {
		return Prior{}, false, err
	}
	var cur struct {
		Version    int64          `db:"version"`
		EntraID    sql.NullString `db:"entra_id"`
		CreatedAt  string         `db:"created_at"`
		ModifiedAt string         `db:"modified_at"`
		Doc        string         `db:"doc"`
		Active     bool           `db:"active"`
	}
	err = tx.get(&cur, `SELECT version, entra_id, created_at, modified_at, doc, `+ki.active+` AS active FROM `+ki.table+` WHERE tenant_id = ? AND id = ?`+tx.db.dialect.lock(lockUpdate), tenant, r.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return Prior{}, false, Errorf(NotFound, "%s %q not found", r.Kind, r.ID)
	}
	if err != nil {
		return Prior{}, false, err
	}
	prior = Prior{Version: cur.Version, Active: cur.Active, Doc: cur.Doc}
	if ifVersion > 0 && cur.Version != ifVersion {
		return prior, false, Errorf(Precondition, "%s %q was modified (version %d, expected %d)", r.Kind, r.ID, cur.Version, ifVersion)
	}
	// Stored documents are marshalDoc's bytes, so equal text is an equal document.
	if cur.Doc == enc.doc && strings.EqualFold(cur.EntraID.String, r.EntraID) {
		r.EntraID, r.Version, r.Created, r.LastModified = cur.EntraID.String, cur.Version, parseTime(cur.CreatedAt), parseTime(cur.ModifiedAt)
		return prior, false, nil
	}
	if r.Kind == UserKind {
		if err := tx.checkUserName(tenant, r.Str("userName"), r.ID); err != nil {
			return prior, false, err
		}
	}
	set := make([]string, 0, len(enc.names)+4)
	for _, n := range enc.names {
		set = append(set, n+" = ?")
	}
	set = append(set, "entra_id = ?", "version = version + 1", "modified_at = ?", "doc = ?")
	values := append(append([]any{}, enc.values...), nullable(strings.ToLower(r.EntraID)), formatTime(tx.now), enc.doc)
	if r.Kind == UserKind && tx.pushing() {
		// The first push write marks the row (ManagedBy); later ones keep that time.
		set = append(set, "pushed_at = COALESCE(pushed_at, ?)")
		values = append(values, formatTime(tx.now))
	}
	values = append(values, tenant, r.ID)
	_, err = tx.exec(`UPDATE `+ki.table+` SET `+strings.Join(set, ", ")+` WHERE tenant_id = ? AND id = ?`, values...)
	if isUniqueViolation(err) {
		return prior, false, tx.uniquenessError(tenant, r, err)
	}
	if err != nil {
		return prior, false, err
	}
	tx.changed(tenant)
	r.Version, r.Created, r.LastModified = cur.Version+1, parseTime(cur.CreatedAt), tx.now
	return prior, true, tx.reindex(tenant, r.Kind, r.ID, enc.rows)
}

// CheckVersion fails with NotFound when the resource is not stored and with
// Precondition when its version is not version: the check of an If-Match,
// inside the transaction that then writes.
func (tx *Tx) CheckVersion(tenant int64, kind Kind, id string, version int64) error {
	cur, _, err := tx.Revision(tenant, kind, id)
	if err != nil {
		return err
	}
	if cur != version {
		return Errorf(Precondition, "%s %q was modified (version %d, expected %d)", kind, id, cur, version)
	}
	return nil
}

// Revision returns a stored resource's version and last-modified stamp as
// this transaction sees them, without reading its document.
func (tx *Tx) Revision(tenant int64, kind Kind, id string) (version int64, modified time.Time, err error) {
	var row struct {
		Version    int64  `db:"version"`
		ModifiedAt string `db:"modified_at"`
	}
	// Locked: a version checked here stays the version until this
	// transaction commits (an If-Match and the write it guards).
	err = tx.get(&row, `SELECT version, modified_at FROM `+kind.info().table+` WHERE tenant_id = ? AND id = ?`+tx.db.dialect.lock(lockUpdate), tenant, id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, Errorf(NotFound, "%s %q not found", kind, id)
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	return row.Version, parseTime(row.ModifiedAt), nil
}

// Delete removes a resource, its index rows and every membership it has,
// as a group and as a member.
func (tx *Tx) Delete(tenant int64, kind Kind, id string) error {
	ki := kind.info()
	tx.changed(tenant)
	if tx.db.dialect.concurrentWrites {
		// Lock the row first: a concurrent membership change that checked
		// this resource exists (memberKinds, requireGroup) holds it or waits.
		if _, err := tx.exec(`SELECT id FROM `+ki.table+` WHERE tenant_id = ? AND id = ?`+lockUpdate, tenant, id); err != nil {
			return err
		}
	}
	// Groups that lose this member change too: bump them before the rows go.
	if _, err := tx.exec(`UPDATE groups SET version = version + 1, modified_at = ?
		WHERE tenant_id = ? AND id IN (SELECT group_id FROM memberships WHERE tenant_id = ? AND member_id = ?)`,
		formatTime(tx.now), tenant, tenant, id); err != nil {
		return err
	}
	if _, err := tx.exec(`DELETE FROM memberships WHERE tenant_id = ? AND member_id = ?`, tenant, id); err != nil {
		return err
	}
	if _, err := tx.exec(`DELETE FROM attrs WHERE tenant_id = ? AND resource = ? AND resource_id = ?`, tenant, ki.tag, id); err != nil {
		return err
	}
	res, err := tx.exec(`DELETE FROM `+ki.table+` WHERE tenant_id = ? AND id = ?`, tenant, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Errorf(NotFound, "%s %q not found", kind, id)
	}
	return nil
}

// checkUserName gives the clear error for a taken userName before the
// unique index would give an opaque one.
func (tx *Tx) checkUserName(tenant int64, userName, self string) error {
	if userName == "" {
		return Errorf(Invalid, "userName is required")
	}
	if tx.db.dialect.concurrentWrites {
		// PostgreSQL names the violated index (uniquenessError), and a
		// round trip saved is a fifth of a create: the index tells.
		return nil
	}
	var id string
	err := tx.get(&id, `SELECT id FROM users WHERE tenant_id = ? AND user_name_fold = ?`, tenant, fold(userName))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && id == self) {
		return nil
	}
	if err != nil {
		return err
	}
	return Errorf(Conflict, "userName %q is already taken", userName)
}

func (tx *Tx) uniquenessError(tenant int64, r *Resource, cause error) error {
	if strings.Contains(constraintName(cause), "entra_id") {
		return Errorf(Conflict, "another %s already has Entra object id %q", r.Kind, r.EntraID)
	}
	if r.Kind == UserKind {
		return Errorf(Conflict, "userName %q is already taken", r.Str("userName"))
	}
	return Errorf(Conflict, "%s conflicts with an existing one", r.Kind)
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
