package memstore_test

import (
	"testing"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consentstoretest"
	"github.com/vigie-sante/vigie/consent/memstore"
)

func TestConformance(t *testing.T) {
	consentstoretest.Run(t, func(t *testing.T) consent.Store { return memstore.New() })
}
