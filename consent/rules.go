package consent

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
)

// RulesFormat is the first field of a national rules file: the format and
// its version.
const RulesFormat = "vigie-national-rules-v1"

// MaxRulesSize is the largest national rules file, in bytes.
const MaxRulesSize = 1 << 20

// Limits on the national rules' contents.
const (
	maxRulesCodes = 512
	maxLabelLen   = 256
	maxTitleLen   = 4096
)

// SectorAccess is how a sector reaches patients' records.
type SectorAccess string

const (
	// AccessCare: health care. The care-team presumption and break-glass
	// apply, and the patient's directives.
	AccessCare SectorAccess = "care"
	// AccessRegulation: emergency regulation (the SAMU). Its regulating
	// professionals have the SAMU regulator path; the patient's
	// directives apply.
	AccessRegulation SectorAccess = "regulation"
	// AccessExpressConsent: only the patient's express consent (an
	// allow-professional directive) gives access, as for occupational and
	// fire-brigade physicians.
	AccessExpressConsent SectorAccess = "express-consent"
	// AccessNever: never any access, whatever the consent (employers,
	// insurers, banks).
	AccessNever SectorAccess = "never"
)

func (a SectorAccess) valid() bool {
	return a == AccessCare || a == AccessRegulation || a == AccessExpressConsent || a == AccessNever
}

// RulesData is the content of a national rules file: its JSON model.
// docs/consent.md documents every field.
type RulesData struct {
	// Format is [RulesFormat].
	Format string `json:"format"`
	// Version numbers the rules; each published version is kept.
	Version int64 `json:"version"`
	// Illustrative marks rules that are not the official ones.
	Illustrative bool `json:"illustrative"`
	// Title describes the rules and their source.
	Title string `json:"title"`
	// CareTeamPresumption: members of the care team are deemed
	// authorised (CSP R1111-46).
	CareTeamPresumption bool `json:"care_team_presumption"`
	// TreatingPhysicianReadsHidden: the treating physician, and the
	// professionals the patient gave extended rights, read hidden
	// documents.
	TreatingPhysicianReadsHidden bool `json:"treating_physician_reads_hidden"`
	// CarePurposes are the purposes of use of ordinary access.
	CarePurposes []Purpose `json:"care_purposes"`
	// EmergencyPurposes are the purposes of use of emergency access.
	EmergencyPurposes []Purpose `json:"emergency_purposes"`
	// EmergencyJustificationRequired: an emergency access without a
	// justification is denied.
	EmergencyJustificationRequired bool `json:"emergency_justification_required"`
	// EmergencyProfessions may break the glass, in a care sector.
	EmergencyProfessions []string `json:"emergency_professions"`
	// RegulatorProfessions may read as SAMU regulators, in a regulation
	// sector.
	RegulatorProfessions []string `json:"regulator_professions"`
	// Sectors are the known sectors.
	Sectors []Sector `json:"sectors"`
	// DocumentTypes are the known document types.
	DocumentTypes []DocumentType `json:"document_types"`
	// Professions are the known professions with their row of the access
	// matrix.
	Professions []Profession `json:"professions"`
}

// Sector is a sector of activity and its access.
type Sector struct {
	Code   string       `json:"code"`
	Access SectorAccess `json:"access"`
	FR     string       `json:"fr"`
	EN     string       `json:"en"`
}

// DocumentType is a document type.
type DocumentType struct {
	Code string `json:"code"`
	FR   string `json:"fr"`
	EN   string `json:"en"`
}

// Profession is a profession and its row of the access matrix: the
// document types it may read and write. Any other type is denied.
type Profession struct {
	Code  string   `json:"code"`
	FR    string   `json:"fr"`
	EN    string   `json:"en"`
	Read  []string `json:"read"`
	Write []string `json:"write"`
}

// Rules is a parsed, immutable version of the national rules, with the
// exact bytes it was parsed from. Safe for concurrent use.
type Rules struct {
	raw  []byte
	hash [32]byte
	data RulesData

	docTypes    map[string]bool
	professions map[string]*Profession
	sectors     map[string]SectorAccess
}

// RulesParser parses national rules once per content, for the decisions
// that name them. Not safe for concurrent use.
type RulesParser map[[32]byte]*Rules

// Of returns the rules in b if they are the very rules d was made with
// (b hashes to d.RulesHash) and parse; nil otherwise: another version
// under that number, or a file that does not parse.
func (p RulesParser) Of(b []byte, d *Decision) *Rules {
	h := sha256.Sum256(b)
	if h != d.RulesHash {
		return nil
	}
	r, ok := p[h]
	if !ok {
		var err error
		if r, err = ParseRules(b); err != nil {
			r = nil
		}
		p[h] = r
	}
	return r
}

// ParseRules parses a national rules file. Parsing is strict and
// canonical: unknown or missing fields, lists out of order or with
// duplicates, unknown codes in the matrix, and any spelling other than
// the one [FormatRules] writes are errors, so that one version has
// exactly one byte representation and its hash names it. Use
// [CanonicalRules] to bring a hand-edited file into canonical form.
func ParseRules(b []byte) (*Rules, error) {
	if len(b) > MaxRulesSize {
		return nil, fmt.Errorf("national rules: larger than %d bytes", MaxRulesSize)
	}
	d, err := decodeRules(b)
	if err != nil {
		return nil, err
	}
	canon, err := FormatRules(d)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(canon, b) {
		return nil, fmt.Errorf("national rules: not in canonical form (first difference at byte %d); see CanonicalRules", firstDiff(canon, b))
	}
	return newRules(b, d), nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// CanonicalRules re-encodes a national rules file in canonical form. It
// accepts any JSON spelling and list order of valid rules, and checks
// them as [ParseRules] does.
func CanonicalRules(b []byte) ([]byte, error) {
	if len(b) > MaxRulesSize {
		return nil, fmt.Errorf("national rules: larger than %d bytes", MaxRulesSize)
	}
	d, err := decodeRules(b)
	if err != nil {
		return nil, err
	}
	sortRules(&d)
	return FormatRules(d)
}

// NewRules formats d canonically and parses the result.
func NewRules(d RulesData) (*Rules, error) {
	b, err := FormatRules(d)
	if err != nil {
		return nil, err
	}
	return ParseRules(b)
}

// LoadRulesFile reads and parses a national rules file (see [ParseRules]):
// the file named in the node's configuration. It reads no more than
// MaxRulesSize+1 bytes, so a larger or endless file is refused early.
func LoadRulesFile(path string) (*Rules, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("national rules: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxRulesSize+1))
	if err != nil {
		return nil, fmt.Errorf("national rules: read %s: %w", path, err)
	}
	r, err := ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

func decodeRules(b []byte) (RulesData, error) {
	var d RulesData
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return RulesData{}, fmt.Errorf("national rules: %w", err)
	}
	if dec.More() {
		return RulesData{}, errors.New("national rules: data after the JSON object")
	}
	return d, nil
}

// FormatRules encodes d in the canonical form: JSON indented by two
// spaces, fields in the order of [RulesData], no HTML escaping, a final
// newline. It checks d as [ParseRules] does.
func FormatRules(d RulesData) ([]byte, error) {
	if err := checkRules(&d); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("national rules: %w", err)
	}
	return buf.Bytes(), nil
}

func sortRules(d *RulesData) {
	slices.Sort(d.CarePurposes)
	slices.Sort(d.EmergencyPurposes)
	slices.Sort(d.EmergencyProfessions)
	slices.Sort(d.RegulatorProfessions)
	slices.SortFunc(d.Sectors, func(a, b Sector) int { return cmpString(a.Code, b.Code) })
	slices.SortFunc(d.DocumentTypes, func(a, b DocumentType) int { return cmpString(a.Code, b.Code) })
	slices.SortFunc(d.Professions, func(a, b Profession) int { return cmpString(a.Code, b.Code) })
	for i := range d.Professions {
		slices.Sort(d.Professions[i].Read)
		slices.Sort(d.Professions[i].Write)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type rulesError struct{ field, problem string }

func (e *rulesError) Error() string { return "national rules: " + e.field + ": " + e.problem }

func rerr(field, problem string) error { return &rulesError{field, problem} }

// sortedCodes checks that list is strictly increasing (sorted, no
// duplicates), each a valid code, and, with known, each known.
func sortedCodes[T ~string](field string, list []T, known func(string) bool) error {
	if list == nil {
		return rerr(field, "required (use [] for none)")
	}
	if len(list) > maxRulesCodes {
		return rerr(field, "too many entries")
	}
	for i, c := range list {
		f := field + "[" + strconv.Itoa(i) + "]"
		if err := CheckCode(string(c), 64); err != nil {
			return rerr(f, err.Error())
		}
		if i > 0 && !(list[i-1] < c) {
			return rerr(f, "not sorted or duplicated")
		}
		if known != nil && !known(string(c)) {
			return rerr(f, "unknown code")
		}
	}
	return nil
}

func checkLabel(field, s string) error {
	if s == "" {
		return rerr(field, "required")
	}
	if len(s) > maxLabelLen {
		return rerr(field, "too long")
	}
	if err := CheckText(s, maxLabelLen); err != nil {
		return rerr(field, err.Error())
	}
	return nil
}

func checkRules(d *RulesData) error {
	if d.Format != RulesFormat {
		return rerr("format", "must be "+strconv.Quote(RulesFormat))
	}
	if d.Version < 1 {
		return rerr("version", "must be at least 1")
	}
	if d.Title == "" || len(d.Title) > maxTitleLen {
		return rerr("title", "required, at most "+strconv.Itoa(maxTitleLen)+" bytes")
	}
	if err := CheckText(d.Title, maxTitleLen); err != nil {
		return rerr("title", err.Error())
	}
	validPurpose := func(s string) bool { return Purpose(s).Valid() }
	if err := sortedCodes("care_purposes", d.CarePurposes, validPurpose); err != nil {
		return err
	}
	if err := sortedCodes("emergency_purposes", d.EmergencyPurposes, validPurpose); err != nil {
		return err
	}
	for _, p := range d.CarePurposes {
		if slices.Contains(d.EmergencyPurposes, p) {
			return rerr("emergency_purposes", string(p)+" is also a care purpose")
		}
	}
	for i, s := range d.Sectors {
		f := "sectors[" + strconv.Itoa(i) + "]"
		if err := CheckCode(s.Code, 32); err != nil {
			return rerr(f+".code", err.Error())
		}
		if i > 0 && !(d.Sectors[i-1].Code < s.Code) {
			return rerr(f+".code", "not sorted or duplicated")
		}
		if !s.Access.valid() {
			return rerr(f+".access", "must be care, regulation, express-consent or never")
		}
		if err := checkLabel(f+".fr", s.FR); err != nil {
			return err
		}
		if err := checkLabel(f+".en", s.EN); err != nil {
			return err
		}
	}
	if d.Sectors == nil || len(d.Sectors) > maxRulesCodes {
		return rerr("sectors", "required, at most "+strconv.Itoa(maxRulesCodes))
	}
	types := make(map[string]bool, len(d.DocumentTypes))
	for i, t := range d.DocumentTypes {
		f := "document_types[" + strconv.Itoa(i) + "]"
		if err := CheckCode(t.Code, 64); err != nil {
			return rerr(f+".code", err.Error())
		}
		if i > 0 && !(d.DocumentTypes[i-1].Code < t.Code) {
			return rerr(f+".code", "not sorted or duplicated")
		}
		if err := checkLabel(f+".fr", t.FR); err != nil {
			return err
		}
		if err := checkLabel(f+".en", t.EN); err != nil {
			return err
		}
		types[t.Code] = true
	}
	if d.DocumentTypes == nil || len(d.DocumentTypes) > maxRulesCodes {
		return rerr("document_types", "required, at most "+strconv.Itoa(maxRulesCodes))
	}
	profs := make(map[string]bool, len(d.Professions))
	for i, p := range d.Professions {
		f := "professions[" + strconv.Itoa(i) + "]"
		if err := CheckCode(p.Code, 8); err != nil {
			return rerr(f+".code", err.Error())
		}
		if i > 0 && !(d.Professions[i-1].Code < p.Code) {
			return rerr(f+".code", "not sorted or duplicated")
		}
		if err := checkLabel(f+".fr", p.FR); err != nil {
			return err
		}
		if err := checkLabel(f+".en", p.EN); err != nil {
			return err
		}
		knownType := func(s string) bool { return types[s] }
		if err := sortedCodes(f+".read", p.Read, knownType); err != nil {
			return err
		}
		if err := sortedCodes(f+".write", p.Write, knownType); err != nil {
			return err
		}
		profs[p.Code] = true
	}
	if d.Professions == nil || len(d.Professions) > maxRulesCodes {
		return rerr("professions", "required, at most "+strconv.Itoa(maxRulesCodes))
	}
	knownProf := func(s string) bool { return profs[s] }
	if err := sortedCodes("emergency_professions", d.EmergencyProfessions, knownProf); err != nil {
		return err
	}
	if err := sortedCodes("regulator_professions", d.RegulatorProfessions, knownProf); err != nil {
		return err
	}
	return nil
}

func newRules(raw []byte, d RulesData) *Rules {
	r := &Rules{
		raw:         bytes.Clone(raw),
		hash:        sha256.Sum256(raw),
		data:        d,
		docTypes:    make(map[string]bool, len(d.DocumentTypes)),
		professions: make(map[string]*Profession, len(d.Professions)),
		sectors:     make(map[string]SectorAccess, len(d.Sectors)),
	}
	for _, t := range d.DocumentTypes {
		r.docTypes[t.Code] = true
	}
	for i := range r.data.Professions {
		r.professions[r.data.Professions[i].Code] = &r.data.Professions[i]
	}
	for _, s := range d.Sectors {
		r.sectors[s.Code] = s.Access
	}
	return r
}

// Version returns the rules' version.
func (r *Rules) Version() int64 { return r.data.Version }

// Hash returns the SHA-256 of the rules' exact bytes. Decisions carry it,
// so that auditors fetch and check the exact rules a decision used.
func (r *Rules) Hash() [32]byte { return r.hash }

// Bytes returns a copy of the rules' exact bytes.
func (r *Rules) Bytes() []byte { return bytes.Clone(r.raw) }

// Illustrative reports whether the rules are marked illustrative (not the
// official ones).
func (r *Rules) Illustrative() bool { return r.data.Illustrative }

// Data returns a deep copy of the rules' content.
func (r *Rules) Data() RulesData {
	d := r.data
	d.CarePurposes = slices.Clone(d.CarePurposes)
	d.EmergencyPurposes = slices.Clone(d.EmergencyPurposes)
	d.EmergencyProfessions = slices.Clone(d.EmergencyProfessions)
	d.RegulatorProfessions = slices.Clone(d.RegulatorProfessions)
	d.Sectors = slices.Clone(d.Sectors)
	d.DocumentTypes = slices.Clone(d.DocumentTypes)
	d.Professions = slices.Clone(d.Professions)
	for i := range d.Professions {
		d.Professions[i].Read = slices.Clone(d.Professions[i].Read)
		d.Professions[i].Write = slices.Clone(d.Professions[i].Write)
	}
	return d
}

// Emergency reports whether p is one of the rules' emergency purposes: an
// access for it is an emergency (break-glass) access, allowed or not,
// which the ledger flags for the auditors' search, misuse alerts count and
// reviewers review. This is the one home of that rule: callers ask the
// rules a decision was made with (its RulesVersion), never a list of
// codes.
func (r *Rules) Emergency(p Purpose) bool {
	_, ok := slices.BinarySearch(r.data.EmergencyPurposes, p)
	return ok
}

// KnowsDocumentType reports whether code is a document type of the rules.
func (r *Rules) KnowsDocumentType(code string) bool { return r.docTypes[code] }

// SectorAccess returns the access of a sector, and false for a sector the
// rules do not know.
func (r *Rules) SectorAccess(code string) (SectorAccess, bool) {
	a, ok := r.sectors[code]
	return a, ok
}

// Permits reports whether the access matrix lets a profession do action
// (read or write) on a document type. Unknown codes are not permitted.
func (r *Rules) Permits(profession string, action Action, docType string) bool {
	p := r.professions[profession]
	if p == nil {
		return false
	}
	switch action {
	case ActionRead:
		_, ok := slices.BinarySearch(p.Read, docType)
		return ok
	case ActionWrite:
		_, ok := slices.BinarySearch(p.Write, docType)
		return ok
	}
	return false
}
