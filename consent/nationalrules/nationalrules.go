// Package nationalrules holds the national access rules Vigie ships: an
// ILLUSTRATIVE set, in the format of docs/consent.md, modelled on the
// examples of the DMP's access matrix (matrice d'habilitations, arrêté of
// 26 October 2023). It is not the official annex: production loads the
// official rules from a file named in the configuration
// (consent.LoadRulesFile).
package nationalrules

import (
	_ "embed"

	"github.com/vigie-sante/vigie/consent"
)

//go:embed illustrative.json
var illustrative []byte

// Illustrative returns the illustrative national rules (version 1): nine
// professions by sixteen document types, every sector kind, and the
// emergency rules. Each call returns the same parsed rules.
func Illustrative() *consent.Rules {
	return illustrativeRules
}

// IllustrativeBytes returns a copy of the illustrative rules' exact bytes.
func IllustrativeBytes() []byte { return append([]byte(nil), illustrative...) }

var illustrativeRules = mustParse(illustrative)

func mustParse(b []byte) *consent.Rules {
	r, err := consent.ParseRules(b)
	if err != nil {
		// The embedded file is part of the build and tested: this is a
		// broken build, not bad input.
		panic("nationalrules: embedded illustrative rules: " + err.Error())
	}
	return r
}
