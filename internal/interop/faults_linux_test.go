//go:build linux

package interop

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Issue 7, toolkit faults on Linux: a disk that fills up in the middle of a
// change, and a certificate directory that cannot be written.

// mountTmpfs mounts a tmpfs of size (mount -t tmpfs -o size=…) on a new
// temporary directory, to be filled up. It skips the test when mounting is
// not permitted (not root, or no CAP_SYS_ADMIN in a container): a full disk
// cannot be simulated faithfully without one, and the library-level
// failures are covered by pki's own tests.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Skipf("skipping: cannot mount a tmpfs to fill up (%v): needs root or CAP_SYS_ADMIN", err)
	}
	// Registered after TempDir's removal, so it runs before it.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting the tmpfs %s: %v", dir, err)
		}
	})
	return dir
}

// fillTo fills the tmpfs at root with one file so that exactly free blocks
// (pages) are left until the test ends: tmpfs charges every file whole
// pages, so a test can choose which write of a multi-file change runs out
// of space.
func fillTo(t *testing.T, root string, free int) {
	t.Helper()
	filler := filepath.Join(root, "filler")
	if err := os.Remove(filler); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil {
		t.Fatal(err)
	}
	size := (int64(st.Bavail) - int64(free)) * st.Bsize
	if size < 0 {
		t.Fatalf("the tmpfs has %d free blocks, fewer than the %d wanted", st.Bavail, free)
	}
	if err := os.WriteFile(filler, make([]byte, size), 0o600); err != nil {
		t.Fatalf("filling the tmpfs: %v", err)
	}
	// The space comes back when the (sub)test ends.
	t.Cleanup(func() { os.Remove(filler) })
	if err := syscall.Statfs(root, &st); err != nil {
		t.Fatal(err)
	}
	if int(st.Bavail) != free {
		t.Fatalf("after filling: %d free blocks, want %d", st.Bavail, free)
	}
}

const noSpace = "no space left on device"

// untilItFits runs attempt with the tmpfs at root holding 0, 1, 2, … free
// blocks until it succeeds. Each failure must be a clear "no space" error
// (exit 1) that leaves dir exactly as it was. It returns the first line of
// each failure, in order: where the change ran out of space.
func untilItFits(t *testing.T, root, dir string, attempt func() (stderr string, code int)) []string {
	t.Helper()
	var failures []string
	for free := 0; ; free++ {
		if free > 12 {
			t.Fatalf("still failing with %d free blocks: %q", free-1, failures)
		}
		fillTo(t, root, free)
		before := snapshotTree(t, dir)
		errOut, code := attempt()
		if code == 0 {
			t.Logf("succeeded with %d free blocks", free)
			return failures
		}
		first, _, _ := strings.Cut(errOut, "\n")
		t.Logf("%d free blocks: exit %d: %s", free, code, first)
		failures = append(failures, first)
		if code != 1 || !strings.Contains(errOut, noSpace) {
			t.Errorf("%d free blocks: exit %d, want 1 and %q:\n%s", free, code, noSpace, errOut)
		}
		if d := snapshotTree(t, dir).diff(before); len(d) > 0 {
			t.Errorf("%d free blocks: a failed change left the directory changed: %s", free, strings.Join(d, ", "))
		}
	}
}

// A disk that fills up at each write of a multi-file change in turn — the
// journal, each staged file, the commit record — makes sc-cert rotate
// --promote-next and sc-cert init fail with "no space left on device" and
// leave the old files whole (no journal, staged or temporary file behind);
// with room again they succeed. sc-server's first run fails the same way
// and then starts; its self-renewal on a full disk warns, keeps the old
// certificate serving and changes nothing.
func TestFaultFullDisk(t *testing.T) {
	// 32 pages: room for the four layouts below and the filler.
	root := mountTmpfs(t, "128k")
	scCert := bin(t, "sc-cert")
	certs := filepath.Join(root, "certs")
	run(t, root, scCert, "init", "--dir", certs)

	t.Run("sc-cert rotate --promote-next", func(t *testing.T) {
		failures := untilItFits(t, root, certs, func() (string, int) {
			_, errOut, code := runBounded(t, root, nil, scCert, "rotate", "--promote-next")
			return errOut, code
		})
		// With one free block or more, the journal's first write succeeds:
		// every later failure is midway through the change.
		if len(failures) < 3 || !strings.Contains(strings.Join(failures[1:], "\n"), "staging") {
			t.Errorf("the disk never filled up midway through the change (while staging its files): %q", failures)
		}
		run(t, root, scCert, "verify", "--cert", "certs/server.crt", "--key", "certs/server.key", "--ca", "certs/ca.crt")
	})

	t.Run("sc-cert init", func(t *testing.T) {
		fresh := filepath.Join(root, "fresh")
		if err := os.Mkdir(fresh, 0o755); err != nil {
			t.Fatal(err)
		}
		failures := untilItFits(t, root, fresh, func() (string, int) {
			_, errOut, code := runBounded(t, root, nil, scCert, "init", "--dir", "fresh")
			return errOut, code
		})
		if len(failures) < 3 || !strings.Contains(strings.Join(failures[1:], "\n"), "staging") {
			t.Errorf("the disk never filled up midway through init (while staging its files): %q", failures)
		}
		run(t, root, scCert, "verify", "--cert", "fresh/server.crt", "--key", "fresh/server.key", "--ca", "fresh/ca.crt")
	})

	t.Run("sc-server first run", func(t *testing.T) {
		first := filepath.Join(root, "first")
		if err := os.Mkdir(first, 0o755); err != nil {
			t.Fatal(err)
		}
		pair := []string{"--cert", "first/server.crt", "--key", "first/server.key"}
		fillTo(t, root, 3) // room for the journal and two of the five files
		runFaultCases(t, root, []faultCase{
			{name: "no room", bin: "sc-server", args: serverArgs(pair...), code: 1, want: []string{"first", noSpace}},
		})
		if err := os.Remove(filepath.Join(root, "filler")); err != nil {
			t.Fatal(err)
		}
		srv := startSCServer(t, root, pair...)
		mustSCClient(t, root, "echo", "hello", "--server", srv.Addr, "--ca", "first/ca.crt")
	})

	t.Run("sc-server self-renewal", func(t *testing.T) {
		renew := filepath.Join(root, "renew")
		run(t, root, scCert, "init", "--dir", renew)
		serial := makeDue(t, renew)
		fillTo(t, root, 0)
		before := snapshotTree(t, renew)
		srv := startSCServer(t, root, "--cert", "renew/server.crt", "--key", "renew/server.key")
		waitLog(t, srv, 0, 20*time.Second, `"msg":"certificate renewal failed, will retry"`)
		if line := lastLine(srv, "certificate renewal failed"); !strings.Contains(line, noSpace) || !strings.Contains(line, `"level":"WARN"`) {
			t.Errorf("the renewal failure is not a warning saying %q:\n%s", noSpace, line)
		}
		if got := pki.SerialHex(servedCert(t, srv, filepath.Join(renew, "ca.crt")).SerialNumber); got != serial {
			t.Errorf("serving %s after a failed renewal, want the old %s", got, serial)
		}
		if d := snapshotTree(t, renew).diff(before); len(d) > 0 {
			t.Errorf("a failed renewal changed files: %s", strings.Join(d, ", "))
		}
		if n := countLog(srv, `"level":"ERROR"`); n > 0 {
			t.Errorf("the server logged %d errors:\n%s", n, srv.Log())
		}
	})
}

// makeDue replaces the server certificate of the layout in dir with one
// due for renewal now (two thirds of its 30-minute lifetime are gone) and
// returns its serial. A renewal keeps the lifetime and backdates 5 minutes,
// so a renewed certificate is not due again for 15 minutes.
func makeDue(t *testing.T, dir string) string {
	t.Helper()
	l := pki.DefaultLayout(dir)
	tmpl, err := pki.ReadCertificateFile(l.ServerCert)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b, c := mustIssuer(t, dir).issueLike(t, tmpl, publicKeyOf(t, l.ServerKey), now.Add(-20*time.Minute), now.Add(10*time.Minute))
	mustWriteFile(t, l.ServerCert, b, 0o644)
	return pki.SerialHex(c.SerialNumber)
}

// makeReadOnly makes the directory dir unwritable until the test ends and
// returns the error text writing into it gives. Root writes regardless of
// mode bits, so as root it sets the immutable attribute (chattr +i) or,
// where the file system has none (an older tmpfs), bind-mounts dir
// read-only onto itself; otherwise it removes the write bits. A probe
// write must then fail, or the test is skipped.
func makeReadOnly(t *testing.T, dir string) string {
	t.Helper()
	var errText string
	switch {
	case os.Geteuid() != 0:
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		errText = "permission denied"
	case chattr(dir, "+i") == nil:
		t.Cleanup(func() {
			if err := chattr(dir, "-i"); err != nil {
				t.Errorf("chattr -i %s: %v", dir, err)
			}
		})
		errText = "operation not permitted"
	default:
		if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
			t.Skipf("skipping: cannot make %s read-only: no chattr +i and no bind mount (%v)", dir, err)
		}
		t.Cleanup(func() {
			if err := syscall.Unmount(dir, 0); err != nil {
				t.Errorf("unmounting %s: %v", dir, err)
			}
		})
		if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
			t.Skipf("skipping: cannot remount %s read-only: %v", dir, err)
		}
		errText = "read-only file system"
	}
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err == nil {
		os.Remove(probe)
		t.Skipf("skipping: %s is still writable after making it read-only", dir)
	} else if !strings.Contains(err.Error(), errText) {
		t.Fatalf("writing into the read-only %s: got %v, want %q", dir, err, errText)
	}
	t.Logf("%s is read-only: writes fail with %q", dir, errText)
	return errText
}

func chattr(dir, flag string) error {
	p, err := exec.LookPath("chattr")
	if err != nil {
		return err
	}
	if out, err := childproc.CombinedOutput(exec.Command(p, flag, dir)); err != nil {
		return errors.New(strings.TrimSpace(string(out)))
	}
	return nil
}

// A certificate directory that cannot be written: sc-cert rotate, init
// --force and ticket-keys fail with the error of the write and change
// nothing; sc-server still serves from it, and when its certificate falls
// due it warns that renewal failed and keeps serving the old one. A first
// run into a read-only directory fails with the error itself, not a guess
// that another rotation holds the lock.
func TestFaultReadOnlyCertsDir(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	run(t, dir, bin(t, "sc-cert"), "init", "--dir", certs)
	serial := makeDue(t, certs)
	errText := makeReadOnly(t, certs)

	runFaultCases(t, dir, []faultCase{
		{"rotate", "sc-cert", []string{"rotate"}, nil, 1, []string{"certs/", errText}},
		{"rotate --promote-next", "sc-cert", []string{"rotate", "--promote-next"}, nil, 1, []string{"certs/", errText}},
		{"init --force", "sc-cert", []string{"init", "--force"}, nil, 1, []string{"certs", errText}},
		{"ticket-keys", "sc-cert", []string{"ticket-keys", "certs/ticket.keys"}, nil, 1, []string{"certs/ticket.keys", errText}},
	})

	before := snapshotTree(t, certs)
	srv := startSCServer(t, dir)
	waitLog(t, srv, 0, 20*time.Second, `"msg":"certificate renewal failed, will retry"`)
	if line := lastLine(srv, "certificate renewal failed"); !strings.Contains(line, errText) || !strings.Contains(line, `"level":"WARN"`) {
		t.Errorf("the renewal failure is not a warning saying %q:\n%s", errText, line)
	}
	if got := pki.SerialHex(servedCert(t, srv, filepath.Join(certs, "ca.crt")).SerialNumber); got != serial {
		t.Errorf("serving %s after a failed renewal, want the old %s", got, serial)
	}
	if d := snapshotTree(t, certs).diff(before); len(d) > 0 {
		t.Errorf("a failed renewal changed files: %s", strings.Join(d, ", "))
	}

	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	makeReadOnly(t, empty)
	_, errOut, code := runBounded(t, dir, nil, bin(t, "sc-server"), serverArgs("--cert", "empty/server.crt", "--key", "empty/server.key")...)
	if code != 1 || !strings.Contains(errOut, "empty") || !strings.Contains(errOut, errText) || strings.Contains(errOut, "another rotation") {
		t.Errorf("first run into a read-only directory: exit %d, want 1 and the write's error, not a lock held by another:\n%s", code, errOut)
	}
}
