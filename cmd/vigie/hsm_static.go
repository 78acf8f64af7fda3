//go:build !pkcs11

package main

import (
	"errors"

	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
)

// open refuses --hsm-module: this binary has no PKCS#11 (no cgo).
func (h hsmFlags) open(create bool) (*node.ModuleKeys, error) {
	if h.module == "" && !create {
		return nil, nil
	}
	return nil, errors.New("--hsm-module: this vigie is built without PKCS#11 (the static binary keeps its keys in files); use vigie-hsm, built with CGO_ENABLED=1 -tags pkcs11 (make vigie-hsm)")
}
