package pki

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseCertificatesPEM(t *testing.T) {
	k := mustKey(t, KeyECDSAP256)
	a := mustSelfSigned(t, k, CertOptions{})
	b := mustSelfSigned(t, k, CertOptions{})
	bundle := EncodeCertificatesPEM(a, b)
	keyPEM, _ := EncodeKeyPEM(k, nil)

	good := []struct {
		name string
		data []byte
		want int
	}{
		{"one", EncodeCertificatesPEM(a), 1},
		{"bundle", bundle, 2},
		{"explanatory text before and between", []byte("subject=CN = x\n" + string(EncodeCertificatesPEM(a)) + "# second\n" + string(EncodeCertificatesPEM(b))), 2},
		{"CRLF line endings and trailing blank lines", append(bytes.ReplaceAll(bundle, []byte("\n"), []byte("\r\n")), "\r\n\r\n"...), 2},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			certs, err := ParseCertificatesPEM(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != tt.want || !bytes.Equal(certs[0].Raw, a.Raw) {
				t.Errorf("got %d certificates, want %d starting with the first", len(certs), tt.want)
			}
		})
	}

	bad := []struct {
		name    string
		data    []byte
		wantErr error
		wantMsg string
	}{
		{"empty", nil, ErrNoCertificate, "no CERTIFICATE"},
		{"key instead", keyPEM, ErrNoCertificate, "paths may be swapped"},
		{"trailing garbage", append(append([]byte{}, bundle...), "oops\n"...), ErrMalformedPEM, "after the last PEM block (line 25)"},
		{"truncated second block", bundle[:len(bundle)-40], ErrMalformedPEM, "line 13"},
		{"damaged first block", append([]byte("-----BEGIN CERTIFICATE-----\n!!!\n"), bundle...), ErrMalformedPEM, "line 1"},
		{"DER", a.Raw, ErrNoCertificate, "DER"},
		{"other block", []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"), ErrMalformedPEM, "X509 CRL"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCertificatesPEM(tt.data)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}
