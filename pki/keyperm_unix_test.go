//go:build unix

package pki

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestKeyModeAllowed(t *testing.T) {
	const root, server = 0, 1000
	tests := []struct {
		name        string
		mode        fs.FileMode
		owner, euid int
		want        bool
	}{
		{"0600 own file", 0o600, server, server, true},
		{"0400 own file", 0o400, server, server, true},
		{"0640 own file", 0o640, server, server, false},
		{"0644 own file", 0o644, server, server, false},
		{"0440 root-owned secret mount, non-root server", 0o440, root, server, true},
		{"0640 root-owned, non-root server", 0o640, root, server, true},
		{"0640 root-owned, root server (its own file)", 0o640, root, root, false},
		{"0660 root-owned: group may replace the key", 0o660, root, server, false},
		{"0644 root-owned: world-readable", 0o644, root, server, false},
		{"0604 root-owned: world-readable", 0o604, root, server, false},
		{"0640 owned by another user", 0o640, 1001, server, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyModeAllowed(tt.mode, tt.owner, tt.euid); got != tt.want {
				t.Errorf("keyModeAllowed(%04o, owner %d, euid %d): got %v, want %v", tt.mode, tt.owner, tt.euid, got, tt.want)
			}
		})
	}
}

// The file-level check refuses a group-readable key this process owns and
// names the fix.
func TestCheckKeyFileInfoRefusesOwnGroupReadableKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.key")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	err = checkKeyFileInfo(path, fi)
	if !errors.Is(err, ErrKeyFilePermissions) {
		t.Fatalf("got %v, want ErrKeyFilePermissions", err)
	}
}
