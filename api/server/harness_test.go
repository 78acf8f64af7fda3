package server

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// Test identities.
const (
	testINS  = "137047624348415" // made up, valid key
	otherINS = "185052A01234579"
	ourOrg   = "750712184"
	theirOrg = "130000011"
)

// harness is a Server on a bufconn listener, with an issuer whose tokens
// it accepts, and generic handlers for every method of vigie.v1 that
// record who reached them.
type harness struct {
	t   *testing.T
	srv *Server
	// conn is a gRPC connection over bufconn; inProcess makes it the
	// server's InProcess connection.
	conn   grpc.ClientConnInterface
	issuer *auth.Issuer
	reg    *prometheus.Registry
	logs   *syncBuffer
	rec    *recorder
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recorder remembers which methods were reached, by whom.
type recorder struct {
	mu      sync.Mutex
	reached map[string][]*auth.Identity
	// handle, if set for a method, replaces the generic handler.
	handle map[string]func(ctx context.Context, req any) (any, error)
}

func (r *recorder) reach(method string, ctx context.Context) {
	id, _ := auth.FromContext(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reached != nil {
		r.reached[method] = append(r.reached[method], id)
	}
}

func (r *recorder) count(method string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reached[method])
}

func (r *recorder) last(method string) *auth.Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := r.reached[method]
	if len(ids) == 0 {
		return nil
	}
	return ids[len(ids)-1]
}

func newTestIssuer(t testing.TB) *auth.Issuer {
	t.Helper()
	key, err := auth.GenerateIssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	iss, err := auth.NewIssuer(auth.IssuerConfig{Issuer: "https://vigie.test", Audience: "vigie", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func newTestAuthenticator(t testing.TB, iss *auth.Issuer, services ...auth.ServiceCert) *auth.Authenticator {
	t.Helper()
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: iss.Issuer(), Audience: iss.Audience(), Keys: iss.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewAuthenticator(auth.AuthenticatorConfig{Verifier: v, Services: services})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newHarness starts a server. Rate limits are off unless a modifier sets
// them.
func newHarness(t *testing.T, modify ...func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, issuer: newTestIssuer(t), reg: prometheus.NewRegistry(), logs: &syncBuffer{},
		rec: &recorder{reached: map[string][]*auth.Identity{}, handle: map[string]func(context.Context, any) (any, error){}}}
	unlimited := map[auth.Role]Limit{}
	for _, r := range append(auth.Roles, "") {
		unlimited[r] = Unlimited
	}
	cfg := Config{
		Authenticator: newTestAuthenticator(t, h.issuer),
		Logger:        slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:    h.reg,
		RateLimits:    unlimited,
	}
	for _, m := range modify {
		m(&cfg)
	}
	var err error
	h.srv, err = New(cfg, Services{})
	if err != nil {
		t.Fatal(err)
	}
	// Registered as the server registers Services: served over gRPC
	// and InProcess.
	registerGeneric(t, registrar{h.srv}, h.rec)
	l := bufconn.Listen(1 << 20)
	go h.srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.srv.Stop(ctx)
	})
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.conn = conn
	return h
}

// token mints a token for a role: services and DPOs are bound to ourOrg,
// patients are testINS.
func (h *harness) token(role auth.Role) string {
	h.t.Helper()
	r := auth.TokenRequest{Role: role, Subject: "test-" + string(role)}
	switch role {
	case auth.RolePatient:
		r.Subject = testINS
	case auth.RoleService, auth.RoleDPO:
		r.Organizations = []string{ourOrg}
	}
	tok, err := h.issuer.Mint(r)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// ctxAs returns a context whose calls carry role's token ("" for none).
func (h *harness) ctxAs(role auth.Role) context.Context {
	if role == "" {
		return context.Background()
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+h.token(role))
}

// registerGeneric registers, for every service of package vigie.v1, a
// handler for each method that records the caller and answers an empty
// response (or what rec.handle says).
func registerGeneric(t testing.TB, s grpc.ServiceRegistrar, rec *recorder) {
	t.Helper()
	for _, sd := range vigieServices(t) {
		desc := &grpc.ServiceDesc{ServiceName: string(sd.FullName()), HandlerType: (*any)(nil), Metadata: sd.ParentFile().Path()}
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			full := "/" + string(sd.FullName()) + "/" + string(md.Name())
			inType, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
			if err != nil {
				t.Fatal(err)
			}
			outType, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
			if err != nil {
				t.Fatal(err)
			}
			desc.Methods = append(desc.Methods, grpc.MethodDesc{
				MethodName: string(md.Name()),
				Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
					in := inType.New().Interface()
					if err := dec(in); err != nil {
						return nil, err
					}
					handler := func(ctx context.Context, req any) (any, error) {
						rec.reach(full, ctx)
						if f := rec.handle[full]; f != nil {
							return f(ctx, req)
						}
						return outType.New().Interface(), nil
					}
					if ic == nil {
						return handler(ctx, in)
					}
					return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, handler)
				},
			})
		}
		s.RegisterService(desc, struct{}{})
	}
}

// vigieServices returns the services of package vigie.v1, from the
// descriptors linked into the binary.
func vigieServices(t testing.TB) []protoreflect.ServiceDescriptor {
	t.Helper()
	// Make sure every file of the package is linked.
	_ = vigiev1.File_vigie_v1_access_proto
	var out []protoreflect.ServiceDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("vigie.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			out = append(out, fd.Services().Get(i))
		}
		return true
	})
	if len(out) < 6 {
		t.Fatalf("found %d services in vigie.v1, want at least 6", len(out))
	}
	return out
}
