package gateway

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/api/auth"
)

// BenchmarkGateway measures HTTP calls through the gateway's handler
// (no network: httptest's recorder), GOMAXPROCS callers, the server's
// handlers fakes that answer at once: what the gateway and the
// interceptors cost, calling the server over gRPC's transport
// (DialInProcess: HTTP/2 framing, the request and the response
// serialised once more) or directly (InProcess). GET /v1/log/key is the
// no-op of docs/performance.md; POST /v1/access:check the Check without
// its decision and recording.
func BenchmarkGateway(b *testing.B) {
	for _, transport := range []string{"grpc", "inprocess"} {
		e := newEnvOver(b, nil, transport == "grpc")
		authz := "Bearer " + e.token(auth.RoleService)
		for _, call := range []struct{ name, method, path, body string }{
			{"noop", "GET", "/v1/log/key", ""},
			{"check", "POST", "/v1/access:check", checkBody},
		} {
			b.Run(call.name+"/transport="+transport, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						req := httptest.NewRequest(call.method, call.path, strings.NewReader(call.body))
						req.Header.Set("Authorization", authz)
						req.Header.Set("Content-Type", "application/json")
						w := httptest.NewRecorder()
						e.handler.ServeHTTP(w, req)
						if w.Code != 200 {
							b.Errorf("%s %s = %d %s", call.method, call.path, w.Code, w.Body)
							return
						}
					}
				})
			})
		}
	}
}
