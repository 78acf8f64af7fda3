package server

import (
	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/ledger/audit"
)

// AuditReader returns the whole-log audit (ledger/audit's AuditLog) that
// a caller of this role can run through this API: a regulator's (every
// event, erased placeholders included, so every leaf is accounted for), a
// DPO's (the events of one of its organizations, never an erased one),
// or, for a role that may not search events (the authorization matrix),
// the log only. A client that has not verified its token (vigie audit,
// with auth.PeekClaims) uses it to choose what to ask; the server
// decides again at every call.
func AuditReader(role auth.Role) audit.Reader {
	switch role {
	case auth.RoleRegulator:
		return audit.Regulator
	case auth.RoleDPO:
		return audit.DPO
	}
	return audit.LogOnly
}
