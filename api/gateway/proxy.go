package gateway

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// BehindProxies returns a handler for serving behind TLS-terminating
// proxies whose addresses are in trusted. From a peer in trusted, and
// from no other, it believes:
//
//   - X-Forwarded-For: the client is the rightmost address of the chain
//     that is not itself in trusted (each proxy appends the address it
//     saw, so what is left of a trusted proxy's entry may be made up by
//     the client); next sees it as r.RemoteAddr, with port 0, and rate
//     limits and logs use it;
//   - X-Forwarded-Proto: next sees it as r.URL.Scheme. A request that the
//     proxy received over plain HTTP ("http") is refused with 403: its
//     token and the health data of its answer would cross the client's
//     network in clear.
//
// A request of another peer is served as it came, its X-Forwarded-*
// headers ignored. With trusted empty, BehindProxies returns next.
func BehindProxies(next http.Handler, trusted []netip.Prefix) http.Handler {
	if len(trusted) == 0 {
		return next
	}
	isTrusted := func(a netip.Addr) bool {
		a = a.Unmap()
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	plain := status.New(codes.PermissionDenied, "plain HTTP: use https")
	m := &runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !isTrusted(peer.Addr()) {
			next.ServeHTTP(w, r)
			return
		}
		client := forwardedFor(r.Header.Values("X-Forwarded-For"), peer.Addr(), isTrusted)
		proto := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")))
		if proto == "http" {
			writeStatus(w, m, plain)
			return
		}
		r2 := r.Clone(r.Context())
		r2.RemoteAddr = netip.AddrPortFrom(client, 0).String()
		if proto == "https" {
			r2.URL.Scheme = proto
		}
		next.ServeHTTP(w, r2)
	})
}

// forwardedFor returns the client of a chain of X-Forwarded-For values
// that peer (trusted) sent: the rightmost address not trusted, or the
// leftmost if all are, or the address right of the first entry that is
// not an address.
func forwardedFor(values []string, peer netip.Addr, trusted func(netip.Addr) bool) netip.Addr {
	var hops []string
	for _, v := range values {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer.Unmap()
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(strings.TrimSpace(hops[i]))
		if !ok {
			break
		}
		client = a
		if !trusted(a) {
			break
		}
	}
	return client
}

// parseHop reads an address of X-Forwarded-For: an IP, with or without a
// port (some proxies add one; IPv6 in brackets then).
func parseHop(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
