package pinning

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"

	"github.com/spacecaptain/spacecaptain/internal/atomicfile"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// Allow adds e to l, or gives the pin already listed e's name and comment;
// it reports whether l changed.
func (l *AllowList) Allow(e AllowEntry) bool {
	if l.index == nil {
		l.index = map[Pin]int{}
	}
	if i, ok := l.index[e.Pin]; ok {
		if l.Entries[i] == e {
			return false
		}
		l.Entries[i] = e
		return true
	}
	l.index[e.Pin] = len(l.Entries)
	l.Entries = append(l.Entries, e)
	return true
}

// Remove removes pin p from l and reports whether it was listed.
func (l *AllowList) Remove(p Pin) bool {
	i, ok := l.index[p]
	if !ok {
		return false
	}
	l.Entries = append(l.Entries[:i], l.Entries[i+1:]...)
	delete(l.index, p)
	for j := i; j < len(l.Entries); j++ {
		l.index[l.Entries[j].Pin] = j
	}
	return true
}

// Revoke adds e to l and reports whether it was not listed yet.
func (l *RevokeList) Revoke(e RevokeEntry) bool {
	if l.pins == nil {
		l.pins, l.serials, l.bySerial = map[Pin]struct{}{}, map[serialKey]struct{}{}, map[string]struct{}{}
	}
	if e.Serial != "" {
		k := serialKey{e.Issuer, e.Serial}
		if _, ok := l.serials[k]; ok {
			return false
		}
		l.serials[k] = struct{}{}
		l.bySerial[e.Serial] = struct{}{}
	} else {
		if _, ok := l.pins[e.Pin]; ok {
			return false
		}
		l.pins[e.Pin] = struct{}{}
	}
	l.Entries = append(l.Entries, e)
	return true
}

// DefaultListLockTimeout is how long [EditAllowList] and [EditRevokeList]
// wait for another process's lock on the file.
const DefaultListLockTimeout = 10 * time.Second

// EditAllowList is the locked read-modify-write of an allow list file: it
// takes an exclusive lock (path plus ".lock"), reads the file (a missing
// one is empty), lets fn change the list and, when fn reports a change,
// writes it to a temporary file renamed into place. Concurrent edits from
// several processes are serialized and lose nothing; a server watching
// the file never sees half of one. A new file is made 0644: a list of
// pins is not secret.
func EditAllowList(path string, fn func(*AllowList) (bool, error)) error {
	return editList(path, trustfile.AllowList, func(data []byte) ([]byte, bool, error) {
		l, err := ParseAllowList(data)
		if err != nil {
			return nil, false, err
		}
		changed, err := fn(l)
		if err != nil || !changed {
			return nil, false, err
		}
		return l.Render(), true, nil
	})
}

// EditRevokeList is [EditAllowList] for a revoke list.
func EditRevokeList(path string, fn func(*RevokeList) (bool, error)) error {
	return editList(path, trustfile.RevokeList, func(data []byte) ([]byte, bool, error) {
		l, err := ParseRevokeList(data)
		if err != nil {
			return nil, false, err
		}
		changed, err := fn(l)
		if err != nil || !changed {
			return nil, false, err
		}
		return l.Render(), true, nil
	})
}

// ReadAllowList reads and parses an allow list file.
func ReadAllowList(path string) (*AllowList, error) {
	data, _, err := trustfile.Read(path, trustfile.AllowList)
	if err != nil {
		return nil, err
	}
	l, err := ParseAllowList(data)
	return l, withPath(err, path)
}

// ReadRevokeList reads and parses a revoke list file.
func ReadRevokeList(path string) (*RevokeList, error) {
	data, _, err := trustfile.Read(path, trustfile.RevokeList)
	if err != nil {
		return nil, err
	}
	l, err := ParseRevokeList(data)
	return l, withPath(err, path)
}

func withPath(err error, path string) error {
	var le *ListError
	if errors.As(err, &le) {
		le.Path = path
	}
	return err
}

func editList(path string, k trustfile.Kind, fn func([]byte) ([]byte, bool, error)) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating the directory of %q: %w", path, err)
	}
	lock := flock.New(path + ".lock")
	ctx, cancel := context.WithTimeout(context.Background(), DefaultListLockTimeout)
	defer cancel()
	locked, err := lock.TryLockContext(ctx, 5*time.Millisecond)
	if err != nil || !locked {
		if err == nil {
			err = ctx.Err()
		}
		return fmt.Errorf("locking %q: %w (another process may be holding %q)", path, err, lock.Path())
	}
	defer lock.Unlock()
	data, fi, err := trustfile.Read(path, k)
	perm := fs.FileMode(0o644)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		perm = fi.Mode().Perm()
	}
	out, changed, err := fn(data)
	if err != nil {
		return withPath(err, path)
	}
	if !changed {
		return nil
	}
	if err := atomicfile.WriteFile(path, out, atomicfile.Options{Perm: perm, Overwrite: true}); err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	return nil
}
