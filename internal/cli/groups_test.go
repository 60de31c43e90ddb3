package cli

import (
	"crypto/tls"
	"slices"
	"testing"
)

func TestParseGroups(t *testing.T) {
	tests := []struct {
		in   string
		want []tls.CurveID
	}{
		{"X25519MLKEM768", []tls.CurveID{tls.X25519MLKEM768}},
		{"x25519, p256,secp384r1", []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}},
		{"P-256,prime256v1", []tls.CurveID{tls.CurveP256}},
		{"SecP256r1MLKEM768,CurveP521", []tls.CurveID{tls.SecP256r1MLKEM768, tls.CurveP521}},
	}
	for _, tt := range tests {
		got, err := ParseGroups(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseGroups(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"x25519,,p256", "ffdhe2048", ""} {
		if _, err := ParseGroups(bad); err == nil {
			t.Errorf("ParseGroups(%q): got no error", bad)
		}
	}
}

func TestIsHybridGroup(t *testing.T) {
	for _, g := range groups {
		want := g == tls.X25519MLKEM768 || g == tls.SecP256r1MLKEM768 || g == tls.SecP384r1MLKEM1024
		if got := IsHybridGroup(g); got != want {
			t.Errorf("IsHybridGroup(%v): got %v, want %v", g, got, want)
		}
	}
}
