package pki

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// CertReloaderOptions configures a [CertReloader]. The zero value serves
// certs/server.crt with certs/server.key, announces no next key, checks
// every minute and accepts every valid pair.
type CertReloaderOptions struct {
	// CertPath is the certificate (chain) file, leaf first. Default
	// certs/server.crt.
	CertPath string

	// KeyPath is its private key. Default: [SiblingKeyPath](CertPath),
	// e.g. certs/server.key, or certs/server.uri when only that exists
	// ([ResolveKeyPath]). It may be a pkcs11: URI, or a file holding one,
	// opened through Key.Tokens: the key stays in its token while the
	// certificate's files reload, and each new pair is proved with a
	// signature ([ProveKey]).
	KeyPath string

	// NextKeyPath is the pre-generated next key (a file, a pkcs11: URI or
	// a file holding one), whose public key
	// [CertState.NextKey] announces (the KEYS reply; RFC 7583
	// pre-publication). Default "": no next key is watched or announced.
	// [DefaultLayout] calls it server.next.key. A missing file means no
	// next key; a bad one keeps the last good one and is logged.
	NextKeyPath string

	// Key controls how the key and the next key are read.
	// Key.Passphrase is called on the reloading goroutine, and only when a
	// changed encrypted key is loaded: it must not prompt, so capture the
	// passphrase once at startup. Key.RequirePrivateFile refuses key files
	// that group or others may read. Default: unencrypted keys, any mode.
	Key KeyOptions

	// Accept, when set, is asked about every new certificate once it has
	// passed every other check (parse, key match, valid now); an error
	// refuses it and the old pair keeps serving. A caller can pass, for
	// instance, "its pin is the current or the next one", so that a
	// rotation can never lock out pinning clients; sc-server passes none,
	// because an emergency key replacement must be able to bring in a key
	// that was never announced. It is also asked about the initial pair, inside
	// [NewCertReloader], before the CertReloader exists (so a hook that consults
	// it must accept when it has none yet). It runs with the reload
	// lock held: it may call [CertReloader.State] but not [CertReloader.Reload].
	// Default nil: accept.
	Accept func(leaf *x509.Certificate) error

	// Interval is the period of the check that catches file events a
	// filesystem lost (network filesystems, some container overlays, an
	// inotify queue overflow). Default one minute; negative disables it.
	Interval time.Duration

	// Debounce is the quiet time after the last file event before a
	// reload, so that a burst of events (a rotation renames several files)
	// costs one reload and a file written in pieces is read once whole.
	// Default 100ms.
	Debounce time.Duration

	// OnReload, when set, is called after every reload attempt, including
	// the initial load in [NewCertReloader] and those that found nothing new,
	// with the reload lock held (it must not call Reload) and on the
	// goroutine that reloaded: keep it short. Metrics count the results;
	// sc-server rebuilds its KEYS reply when the State's Generation moves.
	OnReload func(ReloadEvent)

	// Logger receives reloads (Info), refused files (Warn, once per
	// distinct failure) and retries (Debug). Nil means slog.Default().
	Logger *slog.Logger

	// NoRecover skips [Recover] before each load, for a look that must
	// write nothing (sc-server --check); see [Pending] to tell that a
	// change is pending. Default false: an interrupted rotation in the
	// certificate's directory is completed or undone first, through
	// Recover and the directory's lock as a rotation would (see Recover,
	// "One locked path"), so that the pair loaded is never half old, half
	// new. A rotation in progress in another process is waited for, for
	// 30 seconds at most and not past the end of [CertReloader.Run]'s
	// context.
	NoRecover bool

	// Now returns the current time, for the validity check and
	// [CertState.ChangedAt]. Nil means time.Now.
	Now func() time.Time
}

// ReloadResult is the outcome of one reload of one part of a [CertReloader]:
// the certificate and key, or the next key.
type ReloadResult string

// The outcomes of a reload.
const (
	// ReloadChanged means new content is being served.
	ReloadChanged ReloadResult = "changed"
	// ReloadUnchanged means the files hold what is already served.
	ReloadUnchanged ReloadResult = "unchanged"
	// ReloadFailed means the files changed but were refused; the old
	// content is still served.
	ReloadFailed ReloadResult = "failed"
)

// ReloadEvent describes one reload of a [CertReloader], for
// [CertReloaderOptions.OnReload].
type ReloadEvent struct {
	Trigger Trigger
	// Result is that of the certificate and key; Err says why they were
	// refused when Result is ReloadFailed.
	Result ReloadResult
	Err    error
	// NextResult is that of the next key (ReloadUnchanged without a
	// NextKeyPath); NextErr says why it was refused.
	NextResult ReloadResult
	NextErr    error
	// Recheck means the refusal may be files caught mid-change — a
	// rotation between its renames, a file half-written — because the
	// reload followed a file event or re-established watches: it is
	// logged at Debug only, and the source looks again once the files
	// settle ([TriggerSettle]); that look reports the refusal if it
	// persists. A count of failures an operator must act on (a metric)
	// skips failed results with Recheck set.
	Recheck bool
	// State is what is served after the reload.
	State *CertState
}

// CertState is what a [CertReloader] serves at one moment. It is never
// modified once published; compare Generation to see a change.
type CertState struct {
	// Certificate is the leaf certificate served: its SerialNumber,
	// NotAfter and RawSubjectPublicKeyInfo (the input of its pin).
	Certificate *x509.Certificate
	// NextKey is the public half of the next key file, nil when there is
	// none.
	NextKey crypto.PublicKey
	// NextSPKI is NextKey as a DER SubjectPublicKeyInfo, the input of its
	// pin (package pinning, PinOfSPKI); nil when NextKey is nil.
	NextSPKI []byte
	// Generation starts at 1 and grows by one each time the certificate
	// or the next key changes.
	Generation uint64
	// ChangedAt is when this state was published (by Now).
	ChangedAt time.Time
}

// CertReloader serves a TLS server the certificate and key on disk,
// reloading them when their files change. It serves the newest usable
// pair through [CertReloader.GetCertificate], watches their directories
// ([CertReloader.Run]) and reloads on [CertReloader.Reload] (SIGHUP). A new
// pair is served only once both files parse, the key matches the
// certificate, the certificate is valid now and
// [CertReloaderOptions.Accept] agrees; otherwise the old pair keeps serving
// and the reason is logged. The swap is one atomic pointer store: a
// handshake in progress finishes with the pair it started with, and
// established connections are untouched.
//
// One reload path serves every trigger (file event, periodic check,
// Reload, watch re-established). It compares a SHA-256 of each file's
// content with what is served, so repeated events cost a few reads, and it
// decrypts an encrypted key only when the key file's content is new.
//
// A CertReloader is safe for concurrent use. Make one with
// [NewCertReloader]; the zero value is not usable.
type CertReloader struct {
	certPath, keyPath, nextPath string
	keyOpts                     KeyOptions
	noRecover                   bool
	accept                      func(*x509.Certificate) error
	onReload                    func(ReloadEvent)
	log                         *slog.Logger
	now                         func() time.Time
	w                           watcher
	running                     atomic.Bool

	cur atomic.Pointer[served]

	mu       sync.Mutex // serialises reloads; guards what follows
	keys     keyCache
	pairFail failureLog
	nextFail failureLog
}

// served is one published state.
type served struct {
	cert    *tls.Certificate
	certSum fileSum
	keySum  fileSum
	nextSum fileSum
	public  *CertState
}

// fileSum identifies a file's content (and, where it matters, its mode).
type fileSum struct {
	present bool
	sum     [sha256.Size]byte
	mode    fs.FileMode
}

// NewCertReloader loads the certificate, key and next key named by opts and
// checks them as a reload would. It fails when the pair is not usable or
// the next key file exists but cannot be read. It starts no goroutine:
// call [CertReloader.Run] to watch for changes.
func NewCertReloader(opts CertReloaderOptions) (*CertReloader, error) {
	if opts.CertPath == "" {
		opts.CertPath = filepath.Join(defaultDir, ServerCertFile)
	}
	if opts.KeyPath == "" {
		opts.KeyPath = ResolveKeyPath(SiblingKeyPath(opts.CertPath))
	}
	opts.KeyPath = opts.Key.Tokens.TakePIN(opts.KeyPath)
	opts.NextKeyPath = opts.Key.Tokens.TakePIN(opts.NextKeyPath)
	if opts.Debounce < 0 {
		return nil, fmt.Errorf("certificate reloader: debounce %v is negative", opts.Debounce)
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
	s := &CertReloader{
		certPath:  opts.CertPath,
		keyPath:   opts.KeyPath,
		nextPath:  opts.NextKeyPath,
		keyOpts:   opts.Key,
		noRecover: opts.NoRecover,
		accept:    opts.Accept,
		onReload:  opts.OnReload,
		log:       opts.Logger,
		now:       opts.Now,
	}
	// A key URI names no file to watch; the key stays in its token while
	// the certificate's files change.
	files := []string{s.certPath}
	for _, f := range []string{s.keyPath, s.nextPath} {
		if f != "" && !isKeyRef(f) {
			files = append(files, f)
		}
	}
	s.w = watcher{files: files, debounce: opts.Debounce, interval: opts.Interval, log: s.log, what: "certificate"}
	if _, err := s.reload(context.Background(), TriggerInitial); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate returns the pair being served. It never fails and never
// blocks: it is safe for use as a [tls.Config.GetCertificate] callback
// (leave [tls.Config.Certificates] empty, or clients that send no SNI are
// served the static certificate).
func (s *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load().cert, nil
}

// State returns what is served now: the certificate and the next key.
func (s *CertReloader) State() *CertState {
	return s.cur.Load().public
}

// Reload re-reads the files now and serves them if they changed and are
// usable. It is what SIGHUP should call. Unlike the watcher it also
// retries an encrypted key whose passphrase failed before. It returns why
// the pair or the next key was refused (the old ones keep serving), and
// does not log that error.
func (s *CertReloader) Reload() error {
	_, err := s.reload(context.Background(), TriggerReload)
	return err
}

// Run watches the directories of the certificate, key and next key until
// ctx ends, reloading on file events (debounced), on the periodic check and
// whenever a watch had to be re-established. It returns nil when ctx ends.
// Call it once.
func (s *CertReloader) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("certificate reloader: Run called twice")
	}
	defer s.running.Store(false)
	return s.w.run(ctx, func(ctx context.Context, t Trigger) bool {
		recheck, _ := s.reload(ctx, t)
		return recheck
	})
}

// reload is the one reload path. It returns whether a failure deserves a
// second look once the files settle, and the failures.
func (s *CertReloader) reload(ctx context.Context, t Trigger) (recheck bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t == TriggerReload {
		s.keys.dropErrors()
	}
	old := s.cur.Load()
	next := &served{}
	if old != nil {
		*next = *old
	}
	ev := ReloadEvent{Trigger: t, Result: ReloadUnchanged, NextResult: ReloadUnchanged}

	pair, certSum, keySum, failPath, perr := s.loadPair(ctx, old)
	switch {
	case perr != nil:
		ev.Result, ev.Err = ReloadFailed, perr
	case pair != nil:
		ev.Result = ReloadChanged
		next.cert, next.certSum, next.keySum = pair.TLSCertificate(), certSum, keySum
	}

	var nextKey crypto.PublicKey
	var nextSPKI []byte
	var nextSum fileSum
	if old != nil {
		nextKey, nextSPKI = old.public.NextKey, old.public.NextSPKI
	}
	// A pair whose key does not match is most often a rotation caught
	// between its renames (the key is renamed before the certificate):
	// leave the next key alone until the pair is whole, so that Accept
	// still sees the next key the new certificate was made for.
	if s.nextPath != "" && !errors.Is(perr, ErrKeyMismatch) {
		changed, pub, spki, sum, nerr := s.loadNext(old)
		nextSum = sum
		switch {
		case nerr != nil:
			ev.NextResult, ev.NextErr = ReloadFailed, nerr
		case changed:
			ev.NextResult = ReloadChanged
			nextKey, nextSPKI, next.nextSum = pub, spki, sum
		}
	}

	if old == nil && perr != nil {
		return false, perr
	}
	if old == nil && ev.NextErr != nil {
		return false, ev.NextErr
	}
	if ev.Result == ReloadChanged || ev.NextResult == ReloadChanged {
		gen := uint64(1)
		if old != nil {
			gen = old.public.Generation + 1
		}
		next.public = &CertState{
			Certificate: next.cert.Leaf,
			NextKey:     nextKey,
			NextSPKI:    nextSPKI,
			Generation:  gen,
			ChangedAt:   s.now(),
		}
		s.cur.Store(next)
	}
	state := s.cur.Load().public

	// Log what changed, then what failed.
	verb, nextVerb := "certificate reloaded", "next key reloaded"
	if t == TriggerInitial {
		verb, nextVerb = "certificate loaded", "next key loaded"
	}
	if ev.Result == ReloadChanged {
		leaf := state.Certificate
		s.log.InfoContext(ctx, verb, "path", s.certPath, "serial", SerialHex(leaf.SerialNumber),
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "pin", spkiPin(leaf.RawSubjectPublicKeyInfo), "trigger", string(t))
	}
	if ev.NextResult == ReloadChanged {
		if state.NextKey == nil {
			s.log.InfoContext(ctx, "next key removed", "path", s.nextPath, "trigger", string(t))
		} else {
			s.log.InfoContext(ctx, nextVerb, "path", s.nextPath, "pin", spkiPin(state.NextSPKI), "trigger", string(t))
		}
	}
	r1 := s.pairFail.report(ctx, s.log, t, perr, certSum, keySum, "certificate", failPath)
	r2 := s.nextFail.report(ctx, s.log, t, ev.NextErr, nextSum, fileSum{}, "next key", s.nextPath)

	ev.State, ev.Recheck = state, r1 || r2
	if s.onReload != nil {
		s.onReload(ev)
	}
	return r1 || r2, errors.Join(perr, ev.NextErr)
}

// loadPair reads the certificate and key. It returns a nil pair and no
// error when they hold what old serves, and on failure the file to blame.
func (s *CertReloader) loadPair(ctx context.Context, old *served) (pair *Pair, certSum, keySum fileSum, failPath string, err error) {
	fail := func(path string, err error) (*Pair, fileSum, fileSum, string, error) {
		return nil, certSum, keySum, path, err
	}
	// An interrupted rotation in the certificate's directory is finished
	// or undone first, through Recover and the directory's lock, as a
	// writer would; one in progress is waited for, so the pair read is
	// never half old, half new.
	if !s.noRecover {
		if err := Recover(ctx, filepath.Dir(s.certPath)); err != nil {
			return fail(filepath.Dir(s.certPath), err)
		}
	}
	certData, certSum, err := readSummed(s.certPath, trustfile.Certificate)
	if err != nil {
		return fail(s.certPath, fmt.Errorf("reading certificate %q: %w", s.certPath, err))
	}
	keyData, keySum, err := readSummed(s.keyPath, keyKind(trustfile.PrivateKey, s.keyOpts.RequirePrivateFile))
	if err != nil {
		// Swapped paths are reported as such, as the certificate's parser
		// says, rather than as a key with the wrong mode.
		if _, cerr := ParseCertificatesPEM(certData); cerr != nil {
			return fail(s.certPath, fmt.Errorf("reading certificate %q: %w", s.certPath, cerr))
		}
		if _, _, kerr := readKey(s.keyPath, keyKind(trustfile.PrivateKey, s.keyOpts.RequirePrivateFile)); kerr != nil {
			err = kerr
		}
		return fail(s.keyPath, fmt.Errorf("reading key %q: %w", s.keyPath, err))
	}
	if old != nil && certSum == old.certSum && keySum == old.keySum {
		return nil, certSum, keySum, "", nil
	}
	chain, err := ParseCertificatesPEM(certData)
	if err == nil {
		err = checkChain(chain)
	}
	if err != nil {
		return fail(s.certPath, fmt.Errorf("reading certificate %q: %w", s.certPath, err))
	}
	key, err := s.keys.parse(keyData, keySum, s.keyOpts)
	if err != nil {
		return fail(s.keyPath, fmt.Errorf("reading key %q: %w", s.keyPath, err))
	}
	leaf := chain[0]
	if err := CheckPair(leaf, key.Signer); err != nil {
		return fail(s.certPath, fmt.Errorf("key %q does not match certificate %q: %w", s.keyPath, s.certPath, err))
	}
	// A key in a token signs once for every new pair: a token that does
	// not answer, or whose key is not the certificate's, is refused here
	// rather than in every handshake.
	if err := proveTokenKey(leaf, key); err != nil {
		return fail(s.keyPath, fmt.Errorf("key %q and certificate %q: %w", s.keyPath, s.certPath, err))
	}
	if err := CheckValidity(leaf, s.now(), 0); err != nil {
		setPath(err, s.certPath)
		return fail(s.certPath, err)
	}
	if s.accept != nil {
		if err := s.accept(leaf); err != nil {
			return fail(s.certPath, fmt.Errorf("certificate %q (serial %s, pin %s) refused: %w",
				s.certPath, SerialHex(leaf.SerialNumber), spkiPin(leaf.RawSubjectPublicKeyInfo), err))
		}
	}
	return &Pair{CertPath: s.certPath, KeyPath: s.keyPath, Chain: chain, Key: key}, certSum, keySum, "", nil
}

// loadNext reads the next key. changed is false when the file holds what
// old announces.
func (s *CertReloader) loadNext(old *served) (changed bool, pub crypto.PublicKey, spki []byte, sum fileSum, err error) {
	data, sum, err := readSummed(s.nextPath, keyKind(trustfile.NextKey, s.keyOpts.RequirePrivateFile))
	if errors.Is(err, fs.ErrNotExist) {
		// No next key file: nothing to announce, a change only if there
		// was one.
		return old != nil && old.nextSum.present, nil, nil, fileSum{}, nil
	}
	if err != nil {
		return false, nil, nil, sum, fmt.Errorf("reading next key %q: %w", s.nextPath, err)
	}
	if old != nil && sum == old.nextSum {
		return false, nil, nil, sum, nil
	}
	key, err := s.keys.parse(data, sum, s.keyOpts)
	if err != nil {
		return false, nil, nil, sum, fmt.Errorf("reading next key %q: %w", s.nextPath, err)
	}
	pub = key.Signer.Public()
	if spki, err = x509.MarshalPKIXPublicKey(pub); err != nil {
		return false, nil, nil, sum, fmt.Errorf("reading next key %q: %w", s.nextPath, err)
	}
	return true, pub, spki, sum, nil
}

// readSummed reads a file (through any symlinks) as a file of kind k and
// fingerprints it. When k checks the mode, the mode is part of the
// fingerprint, so that a chmod that makes a refused file acceptable counts
// as a change.
func readSummed(path string, k trustfile.Kind) ([]byte, fileSum, error) {
	var sum fileSum
	if isKeyRef(path) {
		// A key URI is its own content.
		return []byte(path), fileSum{present: true, sum: sha256.Sum256([]byte(path))}, nil
	}
	data, fi, err := readFile(path, k)
	if err != nil {
		return nil, sum, err
	}
	sum.present, sum.sum = true, sha256.Sum256(data)
	if k.Checks != 0 {
		sum.mode = fi.Mode().Perm()
	}
	return data, sum, nil
}

// keyCache remembers the last few keys parsed, by content, so that a key
// file that did not change is never decrypted again (an encrypted key
// costs a deliberately slow key derivation).
type keyCache struct {
	entries []keyCacheEntry // most recent last
}

type keyCacheEntry struct {
	sum fileSum
	key *Key
	err error
}

// keyCacheSize covers the key, the next key and a rotation's new ones.
const keyCacheSize = 4

func (c *keyCache) parse(data []byte, sum fileSum, opts KeyOptions) (*Key, error) {
	for i, e := range c.entries {
		if e.sum == sum {
			c.entries = append(append(c.entries[:i:i], c.entries[i+1:]...), e)
			return e.key, e.err
		}
	}
	key, err := parseKeyData(data, opts)
	c.entries = append(c.entries, keyCacheEntry{sum: sum, key: key, err: err})
	if len(c.entries) > keyCacheSize {
		c.entries = c.entries[1:]
	}
	return key, err
}

// dropErrors forgets failed parses, so that an explicit reload asks for
// the passphrase again.
func (c *keyCache) dropErrors() {
	kept := c.entries[:0]
	for _, e := range c.entries {
		if e.err == nil {
			kept = append(kept, e)
		}
	}
	c.entries = kept
}

// failureLog logs a refused reload once per distinct failure.
type failureLog struct {
	last string // the key of the failure last reported, "" after a success
}

// report logs err as the policy wants and reports whether to look again
// once the files settle. A failure right after a file event, or after the
// watches were re-established, may be a file caught half-written: it is
// logged at Debug and earns a second look; only a failure that persists is
// a Warn, once per distinct content and reason. The initial load and
// Reload return their error instead of logging it.
func (f *failureLog) report(ctx context.Context, log *slog.Logger, t Trigger, err error, a, b fileSum, what, path string) (recheck bool) {
	if err == nil {
		f.last = ""
		return false
	}
	key := fmt.Sprintf("%x/%x/%s", a.sum[:4], b.sum[:4], failureReason(err))
	switch t {
	case TriggerFileEvent, TriggerRewatch:
		log.DebugContext(ctx, what+" reload failed, looking again once the files settle", "path", path, "err", err, "trigger", string(t))
		return true
	case TriggerInitial, TriggerReload:
		f.last = key
		return false
	}
	if key != f.last {
		f.last = key
		log.WarnContext(ctx, what+" not reloaded, keeping the one being served", "path", path, "err", err, "trigger", string(t))
	}
	return false
}

// failureReason is the stable part of an error: validity errors mention
// how long ago or until, which changes at every look.
func failureReason(err error) string {
	var exp *ExpiredError
	var nyv *NotYetValidError
	switch {
	case errors.As(err, &exp):
		return "expired " + exp.NotAfter.String()
	case errors.As(err, &nyv):
		return "not yet valid " + nyv.NotBefore.String()
	}
	return err.Error()
}
