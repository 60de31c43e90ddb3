//go:build unix

package interop

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sc-server --check, as a deploy script or systemd's ExecStartPre runs it:
// exit 0 and a report on a usable layout; exit 1 and the reason when the
// layout is missing (nothing is made) or the key is readable by others;
// never a listener.
func TestCheckWithRealServer(t *testing.T) {
	dir := t.TempDir()
	scServer := bin(t, "sc-server")
	out, errOut, err := runErr(dir, nil, scServer, "--check")
	if code := exitCode(t, err); code != 1 || !strings.Contains(errOut, "do not exist") || out != "" {
		t.Errorf("--check without a layout: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "certs")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("--check made certs/: %v", err)
	}

	run(t, dir, bin(t, "sc-cert"), "init")
	out, errOut, err = runErr(dir, nil, scServer, "--check", "--listen", "127.0.0.1:4242", "--metrics-listen", "127.0.0.1:9242")
	if code := exitCode(t, err); code != 0 || !strings.HasPrefix(out, "sc-server: configuration OK\n") {
		t.Errorf("--check on a fresh layout: exit %d\n%s%s", code, out, errOut)
	}

	if err := os.Chmod(filepath.Join(dir, "certs", "server.key"), 0o640); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = runErr(dir, nil, scServer, "--check")
	if code := exitCode(t, err); code != 1 || !strings.Contains(errOut, "chmod 600") || out != "" {
		t.Errorf("--check with a key readable by its group: exit %d\n%s%s", code, out, errOut)
	}
}
