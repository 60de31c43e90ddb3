package servercmd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	"github.com/spacecaptain/spacecaptain/pinning"
)

// RevokedKeysFile is the default --revoked-keys file, beside the
// certificate: the pins of server keys the operator has revoked, which
// KEYS announces as "revoked" lines. sc-cert rotate --revoke-old appends
// to it.
const RevokedKeysFile = cli.RevokedKeysFile

// revokedKeysKind is how the revoked-keys file is read: it decides what
// clients stop trusting, so another user must not be able to write it.
var revokedKeysKind = trustfile.RevokedKeys

// maxRevokedKeys bounds the pins a revoked-keys file may hold: what one
// announcement may carry (pinning.MaxRevokedPins), so that clients never
// refuse the whole announcement for its size.
const maxRevokedKeys = pinning.MaxRevokedPins

// parseRevokedKeys reads a revoked-keys file: one pin per line
// (sha256//BASE64, or hex), blank lines and "#" comments ignored. The pins
// come back in file order, without duplicates, in the sha256// form.
func parseRevokedKeys(path string, data []byte) ([]string, error) {
	var pins []string
	seen := map[pinning.Pin]bool{}
	for n, line := range bytes.Split(data, []byte{'\n'}) {
		text := strings.TrimSpace(string(line))
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		if text == "" {
			continue
		}
		p, err := pinning.ParsePin(text)
		if err != nil {
			return nil, fmt.Errorf("revoked keys file %q, line %d: %w", path, n+1, err)
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		pins = append(pins, p.String())
	}
	if len(pins) > maxRevokedKeys {
		return nil, fmt.Errorf("revoked keys file %q: %d pins, more than the %d one KEYS reply may carry: drop those of keys no client can still trust", path, len(pins), maxRevokedKeys)
	}
	return pins, nil
}

// readRevokedKeys reads the file at path; a missing file is an empty list.
// sum fingerprints the content (zero for a missing file).
func readRevokedKeys(path string) (pins []string, sum [sha256.Size]byte, present bool, err error) {
	data, _, err := trustfile.Read(path, revokedKeysKind)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, sum, false, nil
	}
	if err != nil {
		return nil, sum, false, fmt.Errorf("reading the revoked keys file %q: %w", path, err)
	}
	pins, err = parseRevokedKeys(path, data)
	if err != nil {
		return nil, sum, true, err
	}
	return pins, sha256.Sum256(data), true, nil
}

// watchDir calls fn after file events in dir (debounced), until ctx ends.
// It watches the directory, not the file: files are replaced by rename
// and Kubernetes swaps a "..data" symlink, neither of which a watch on the
// file itself sees. A directory that cannot be watched is logged once;
// the periodic check still catches its changes.
func watchDir(ctx context.Context, log *slog.Logger, dir string, fn func()) {
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(dir)
	}
	if err != nil {
		if w != nil {
			w.Close()
		}
		log.WarnContext(ctx, "cannot watch a directory; changes there are picked up by the periodic check and SIGHUP", "path", dir, "err", err)
		return
	}
	defer w.Close()
	const debounce = 100 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case _, ok := <-w.Events:
			if !ok {
				return
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			log.DebugContext(ctx, "watch error", "path", dir, "err", err)
			timer.Reset(debounce)
		case <-timer.C:
			fn()
		}
	}
}

// revokedDir is the directory to watch for the revoked-keys file.
func revokedDir(path string) string { return filepath.Dir(path) }
