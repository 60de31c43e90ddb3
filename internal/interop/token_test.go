package interop

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/softhsm"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Tests of keys kept in a PKCS#11 token (issue 17), against SoftHSM2 and
// the real binaries. Each test makes its own token in a temporary
// directory (softhsm.New) and points every program it runs at it through
// SOFTHSM2_CONF, so tests share no state. The binaries TestMain builds
// have cgo, as a native build on a machine with a C compiler does.

// tokenLayout makes a token and, in a fresh directory, the default layout
// with its keys in it (sc-cert init --kms), the PIN in a file the URI
// names. It returns the token and the directory.
func tokenLayout(t *testing.T) (*softhsm.Token, string) {
	t.Helper()
	tok := softhsm.New(t, "sc")
	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	dir := t.TempDir()
	out := run(t, dir, bin(t, "sc-cert"), "init", "--kms", tok.URI())
	for _, want := range []string{"certs/server.uri", "object sc-server (id 02)", "object sc-ca (id 01)", "object sc-server-next (id 03)"} {
		if !strings.Contains(out, want) {
			t.Errorf("sc-cert init --kms does not say %q:\n%s", want, out)
		}
	}
	return tok, dir
}

// The life of a server whose keys are in a token: init --kms, serve from
// the token, a client pins the key; sc-cert rotate keeps the key, the
// server reloads and the pin holds; a certificate for another key is
// refused and the old pair keeps serving; --promote-next moves to the next
// key, in the token, and a client pinned to it connects; the private keys
// are sensitive and never extractable; sc-cert verify proves the key with
// a signature; and when the key vanishes from the token the handshakes
// fail as key_unavailable, logged at a limited rate, while the server
// keeps running and stops cleanly.
func TestTokenServerLifecycle(t *testing.T) {
	tok, dir := tokenLayout(t)
	scCert := bin(t, "sc-cert")
	for _, name := range []string{pki.CAKeyFile, pki.ServerKeyFile, pki.NextKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, "certs", name)); err == nil {
			t.Errorf("certs/%s exists: the keys should be in the token only", name)
		}
	}
	for _, k := range tok.PrivateKeys(t) {
		if !k.Sensitive() || k.Extractable() {
			t.Errorf("token key %q (id %s): Access %q, want sensitive and not extractable", k.Label, k.ID, k.Access)
		}
	}

	check := run(t, dir, bin(t, "sc-server"), "--check")
	if !strings.Contains(check, "certs/server.uri") || !strings.Contains(check, "a signature made by the token verifies") || !strings.Contains(check, "signed by certs/ca.uri") {
		t.Errorf("sc-server --check does not report the token key and CA key:\n%s", check)
	}
	srv := startSCServer(t, dir, "--metrics-listen", "127.0.0.1:0")
	pin, next := srv.Pin, srv.NextPin
	echo := func(what string, pins ...string) {
		t.Helper()
		args := []string{"echo", "hello", "--server", srv.Addr}
		for _, p := range pins {
			args = append(args, "--pin", p)
		}
		out, errOut, code := scClient(t, dir, "", args...)
		if code != 0 || strings.TrimSpace(out) != "hello" {
			t.Fatalf("%s: sc-client with pins %v: exit %d, %q\n%s\nserver log:\n%s", what, pins, code, out, errOut, srv.Log())
		}
	}
	echo("first run", pin)

	// Keep-key rotation, signed by the CA key in the token.
	n := reloads(srv)
	out := run(t, dir, scCert, "rotate")
	if !strings.Contains(out, "Key kept") {
		t.Errorf("sc-cert rotate: %s", out)
	}
	waitReloads(t, srv, n)
	echo("after rotate (key kept)", pin)

	verify := run(t, dir, scCert, "verify", "certs/server.crt", "--key", "certs/server.uri")
	if !strings.Contains(verify, "the token signed a challenge") {
		t.Errorf("sc-cert verify --key certs/server.uri:\n%s", verify)
	}

	// A certificate for a key that is not the token's is refused; the old
	// pair keeps serving.
	other := t.TempDir()
	run(t, other, scCert, "create", "--cert", "other.crt", "--key", "other.key")
	served := servedSerial(t, dir)
	before, err := os.ReadFile(filepath.Join(dir, "certs", "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := os.ReadFile(filepath.Join(other, "other.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "certs", "server.crt"), wrong, 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog(t, srv, 0, 30*time.Second, "certificate not reloaded, keeping the one being served")
	echo("with a certificate for another key on disk", pin)
	if err := os.WriteFile(filepath.Join(dir, "certs", "server.crt"), before, 0o644); err != nil {
		t.Fatal(err)
	}
	if servedSerial(t, dir) != served {
		t.Fatal("restoring the certificate failed")
	}

	// Promote the next key, which is in the token.
	n = reloads(srv)
	out = run(t, dir, scCert, "rotate", "--promote-next")
	if !strings.Contains(out, "Promoted the next key") {
		t.Errorf("sc-cert rotate --promote-next: %s", out)
	}
	waitReloads(t, srv, n)
	echo("after promote-next, pinned to the old next key", next)
	uri, err := os.ReadFile(filepath.Join(dir, "certs", "server.next.uri"))
	if err != nil || !strings.Contains(string(uri), "object=sc-server-next-2") {
		t.Errorf("server.next.uri after promote-next: %q (%v), want the fresh key sc-server-next-2", uri, err)
	}
	labels := map[string]bool{}
	for _, k := range tok.PrivateKeys(t) {
		labels[k.Label] = true
		if !k.Sensitive() || k.Extractable() {
			t.Errorf("token key %q: Access %q, want sensitive and not extractable", k.Label, k.Access)
		}
	}
	if !labels["sc-server-next-2"] {
		t.Errorf("the token holds %v, want the fresh next key sc-server-next-2", labels)
	}

	// The key goes away behind the server's back.
	tok.Tool(t, "--delete-object", "--type", "privkey", "--label", "sc-server-next")
	failStart := time.Now()
	for range 5 {
		if _, _, code := scClient(t, dir, "", "echo", "hello", "--server", srv.Addr, "--pin", next); code == 0 {
			t.Fatalf("sc-client connected with the server's key deleted from the token:\n%s", srv.Log())
		}
	}
	m := scrapeMetrics(t, srv.MetricsAddr)
	if got := m.sum("spacecaptain_tls_handshakes_total", "result=key_unavailable"); got < 5 {
		t.Errorf("key_unavailable handshakes: %v, want at least 5\n%s", got, m.series("spacecaptain_tls_handshakes_total"))
	}
	// One line per pki.DefaultSignFailureLogInterval at most: one when the
	// failures all came within it, as they do unless the machine crawls.
	elapsed := time.Since(failStart)
	most := 1 + int(elapsed/pki.DefaultSignFailureLogInterval)
	lines := 0
	for _, l := range strings.Split(srv.Log(), "\n") {
		if strings.Contains(l, `"msg":"token key unavailable`) {
			lines++
		}
	}
	if lines < 1 || lines > most {
		t.Errorf("%d log lines about the unavailable key for 5 failures in %v, want 1 to %d (rate-limited):\n%s", lines, elapsed.Round(time.Millisecond), most, srv.Log())
	}
	if status, _ := httpGet(t, "http://"+srv.MetricsAddr+"/healthz"); status != 200 {
		t.Errorf("/healthz: %d, want 200: the server keeps running", status)
	}
}

// Every way a token key fails to open stops sc-server --check, and the
// start, with an error that names what to fix and a hint: a wrong PIN, a
// missing token, a missing module, a key that is not in the token, no PIN
// at all. A PIN given in the URI is warned about and never printed.
func TestTokenServerErrors(t *testing.T) {
	tok, dir := tokenLayout(t)
	wrongPIN := filepath.Join(t.TempDir(), "wrong-pin")
	if err := os.WriteFile(wrongPIN, []byte("000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := func(module, token, object, pin string) string {
		u := "pkcs11:module-path=" + module + ";token=" + token + ";object=" + object
		if pin != "" {
			u += "?pin-source=" + pin
		}
		return u
	}
	const secret = "999111"
	for _, tc := range []struct {
		name  string
		key   string
		env   []string
		words []string
	}{
		{"wrong PIN", key(tok.Module, "sc", "sc-server", wrongPIN), nil, []string{wrongPIN, "CKR_PIN_INCORRECT", "hint: the PIN comes from"}},
		{"wrong PIN in SC_TOKEN_PIN", key(tok.Module, "sc", "sc-server", ""), []string{"SC_TOKEN_PIN=000000"}, []string{"$SC_TOKEN_PIN", "CKR_PIN_INCORRECT"}},
		{"missing token", key(tok.Module, "nope", "sc-server", tok.PINFile), nil, []string{`no token labelled "nope"`, "token=", "--list-token-slots"}},
		{"missing module", key("/usr/lib/nonexistent/libnope.so", "sc", "sc-server", tok.PINFile), nil, []string{"/usr/lib/nonexistent/libnope.so does not exist", "module-path"}},
		{"missing object", key(tok.Module, "sc", "nope", tok.PINFile), nil, []string{`no key labelled "nope"`, "object", "--list-objects"}},
		{"no PIN", key(tok.Module, "sc", "sc-server", ""), nil, []string{"no PIN", "--token-pin-file"}},
		{"PIN in the URI, wrong", key(tok.Module, "sc", "sc-server", "") + ";pin-value=" + secret, nil, []string{"level=WARN msg=\"--key carries the token PIN in pin-value", "CKR_PIN_INCORRECT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, args := range [][]string{{"--check"}, {"--listen", "127.0.0.1:0"}} {
				args = append(args, "--key", tc.key, "--log-format", "text")
				cmd := exec.Command(bin(t, "sc-server"), args...)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), tc.env...)
				outB, err := cmd.CombinedOutput()
				out := string(outB)
				var ee *exec.ExitError
				if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 1 {
					t.Fatalf("sc-server %s: %v, want exit 1\n%s", strings.Join(args, " "), err, out)
				}
				for _, w := range tc.words {
					if !strings.Contains(out, w) {
						t.Errorf("sc-server %s: the output does not say %q:\n%s", args[0], w, out)
					}
				}
				if strings.Contains(out, secret) {
					t.Errorf("sc-server %s printed the PIN:\n%s", args[0], out)
				}
				if strings.Contains(out, "CKR_FUNCTION_FAILED") || strings.Contains(out, "CKR_GENERAL_ERROR") {
					t.Errorf("sc-server %s: an opaque error:\n%s", args[0], out)
				}
			}
		})
	}
}

// openssl s_client (TLS 1.2 and 1.3) and the Mbed TLS 2.28 client (the
// original client's stack) complete handshakes with a server whose key is
// in the token, verifying it against the layout's CA.
func TestTokenServerInterop(t *testing.T) {
	openssl := needTool(t, "openssl")
	mbed := buildMbedClient(t)
	_, dir := tokenLayout(t)
	srv := startSCServer(t, dir)
	_, port := splitPort(t, srv.Addr)
	for _, v := range []string{"-tls1_2", "-tls1_3"} {
		out, errOut, err := runErr(dir, []byte{}, openssl, "s_client", v, "-connect", srv.Addr, "-CAfile", "certs/ca.crt", "-verify_return_error", "-servername", "localhost")
		if err != nil || !strings.Contains(out, "Verify return code: 0 (ok)") {
			t.Errorf("openssl s_client %s: %v\n%s%s", v, err, out, errOut)
		}
	}
	out, errOut, err := runErr(dir, nil, mbed, "127.0.0.1", port, "certs/ca.crt", "localhost")
	if err != nil {
		t.Fatalf("mbedclient: %v\n%s%s", err, out, errOut)
	}
	if r := parseMbed(out); r.version != "TLSv1.2" || strings.Join(r.ok, " ") != "ECHO REVERSE TIME" {
		t.Errorf("mbedclient: %+v\n%s", r, out)
	}
}

// A build without cgo (the cross-builds, a static binary) builds, and a
// key URI there fails with a message that says why (issue 17).
func TestTokenWithoutCgo(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "sc-cert"+exe())
	cmd := exec.Command("go", "build", "-o", exe, module+"cmd/sc-cert")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if os.Getenv("GOTOOLCHAIN") == "" {
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN=auto")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	out, errOut, err := runErr(t.TempDir(), nil, exe, "inspect", "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=sc;object=sc-server;pin-value=1234")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("sc-cert inspect with a key URI, without cgo: %v, want exit 1\n%s%s", err, out, errOut)
	}
	if !strings.Contains(errOut, "this build has no PKCS#11 support (built without cgo)") || strings.Contains(errOut, "1234") {
		t.Errorf("sc-cert inspect with a key URI, without cgo:\n%s", errOut)
	}
}

// sc-cert create --kms makes each key type the token takes inside it and
// writes only the certificate, printing the pin that inspect and
// fingerprint then read from the token by URI; Ed25519, and an object
// that already exists, are refused with the reason and nothing written
// (issue 17).
func TestTokenCertCreate(t *testing.T) {
	tok := softhsm.New(t, "sc")
	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	scCert := bin(t, "sc-cert")
	dir := t.TempDir()
	for i, tc := range []struct{ keyType, want string }{
		{"ecdsa-p256", "ECDSA P-256"},
		{"ecdsa-p384", "ECDSA P-384"},
		{"rsa-2048", "RSA 2048"},
		{"rsa-4096", "RSA 4096"},
	} {
		t.Run(tc.keyType, func(t *testing.T) {
			uri := tok.URI(fmt.Sprintf("id=%%%02x", 0x20+i), "object=key-"+tc.keyType)
			crt := tc.keyType + ".crt"
			out := run(t, dir, scCert, "create", "--cert", crt, "--kms", uri, "--key-type", tc.keyType)
			if !strings.Contains(out, "Made the key in the token ("+tc.want+", sensitive, not extractable)") {
				t.Errorf("sc-cert create --kms: %s", out)
			}
			pin := firstMatch(t, out, `Pin: (sha256//\S+)`)
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if !strings.HasSuffix(e.Name(), ".crt") {
					t.Errorf("sc-cert create --kms wrote %s: only certificates belong on disk", e.Name())
				}
			}
			if got := strings.TrimSpace(run(t, dir, scCert, "fingerprint", crt)); got != pin {
				t.Errorf("fingerprint of %s: %s, want the pin printed, %s", crt, got, pin)
			}
			if got := strings.TrimSpace(run(t, dir, scCert, "fingerprint", uri)); got != pin {
				t.Errorf("fingerprint of the key URI: %s, want %s", got, pin)
			}
			inspect := run(t, dir, scCert, "inspect", uri)
			for _, w := range []string{"PKCS#11 token", tc.want, pin, "it cannot be read out"} {
				if !strings.Contains(inspect, w) {
					t.Errorf("inspect of the key URI does not say %q:\n%s", w, inspect)
				}
			}
			verify := run(t, dir, scCert, "verify", crt, "--key", uri)
			if !strings.Contains(verify, "the token signed a challenge") {
				t.Errorf("verify --key URI:\n%s", verify)
			}
		})
	}
	keys := tok.PrivateKeys(t)
	if len(keys) != 4 {
		t.Fatalf("the token holds %d private keys, want 4: %+v", len(keys), keys)
	}
	for _, k := range keys {
		if !k.Sensitive() || k.Extractable() {
			t.Errorf("token key %q: Access %q, want sensitive and not extractable", k.Label, k.Access)
		}
	}

	for _, tc := range []struct {
		name, uri, keyType string
		words              []string
	}{
		{"Ed25519", tok.URI("id=%30", "object=ed"), "ed25519", []string{"Ed25519 keys cannot be made in a PKCS#11 token", "--key-type ecdsa-p256"}},
		{"object exists", tok.URI("id=%31", "object=key-ecdsa-p256"), "ecdsa-p256", []string{`already holds a key labelled "key-ecdsa-p256"`, "never replaced", "hint:"}},
		{"no id", tok.URI("object=noid"), "ecdsa-p256", []string{"id="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runErr(dir, nil, scCert, "create", "--cert", "refused.crt", "--kms", tc.uri, "--key-type", tc.keyType)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("sc-cert create --kms (%s): %v, want exit 1\n%s%s", tc.name, err, out, errOut)
			}
			for _, w := range tc.words {
				if !strings.Contains(errOut, w) {
					t.Errorf("sc-cert create --kms (%s) does not say %q:\n%s", tc.name, w, errOut)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "refused.crt")); err == nil {
				t.Errorf("sc-cert create --kms (%s) wrote refused.crt", tc.name)
			}
		})
	}
	if n := len(tok.PrivateKeys(t)); n != 4 {
		t.Errorf("the token holds %d private keys after the refusals, want still 4", n)
	}
}

// firstMatch returns the first group of re's first match in s; no match
// is fatal.
func firstMatch(t *testing.T, s, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %s in:\n%s", re, s)
	}
	return m[1]
}
