package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCreateCertificateKinds(t *testing.T) {
	now := fixedNow("2026-01-02T03:04:05Z")
	for _, kt := range []KeyType{KeyECDSAP256, KeyECDSAP384, KeyRSA2048, KeyEd25519} {
		t.Run(kt.String(), func(t *testing.T) {
			caKey := mustKey(t, kt)
			ca, err := CreateCertificate(caKey.Public(), CertOptions{IsCA: true, IssuerKey: caKey, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			leafKey := mustKey(t, kt)
			leaf, err := CreateCertificate(leafKey.Public(), CertOptions{Issuer: ca, IssuerKey: caKey, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			self := mustSelfSigned(t, leafKey, CertOptions{Now: now, DNSNames: []string{"game.example"}})

			checkCommon := func(t *testing.T, c *x509.Certificate, validity time.Duration) {
				t.Helper()
				if got := len(c.SerialNumber.Bytes()); got != 16 || c.SerialNumber.Sign() <= 0 || c.SerialNumber.Bit(127) != 0 {
					t.Errorf("serial %x: want 16 positive octets with the top bit clear", c.SerialNumber)
				}
				if len(c.SubjectKeyId) == 0 || len(c.AuthorityKeyId) == 0 {
					t.Errorf("SKI %x, AKI %x: want both", c.SubjectKeyId, c.AuthorityKeyId)
				}
				if want := now().Add(-backdate); !c.NotBefore.Equal(want) {
					t.Errorf("NotBefore: got %v, want %v", c.NotBefore, want)
				}
				if want := now().Add(validity); !c.NotAfter.Equal(want) {
					t.Errorf("NotAfter: got %v, want %v", c.NotAfter, want)
				}
			}
			t.Run("CA", func(t *testing.T) {
				checkCommon(t, ca, defaultCAValidity)
				if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
					t.Error("want CA:TRUE, pathlen 0")
				}
				if ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
					t.Errorf("key usage: got %v", ca.KeyUsage)
				}
				if !bytes.Equal(ca.AuthorityKeyId, ca.SubjectKeyId) {
					t.Error("self-signed CA: AKI != SKI")
				}
				if !strings.HasPrefix(ca.Subject.CommonName, "Space Captain local CA") {
					t.Errorf("CN: got %q", ca.Subject.CommonName)
				}
			})
			t.Run("CA-issued leaf", func(t *testing.T) {
				checkCommon(t, leaf, defaultLeafValidity)
				if leaf.IsCA || !leaf.BasicConstraintsValid {
					t.Error("want CA:FALSE")
				}
				if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
					t.Errorf("key usage: got %v, want digitalSignature only", leaf.KeyUsage)
				}
				if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
					t.Errorf("EKU: got %v, want serverAuth", leaf.ExtKeyUsage)
				}
				if !bytes.Equal(leaf.AuthorityKeyId, ca.SubjectKeyId) {
					t.Error("AKI != issuer's SKI")
				}
				wantDNS, wantIPs := defaultSANs()
				if strings.Join(leaf.DNSNames, ",") != strings.Join(wantDNS, ",") || len(leaf.IPAddresses) != len(wantIPs) {
					t.Errorf("SANs: got %v %v, want %v %v", leaf.DNSNames, leaf.IPAddresses, wantDNS, wantIPs)
				}
				pool := x509.NewCertPool()
				pool.AddCert(ca)
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost", CurrentTime: now()}); err != nil {
					t.Errorf("chain does not verify: %v", err)
				}
				for _, ip := range []string{"127.0.0.1", "::1"} {
					if err := leaf.VerifyHostname(ip); err != nil {
						t.Errorf("VerifyHostname(%s): %v", ip, err)
					}
				}
			})
			t.Run("self-signed leaf", func(t *testing.T) {
				checkCommon(t, self, defaultLeafValidity)
				if !bytes.Equal(self.AuthorityKeyId, self.SubjectKeyId) {
					t.Error("AKI != SKI")
				}
				if !IsSelfSigned(self) || IsSelfSigned(leaf) {
					t.Errorf("IsSelfSigned: self %v, CA-issued %v", IsSelfSigned(self), IsSelfSigned(leaf))
				}
				if self.Subject.CommonName != "game.example" || len(self.IPAddresses) != 0 {
					t.Errorf("got CN %q and IPs %v, want the given DNS name only", self.Subject.CommonName, self.IPAddresses)
				}
			})
		})
	}
}

func TestCreateCertificateErrors(t *testing.T) {
	k := mustKey(t, KeyECDSAP256)
	other := mustKey(t, KeyECDSAP256)
	caKey := mustKey(t, KeyECDSAP256)
	ca, err := CreateCertificate(caKey.Public(), CertOptions{IsCA: true, IssuerKey: caKey, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	leaf := mustSelfSigned(t, k, CertOptions{})
	tests := []struct {
		name    string
		opts    CertOptions
		wantErr error
		wantMsg string
	}{
		{"no signer", CertOptions{}, nil, "no signing key"},
		{"self-signed by another key", CertOptions{IssuerKey: other}, nil, "own key"},
		{"issuer key mismatch", CertOptions{Issuer: ca, IssuerKey: other}, ErrNotIssuer, "does not match"},
		{"issuer not a CA", CertOptions{Issuer: leaf, IssuerKey: k}, ErrNotIssuer, "not a CA"},
		{"outlives issuer", CertOptions{Issuer: ca, IssuerKey: caKey}, nil, "outlive its issuer"},
		{"not after before not before", CertOptions{IssuerKey: k, NotAfter: time.Now().Add(-time.Hour)}, nil, "must be later"},
		{"bad DNS name", CertOptions{IssuerKey: k, DNSNames: []string{"bad_name"}}, nil, "invalid DNS name"},
		{"IP as DNS name", CertOptions{IssuerKey: k, DNSNames: []string{"10.0.0.1"}}, nil, "IP SAN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CreateCertificate(k.Public(), tt.opts)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got %v, want an error containing %q", err, tt.wantMsg)
			}
		})
	}
}

func TestCreateCertificateExplicitValidity(t *testing.T) {
	k := mustKey(t, KeyECDSAP256)
	nb := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	na := time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC)
	c := mustSelfSigned(t, k, CertOptions{NotBefore: nb, NotAfter: na, IPAddresses: []net.IP{net.ParseIP("192.0.2.1")}})
	if !c.NotBefore.Equal(nb) || !c.NotAfter.Equal(na) {
		t.Errorf("got %v..%v, want %v..%v", c.NotBefore, c.NotAfter, nb, na)
	}
	if c.Subject.CommonName != "192.0.2.1" || len(c.DNSNames) != 0 {
		t.Errorf("got CN %q, DNS %v; want the IP as CN and no DNS names", c.Subject.CommonName, c.DNSNames)
	}
}

func TestFingerprint(t *testing.T) {
	c := mustSelfSigned(t, mustKey(t, KeyECDSAP256), CertOptions{})
	sum := sha256.Sum256(c.Raw)
	want := strings.ToUpper(hex.EncodeToString(sum[:]))
	got := Fingerprint(c)
	if strings.ReplaceAll(got, ":", "") != want || len(got) != 32*3-1 {
		t.Errorf("got %s, want %s with colons", got, want)
	}
	if s := SerialHex(c.SerialNumber); len(s) != 16*3-1 || s != strings.ToLower(s) {
		t.Errorf("SerialHex: got %s", s)
	}
}
