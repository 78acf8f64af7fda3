package ladonpolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vigie-sante/vigie/consent"
)

// Compiled is one version of a patient's consent compiled for decisions:
// validated, patterns compiled, every string a policy needs rendered once.
// It is one string (a 32-byte record per directive, then the strings the
// records point into) and a version: about 300 bytes for five
// directives, a single pointer-free allocation that the garbage collector
// marks without scanning. The engine's cache holds Compiled values, not
// pointers. The ladon policies of its directives are views built on demand
// over it, without allocation. A Compiled is immutable.
type Compiled struct {
	version int64
	data    string    // records, then strings
	n       int32     // directives
	pats    *patterns // general (non-shape) patterns, indexed by cdir.pat-1; usually nil
}

type patterns []*Pattern

// span is a substring of the data.
type span struct{ off, n uint16 }

func (c *Compiled) str(s span) string { return c.data[s.off : s.off+s.n] }

// cdir is a compiled directive, as decoded from its record.
type cdir struct {
	from, until int64 // validity, Unix nanoseconds; 0 is open
	id          span
	subj        span // "rpps:<digits>" for the professional kinds
	arg         span // FINESS for block-organization; the resource template for the hide kinds
	kind        kindCode
	pat         uint8 // 1 + index in pats, 0 when arg is a shape
}

// recordSize is the size of a directive's record: from, until (8 bytes
// each, little-endian), id, subj and arg (offset and length, 2 bytes
// each), kind, pat and two bytes of padding.
const recordSize = 32

func (d *cdir) appendRecord(b []byte) []byte {
	b = le64(b, uint64(d.from))
	b = le64(b, uint64(d.until))
	for _, s := range []span{d.id, d.subj, d.arg} {
		b = append(b, byte(s.off), byte(s.off>>8), byte(s.n), byte(s.n>>8))
	}
	return append(b, byte(d.kind), d.pat, 0, 0)
}

func le64(b []byte, v uint64) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
}

func get64(s string, i int) int64 {
	_ = s[i+7]
	return int64(uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56)
}

func get16(s string, i int) uint16 { return uint16(s[i]) | uint16(s[i+1])<<8 }

// dir decodes directive i.
func (c *Compiled) dir(i int) cdir {
	o := i * recordSize
	s := c.data[o : o+recordSize]
	return cdir{
		from:  get64(s, 0),
		until: get64(s, 8),
		id:    span{get16(s, 16), get16(s, 18)},
		subj:  span{get16(s, 20), get16(s, 22)},
		arg:   span{get16(s, 24), get16(s, 26)},
		kind:  kindCode(s[28]),
		pat:   s[29],
	}
}

// kind returns the kind of directive i without decoding the rest.
func (c *Compiled) kind(i int) kindCode { return kindCode(c.data[i*recordSize+28]) }

type kindCode uint8

const (
	kBlockProfessional kindCode = iota + 1
	kBlockOrganization
	kAllowProfessional
	kTreatingPhysician
	kExtendedRights
	kHideDocument
	kHideDocumentType
	kHideEverything
	kOpposeEmergency
	kOptOut
)

var kindCodes = map[consent.DirectiveKind]kindCode{
	consent.BlockProfessional: kBlockProfessional,
	consent.BlockOrganization: kBlockOrganization,
	consent.AllowProfessional: kAllowProfessional,
	consent.TreatingPhysician: kTreatingPhysician,
	consent.ExtendedRights:    kExtendedRights,
	consent.HideDocument:      kHideDocument,
	consent.HideDocumentType:  kHideDocumentType,
	consent.HideEverything:    kHideEverything,
	consent.OpposeEmergency:   kOpposeEmergency,
	consent.OptOut:            kOptOut,
}

var kindNames = func() [16]consent.DirectiveKind {
	var out [16]consent.DirectiveKind
	for k, c := range kindCodes {
		out[c] = k
	}
	return out
}()

// Resource strings of the ladon requests: "record", or
// "document/<type>/<id>".
const (
	resourceRecord   = "record"
	documentPrefix   = "document/"
	anyDocument      = "document/<.*>"
	anyDocumentSlash = "document/<.*>/"
)

// Compile compiles a patient's consent. The consent must be valid
// ([consent.ValidateConsent]); Compile checks what it relies on and
// returns a *consent.FieldError otherwise.
func Compile(c *consent.Consent) (*Compiled, error) {
	out, err := compile(c, true)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// compile compiles c. Unless strict, a hide-document directive whose
// target this version cannot evaluate (a pattern stored by an earlier
// version and outside what this one accepts) is compiled as hiding every
// document: each document read is decided as if the directive named it
// (deny-safe, row P12 of the precedence table in docs/consent.md), and
// the decision is never an error.
func compile(c *consent.Consent, strict bool) (Compiled, error) {
	if len(c.Directives) > consent.MaxDirectives {
		return Compiled{}, &consent.FieldError{Field: "directives", Problem: "too many directives", Kind: consent.ProblemTooMany, Limit: consent.MaxDirectives}
	}
	out := Compiled{version: c.Version, n: int32(len(c.Directives))}
	if len(c.Directives) == 0 {
		return out, nil
	}
	// The strings go after the records; offsets count from the start.
	strs := make([]byte, 0, 64*len(c.Directives))
	base := recordSize * len(c.Directives)
	add := func(parts ...string) (span, error) {
		off := base + len(strs)
		for _, p := range parts {
			strs = append(strs, p...)
		}
		if base+len(strs) > 1<<16-1 {
			return span{}, &consent.FieldError{Field: "directives", Problem: "too large"}
		}
		return span{uint16(off), uint16(base + len(strs) - off)}, nil
	}
	dirs := make([]cdir, len(c.Directives))
	var err error
	for i := range c.Directives {
		d := &c.Directives[i]
		field := "directives[" + strconv.Itoa(i) + "]"
		k, ok := kindCodes[d.Kind]
		if !ok {
			return Compiled{}, &consent.FieldError{Field: field + ".kind", Problem: "unknown directive kind"}
		}
		cd := cdir{kind: k}
		if !d.From.IsZero() {
			cd.from = d.From.UnixNano()
		}
		if !d.Until.IsZero() {
			cd.until = d.Until.UnixNano()
		}
		if cd.id, err = add(d.ID); err != nil {
			return Compiled{}, err
		}
		switch k {
		case kBlockProfessional, kAllowProfessional, kTreatingPhysician, kExtendedRights:
			if d.Professional.IsZero() {
				return Compiled{}, &consent.FieldError{Field: field + ".professional", Problem: "required", Kind: consent.ProblemRequired}
			}
			var buf [16]byte
			if cd.subj, err = add(string(appendSubject(buf[:0], d.Professional))); err != nil {
				return Compiled{}, err
			}
		case kBlockOrganization:
			if d.Organization.IsZero() {
				return Compiled{}, &consent.FieldError{Field: field + ".organization", Problem: "required", Kind: consent.ProblemRequired}
			}
			if cd.arg, err = add(d.Organization.String()); err != nil {
				return Compiled{}, err
			}
		case kHideDocument:
			if d.Document == "" {
				return Compiled{}, &consent.FieldError{Field: field + ".document", Problem: "required", Kind: consent.ProblemRequired}
			}
			tpl, err := compileHidden(&out, &cd, d.Document)
			if err != nil {
				if strict {
					return Compiled{}, &consent.FieldError{Field: field + ".document", Problem: err.Error(), Err: err}
				}
				tpl = anyDocument
			}
			if cd.arg, err = add(tpl); err != nil {
				return Compiled{}, err
			}
		case kHideDocumentType:
			if consent.CheckCode(d.DocumentType, 64) != nil {
				return Compiled{}, &consent.FieldError{Field: field + ".document_type", Problem: "not a document type code"}
			}
			if cd.arg, err = add(documentPrefix, d.DocumentType, "/<.*>"); err != nil {
				return Compiled{}, err
			}
		}
		dirs[i] = cd
	}
	data := make([]byte, 0, base+len(strs))
	for i := range dirs {
		data = dirs[i].appendRecord(data)
	}
	out.data = string(append(data, strs...))
	return out, nil
}

// compileHidden returns the resource template of a hide-document
// directive's target, and compiles it into out and cd if it is a general
// pattern.
func compileHidden(out *Compiled, cd *cdir, doc string) (string, error) {
	tpl := anyDocumentSlash + doc
	if !consent.IsPattern(doc) {
		if strings.ContainsAny(doc, "/>\x00\n") {
			return "", errors.New("not a document ID")
		}
		return tpl, nil
	}
	if err := consent.CheckPattern(doc); err != nil {
		return "", err
	}
	p, err := CompilePattern(tpl)
	if err != nil {
		return "", err
	}
	if _, shaped := parseShape(tpl, '<', '>'); shaped {
		return tpl, nil
	}
	if out.pats == nil {
		out.pats = new(patterns)
	}
	if len(*out.pats) >= consent.MaxPatterns {
		return "", errors.New("too many patterns")
	}
	*out.pats = append(*out.pats, p)
	cd.pat = uint8(len(*out.pats))
	return tpl, nil
}

// Version returns the consent version compiled.
func (c *Compiled) Version() int64 { return c.version }

// readsHidden reports whether subject is the treating physician or has
// extended rights at time t.
func (c *Compiled) readsHidden(subject string, t int64) bool {
	for i := range int(c.n) {
		if k := c.kind(i); k != kTreatingPhysician && k != kExtendedRights {
			continue
		}
		d := c.dir(i)
		if c.str(d.subj) == subject && within(t, d.from, d.until) {
			return true
		}
	}
	return false
}

func (c *Compiled) treatingExceptions() []Exception {
	var out []Exception
	for i := range int(c.n) {
		d := c.dir(i)
		if d.kind == kTreatingPhysician || d.kind == kExtendedRights {
			out = append(out, Exception{Subject: c.str(d.subj), From: d.from, Until: d.until})
		}
	}
	return out
}

// appendSubject appends the ladon subject of a professional, "rpps:" and
// the eleven digits.
func appendSubject(b []byte, r interface{ AppendDigits([]byte) []byte }) []byte {
	return r.AppendDigits(append(b, "rpps:"...))
}

func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("ladonpolicy: %w", err)
	}
	return b, nil
}
