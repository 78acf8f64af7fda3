package portal

import (
	"context"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/server"
)

// Severity grades an alert.
type Severity string

// The severities, from the least.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// EventRef names a ledger event an alert is about.
type EventRef struct {
	LeafIndex  uint64 `json:"leaf_index,string"`
	Commitment string `json:"commitment"` // 64 hex digits
}

// Alert is a possible misuse found in the ledger by an alert rule (the
// signals of package consent/misuse: break-glass rate, no care
// relationship, bursts, odd hours, repeated denials...). It names the
// professional and the events, never a patient: the dashboard's reader
// opens the events with an audit search, which is recorded in the ledger.
type Alert struct {
	// Kind names the rule that raised the alert, e.g. "break-glass-rate".
	// The dashboard shows a French or English label for the kinds it
	// knows, and the kind itself otherwise.
	Kind     string   `json:"kind"`
	Severity Severity `json:"severity"`
	// Professional is the RPPS number of the professional concerned.
	Professional string `json:"professional"`
	// Organization is the FINESS number of the organisation the events
	// were made for, if one.
	Organization string `json:"organization,omitempty"`
	// Events are the events that raised the alert, in log order.
	Events []EventRef `json:"events"`
	// Detail says what the rule measured, in English words and figures,
	// without health data or patient identifiers ("12 break-glass
	// accesses in 24 h, threshold 5"): the dashboard builds its own
	// sentence from the fields below for the kinds it knows, and shows
	// Detail for the others.
	Detail string `json:"detail,omitempty"`
	// Count is the number of events, Patients the number of distinct
	// patients among them.
	Count    int `json:"count"`
	Patients int `json:"patients"`
	// Threshold is the rule's threshold the count reached (events, or
	// distinct patients for a burst); 0 for a rule without one.
	Threshold int `json:"threshold,omitempty"`
	// WindowSeconds is the width of the rule's window (bursts, repeated
	// denials); 0 for a rule without one.
	WindowSeconds int64 `json:"window_seconds,omitempty"`
	// OddHours is the period of odd hours, for an odd-hours alert.
	OddHours *HourRange `json:"odd_hours,omitempty"`
	// From is the first event's time.
	From time.Time `json:"from"`
	// Time is when the alert was raised (the last event's time).
	Time time.Time `json:"time"`
}

// HourRange is a daily period of local hours, [From, To), across
// midnight when From > To, in the time zone named by Zone (IANA).
type HourRange struct {
	From int    `json:"from"`
	To   int    `json:"to"`
	Zone string `json:"zone"`
}

// Scope is what an alert reader may see.
type Scope struct {
	// Organizations confines the alerts to events of these organisations
	// (FINESS numbers); empty means every organisation (a regulator).
	Organizations []string
	// Reader is the principal the alerts are for ("regulator:cnil"), as
	// ledger-read records name readers.
	Reader string
}

// AlertSource finds misuse alerts. Implementations MUST return only the
// alerts of events within scope, MUST NOT put patient identifiers or
// health data in them, MUST record the read, before answering, in the
// chain of each patient whose events the alerts name (an alert says
// something of those events), and must be safe for concurrent use. The
// list is most severe and most recent first; an empty list is not an
// error.
type AlertSource interface {
	Alerts(ctx context.Context, scope Scope) ([]Alert, error)
}

// alerts serves GET /portal/api/alerts to DPOs (their organisations) and
// regulators (all), with the caller's bearer token.
func (p *portal) alerts(w http.ResponseWriter, r *http.Request) {
	id, err := p.cfg.Authenticate(r.Context(), r.Header.Get("Authorization"))
	if err != nil {
		// As the API answers: its status and message, one mapping.
		st, _ := server.Status(err)
		writeError(w, runtime.HTTPStatusFromCode(st.Code()), int(st.Code()), st.Message())
		return
	}
	if p.cfg.RateLimit != nil {
		if err := p.cfg.RateLimit(id); err != nil {
			st, _ := server.Status(err)
			writeError(w, runtime.HTTPStatusFromCode(st.Code()), int(st.Code()), st.Message())
			return
		}
	}
	scope := Scope{Reader: id.Principal()}
	switch id.Role() {
	case auth.RoleRegulator:
	case auth.RoleDPO:
		scope.Organizations = id.Organizations()
	default:
		writeError(w, http.StatusForbidden, 7, "permission denied")
		return
	}
	if p.cfg.Alerts == nil {
		writeError(w, http.StatusNotFound, 5, "no alert rules configured")
		return
	}
	list, err := p.cfg.Alerts.Alerts(r.Context(), scope)
	if err != nil {
		p.cfg.Logger.Error("misuse alerts", "err", err, "principal", id.Principal())
		writeError(w, http.StatusServiceUnavailable, 14, "alerts unavailable")
		return
	}
	if list == nil {
		list = []Alert{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": list})
}
