package servercmd

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/metrics"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// certInfo describes the served certificate for logs.
type certInfo struct {
	Serial   string
	NotAfter time.Time
	Pin      pinning.Pin
	NextPin  pinning.Pin // zero without a next key
}

// servedCert is where the server's certificate and the body of its KEYS
// reply come from: a pki.CertReloader, which watches the
// certificate, key and next key files, plus the KEYS body rebuilt whenever
// what it serves changes. The server reaches it only through
// GetCertificate (with tls.Config.Certificates left empty, so that clients
// dialing an IP, which send no SNI, see a reloaded certificate too) and
// Keys. Safe for concurrent use.
type servedCert struct {
	rl   *pki.CertReloader
	keys atomic.Pointer[[]byte]
	gen  atomic.Uint64
	log  *slog.Logger
	// guard judges every new certificate's key against the key served
	// and the next keys announced (--key-change).
	guard *keyGuard

	// keysMu serialises rebuilding the KEYS body, which both a reload of
	// the certificate and one of the revoked-keys file do; it guards what
	// follows.
	keysMu         sync.Mutex
	state          *pki.CertState // the state the KEYS body was built from
	revokedPath    string         // --revoked-keys; "" for none
	revoked        []string       // its pins
	revokedSum     [sha256.Size]byte
	revokedPresent bool
	revokedErr     string // the last refusal logged, "" after a success
	// servedRevokedLogged is the served pin last logged as listed in the
	// revoked-keys file, "" when it is not listed.
	servedRevokedLogged string
	nextPubPath         string // the public next key (server.next.pub); "" for none
	nextPub             string // its pin; "" when there is none
	nextPubSum          [sha256.Size]byte
	nextPubPresent      bool
	nextPubErr          string
	nextPins            []string // --next-pin

	// m, when not nil, is told about every reload attempt and every new
	// certificate; now stamps the reloads.
	m   *metrics.Metrics
	now func() time.Time
}

// newServedCert loads the pair (and the next key) named by o; an error
// means there is nothing to serve. It starts nothing: call Run. m may be
// nil (no --metrics-listen); when it is not, it already holds the initial
// load when newServedCert returns, because pki.NewCertReloader reports
// that load to OnReload from inside the constructor.
func newServedCert(o *options, log *slog.Logger, now func() time.Time, m *metrics.Metrics, readOnly bool) (*servedCert, error) {
	s := &servedCert{m: m, now: now, log: log, revokedPath: o.revokedKeys, nextPubPath: o.nextPub, nextPins: o.nextPins}
	guard, err := newKeyGuard(o.keyState, o.keyChange, readOnly, log, m, now)
	if err != nil {
		return nil, err
	}
	s.guard = guard
	rl, err := pki.NewCertReloader(pki.CertReloaderOptions{
		CertPath:    o.cert,
		KeyPath:     o.key,
		NextKeyPath: o.nextKey,
		Key: pki.KeyOptions{
			// The passphrase is asked for (if at all) during this first
			// load, on the main goroutine; cli.Passphrase remembers it,
			// so reloads never prompt.
			Passphrase: o.pass.Source("the server key " + o.key),
			// A key others may read is refused, as OpenSSH refuses such
			// identity files: it may have leaked. So is one another user
			// could have planted (its owner, a writable directory).
			RequirePrivateFile: true,
			// Keys in PKCS#11 tokens stay there; the token is opened
			// once, during this first load.
			Tokens: o.tokens,
		},
		Accept:    guard.accept,
		OnReload:  s.onReload,
		Logger:    log,
		Now:       now,
		NoRecover: readOnly,
	})
	if err != nil {
		return nil, err
	}
	s.rl = rl
	if s.revokedPath != "" {
		if err := s.reloadRevoked(context.Background(), true); err != nil {
			return nil, err
		}
	}
	if s.nextPubPath != "" {
		if err := s.reloadNextPub(context.Background(), true); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// onReload counts the reload for the metrics and, when the served
// certificate or next key changed, rebuilds the KEYS body and the
// certificate metrics. The reloader calls it under its reload lock, one call at a
// time, after every attempt (file event, periodic check, SIGHUP).
//
// A refusal the reloader will look at again once the files settle (a
// rotation caught between its renames) is not counted: only the second
// look is, so that result="failed" counts refusals that keep the old pair
// serving, which an operator must act on.
func (s *servedCert) onReload(ev pki.ReloadEvent) {
	if s.m != nil && !(ev.Result == pki.ReloadFailed && ev.Recheck) {
		s.m.CertReloaded(string(ev.Result), s.now())
	}
	// The revoked-keys file is looked at on every reload of the
	// certificate too: the periodic check and SIGHUP reach it that way.
	if s.revokedPath != "" && ev.Trigger != pki.TriggerInitial {
		_ = s.reloadRevoked(context.Background(), false)
	}
	if s.nextPubPath != "" && ev.Trigger != pki.TriggerInitial {
		_ = s.reloadNextPub(context.Background(), false)
	}
	defer s.afterReload(ev)
	st := ev.State
	if st == nil || (s.keys.Load() != nil && s.gen.Load() == st.Generation) {
		return
	}
	info := infoOf(st)
	if s.m != nil {
		s.m.CertLoaded(st.Certificate, info.Pin.String())
	}
	s.keysMu.Lock()
	s.state = st
	s.rebuildKeys()
	s.keysMu.Unlock()
	s.gen.Store(st.Generation)
}

// afterReload runs the checks that need the certificate reload done.
func (s *servedCert) afterReload(ev pki.ReloadEvent) {
	if ev.Trigger != pki.TriggerInitial {
		s.checkServedRevoked(context.Background())
	}
}

// rebuildKeys publishes the KEYS body for s.state and s.revoked: the
// current pin, the next key's pin when there is one, and the revoked pins
// (but never the key being served: clients ignore such a line, and it
// would only say the operator made a mistake, which reloadRevoked logs).
// Call it with keysMu held.
func (s *servedCert) rebuildKeys() {
	if s.state == nil {
		return
	}
	info := infoOf(s.state)
	ks := proto.KeySet{Current: info.Pin.String(), Next: s.announcedNext(info)}
	for _, p := range s.revoked {
		if p != ks.Current {
			ks.Revoked = append(ks.Revoked, p)
		}
	}
	body := proto.AppendKeySet(nil, ks)
	s.keys.Store(&body)
	s.guard.served(context.Background(), ks.Current, ks.Next)
}

// announcedNext returns the next pins KEYS announces: the next key file's,
// the public next key's and --next-pin's, each once, never the current
// key's. Call it with keysMu held.
func (s *servedCert) announcedNext(info certInfo) []string {
	var next []string
	add := func(p string) {
		if p != "" && p != info.Pin.String() && !slices.Contains(next, p) {
			next = append(next, p)
		}
	}
	if !info.NextPin.IsZero() {
		add(info.NextPin.String())
	}
	add(s.nextPub)
	for _, p := range s.nextPins {
		add(p)
	}
	return next
}

// reloadNextPub reads the public next key again and, when it changed,
// rebuilds the KEYS body; as reloadRevoked, a bad file is an error at
// start and later a warning that keeps the pin announced before.
func (s *servedCert) reloadNextPub(ctx context.Context, initial bool) error {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	pin, sum, present, err := readPublicNextKey(s.nextPubPath)
	if err != nil {
		if initial {
			return err
		}
		if msg := err.Error(); msg != s.nextPubErr {
			s.nextPubErr = msg
			s.log.WarnContext(ctx, "public next key not reloaded; still announcing the previous one", "path", s.nextPubPath, "err", err)
		}
		return err
	}
	s.nextPubErr = ""
	if !initial && present == s.nextPubPresent && sum == s.nextPubSum {
		return nil
	}
	s.nextPub, s.nextPubSum, s.nextPubPresent = pin, sum, present
	switch {
	case present && initial:
		s.log.InfoContext(ctx, "public next key loaded", "path", s.nextPubPath, "pin", pin)
	case present:
		s.log.InfoContext(ctx, "public next key reloaded", "path", s.nextPubPath, "pin", pin)
	case !initial:
		s.log.InfoContext(ctx, "public next key removed", "path", s.nextPubPath)
	}
	s.rebuildKeys()
	return nil
}

// nextPinsAnnounced returns the next pins KEYS announces now.
func (s *servedCert) nextPinsAnnounced() []string {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if s.state == nil {
		return nil
	}
	return s.announcedNext(infoOf(s.state))
}

// reloadRevoked reads the revoked-keys file again and, when its content
// changed, rebuilds the KEYS body. At start (initial) a bad file is an
// error; later it is logged once per distinct reason and the pins already
// announced stay.
func (s *servedCert) reloadRevoked(ctx context.Context, initial bool) error {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	pins, sum, present, err := readRevokedKeys(s.revokedPath)
	if err != nil {
		if initial {
			return err
		}
		if msg := err.Error(); msg != s.revokedErr {
			s.revokedErr = msg
			s.log.WarnContext(ctx, "revoked keys not reloaded; still announcing the previous list", "path", s.revokedPath, "err", err)
		}
		return err
	}
	s.revokedErr = ""
	if !initial && present == s.revokedPresent && sum == s.revokedSum {
		return nil
	}
	s.revoked, s.revokedSum, s.revokedPresent = pins, sum, present
	verb := "revoked keys reloaded"
	if initial {
		verb = "revoked keys loaded"
	}
	if present || !initial {
		s.log.InfoContext(ctx, verb, "path", s.revokedPath, "pins", len(pins))
	}
	s.rebuildKeys()
	return nil
}

// checkServedRevoked logs, once per key, that the revoked-keys file lists
// the key being served. It runs after reloads of the certificate (the
// periodic check included), not after one of the list alone: during
// sc-cert rotate --promote-next --revoke-old the list may be seen before
// the new certificate, and that is no mistake.
func (s *servedCert) checkServedRevoked(ctx context.Context) {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if s.state == nil {
		return
	}
	cur := pinning.PinOf(s.state.Certificate).String()
	if !slices.Contains(s.revoked, cur) {
		s.servedRevokedLogged = ""
		return
	}
	if s.servedRevokedLogged == cur {
		return
	}
	s.servedRevokedLogged = cur
	s.log.ErrorContext(ctx, "the revoked keys file lists the key being served; it is not announced as revoked (clients would ignore it): promote the next key first (sc-cert rotate --promote-next --revoke-old)", "path", s.revokedPath, "pin", cur)
}

// revokedPins returns the pins the revoked-keys file holds now.
func (s *servedCert) revokedPins() []string {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	return append([]string(nil), s.revoked...)
}

// GetCertificate returns the pair being served; safe for use as a
// tls.Config callback.
func (s *servedCert) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.rl.GetCertificate(hello)
}

// Keys returns the KEYS reply body: the current pin, then the next key's
// pin when there is a next key. The slice is never modified.
func (s *servedCert) Keys() []byte { return *s.keys.Load() }

// Reload re-reads the files now (SIGHUP); on failure the served pair stays
// and the error says why.
func (s *servedCert) Reload() error { return s.rl.Reload() }

// Run watches the files until ctx ends: the certificate, key and next key
// through pki's reloader, and the directories of the revoked-keys file and
// the public next key.
func (s *servedCert) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if s.revokedPath != "" {
		wg.Go(func() {
			watchDir(ctx, s.log, revokedDir(s.revokedPath), func() { _ = s.reloadRevoked(ctx, false) })
		})
	}
	if s.nextPubPath != "" {
		wg.Go(func() {
			watchDir(ctx, s.log, filepath.Dir(s.nextPubPath), func() { _ = s.reloadNextPub(ctx, false) })
		})
	}
	err := s.rl.Run(ctx)
	wg.Wait()
	return err
}

// Info describes what is served now.
func (s *servedCert) Info() certInfo { return infoOf(s.rl.State()) }

func infoOf(st *pki.CertState) certInfo {
	leaf := st.Certificate
	info := certInfo{Serial: pki.SerialHex(leaf.SerialNumber), NotAfter: leaf.NotAfter, Pin: pinning.PinOf(leaf)}
	if st.NextSPKI != nil {
		info.NextPin = pinning.PinOfSPKI(st.NextSPKI)
	}
	return info
}
