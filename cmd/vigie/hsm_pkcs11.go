//go:build pkcs11

package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/keys"
	"github.com/vigie-sante/vigie/ledger/keys/hsm"
)

// open opens the module of --hsm-module, or returns nil without it. With
// create, it first makes the keys missing from the token.
func (h hsmFlags) open(create bool) (*node.ModuleKeys, error) {
	if h.module == "" {
		if create {
			return nil, errors.New("--hsm-create-keys: --hsm-module is required")
		}
		return nil, nil
	}
	if h.token == "" || h.pinFile == "" {
		return nil, errors.New("--hsm-module: --hsm-token and --hsm-pin-file are required")
	}
	if err := keys.CheckPrivate(h.pinFile); err != nil {
		return nil, fmt.Errorf("--hsm-pin-file: %w", err)
	}
	pin, err := os.ReadFile(h.pinFile)
	if err != nil {
		return nil, fmt.Errorf("--hsm-pin-file: %w", err)
	}
	m, err := hsm.Open(hsm.Config{Module: h.module, Token: h.token, PIN: strings.TrimRight(string(pin), "\r\n")})
	if err != nil {
		return nil, err
	}
	var once sync.Once
	var closeErr error
	mk := &node.ModuleKeys{
		Close: func() error { once.Do(func() { closeErr = m.Close() }); return closeErr },
	}
	fail := func(err error) (*node.ModuleKeys, error) {
		mk.Close()
		return nil, err
	}
	if create {
		if err := createKeys(m, h); err != nil {
			return fail(err)
		}
	}
	signers := hsm.Signers{Module: m, Labels: map[string]string{"checkpoint": h.checkpointKey, "receipt": h.receiptKey}}
	if h.nextCheckpointKey != "" {
		if err := createSigningKey(m, h.nextCheckpointKey); err != nil {
			return fail(err)
		}
		signers.Labels["checkpoint-next"] = h.nextCheckpointKey
	}
	wc := hsm.WrapperConfig{KEK: h.kek, Old: labels(h.oldKEKs), CacheSize: h.cacheSize}
	if h.cacheSize == 0 {
		wc.CacheSize = -1
	}
	if h.oldKEKFile != "" {
		k, err := keys.ReadSecretFile(h.oldKEKFile)
		if err != nil {
			return fail(fmt.Errorf("--hsm-old-kek-file: %w", err))
		}
		if wc.Legacy, err = ledger.NewKEKWrapper(k, nil); err != nil {
			return fail(fmt.Errorf("--hsm-old-kek-file: %w", err))
		}
	}
	w, err := m.Wrapper(wc)
	if err != nil {
		return fail(err)
	}
	mk.Signers, mk.KeyWrapper = signers, w
	mk.Rewrap = len(wc.Old) > 0 || wc.Legacy != nil
	at := func(label string) string { return fmt.Sprintf("the key labelled %q in token %q", label, h.token) }
	mk.CheckpointKey, mk.ReceiptKey, mk.KEK = at(h.checkpointKey), at(h.receiptKey), at(h.kek)
	if h.nextCheckpointKey != "" {
		mk.NextCheckpointKey = at(h.nextCheckpointKey)
	}
	return mk, nil
}

// createKeys makes the keys of h missing from the token.
func createKeys(m *hsm.Module, h hsmFlags) error {
	for _, label := range []string{h.checkpointKey, h.receiptKey} {
		if err := createSigningKey(m, label); err != nil {
			return err
		}
	}
	if _, err := m.Wrapper(hsm.WrapperConfig{KEK: h.kek, CacheSize: -1}); err == nil {
		return nil
	}
	return m.GenerateKEK(h.kek)
}

// createSigningKey makes the Ed25519 key pair labelled label unless the
// token holds it.
func createSigningKey(m *hsm.Module, label string) error {
	if _, _, err := m.Signer(label, "check"); err == nil {
		return nil
	}
	return m.GenerateSigningKey(label)
}
