package auth

import (
	"errors"
	"fmt"
	"net"
	"net/url"
)

// The rules on the addresses and URLs that tokens, codes, keys and
// health data travel to: https, or plain http on a loopback host only.

// LoopbackHost reports whether host (a name or an address, without a
// port) names this machine: localhost, or a loopback IP address.
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SecureURL reports whether s is an https URL, or an http one on a
// loopback host (tests, a provider on the same machine): where keys,
// codes and secrets may be fetched from or sent to.
func SecureURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	return u.Scheme == "https" || u.Scheme == "http" && LoopbackHost(u.Hostname())
}

// ErrNotLoopback is returned by LoopbackAddr for an address reachable
// from other machines.
var ErrNotLoopback = errors.New("not a loopback address")

// LoopbackAddr returns nil if addr (host:port) is reachable from this
// machine only, ErrNotLoopback (wrapped) if it is reachable from others
// (every interface included), and another error if it is not host:port.
// A server without TLS listens only where LoopbackAddr returns nil:
// tokens and health data would otherwise cross the network in clear.
func LoopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if !LoopbackHost(host) {
		return ErrNotLoopback
	}
	return nil
}

// CheckBaseURL accepts the base URL of a site, scheme://host[:port] with
// an optional trailing slash, that is a [SecureURL]: what a browser is
// sent back to with a sign-in's cookie and code. Its errors do not quote
// s.
func CheckBaseURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return errors.New("want an https URL")
	case u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return errors.New("want scheme://host[:port], without a path, query or user")
	case !SecureURL(s):
		return errors.New("http is allowed on loopback only, want https")
	}
	return nil
}
