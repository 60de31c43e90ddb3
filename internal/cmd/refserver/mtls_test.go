package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// mustCert writes a self-signed P-256 certificate and key (for a server or
// a client) into dir as NAME.crt and NAME.key and returns the pair.
func mustCert(t *testing.T, dir, name string, client bool) tls.Certificate {
	t.Helper()
	key, err := pki.GenerateKey(pki.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	opts := pki.CertOptions{CommonName: name, IssuerKey: key, Validity: time.Hour, Client: client}
	if !client {
		opts.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	cert, err := pki.CreateCertificate(key.Public(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCertificatesFile(filepath.Join(dir, name+".crt"), []*x509.Certificate{cert}, pki.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteKeyFile(filepath.Join(dir, name+".key"), key, pki.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// startServer serves cfg on a loopback port until the test ends.
func startServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveListener(ctx, ln, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveListener: %v", err)
		}
	})
	return ln.Addr().String()
}

// echo dials addr with cfg, sends one ECHO and returns the error of the
// exchange, nil when the reply came back; asked reports whether the
// server asked for a client certificate.
func echo(t *testing.T, addr string, cfg *tls.Config) (asked bool, err error) {
	t.Helper()
	cfg = cfg.Clone()
	cfg.InsecureSkipVerify = true
	presented := cfg.GetClientCertificate
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		asked = true
		if presented == nil {
			return &tls.Certificate{}, nil
		}
		return presented(cri)
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return asked, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(proto.AppendFrame(nil, proto.Echo, []byte("ping"))); err != nil {
		return asked, err
	}
	f, err := proto.NewDecoder(c, 0).Next()
	if err != nil {
		return asked, err
	}
	if f.Type != proto.Echo || string(f.Body) != "ping" {
		return asked, errors.New("unexpected reply " + f.Type.String())
	}
	return asked, nil
}

// TestClientAllow checks the mutual TLS mode: a certificate whose key is
// on the allow list is admitted, on full and resumed handshakes; no
// certificate and a key off the list are refused; and without the flag
// no certificate is asked for.
func TestClientAllow(t *testing.T) {
	dir := t.TempDir()
	mustCert(t, dir, "server", false)
	player := mustCert(t, dir, "player", true)
	stranger := mustCert(t, dir, "stranger", true)
	allow := filepath.Join(dir, "allow")
	if err := os.WriteFile(allow, []byte(pinning.PinOf(player.Leaf).String()+" name=player\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	present := func(c tls.Certificate) *tls.Config {
		return &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }}
	}

	def, err := tlsConfig(crt, key, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if def.ClientAuth != tls.NoClientCert || def.VerifyConnection != nil {
		t.Errorf("the default config asks for client certificates (%v) or verifies connections", def.ClientAuth)
	}
	addr := startServer(t, def)
	if asked, err := echo(t, addr, &tls.Config{}); asked || err != nil {
		t.Errorf("default mode: asked for a certificate %v, err %v; want not asked and an ECHO answered", asked, err)
	}

	cfg, err := tlsConfig(crt, key, allow, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.RequireAnyClientCert {
		t.Errorf("ClientAuth %v, want RequireAnyClientCert", cfg.ClientAuth)
	}
	addr = startServer(t, cfg)
	if asked, err := echo(t, addr, present(player)); !asked || err != nil {
		t.Errorf("allowed player: asked %v, err %v; want asked and admitted", asked, err)
	}
	if _, err := echo(t, addr, &tls.Config{}); err == nil {
		t.Error("no certificate: admitted, want refused")
	}
	if _, err := echo(t, addr, present(stranger)); err == nil {
		t.Error("a key not on the allow list: admitted, want refused")
	}

	if _, err := tlsConfig(crt, key, filepath.Join(dir, "missing"), false); err == nil {
		t.Error("a missing allow list: no error")
	}
	if _, err := tlsConfig("", "", allow, true); err == nil {
		t.Error("--client-allow with --plaintext: no error")
	}
}

// TestResumedMutualTLS checks that a client with a session cache resumes
// against the mutual TLS mode (the resumed scenarios measure resumption).
func TestResumedMutualTLS(t *testing.T) {
	dir := t.TempDir()
	mustCert(t, dir, "server", false)
	player := mustCert(t, dir, "player", true)
	allow := filepath.Join(dir, "allow")
	if err := os.WriteFile(allow, []byte(pinning.PinOf(player.Leaf).String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsConfig(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), allow, false)
	if err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, cfg)
	client := &tls.Config{
		InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		Certificates:       []tls.Certificate{player},
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}
	resumed := 0
	for range 3 {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, client)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		// TLS 1.3 tickets arrive after the handshake: one ECHO reads them.
		if _, err := c.Write(proto.AppendFrame(nil, proto.Echo, []byte("x"))); err != nil {
			t.Fatal(err)
		}
		if _, err := proto.NewDecoder(c, 0).Next(); err != nil {
			t.Fatal(err)
		}
		if c.ConnectionState().DidResume {
			resumed++
		}
		c.Close()
	}
	if resumed != 2 {
		t.Errorf("%d of 3 connections resumed, want the last 2", resumed)
	}
}
