package certcmd

import (
	"errors"
	"io/fs"
	"os"
)

// existHint suggests the flag that allows replacing files when err says a
// file exists.
func existHint(err error, flag string) string {
	if errors.Is(err, fs.ErrExist) {
		return "add " + flag + " to replace the existing files"
	}
	return ""
}

// checkAbsent fails when any of paths exists, naming it, unless force.
func checkAbsent(force bool, paths ...string) error {
	if force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return &fs.PathError{Op: "writing", Path: p, Err: fs.ErrExist}
		}
	}
	return nil
}
