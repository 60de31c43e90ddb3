package certcmd

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// serveTLS serves cert on 127.0.0.1 for the test's life and returns the
// address; each connection only handshakes.
func serveTLS(t *testing.T, cert tls.Certificate, v uint16) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: v, MaxVersion: v})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func mustLayout(t *testing.T) (pki.Layout, *pki.Pair) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	l := pki.DefaultLayout(dir)
	pair, err := pki.LoadPair(l.ServerCert, l.ServerKey, pki.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l, pair
}

// A server that presents a real certificate but cannot sign with its key
// (an impostor replaying it) gets no pin from fingerprint: exit 1, not the
// pin with exit 0 (issue 12). A real server's pin is labelled not
// verified, in text and JSON.
func TestFingerprintRefusesUnprovenKey(t *testing.T) {
	l, pair := mustLayout(t)
	impostorKey, err := pki.ReadKeyFile(l.NextKey, pki.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fake := tls.Certificate{Certificate: [][]byte{pair.Leaf().Raw}, PrivateKey: impostorKey.Signer}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			addr := serveTLS(t, fake, v)
			stdout, stderr, code := run(t, Env{}, "fingerprint", addr)
			if code != 1 || stdout != "" || !strings.Contains(stderr, "has not proved it holds that key") {
				t.Errorf("impostor: exit %d, stdout %q, stderr %s; want exit 1 and no pin", code, stdout, stderr)
			}
			addr = serveTLS(t, *pair.TLSCertificate(), v)
			stdout, stderr, code = run(t, Env{}, "fingerprint", addr)
			if code != 0 || strings.TrimSpace(stdout) != pinning.PinOf(pair.Leaf()).String() || !strings.Contains(stderr, "NOT VERIFIED") {
				t.Errorf("real server: exit %d, %q, %s", code, stdout, stderr)
			}
			stdout, _, _ = run(t, Env{}, "fingerprint", "--json", addr)
			var got map[string]any
			if err := json.Unmarshal([]byte(stdout), &got); err != nil || got["verified"] != false {
				t.Errorf("--json: got %v (%v), want \"verified\": false", got, err)
			}
		})
	}
}

// The formats are named for what they digest: pin-hex is the key's digest
// in hex (which --pin takes), cert-sha256 the certificate's fingerprint as
// openssl prints it; the old "hex" still works and says what it is
// (issue 12).
func TestFingerprintFormats(t *testing.T) {
	l, pair := mustLayout(t)
	pin := pinning.PinOf(pair.Leaf())
	sum := sha256.Sum256(pair.Leaf().Raw)
	tests := []struct {
		format, want, note string
	}{
		{"pin", pin.String(), ""},
		{"pin-hex", hex.EncodeToString(pin.Bytes()), ""},
		{"base64", pin.Base64(), ""},
		{"cert-sha256", strings.ToUpper(colonHex(sum[:])), ""},
		{"hex", strings.ToUpper(colonHex(sum[:])), "not a pin; call it cert-sha256"},
	}
	for _, tt := range tests {
		stdout, stderr, code := run(t, Env{}, "fingerprint", "--format", tt.format, l.ServerCert)
		if code != 0 || !strings.EqualFold(strings.TrimSpace(stdout), tt.want) || !strings.Contains(stderr, tt.note) {
			t.Errorf("--format %s: got %q, %q (exit %d), want %s", tt.format, stdout, stderr, code, tt.want)
		}
	}
	// pin-hex is accepted back as a pin.
	stdout, _, _ := run(t, Env{}, "fingerprint", "--format", "pin-hex", l.ServerCert)
	if p, err := pinning.ParsePin(strings.TrimSpace(stdout)); err != nil || !p.Equal(pin) {
		t.Errorf("pin-hex %q does not parse back to the pin: %v", stdout, err)
	}
}

// The certificate fingerprint given to verify as a pin is named as such,
// with the pin to use, not reported as a key that matches no pin.
func TestVerifyCertificateFingerprintAsPin(t *testing.T) {
	l, pair := mustLayout(t)
	fp := pki.Fingerprint(pair.Leaf())
	stdout, _, code := run(t, Env{}, "verify", l.ServerCert, "--pin", fp)
	want := "this certificate's fingerprint, not a key pin; use " + pinning.PinOf(pair.Leaf()).String()
	if code != ExitPinMismatch || !strings.Contains(stdout, want) {
		t.Errorf("exit %d, want %d saying %q:\n%s", code, ExitPinMismatch, want, stdout)
	}
}

// rotate with nothing to rotate says so plainly, with the commands, not
// "locking certs/.sc-cert.lock: no such file" (issue 12); --cert alone
// takes its sibling key.
func TestRotateMissingFilesAndSiblingKey(t *testing.T) {
	dir := t.TempDir()
	chdir(t, dir)
	_, stderr, code := run(t, Env{}, "rotate")
	for _, want := range []string{"reading certificate certs/server.crt: file does not exist", "hint: run sc-cert init", "--cert certs/server.crt --key certs/server.key"} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("exit %d, stderr lacks %q:\n%s", code, want, stderr)
		}
	}
	if strings.Contains(stderr, "lock") {
		t.Errorf("the error is about the lock:\n%s", stderr)
	}
	if _, _, code := run(t, Env{}, "create", "--cert", "game.crt", "--key", "game.key"); code != 0 {
		t.Fatal("create failed")
	}
	if stdout, stderr, code := run(t, Env{}, "rotate", "--cert", "game.crt"); code != 0 || !strings.Contains(stdout, "Key kept") {
		t.Errorf("rotate --cert game.crt: exit %d\n%s%s", code, stdout, stderr)
	}
}

// ticket-keys --json reports the file without its keys.
func TestTicketKeysJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tickets")
	stdout, stderr, code := run(t, Env{}, "ticket-keys", "--json", path)
	var got struct {
		File string `json:"file"`
		Keys int    `json:"keys"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil || got.File != path || got.Keys != 1 {
		t.Errorf("exit %d, %q, %s", code, stdout, stderr)
	}
	data, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(data), "\n") {
		if len(line) == 64 && strings.Contains(stdout, line) {
			t.Error("--json printed a key")
		}
	}
}

func chdir(t *testing.T, dir string) {
	t.Helper()
	old, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(old) })
}
