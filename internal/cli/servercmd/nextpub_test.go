package servercmd

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// takeNextKeyOffline replaces the layout's server.next.key by
// server.next.pub, its public half, as sc-cert export-next does; it
// returns the key's pin and where the private key went.
func takeNextKeyOffline(t *testing.T, l pki.Layout) (pin string, offline string) {
	t.Helper()
	k, err := pki.ReadKeyFile(l.NextKey, pki.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub := nextPubPath(l.NextKey)
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	offline = filepath.Join(t.TempDir(), "server.next.key")
	if err := os.Rename(l.NextKey, offline); err != nil {
		t.Fatal(err)
	}
	return pinning.PinOfSPKI(der).String(), offline
}

// Issue 15: the server holds only the public half of the next key (or
// only its pin) and announces it in KEYS as it does a next key file; a
// private key in the public file is refused at start.
func TestOfflineNextKey(t *testing.T) {
	for _, engine := range server.Engines() {
		t.Run(engine, func(t *testing.T) {
			l := mustInit(t)
			pin, _ := takeNextKeyOffline(t, l)
			extra := pinning.PinOfSPKI([]byte("extra")).String()
			r := startServer(t, Env{}, append(layoutArgs(l), "--engine", engine, "--next-pin", extra)...)
			c := mustDial(t, r.addr, caConfig(t, l, 0))
			_, next, err := c.Keys(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(next) != 2 || next[0] != pin || next[1] != extra {
				t.Fatalf("KEYS next: got %q, want [%s %s]", next, pin, extra)
			}
			if _, err := os.Stat(l.NextKey); err == nil {
				t.Fatal("the private next key is on the server")
			}
		})
	}
	t.Run("private key in the public file", func(t *testing.T) {
		l := mustInit(t)
		copyFile(t, l.NextKey, nextPubPath(l.NextKey))
		code, _, errOut := runCmd(t, Env{}, append(layoutArgs(l), "--check")...)
		if code == 0 || !strings.Contains(errOut, "holds a private key") {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
	})
	t.Run("writable by others", func(t *testing.T) {
		l := mustInit(t)
		takeNextKeyOffline(t, l)
		if err := os.Chmod(nextPubPath(l.NextKey), 0o666); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := runCmd(t, Env{}, append(layoutArgs(l), "--check")...)
		if code == 0 || !strings.Contains(errOut, "public next key") || !strings.Contains(errOut, "chmod") {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
	})
	t.Run("check", func(t *testing.T) {
		l := mustInit(t)
		pin, _ := takeNextKeyOffline(t, l)
		code, out, errOut := runCmd(t, Env{}, append(layoutArgs(l), "--check")...)
		if code != 0 || !strings.Contains(out, "kept offline") || !strings.Contains(out, pin) {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})
}
