package main

import (
	"flag"
	"strings"
)

// hsmFlags say where a node's keys are when they are in a hardware
// security module (PKCS#11). The flags exist in every build; only a vigie
// built with -tags pkcs11 (CGO_ENABLED=1) opens a module.
type hsmFlags struct {
	module, token, pinFile    string
	kek, oldKEKs, oldKEKFile  string
	checkpointKey, receiptKey string
	cacheSize                 int
	create                    bool // vigie init --hsm-create-keys
	// nextCheckpointKey is the label of the key vigie rotate-log-key
	// makes the log's checkpoint key (made if missing).
	nextCheckpointKey string
}

func (h *hsmFlags) flags(fs *flag.FlagSet) {
	fs.StringVar(&h.module, "hsm-module", "", "PKCS#11 library of the hardware security module holding the checkpoint and receipt keys and the key-encryption key (for SoftHSM2: /usr/lib/softhsm/libsofthsm2.so); only in vigie built with -tags pkcs11, the static binary keeps its keys in files")
	fs.StringVar(&h.token, "hsm-token", "", "label of the module's token holding the keys (with --hsm-module)")
	fs.StringVar(&h.pinFile, "hsm-pin-file", "", "file of the token's user PIN, readable by this process's user alone (with --hsm-module)")
	fs.StringVar(&h.kek, "hsm-kek", "vigie-kek", "label of the AES key-encryption key that wraps new data keys")
	fs.StringVar(&h.oldKEKs, "hsm-old-keks", "", "labels (comma-separated) of former key-encryption keys: their data keys are rewrapped under --hsm-kek in the background, then they may be removed")
	fs.StringVar(&h.oldKEKFile, "hsm-old-kek-file", "", "the key-encryption key file of the data keys wrapped before the module was used: they are rewrapped under --hsm-kek in the background, then the file may be removed")
	fs.StringVar(&h.checkpointKey, "hsm-checkpoint-key", "vigie-checkpoint", "label of the checkpoint key pair (Ed25519)")
	fs.StringVar(&h.receiptKey, "hsm-receipt-key", "vigie-receipt", "label of the receipt key pair (Ed25519)")
	fs.IntVar(&h.cacheSize, "hsm-cache-size", 10000, "how many unwrapped data keys are kept in memory (0: none)")
}

// labels returns the comma-separated labels of s, trimmed.
func labels(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
