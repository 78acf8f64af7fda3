package server

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
)

// TestEnumValuesFollowOneRule: every enum value of the API carries its
// type's name as prefix in upper snake case, and the zero value is
// *_UNSPECIFIED (docs/api.md, "One name per concept"; issue 19: TREAT,
// BTG, ALLOW, DENY and REASON_* did not).
func TestEnumValuesFollowOneRule(t *testing.T) {
	n := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("vigie.v1", func(f protoreflect.FileDescriptor) bool {
		for i := range f.Enums().Len() {
			e := f.Enums().Get(i)
			prefix := upperSnake(string(e.Name())) + "_"
			for j := range e.Values().Len() {
				v := e.Values().Get(j)
				n++
				if !strings.HasPrefix(string(v.Name()), prefix) || len(v.Name()) == len(prefix) {
					t.Errorf("%s.%s: want the prefix %s", e.Name(), v.Name(), prefix)
				}
				if (v.Number() == 0) != (string(v.Name()) == prefix+"UNSPECIFIED") {
					t.Errorf("%s.%s = %d: the zero value, and only it, is %sUNSPECIFIED", e.Name(), v.Name(), v.Number(), prefix)
				}
			}
		}
		return true
	})
	if n < 20 {
		t.Fatalf("checked %d enum values: wrong package?", n)
	}
}

// upperSnake turns "PurposeOfUse" into "PURPOSE_OF_USE".
func upperSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && 'A' <= r && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// TestDirectiveFieldsNameTheirKinds: a directive's field in the API is its
// kind as recorded in the ledger and named in docs/consent.md, with _ for
// - (issue 19: oppose_emergency_access was oppose-emergency).
func TestDirectiveFieldsNameTheirKinds(t *testing.T) {
	kinds := []consent.DirectiveKind{
		consent.BlockProfessional, consent.BlockOrganization, consent.AllowProfessional,
		consent.TreatingPhysician, consent.ExtendedRights, consent.HideDocument,
		consent.HideDocumentType, consent.HideEverything, consent.OpposeEmergency,
		consent.OptOut,
	}
	oneof := (&vigiev1.Directive{}).ProtoReflect().Descriptor().Oneofs().ByName("kind")
	if oneof.Fields().Len() != len(kinds) {
		t.Fatalf("Directive has %d kinds, consent %d", oneof.Fields().Len(), len(kinds))
	}
	for _, k := range kinds {
		m := consentMessage(consent.Consent{Directives: []consent.Directive{{ID: "d", Kind: k}}}).Directives[0]
		f := m.ProtoReflect().WhichOneof(oneof)
		if f == nil || string(f.Name()) != strings.ReplaceAll(string(k), "-", "_") {
			t.Errorf("directive kind %s is the API's field %v", k, f)
		}
	}
}
