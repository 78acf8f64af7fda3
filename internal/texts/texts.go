// Package texts is the one catalogue of the words Vigie shows to people,
// in French (first) and English: the reports of vigie verify and vigie
// audit, and the pages of the portal. catalogue.json holds it, keyed by
// message id; the CLI formats its entries through [Format], and the portal
// serves them to its pages as i18n.js ([JS]). A test checks that every id
// the CLI and the pages use is in it, and that each of its entries is
// used.
//
// An entry is a text in which {name} stands for a value and
// {name:one|many} for the word that agrees with the number name: one when
// it is singular in the entry's language (in French, 0 and 1), many
// otherwise. The wording of decisions (grounds, coarse reasons) is not
// here: package consent holds it, beside the rules it explains.
package texts

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Lang is a language of the catalogue.
type Lang int

const (
	// FR is French, the default.
	FR Lang = iota
	// EN is English.
	EN
)

// String returns the language's code: "fr" or "en".
func (l Lang) String() string {
	if l == EN {
		return "en"
	}
	return "fr"
}

// Text is one entry: the same message in both languages.
type Text struct {
	FR string `json:"fr"`
	EN string `json:"en"`
}

// In returns the text in language l.
func (t Text) In(l Lang) string {
	if l == EN {
		return t.EN
	}
	return t.FR
}

//go:embed catalogue.json
var catalogueJSON []byte

var catalogue = mustLoad(catalogueJSON)

// mustLoad decodes the embedded catalogue; it panics on a malformed one,
// which a test catches before any build ships.
func mustLoad(b []byte) map[string]Text {
	var m map[string]Text
	if err := json.Unmarshal(b, &m); err != nil {
		panic("texts: catalogue.json: " + err.Error())
	}
	return m
}

// Lookup returns the entry with this id, and false when there is none.
func Lookup(id string) (Text, bool) {
	t, ok := catalogue[id]
	return t, ok
}

// IDs returns the ids of every entry, sorted.
func IDs() []string {
	ids := make([]string, 0, len(catalogue))
	for id := range catalogue {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

var (
	plural = regexp.MustCompile(`\{(\w+):([^|{}]*)\|([^{}]*)\}`)
	field  = regexp.MustCompile(`\{(\w+)\}`)
)

// Format returns the entry id in language l with its placeholders
// replaced by args, given as name, value pairs: Format(FR, "cli.read",
// "n", 3). A placeholder without a value stays as it is. An id that is
// not in the catalogue is returned as it is (a test keeps that from
// happening).
func Format(l Lang, id string, args ...any) string {
	t, ok := catalogue[id]
	if !ok {
		return id
	}
	vars := map[string]any{}
	for i := 0; i+1 < len(args); i += 2 {
		vars[fmt.Sprint(args[i])] = args[i+1]
	}
	s := plural.ReplaceAllStringFunc(t.In(l), func(m string) string {
		p := plural.FindStringSubmatch(m)
		v, ok := vars[p[1]]
		if !ok {
			return m
		}
		n, err := strconv.ParseFloat(fmt.Sprint(v), 64)
		if err != nil {
			return m
		}
		if one := l == FR && n > -2 && n < 2 || l == EN && n == 1; one {
			return p[2]
		}
		return p[3]
	})
	return field.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := vars[m[1:len(m)-1]]; ok {
			return fmt.Sprint(v)
		}
		return m
	})
}

// Placeholders returns the names of the placeholders of a text, sorted,
// each once.
func Placeholders(s string) []string {
	var names []string
	for _, m := range plural.FindAllStringSubmatch(s, -1) {
		names = append(names, m[1])
	}
	for _, m := range field.FindAllStringSubmatch(plural.ReplaceAllString(s, ""), -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// JS returns the catalogue as the portal's pages read it, a script that
// defines I18N[lang][id] (the pages' Vigie.t formats the entries as
// Format does).
func JS() []byte {
	byLang := map[string]map[string]string{"fr": {}, "en": {}}
	for id, t := range catalogue {
		byLang["fr"][id] = t.FR
		byLang["en"][id] = t.EN
	}
	var b strings.Builder
	b.WriteString("// Texts of the portal, French first: internal/texts/catalogue.json,\n// served by the portal. {name} is replaced by a value.\n'use strict';\n\nconst I18N = {\n")
	for _, lang := range []string{"fr", "en"} {
		j, err := json.Marshal(byLang[lang])
		if err != nil {
			panic("texts: " + err.Error()) // strings always marshal
		}
		fmt.Fprintf(&b, "  %s: %s,\n", lang, j)
	}
	b.WriteString("};\n")
	return []byte(b.String())
}
