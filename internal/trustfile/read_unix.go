//go:build unix

package trustfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// openNonblocking opens path for reading without waiting: a FIFO with no
// writer would otherwise block open(2) until one comes. O_NOCTTY keeps a
// terminal device from becoming the process's controlling terminal.
func openNonblocking(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
}

// euid is the user whose files are trusted, besides root's. A variable
// for the tests of the non-root rules, which run as root in CI.
var euid = os.Geteuid

func ownerOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// checkOwnerMode makes the owner and mode checks on the file itself.
func checkOwnerMode(path string, fi fs.FileInfo, checks Check) error {
	mode, owner, me := fi.Mode().Perm(), ownerOf(fi), euid()
	if checks&CheckPrivate != 0 && mode&0o077 != 0 {
		groupReadOnly := mode&0o077 == 0o040
		if !(groupReadOnly && owner == 0 && me != 0) {
			fix := "chmod 600 " + shellQuote(path)
			if groupReadOnly {
				fix += " (a root-owned file may be 0640 or 0440 for a process that is not root)"
			}
			return &Error{Path: path, Err: ErrAccess, Fix: fix,
				Detail: fmt.Sprintf("mode %04o: %s", mode, describeAccess(mode))}
		}
	}
	if checks&CheckOwner == 0 {
		return nil
	}
	if owner != me && owner != 0 {
		return ownerError(path, "", owner, me)
	}
	if mode&0o022 != 0 {
		return &Error{Path: path, Err: ErrWritable, Fix: "chmod go-w " + shellQuote(path),
			Detail: fmt.Sprintf("mode %04o: %s, who could replace what it says", mode, describeAccess(mode&0o022))}
	}
	return nil
}

// ownerError is the error for a file (what "") or a directory (what
// "directory ") owned by someone else; only a directory is named in the
// detail, the caller names the file.
func ownerError(path, what string, owner, me int) error {
	who := "root"
	fix := "chown root " + shellQuote(path)
	if me != 0 {
		who = fmt.Sprintf("root or uid %d, the user this runs as", me)
		fix = fmt.Sprintf("chown %d %s", me, shellQuote(path))
	}
	return &Error{Path: path, Err: ErrOwner, Fix: fix,
		Detail: fmt.Sprintf("%sowned by uid %d, not by %s: another user could have put it there", what, owner, who)}
}

// describeAccess says in words who besides the owner may do what.
func describeAccess(mode fs.FileMode) string {
	var parts []string
	for _, c := range []struct {
		who   string
		shift uint
	}{{"group", 3}, {"others", 0}} {
		var can []string
		bits := mode >> c.shift & 7
		if bits&4 != 0 {
			can = append(can, "read")
		}
		if bits&2 != 0 {
			can = append(can, "write")
		}
		if bits&1 != 0 {
			can = append(can, "execute")
		}
		if len(can) > 0 {
			parts = append(parts, c.who+" may "+strings.Join(can, " and ")+" it")
		}
	}
	return strings.Join(parts, ", ")
}

// checkDirs checks the directories on path's way: the directory it was
// named in, and when path leads through symbolic links, every directory
// from the real file's up to that one (or the real file's alone, if it
// lies elsewhere). Each must be owned by the process's user or root and
// writable by nobody else, unless it is sticky and owned by one of them.
func checkDirs(path string) error {
	top, err := realDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	if real, err = filepath.Abs(real); err != nil {
		return err
	}
	dirs := []string{}
	for d := filepath.Dir(real); ; {
		dirs = append(dirs, d)
		if d == top || !within(d, top) {
			break
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if dirs[len(dirs)-1] != top {
		dirs = append(dirs, top)
	}
	me := euid()
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		owner, mode := ownerOf(fi), fi.Mode()
		if owner != me && owner != 0 {
			return ownerError(d, "directory "+d+" (on the way to "+path+") is ", owner, me)
		}
		if mode.Perm()&0o022 != 0 && mode&fs.ModeSticky == 0 {
			return &Error{Path: d, Err: ErrWritable, Fix: "chmod go-w " + shellQuote(d),
				Detail: fmt.Sprintf("directory %s (on the way to %s) is mode %04o: %s, who could replace the file in it", d, path, mode.Perm(), describeAccess(mode.Perm()&0o022))}
		}
	}
	return nil
}

func realDir(dir string) (string, error) {
	r, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	return filepath.Abs(r)
}

// within reports whether d is inside top (both absolute and clean).
func within(d, top string) bool {
	rel, err := filepath.Rel(top, d)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// readPipe reads the pipe at path (k.PipeTimeout > 0) until its writer
// closes it, within k.PipeTimeout. It opens without blocking and waits
// with poll(2), so that nothing hangs on a FIFO nobody writes: Linux
// reports such a FIFO neither readable nor hung up until a writer comes.
func readPipe(path string, k Kind) ([]byte, fs.FileInfo, error) {
	f, err := openNonblocking(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Mode()&fs.ModeNamedPipe == 0 {
		// Swapped for something else between the stat and the open.
		if err := checkInfo(path, fi, k); err != nil {
			return nil, nil, err
		}
		return nil, nil, &Error{Path: path, Err: ErrNotRegular, Detail: "changed while it was opened: refusing to read it as a " + k.Name}
	}
	if err := checkOwnerMode(path, fi, k.Checks); err != nil {
		return nil, nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	deadline := time.Now().Add(k.PipeTimeout)
	var data []byte
	var readErr error
	// Control, not Fd: Fd would make the descriptor blocking.
	if err := rc.Control(func(fd uintptr) {
		data, readErr = pollRead(int(fd), k.MaxSize, deadline)
	}); err != nil {
		return nil, nil, err
	}
	switch {
	case errors.Is(readErr, os.ErrDeadlineExceeded):
		return nil, nil, pipeTimeout(path, len(data), k)
	case readErr != nil:
		return nil, nil, readErr
	case int64(len(data)) > k.MaxSize:
		return nil, nil, tooLarge(path, int64(len(data)), k)
	}
	return data, fi, nil
}

// pollRead reads the non-blocking descriptor fd to end of file, up to
// max+1 bytes, waiting for it with poll(2) until deadline. An end of file
// with nothing read is believed only once poll has reported the pipe
// ready: a FIFO opened without a writer reads as ended until one comes,
// and poll reports it neither readable nor hung up until then.
func pollRead(fd int, max int64, deadline time.Time) ([]byte, error) {
	var data []byte
	buf := make([]byte, 4096)
	waited := false
	for int64(len(data)) <= max {
		n, err := unix.Read(fd, buf)
		switch {
		case n > 0:
			data = append(data, buf[:n]...)
			continue
		case err == unix.EINTR:
			continue
		case err != nil && err != unix.EAGAIN:
			return data, err
		case err == nil && (len(data) > 0 || waited):
			return data, nil // end of file
		}
		// Nothing yet: wait for data, or for the writer to close.
		left := time.Until(deadline)
		if left <= 0 {
			return data, os.ErrDeadlineExceeded
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		ready, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if err != nil && err != unix.EINTR {
			return data, err
		}
		if ready > 0 {
			waited = true // data, or a writer that came and went
		}
	}
	return data, nil
}
