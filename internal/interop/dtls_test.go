package interop

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
)

// buildMbed compiles testdata/NAME.c against the system's Mbed TLS 2.x,
// as buildMbedClient does: a missing header or library skips the test
// with what to install (fails under CI=true).
func buildMbed(t *testing.T, name string) string {
	t.Helper()
	gcc := needTool(t, "gcc")
	src, err := filepath.Abs(filepath.Join("testdata", name+".c"))
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), name)
	_, errOut, err := runErr(".", nil, gcc, "-Wall", "-Werror", "-o", exe, src, "-lmbedtls", "-lmbedx509", "-lmbedcrypto")
	if err != nil {
		if strings.Contains(errOut, "mbedtls/") && strings.Contains(errOut, "No such file") || strings.Contains(errOut, "cannot find -lmbed") {
			skipOrFail(t, "the Mbed TLS 2.x development files are not installed (apt-get install libmbedtls-dev)")
		}
		t.Fatalf("compiling %s: %v\n%s", src, err, errOut)
	}
	return exe
}

var mbedDTLSLine = regexp.MustCompile(`(?m)^(version|suite|serial|pin)=(.*)$|^ok (\w+) `)

// The game's stack, an Mbed TLS 2.28 client over DTLS (datagram
// transport, VERIFY_REQUIRED against certs/ca.crt, the pin checked in a
// verify callback), talks to the real sc-server --dtls: ECHO, REVERSE and
// TIME of NUL-terminated strings, also after sc-cert rotate --promote-next
// (a new key, picked up from the files without a restart). A wrong pin
// fails its handshake. (Debian's Mbed TLS 2.28 is built without DTLS
// connection IDs: it gets none, and the session works without.)
func TestMbedTLSDTLSClient(t *testing.T) {
	mbed := buildMbed(t, "mbeddtlsclient")
	scCert := bin(t, "sc-cert")
	dir := t.TempDir()
	srv := startSCServer(t, dir, "--dtls")
	host, port := splitPort(t, srv.Addr)
	check := func(t *testing.T, what, pin string) {
		t.Helper()
		out, errOut, err := runErr(dir, nil, mbed, host, port, "certs/ca.crt", "localhost", pin)
		if err != nil {
			t.Fatalf("%s: mbeddtlsclient: %v\n%s%s", what, err, out, errOut)
		}
		got := map[string]string{}
		var ok []string
		for _, m := range mbedDTLSLine.FindAllStringSubmatch(out, -1) {
			if m[1] == "" {
				ok = append(ok, m[3])
			} else {
				got[m[1]] = m[2]
			}
		}
		if got["version"] != "DTLSv1.2" {
			t.Errorf("%s: version %q, want DTLSv1.2", what, got["version"])
		}
		if s := got["suite"]; !strings.Contains(s, "ECDHE") || !(strings.Contains(s, "GCM") || strings.Contains(s, "CHACHA20")) {
			t.Errorf("%s: suite %q, want ECDHE with an AEAD cipher", what, s)
		}
		if want := servedSerial(t, dir); !strings.EqualFold(got["serial"], want) {
			t.Errorf("%s: Mbed TLS saw serial %s, want %s", what, got["serial"], want)
		}
		if got["pin"] != pin {
			t.Errorf("%s: Mbed TLS computed the pin %s, want %s", what, got["pin"], pin)
		}
		if strings.Join(ok, " ") != "ECHO REVERSE TIME" {
			t.Errorf("%s: checked %v, want ECHO REVERSE TIME\n%s", what, ok, out)
		}
	}
	check(t, "first run", srv.Pin)

	n := reloads(srv)
	run(t, dir, scCert, "rotate", "--promote-next")
	waitReloads(t, srv, n)
	newPin := strings.TrimSpace(run(t, dir, scCert, "fingerprint", "certs/server.crt"))
	if newPin == srv.Pin {
		t.Fatal("--promote-next kept the pin")
	}
	check(t, "after sc-cert rotate --promote-next", newPin)

	out, errOut, err := runErr(dir, nil, mbed, host, port, "certs/ca.crt", "localhost", srv.Pin)
	if err == nil || !strings.Contains(errOut, "not the pinned") {
		t.Errorf("mbeddtlsclient with the old pin: %v, want refused\n%s%s", err, out, errOut)
	}
}

// openssl s_client -dtls1_2 completes a handshake with sc-server --dtls,
// verifies the chain against certs/ca.crt and shows the certificate.
func TestOpenSSLDTLSClient(t *testing.T) {
	openssl := needTool(t, "openssl")
	dir := t.TempDir()
	srv := startSCServer(t, dir, "--dtls")
	out, errOut, err := runErr(dir, []byte{}, openssl, "s_client", "-dtls1_2", "-connect", srv.Addr,
		"-CAfile", "certs/ca.crt", "-verify_return_error", "-showcerts")
	if err != nil {
		t.Fatalf("openssl s_client -dtls1_2: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"Protocol  : DTLSv1.2", "Verify return code: 0 (ok)", "BEGIN CERTIFICATE", "Extended master secret: yes"} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl s_client output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`Cipher is ECDHE-(ECDSA|RSA)-(AES\d+-GCM|CHACHA20-POLY1305)`).MatchString(out) {
		t.Errorf("not an ECDHE AEAD suite:\n%s", out)
	}
	// And a cipher suite the server does not offer is refused.
	_, _, err = runErr(dir, []byte{}, openssl, "s_client", "-dtls1_2", "-connect", srv.Addr, "-cipher", "ECDHE-ECDSA-AES128-SHA", "-CAfile", "certs/ca.crt")
	if err == nil {
		t.Error("openssl s_client with a CBC suite only: the handshake succeeded, want refused")
	}
}

// Our sc-client --udp against an Mbed TLS DTLS server with cookies (the
// game's own server stack): pin mode, then trust on first use (the server
// does not know KEYS, so the handshake's key is recorded alone) and a
// second connection that finds it known.
func TestSCClientAgainstMbedTLSDTLSServer(t *testing.T) {
	mbed := buildMbed(t, "mbeddtlsserver")
	dir := t.TempDir()
	run(t, dir, bin(t, "sc-cert"), "init")
	pin := strings.TrimSpace(run(t, dir, bin(t, "sc-cert"), "fingerprint", "certs/server.crt"))
	cmd := exec.Command(mbed, "certs/server.crt", "certs/server.key", "4")
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := childproc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	var port string
	select {
	case l := <-lines:
		port = strings.TrimPrefix(l, "port=")
	case <-time.After(10 * time.Second):
		t.Fatal("mbeddtlsserver did not start")
	}
	addr := "127.0.0.1:" + port
	kh := filepath.Join(dir, "known_hosts")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"echo", "hello", "--pin", pin}, "hello\n"},
		{[]string{"reverse", "abc", "--pin", pin, "--nul"}, "cba\n"},
		{[]string{"echo", "first use", "--known-hosts", kh}, "first use\n"},
		{[]string{"time", "--known-hosts", kh}, ""},
	} {
		out, errOut := mustSCClient(t, dir, append(tt.args, "--udp", "--server", addr)...)
		if tt.want != "" && out != tt.want {
			t.Errorf("sc-client %s: %q, want %q\n%s", strings.Join(tt.args, " "), out, tt.want, errOut)
		}
	}
	if !strings.Contains(readFileString(t, kh), addr+" current="+pin) {
		t.Errorf("known hosts lacks %s with %s:\n%s", addr, pin, readFileString(t, kh))
	}
	var cookies, sessions int
	for l := range lines {
		switch {
		case l == "cookie":
			cookies++
		case l == "session":
			sessions++
		}
	}
	if err := <-exited; err != nil {
		t.Errorf("mbeddtlsserver: %v", err)
	}
	exited <- nil
	if sessions != 4 || cookies < 4 {
		t.Errorf("mbeddtlsserver saw %d sessions and %d cookie exchanges, want 4 and at least 4", sessions, cookies)
	}
}

func readFileString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sc-server --dtls reports its DTLS sessions in the same metrics as TCP,
// with transport="dtls", and the TCP series keep their labels.
func TestDTLSMetrics(t *testing.T) {
	dir := t.TempDir()
	srv := startSCServer(t, dir, "--dtls", "--metrics-listen", "127.0.0.1:0")
	mustSCClient(t, dir, "echo", "udp", "--udp", "--server", srv.Addr, "--pin", srv.Pin)
	mustSCClient(t, dir, "echo", "tcp", "--server", srv.Addr, "--pin", srv.Pin)
	var ms metricSet
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms = scrapeMetrics(t, srv.MetricsAddr)
		if ms["spacecaptain_connections_closed_total{reason=eof,transport=dtls}"] == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tt := range []struct {
		series string
		want   float64
	}{
		{"spacecaptain_connections_accepted_total{transport=dtls}", 1},
		{"spacecaptain_connections_accepted_total", 1},
		{"spacecaptain_connections_closed_total{reason=eof,transport=dtls}", 1},
		{"spacecaptain_tls_handshakes_total{result=ok,resumed=false,tls_version=1.2,transport=dtls}", 1},
		{"spacecaptain_requests_total{transport=dtls,type=echo}", 1},
		{"spacecaptain_requests_total{type=echo}", 1},
		{"spacecaptain_connections_max{transport=dtls}", 10000},
		{"spacecaptain_connections_max", 10000},
	} {
		if got := ms[tt.series]; got != tt.want {
			t.Errorf("%s = %v, want %v", tt.series, got, tt.want)
		}
	}
}
