package interop

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
	"github.com/spacecaptain/spacecaptain/pki"
)

// skipOrFail skips the test with why, or fails it under CI=true, where
// every dependency must be installed (scripts/deps.sh).
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s, and CI=true forbids skipping: install it (scripts/deps.sh)", why)
	}
	t.Skipf("skipping: %s", why)
}

// waitReloads waits until srv has logged more than n certificate reloads
// (its Source picked up a rotation from the files) and returns the count.
// Polled with a deadline: the watcher debounces file events.
func waitReloads(t *testing.T, srv *scServer, n int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := strings.Count(srv.Log(), `"msg":"certificate reloaded"`); got > n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("sc-server did not reload its certificate within 30s:\n%s", srv.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reloads returns how many certificate reloads srv has logged.
func reloads(srv *scServer) int {
	return strings.Count(srv.Log(), `"msg":"certificate reloaded"`)
}

// servedSerial returns the serial of dir/certs/server.crt as pki writes
// it (lower-case colon-separated hex).
func servedSerial(t *testing.T, dir string) string {
	t.Helper()
	c, err := pki.ReadCertificateFile(filepath.Join(dir, "certs", "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return pki.SerialHex(c.SerialNumber)
}

func splitPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// runFile runs a command in dir with the file in as standard input (one
// read gets all of a small file, unlike a pipe fed by a goroutine) and
// returns stdout, stderr and the exit code; a failure to start is fatal.
func runFile(t *testing.T, dir, in string, name string, args ...string) (string, string, int) {
	t.Helper()
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdin = f
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	code := exitCode(t, childproc.Run(cmd))
	return out.String(), errOut.String(), code
}

// exitCode returns a finished command's exit code; an error other than a
// non-zero exit is fatal.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("running: %v", err)
	return -1
}

// scClient runs the real sc-client in dir with stdin and returns stdout,
// stderr and the exit code.
func scClient(t *testing.T, dir string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	out, errOut, err := runErr(dir, []byte(stdin), bin(t, "sc-client"), args...)
	return out, errOut, exitCode(t, err)
}

// mustSCClient is scClient requiring exit 0.
func mustSCClient(t *testing.T, dir string, args ...string) (string, string) {
	t.Helper()
	out, errOut, code := scClient(t, dir, "", args...)
	if code != 0 {
		t.Fatalf("sc-client %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	return out, errOut
}
