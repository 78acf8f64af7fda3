package memstore_test

import (
	"testing"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/memstore"
	"github.com/vigie-sante/vigie/consent/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) consent.Store { return memstore.New() })
}
