package gateway

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/server"
)

func TestBehindProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ff::/48")}
	var got *http.Request
	h := BehindProxies(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r }), trusted)
	for _, tc := range []struct {
		name, peer string
		xff        []string
		proto      string
		want       string // RemoteAddr seen; "" if refused
		scheme     string
	}{
		{name: "untrusted peer", peer: "192.0.2.1:1000", xff: []string{"198.51.100.7"}, proto: "https", want: "192.0.2.1:1000"},
		{name: "untrusted peer over http", peer: "192.0.2.1:1000", proto: "http", want: "192.0.2.1:1000"},
		{name: "trusted proxy", peer: "10.0.0.2:1000", xff: []string{"198.51.100.7"}, proto: "https", want: "198.51.100.7:0", scheme: "https"},
		{name: "made-up hops left of the client", peer: "10.0.0.2:1000", xff: []string{"203.0.113.9, 198.51.100.7"}, want: "198.51.100.7:0"},
		{name: "two trusted proxies", peer: "10.0.0.2:1000", xff: []string{"198.51.100.7, 10.0.0.3"}, want: "198.51.100.7:0"},
		{name: "two header lines", peer: "10.0.0.2:1000", xff: []string{"203.0.113.9", "198.51.100.7,10.9.9.9"}, want: "198.51.100.7:0"},
		{name: "the proxy's own request", peer: "10.0.0.2:1000", want: "10.0.0.2:0"},
		{name: "garbage left of a trusted hop", peer: "10.0.0.2:1000", xff: []string{"198.51.100.7, not-an-ip, 10.0.0.3"}, want: "10.0.0.3:0"},
		{name: "IPv6 with a port", peer: "[2001:db8:ff::2]:1000", xff: []string{"[2001:db8::1]:443"}, want: "[2001:db8::1]:0"},
		{name: "IPv4-mapped peer", peer: "[::ffff:10.0.0.2]:1000", xff: []string{"198.51.100.7"}, want: "198.51.100.7:0"},
		{name: "all hops trusted", peer: "10.0.0.2:1000", xff: []string{"10.1.1.1, 10.0.0.3"}, want: "10.1.1.1:0"},
		{name: "client over plain HTTP", peer: "10.0.0.2:1000", xff: []string{"198.51.100.7"}, proto: "http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got = nil
			r := httptest.NewRequest("GET", "/checkpoint", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if tc.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			switch {
			case tc.want == "" && (got != nil || w.Code != 403):
				t.Errorf("served, %d; want 403", w.Code)
			case tc.want != "" && got == nil:
				t.Errorf("refused: %d %s", w.Code, w.Body)
			case tc.want != "" && (got.RemoteAddr != tc.want || got.URL.Scheme != tc.scheme):
				t.Errorf("RemoteAddr, scheme = %s, %q; want %s, %q", got.RemoteAddr, got.URL.Scheme, tc.want, tc.scheme)
			}
		})
	}
}

// TestRateLimitBehindProxy checks that the client address the rate limiter
// and the call's log line use (server.ClientAddrMetadata) is
// X-Forwarded-For's from a trusted proxy, and the peer's otherwise.
func TestRateLimitBehindProxy(t *testing.T) {
	limits := map[auth.Role]server.Limit{"": {PerSecond: 0.001, Burst: 1}}
	e := newEnv(t, limits)
	h := BehindProxies(e.handler, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
	get := func(remote, xff string) int {
		req := httptest.NewRequest("GET", "/checkpoint", nil)
		req.RemoteAddr = remote
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	client := func() string {
		if v := e.seen.metadata().Get(server.ClientAddrMetadata); len(v) == 1 {
			return v[0]
		}
		return ""
	}
	if c := get("192.0.2.1:1000", "198.51.100.7"); c != 200 || client() != "198.51.100.7" {
		t.Fatalf("first call through the proxy = %d, client %q; want 200, 198.51.100.7", c, client())
	}
	if c := get("192.0.2.2:1000", "198.51.100.7"); c != 429 {
		t.Errorf("the same client through another proxy = %d, want 429", c)
	}
	if c := get("192.0.2.1:1001", "198.51.100.8"); c != 200 || client() != "198.51.100.8" {
		t.Errorf("another client through the proxy = %d, client %q; want 200, 198.51.100.8", c, client())
	}
	// An untrusted peer: its own bucket whatever it says.
	if c := get("203.0.113.5:1000", "198.51.100.9"); c != 200 || client() != "203.0.113.5" {
		t.Errorf("an untrusted peer = %d, client %q; want 200, 203.0.113.5", c, client())
	}
	if c := get("203.0.113.5:1001", "198.51.100.10"); c != 429 {
		t.Errorf("the untrusted peer with another X-Forwarded-For = %d, want 429", c)
	}
}
