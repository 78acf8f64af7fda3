package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// testPKI issues certificates from a CA of its own and writes them as PEM
// files.
type testPKI struct {
	t      *testing.T
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

func newTestPKI(t *testing.T) *testPKI {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Vigie test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{t: t, dir: t.TempDir(), ca: ca, caKey: key, serial: 1}
	p.write("ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// issue returns a certificate for an IP or a URI, and the files of its
// certificate and key.
func (p *testPKI) issue(name string, ip net.IP, uri *url.URL) (tls.Certificate, string, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	if uri != nil {
		tmpl.URIs = []*url.URL{uri}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		p.t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, p.write(name+".pem", "CERTIFICATE", der), p.write(name+".key", "PRIVATE KEY", keyDER)
}

// TestServeTLS serves both APIs with TLS on every interface: a service
// authenticates with its client certificate alone (on the allow-list,
// bound to its organisation); a call with neither certificate nor token
// gets nothing; HTTPS serves the gateway.
func TestServeTLS(t *testing.T) {
	pki := newTestPKI(t)
	_, certFile, keyFile := pki.issue("server", net.ParseIP("127.0.0.1"), nil)
	client, _, _ := pki.issue("dpi", nil, &url.URL{Scheme: "spiffe", Host: "chu.example", Path: "/dpi"})
	services := filepath.Join(pki.dir, "services.json")
	if err := os.WriteFile(services, []byte(`[{"name": "spiffe://chu.example/dpi", "service": "chu-dpi", "organizations": ["`+e2eHospital+`"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	grpcPort, httpPort := freePort(t), freePort(t)
	proc := startServe(t, "--data-dir", t.TempDir(), "--log-name", "vigie.chu.example", "--grpc-addr", "0.0.0.0:"+grpcPort, "--http-addr", "0.0.0.0:"+httpPort,
		"--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", filepath.Join(pki.dir, "ca.pem"), "--mtls-services", services)
	proc.waitReady(t)

	roots := x509.NewCertPool()
	roots.AddCert(pki.ca)
	conn, err := grpc.NewClient("127.0.0.1:"+grpcPort, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{client}})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := vigiev1.NewAccessServiceClient(conn).Check(ctx, checkRequest("tls-1"))
	if err != nil || resp.Decision != vigiev1.Decision_DECISION_ALLOW {
		t.Fatalf("Check with a client certificate = %v, %v", resp, err)
	}

	plain, err := grpc.NewClient("127.0.0.1:"+grpcPort, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, ServerName: "x"})))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := vigiev1.NewAccessServiceClient(plain).Check(ctx, checkRequest("tls-2")); err == nil {
		t.Errorf("Check without a client certificate or token succeeded")
	}

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: time.Minute}
	r, err := hc.Get("https://127.0.0.1:" + httpPort + "/healthz")
	if err != nil {
		t.Fatalf("HTTPS: %v", err)
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Errorf("GET /healthz over HTTPS = %d", r.StatusCode)
	}
	if _, err := http.Get("http://127.0.0.1:" + httpPort + "/healthz"); err == nil {
		// Go's server answers a plain request on a TLS port with 400; a
		// client error is fine too: nothing is served in clear.
		r, _ := http.Get("http://127.0.0.1:" + httpPort + "/healthz")
		if r != nil && r.StatusCode == 200 {
			t.Errorf("the HTTP API answered in clear")
		}
	}
}
