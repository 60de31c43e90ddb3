package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net"
	"testing"
	"time"
)

// CertOptions describes a test certificate. The zero value makes serial 1,
// valid from an hour ago to an hour from now.
type CertOptions struct {
	// Serial is the serial number. Zero means 1.
	Serial int64

	// NotBefore and NotAfter bound the validity period. Zero means an hour
	// before and an hour after now.
	NotBefore, NotAfter time.Time
}

// Cert is a self-signed P-256 certificate for 127.0.0.1, ::1 and
// localhost, with everything a test on either side of a handshake needs.
type Cert struct {
	// TLS is the certificate and key for a server, Leaf set.
	TLS tls.Certificate
	// Leaf is the parsed certificate.
	Leaf *x509.Certificate
	// Pool trusts Leaf, for a client's RootCAs.
	Pool *x509.CertPool
	// Pin is Leaf's key pin, "sha256//" and the standard base64 of
	// SHA-256 over its SubjectPublicKeyInfo (what package pinning's PinOf
	// returns).
	Pin string
}

// MustCert makes a certificate as opts describe, failing the test on
// error. The certificate is its own CA, so that Pool verifies it.
func MustCert(t testing.TB, opts CertOptions) Cert {
	t.Helper()
	if opts.Serial == 0 {
		opts.Serial = 1
	}
	now := time.Now()
	if opts.NotBefore.IsZero() {
		opts.NotBefore = now.Add(-time.Hour)
	}
	if opts.NotAfter.IsZero() {
		opts.NotAfter = now.Add(time.Hour)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(opts.Serial),
		Subject:               pkix.Name{CommonName: "space captain test"},
		NotBefore:             opts.NotBefore,
		NotAfter:              opts.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("creating certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return Cert{
		TLS:  tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Leaf: leaf,
		Pool: pool,
		Pin:  "sha256//" + base64.StdEncoding.EncodeToString(sum[:]),
	}
}
