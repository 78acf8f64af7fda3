package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/api/apiserver"
	"github.com/vigie-sante/vigie/api/auth"
)

func TestToken(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	mint := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(ctx, append([]string{"token", "--data-dir", dir}, args...), &out, &errOut)
		return strings.TrimSpace(out.String()), errOut.String(), code
	}
	patient, stderr, code := mint("--role", "patient", "--sub", "137047624348415")
	if code != exitOK {
		t.Fatalf("vigie token --role patient: exit %d: %s", code, stderr)
	}
	service, stderr, code := mint("--role", "service", "--sub", "hospital-a", "--org", "750712184,130000011", "--ttl", "10m")
	if code != exitOK {
		t.Fatalf("vigie token --role service: exit %d: %s", code, stderr)
	}
	// The key was created, private, and the tokens verify against it.
	keyPath := filepath.Join(dir, "keys", "token-issuer.key")
	if info, err := os.Stat(keyPath); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("issuer key %s: %v, %v; want mode 0600", keyPath, info, err)
	}
	issuer, err := apiserver.EmbeddedIssuer(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: apiserver.EmbeddedIssuerName, Audience: apiserver.EmbeddedAudience, Keys: issuer.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(ctx, patient)
	if p, ok := id.Patient(); err != nil || !ok || p.Canonical() != "137047624348415" {
		t.Errorf("patient token: %v, %v", id, err)
	}
	id, err = v.Verify(ctx, service)
	if err != nil || id.Principal() != "service:hospital-a" || !id.SpeaksFor("130000011") {
		t.Errorf("service token: %v, %v", id, err)
	}

	for _, args := range [][]string{
		{"--role", "patient", "--sub", "137047624348416"}, // bad INS key
		{"--role", "root", "--sub", "x"},
		{"--role", "service", "--sub", "hospital-a"}, // no organisation
		{"--role", "admin", "--sub", "ops", "--ttl", "8760h"},
	} {
		if _, stderr, code := mint(args...); code != exitFailure || strings.Contains(stderr, "137047624348416") {
			t.Errorf("vigie token %v: exit %d, %q; want 1 without the INS", args, code, stderr)
		}
	}
	if _, _, code := mint("--role", "admin"); code != exitUsage {
		t.Errorf("vigie token without --sub: exit %d, want %d", code, exitUsage)
	}
	// A key readable by others is refused.
	os.Chmod(keyPath, 0o644)
	if _, _, code := mint("--role", "admin", "--sub", "ops"); code != exitFailure {
		t.Errorf("with a key readable by others: exit %d, want 1", code)
	}
}
