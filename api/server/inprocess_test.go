package server

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// gatewayCtx returns a context as the gateway makes it for a call: the
// bearer token (if any) and the HTTP client's address in outgoing
// metadata.
func gatewayCtx(token, client string) context.Context {
	md := metadata.Pairs(ClientAddrMetadata, client)
	if token != "" {
		md.Append("authorization", "Bearer "+token)
	}
	return metadata.NewOutgoingContext(context.Background(), md)
}

// TestInProcessInterceptors checks that a call through InProcess, the
// gateway's transport, goes through each interceptor as a call over the
// network does: authentication, authorization, rate limit, size limit and
// the log line, with the HTTP client's address.
func TestInProcessInterceptors(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.MaxRequestBytes = 4 << 10
		c.RateLimits = map[auth.Role]Limit{
			auth.RoleService: Unlimited, auth.RolePatient: Unlimited, auth.RoleAdmin: Unlimited,
			"": {PerSecond: 0.001, Burst: 1},
		}
	})
	cc := h.srv.InProcess()
	service := h.token(auth.RoleService)
	check := func(ctx context.Context, req *vigiev1.CheckRequest) error {
		return cc.Invoke(ctx, checkMethod, req, &vigiev1.CheckResponse{})
	}

	t.Run("authentication", func(t *testing.T) {
		before := h.rec.count(checkMethod)
		if err := check(gatewayCtx("", "192.0.2.10"), checkRequest()); status.Code(err) != codes.Unauthenticated {
			t.Errorf("Check without a token = %v, want Unauthenticated", err)
		}
		if err := check(gatewayCtx("not-a-token", "192.0.2.10"), checkRequest()); status.Code(err) != codes.Unauthenticated {
			t.Errorf("Check with a bad token = %v, want Unauthenticated", err)
		}
		if h.rec.count(checkMethod) != before {
			t.Error("an unauthenticated call reached the handler")
		}
		if err := check(gatewayCtx(service, "192.0.2.10"), checkRequest()); err != nil {
			t.Fatalf("Check as a service = %v", err)
		}
		if id := h.rec.last(checkMethod); id == nil || id.Role() != auth.RoleService {
			t.Errorf("the handler saw %v, want the service", id)
		}
	})
	t.Run("authorization", func(t *testing.T) {
		before := h.rec.count(checkMethod)
		if err := check(gatewayCtx(h.token(auth.RolePatient), "192.0.2.10"), checkRequest()); status.Code(err) != codes.PermissionDenied {
			t.Errorf("Check as a patient = %v, want PermissionDenied", err)
		}
		other := checkRequest()
		other.Actor.Organization = theirOrg
		if err := check(gatewayCtx(service, "192.0.2.10"), other); status.Code(err) != codes.PermissionDenied {
			t.Errorf("Check for another organisation = %v, want PermissionDenied", err)
		}
		if h.rec.count(checkMethod) != before {
			t.Error("a refused call reached the handler")
		}
	})
	t.Run("rate limit by the HTTP client's address", func(t *testing.T) {
		key := func(client string) error {
			return cc.Invoke(gatewayCtx("", client), keyMethod, &vigiev1.GetPublicKeyRequest{}, &vigiev1.PublicKeys{})
		}
		if err := key("198.51.100.1"); err != nil {
			t.Fatalf("first anonymous call: %v", err)
		}
		if err := key("198.51.100.1"); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("second anonymous call from the same address = %v, want ResourceExhausted", err)
		}
		if err := key("198.51.100.2"); err != nil {
			t.Errorf("anonymous call from another address = %v, want OK", err)
		}
	})
	t.Run("size limit", func(t *testing.T) {
		before := h.rec.count(checkMethod)
		req := checkRequest()
		req.BreakGlassJustification = strings.Repeat("x", 5<<10)
		err := check(gatewayCtx(service, "192.0.2.10"), req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "too large") {
			t.Errorf("oversized Check = %v, want InvalidArgument (too large)", err)
		}
		if h.rec.count(checkMethod) != before {
			t.Error("the oversized request reached the handler")
		}
	})
	t.Run("one log line", func(t *testing.T) {
		n := len(h.logLines("grpc call"))
		if err := check(gatewayCtx(service, "203.0.113.77"), checkRequest()); err != nil {
			t.Fatal(err)
		}
		lines := h.logLines("grpc call")
		if len(lines) != n+1 {
			t.Fatalf("%d log lines for one call, want 1", len(lines)-n)
		}
		l := lines[len(lines)-1]
		if l["method"] != checkMethod || l["code"] != "OK" || l["client"] != "203.0.113.77" || l["request_bytes"] == nil {
			t.Errorf("log line %v lacks an attribute", l)
		}
		for _, secret := range []string{testINS, "SECRET-JUSTIFICATION", "10001234567"} {
			if strings.Contains(h.logs.String(), secret) {
				t.Errorf("the log shows %q", secret)
			}
		}
	})
}

// TestInProcessCall checks what a handler sees of an InProcess call and
// what the caller gets back: the request and the response as they are,
// the metadata the gateway sent and no other, the gateway as the peer,
// grpc.Method, and status errors.
func TestInProcessCall(t *testing.T) {
	h := newHarness(t)
	cc := h.srv.InProcess()
	want := &vigiev1.CheckResponse{Decision: vigiev1.Decision_DECISION_DENY, ConsentVersion: 7, Obligations: []vigiev1.Obligation{1}, Reason: &vigiev1.CoarseReason{}}
	var seen struct {
		req    *vigiev1.CheckRequest
		md     metadata.MD
		out    bool
		addr   string
		method string
	}
	h.rec.handle[checkMethod] = func(ctx context.Context, req any) (any, error) {
		seen.req = req.(*vigiev1.CheckRequest)
		seen.md, _ = metadata.FromIncomingContext(ctx)
		out, _ := metadata.FromOutgoingContext(ctx)
		seen.out = len(out) > 0
		if p, ok := peer.FromContext(ctx); ok {
			seen.addr = p.Addr.Network()
		}
		seen.method, _ = grpc.Method(ctx)
		return want, nil
	}
	ctx := metadata.AppendToOutgoingContext(gatewayCtx(h.token(auth.RoleService), "192.0.2.10"), "x-other", "1")
	var got vigiev1.CheckResponse
	if err := cc.Invoke(ctx, checkMethod, checkRequest(), &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, want) {
		t.Errorf("reply = %v, want %v", &got, want)
	}
	if !proto.Equal(seen.req, checkRequest()) {
		t.Errorf("the handler's request = %v, want %v", seen.req, checkRequest())
	}
	if len(seen.md.Get("authorization")) != 1 || seen.md.Get(ClientAddrMetadata)[0] != "192.0.2.10" || seen.md.Get("x-other")[0] != "1" {
		t.Errorf("incoming metadata = %v, want the gateway's", seen.md)
	}
	if seen.out {
		t.Error("the gateway's metadata is also outgoing in the handler: a call it makes would forward the token")
	}
	if seen.addr != (GatewayAddr{}).Network() || seen.method != checkMethod {
		t.Errorf("peer %q, method %q; want the gateway and %s", seen.addr, seen.method, checkMethod)
	}

	if err := cc.Invoke(ctx, "/vigie.v1.AccessService/Nope", checkRequest(), &got); status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown method = %v, want Unimplemented", err)
	}
	if err := cc.Invoke(ctx, checkMethod, &vigiev1.GetPublicKeyRequest{}, &got); status.Code(err) != codes.Internal {
		t.Errorf("request of the wrong type = %v, want Internal", err)
	}
	h.rec.handle[checkMethod] = func(ctx context.Context, req any) (any, error) { return nil, ErrUnavailable }
	if err := cc.Invoke(ctx, checkMethod, checkRequest(), &got); status.Code(err) != codes.Unavailable {
		t.Errorf("handler failing with ErrUnavailable = %v, want Unavailable", err)
	}
}
