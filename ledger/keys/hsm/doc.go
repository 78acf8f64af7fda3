// Package hsm keeps a Vigie node's keys in a hardware security module,
// through its PKCS#11 library ([PKCS #11 v3.0]): the note signing keys of
// checkpoints and receipts (Ed25519, signed inside the module with
// CKM_EDDSA) and the key-encryption keys of patients' data keys (AES-256,
// used inside the module with CKM_AES_GCM; they never leave it). Keys are
// found by their label (CKA_LABEL), so that a module may hold two
// checkpoint keys (the old and the new, during a rotation of the log's
// key) and two key-encryption keys (Wrapper's current and old ones, while
// Ledger.Rewrap moves the data keys).
//
// PKCS#11 needs cgo: the package is built only with the build tag
// pkcs11 (CGO_ENABLED=1 go build -tags pkcs11), into a dynamically linked
// binary. The static binary keeps its keys in files (ledger/keys).
//
// [PKCS #11 v3.0]: https://docs.oasis-open.org/pkcs11/pkcs11-base/v3.0/pkcs11-base-v3.0.html
package hsm
