package interop

import (
	"strings"
	"testing"
)

// openssl s_client against the real sc-server: TLS 1.2 and 1.3 handshakes
// succeed and verify against certs/ca.crt; TLS 1.1, CBC suites and
// static-RSA key exchange are refused by the server (its alert, not a
// client-side refusal: the client is told to allow them).
func TestOpenSSLClientAgainstSCServer(t *testing.T) {
	openssl := needTool(t, "openssl")
	dir := t.TempDir()
	srv := startSCServer(t, dir)
	base := []string{"s_client", "-connect", srv.Addr, "-servername", "localhost", "-CAfile", "certs/ca.crt", "-verify_return_error"}
	tests := []struct {
		name string
		args []string
		want []string // in the combined output
	}{
		{"TLS 1.2", []string{"-tls1_2"}, []string{"Protocol  : TLSv1.2", "Verify return code: 0 (ok)", "ECDHE-ECDSA-"}},
		{"TLS 1.3", []string{"-tls1_3"}, []string{"Protocol  : TLSv1.3", "Verify return code: 0 (ok)"}},
		// SECLEVEL=0 lets OpenSSL 3 offer TLS 1.1 at all.
		{"TLS 1.1", []string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}, []string{"alert protocol version"}},
		{"CBC suites", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"}, []string{"alert handshake failure"}},
		{"RSA key exchange", []string{"-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA"}, []string{"alert handshake failure"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := runErr(dir, []byte{}, openssl, append(base, tt.args...)...)
			all := out + errOut
			refused := len(tt.want) == 1
			if refused != (err != nil) {
				t.Errorf("openssl s_client %s: error %v, want refused %v\n%s", strings.Join(tt.args, " "), err, refused, all)
			}
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("openssl s_client %s: output lacks %q:\n%s", strings.Join(tt.args, " "), w, all)
				}
			}
		})
	}
}
