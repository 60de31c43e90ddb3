//go:build unix

package pki

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkKeyFileInfo refuses a key file that others may read, as OpenSSH
// refuses such identity files. Group read is refused too, with one
// exception, PostgreSQL's rule for ssl_key_file: a file owned by root (when
// we are not root) may be readable by its group. That is how a read-only
// secret reaches an unprivileged server — Kubernetes mounts Secret files
// root-owned with mode 0440 and the pod's fsGroup
// (kubernetes/kubernetes#57923) — and root, who owns the file, chose to
// share it with us. Group write or execute is never accepted: a group that
// can replace the key can impersonate the server.
func checkKeyFileInfo(path string, fi fs.FileInfo) error {
	mode := fi.Mode().Perm()
	owner := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner = int(st.Uid)
	}
	if keyModeAllowed(mode, owner, os.Geteuid()) {
		return nil
	}
	return fmt.Errorf("%w (mode %04o): run chmod 600 %q (a root-owned file may be 0640 for a non-root server)",
		ErrKeyFilePermissions, mode, path)
}

// keyModeAllowed is the rule of checkKeyFileInfo: no access for others,
// and group read only on a root-owned file read by a non-root process.
func keyModeAllowed(mode fs.FileMode, owner, euid int) bool {
	switch {
	case mode&0o077 == 0:
		return true
	case mode&0o037 == 0: // group read, nothing else
		return owner == 0 && euid != 0
	}
	return false
}
