//go:build pkcs11

// Package hsmtest makes SoftHSM2 tokens for tests: a token initialised in
// a temporary directory (SOFTHSM2_CONF), with the keys a Vigie node uses.
package hsmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vigie-sante/vigie/ledger/keys/hsm"
)

// Library is SoftHSM2's PKCS#11 library as Debian's softhsm2 package
// installs it.
const Library = "/usr/lib/softhsm/libsofthsm2.so"

// PIN is the user PIN of the tokens Token makes.
const PIN = "1234"

// Token initialises a SoftHSM2 token labelled label in a temporary
// directory and returns its configuration. It sets SOFTHSM2_CONF for the
// rest of the test (and the processes the test starts): all the tokens of
// one test are in one directory. Without SoftHSM2 the test is skipped, or
// fails under CI=true.
func Token(t testing.TB, label string) hsm.Config {
	t.Helper()
	util, err := exec.LookPath("softhsm2-util")
	if _, lerr := os.Stat(Library); err != nil || lerr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("hsmtest: SoftHSM2 is not installed (scripts/test.sh installs Debian's softhsm2)")
		}
		t.Skip("hsmtest: SoftHSM2 is not installed (apt-get install softhsm2)")
	}
	conf := os.Getenv("SOFTHSM2_CONF")
	if conf == "" || filepath.Base(filepath.Dir(conf)) != "softhsm" {
		dir := filepath.Join(t.TempDir(), "softhsm")
		if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
			t.Fatal(err)
		}
		conf = filepath.Join(dir, "softhsm2.conf")
		body := "directories.tokendir = " + filepath.Join(dir, "tokens") + "\nobjectstore.backend = file\nlog.level = ERROR\n"
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("SOFTHSM2_CONF", conf)
	}
	out, err := exec.Command(util, "--init-token", "--free", "--label", label, "--so-pin", "5678", "--pin", PIN).CombinedOutput()
	if err != nil {
		t.Fatalf("hsmtest: softhsm2-util --init-token: %v\n%s", err, out)
	}
	return hsm.Config{Module: Library, Token: label, PIN: PIN}
}

// Keys makes a token with a node's keys: the Ed25519 pairs labelled
// vigie-checkpoint and vigie-receipt, and the AES key labelled kek, and
// returns it open (closed at the end of the test).
func Keys(t testing.TB, label string, kek string) (hsm.Config, *hsm.Module) {
	t.Helper()
	cfg := Token(t, label)
	m, err := hsm.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	for _, l := range []string{"vigie-checkpoint", "vigie-receipt"} {
		if err := m.GenerateSigningKey(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.GenerateKEK(kek); err != nil {
		t.Fatal(err)
	}
	return cfg, m
}
