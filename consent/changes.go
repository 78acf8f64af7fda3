package consent

import (
	"context"

	"github.com/vigie-sante/vigie/consent/ident"
)

// PatientKey names a patient in [Changes]: the store's keyed pseudonym of
// the INS (for Vigie's database, the ledger's), never the INS.
type PatientKey [32]byte

// Changes are what a [ChangeFeed] reports: changes to a store's data,
// made by this process or another sharing the store (another node).
type Changes struct {
	// All says that changes may have been missed (the feed started, or
	// more changed at once than it lists): anything cached may be stale.
	All bool
	// Rules says that a national rules version was published.
	Rules bool
	// Patients are the patients whose consent changed: a new version, or
	// an erasure.
	Patients []PatientKey
}

// ChangeFeed reports the changes made to a [Store]'s data by every process
// sharing it, so that what a [Service] caches (each patient's consent as
// last seen, the national rules it decides with) follows changes made on
// other nodes within a bound. Correctness never depends on it: the
// [Recorder] checks the consent and rules versions of every decision in
// the transaction that records it. The feed only spares the retries.
//
// The consent store on Vigie's database implements it
// (consentsql.Store.Changes).
type ChangeFeed interface {
	// PatientKey returns the key that Changes name p by.
	PatientKey(p ident.INS) PatientKey

	// Watch calls f with the changes committed since it was called, until
	// ctx is done, then returns ctx's error; its first call of f says All.
	// A change is reported within the feed's documented bound of its
	// commit, possibly more than once. f is called from one goroutine at
	// a time; if it returns an error, the next call says All (f could not
	// follow: start over from what the store holds).
	Watch(ctx context.Context, f func(Changes) error) error
}
