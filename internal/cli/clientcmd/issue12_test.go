package clientcmd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spacecaptain/spacecaptain/pki"
)

// Pins fetched over the network say whether they were verified: on first
// use they were not, after that they were (issue 12: keys --json had no
// such field).
func TestKeysSaysWhetherVerified(t *testing.T) {
	ts := startServer(t, false)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	type keysOut struct {
		Verified   *bool  `json:"verified"`
		VerifiedBy string `json:"verified_by"`
	}
	for i, want := range []bool{false, true} {
		r := mustRun(t, "", "keys", "--server", ts.addr, "--known-hosts", kh, "--tofu", "auto", "--json")
		var got keysOut
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Verified == nil || *got.Verified != want || got.VerifiedBy == "" {
			t.Errorf("connection %d: got %s, want \"verified\": %v", i+1, r.stdout, want)
		}
	}
	r := mustRun(t, "", "keys", "--server", ts.addr, "--insecure")
	if !strings.Contains(r.stdout, "NOT VERIFIED: --insecure") {
		t.Errorf("--insecure: %q", r.stdout)
	}
}

// A certificate fingerprint given as --pin gets the message that it is
// one, with the pin to use, not the interception banner (issue 12).
func TestCertificateFingerprintAsPin(t *testing.T) {
	ts := startServer(t, false)
	leaf, err := pki.ReadCertificateFile(ts.layout.ServerCert)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.Raw)
	r := run(t, "", false, "echo", "hi", "--server", ts.addr, "--pin", hex.EncodeToString(sum[:]))
	want := "is the certificate's fingerprint, not a key pin; use " + ts.pin(t).String()
	if r.code != ExitKeyMismatch || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "WARNING") {
		t.Errorf("exit %d, stderr:\n%s\nwant %q and no banner", r.code, r.stderr, want)
	}
}

// --plaintext against a TLS server says so, instead of blaming
// --max-message (issue 12).
func TestPlaintextAgainstTLSServer(t *testing.T) {
	ts := startServer(t, false)
	r := run(t, "", false, "echo", "hi", "--server", ts.addr, "--plaintext")
	if r.code == 0 || !strings.Contains(r.stderr, "is the server speaking TLS?") || strings.Contains(r.stderr, "max-message") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
