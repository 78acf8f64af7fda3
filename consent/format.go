package consent

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/consent/ident"
)

// ConsentFormat is the first field of a consent's canonical encoding.
const ConsentFormat = "vigie-consent-v1"

// maxConsentSize bounds an encoded consent: MaxDirectives directives of a
// few hundred bytes each.
const maxConsentSize = 64 << 10

type consentJSON struct {
	Format     string          `json:"format"`
	Version    int64           `json:"version"`
	Directives []directiveJSON `json:"directives"`
}

type directiveJSON struct {
	ID           string        `json:"id"`
	Kind         DirectiveKind `json:"kind"`
	Professional ident.RPPS    `json:"professional,omitzero"`
	Organization ident.FINESS  `json:"organization,omitzero"`
	Document     string        `json:"document,omitempty"`
	DocumentType string        `json:"document_type,omitempty"`
	From         time.Time     `json:"from,omitzero"`
	Until        time.Time     `json:"until,omitzero"`
}

// FormatConsent encodes a consent canonically: one line of JSON, fields in
// a fixed order, absent fields omitted, times in RFC 3339 UTC, no HTML
// escaping, no final newline. The encoding holds no patient identifier.
// The ledger records [ConsentHash] of it with each consent change; stores
// may keep it as the consent's bytes.
func FormatConsent(c Consent) ([]byte, error) {
	j := consentJSON{Format: ConsentFormat, Version: c.Version, Directives: make([]directiveJSON, len(c.Directives))}
	for i, d := range c.Directives {
		j.Directives[i] = directiveJSON(d)
		if !d.From.IsZero() {
			j.Directives[i].From = d.From.UTC()
		}
		if !d.Until.IsZero() {
			j.Directives[i].Until = d.Until.UTC()
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, fmt.Errorf("format consent: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ParseConsent decodes a consent's canonical encoding (see
// [FormatConsent]). It accepts exactly what FormatConsent writes: a
// different spelling of the same consent is an error. It checks the
// encoding, not the directives' validity ([ValidateConsent]).
func ParseConsent(b []byte) (Consent, error) {
	if len(b) > maxConsentSize {
		return Consent{}, errors.New("parse consent: too large")
	}
	var j consentJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return Consent{}, fmt.Errorf("parse consent: %w", err)
	}
	if dec.More() {
		return Consent{}, errors.New("parse consent: data after the JSON object")
	}
	if j.Format != ConsentFormat {
		return Consent{}, fmt.Errorf("parse consent: format is not %q", ConsentFormat)
	}
	if j.Directives == nil {
		return Consent{}, errors.New("parse consent: directives missing")
	}
	if len(j.Directives) > MaxDirectives {
		return Consent{}, errors.New("parse consent: too many directives")
	}
	c := Consent{Version: j.Version}
	if len(j.Directives) > 0 {
		c.Directives = make([]Directive, len(j.Directives))
	}
	for i, d := range j.Directives {
		c.Directives[i] = Directive(d)
	}
	canon, err := FormatConsent(c)
	if err != nil {
		return Consent{}, err
	}
	if !bytes.Equal(canon, b) {
		return Consent{}, errors.New("parse consent: not in canonical form")
	}
	for i := range c.Directives {
		d := &c.Directives[i]
		if !d.From.IsZero() {
			d.From = d.From.UTC()
		}
		if !d.Until.IsZero() {
			d.Until = d.Until.UTC()
		}
	}
	return c, nil
}

// ConsentHash returns the SHA-256 of the consent's canonical encoding.
// The ledger records it with each consent change.
func ConsentHash(c Consent) ([32]byte, error) {
	b, err := FormatConsent(c)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}
