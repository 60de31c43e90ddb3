package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// ErrExists is returned (wrapped) when the target exists and
// [Options.Overwrite] is false. It matches [fs.ErrExist] too.
var ErrExists error = existsError{}

type existsError struct{}

func (existsError) Error() string        { return "file already exists" }
func (existsError) Is(target error) bool { return target == fs.ErrExist }

// Options controls a write. The zero value writes a new file with mode 0600
// and refuses to replace an existing one.
type Options struct {
	// Perm is the final file mode. Zero means 0600, the safe choice for keys.
	Perm fs.FileMode

	// Overwrite allows replacing an existing file. When false, a file that
	// exists at the target (even one created while we wrote) is left alone and
	// the write fails with [ErrExists].
	Overwrite bool
}

// WriteFile atomically writes data to path. See [Write].
func WriteFile(path string, data []byte, opts Options) error {
	return Write(path, opts, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write atomically replaces (or creates) path with what write produces. If
// write returns an error, or any step fails, the target is untouched and the
// temporary file is removed.
func Write(path string, opts Options, write func(w io.Writer) error) (err error) {
	perm := opts.Perm
	if perm == 0 {
		perm = 0o600
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if !opts.Overwrite {
		// A cheap early check gives a clear error before any work; the link
		// below is what actually guarantees no clobbering.
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("writing %q: %w", path, ErrExists)
		}
	}

	// CreateTemp makes the file 0600, so a key is never briefly readable by
	// others, whatever the umask.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()

	if err := write(f); err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	if perm != 0o600 {
		if err := f.Chmod(perm); err != nil {
			return fmt.Errorf("writing %q: setting mode: %w", path, err)
		}
	}
	// fsync before rename: otherwise a crash can leave the new name pointing
	// at an empty file on filesystems that reorder metadata and data writes.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %q: syncing: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}

	if opts.Overwrite {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("writing %q: %w", path, err)
		}
	} else {
		// link(2) fails with EEXIST instead of replacing: no clobbering even
		// when another process created the file after our check.
		if err := os.Link(tmp, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("writing %q: %w", path, ErrExists)
			}
			return fmt.Errorf("writing %q: %w", path, err)
		}
		os.Remove(tmp)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that a rename or link in it survives a crash.
// It does nothing on Windows, where directories cannot be opened for syncing.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %q: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %q: %w", dir, err)
	}
	return nil
}
