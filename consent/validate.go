package consent

import (
	"errors"
	"fmt"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
)

// Limits on what a patient's consent and a request may hold.
const (
	// MaxDirectives is the most directives one patient's consent holds.
	// The DMP's own choices (block, hide, treating physician...) come to
	// a handful per patient; 64 leaves room while keeping a decision's
	// cost bounded.
	MaxDirectives = 64
	// MaxPatterns is the most directives with a pattern one consent
	// holds: each compiles to a regular expression kept in memory.
	MaxPatterns = 4
	// MaxPatternLen is the longest pattern, in bytes.
	MaxPatternLen = 128
	// MaxPatternProgram is the most instructions a pattern's expressions
	// compile to, in total (Go's regexp/syntax program, after
	// simplification). Matching takes time proportional to the length of
	// the document ID times this size: 128 bytes of counted repetitions
	// such as (?:\w{1,99}){1,9} compile to thousands of instructions and
	// took 100 ms per match. Useful patterns take a few (stay-<[0-9]+>:
	// 4; <(\d{1,3}\.){3}\d{1,3}>: 31).
	MaxPatternProgram = 64
	// MaxJustificationLen is the longest justification, in bytes.
	MaxJustificationLen = 1024
)

// FieldError is a validation error naming the field at fault, as a path
// (e.g. "actor.rpps", "directives[2].until"). Its text never contains an
// INS. Callers test for it with errors.As.
type FieldError struct {
	// Field is the path of the field at fault.
	Field string
	// Problem says what is wrong, in English, without echoing
	// identifiers: for people reading logs and API answers.
	Problem string
	// Kind is what is wrong, for machines (a client that says it in its
	// own words); "" is [ProblemInvalid].
	Kind ProblemKind
	// Other is the path of the other field the problem names, if any
	// ("directives[0]" for a duplicate of it).
	Other string
	// Limit is the limit a [ProblemTooLong] or [ProblemTooMany] passed.
	Limit int
	// Err is the underlying error, if any.
	Err error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

func (e *FieldError) Unwrap() error { return e.Err }

// ProblemKind is what is wrong with a field, for machines: the API
// carries it in the ErrorInfo of its INVALID_FIELD answers (metadata
// "problem", docs/api.md), and the portal says it in its reader's
// language (internal/texts has a text "problem.<kind>" for each).
type ProblemKind string

// The kinds of problems. Clients MUST treat a kind they do not know as
// ProblemInvalid.
const (
	// ProblemRequired: the field is missing or empty.
	ProblemRequired ProblemKind = "required"
	// ProblemTooLong: longer than Limit bytes.
	ProblemTooLong ProblemKind = "too_long"
	// ProblemTooMany: more than Limit items.
	ProblemTooMany ProblemKind = "too_many"
	// ProblemInvalidFormat: not spelled as the field's kind of value (an
	// RPPS or FINESS number, an identifier).
	ProblemInvalidFormat ProblemKind = "invalid_format"
	// ProblemSameID: a directive has the ID of the directive Other.
	ProblemSameID ProblemKind = "same_id"
	// ProblemDuplicate: the directive repeats the directive Other, in an
	// overlapping period.
	ProblemDuplicate ProblemKind = "duplicate"
	// ProblemBlockedAndAllowed: the professional is blocked by one
	// directive and allowed by the directive Other, in an overlapping
	// period.
	ProblemBlockedAndAllowed ProblemKind = "blocked_and_allowed"
	// ProblemSecondPhysician: a second treating physician, whose period
	// overlaps the directive Other's.
	ProblemSecondPhysician ProblemKind = "second_physician"
	// ProblemInvalid: any other problem; the message says which.
	ProblemInvalid ProblemKind = "invalid"
)

// ProblemKinds returns every kind of problem.
func ProblemKinds() []ProblemKind {
	return []ProblemKind{ProblemRequired, ProblemTooLong, ProblemTooMany, ProblemInvalidFormat, ProblemSameID,
		ProblemDuplicate, ProblemBlockedAndAllowed, ProblemSecondPhysician, ProblemInvalid}
}

// KindOf returns the kind of e's problem: Kind, or [ProblemInvalid] when
// it is not set.
func (e *FieldError) KindOf() ProblemKind {
	if e.Kind == "" {
		return ProblemInvalid
	}
	return e.Kind
}

func fieldErr(field, problem string) error { return &FieldError{Field: field, Problem: problem} }

// missing is the error of a required field that is absent; with, it says
// for what ("required for block-professional").
func missing(field, with string) error {
	p := "required"
	if with != "" {
		p += " for " + with
	}
	return &FieldError{Field: field, Problem: p, Kind: ProblemRequired}
}

// ValidateRequest checks a request at the boundary: every required field
// present and well-formed. It does not check codes against the national
// rules: an unknown profession, sector or document type is a decision
// (DENY), not a malformed request. It returns a *[FieldError].
func ValidateRequest(r *Request) error {
	if err := CheckRequestID("id", r.ID); err != nil {
		return err
	}
	if err := checkToken("service", r.Service, 128, false); err != nil {
		return err
	}
	if r.Patient.IsZero() {
		return missing("patient", "")
	}
	if r.Actor.RPPS.IsZero() {
		return missing("actor.rpps", "")
	}
	if err := checkCode("actor.profession", r.Actor.Profession, 8); err != nil {
		return err
	}
	if r.Actor.Specialty != "" {
		if err := checkCode("actor.specialty", r.Actor.Specialty, 16); err != nil {
			return err
		}
	}
	if err := checkCode("actor.sector", r.Actor.Sector, 32); err != nil {
		return err
	}
	if r.Actor.Organization.IsZero() {
		return missing("actor.organization", "")
	}
	if r.Action == "" {
		return missing("action", "")
	}
	if !r.Action.Valid() {
		return fieldErr("action", "must be read, write or hide")
	}
	switch r.Resource.Kind {
	case ResourceRecord:
		if r.Action != ActionRead {
			return fieldErr("resource.kind", "write and hide apply to a document")
		}
		if r.Resource.DocumentID != "" || r.Resource.DocumentType != "" || !r.Resource.Author.IsZero() || r.Resource.Hidden {
			return fieldErr("resource", "a record has no document fields")
		}
	case ResourceDocument:
		if err := checkToken("resource.document_id", r.Resource.DocumentID, 128, false); err != nil {
			return err
		}
		if err := checkCode("resource.document_type", r.Resource.DocumentType, 64); err != nil {
			return err
		}
	case "":
		return missing("resource.kind", "")
	default:
		return fieldErr("resource.kind", "must be record or document")
	}
	if r.Purpose == "" {
		return missing("purpose", "")
	}
	if !r.Purpose.Valid() {
		return fieldErr("purpose", "unknown purpose of use")
	}
	if err := checkText("justification", r.Justification, MaxJustificationLen); err != nil {
		return err
	}
	if r.Time.IsZero() {
		return missing("time", "")
	}
	if r.MinConsentVersion < 0 {
		return fieldErr("min_consent_version", "must not be negative")
	}
	return nil
}

// MaxRequestID is the longest request ID, in bytes.
const MaxRequestID = 64

// CheckRequestID checks a caller's request ID: 1 to [MaxRequestID] bytes
// of [A-Za-z0-9._:-], as the ledger's idempotency keys take them. Its
// error is a *[FieldError] naming field.
func CheckRequestID(field, id string) error { return checkToken(field, id, MaxRequestID, false) }

// checkToken checks an identifier: 1 to max bytes of [A-Za-z0-9._:-], and
// with pattern, ladon's pattern delimiters < and > too.
func checkToken(field, s string, max int, pattern bool) error {
	if s == "" {
		return missing(field, "")
	}
	if len(s) > max {
		return &FieldError{Field: field, Problem: "longer than " + strconv.Itoa(max) + " bytes", Kind: ProblemTooLong, Limit: max}
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			return &FieldError{Field: field, Problem: "character " + strconv.Itoa(i+1) + " is not one of A-Z a-z 0-9 . _ : -", Kind: ProblemInvalidFormat}
		}
	}
	return nil
}

func tokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == ':' || c == '-'
}

// checkCode checks a code of the national rules: 1 to max bytes of
// [A-Za-z0-9._-], starting with a letter or digit.
func checkCode(field, s string, max int) error {
	if err := CheckCode(s, max); err != nil {
		return fieldErr(field, err.Error())
	}
	return nil
}

// CheckCode checks a code of the national rules (a profession, sector or
// document type code): 1 to max bytes of [A-Za-z0-9._-], starting with a
// letter or a digit.
func CheckCode(s string, max int) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > max {
		return errors.New("longer than " + strconv.Itoa(max) + " bytes")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || (i > 0 && (c == '.' || c == '_' || c == '-'))
		if !ok {
			return errors.New("character " + strconv.Itoa(i+1) + " is not allowed in a code")
		}
	}
	return nil
}

// IsPattern reports whether a HideDocument target is a pattern (it holds
// ladon's delimiter '<') rather than a document ID.
func IsPattern(s string) bool { return strings.IndexByte(s, '<') >= 0 }

// CheckPattern checks the syntax of a document-ID pattern: ladon's
// template syntax, literal text and regular expressions between < and >,
// with balanced delimiters, literal text made of document-ID characters,
// and each expression in the RE2 syntax and in its portable subset (see
// [PortableExpression]). The engine compiles the pattern as well when the
// consent is written (see [Engine.CheckConsent]).
func CheckPattern(p string) error {
	if len(p) > MaxPatternLen {
		return errors.New("pattern longer than " + strconv.Itoa(MaxPatternLen) + " bytes")
	}
	level, start, program := 0, 0, 0
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '<':
			if level == 0 {
				start = i + 1
			}
			level++
		case '>':
			level--
			if level < 0 {
				return errors.New("unbalanced > in pattern")
			}
			if level == 0 {
				re, err := syntax.Parse(p[start:i], syntax.Perl)
				if err != nil {
					// The code only: the error quotes the expression,
					// which may hold health data (a document's name).
					var se *syntax.Error
					if errors.As(err, &se) {
						return fmt.Errorf("pattern expression does not compile: %s", se.Code)
					}
					return errors.New("pattern expression does not compile")
				}
				if j := PortableExpression(p[start:i]); j >= 0 {
					return errors.New("pattern character " + strconv.Itoa(start+j+1) + " is outside the portable subset of RE2 (docs/consent.md)")
				}
				prog, err := syntax.Compile(re.Simplify())
				if err != nil {
					return errors.New("pattern expression does not compile")
				}
				if program += len(prog.Inst); program > MaxPatternProgram {
					return errors.New("pattern too complex: its expressions compile to more than " + strconv.Itoa(MaxPatternProgram) + " instructions")
				}
			}
		default:
			if level == 0 && !tokenByte(c) {
				return errors.New("pattern character " + strconv.Itoa(i+1) + " is not one of A-Z a-z 0-9 . _ : - < >")
			}
			if c == '\n' || c == '/' {
				return errors.New("pattern must not contain / or a newline")
			}
		}
	}
	if level != 0 {
		return errors.New("unbalanced < in pattern")
	}
	return nil
}

// PortableExpression returns -1 if the regular expression e (the text
// between a pattern's delimiters) uses only the portable subset of RE2,
// and otherwise the index in e of the first byte outside it.
//
// Patterns were matched by a backtracking engine with .NET's syntax
// (dlclark/regexp2) before Vigie moved to Go's regexp, and decisions
// recorded then must replay the same. The portable subset is the syntax
// both engines read the same way and match the same way on every
// resource a request can name (document IDs and types are ASCII
// [A-Za-z0-9._:-], without a newline):
//
//   - literal characters A-Z a-z 0-9 _ : -, and any of . - * + ? ( ) [ ] { } | ^ $ \ escaped by \;
//   - . ^ $ | * + ? and their lazy forms *? +? ??;
//   - counted repetition {n} {n,} {n,m} and its lazy form;
//   - groups ( ), (?: ), and the case-insensitive flag (?i) and (?i: );
//   - the classes \d \D \w \W \s \S;
//   - bracketed classes [ ] and [^ ] of literal characters, the classes
//     above, escaped . - [ ] \ ^, and ranges within digits, lower case or
//     upper case letters; a literal - only first or last.
//
// Everything else is refused, among it what the engines read differently
// (class subtraction [a-z-[aeiou]], POSIX classes [[:alpha:]], octal
// escapes, \b in a class, (?s) and (?m) flags, \p{...}) and what matters
// only for other characters than a document ID's (non-ASCII text, \x,
// spaces). \d, \w, \s, $ and (?i) differ between the engines only on
// non-ASCII text or a final newline, which no resource contains.
func PortableExpression(e string) int {
	for i := 0; i < len(e); {
		c := e[i]
		switch {
		case isAlnum(c) || c == '_' || c == ':' || c == '-',
			c == '.' || c == '*' || c == '+' || c == '?' || c == '|' || c == ')' || c == '^' || c == '$':
			i++
		case c == '(':
			switch {
			case strings.HasPrefix(e[i:], "(?:"):
				i += 3
			case strings.HasPrefix(e[i:], "(?i)"), strings.HasPrefix(e[i:], "(?i:"):
				i += 4
			case strings.HasPrefix(e[i:], "(?"):
				return i
			default:
				i++
			}
		case c == '{':
			j := portableRepeat(e, i)
			if j < 0 {
				return i
			}
			i = j
		case c == '\\':
			if i+1 >= len(e) || !portableEscape(e[i+1], false) {
				return i
			}
			i += 2
		case c == '[':
			j, bad := portableClass(e, i)
			if bad >= 0 {
				return bad
			}
			i = j
		default:
			return i
		}
	}
	return -1
}

// alnumKind is 1 for a digit, 2 for a lower-case letter, 3 for an
// upper-case letter, and 0 otherwise.
func alnumKind(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return 1
	case 'a' <= c && c <= 'z':
		return 2
	case 'A' <= c && c <= 'Z':
		return 3
	}
	return 0
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// portableEscape reports whether \c is in the portable subset, in a
// bracketed class or outside.
func portableEscape(c byte, inClass bool) bool {
	if strings.IndexByte("dDwWsS", c) >= 0 {
		return true
	}
	if inClass {
		return strings.IndexByte(".-[]\\^", c) >= 0
	}
	return strings.IndexByte(".-*+?()[]{}|^$\\", c) >= 0
}

// portableRepeat returns the index after {n}, {n,} or {n,m} at e[i], or -1.
func portableRepeat(e string, i int) int {
	digits := func(j int) int {
		k := j
		for k < len(e) && k-j < 4 && '0' <= e[k] && e[k] <= '9' {
			k++
		}
		return k
	}
	j := digits(i + 1)
	if j == i+1 || j >= len(e) {
		return -1
	}
	if e[j] == ',' {
		j = digits(j + 1)
		if j >= len(e) {
			return -1
		}
	}
	if e[j] != '}' {
		return -1
	}
	return j + 1
}

// portableClass returns the index after the bracketed class at e[i], or
// the index of the first byte outside the portable subset.
func portableClass(e string, i int) (next, bad int) {
	open := i
	i++
	if i < len(e) && e[i] == '^' {
		i++
	}
	for first := true; ; first = false {
		if i >= len(e) {
			return 0, open
		}
		switch c := e[i]; {
		case c == ']':
			if first {
				return 0, i
			}
			return i + 1, -1
		case c == '-':
			if !first && (i+1 >= len(e) || e[i+1] != ']') {
				return 0, i
			}
			i++
		case c == '\\':
			if i+1 >= len(e) || !portableEscape(e[i+1], true) {
				return 0, i
			}
			i += 2
		case isAlnum(c):
			if i+2 < len(e) && e[i+1] == '-' && e[i+2] != ']' {
				if lo, hi := c, e[i+2]; alnumKind(lo) != alnumKind(hi) || hi < lo {
					return 0, i
				}
				i += 3
				continue
			}
			i++
		case c == '_' || c == ':' || c == '.':
			i++
		default:
			return 0, i
		}
	}
}

// ValidateConsent checks a patient's consent before it is written: the
// limits, each directive's fields for its kind and validity period, the
// document types against rules, pattern syntax, and contradictions
// between directives. It returns a *[FieldError] naming the directive
// (e.g. "directives[3].professional").
//
// Contradictions are: the same professional both blocked and allowed
// (allow-professional, treating-physician or extended-rights) in
// overlapping periods; two different treating physicians in overlapping
// periods; the same directive twice (same kind and target, overlapping
// periods); two directives with the same ID.
func ValidateConsent(c *Consent, rules *Rules) error {
	if c.Version < 0 {
		return fieldErr("version", "must not be negative")
	}
	if len(c.Directives) > MaxDirectives {
		return &FieldError{Field: "directives", Problem: "more than " + strconv.Itoa(MaxDirectives) + " directives", Kind: ProblemTooMany, Limit: MaxDirectives}
	}
	patterns := 0
	ids := make(map[string]int, len(c.Directives))
	for i := range c.Directives {
		d := &c.Directives[i]
		f := func(name string) string { return "directives[" + strconv.Itoa(i) + "]" + name }
		if err := checkToken(f(".id"), d.ID, 64, false); err != nil {
			return err
		}
		if j, dup := ids[d.ID]; dup {
			other := "directives[" + strconv.Itoa(j) + "]"
			return &FieldError{Field: f(".id"), Problem: "same ID as " + other, Kind: ProblemSameID, Other: other}
		}
		ids[d.ID] = i
		if d.Kind == "" {
			return missing(f(".kind"), "")
		}
		if !d.Kind.Valid() {
			return fieldErr(f(".kind"), "unknown directive kind")
		}
		if err := checkTarget(d, f, rules); err != nil {
			return err
		}
		if d.Kind == HideDocument && IsPattern(d.Document) {
			patterns++
			if patterns > MaxPatterns {
				return &FieldError{Field: f(".document"), Problem: "more than " + strconv.Itoa(MaxPatterns) + " patterns", Kind: ProblemTooMany, Limit: MaxPatterns}
			}
		}
		for _, tf := range []struct {
			name string
			t    time.Time
		}{{".from", d.From}, {".until", d.Until}} {
			if tf.t.IsZero() {
				continue
			}
			if tf.t.Location() != time.UTC || tf.t.Nanosecond() != 0 {
				return fieldErr(f(tf.name), "must be whole seconds in UTC")
			}
			if y := tf.t.Year(); y < 2000 || y >= 2200 {
				return fieldErr(f(tf.name), "must be between the years 2000 and 2199")
			}
		}
		if !d.From.IsZero() && !d.Until.IsZero() && !d.From.Before(d.Until) {
			return fieldErr(f(".until"), "must be after from")
		}
	}
	return checkContradictions(c.Directives)
}

func checkTarget(d *Directive, f func(string) string, rules *Rules) error {
	var want string
	switch d.Kind {
	case BlockProfessional, AllowProfessional, TreatingPhysician, ExtendedRights:
		want = "professional"
		if d.Professional.IsZero() {
			return missing(f(".professional"), string(d.Kind))
		}
	case BlockOrganization:
		want = "organization"
		if d.Organization.IsZero() {
			return missing(f(".organization"), string(d.Kind))
		}
	case HideDocument:
		want = "document"
		if d.Document == "" {
			return missing(f(".document"), string(d.Kind))
		}
		if IsPattern(d.Document) {
			if err := CheckPattern(d.Document); err != nil {
				return &FieldError{Field: f(".document"), Problem: err.Error(), Err: err}
			}
		} else if err := checkToken(f(".document"), d.Document, 128, false); err != nil {
			return err
		}
	case HideDocumentType:
		want = "document_type"
		if err := checkCode(f(".document_type"), d.DocumentType, 64); err != nil {
			return err
		}
		if rules == nil {
			return fieldErr(f(".document_type"), "cannot be checked without national rules")
		}
		if !rules.KnowsDocumentType(d.DocumentType) {
			return fieldErr(f(".document_type"), "unknown to the national rules")
		}
	}
	if want != "professional" && !d.Professional.IsZero() {
		return fieldErr(f(".professional"), "not used by "+string(d.Kind))
	}
	if want != "organization" && !d.Organization.IsZero() {
		return fieldErr(f(".organization"), "not used by "+string(d.Kind))
	}
	if want != "document" && d.Document != "" {
		return fieldErr(f(".document"), "not used by "+string(d.Kind))
	}
	if want != "document_type" && d.DocumentType != "" {
		return fieldErr(f(".document_type"), "not used by "+string(d.Kind))
	}
	return nil
}

// overlap reports whether the validity periods of a and b intersect.
func overlap(a, b *Directive) bool {
	// [aFrom, aUntil) and [bFrom, bUntil) intersect iff each starts before
	// the other ends; a zero bound is infinite.
	startsBefore := func(from time.Time, until time.Time) bool {
		return from.IsZero() || until.IsZero() || from.Before(until)
	}
	return startsBefore(a.From, b.Until) && startsBefore(b.From, a.Until)
}

func grantsAccess(k DirectiveKind) bool {
	return k == AllowProfessional || k == TreatingPhysician || k == ExtendedRights
}

func sameTarget(a, b *Directive) bool {
	return a.Professional == b.Professional && a.Organization == b.Organization &&
		a.Document == b.Document && a.DocumentType == b.DocumentType
}

func checkContradictions(ds []Directive) error {
	for i := range ds {
		for j := 0; j < i; j++ {
			a, b := &ds[i], &ds[j]
			if !overlap(a, b) {
				continue
			}
			field := "directives[" + strconv.Itoa(i) + "]"
			other := "directives[" + strconv.Itoa(j) + "]"
			switch {
			case a.Kind == b.Kind && sameTarget(a, b):
				return &FieldError{Field: field, Problem: "duplicates " + other + " in an overlapping period", Kind: ProblemDuplicate, Other: other}
			case a.Professional == b.Professional && !a.Professional.IsZero() &&
				(a.Kind == BlockProfessional && grantsAccess(b.Kind) || b.Kind == BlockProfessional && grantsAccess(a.Kind)):
				return &FieldError{Field: field + ".professional", Problem: "blocked and allowed by " + other + " in an overlapping period", Kind: ProblemBlockedAndAllowed, Other: other}
			case a.Kind == TreatingPhysician && b.Kind == TreatingPhysician:
				return &FieldError{Field: field + ".professional", Problem: "a second treating physician overlaps " + other, Kind: ProblemSecondPhysician, Other: other}
			}
		}
	}
	return nil
}
