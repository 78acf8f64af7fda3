package server

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// callers are the columns of the matrix: anonymous (no credentials), then
// every role.
var callers = append([]auth.Role{""}, auth.Roles...)

// wantMatrix is the authorization matrix as the contract states it
// (docs/api.md), written independently of the matrix in authz.go: "y" the
// caller may call the method, "o" only for its own organisations, "-"
// refused. Columns: anonymous, then auth.Roles.
const wantMatrix = `
method                                      anon service patient auditor dpo regulator admin
vigie.v1.AccessService/Check                -    o       -       -       -   -         -
vigie.v1.ConsentService/GetConsent          -    -       y       -       -   -         -
vigie.v1.ConsentService/UpdateConsent       -    -       y       -       -   -         -
vigie.v1.ConsentService/ListConsentHistory  -    -       y       -       -   -         -
vigie.v1.ConsentService/RequestErasure      -    -       y       -       -   -         -
vigie.v1.HistoryService/ListAccesses        -    -       y       -       -   -         -
vigie.v1.AdminService/LoadNationalRules     -    -       -       -       -   -         y
vigie.v1.AdminService/ListNationalRules     y    y       y       y       y   y         y
vigie.v1.AdminService/GetNationalRules      y    y       y       y       y   y         y
vigie.v1.AdminService/ErasePatient          -    -       -       -       -   -         y
vigie.v1.AdminService/IssueEnrolmentCode    -    -       -       -       -   -         y
vigie.v1.AdminService/RevokeEnrolments      -    -       -       -       -   -         y
vigie.v1.LogService/GetCheckpoint           y    y       y       y       y   y         y
vigie.v1.LogService/ListCheckpoints         y    y       y       y       y   y         y
vigie.v1.LogService/GetConsistencyProof     y    y       y       y       y   y         y
vigie.v1.LogService/GetInclusionProof       y    y       y       y       y   y         y
vigie.v1.LogService/GetLeaves               y    y       y       y       y   y         y
vigie.v1.LogService/GetPublicKey            y    y       y       y       y   y         y
vigie.v1.AuditService/SearchEvents          -    -       -       -       o   y         -
vigie.v1.AuditService/ReviewBreakGlass      -    -       -       -       o   y         -
vigie.v1.AuditService/ListAlerts            -    -       -       -       o   y         -
vigie.v1.DirectoryService/LookupNames       y    y       y       y       y   y         y
vigie.v1.DirectoryService/SearchProfessionals -  -       y       -       -   -         -
grpc.health.v1.Health/Check                 y    y       y       y       y   y         y
grpc.health.v1.Health/List                  y    y       y       y       y   y         y
grpc.health.v1.Health/Watch                 y    y       y       y       y   y         y
grpc.reflection.v1.ServerReflection/ServerReflectionInfo       y y y y y y y
grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo  y y y y y y y
`

// parseWantMatrix returns wantMatrix by full method name.
func parseWantMatrix(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(wantMatrix), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) != 1+len(callers) {
			t.Fatalf("wantMatrix line %q: %d columns", line, len(f))
		}
		out["/"+f[0]] = f[1:]
	}
	return out
}

// TestMatrixCoversEveryMethod fails when a method of the contract, or any
// method the server serves (health, reflection), has no rule, or when a
// rule names a method that does not exist.
func TestMatrixCoversEveryMethod(t *testing.T) {
	want := parseWantMatrix(t)
	methods := map[string]bool{}
	for _, sd := range vigieServices(t) {
		for i := range sd.Methods().Len() {
			methods["/"+string(sd.FullName())+"/"+string(sd.Methods().Get(i).Name())] = true
		}
	}
	h := newHarness(t)
	for name, info := range h.srv.GRPC().GetServiceInfo() {
		for _, m := range info.Methods {
			methods["/"+name+"/"+m.Name] = true
		}
	}
	for m := range methods {
		if _, ok := matrix[m]; !ok {
			t.Errorf("%s has no rule in the authorization matrix (authz.go)", m)
		}
		if _, ok := want[m]; !ok {
			t.Errorf("%s is not in wantMatrix (and docs/api.md)", m)
		}
	}
	for m := range matrix {
		if !methods[m] {
			t.Errorf("the matrix has a rule for %s, which is not served", m)
		}
	}
	for m := range want {
		if !methods[m] {
			t.Errorf("wantMatrix has a row for %s, which is not served", m)
		}
	}
}

// TestMatrixRules checks the rules of authz.go against wantMatrix, and
// that a role bound to organisations never gets a method without an
// organisation scope.
func TestMatrixRules(t *testing.T) {
	for m, cols := range parseWantMatrix(t) {
		r, ok := matrix[m]
		if !ok {
			continue // TestMatrixCoversEveryMethod reports it
		}
		for i, caller := range callers {
			var got string
			switch {
			case r.public:
				got = "y"
			case caller == "" || !slices.Contains(r.roles, caller):
				got = "-"
			case caller.BoundToOrganizations():
				got = "o"
				if r.org.of == nil && !r.org.inHandler {
					t.Errorf("%s: %s may call it, without an organisation scope", m, caller)
				}
			default:
				got = "y"
			}
			if got != cols[i] {
				t.Errorf("matrix[%s] for %q = %s, want %s", m, caller, got, cols[i])
			}
		}
	}
}

// request returns a request for method, with the organisation fields set
// to org.
func request(t *testing.T, md protoreflect.MethodDescriptor, org string) proto.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		t.Fatal(err)
	}
	req := mt.New().Interface()
	switch r := req.(type) {
	case *vigiev1.CheckRequest:
		r.Actor = &vigiev1.Actor{Organization: org}
	case *vigiev1.SearchEventsRequest:
		r.Organization = org
	}
	return req
}

// TestMatrixOverGRPC calls every method of every service of vigie.v1 as
// every caller, over gRPC, and checks who reaches the handler.
func TestMatrixOverGRPC(t *testing.T) {
	h := newHarness(t)
	want := parseWantMatrix(t)
	for _, sd := range vigieServices(t) {
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			method := "/" + string(sd.FullName()) + "/" + string(md.Name())
			outType, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
			if err != nil {
				t.Fatal(err)
			}
			for c, caller := range callers {
				name := fmt.Sprintf("%s as %q", method, caller)
				before := h.rec.count(method)
				err := h.conn.Invoke(h.ctxAs(caller), method, request(t, md, ourOrg), outType.New().Interface())
				reached := h.rec.count(method) > before
				switch allowed := want[method][c] != "-"; {
				case allowed && (err != nil || !reached):
					t.Errorf("%s: %v, reached %v; want allowed", name, err, reached)
				case allowed && caller != "" && h.rec.last(method).Role() != caller:
					t.Errorf("%s: the handler saw %v", name, h.rec.last(method))
				case !allowed && reached:
					t.Errorf("%s: reached the handler, want refused", name)
				case !allowed && caller == "" && status.Code(err) != codes.Unauthenticated:
					t.Errorf("%s: %v, want Unauthenticated", name, err)
				case !allowed && caller != "" && status.Code(err) != codes.PermissionDenied:
					t.Errorf("%s: %v, want PermissionDenied", name, err)
				}
			}
		}
	}
}

// TestOrganizationScope checks that services and DPOs act only for their
// organisations.
func TestOrganizationScope(t *testing.T) {
	h := newHarness(t)
	check := func(org string) *vigiev1.CheckRequest {
		return &vigiev1.CheckRequest{Actor: &vigiev1.Actor{Organization: org}}
	}
	tests := []struct {
		name   string
		caller auth.Role
		method string
		req    proto.Message
		want   codes.Code
	}{
		{"service, its organisation", auth.RoleService, vigiev1.AccessService_Check_FullMethodName, check(ourOrg), codes.OK},
		{"service, another organisation", auth.RoleService, vigiev1.AccessService_Check_FullMethodName, check(theirOrg), codes.PermissionDenied},
		{"service, no organisation", auth.RoleService, vigiev1.AccessService_Check_FullMethodName, check(""), codes.InvalidArgument},
		{"service, no actor", auth.RoleService, vigiev1.AccessService_Check_FullMethodName, &vigiev1.CheckRequest{}, codes.InvalidArgument},
		{"dpo, its organisation", auth.RoleDPO, vigiev1.AuditService_SearchEvents_FullMethodName, &vigiev1.SearchEventsRequest{Organization: ourOrg}, codes.OK},
		{"dpo, another organisation", auth.RoleDPO, vigiev1.AuditService_SearchEvents_FullMethodName, &vigiev1.SearchEventsRequest{Organization: theirOrg}, codes.PermissionDenied},
		{"dpo, no organisation", auth.RoleDPO, vigiev1.AuditService_SearchEvents_FullMethodName, &vigiev1.SearchEventsRequest{}, codes.InvalidArgument},
		{"regulator, no organisation", auth.RoleRegulator, vigiev1.AuditService_SearchEvents_FullMethodName, &vigiev1.SearchEventsRequest{}, codes.OK},
		{"regulator, any organisation", auth.RoleRegulator, vigiev1.AuditService_SearchEvents_FullMethodName, &vigiev1.SearchEventsRequest{Organization: theirOrg}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.rec.count(tt.method)
			var resp proto.Message = &vigiev1.CheckResponse{}
			if tt.method == vigiev1.AuditService_SearchEvents_FullMethodName {
				resp = &vigiev1.SearchEventsResponse{}
			}
			err := h.conn.Invoke(h.ctxAs(tt.caller), tt.method, tt.req, resp)
			if status.Code(err) != tt.want {
				t.Fatalf("%s = %v, want %v", tt.method, err, tt.want)
			}
			if reached := h.rec.count(tt.method) > before; reached != (tt.want == codes.OK) {
				t.Errorf("handler reached: %v", reached)
			}
			if tt.want == codes.InvalidArgument && !strings.Contains(status.Convert(err).Message(), "organization") {
				t.Errorf("message %q does not name the field", status.Convert(err).Message())
			}
		})
	}
}

// TestPatientMethodsCarryNoPatient checks, on the descriptors, that no
// request of a method a patient may call has a field that could name a
// patient: a patient is `me`, from their token.
func TestPatientMethodsCarryNoPatient(t *testing.T) {
	var walk func(path string, md protoreflect.MessageDescriptor, depth int)
	walk = func(path string, md protoreflect.MessageDescriptor, depth int) {
		for i := range md.Fields().Len() {
			f := md.Fields().Get(i)
			name := strings.ToLower(string(f.Name()))
			if strings.Contains(name, "ins") && !strings.Contains(name, "instance") || strings.Contains(name, "patient") {
				t.Errorf("%s.%s: a patient method's request names a patient", path, f.Name())
			}
			if f.Message() != nil && depth < 8 {
				walk(path+"."+string(f.Name()), f.Message(), depth+1)
			}
		}
	}
	for _, sd := range vigieServices(t) {
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			method := "/" + string(sd.FullName()) + "/" + string(md.Name())
			if r := matrix[method]; !r.public && slices.Contains(r.roles, auth.RolePatient) {
				walk(string(md.Input().Name()), md.Input(), 0)
			}
		}
	}
}

// TestHealthAndReflectionAreServed checks the standard services, anonymous.
func TestHealthAndReflectionAreServed(t *testing.T) {
	h := newHarness(t)
	hc := healthpb.NewHealthClient(h.conn)
	ctx := context.Background()
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health before SetServing = %v, %v; want NOT_SERVING", resp, err)
	}
	h.srv.SetServing(true)
	if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after SetServing(true) = %v, %v; want SERVING", resp, err)
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := w.Recv(); err != nil || got.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Watch = %v, %v; want SERVING", got, err)
	}
}

// TestDocsShowTheMatrix checks that docs/api.md shows the matrix as the
// server applies it.
func TestDocsShowTheMatrix(t *testing.T) {
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	table := matrixMarkdown()
	if !strings.Contains(string(doc), table) {
		t.Errorf("docs/api.md does not contain the authorization matrix; it should contain:\n%s", table)
	}
}
