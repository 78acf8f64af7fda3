package main

import (
	"strings"
	"testing"
)

// TestRecordGateRows: the gate rows say met or not from the figures, with
// the target of the backend.
func TestRecordGateRows(t *testing.T) {
	for _, tc := range []struct {
		r    recordResult
		want []string
	}{
		{recordResult{Backend: "SQLite", Workers: 64, Seconds: 60, EventsPerSecond: 12500, FinalOutbox: 100, MaxOutbox: 900, ToCheckpointSamples: 10, ToCheckpointP99Ms: 800},
			[]string{"| 12500 | — | ≥ 12000 | ✓ |", "| 100 / 900 | — | ≤ 1 s of events at the end | ✓ |", "| 800 ms | — | ≤ 1000 ms | ✓ |"}},
		{recordResult{Backend: "SQLite", EventsPerSecond: 4000, FinalOutbox: 5000, ToCheckpointP99Ms: 1200, ToCheckpointSamples: 1},
			[]string{"| 4000 | — | ≥ 12000 | ✗ |", "| 5000 / 0 | — | ≤ 1 s of events at the end | ✗ |", "| 1200 ms | — | ≤ 1000 ms | ✗ |"}},
		{recordResult{Backend: "PostgreSQL", EventsPerSecond: 5100},
			[]string{"| 5100 | — | ≥ 5000 | ✓ |", "| 0 ms | — | ≤ 1000 ms | ✗ |"}},
	} {
		var b strings.Builder
		tc.r.gateRows(&b)
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("gate rows of %+v:\n%s\nwant a row with %q", tc.r, b.String(), w)
			}
		}
	}
}
