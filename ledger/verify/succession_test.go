package verify_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
	"golang.org/x/mod/sumdb/note"
)

func TestSuccession(t *testing.T) {
	const oldOrigin, newOrigin = "vigie.example/old/1", "vigie.example/new/2"
	skey, vkey, err := note.GenerateKey(nil, oldOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	cp, err := verify.SignCheckpoint(verify.Checkpoint{Origin: oldOrigin, Size: 42, Hash: event.Hash{1}}, signer)
	if err != nil {
		t.Fatal(err)
	}
	payload, vs, err := verify.NewSuccession(cp, vkey, newOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if vs.Origin != oldOrigin || vs.Previous.Size != 42 || !strings.HasPrefix(vs.KeyID, oldOrigin+"+") {
		t.Fatalf("verified %+v", vs)
	}
	if _, err := verify.CheckSuccession(payload, newOrigin); err != nil {
		t.Fatalf("CheckSuccession of NewSuccession's payload: %v", err)
	}

	otherKey, otherVkey, _ := note.GenerateKey(nil, oldOrigin)
	otherSigner, _ := note.NewSigner(otherKey)
	forged, _ := verify.SignCheckpoint(verify.Checkpoint{Origin: oldOrigin, Size: 42, Hash: event.Hash{1}}, otherSigner)
	_, foreignVkey, _ := note.GenerateKey(nil, "vigie.example/foreign/3")
	edit := func(f func(*verify.Succession)) []byte {
		var s verify.Succession
		if err := json.Unmarshal(payload, &s); err != nil {
			t.Fatal(err)
		}
		f(&s)
		b, _ := json.Marshal(s)
		return b
	}
	var fields map[string]string
	if err := json.Unmarshal(payload, &fields); err != nil {
		t.Fatal(err)
	}
	reordered, _ := json.Marshal(fields) // sorted keys: checkpoint first
	for _, tc := range []struct {
		name, field string
		payload     []byte
		origin      string
	}{
		{"same origin", "origin", payload, oldOrigin},
		{"signed by another key", "checkpoint", edit(func(s *verify.Succession) { s.Checkpoint = string(forged) }), newOrigin},
		{"another key given", "checkpoint", edit(func(s *verify.Succession) { s.Key = otherVkey }), newOrigin},
		{"key of another log", "key", edit(func(s *verify.Succession) { s.Key = foreignVkey }), newOrigin},
		{"not a key", "key", edit(func(s *verify.Succession) { s.Key = "secret-value" }), newOrigin},
		{"not a checkpoint", "checkpoint", edit(func(s *verify.Succession) { s.Checkpoint = "secret-value" }), newOrigin},
		{"other format", "format", edit(func(s *verify.Succession) { s.Format = "vigie.other.v1" }), newOrigin},
		{"unknown field", "payload", []byte(`{"format":"vigie.log-succession.v1","extra":1}`), newOrigin},
		{"not compact", "payload", append([]byte(" "), payload...), newOrigin},
		{"fields out of order", "payload", reordered, newOrigin},
	} {
		_, err := verify.CheckSuccession(tc.payload, tc.origin)
		if !errors.Is(err, verify.ErrSuccession) || !strings.Contains(err.Error(), tc.field) || strings.Contains(err.Error(), "secret-value") {
			t.Errorf("%s: err %v, want ErrSuccession naming %s, not the value", tc.name, err, tc.field)
		}
	}
	if _, _, err := verify.NewSuccession(cp, "secret-value", newOrigin); err == nil || !strings.Contains(err.Error(), "key") || strings.Contains(err.Error(), "secret-value") {
		t.Errorf("NewSuccession with a bad key: %v", err)
	}
}
