package trustfile

import "errors"

// Sentinel errors; every error [Read] returns about the file itself is an
// [*Error] wrapping one of them (a missing file is the *fs.PathError of
// os.Stat, matching fs.ErrNotExist).
var (
	// ErrNotRegular means the path names a FIFO, a device, a socket or a
	// directory instead of a regular file.
	ErrNotRegular = errors.New("not a regular file")

	// ErrTooLarge means the file is larger than its kind allows.
	ErrTooLarge = errors.New("file too large")

	// ErrPipeTimeout means a pipe its kind accepts ([Kind.PipeTimeout])
	// was not written and closed in time.
	ErrPipeTimeout = errors.New("pipe not closed in time")

	// ErrAccess means group or others may access a file that must be
	// private to its owner ([CheckPrivate]).
	ErrAccess = errors.New("group or others may access the file")

	// ErrOwner means the file, or a directory on its path, is owned by a
	// user other than the process's user or root ([CheckOwner]).
	ErrOwner = errors.New("owned by another user")

	// ErrWritable means the file, or a directory on its path, is writable
	// by group or others ([CheckOwner]).
	ErrWritable = errors.New("writable by other users")
)

// Error is a file refused by [Read]: what is wrong, and the command that
// fixes it when there is one.
type Error struct {
	// Path is the file, or the directory on its path, at fault.
	Path string
	// Err is one of the sentinel errors.
	Err error
	// Detail says what is wrong, naming Path when it is a directory.
	Detail string
	// Fix is the command that makes the file acceptable, or "".
	Fix string
}

func (e *Error) Error() string {
	if e.Fix == "" {
		return e.Detail
	}
	return e.Detail + "; fix: " + e.Fix
}

func (e *Error) Unwrap() error { return e.Err }
