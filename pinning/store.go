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
// forget the host first.
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
				e.Pins = append(e.Pins, PinRecord{Pin: p, Current: j == 0, FirstSeen: now, Origin: OriginAdded})
			}
			f.append(e)
			return true, nil
		}
		e := f.lines[i].entry
		changed := false
		for _, p := range set.pins {
			if e.index(p) < 0 {
				e.Pins = append(e.Pins, PinRecord{Pin: p, FirstSeen: now, Origin: OriginAdded})
				changed = true
			}
		}
		f.lines[i].dirty = changed
		return changed, nil
	})
}

// Forget removes host ("host:port") from the store, as sc-cert pin forget
// does: its entry and any unparsable or duplicate line for it. It reports
// whether anything was removed; forgetting an unknown host is not an error.
// Afterwards the host is unknown, so the next connection in [ModeTOFU]
// trusts it on first use again.
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
			if l.host == h {
				removed = true
				continue
			}
			kept = append(kept, l)
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
// session; see [Entry.applyAnnouncement].
func (s *Store) recordAnnounced(host string, pin Pin, next []Pin, now time.Time, mayAdd bool) (Recorded, error) {
	if e, err := s.lookup(host); err == nil && e != nil {
		changed, err := e.applyHandshake(s.path, pin, now)
		if err == nil && !changed && !e.applyAnnouncement(pin, next, now) {
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
		if f.lines[i].entry.applyAnnouncement(pin, next, now) {
			f.lines[i].dirty = true
			changed = true
		}
		rec = diffRecorded(before, f.lines[i].entry, pin)
		return changed, nil
	})
	return rec, err
}

// diffRecorded describes the change from before (nil for a new host) to
// after, made by a handshake that presented pin.
func diffRecorded(before, after *Entry, pin Pin) Recorded {
	var r Recorded
	if before == nil {
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
			if after.index(p.Pin) < 0 {
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
// becomes a backup, and learned pins ([Origin.learned]) no longer announced
// are dropped; pins a person added are kept. It reports whether e changed.
func (e *Entry) applyAnnouncement(pin Pin, next []Pin, now time.Time) bool {
	now = now.UTC().Truncate(time.Second)
	before := e.String()
	pins := []PinRecord{e.Pins[e.index(pin)]}
	announced := Set{pins: []Pin{pin}}
	for _, n := range next {
		if announced.Contains(n) {
			continue
		}
		announced.pins = append(announced.pins, n)
		if j := e.index(n); j >= 0 {
			r := e.Pins[j]
			r.Current = false
			pins = append(pins, r)
		} else {
			pins = append(pins, PinRecord{Pin: n, FirstSeen: now, Origin: OriginAnnounced})
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
