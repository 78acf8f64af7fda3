package auth

import (
	"errors"
	"testing"
)

func TestSecureURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"https://idp.example", true},
		{"https://idp.example/realms/x", true},
		{"http://localhost:8080/x", true},
		{"http://127.0.0.1/x", true},
		{"http://[::1]:80/x", true},
		{"http://idp.example", false},
		{"http://10.0.0.5", false},
		{"ftp://idp.example", false},
		{"idp.example", false},
		{"https://", false},
		{"", false},
	} {
		if got := SecureURL(tc.url); got != tc.want {
			t.Errorf("SecureURL(%q) = %v, want %v", tc.url, got, tc.want)
		}
	}
}

func TestLoopbackAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want error // nil, ErrNotLoopback, or errBadAddr for another error
	}{
		{"127.0.0.1:8080", nil},
		{"127.3.4.5:1", nil},
		{"localhost:0", nil},
		{"[::1]:8080", nil},
		{"[::ffff:127.0.0.1]:1", nil},
		{":8080", ErrNotLoopback},
		{"0.0.0.0:8080", ErrNotLoopback},
		{"[::]:8080", ErrNotLoopback},
		{"10.0.0.5:8080", ErrNotLoopback},
		{"vigie.example:8080", ErrNotLoopback},
		{"[fe80::1%lo]:1", ErrNotLoopback},
		{"8080", errBadAddr},
		{"127.0.0.1", errBadAddr},
	} {
		err := LoopbackAddr(tc.addr)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("LoopbackAddr(%q) = %v, want nil", tc.addr, err)
		case tc.want == ErrNotLoopback && !errors.Is(err, ErrNotLoopback):
			t.Errorf("LoopbackAddr(%q) = %v, want ErrNotLoopback", tc.addr, err)
		case tc.want == errBadAddr && (err == nil || errors.Is(err, ErrNotLoopback)):
			t.Errorf("LoopbackAddr(%q) = %v, want an error other than ErrNotLoopback", tc.addr, err)
		}
	}
}

var errBadAddr = errors.New("not host:port")

func TestCheckBaseURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://vigie.example", true},
		{"https://vigie.example:8443/", true},
		{"http://localhost:8080", true},
		{"http://127.0.0.1:8080/", true},
		{"http://[::1]:8080", true},
		{"http://vigie.example", false},
		{"http://10.0.0.5:8080", false},
		{"https://vigie.example/vigie", false},
		{"https://vigie.example/?a=b", false},
		// An empty query still ends the URL the callback path is
		// appended to.
		{"https://vigie.example/?", false},
		{"https://vigie.example/#top", false},
		{"https://user@vigie.example", false},
		{"ftp://vigie.example", false},
		{"vigie.example", false},
		{"https://", false},
		{"://x", false},
	} {
		err := CheckBaseURL(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("CheckBaseURL(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
	}
}
