//go:build !unix

package trustfile

import (
	"io/fs"
	"os"
)

// openNonblocking opens path for reading. Windows has no FIFOs at file
// paths to block on; the regular-file check still refuses devices.
func openNonblocking(path string) (*os.File, error) { return os.Open(path) }

// checkOwnerMode accepts every file: Windows ACLs have no group and other
// mode bits to check, and Go reports made-up ones.
func checkOwnerMode(string, fs.FileInfo, Check) error { return nil }

// checkDirs accepts every directory, for the same reason.
func checkDirs(string) error { return nil }

// readPipe refuses a pipe: Windows has no FIFOs at file paths, and its
// named pipes are not files to read a secret from.
func readPipe(path string, k Kind) ([]byte, fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	return nil, nil, checkInfo(path, fi, k)
}
