package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/vigie-sante/vigie/api/client"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
)

// TestSearchSourceRefusesUnknownKind: an audit's search for a kind the
// API does not name fails; it is never sent as EVENT_KIND_UNSPECIFIED,
// which the server reads as every kind.
func TestSearchSourceRefusesUnknownKind(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	cl, err := client.New(client.Config{BaseURL: srv.URL, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (searchSource{cl}).SearchEvents(context.Background(), audit.EventQuery{Kind: event.Kind("bogus")}, ""); err == nil {
		t.Errorf("SearchEvents(kind bogus) = nil error, want one")
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("SearchEvents(kind bogus) asked the server %d times, want 0", n)
	}
	if _, err := (searchSource{cl}).SearchEvents(context.Background(), audit.EventQuery{Kind: event.KindAccess}, ""); err != nil {
		t.Errorf("SearchEvents(kind access): %v", err)
	}
}
