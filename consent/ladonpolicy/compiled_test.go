package ladonpolicy_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
)

func TestCompileRecords(t *testing.T) {
	t1 := time.Date(2031, 5, 4, 3, 2, 1, 0, time.UTC)
	c := consent.Consent{Version: 9, Directives: []consent.Directive{
		{ID: "t", Kind: consent.TreatingPhysician, Professional: drTreat, From: t1},
		{ID: "bo", Kind: consent.BlockOrganization, Organization: hospital, Until: t1},
		{ID: "h1", Kind: consent.HideDocument, Document: "doc-1"},
		{ID: "h2", Kind: consent.HideDocument, Document: "stay-<[0-9]+>"},
		{ID: "ht", Kind: consent.HideDocumentType, DocumentType: "lab-report"},
		{ID: "x", Kind: consent.OptOut, From: t1, Until: t1.Add(time.Second)},
	}}
	got, err := ladonpolicy.Compile(&c)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version() != 9 {
		t.Errorf("Version() = %d, want 9", got.Version())
	}
	ns := t1.UnixNano()
	want := []ladonpolicy.DecodedDirective{
		{From: ns, ID: "t", Subject: "rpps:10000000033", Kind: "treating-physician"},
		{Until: ns, ID: "bo", Arg: "750712184", Kind: "block-organization"},
		{ID: "h1", Arg: "document/<.*>/doc-1", Kind: "hide-document"},
		{ID: "h2", Arg: "document/<.*>/stay-<[0-9]+>", Kind: "hide-document", HasGeneralPattern: true},
		{ID: "ht", Arg: "document/lab-report/<.*>", Kind: "hide-document-type"},
		{From: ns, Until: ns + int64(time.Second), ID: "x", Kind: "opt-out"},
	}
	if d := ladonpolicy.Decode(got); !reflect.DeepEqual(d, want) {
		t.Errorf("Compile() records =\n%+v\nwant\n%+v", d, want)
	}
	empty, err := ladonpolicy.Compile(&consent.Consent{})
	if err != nil || len(ladonpolicy.Decode(empty)) != 0 {
		t.Errorf("Compile(empty) = %v, %v", ladonpolicy.Decode(empty), err)
	}
}
