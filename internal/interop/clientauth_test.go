package interop

import (
	"path/filepath"
	"strings"
	"testing"
)

// keysFrame is a KEYS request: type 3, an empty body.
var keysFrame = []byte{3, 0, 0, 0, 0, 0, 0, 0}

// Players' identities against the real sc-server (issue 14), with the
// stacks players use: openssl s_client -cert/-key admitted by the client
// CA and by pin (the KEYS reply names them), the original clients' Mbed
// TLS 2.28 with a client certificate, curl --cert/--key, and sc-client's
// own identity; each refused without an admitted certificate.
func TestClientAuthInterop(t *testing.T) {
	openssl := needTool(t, "openssl")
	scCert := bin(t, "sc-cert")
	dir := t.TempDir()
	run(t, dir, scCert, "init")
	run(t, dir, scCert, "init", "--client-ca")
	run(t, dir, scCert, "create", "--client", "--name", "alice")
	// bob: a self-signed key and certificate made by OpenSSL, admitted by pin.
	run(t, dir, openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "bob.key", "-out", "bob.crt", "-subj", "/CN=bob", "-days", "2")
	run(t, dir, scCert, "clients", "allow", "bob.crt", "--name", "bob", "--file", "certs/clients.allow")
	// carol: sc-client's identity, admitted by pin.
	carol := filepath.Join(dir, "carol.key")
	out := run(t, dir, bin(t, "sc-client"), "identity", "new", "--file", carol)
	carolPin := strings.TrimPrefix(strings.Split(strings.SplitAfter(out, "Pin: ")[1], "\n")[0], "")
	run(t, dir, scCert, "clients", "allow", carolPin, "--name", "carol", "--file", "certs/clients.allow")

	// openssl s_client -quiet reads until the server closes: an idle
	// timeout of a second closes each connection once its reply is read.
	srv := startSCServer(t, dir, "--log-level", "debug", "--idle-timeout", "1s", "--client-auth", "require",
		"--client-ca", "certs/client-ca.crt", "--client-allow", "certs/clients.allow")
	alicePin := strings.TrimSpace(run(t, dir, scCert, "fingerprint", "alice.crt"))

	t.Run("openssl", func(t *testing.T) {
		for _, tt := range []struct {
			name, cert, key, want string
		}{
			{"by CA", "alice.crt", "alice.key", "alice"},
			{"by pin", "bob.crt", "bob.key", "bob"},
		} {
			for _, v := range []string{"-tls1_2", "-tls1_3"} {
				out, errOut, err := runErr(dir, keysFrame, openssl, "s_client", "-connect", srv.Addr, "-servername", "localhost",
					"-CAfile", "certs/ca.crt", "-verify_return_error", "-quiet", v, "-cert", tt.cert, "-key", tt.key)
				if err != nil || !strings.Contains(out, " "+tt.want+"\n") || !strings.Contains(out, "client sha256//") {
					t.Errorf("%s %s: %v, want the KEYS reply's client line naming %s:\n%q\n%s", tt.name, v, err, tt.want, out, errOut)
				}
			}
		}
		out, errOut, err := runErr(dir, keysFrame, openssl, "s_client", "-connect", srv.Addr, "-servername", "localhost",
			"-CAfile", "certs/ca.crt", "-quiet", "-tls1_3")
		if strings.Contains(out, "current sha256//") {
			t.Errorf("without a certificate: served (%v)\n%s%s", err, out, errOut)
		}
	})

	t.Run("mbedtls", func(t *testing.T) {
		mbed := buildMbedClient(t)
		_, port := splitPort(t, srv.Addr)
		out, errOut, err := runErr(dir, nil, mbed, "127.0.0.1", port, "certs/ca.crt", "localhost", "alice.crt", "alice.key")
		if err != nil {
			t.Fatalf("mbedclient with alice's certificate: %v\n%s%s", err, out, errOut)
		}
		if r := parseMbed(out); strings.Join(r.ok, " ") != "ECHO REVERSE TIME" {
			t.Errorf("checked %v, want ECHO REVERSE TIME\n%s", r.ok, out)
		}
		if _, _, err := runErr(dir, nil, mbed, "127.0.0.1", port, "certs/ca.crt", "localhost"); err == nil {
			t.Error("mbedclient without a certificate was served")
		}
	})

	t.Run("curl", func(t *testing.T) {
		curl := needTool(t, "curl")
		// curl speaks HTTP, which the server answers with an ERROR frame:
		// what matters is that the TLS handshake and the client
		// certificate pass (no TLS failure code), and fail without one.
		code := func(args ...string) int {
			_, _, err := runErr(dir, nil, curl, append([]string{"-sS", "--max-time", "10", "--cacert", "certs/ca.crt",
				"--resolve", "localhost:" + portOf(t, srv.Addr) + ":127.0.0.1", "https://localhost:" + portOf(t, srv.Addr) + "/"}, args...)...)
			return exitCode(t, err)
		}
		if c := code("--cert", "alice.crt", "--key", "alice.key"); curlTLSFailures[c] != "" {
			t.Errorf("curl --cert alice.crt: exit %d (%s), want past TLS", c, curlTLSFailures[c])
		}
		if c := code(); c == 0 {
			t.Error("curl without a certificate: exit 0")
		}
	})

	t.Run("sc-client", func(t *testing.T) {
		out, _ := mustSCClient(t, dir, "keys", "--server", srv.Addr, "--ca", "certs/ca.crt", "--server-name", "localhost", "--identity", carol)
		if !strings.Contains(out, "client "+carolPin+" carol") {
			t.Errorf("sc-client keys --identity: got\n%s\nwant the client line %s carol", out, carolPin)
		}
		if _, errOut, code := scClient(t, dir, "", "echo", "hi", "--server", srv.Addr, "--ca", "certs/ca.crt", "--server-name", "localhost", "--identity", "none"); code == 0 {
			t.Errorf("sc-client --identity none was served:\n%s", errOut)
		}
	})

	for _, want := range []string{`"client_pin":"` + alicePin + `"`, `"client_refused":"no_client_cert"`} {
		if !strings.Contains(srv.Log(), want) {
			t.Errorf("the server's log lacks %s", want)
		}
	}
}

func portOf(t *testing.T, addr string) string {
	_, p := splitPort(t, addr)
	return p
}
