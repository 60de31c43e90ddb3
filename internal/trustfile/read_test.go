package trustfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustWrite(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestReadRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.key")
	mustWrite(t, path, []byte("key"), 0o600)
	data, fi, err := Read(path, PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "key" || fi.Size() != 3 {
		t.Errorf("got %q (size %d), want %q", data, fi.Size(), "key")
	}
}

func TestReadMissingFileIsNotExist(t *testing.T) {
	_, _, err := Read(filepath.Join(t.TempDir(), "nope"), Certificate)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want fs.ErrNotExist", err)
	}
}

// A file larger than its kind allows is refused from its size alone, and
// the error names the file, the size and the cap.
func TestReadRefusesOversizeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.crt")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: the size is what matters, and it is checked before a byte
	// is read.
	if err := f.Truncate(470 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, _, err = Read(path, Certificate)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	for _, want := range []string{"470 MiB", "at most 1 MiB", "certificate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Exactly the cap is fine.
	mustWrite(t, path, bytes.Repeat([]byte("x"), MaxSmallSize), 0o600)
	if _, _, err := Read(path, TicketKeys); err != nil {
		t.Errorf("a file of exactly the cap: %v", err)
	}
}

func TestKindsHaveCaps(t *testing.T) {
	tests := []struct {
		name string
		k    Kind
		min  int64
	}{
		{"certificate", Certificate, 1 << 20},
		{"private key", PrivateKey, 1 << 20},
		{"known hosts keeps 16 MiB", KnownHosts, 16 << 20},
		// 100,000 entries of a host and a pin, ~100 bytes a line.
		{"allow list, 100,000 entries", AllowList, 100_000 * 100},
		{"revoke list, 100,000 entries", RevokeList, 100_000 * 100},
		{"ticket keys, 16 lines", TicketKeys, 16 * 65},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.k.MaxSize < tt.min {
				t.Errorf("cap %d, want at least %d", tt.k.MaxSize, tt.min)
			}
		})
	}
}
