package atomicfile

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestWriteFileCreatesWithMode(t *testing.T) {
	tests := []struct {
		name string
		perm fs.FileMode
		want fs.FileMode
	}{
		{"default is 0600", 0, 0o600},
		{"key", 0o600, 0o600},
		{"cert", 0o644, 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f.pem")
			if err := WriteFile(path, []byte("hello"), Options{Perm: tt.perm}); err != nil {
				t.Fatal(err)
			}
			got := mustRead(t, path)
			if string(got) != "hello" {
				t.Errorf("content: got %q, want %q", got, "hello")
			}
			if runtime.GOOS == "windows" {
				return
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.want {
				t.Errorf("mode: got %v, want %v", fi.Mode().Perm(), tt.want)
			}
			assertNoTemps(t, filepath.Dir(path))
		})
	}
}

func TestWriteFileRefusesToOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := WriteFile(path, []byte("old"), Options{}); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, []byte("new"), Options{})
	if !errors.Is(err, ErrExists) || !errors.Is(err, fs.ErrExist) {
		t.Fatalf("got error %v, want ErrExists", err)
	}
	if got := mustRead(t, path); string(got) != "old" {
		t.Errorf("content: got %q, want %q", got, "old")
	}
	if err := WriteFile(path, []byte("new"), Options{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, path); string(got) != "new" {
		t.Errorf("content after overwrite: got %q, want %q", got, "new")
	}
	assertNoTemps(t, filepath.Dir(path))
}

// A writer that fails midway must leave the old file whole and no temporary
// file behind: this is what a full disk looks like to us.
func TestWriteFailingMidwayKeepsOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.crt")
	old := bytes.Repeat([]byte("A"), 4096)
	if err := WriteFile(path, old, Options{Perm: 0o644}); err != nil {
		t.Fatal(err)
	}
	errDiskFull := errors.New("no space left on device")
	err := Write(path, Options{Perm: 0o644, Overwrite: true}, func(w io.Writer) error {
		if _, err := w.Write(bytes.Repeat([]byte("B"), 1000)); err != nil {
			return err
		}
		return errDiskFull
	})
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("got error %v, want it to wrap %v", err, errDiskFull)
	}
	if got := mustRead(t, path); !bytes.Equal(got, old) {
		t.Errorf("old file changed: got %d bytes starting %q", len(got), got[:1])
	}
	assertNoTemps(t, filepath.Dir(path))
}

func TestWriteIntoMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "f")
	if err := WriteFile(path, []byte("x"), Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got error %v, want fs.ErrNotExist", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) != 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}
}
