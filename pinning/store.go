package pinning

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/spacecaptain/spacecaptain/internal/atomicfile"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// DefaultLockTimeout is how long a [Store] waits for another process's lock
// on the file when its options give no timeout.
const DefaultLockTimeout = 10 * time.Second

// lastSeenResolution is how stale a current pin's last-seen time may be
// before a handshake rewrites it. Without it every connection would rewrite
// (and fsync) the file; a load test makes thousands a second.
const lastSeenResolution = time.Minute

// storeHeader starts a store file this package creates.
const storeHeader = `# Space Captain known hosts: the keys of TLS servers this user trusts.
# One server per line: HOST:PORT, then its pins, each current= or backup=,
# with when it was first and last seen and how it was learned.
# Manage with: sc-cert pin list | add HOST:PORT PIN | forget HOST:PORT
`

// StoreOptions configures a [Store]. The zero value uses the file at
// [DefaultStorePath].
type StoreOptions struct {
	// Path is the known-hosts file. Empty means [DefaultStorePath]. The
	// file and its directory are created on the first write. A symbolic
	// link is followed, and the file it names is replaced.
	Path string

	// LockTimeout bounds the wait for another process that is updating the
	// file. Zero means [DefaultLockTimeout].
	LockTimeout time.Duration

	// Now returns the current time, for the first-seen times [Store.Add]
	// records. Nil means time.Now.
	Now func() time.Time
}

// Store is a known-hosts file: for each server ("host:port"), the pins of
// the keys it is trusted with. The file format is described in the package
// documentation ("The known hosts file").
//
// A Store is safe for concurrent use by goroutines and by processes: every
// change is a read-modify-write under an exclusive file lock (a file named
// like the store plus ".lock", beside it), written to a temporary file and
// renamed into place, so a reader never sees a half-written file and no
// writer loses another's entry. Lines that are not understood are kept
// byte for byte; a line that cannot be parsed is reported with its line
// number ([*LineError]) and makes its host fail closed, but never erases
// anything.
//
// The file decides whom this user trusts, so it is read only when it is a
// regular file of at most 16 MiB (a runaway or hostile file cannot exhaust
// memory on every handshake), owned by this user or root, and neither it nor
// its directory is writable by group or others: another local user who
// could write it could make any server trusted. Such a file is refused
// with an error wrapping [ErrFileOwner], [ErrFileWritable],
// [ErrNotRegularFile] or [ErrFileTooLarge] that names the fix.
//
// A Store holds no state besides its options: every call reads the file.
// Make one with [NewStore].
type Store struct {
	path        string
	custom      bool
	lockTimeout time.Duration
	now         func() time.Time
}

// DefaultStorePath returns the default known-hosts file:
// space-captain/known_hosts in the user's configuration directory
// ([os.UserConfigDir]: $XDG_CONFIG_HOME or ~/.config on Linux,
// ~/Library/Application Support on macOS, %AppData% on Windows).
func DefaultStorePath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the known hosts file: %w (give its path explicitly)", err)
	}
	return filepath.Join(dir, "space-captain", "known_hosts"), nil
}

// NewStore returns a store for the file opts names. It does not touch the
// file: a missing file is an empty store.
func NewStore(opts StoreOptions) (*Store, error) {
	s := &Store{path: opts.Path, custom: opts.Path != "", lockTimeout: opts.LockTimeout, now: opts.Now}
	if s.path == "" {
		p, err := DefaultStorePath()
		if err != nil {
			return nil, err
		}
		s.path = p
	}
	if s.lockTimeout <= 0 {
		s.lockTimeout = DefaultLockTimeout
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Path returns the store's file.
func (s *Store) Path() string { return s.path }

// Lookup returns the entry for host ("host:port"; any spelling of the same
// host and port finds it). It reports false, and no error, for a host that
// is not in the store.
//
// A line for host that cannot be parsed, or a second line for it, is a
// [*LineError]: the host fails closed rather than looking unknown. So does
// an unknown host while the file has a line whose host cannot even be read,
// because that line might be this host's.
func (s *Store) Lookup(host string) (Entry, bool, error) {
	h, err := canonicalHost(host)
	if err != nil {
		return Entry{}, false, fmt.Errorf("looking up a known host: %w", err)
	}
	e, err := s.lookup(h)
	if err != nil || e == nil {
		return Entry{}, false, err
	}
	return *e, true, nil
}

// lookup returns the entry of the canonical host, nil if it is unknown, or
// the error that makes it fail closed. It parses only the host's lines: it
// runs on every handshake.
func (s *Store) lookup(host string) (*Entry, error) {
	data, err := s.readData(s.path)
	if err != nil {
		return nil, err
	}
	return lookupLines(s.path, data, host)
}

// List returns the store's entries in file order, and a [*LineError] for
// each line that cannot be parsed (those lines are kept in the file).
func (s *Store) List() ([]Entry, []*LineError, error) {
	f, err := s.read()
	if err != nil {
		return nil, nil, err
	}
	var entries []Entry
	var problems []*LineError
	for _, l := range f.lines {
		switch {
		case l.err != nil:
			problems = append(problems, l.err)
		case l.entry != nil:
			entries = append(entries, l.entry.clone())
		}
	}
	return entries, problems, nil
}

// Add trusts pins for host ("host:port"), as sc-cert pin add does. For a
// host not in the store the first pin becomes its current pin and the
// others backups; for a known host every new pin is added as a backup (the
// first handshake that presents it makes it current). Pins already on file
// are left as they are. Added pins are marked [OriginAdded], so a server's
// announcements never remove them.
//
// A host whose line cannot be parsed is refused with its [*LineError]:
// forget the host first. A pin revoked for the host is refused with an
// error wrapping [ErrPinRevoked]: remove the mark first ([Store.Unrevoke]).
func (s *Store) Add(host string, pins ...Pin) error {
	h, err := canonicalHost(host)
	if err != nil {
		return fmt.Errorf("adding a known host: %w", err)
	}
	if len(pins) == 0 {
		return fmt.Errorf("adding %s: no pins given", h)
	}
	set, err := NewSet(pins[0], pins[1:]...)
	if err != nil {
		return fmt.Errorf("adding %s: %w", h, err)
	}
	if e, err := s.lookup(h); err == nil && e != nil {
		missing := false
		for _, p := range set.pins {
			if _, revoked := e.RevokedPin(p); revoked {
				return revokedAddError(s.path, h, p)
			}
			missing = missing || e.index(p) < 0
		}
		if !missing {
			return nil
		}
	}
	now := s.now().UTC().Truncate(time.Second)
	return s.modify(func(f *storeFile) (bool, error) {
		if err := f.hostError(h); err != nil {
			return false, err
		}
		i := f.find(h)
		if i < 0 {
			e := &Entry{Host: h}
			for j, p := range set.pins {
				r := PinRecord{Pin: p, Current: j == 0, FirstSeen: now, Origin: OriginAdded}
				if j > 0 {
					r.After = set.pins[0]
				}
				e.Pins = append(e.Pins, r)
			}
			f.append(e)
			return true, nil
		}
		e := f.lines[i].entry
		for _, p := range set.pins {
			if _, revoked := e.RevokedPin(p); revoked {
				return false, revokedAddError(s.path, h, p)
			}
		}
		cur, hasCur := e.Current()
		changed := false
		for j, p := range set.pins {
			if e.index(p) >= 0 {
				continue
			}
			r := PinRecord{Pin: p, FirstSeen: now, Origin: OriginAdded}
			switch {
			case !hasCur && len(e.Pins) == 0 && j == 0:
				// A host that had only revoked marks: the first pin
				// given becomes its current one, as for a new host.
				r.Current = true
				cur, hasCur = r, true
			case hasCur:
				r.After = cur.Pin
			}
			e.Pins = append(e.Pins, r)
			changed = true
		}
		f.lines[i].dirty = changed
		return changed, nil
	})
}

func revokedAddError(path, host string, p Pin) error {
	return fmt.Errorf("adding %s: the pin %v is revoked for it in %s; if the revocation was a mistake, remove the mark first: %w", host, p, path, ErrPinRevoked)
}

// Revoke marks pin revoked for host ("host:port"), as sc-cert pin revoke
// does: the pin leaves the host's trusted pins, and from then on a server
// presenting it is refused with [*RevokedKeyError], and no announcement can
// bring it back; only [Store.Unrevoke] removes the mark. A host not in the
// store gets a line with only the mark, so that it is never trusted on
// first use with that key. It reports whether anything changed.
func (s *Store) Revoke(host string, pin Pin) (bool, error) {
	h, err := canonicalHost(host)
	if err != nil {
		return false, fmt.Errorf("revoking a key: %w", err)
	}
	if pin.IsZero() {
		return false, fmt.Errorf("revoking a key of %s: no pin given", h)
	}
	now := s.now().UTC().Truncate(time.Second)
	changed := false
	err = s.modify(func(f *storeFile) (bool, error) {
		if err := f.hostError(h); err != nil {
			return false, err
		}
		i := f.find(h)
		if i < 0 {
			f.append(&Entry{Host: h, Revoked: []RevokedRecord{{Pin: pin, FirstSeen: now, Origin: OriginAdded}}})
			changed = true
			return true, nil
		}
		changed = f.lines[i].entry.revoke(pin, now, OriginAdded)
		f.lines[i].dirty = f.lines[i].dirty || changed
		return changed, nil
	})
	return changed, err
}

// Unrevoke removes the revoked mark of pin for host ("host:port"), as
// sc-cert pin unrevoke does. The pin is not trusted again by this: add it
// ([Store.Add]) or let trust on first use learn it. A line left with
// nothing is removed. It reports whether a mark was removed.
func (s *Store) Unrevoke(host string, pin Pin) (bool, error) {
	h, err := canonicalHost(host)
	if err != nil {
		return false, fmt.Errorf("removing a revoked mark: %w", err)
	}
	if e, err := s.lookup(h); err == nil && (e == nil || !hasRevoked(e, pin)) {
		return false, nil
	}
	removed := false
	err = s.modify(func(f *storeFile) (bool, error) {
		if err := f.hostError(h); err != nil {
			return false, err
		}
		i := f.find(h)
		if i < 0 {
			return false, nil
		}
		e := f.lines[i].entry
		kept := e.Revoked[:0]
		for _, r := range e.Revoked {
			if r.Pin.Equal(pin) {
				removed = true
				continue
			}
			kept = append(kept, r)
		}
		e.Revoked = kept
		if !removed {
			return false, nil
		}
		if len(e.Pins) == 0 && len(e.Revoked) == 0 {
			f.lines = append(f.lines[:i], f.lines[i+1:]...)
		} else {
			f.lines[i].dirty = true
		}
		return true, nil
	})
	return removed, err
}

func hasRevoked(e *Entry, p Pin) bool {
	_, ok := e.RevokedPin(p)
	return ok
}

// revoke marks p revoked in e, learned at now from src; a pin that was
// trusted leaves e.Pins. It reports whether e changed.
func (e *Entry) revoke(p Pin, now time.Time, src Origin) bool {
	changed := false
	if j := e.index(p); j >= 0 {
		e.Pins = append(e.Pins[:j], e.Pins[j+1:]...)
		changed = true
	}
	if _, ok := e.RevokedPin(p); !ok {
		e.Revoked = append(e.Revoked, RevokedRecord{Pin: p, FirstSeen: now.UTC().Truncate(time.Second), Origin: src})
		changed = true
	}
	return changed
}

// Forget removes host ("host:port") from the store, as sc-cert pin forget
// does: its pins and any unparsable or duplicate line for it. It reports
// whether anything was removed; forgetting an unknown host is not an error.
// Afterwards the host is unknown, so the next connection in [ModeTOFU]
// trusts it on first use again — but never with a key revoked for it: the
// host's revoked marks are kept (as OpenSSH keeps @revoked lines), on a
// line that holds only them. Versions of this package before revocation
// read such a line as broken ("no pins"), so they fail closed for the host
// rather than trusting it on first use.
func (s *Store) Forget(host string) (bool, error) {
	h, err := canonicalHost(host)
	if err != nil {
		return false, fmt.Errorf("forgetting a known host: %w", err)
	}
	// Forgetting a host that has no line takes no lock and creates no
	// file, directory or lock file.
	if e, err := s.lookup(h); err == nil && e == nil {
		return false, nil
	}
	removed := false
	err = s.modify(func(f *storeFile) (bool, error) {
		kept := f.lines[:0]
		for _, l := range f.lines {
			if l.host != h {
				kept = append(kept, l)
				continue
			}
			if l.entry != nil && len(l.entry.Revoked) > 0 {
				if len(l.entry.Pins) == 0 {
					kept = append(kept, l)
					continue
				}
				l.entry.Pins = nil
				l.dirty = true
				kept = append(kept, l)
			}
			removed = true
		}
		f.lines = kept
		return removed, nil
	})
	return removed, err
}

// recordHandshake records that host presented the key pin in a verified,
// completed handshake at now: a new host is added with pin as its current
// pin (if mayAdd; else [*UnknownHostError]); a known pin gets its last-seen
// time, and a backup pin becomes current, the former current pin staying on
// as a backup. A pin the host is not trusted with is a [*KeyError]: the
// store is never changed to trust a key the entry does not already trust.
func (s *Store) recordHandshake(host string, pin Pin, now time.Time, mayAdd bool) (Recorded, error) {
	// Most handshakes change nothing: check without the lock first.
	if e, err := s.lookup(host); err == nil && e != nil {
		if changed, err := e.applyHandshake(s.path, pin, now); err == nil && !changed {
			return Recorded{}, nil
		}
	}
	var rec Recorded
	err := s.modify(func(f *storeFile) (bool, error) {
		before := f.entryCopy(host)
		i, changed, err := f.applyHandshake(s.path, host, pin, now, mayAdd)
		if err != nil {
			return false, err
		}
		rec = diffRecorded(before, f.lines[i].entry, pin)
		return changed, nil
	})
	return rec, err
}

// recordAnnounced records a handshake as [Store.recordHandshake] does, then
// the host's own announcement of its keys, made inside that verified
// session: the revocations it may make ([Entry.applyRevocations], judged
// against the entry as it was before this handshake), then its next keys
// ([Entry.applyAnnouncement]).
func (s *Store) recordAnnounced(host string, pin Pin, next, revoked []Pin, now time.Time, mayAdd bool) (Recorded, error) {
	if e, err := s.lookup(host); err == nil && e != nil {
		before := e.clone()
		changed, err := e.applyHandshake(s.path, pin, now)
		if err == nil && !changed {
			honoured, _ := e.applyRevocations(&before, pin, revoked, now)
			if len(honoured) == 0 && !e.applyAnnouncement(pin, next, now) {
				return Recorded{Ignored: ignoredRevocations(&before, pin, revoked)}, nil
			}
		}
	}
	var rec Recorded
	err := s.modify(func(f *storeFile) (bool, error) {
		before := f.entryCopy(host)
		i, changed, err := f.applyHandshake(s.path, host, pin, now, mayAdd)
		if err != nil {
			return false, err
		}
		e := f.lines[i].entry
		honoured, ignored := e.applyRevocations(before, pin, revoked, now)
		if len(honoured) > 0 {
			changed = true
		}
		if e.applyAnnouncement(pin, next, now) {
			changed = true
		}
		f.lines[i].dirty = f.lines[i].dirty || changed
		rec = diffRecorded(before, e, pin)
		rec.Revoked, rec.Ignored = honoured, ignored
		return changed, nil
	})
	return rec, err
}

// ignoredRevocations returns what [Entry.applyRevocations] would ignore of
// revoked, for a fast path that changed nothing.
func ignoredRevocations(before *Entry, pin Pin, revoked []Pin) []IgnoredRevocation {
	e := before.clone()
	_, ignored := e.applyRevocations(before, pin, revoked, time.Time{})
	return ignored
}

// applyRevocations applies to e the revocations a host announced in a
// session verified with the key pin; before is the host's entry as it was
// before that handshake (nil for a host seen for the first time). A key
// may never revoke its own successor, so "revoked P" is honoured only when
// P is already on file for the host (trusted, or already revoked), P is not
// the verified key, and the verified key is P's successor: it was recorded
// while P was current (announced by P, or added by a person then; see
// [PinRecord.After], followed through intermediate keys), or it was added
// by a person and P is not its own successor. Without the rule a
// machine-in-the-middle holding a stolen old key could announce "revoked
// NEW" and lock the client out of the real server. A pin not on file is
// a no-op, not reported. It returns the pins newly revoked and the lines
// ignored, with why.
func (e *Entry) applyRevocations(before *Entry, pin Pin, revoked []Pin, now time.Time) (honoured []Pin, ignored []IgnoredRevocation) {
	ignore := func(p Pin, why string) { ignored = append(ignored, IgnoredRevocation{Pin: p, Reason: why}) }
	for _, p := range revoked {
		switch {
		case p.Equal(pin):
			ignore(p, "it is the key this session was verified with: honouring it would lock this client out")
		case hasRevoked(e, p):
			// Already revoked: nothing to do, nothing to report.
		case before == nil || before.index(p) < 0:
			// Not on file (a host seen for the first time, or a key this
			// client never trusted or has dropped): nothing to revoke,
			// and nothing worth reporting on every connection.
		case before.index(pin) < 0:
			ignore(p, "the verified key was not on file before this session")
		case before.successorOf(pin, p):
			e.revoke(p, now, OriginAnnounced)
			honoured = append(honoured, p)
		case before.addedAfter(pin, p):
			e.revoke(p, now, OriginAnnounced)
			honoured = append(honoured, p)
		default:
			ignore(p, "the verified key is not the revoked key's successor (a key may never revoke its own successor)")
		}
	}
	return honoured, ignored
}

// addedAfter reports whether a person added the key v after the key p
// was on file, with nothing saying that p came after v: v then succeeds p
// by that person's word. Pins added together (sc-cert pin add 'A;B', or a
// line written before the after= attribute existed) have the same time
// and do not qualify: without an order, honouring the revocation could
// let the older key revoke the newer.
func (e *Entry) addedAfter(v, p Pin) bool {
	i, j := e.index(v), e.index(p)
	if i < 0 || j < 0 || e.Pins[i].Origin != OriginAdded || e.successorOf(p, v) {
		return false
	}
	return !e.Pins[j].FirstSeen.IsZero() && e.Pins[i].FirstSeen.After(e.Pins[j].FirstSeen)
}

// successorOf reports whether the key v was recorded, directly or through
// keys in between, while the key p was current: whether following the
// After links from v reaches p.
func (e *Entry) successorOf(v, p Pin) bool {
	cur := v
	for range len(e.Pins) + 1 {
		i := e.index(cur)
		if i < 0 {
			return false
		}
		a := e.Pins[i].After
		switch {
		case a.IsZero():
			return false
		case a.Equal(p):
			return true
		}
		cur = a
	}
	return false
}

// diffRecorded describes the change from before (nil for a new host) to
// after, made by a handshake that presented pin.
func diffRecorded(before, after *Entry, pin Pin) Recorded {
	var r Recorded
	if before == nil || len(before.Pins) == 0 {
		// A host unknown, or known only by its revoked marks.
		r.FirstUse = true
	} else if j := before.index(pin); j >= 0 && !before.Pins[j].Current {
		r.Promoted = true
	}
	for _, p := range after.Pins {
		if !p.Pin.Equal(pin) && (before == nil || before.index(p.Pin) < 0) {
			r.Added = append(r.Added, p.Pin)
		}
	}
	if before != nil {
		for _, p := range before.Pins {
			if after.index(p.Pin) < 0 && !hasRevoked(after, p.Pin) {
				r.Dropped = append(r.Dropped, p.Pin)
			}
		}
	}
	return r
}

// modify is the locked read-modify-write: take the lock, read the file, let
// fn change it, and if fn reports a change, write the file to a temporary
// file and rename it into place.
func (s *Store) modify(fn func(f *storeFile) (bool, error)) error {
	target, err := s.target()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return fmt.Errorf("creating the directory of the known hosts file: %w", err)
	}
	lock := flock.New(target + ".lock")
	ctx, cancel := context.WithTimeout(context.Background(), s.lockTimeout)
	defer cancel()
	locked, err := lock.TryLockContext(ctx, 5*time.Millisecond)
	if err != nil || !locked {
		if err == nil {
			err = ctx.Err()
		}
		return fmt.Errorf("locking the known hosts file %q: %w (another process may be holding %q)", s.path, err, lock.Path())
	}
	defer lock.Unlock()

	f, err := s.readFile(target)
	if err != nil {
		return err
	}
	changed, err := fn(f)
	if err != nil || !changed {
		return err
	}
	perm := fs.FileMode(0o600)
	if fi, err := os.Stat(target); err == nil {
		perm = fi.Mode().Perm()
	}
	if err := atomicfile.WriteFile(target, f.render(), atomicfile.Options{Perm: perm, Overwrite: true}); err != nil {
		return fmt.Errorf("updating the known hosts file: %w", err)
	}
	return nil
}

// target returns the file to replace: the store's path, or the file it
// links to, so that a store kept as a symbolic link (dotfile managers do
// this) stays one.
func (s *Store) target() (string, error) {
	fi, err := os.Lstat(s.path)
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return s.path, nil
	}
	t, err := filepath.EvalSymlinks(s.path)
	if err != nil {
		return "", fmt.Errorf("following the known hosts file %q, a symbolic link: %w", s.path, err)
	}
	return t, nil
}

func (s *Store) read() (*storeFile, error) {
	return s.readFile(s.path)
}

func (s *Store) readFile(path string) (*storeFile, error) {
	data, err := s.readData(path)
	if err != nil {
		return nil, err
	}
	if data == nil {
		return &storeFile{path: s.path, created: true}, nil
	}
	return parseStore(s.path, data), nil
}

// readData returns the file's content, nil if there is no file. The file
// goes through the hardened reader every trust file does: a regular file of
// at most 16 MiB, owned by this user or root and writable by nobody else,
// in a directory nobody else may write to (see [Store]).
func (s *Store) readData(path string) ([]byte, error) {
	data, _, err := trustfile.Read(path, trustfile.KnownHosts)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the known hosts file %q: %w", s.path, err)
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// storeFile is a parsed store file: every line, in order, with its entry or
// its error, so that it renders back byte for byte except where changed.
type storeFile struct {
	path    string
	lines   []storeLine
	created bool // the file did not exist: write the header first
}

type storeLine struct {
	raw   string     // the line as read, without its "\n"
	entry *Entry     // the parsed entry; nil for blanks, comments and errors
	err   *LineError // why the line cannot be used
	host  string     // the host the line is for, if known
	dirty bool       // render entry instead of raw
}

func parseStore(path string, data []byte) *storeFile {
	f := &storeFile{path: path}
	text := string(data)
	text = strings.TrimSuffix(text, "\n")
	if len(data) == 0 {
		return f
	}
	firstLine := map[string]int{}
	for i, raw := range strings.Split(text, "\n") {
		n := i + 1
		l := storeLine{raw: raw}
		fields := splitFields(raw)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			f.lines = append(f.lines, l)
			continue
		}
		if h, err := canonicalHost(fields[0]); err == nil {
			l.host = h
		}
		e, err := ParseLine(raw)
		switch {
		case err != nil:
			l.err = &LineError{Path: path, Line: n, Host: l.host, Err: err}
		case firstLine[e.Host] != 0:
			l.err = &LineError{Path: path, Line: n, Host: e.Host, Err: fmt.Errorf("%s is also on line %d: want one line per host", e.Host, firstLine[e.Host])}
		default:
			e.Line = n
			l.entry = &e
			firstLine[e.Host] = n
		}
		f.lines = append(f.lines, l)
	}
	return f
}

func (f *storeFile) render() []byte {
	var b bytes.Buffer
	if f.created {
		b.WriteString(storeHeader)
	}
	for _, l := range f.lines {
		if l.dirty && l.entry != nil {
			b.WriteString(l.entry.String())
		} else {
			b.WriteString(l.raw)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func (f *storeFile) append(e *Entry) {
	f.lines = append(f.lines, storeLine{entry: e, host: e.Host, dirty: true})
}

// entryCopy returns a copy of host's entry, or nil.
func (f *storeFile) entryCopy(host string) *Entry {
	if i := f.find(host); i >= 0 {
		e := f.lines[i].entry.clone()
		return &e
	}
	return nil
}

// find returns the index of host's entry line, or -1.
func (f *storeFile) find(host string) int {
	for i, l := range f.lines {
		if l.entry != nil && l.entry.Host == host {
			return i
		}
	}
	return -1
}

// hostError returns the first error of a line for host.
func (f *storeFile) hostError(host string) error {
	for _, l := range f.lines {
		if l.err != nil && l.host == host {
			return l.err
		}
	}
	return nil
}

// lookup returns the index of host's entry, -1 if the host is unknown, or
// the error that makes it fail closed (see [Store.Lookup]).
func (f *storeFile) lookup(host string) (int, error) {
	if err := f.hostError(host); err != nil {
		return -1, err
	}
	if i := f.find(host); i >= 0 {
		return i, nil
	}
	for _, l := range f.lines {
		if l.err != nil && l.host == "" {
			return -1, unreadableHostError(l.err, host)
		}
	}
	return -1, nil
}

// applyHandshake is the change a verified handshake makes; see
// [Store.recordHandshake]. It returns the index of host's entry.
func (f *storeFile) applyHandshake(path, host string, pin Pin, now time.Time, mayAdd bool) (int, bool, error) {
	i, err := f.lookup(host)
	if err != nil {
		return -1, false, err
	}
	if i < 0 {
		if !mayAdd {
			return -1, false, &UnknownHostError{Host: host, Got: pin, Path: path}
		}
		now = now.UTC().Truncate(time.Second)
		f.append(&Entry{Host: host, Pins: []PinRecord{{Pin: pin, Current: true, FirstSeen: now, LastSeen: now, Origin: OriginFirstUse}}})
		return len(f.lines) - 1, true, nil
	}
	if e := f.lines[i].entry; len(e.Pins) == 0 {
		// A host with only revoked marks: first use again, but never
		// with a revoked key.
		if r, revoked := e.RevokedPin(pin); revoked {
			return -1, false, e.revokedError(path, r)
		}
		if !mayAdd {
			return -1, false, &UnknownHostError{Host: host, Got: pin, Path: path}
		}
		now = now.UTC().Truncate(time.Second)
		e.Pins = []PinRecord{{Pin: pin, Current: true, FirstSeen: now, LastSeen: now, Origin: OriginFirstUse}}
		f.lines[i].dirty = true
		return i, true, nil
	}
	changed, err := f.lines[i].entry.applyHandshake(path, pin, now)
	if err != nil {
		return -1, false, err
	}
	f.lines[i].dirty = f.lines[i].dirty || changed
	return i, changed, nil
}

// applyHandshake records in e a verified handshake that presented pin at
// now: pin gets its last-seen time, and becomes the current pin if it was
// a backup (the former current pin stays, as a backup). A pin e does not
// trust is a [*KeyError], and e is left alone. It reports whether e
// changed; a current pin seen less than lastSeenResolution ago is not.
func (e *Entry) applyHandshake(path string, pin Pin, now time.Time) (bool, error) {
	now = now.UTC().Truncate(time.Second)
	if r, revoked := e.RevokedPin(pin); revoked {
		return false, e.revokedError(path, r)
	}
	j := e.index(pin)
	if j < 0 {
		return false, e.keyError(path, pin)
	}
	r := &e.Pins[j]
	if r.Current && !now.Before(r.LastSeen) && now.Sub(r.LastSeen) < lastSeenResolution {
		return false, nil
	}
	for k := range e.Pins {
		e.Pins[k].Current = k == j
	}
	r.LastSeen = now
	return true, nil
}

// applyAnnouncement records in e the keys its host announced in a session
// verified with pin, which must already be e's current pin: each next pin
// becomes a backup (recorded as pin's successor), and learned pins
// ([Origin.learned]) no longer announced are dropped; pins a person added
// are kept. A pin revoked for the host is never learned again, whatever the
// announcement says. It reports whether e changed.
func (e *Entry) applyAnnouncement(pin Pin, next []Pin, now time.Time) bool {
	now = now.UTC().Truncate(time.Second)
	before := e.String()
	pins := []PinRecord{e.Pins[e.index(pin)]}
	announced := Set{pins: []Pin{pin}}
	for _, n := range next {
		if announced.Contains(n) || hasRevoked(e, n) {
			continue
		}
		announced.pins = append(announced.pins, n)
		if j := e.index(n); j >= 0 {
			r := e.Pins[j]
			r.Current = false
			pins = append(pins, r)
		} else {
			pins = append(pins, PinRecord{Pin: n, FirstSeen: now, Origin: OriginAnnounced, After: pin})
		}
	}
	for _, r := range e.Pins {
		if !announced.Contains(r.Pin) && !r.Origin.learned() {
			pins = append(pins, r)
		}
	}
	e.Pins = pins
	return e.String() != before
}

func (e *Entry) revokedError(path string, r RevokedRecord) *RevokedKeyError {
	return &RevokedKeyError{Host: e.Host, Pin: r.Pin, Since: r.FirstSeen, Origin: r.Origin, Path: path, Line: e.Line}
}

func (e *Entry) keyError(path string, got Pin) *KeyError {
	want := make([]PinRecord, 0, len(e.Pins))
	if c, ok := e.Current(); ok {
		want = append(want, c)
	}
	for _, r := range e.Pins {
		if !r.Current {
			want = append(want, r)
		}
	}
	return &KeyError{Host: e.Host, Want: want, Got: got, Path: path, Line: e.Line}
}

// lookupLines finds the entry of the canonical host in the store file data,
// with the result parseStore(path, data).lookup(host) gives (FuzzStoreFile
// checks that), but parsing only the host's own lines: it runs on every
// handshake. A line whose HOST:PORT is already canonical and differs from
// host is skipped after a glance at its first field; whether such lines can
// be read at all matters only when host turns out to be unknown.
func lookupLines(path string, data []byte, host string) (*Entry, error) {
	var (
		found    *Entry
		hostErr  *LineError
		deferred []int // line numbers skipped as another host's, for the unknown case
		lines    []string
	)
	text := string(data)
	for n := 1; len(text) > 0; n++ {
		var line string
		line, text, _ = strings.Cut(text, "\n")
		field := firstField(line)
		if field == "" || field[0] == '#' {
			continue
		}
		if field != host {
			if plainCanonical(field) {
				// canonicalHost(field) is field itself, or an error.
				deferred = append(deferred, n)
				lines = append(lines, line)
				continue
			}
			h, err := canonicalHost(field)
			if err != nil || h != host {
				deferred = append(deferred, n)
				lines = append(lines, line)
				continue
			}
		}
		e, err := ParseLine(line)
		switch {
		case hostErr != nil:
		case err != nil:
			hostErr = &LineError{Path: path, Line: n, Host: host, Err: err}
		case found != nil:
			hostErr = &LineError{Path: path, Line: n, Host: host, Err: fmt.Errorf("%s is also on line %d: want one line per host", host, found.Line)}
		default:
			e.Line = n
			found = &e
		}
	}
	if hostErr != nil {
		return nil, hostErr
	}
	if found != nil {
		return found, nil
	}
	for i, n := range deferred {
		if _, err := canonicalHost(firstField(lines[i])); err != nil {
			return nil, unreadableHostError(&LineError{Path: path, Line: n, Err: err}, host)
		}
	}
	return nil, nil
}

// unreadableHostError is the error for an unknown host while line le's
// host cannot be read.
func unreadableHostError(le *LineError, host string) *LineError {
	return &LineError{Path: le.Path, Line: le.Line, Err: fmt.Errorf(
		"%w; %s is not on any other line, but this one might be for it, so it is not trusted on first use until the line is fixed or removed", le.Err, host)}
}

// firstField returns the first field of a store line.
func firstField(line string) string {
	line = strings.TrimLeft(line, " \t\r")
	if i := strings.IndexAny(line, " \t\r"); i >= 0 {
		return line[:i]
	}
	return line
}

// plainCanonical reports whether canonicalHost(field), if it succeeds, is
// field itself: a host of lower-case letters, digits, '.', '-' and '_' not
// ending in '.' (a name, or an IPv4 address, which netip accepts only in
// its canonical form), and a port without a leading zero.
func plainCanonical(field string) bool {
	i := strings.LastIndexByte(field, ':')
	if i <= 0 || i == len(field)-1 || field[i-1] == '.' || field[i+1] == '0' {
		return false
	}
	for _, c := range []byte(field[:i]) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	for _, c := range []byte(field[i+1:]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
