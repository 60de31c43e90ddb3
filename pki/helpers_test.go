package pki

import (
	"crypto"
	"crypto/x509"
	"os"
	"testing"
	"time"
)

func mustKey(t testing.TB, kt KeyType) crypto.Signer {
	t.Helper()
	k, err := GenerateKey(kt)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSelfSigned(t testing.TB, key crypto.Signer, opts CertOptions) *x509.Certificate {
	t.Helper()
	opts.IssuerKey = key
	c, err := CreateCertificate(key.Public(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWrite(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func mustReadCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	c, err := ReadCertificateFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fixedNow(ts string) func() time.Time {
	tm, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		panic(err)
	}
	return func() time.Time { return tm }
}

func passphrase(s string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(s), nil }
}
