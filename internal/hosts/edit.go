package hosts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"
	"github.com/spacecaptain/spacecaptain/internal/atomicfile"
)

// lockTimeout bounds the wait for another process editing the file.
const lockTimeout = 10 * time.Second

// AddResult says what [AddPins] changed.
type AddResult struct {
	// NewBlock is true when a "Host NAME" block was appended.
	NewBlock bool
	// Added are the pins written; pins the block already had are not.
	Added []string
	// Line is the Host line of the block the pins are in.
	Line int
}

// AddPins adds pin lines to the block of the host name (the one whose Host
// line names exactly that single pattern), appending a block "Host NAME"
// with "server SERVER" when there is none. Pins the block already has are
// left alone, so it can run again safely. Everything else in the file
// (comments, order, spacing) stays byte for byte. The file is edited under
// a lock (PATH.lock) and replaced atomically; a new file is made 0644 in a
// directory made 0700. A file that does not parse is not touched: the
// error is a *[ParseError].
func AddPins(path, name, server string, pins []string) (AddResult, error) {
	return AddValues(path, name, server, "pin", pins)
}

// AddValues is [AddPins] for any repeatable key: it adds "KEY VALUE" lines
// (revoked-pin, for instance) to the block of the host name.
func AddValues(path, name, server, key string, pins []string) (AddResult, error) {
	if name == "" || strings.ContainsAny(name, " \t*?!\"") {
		return AddResult{}, fmt.Errorf("host name %q: want a plain name for the Host line", name)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return AddResult{}, fmt.Errorf("making the directory of the hosts file: %w", err)
	}
	lock := flock.New(path + ".lock")
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	ok, err := lock.TryLockContext(ctx, 50*time.Millisecond)
	if err != nil || !ok {
		return AddResult{}, fmt.Errorf("locking the hosts file %s: another process holds %s.lock (%v)", path, path, err)
	}
	defer lock.Unlock()

	data, err := readCapped(path)
	mode := os.FileMode(0o644)
	switch {
	case err == nil:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	case errNotExist(err):
		data = nil
	default:
		return AddResult{}, err
	}
	f, err := Parse(path, data)
	if err != nil {
		return AddResult{}, err
	}
	var blk *Block
	for i := range f.Blocks {
		b := &f.Blocks[i]
		if b.Line != 0 && len(b.Patterns) == 1 && strings.EqualFold(b.Patterns[0], name) {
			blk = b
			break
		}
	}
	var res AddResult
	have := map[string]bool{}
	if blk != nil {
		for _, s := range blk.Settings {
			if s.Key == key {
				have[s.Value] = true
			}
		}
	}
	var add []string
	for _, p := range pins {
		if !have[p] {
			have[p] = true
			add = append(add, p)
		}
	}
	res.Added = add
	if len(add) == 0 {
		if blk != nil {
			res.Line = blk.Line
		}
		return res, nil
	}
	text := string(data)
	var lines []string
	for _, p := range add {
		lines = append(lines, "    "+key+" "+Quote(p))
	}
	if blk == nil {
		res.NewBlock = true
		if text != "" && !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		if text != "" {
			text += "\n"
		}
		res.Line = strings.Count(text, "\n") + 1
		block := "Host " + name + "\n"
		if server != "" {
			block += "    server " + Quote(server) + "\n"
		}
		text += block + strings.Join(lines, "\n") + "\n"
	} else {
		res.Line = blk.Line
		// After the block's last setting (or its Host line).
		after := blk.Line
		if n := len(blk.Settings); n > 0 {
			after = blk.Settings[n-1].Line
		}
		all := strings.SplitAfter(text, "\n")
		if !strings.HasSuffix(all[after-1], "\n") {
			all[after-1] += "\n"
		}
		insert := strings.Join(lines, "\n") + "\n"
		text = strings.Join(all[:after], "") + insert + strings.Join(all[after:], "")
	}
	if _, err := Parse(path, []byte(text)); err != nil {
		return AddResult{}, fmt.Errorf("the edited hosts file would not parse (not written): %w", err)
	}
	if err := atomicfile.WriteFile(path, []byte(text), atomicfile.Options{Perm: mode, Overwrite: true}); err != nil {
		return AddResult{}, fmt.Errorf("writing the hosts file: %w", err)
	}
	return res, nil
}
