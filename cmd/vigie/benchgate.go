package main

import (
	"fmt"
	"io"
)

// Targets of issue 18 for recording: events per second sustained, by
// backend, and the time from Record to a signed checkpoint.
const (
	recordTargetSQLite     = 12_000
	recordTargetPostgreSQL = 5_000
	toCheckpointTargetMs   = 1_000
)

// gateRows prints r's rows of make bench's gate table, in its format:
//
//	| metric | value | anchor ratio | target | met |
//
// Recording has no anchor (a ratio to a bare handler means nothing for a
// durable write), hence "—" there. The outbox counts as bounded when what
// is left at the end was recorded in the last second at most.
func (r recordResult) gateRows(w io.Writer) {
	target := recordTargetSQLite
	if r.Backend != "SQLite" {
		target = recordTargetPostgreSQL
	}
	met := func(ok bool) string {
		if ok {
			return "✓"
		}
		return "✗"
	}
	fmt.Fprintf(w, "| Record events/s, %s durable, %d callers, %.0f s | %.0f | — | ≥ %d | %s |\n",
		r.Backend, r.Workers, r.Seconds, r.EventsPerSecond, target, met(r.EventsPerSecond >= float64(target)))
	fmt.Fprintf(w, "| Record p99, %s | %.1f ms | — | — | |\n", r.Backend, r.RecordP99Ms)
	fmt.Fprintf(w, "| outbox at the end / largest, %s | %d / %d | — | ≤ 1 s of events at the end | %s |\n",
		r.Backend, r.FinalOutbox, r.MaxOutbox, met(float64(r.FinalOutbox) <= r.EventsPerSecond))
	fmt.Fprintf(w, "| Record to signed checkpoint p99, %s | %.0f ms | — | ≤ %d ms | %s |\n",
		r.Backend, r.ToCheckpointP99Ms, toCheckpointTargetMs, met(r.ToCheckpointSamples > 0 && r.ToCheckpointP99Ms <= toCheckpointTargetMs))
}
