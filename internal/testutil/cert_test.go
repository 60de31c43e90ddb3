package testutil

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestMustCert(t *testing.T) {
	nb := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name       string
		opts       CertOptions
		wantSerial int64
	}{
		{"zero value", CertOptions{}, 1},
		{"serial and dates", CertOptions{Serial: 0x42, NotBefore: nb, NotAfter: nb.Add(time.Hour)}, 0x42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := MustCert(t, tt.opts)
			if got := c.Leaf.SerialNumber.Int64(); got != tt.wantSerial {
				t.Errorf("serial: got %d, want %d", got, tt.wantSerial)
			}
			if !tt.opts.NotBefore.IsZero() && !c.Leaf.NotBefore.Equal(tt.opts.NotBefore) {
				t.Errorf("not before: got %v, want %v", c.Leaf.NotBefore, tt.opts.NotBefore)
			}
			if c.TLS.Leaf != c.Leaf || len(c.Pin) != len("sha256//")+44 {
				t.Errorf("got Leaf %p (want %p) and pin %q", c.TLS.Leaf, c.Leaf, c.Pin)
			}
		})
	}
	// The pool verifies the certificate for every name it is made for.
	c := MustCert(t, CertOptions{})
	for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := c.Leaf.VerifyHostname(name); err != nil {
			t.Errorf("VerifyHostname(%s): %v", name, err)
		}
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: c.Pool}); err != nil {
		t.Errorf("Verify against Pool: %v", err)
	}
}
