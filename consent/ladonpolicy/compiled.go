package ladonpolicy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/vigie-sante/vigie/consent"
)

// Compiled is one version of a patient's consent compiled for decisions:
// validated, patterns compiled, every string a policy needs rendered once
// into one block. It is compact (about 32 bytes per directive plus its
// strings, and no pointer per directive, so the garbage collector does not
// scan it) and immutable; the ladon policies of its directives are views
// built on demand over it, without allocation.
type Compiled struct {
	version int64
	blob    string // every string: IDs, subjects, organisations, resource templates
	dirs    []cdir
	pats    []*Pattern // general (non-shape) patterns, indexed by cdir.pat-1
}

// span is a substring of the blob.
type span struct{ off, n uint16 }

func (c *Compiled) str(s span) string { return c.blob[s.off : s.off+s.n] }

// cdir is a compiled directive.
type cdir struct {
	from, until int64 // validity, Unix nanoseconds; 0 is open
	id          span
	subj        span // "rpps:<digits>" for the professional kinds
	arg         span // FINESS for block-organization; the resource template for the hide kinds
	kind        kindCode
	pat         uint8 // 1 + index in pats, 0 when arg is a shape
}

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
	if len(c.Directives) > consent.MaxDirectives {
		return nil, &consent.FieldError{Field: "directives", Problem: "too many directives"}
	}
	out := &Compiled{version: c.Version}
	if len(c.Directives) == 0 {
		return out, nil
	}
	var b strings.Builder
	out.dirs = make([]cdir, len(c.Directives))
	add := func(parts ...string) (span, error) {
		off := b.Len()
		for _, p := range parts {
			b.WriteString(p)
		}
		if b.Len() > 1<<16-1 {
			return span{}, &consent.FieldError{Field: "directives", Problem: "too large"}
		}
		return span{uint16(off), uint16(b.Len() - off)}, nil
	}
	var err error
	for i := range c.Directives {
		d := &c.Directives[i]
		field := "directives[" + strconv.Itoa(i) + "]"
		k, ok := kindCodes[d.Kind]
		if !ok {
			return nil, &consent.FieldError{Field: field + ".kind", Problem: "unknown directive kind"}
		}
		cd := cdir{kind: k}
		if !d.From.IsZero() {
			cd.from = d.From.UnixNano()
		}
		if !d.Until.IsZero() {
			cd.until = d.Until.UnixNano()
		}
		if cd.id, err = add(d.ID); err != nil {
			return nil, err
		}
		switch k {
		case kBlockProfessional, kAllowProfessional, kTreatingPhysician, kExtendedRights:
			if d.Professional.IsZero() {
				return nil, &consent.FieldError{Field: field + ".professional", Problem: "required"}
			}
			var buf [16]byte
			if cd.subj, err = add(string(appendSubject(buf[:0], d.Professional))); err != nil {
				return nil, err
			}
		case kBlockOrganization:
			if d.Organization.IsZero() {
				return nil, &consent.FieldError{Field: field + ".organization", Problem: "required"}
			}
			if cd.arg, err = add(d.Organization.String()); err != nil {
				return nil, err
			}
		case kHideDocument:
			if d.Document == "" {
				return nil, &consent.FieldError{Field: field + ".document", Problem: "required"}
			}
			tpl := anyDocumentSlash + d.Document
			if consent.IsPattern(d.Document) {
				if err := consent.CheckPattern(d.Document); err != nil {
					return nil, &consent.FieldError{Field: field + ".document", Problem: err.Error(), Err: err}
				}
				p, err := CompilePattern(tpl)
				if err != nil {
					return nil, &consent.FieldError{Field: field + ".document", Problem: err.Error(), Err: err}
				}
				if _, shaped := parseShape(tpl, '<', '>'); !shaped {
					if len(out.pats) >= consent.MaxPatterns {
						return nil, &consent.FieldError{Field: field + ".document", Problem: "too many patterns"}
					}
					out.pats = append(out.pats, p)
					cd.pat = uint8(len(out.pats))
				}
			} else if strings.ContainsAny(d.Document, "/>\x00\n") {
				return nil, &consent.FieldError{Field: field + ".document", Problem: "not a document ID"}
			}
			if cd.arg, err = add(tpl); err != nil {
				return nil, err
			}
		case kHideDocumentType:
			if consent.CheckCode(d.DocumentType, 64) != nil {
				return nil, &consent.FieldError{Field: field + ".document_type", Problem: "not a document type code"}
			}
			if cd.arg, err = add(documentPrefix, d.DocumentType, "/<.*>"); err != nil {
				return nil, err
			}
		}
		out.dirs[i] = cd
	}
	out.blob = b.String()
	return out, nil
}

// Version returns the consent version compiled.
func (c *Compiled) Version() int64 { return c.version }

// readsHidden reports whether subject is the treating physician or has
// extended rights at time t.
func (c *Compiled) readsHidden(subject string, t int64) bool {
	for i := range c.dirs {
		d := &c.dirs[i]
		if (d.kind == kTreatingPhysician || d.kind == kExtendedRights) && c.str(d.subj) == subject && within(t, d.from, d.until) {
			return true
		}
	}
	return false
}

func (c *Compiled) treatingExceptions() []Exception {
	var out []Exception
	for i := range c.dirs {
		d := &c.dirs[i]
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
