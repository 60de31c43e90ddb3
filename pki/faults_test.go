package pki

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Issue 7, toolkit faults: a rotation refuses a key file others may read —
// the key it re-issues for, the next key it promotes, the CA key it signs
// with — as the server refuses to serve one, and changes nothing.
func TestRotateRefusesKeysOthersMayRead(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix mode bits on Windows")
	}
	tests := []struct {
		name    string
		file    func(Layout) string
		promote bool
	}{
		{"server key", func(l Layout) string { return l.ServerKey }, false},
		{"CA key", func(l Layout) string { return l.CAKey }, false},
		{"next key being promoted", func(l Layout) string { return l.NextKey }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustInit(t, InitOptions{}).Layout
			path := tt.file(l)
			for _, mode := range []os.FileMode{0o644, 0o604, 0o660} {
				if err := os.Chmod(path, mode); err != nil {
					t.Fatal(err)
				}
				old := snapshot(t, l)
				_, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert, PromoteNext: tt.promote})
				if !errors.Is(err, ErrKeyFilePermissions) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod 600") {
					t.Errorf("mode %04o: got %v, want ErrKeyFilePermissions naming %s with a chmod hint", mode, err, path)
				}
				if got := snapshot(t, l); !got.equal(old) {
					t.Errorf("mode %04o: a refused rotation changed %v", mode, got.diff(old))
				}
				assertNoLeftovers(t, l.Dir)
			}
			if err := os.Chmod(path, keyFileMode); err != nil {
				t.Fatal(err)
			}
			if _, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert, PromoteNext: tt.promote}); err != nil {
				t.Errorf("with the key private again: %v", err)
			}
		})
	}
}

// Issue 7: a lock that cannot be taken says why. Only a wait that ran out
// blames another rotation; a lock file that cannot be opened (here a
// directory in its place; in the field a read-only certificate directory)
// is reported as that error alone, not as a rotation that is not running.
func TestLockFailureDiagnosis(t *testing.T) {
	t.Run("lock file cannot be opened", func(t *testing.T) {
		l := mustInit(t, InitOptions{}).Layout
		lock := filepath.Join(l.Dir, lockFileName)
		if err := os.Remove(lock); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(lock, 0o700); err != nil {
			t.Fatal(err)
		}
		old := snapshot(t, l)
		_, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert})
		if err == nil || !strings.Contains(err.Error(), lockFileName) || strings.Contains(err.Error(), "another rotation") {
			t.Errorf("got %v, want an error naming %s that does not blame another rotation", err, lockFileName)
		}
		if got := snapshot(t, l); !got.equal(old) {
			t.Errorf("files changed: %v", got.diff(old))
		}
	})
	t.Run("lock held by another rotation", func(t *testing.T) {
		l := mustInit(t, InitOptions{}).Layout
		unlock, err := lockDir(context.Background(), l.Dir)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err = Rotate(ctx, RotateOptions{CertPath: l.ServerCert})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "another rotation running") {
			t.Errorf("got %v, want a deadline error asking whether another rotation is running", err)
		}
	})
}

// A change that passes its commit point but cannot put a file in place
// says so with ErrIncomplete (naming no command: the caller knows its
// own), and Recover completes it once the obstacle is gone (issue 13).
func TestCommitIncomplete(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("renaming over a directory fails differently on Windows")
	}
	dir := t.TempDir()
	first, blocked := filepath.Join(dir, "first"), filepath.Join(dir, "second")
	// A non-empty directory where the second file goes: staging it works,
	// renaming over it does not.
	if err := os.Mkdir(blocked, 0o700); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(blocked, "x"), []byte("x"), 0o600)
	unlock, err := lockDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	err = commit(dir, []change{{path: first, data: []byte("1"), perm: 0o600}, {path: blocked, data: []byte("2"), perm: 0o600}}, nil)
	unlock()
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), blocked) {
		t.Fatalf("got %v, want ErrIncomplete naming %s", err, blocked)
	}
	if strings.Contains(err.Error(), "sc-cert") {
		t.Errorf("got %q: a command in a library error", err)
	}
	if pending, err := Pending(dir); !pending || err != nil {
		t.Fatalf("Pending: got %v, %v; want true", pending, err)
	}
	if err := os.RemoveAll(blocked); err != nil {
		t.Fatal(err)
	}
	if err := Recover(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if got := string(mustRead(t, blocked)); got != "2" {
		t.Errorf("after Recover: got %q, want the new content", got)
	}
}
