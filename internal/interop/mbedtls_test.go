package interop

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// buildMbedClient compiles testdata/mbedclient.c against the system's
// Mbed TLS 2.x. A missing header or library skips the test with what to
// install (fails under CI=true); any other compiler error fails it.
func buildMbedClient(t *testing.T) string {
	t.Helper()
	gcc := needTool(t, "gcc")
	src, err := filepath.Abs(filepath.Join("testdata", "mbedclient.c"))
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "mbedclient")
	_, errOut, err := runErr(".", nil, gcc, "-Wall", "-Werror", "-o", exe, src, "-lmbedtls", "-lmbedx509", "-lmbedcrypto")
	if err != nil {
		if strings.Contains(errOut, "mbedtls/") && strings.Contains(errOut, "No such file") || strings.Contains(errOut, "cannot find -lmbed") {
			skipOrFail(t, "the Mbed TLS 2.x development files are not installed (apt-get install libmbedtls-dev)")
		}
		t.Fatalf("compiling %s: %v\n%s", src, err, errOut)
	}
	return exe
}

// mbedResult is what one run of mbedclient printed.
type mbedResult struct {
	version, suite, serial string
	ok                     []string // the checked message types
}

var mbedLine = regexp.MustCompile(`(?m)^(version|suite|serial)=(.*)$|^ok (\w+) `)

func parseMbed(out string) mbedResult {
	var r mbedResult
	for _, m := range mbedLine.FindAllStringSubmatch(out, -1) {
		switch m[1] {
		case "version":
			r.version = m[2]
		case "suite":
			r.suite = m[2]
		case "serial":
			r.serial = m[2]
		case "":
			r.ok = append(r.ok, m[3])
		}
	}
	return r
}

// The original client's stack, Mbed TLS 2.28 (TLS 1.2 only), verifies the
// real sc-server against certs/ca.crt — by the name localhost, since Mbed
// TLS 2.28 cannot match IP SANs — and gets correct ECHO, REVERSE and TIME
// replies to NUL-terminated strings; also after sc-cert rotate, keep-key
// and --promote-next, which the running server picks up from its files
// without a restart. A client given another CA is refused.
func TestMbedTLSClient(t *testing.T) {
	mbed := buildMbedClient(t)
	scCert := bin(t, "sc-cert")
	dir := t.TempDir()
	srv := startSCServer(t, dir)
	_, port := splitPort(t, srv.Addr)

	check := func(t *testing.T, what string) {
		t.Helper()
		out, errOut, err := runErr(dir, nil, mbed, "127.0.0.1", port, "certs/ca.crt", "localhost")
		if err != nil {
			t.Fatalf("%s: mbedclient: %v\n%s%s", what, err, out, errOut)
		}
		r := parseMbed(out)
		if r.version != "TLSv1.2" {
			t.Errorf("%s: version %q, want TLSv1.2", what, r.version)
		}
		if !strings.Contains(r.suite, "ECDHE") || !(strings.Contains(r.suite, "GCM") || strings.Contains(r.suite, "CHACHA20")) {
			t.Errorf("%s: suite %q, want ECDHE with an AEAD cipher", what, r.suite)
		}
		if want := servedSerial(t, dir); !strings.EqualFold(r.serial, want) {
			t.Errorf("%s: Mbed TLS saw serial %s, want the one in certs/server.crt, %s", what, r.serial, want)
		}
		if strings.Join(r.ok, " ") != "ECHO REVERSE TIME" {
			t.Errorf("%s: checked %v, want ECHO REVERSE TIME\n%s", what, r.ok, out)
		}
	}
	check(t, "first run")
	for _, args := range [][]string{{"rotate"}, {"rotate", "--promote-next"}} {
		n := reloads(srv)
		run(t, dir, scCert, args...)
		waitReloads(t, srv, n)
		check(t, "after sc-cert "+strings.Join(args, " "))
	}

	// VERIFY_REQUIRED is in force: another CA, or a name the certificate
	// does not carry, is refused.
	other := t.TempDir()
	run(t, other, scCert, "init")
	for _, tt := range []struct{ ca, name, want string }{
		{filepath.Join(other, "certs", "ca.crt"), "localhost", "not correctly signed"},
		{"certs/ca.crt", "game.example", "does not match"},
	} {
		out, errOut, err := runErr(dir, nil, mbed, "127.0.0.1", port, tt.ca, tt.name)
		if err == nil || !strings.Contains(errOut, tt.want) {
			t.Errorf("mbedclient with CA %s, name %s: %v, want refused (%q)\n%s%s", tt.ca, tt.name, err, tt.want, out, errOut)
		}
	}
}
