package server

import (
	"slices"
	"testing"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger/audit"
)

// TestAuditReaderFollowsTheMatrix: a role gets an audit that reads events
// exactly when the matrix lets it search them, and the regulator's
// complete audit only for the role that may read erased events' places.
func TestAuditReaderFollowsTheMatrix(t *testing.T) {
	search := matrix[vigiev1.AuditService_SearchEvents_FullMethodName]
	for _, r := range append(slices.Clone(auth.Roles), "", "root") {
		got := AuditReader(r)
		if reads, may := got != audit.LogOnly, slices.Contains(search.roles, r); reads != may {
			t.Errorf("AuditReader(%q) = %v, but the matrix lets it search events: %v", r, got, may)
		}
		if (got == audit.Regulator) != (r == auth.RoleRegulator) {
			t.Errorf("AuditReader(%q) = %v: only a regulator's audit is complete", r, got)
		}
	}
}
