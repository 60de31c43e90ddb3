package certcmd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/pki"
)

// export-next holds the certificate directory's change lock while it moves
// the next key: with a rotation holding it, the move waits and then gives
// up, and every file stays where it was.
func TestExportNextWaitsForTheRotationLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if _, errOut, code := run(t, Env{}, "init", "--dir", dir); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errOut)
	}
	unlock, err := pki.LockDir(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	next := filepath.Join(dir, pki.NextKeyFile)
	before, err := os.ReadFile(next)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "offline.key")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = exportNext(ctx, next, to, false, nil)
	if err == nil || !strings.Contains(err.Error(), "another rotation running") {
		t.Fatalf("got %v, want the lock's wait to run out", err)
	}
	if after, err := os.ReadFile(next); err != nil || string(after) != string(before) {
		t.Errorf("the next key changed or went: %v", err)
	}
	for _, p := range []string{to, filepath.Join(dir, "server.next.pub")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists: %v", p, err)
		}
	}
	unlock()
	if _, err := exportNext(t.Context(), next, to, false, nil); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
	if _, err := os.Stat(next); !os.IsNotExist(err) {
		t.Errorf("the next key is still on the server: %v", err)
	}
}
