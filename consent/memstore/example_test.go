package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/memstore"
)

func ExampleStore_UpdateConsent() {
	ctx := context.Background()
	s := memstore.New()
	patient, _ := ident.ParseINS("184127645108946")
	change := consent.Change{Time: time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC), Author: "patient"}
	block := []consent.Directive{{ID: "b1", Kind: consent.BlockProfessional, Professional: ident.MustParseRPPS("10002727377")}}

	rec, err := s.UpdateConsent(ctx, patient, 0, block, change)
	fmt.Println(rec.Version, err)
	// A second writer that also read version 0 loses, and nothing changes.
	_, err = s.UpdateConsent(ctx, patient, 0, nil, change)
	fmt.Println(errors.Is(err, consent.ErrStaleVersion))
	c, _ := s.Consent(ctx, patient)
	fmt.Println(c.Version, len(c.Directives))
	// Output:
	// 1 <nil>
	// true
	// 1 1
}
