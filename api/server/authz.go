package server

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// rule says who may call a method.
type rule struct {
	// public: anyone, with or without credentials (credentials given must
	// still be valid).
	public bool
	// roles may call the method.
	roles []auth.Role
	// org says, for the roles bound to organisations (service, dpo), how
	// the request is confined to the caller's organisations. A method that
	// such a role may call must have one.
	org orgScope
}

// orgScope confines a request of a service or a DPO to its organisations.
type orgScope struct {
	// field is the request field that names the organisation, for errors
	// ("actor.organization").
	field string
	// of returns the organisation the request acts for ("" if absent).
	of func(req any) string
	// inHandler: the organisation is not in the request (it is that of
	// a stored event, say); the handler MUST check it with
	// auth.Identity.SpeaksFor.
	inHandler bool
}

// byHandler is the orgScope of methods whose handler checks the
// organisation itself.
var byHandler = orgScope{inHandler: true}

func roles(r ...auth.Role) []auth.Role { return r }

// matrix is the authorization matrix: every method served, and who may
// call it. A method missing here is refused to everyone (and a test fails:
// every method of every service must have a rule). docs/api.md shows it as
// a table.
var matrix = map[string]rule{
	// Access decisions: services, for their organisations.
	vigiev1.AccessService_Check_FullMethodName: {roles: roles(auth.RoleService), org: orgScope{
		field: "actor.organization",
		of:    func(req any) string { return req.(*vigiev1.CheckRequest).GetActor().GetOrganization() },
	}},

	// A patient's own consent and history (`me`: the INS is the token's).
	vigiev1.ConsentService_GetConsent_FullMethodName:         {roles: roles(auth.RolePatient)},
	vigiev1.ConsentService_UpdateConsent_FullMethodName:      {roles: roles(auth.RolePatient)},
	vigiev1.ConsentService_ListConsentHistory_FullMethodName: {roles: roles(auth.RolePatient)},
	vigiev1.ConsentService_RequestErasure_FullMethodName:     {roles: roles(auth.RolePatient)},
	vigiev1.HistoryService_ListAccesses_FullMethodName:       {roles: roles(auth.RolePatient)},

	// National rules and erasure: administrators; the rules are public.
	vigiev1.AdminService_LoadNationalRules_FullMethodName: {roles: roles(auth.RoleAdmin)},
	vigiev1.AdminService_ListNationalRules_FullMethodName: {public: true},
	vigiev1.AdminService_GetNationalRules_FullMethodName:  {public: true},
	vigiev1.AdminService_ErasePatient_FullMethodName:      {roles: roles(auth.RoleAdmin)},
	// Patients' enrolment at providers that give no INS: administrators.
	vigiev1.AdminService_IssueEnrolmentCode_FullMethodName: {roles: roles(auth.RoleAdmin)},
	vigiev1.AdminService_RevokeEnrolments_FullMethodName:   {roles: roles(auth.RoleAdmin)},

	// The log: public (auditors read it here).
	vigiev1.LogService_GetCheckpoint_FullMethodName:       {public: true},
	vigiev1.LogService_ListCheckpoints_FullMethodName:     {public: true},
	vigiev1.LogService_GetConsistencyProof_FullMethodName: {public: true},
	vigiev1.LogService_GetInclusionProof_FullMethodName:   {public: true},
	vigiev1.LogService_GetLeaves_FullMethodName:           {public: true},
	vigiev1.LogService_GetPublicKey_FullMethodName:        {public: true},

	// Event bodies: DPOs for their organisations, regulators for all.
	vigiev1.AuditService_SearchEvents_FullMethodName: {roles: roles(auth.RoleDPO, auth.RoleRegulator), org: orgScope{
		field: "organization",
		of:    func(req any) string { return req.(*vigiev1.SearchEventsRequest).GetOrganization() },
	}},
	vigiev1.AuditService_ReviewBreakGlass_FullMethodName: {roles: roles(auth.RoleDPO, auth.RoleRegulator), org: byHandler},
	// Misuse alerts: DPOs for their organisations (all of them, the
	// handler's scope), regulators for all.
	vigiev1.AuditService_ListAlerts_FullMethodName: {roles: roles(auth.RoleDPO, auth.RoleRegulator), org: byHandler},

	// Names of professionals and establishments: public data (the
	// directories are published as open data), for every page and tool
	// that shows events; the search by name, for a patient's consent
	// (bounded pages, at a patient's rate).
	vigiev1.DirectoryService_LookupNames_FullMethodName:         {public: true},
	vigiev1.DirectoryService_SearchProfessionals_FullMethodName: {roles: roles(auth.RolePatient)},

	// Standard services.
	grpc_health_v1.Health_Check_FullMethodName:                             {public: true},
	grpc_health_v1.Health_List_FullMethodName:                              {public: true},
	grpc_health_v1.Health_Watch_FullMethodName:                             {public: true},
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      {public: true},
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: {public: true},
}

// authorize decides whether the caller id (nil: anonymous) may call
// method with req (nil for a streaming call, whose methods here have no
// organisation scope). It returns nil, or an error Status maps to
// PERMISSION_DENIED, UNAUTHENTICATED or, for a missing organisation,
// INVALID_ARGUMENT.
func authorize(method string, id *auth.Identity, req any) error {
	r, ok := matrix[method]
	if !ok {
		return fmt.Errorf("%w %s", errNoRule, method)
	}
	if r.public {
		return nil
	}
	if id == nil {
		return fmt.Errorf("%s: %w", method, auth.ErrNoCredentials)
	}
	if !slices.Contains(r.roles, id.Role()) {
		return fmt.Errorf("%w: role %s may not call %s", errRoleNotAllow, id.Role(), method)
	}
	if !id.Role().BoundToOrganizations() || r.org.inHandler {
		return nil
	}
	if r.org.of == nil || req == nil {
		// A role bound to organisations was given a method without a
		// scope: refuse rather than let it act for every organisation.
		return fmt.Errorf("%w: %s has no organization scope", errNoRule, method)
	}
	org := r.org.of(req)
	if org == "" {
		return &FieldError{Field: r.org.field, Problem: "required: one of the organizations the caller is bound to"}
	}
	if !id.SpeaksFor(org) {
		return fmt.Errorf("%w: %s", errOrganization, r.org.field)
	}
	return nil
}

// matrixMarkdown renders the matrix as the Markdown table of docs/api.md
// (a test checks that the page shows it).
func matrixMarkdown() string {
	methods := slices.Sorted(maps.Keys(matrix))
	slices.SortStableFunc(methods, func(a, b string) int {
		// The contract first, then the standard services.
		av, bv := strings.HasPrefix(a, "/vigie."), strings.HasPrefix(b, "/vigie.")
		switch {
		case av && !bv:
			return -1
		case !av && bv:
			return 1
		}
		return 0
	})
	var b strings.Builder
	b.WriteString("| method | HTTP | anonymous |")
	for _, r := range auth.Roles {
		b.WriteString(" " + string(r) + " |")
	}
	b.WriteString("\n|---|---|---|")
	for range auth.Roles {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, m := range methods {
		r := matrix[m]
		fmt.Fprintf(&b, "| `%s` | %s |", strings.TrimPrefix(m, "/"), httpRoute(m))
		cell := func(ok bool, scoped bool) string {
			switch {
			case !ok:
				return " – |"
			case scoped:
				return " own organisations |"
			}
			return " yes |"
		}
		b.WriteString(cell(r.public, false))
		for _, role := range auth.Roles {
			b.WriteString(cell(r.public || slices.Contains(r.roles, role), !r.public && role.BoundToOrganizations()))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// httpRoute returns the HTTP route of a method of the contract, from its
// google.api.http option, or "–".
func httpRoute(method string) string {
	name := strings.ReplaceAll(strings.TrimPrefix(method, "/"), "/", ".")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return "–"
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return "–"
	}
	rule, ok := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
	if !ok || rule == nil {
		return "–"
	}
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return "`GET " + p.Get + "`"
	case *annotations.HttpRule_Post:
		return "`POST " + p.Post + "`"
	case *annotations.HttpRule_Put:
		return "`PUT " + p.Put + "`"
	case *annotations.HttpRule_Delete:
		return "`DELETE " + p.Delete + "`"
	case *annotations.HttpRule_Patch:
		return "`PATCH " + p.Patch + "`"
	}
	return "–"
}
