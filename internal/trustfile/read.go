package trustfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// Read returns the content of the file at path, a file of kind k, after
// the checks the package documentation lists; fi describes the file read
// (through any symbolic links). A missing file is the error of os.Stat
// (matching fs.ErrNotExist); a file refused is an [*Error].
//
// Read never blocks on what is at the path: a FIFO is refused without
// waiting for a writer, and a device without reading from it. A kind with
// a [Kind.PipeTimeout] accepts a pipe and waits for it at most that long.
func Read(path string, k Kind) (data []byte, fi fs.FileInfo, err error) {
	if k.MaxSize <= 0 {
		panic("trustfile: Read with a Kind that has no size cap")
	}
	// Stat first, so that a device or FIFO at the path is refused without
	// even being opened (opening some devices has side effects); the
	// checks are made again on the open file, which is what is read.
	pre, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if k.PipeTimeout > 0 && pre.Mode()&fs.ModeNamedPipe != 0 {
		return readPipe(path, k)
	}
	if err := checkInfo(path, pre, k); err != nil {
		return nil, nil, err
	}
	if k.Checks&CheckOwner != 0 {
		if err := checkDirs(path); err != nil {
			return nil, nil, err
		}
	}
	f, err := openNonblocking(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err = f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if err := checkInfo(path, fi, k); err != nil {
		return nil, nil, err
	}
	data, err = io.ReadAll(io.LimitReader(f, k.MaxSize+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(data)) > k.MaxSize {
		// It grew while we read.
		return nil, nil, tooLarge(path, int64(len(data)), k)
	}
	return data, fi, nil
}

// Stat makes the checks [Read] makes on a file of kind k without opening
// or reading it: for a file the process hands to something else, such as
// a shared library it loads. A missing file is the error of os.Stat
// (matching fs.ErrNotExist); a file refused is an [*Error].
func Stat(path string, k Kind) (fs.FileInfo, error) {
	if k.MaxSize <= 0 {
		panic("trustfile: Stat with a Kind that has no size cap")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := checkInfo(path, fi, k); err != nil {
		return nil, err
	}
	if k.Checks&CheckOwner != 0 {
		if err := checkDirs(path); err != nil {
			return nil, err
		}
	}
	return fi, nil
}

// checkInfo makes the checks that need only the file's own metadata.
func checkInfo(path string, fi fs.FileInfo, k Kind) error {
	if !fi.Mode().IsRegular() {
		return &Error{Path: path, Err: ErrNotRegular,
			Detail: fmt.Sprintf("not a regular file but %s: refusing to read it as a %s", describeType(fi.Mode()), k.Name)}
	}
	if fi.Size() > k.MaxSize {
		return tooLarge(path, fi.Size(), k)
	}
	return checkOwnerMode(path, fi, k.Checks)
}

func tooLarge(path string, size int64, k Kind) error {
	return &Error{Path: path, Err: ErrTooLarge,
		Detail: fmt.Sprintf("larger than a %s may be (%s, at most %s): is it the right file?", k.Name, formatSize(size), formatSize(k.MaxSize))}
}

func describeType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO (named pipe)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	}
	return "a special file (" + m.Type().String() + ")"
}

// formatSize prints a size for people: bytes, KiB or MiB.
func formatSize(n int64) string {
	switch {
	case n >= 1<<20:
		return trimZero(fmt.Sprintf("%.1f", float64(n)/(1<<20))) + " MiB"
	case n >= 1<<10:
		return trimZero(fmt.Sprintf("%.1f", float64(n)/(1<<10))) + " KiB"
	}
	return fmt.Sprintf("%d bytes", n)
}

func trimZero(s string) string { return strings.TrimSuffix(s, ".0") }

// shellQuote quotes a path for a command line a person may paste.
func shellQuote(s string) string {
	safe := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._-+:,@%", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// pipeTimeout is the error of a pipe not closed within k.PipeTimeout,
// after n bytes.
func pipeTimeout(path string, n int, k Kind) error {
	what := "nothing was written to it"
	if n > 0 {
		what = fmt.Sprintf("its writer sent %s and has not closed it", formatSize(int64(n)))
	}
	return &Error{Path: path, Err: ErrPipeTimeout,
		Detail: fmt.Sprintf("a pipe (FIFO) read as a %s, and %s within %v: give a regular file, or a pipe whose writer writes and exits, e.g. <(echo …)", k.Name, what, k.PipeTimeout)}
}
