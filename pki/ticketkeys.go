package pki

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/atomicfile"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// Session-ticket key parameters.
const (
	// DefaultTicketKeyRotation is how often in-memory ticket keys are
	// replaced, and how long a key keeps decrypting tickets once it no
	// longer encrypts them (in memory) or has left the ticket-key file.
	// crypto/tls rotates its own keys daily and keeps them a week; in
	// memory we rotate twice as often and keep them one period, so a
	// ticket resumes for 12 to 24 hours and a stolen key opens at most a
	// day of recorded TLS 1.2 sessions (RFC 5077 tickets carry the master
	// secret).
	DefaultTicketKeyRotation = 12 * time.Hour

	// MaxTicketKeys is the most keys a ticket-key file may hold, and the
	// most a [TicketKeys] keeps: each resumption attempt tries them in
	// turn.
	MaxTicketKeys = 16

	// DefaultTicketKeysKeep is how many keys [RotateTicketKeyFile] leaves
	// in the file by default: the new one and the one before it.
	DefaultTicketKeysKeep = 2
)

// ticketKeysHeader opens every file [formatTicketKeys] writes.
const ticketKeysHeader = `# Space Captain TLS session-ticket keys. Keep this file secret (mode 0600):
# whoever holds it can decrypt the tickets of every server that loads it.
# One 32-byte key per line as 64 hex digits, newest first. The first key
# encrypts new tickets; every key decrypts. Lines starting with # are comments.
`

// ParseTicketKeys parses a ticket-key file: one key per line as 64 hex
// digits (32 bytes, as [tls.Config.SetSessionTicketKeys] takes them),
// newest first; blank lines and lines starting with "#" are ignored, as is
// white space around a key. It refuses a file with no key, more than
// [MaxTicketKeys], a key that is all zeros or appears twice, and anything
// else on a line; errors name the line.
func ParseTicketKeys(data []byte) ([][32]byte, error) {
	var keys [][32]byte
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		var k [32]byte
		if len(line) != hex.EncodedLen(len(k)) {
			return nil, fmt.Errorf("ticket keys line %d: got %d characters, want %d hex digits (a 32-byte key; make one with RotateTicketKeyFile)", i+1, len(line), hex.EncodedLen(len(k)))
		}
		if _, err := hex.Decode(k[:], line); err != nil {
			return nil, fmt.Errorf("ticket keys line %d: want hex digits: %w", i+1, err)
		}
		if k == [32]byte{} {
			return nil, fmt.Errorf("ticket keys line %d: the key is all zeros", i+1)
		}
		if slices.Contains(keys, k) {
			return nil, fmt.Errorf("ticket keys line %d: the key appears twice", i+1)
		}
		if len(keys) == MaxTicketKeys {
			return nil, fmt.Errorf("ticket keys line %d: more than %d keys", i+1, MaxTicketKeys)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("ticket keys: no key found")
	}
	return keys, nil
}

// formatTicketKeys returns keys in the file format [ParseTicketKeys]
// reads, with an explanatory header.
func formatTicketKeys(keys [][32]byte) []byte {
	b := []byte(ticketKeysHeader)
	for _, k := range keys {
		b = hex.AppendEncode(b, k[:])
		b = append(b, '\n')
	}
	return b
}

// TicketKeyFileOptions controls [RotateTicketKeyFile]. The zero value keeps
// [DefaultTicketKeysKeep] keys and uses crypto/rand.
type TicketKeyFileOptions struct {
	// Keep is how many keys the file holds afterwards, the new one
	// included, at most [MaxTicketKeys]. Default [DefaultTicketKeysKeep].
	Keep int

	// Rand is the source of the new key. Nil means crypto/rand.Reader.
	Rand io.Reader
}

// RotateTicketKeyFile puts a new random key first in the ticket-key file
// at path, keeps the newest Keep-1 keys already there, and replaces the
// file atomically with mode 0600; a missing file is created. A file that
// does not parse, or that others may read or could have planted (the rule
// of [KeyOptions.RequirePrivateFile]), is left alone and the error says
// why.
//
// Servers loading the file ([TicketKeysOptions.File]) encrypt with the new
// key once they reload it and keep accepting tickets under the others. Run
// it every [DefaultTicketKeyRotation] or so from one place (a shared volume,
// or one machine that copies the file to the others): two rotations racing
// on one file may lose a key, which costs clients a full handshake.
func RotateTicketKeyFile(path string, opts TicketKeyFileOptions) error {
	keep := opts.Keep
	if keep == 0 {
		keep = DefaultTicketKeysKeep
	}
	if keep < 1 || keep > MaxTicketKeys {
		return fmt.Errorf("rotating ticket keys %q: keep %d keys: want 1 to %d", path, keep, MaxTicketKeys)
	}
	var old [][32]byte
	// The keys kept must be ones nobody else could have planted: they
	// decrypt, and so let whoever knows them forge, session tickets.
	data, _, err := readFile(path, trustfile.TicketKeys)
	switch {
	case err == nil:
		if old, err = ParseTicketKeys(data); err != nil {
			return fmt.Errorf("rotating ticket keys %q: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("rotating ticket keys: %w", err)
	}
	k, err := newTicketKey(opts.Rand)
	if err != nil {
		return fmt.Errorf("rotating ticket keys %q: %w", path, err)
	}
	keys := append([][32]byte{k}, old...)
	keys = keys[:min(len(keys), keep)]
	if err := atomicfile.WriteFile(path, formatTicketKeys(keys), atomicfile.Options{Perm: keyFileMode, Overwrite: true}); err != nil {
		return fmt.Errorf("rotating ticket keys: %w", err)
	}
	return nil
}

func newTicketKey(r io.Reader) ([32]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	var k [32]byte
	if _, err := io.ReadFull(r, k[:]); err != nil {
		return k, fmt.Errorf("generating a ticket key: %w", err)
	}
	return k, nil
}

// TicketKeysOptions configures [TicketKeys]. The zero value generates keys
// in memory and replaces them every [DefaultTicketKeyRotation].
type TicketKeysOptions struct {
	// File is a ticket-key file ([ParseTicketKeys]) shared by the
	// instances behind one load balancer, so that a session from one
	// resumes on another. It is watched and reloaded like certificates.
	// Default "": keys are generated in memory and rotated on a schedule,
	// and only this process can resume its sessions.
	File string

	// Rotation is how often in-memory keys are replaced, and how long a
	// key keeps decrypting tickets after it stopped encrypting them (in
	// memory) or left the file. Default [DefaultTicketKeyRotation].
	Rotation time.Duration

	// RequirePrivateFile refuses a File that group or others may read or
	// write, or that another user could have planted, as
	// [KeyOptions.RequirePrivateFile] does for keys. Default false. Only a
	// regular file of at most 64 KiB is read, whatever it says.
	RequirePrivateFile bool

	// Interval and Debounce are as in [CertReloaderOptions]; they apply to File.
	// The periodic check also drops keys whose time is up.
	Interval time.Duration
	Debounce time.Duration

	// OnReload, when set, is called after every reload or rotation, with
	// the lock held (it must not call Reload). Default nil.
	OnReload func(TicketKeysEvent)

	// Logger receives reloads and rotations (Info), refused files (Warn,
	// once per distinct failure). Keys are never logged. Nil means
	// slog.Default().
	Logger *slog.Logger

	// Now returns the current time, for the schedule. Nil means time.Now.
	Now func() time.Time

	// Rand is the source of in-memory keys. Nil means crypto/rand.Reader.
	Rand io.Reader
}

// TicketKeysEvent describes one reload or rotation of [TicketKeys].
type TicketKeysEvent struct {
	Trigger Trigger
	Result  ReloadResult
	// Err says why the file was refused when Result is ReloadFailed.
	Err error
	// Keys is how many keys decrypt tickets now; the first of them
	// encrypts.
	Keys int
}

// TicketKeys encrypts and decrypts TLS session tickets with keys from a
// file shared by several servers, or generated in memory, and keeps keys
// that were replaced able to decrypt for one rotation period.
//
// It plugs into a server's tls.Config with two method values:
//
//	cfg.WrapSession = keys.WrapSession
//	cfg.UnwrapSession = keys.UnwrapSession
//
// rather than by calling SetSessionTicketKeys on that config: the server
// core clones the config it is given, and the clone would never see a later
// call. Behind the methods is a private tls.Config whose keys are swapped
// with [tls.Config.SetSessionTicketKeys], the one mutation crypto/tls
// allows on a live config.
//
// Run watches the file (or runs the in-memory schedule); Reload re-reads
// it now. A TicketKeys is safe for concurrent use; make one with
// [NewTicketKeys].
type TicketKeys struct {
	file        string
	rotation    time.Duration
	interval    time.Duration
	privateFile bool
	onReload    func(TicketKeysEvent)
	log         *slog.Logger
	now         func() time.Time
	rand        io.Reader
	w           watcher
	running     atomic.Bool
	crypt       *tls.Config // only its ticket keys are used
	mu          sync.Mutex  // guards what follows
	active      [][32]byte  // newest first; active[0] encrypts
	activeSince time.Time   // in memory: when active[0] began to encrypt
	retired     []retiredTicketKey
	rescheduled chan struct{} // poked when a key is retired, for Run
	fileSum     fileSum
	fail        failureLog
}

// retiredTicketKey decrypts until its time is up.
type retiredTicketKey struct {
	key   [32]byte
	until time.Time
}

// NewTicketKeys loads opts.File, or generates the first in-memory key. It
// fails when the file cannot be read or parsed. It starts no goroutine.
func NewTicketKeys(opts TicketKeysOptions) (*TicketKeys, error) {
	if opts.Rotation < 0 || opts.Debounce < 0 {
		return nil, errors.New("ticket keys: negative rotation or debounce")
	}
	if opts.Rotation == 0 {
		opts.Rotation = DefaultTicketKeyRotation
	}
	if opts.Debounce == 0 {
		opts.Debounce = defaultDebounce
	}
	if opts.Interval == 0 {
		opts.Interval = defaultCheckInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	k := &TicketKeys{
		file:        opts.File,
		rotation:    opts.Rotation,
		interval:    opts.Interval,
		privateFile: opts.RequirePrivateFile,
		onReload:    opts.OnReload,
		log:         opts.Logger,
		now:         opts.Now,
		rand:        opts.Rand,
		crypt:       &tls.Config{},
		rescheduled: make(chan struct{}, 1),
	}
	k.w = watcher{files: []string{k.file}, debounce: opts.Debounce, interval: opts.Interval, log: k.log, what: "ticket keys"}
	if _, err := k.reload(context.Background(), TriggerInitial); err != nil {
		return nil, err
	}
	return k, nil
}

// WrapSession encrypts a session ticket with the newest key. It is safe
// for use as a [tls.Config.WrapSession] callback.
func (k *TicketKeys) WrapSession(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	return k.crypt.EncryptTicket(cs, ss)
}

// UnwrapSession decrypts a session ticket with any current or retained
// key; a ticket none of them opens gets a full handshake. It is safe for
// use as a [tls.Config.UnwrapSession] callback.
func (k *TicketKeys) UnwrapSession(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	return k.crypt.DecryptTicket(identity, cs)
}

// Reload re-reads the file now (SIGHUP), or without a file rotates the
// in-memory key if its time has come; either way it drops retained keys
// whose time is up. It returns why the file was refused; the keys in use
// stay.
func (k *TicketKeys) Reload() error {
	_, err := k.reload(context.Background(), TriggerReload)
	return err
}

// Run keeps the keys current until ctx ends: it watches the file, or
// rotates in-memory keys on schedule, and drops retained keys when their
// time is up. It returns nil when ctx ends. Call it once.
func (k *TicketKeys) Run(ctx context.Context) error {
	if !k.running.CompareAndSwap(false, true) {
		return errors.New("ticket keys: Run called twice")
	}
	defer k.running.Store(false)
	var watching chan error
	if k.file != "" {
		watching = make(chan error, 1)
		go func() {
			watching <- k.w.run(ctx, func(ctx context.Context, t Trigger) bool {
				recheck, _ := k.reload(ctx, t)
				return recheck
			})
		}()
	}
	// The schedule: in-memory rotations, and the end of each retained
	// key's period, which no file event announces.
	timer := time.NewTimer(k.untilDue())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if watching != nil {
				return <-watching
			}
			return nil
		case <-k.rescheduled:
		case <-timer.C:
			k.reload(ctx, TriggerPeriodic)
		}
		timer.Reset(k.untilDue())
	}
}

// untilDue is the wait until the next in-memory rotation or the end of a
// retained key, at least a second (a clock that does not move must not
// spin) and at most the check interval (a clock that jumps is noticed).
// With nothing due it is a day: a reload that retires a key reschedules.
func (k *TicketKeys) untilDue() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	var due time.Time
	if k.file == "" {
		due = k.activeSince.Add(k.rotation)
	}
	for _, r := range k.retired {
		if due.IsZero() || r.until.Before(due) {
			due = r.until
		}
	}
	if due.IsZero() {
		return 24 * time.Hour
	}
	wait := due.Sub(k.now())
	if k.interval > 0 {
		wait = min(wait, k.interval)
	}
	return max(wait, time.Second)
}

// reload is the one path for every trigger.
func (k *TicketKeys) reload(ctx context.Context, t Trigger) (recheck bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	before := k.all()
	ev := TicketKeysEvent{Trigger: t, Result: ReloadUnchanged}
	var failSum fileSum

	if k.file == "" {
		if k.active == nil || !now.Before(k.activeSince.Add(k.rotation)) {
			key, err := newTicketKey(k.rand)
			if err != nil {
				// Keep the old key: resumption still works, and the next
				// look tries again.
				ev.Result, ev.Err = ReloadFailed, err
			} else {
				k.retire(k.active, now)
				k.active, k.activeSince = [][32]byte{key}, now
			}
		}
	} else {
		data, sum, rerr := readSummed(k.file, ticketKeysKind(k.privateFile))
		failSum = sum
		switch {
		case rerr != nil:
			ev.Result, ev.Err = ReloadFailed, fmt.Errorf("reading ticket keys %q: %w", k.file, rerr)
		case sum == k.fileSum:
		default:
			keys, perr := ParseTicketKeys(data)
			if perr != nil {
				ev.Result, ev.Err = ReloadFailed, fmt.Errorf("reading ticket keys %q: %w", k.file, perr)
				break
			}
			var gone [][32]byte
			for _, old := range k.active {
				if !slices.Contains(keys, old) {
					gone = append(gone, old)
				}
			}
			k.retire(gone, now)
			k.retired = slices.DeleteFunc(k.retired, func(r retiredTicketKey) bool { return slices.Contains(keys, r.key) })
			k.active, k.fileSum = keys, sum
		}
	}
	// Drop retained keys whose time is up, and the oldest beyond the
	// limit.
	k.retired = slices.DeleteFunc(k.retired, func(r retiredTicketKey) bool { return !now.Before(r.until) })
	if n := len(k.active) + len(k.retired) - MaxTicketKeys; n > 0 {
		k.retired = k.retired[min(n, len(k.retired)):]
	}

	if k.active == nil {
		// Only the initial load of a bad file gets here.
		return false, ev.Err
	}
	after := k.all()
	if !slices.Equal(before, after) {
		k.crypt.SetSessionTicketKeys(after)
		if ev.Result != ReloadFailed {
			ev.Result = ReloadChanged
		}
		msg := "ticket keys reloaded"
		switch {
		case t == TriggerInitial && k.file == "":
			msg = "ticket keys generated in memory"
		case t == TriggerInitial:
			msg = "ticket keys loaded"
		case k.file == "":
			msg = "ticket keys rotated"
		}
		k.log.InfoContext(ctx, msg, "path", k.file, "keys", len(after), "retained", len(k.retired), "trigger", string(t))
	}
	ev.Keys = len(after)
	recheck = k.fail.report(ctx, k.log, t, ev.Err, failSum, fileSum{}, "ticket keys", k.file)
	if k.onReload != nil {
		k.onReload(ev)
	}
	return recheck, ev.Err
}

// retire keeps keys decrypting for one rotation period from now.
func (k *TicketKeys) retire(keys [][32]byte, now time.Time) {
	for _, key := range keys {
		if !slices.ContainsFunc(k.retired, func(r retiredTicketKey) bool { return r.key == key }) {
			k.retired = append(k.retired, retiredTicketKey{key: key, until: now.Add(k.rotation)})
			select {
			case k.rescheduled <- struct{}{}:
			default:
			}
		}
	}
}

// all lists the keys in force, the encrypting one first.
func (k *TicketKeys) all() [][32]byte {
	out := slices.Clone(k.active)
	// The most recently retired first: most tickets in flight are theirs.
	for i := len(k.retired) - 1; i >= 0; i-- {
		out = append(out, k.retired[i].key)
	}
	return out
}

// ticketKeysKind is the kind of a ticket-key file, with the owner and mode
// checks when strict.
func ticketKeysKind(strict bool) trustfile.Kind {
	if strict {
		return trustfile.TicketKeys
	}
	return trustfile.TicketKeys.Without(trustfile.CheckPrivate | trustfile.CheckOwner)
}
