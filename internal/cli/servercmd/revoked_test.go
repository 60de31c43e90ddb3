package servercmd

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
)

// pollUntil calls cond every few milliseconds until it returns "" or the
// timeout passes, and then fails with its last answer: for a reload the
// server runs on a file event, which it reports to nobody outside.
func pollUntil(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Issue 15: the revoked-keys file is announced in KEYS and reloaded when it
// changes, with no signal; a bad file keeps the list announced before, and
// the key being served is never announced as revoked.
func TestRevokedKeysHotReload(t *testing.T) {
	for _, engine := range server.Engines() {
		t.Run(engine, func(t *testing.T) {
			l := mustInit(t)
			revoked := filepath.Join(filepath.Dir(l.ServerCert), RevokedKeysFile)
			r := startServer(t, Env{}, append(layoutArgs(l), "--engine", engine)...)
			c := mustDial(t, r.addr, caConfig(t, l, 0))
			keys := func() []string {
				ks, err := c.KeySet(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return ks.Revoked
			}
			if got := keys(); len(got) != 0 {
				t.Fatalf("revoked before any file: %q", got)
			}
			a, b := pinning.PinOfSPKI([]byte("a")).String(), pinning.PinOfSPKI([]byte("b")).String()
			cur := pinning.PinOf(mustReadCert(t, l.ServerCert)).String()
			if err := os.WriteFile(revoked, []byte("# leaked keys\n"+a+"\n"+b+"  # the second\n"+cur+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			pollUntil(t, 30*time.Second, func() string {
				if got := keys(); !slices.Equal(got, []string{a, b}) {
					return "revoked in KEYS: " + strings.Join(got, " ")
				}
				return ""
			})
			// The certificate's reload (the file event in its directory)
			// says the list names the served key.
			pollUntil(t, 30*time.Second, func() string {
				if !strings.Contains(r.stderr.String(), "lists the key being served") {
					return "no error about the served key in the list"
				}
				return ""
			})
			// A broken file: the list announced stays.
			if err := os.WriteFile(revoked, []byte("not a pin\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			pollUntil(t, 30*time.Second, func() string {
				if !strings.Contains(r.stderr.String(), "revoked keys not reloaded") {
					return "no warning about the broken file"
				}
				return ""
			})
			if got := keys(); !slices.Equal(got, []string{a, b}) {
				t.Errorf("after a broken file: %q, want the previous list", got)
			}
			// No file: nothing revoked.
			if err := os.Remove(revoked); err != nil {
				t.Fatal(err)
			}
			pollUntil(t, 30*time.Second, func() string {
				if got := keys(); len(got) != 0 {
					return "revoked in KEYS: " + strings.Join(got, " ")
				}
				return ""
			})
		})
	}
}
