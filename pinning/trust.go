package pinning

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// MaxAnnouncedPins bounds the next pins [Trust.RecordAnnounced] records for
// one host, so that a server cannot grow the store without limit.
const MaxAnnouncedPins = 8

// MaxRevokedPins bounds the revoked pins one announcement may carry
// ([Announcement.Revoked]).
const MaxRevokedPins = 64

// TOFUPolicy says what [ModeTOFU] does with a host that is not in the store.
// The zero value is [TOFUAuto].
type TOFUPolicy int

const (
	// TOFUAuto trusts an unknown host's key, and [Trust.Record] records it
	// once the handshake has completed. A caller should tell the user
	// (sc-client says so on stderr).
	TOFUAuto TOFUPolicy = iota
	// TOFUPrompt asks [TrustOptions.Prompt] during the handshake.
	TOFUPrompt
	// TOFUOff refuses unknown hosts with [*UnknownHostError].
	TOFUOff
)

var tofuPolicyNames = [...]string{TOFUAuto: "auto", TOFUPrompt: "prompt", TOFUOff: "off"}

// String returns "auto", "prompt" or "off", as [ParseTOFUPolicy] accepts.
func (p TOFUPolicy) String() string {
	if p >= 0 && int(p) < len(tofuPolicyNames) {
		return tofuPolicyNames[p]
	}
	return fmt.Sprintf("TOFUPolicy(%d)", int(p))
}

// ParseTOFUPolicy parses "auto", "prompt" or "off".
func ParseTOFUPolicy(s string) (TOFUPolicy, error) {
	for p, name := range tofuPolicyNames {
		if s == name {
			return TOFUPolicy(p), nil
		}
	}
	return 0, fmt.Errorf("unknown trust-on-first-use policy %q: want auto, prompt or off", s)
}

// PromptFunc asks whether to trust host ("host:port"), seen for the first
// time, with the key whose pin is pin; leaf is the certificate it came in,
// for showing its subject and dates. It is not authenticated yet: the
// handshake is still running. Returning false refuses the host with a
// declined [*UnknownHostError]; an error fails the handshake with it.
type PromptFunc func(host string, pin Pin, leaf *x509.Certificate) (bool, error)

// TrustOptions configures a [Trust]. The zero value is [ModeCA] against the
// system roots, like a zero tls.Config. Fields that do not apply to the
// mode must be left zero: [NewTrust] refuses them, so that a mistaken
// configuration fails at startup rather than trusting more than meant.
type TrustOptions struct {
	// Mode is how the server is trusted. Zero means [ModeCA].
	Mode Mode

	// Pins are the trusted keys in [ModePin] and [ModeCAPin], where at
	// least one is required. To survive a planned key rollover, include
	// the server's next pin as a backup (sc-cert pin show --next).
	Pins Set

	// Revoked are keys never to trust, in every mode but [ModeInsecure]:
	// a server presenting one fails with [*RevokedKeyError] (sc-client
	// --revoked-pin). A pin both in Pins and here is a mistake [NewTrust]
	// refuses. Default: none.
	Revoked []Pin

	// Roots are the CAs trusted in [ModeCA] and [ModeCAPin]. Nil means the
	// system roots.
	Roots *x509.CertPool

	// Host is the server as "host:port": the key of its entry in Store,
	// the name in errors, and (its host part) the default ServerName.
	// Required in [ModeTOFU]; recommended in every mode.
	Host string

	// ServerName is sent as SNI and, in [ModeCA] and [ModeCAPin], checked
	// against the certificate (an IP address against its IP SANs). Empty
	// means the host part of Host, or when that is empty too, what
	// crypto/tls's Dial takes from the address dialed.
	ServerName string

	// Store is the known-hosts store of [ModeTOFU], where it is required.
	Store *Store

	// TOFU is what [ModeTOFU] does with a host that is not in Store. Zero
	// means [TOFUAuto].
	TOFU TOFUPolicy

	// Prompt asks the user about an unknown host; required with
	// [TOFUPrompt], refused otherwise. It runs inside the handshake, so the
	// server's handshake timeout keeps running while the user reads
	// (sc-server allows 5 s by default); a client that wants no time limit
	// can instead fetch the key with [FetchChain], ask, [Store.Add] it and
	// connect with [TOFUOff]. Calls are serialized, and a key approved
	// once is not asked about again by this Trust.
	Prompt PromptFunc

	// StrictExpiry makes a trusted key whose certificate is outside its
	// validity period fail the handshake with [*ValidityError] in
	// [ModePin] and [ModeTOFU]. False means such a certificate is reported
	// to Warn and accepted: the pin, not the dates, is the trust anchor,
	// and a server that missed a renewal should not lock its users out.
	// [ModeCA] and [ModeCAPin] always refuse, as crypto/tls does.
	StrictExpiry bool

	// Now returns the current time, for validity checks, the store's
	// times and crypto/tls (tls.Config.Time). Nil means time.Now.
	Now func() time.Time

	// Warn receives what is accepted but wrong: a [*ValidityError] without
	// StrictExpiry, and in [ModeInsecure] an error wrapping [ErrInsecure]
	// for every connection. It must be safe for concurrent use. Nil means
	// slog.Default() at level Warn.
	Warn func(err error)

	// Config is a template for everything but trust (versions, ALPN, a
	// ClientSessionCache, client certificates). It is cloned, never
	// changed. Nil means a zero tls.Config. Its InsecureSkipVerify,
	// VerifyConnection, VerifyPeerCertificate, RootCAs and
	// EncryptedClientHelloConfigList must be unset: the mode decides those.
	Config *tls.Config
}

// Trust decides whether to trust a TLS server, as configured by
// [TrustOptions], and records what it learned in the known-hosts store. Get
// a client tls.Config from [Trust.Config]; after a handshake made with it
// has completed, call [Trust.Record] (and, if the protocol lets the server
// announce its keys, [Trust.RecordAnnounced]).
//
// The decision is made in tls.Config.VerifyConnection, which crypto/tls
// calls on full handshakes and on resumed sessions alike, so a cached
// session never bypasses it. It only reads the store: nothing is written
// before the handshake has completed, because until then the server has not
// proved it holds the key.
//
// A Trust is safe for concurrent use, and its VerifyConnection is safe for
// use as a tls.Config callback. Make one with [NewTrust].
type Trust struct {
	mode         Mode
	pins         Set
	revoked      []Pin
	roots        *x509.CertPool
	host         string
	serverName   string
	store        *Store
	policy       TOFUPolicy
	prompt       PromptFunc
	strictExpiry bool
	now          func() time.Time
	warnFunc     func(error)
	base         *tls.Config

	promptMu sync.Mutex // serializes prompts
	mu       sync.Mutex
	approved map[Pin]bool // keys the prompt accepted, for Record
}

// NewTrust checks opts and returns a Trust. Every mistake is reported here,
// not at the first handshake: a missing pin set, store or prompt, a field
// that does not apply to the mode, or a template that already decides
// trust.
func NewTrust(opts TrustOptions) (*Trust, error) {
	t := &Trust{
		mode:         opts.Mode,
		pins:         opts.Pins,
		revoked:      opts.Revoked,
		roots:        opts.Roots,
		serverName:   opts.ServerName,
		store:        opts.Store,
		policy:       opts.TOFU,
		prompt:       opts.Prompt,
		strictExpiry: opts.StrictExpiry,
		now:          opts.Now,
		warnFunc:     opts.Warn,
		base:         opts.Config,
	}
	if !t.mode.valid() {
		return nil, fmt.Errorf("configuring trust: unknown mode %v", t.mode)
	}
	wantPins := t.mode == ModePin || t.mode == ModeCAPin
	switch {
	case wantPins && t.pins.IsEmpty():
		return nil, fmt.Errorf("configuring trust: mode %v needs at least one pin", t.mode)
	case !wantPins && !t.pins.IsEmpty():
		return nil, fmt.Errorf("configuring trust: pins are only used in modes pin and ca+pin, not %v (in tofu mode, add them to the store)", t.mode)
	case t.roots != nil && t.mode.skipsChainVerification():
		return nil, fmt.Errorf("configuring trust: CA roots are only used in modes ca and ca+pin, not %v", t.mode)
	}
	for _, r := range t.revoked {
		switch {
		case r.IsZero():
			return nil, errors.New("configuring trust: a zero revoked pin")
		case t.pins.Contains(r):
			return nil, fmt.Errorf("configuring trust: the pin %v is both trusted and revoked: remove it from the pins or from the revoked pins", r)
		}
	}
	if opts.Host != "" {
		h, err := canonicalHost(opts.Host)
		if err != nil {
			return nil, fmt.Errorf("configuring trust: %w", err)
		}
		t.host = h
		if t.serverName == "" {
			t.serverName, _, _ = net.SplitHostPort(h)
		}
	}
	if t.mode == ModeTOFU {
		switch {
		case t.store == nil:
			return nil, errors.New("configuring trust: tofu mode needs a known hosts store")
		case t.host == "":
			return nil, errors.New("configuring trust: tofu mode needs the server's HOST:PORT, its key in the store")
		case t.policy < TOFUAuto || t.policy > TOFUOff:
			return nil, fmt.Errorf("configuring trust: unknown trust-on-first-use policy %v", t.policy)
		case t.policy == TOFUPrompt && t.prompt == nil:
			return nil, errors.New("configuring trust: the prompt policy needs a Prompt function")
		case t.policy != TOFUPrompt && t.prompt != nil:
			return nil, fmt.Errorf("configuring trust: a Prompt function is set but the policy is %v, which never asks", t.policy)
		}
	} else if t.store != nil || t.policy != TOFUAuto || t.prompt != nil {
		return nil, fmt.Errorf("configuring trust: a store, a trust-on-first-use policy and a prompt are only used in tofu mode, not %v", t.mode)
	}
	if b := t.base; b != nil {
		switch {
		case b.InsecureSkipVerify, b.VerifyConnection != nil, b.VerifyPeerCertificate != nil, b.RootCAs != nil:
			return nil, errors.New("configuring trust: the template tls.Config sets InsecureSkipVerify, VerifyConnection, VerifyPeerCertificate or RootCAs; leave them to the trust mode")
		case b.EncryptedClientHelloConfigList != nil:
			// crypto/tls verifies an ECH rejection with its own callback,
			// not VerifyConnection.
			return nil, errors.New("configuring trust: encrypted client hello is not supported")
		case b.ServerName != "" && t.serverName != "" && b.ServerName != t.serverName:
			return nil, fmt.Errorf("configuring trust: the template's ServerName %q differs from %q", b.ServerName, t.serverName)
		case b.ServerName != "" && t.serverName == "":
			t.serverName = b.ServerName
		}
		if t.now == nil && b.Time != nil {
			t.now = b.Time
		}
	}
	return t, nil
}

// Mode returns the trust mode.
func (t *Trust) Mode() Mode { return t.mode }

// Host returns the server as canonical "host:port", or "" if none was given.
func (t *Trust) Host() string { return t.host }

// Config returns a new client tls.Config that trusts servers as t decides,
// with the template's other settings and TLS 1.2 as the minimum version
// unless the template asks for more. Each call returns a fresh config,
// which t never changes afterwards; the caller may change its other fields.
func (t *Trust) Config() *tls.Config {
	cfg := clientConfig(t.base, t.mode, t.verifyConnection)
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if t.serverName != "" {
		cfg.ServerName = t.serverName
	}
	if !t.mode.skipsChainVerification() {
		cfg.RootCAs = t.roots
	}
	if t.now != nil {
		cfg.Time = t.now
	}
	return cfg
}

// verifyConnection is the tls.Config.VerifyConnection of every mode. It
// reads the store but never writes it.
func (t *Trust) verifyConnection(cs tls.ConnectionState) error {
	return t.verifyPeer(cs.PeerCertificates, cs.VerifiedChains, t.hostName(cs))
}

// verifyPeer is the decision of every mode and transport: certs is what
// the server presented, leaf first, and chains the chains verified against
// the roots (by crypto/tls, or by [Trust.VerifyPeer]) in the modes that
// verify them. It reads the store but never writes it.
func (t *Trust) verifyPeer(certs []*x509.Certificate, chains [][]*x509.Certificate, host string) error {
	if len(certs) == 0 {
		return ErrNoPeerCertificate
	}
	leaf := certs[0]
	pin := PinOf(leaf)
	if t.mode != ModeInsecure {
		for _, r := range t.revoked {
			if r.Equal(pin) {
				return &RevokedKeyError{Host: host, Pin: pin, Leaf: leaf}
			}
		}
	}
	switch t.mode {
	case ModeCA:
		// crypto/tls verified the chain and the name, and re-checks both
		// against the current roots when it resumes a session.
		return nil
	case ModeCAPin:
		for _, chain := range chains {
			for _, c := range chain {
				if t.pins.ContainsKeyOf(c) {
					return nil
				}
			}
		}
		return t.pinError(host, pin, leaf)
	case ModePin:
		if !t.pins.Contains(pin) {
			return t.pinError(host, pin, leaf)
		}
		return t.checkValidity(host, pin, leaf)
	case ModeInsecure:
		t.warn(fmt.Errorf("accepted %s with key %v: %w", host, pin, ErrInsecure))
		if err := t.checkValidity(host, pin, leaf); err != nil {
			t.warn(err)
		}
		return nil
	case ModeTOFU:
		return t.verifyTOFU(pin, leaf)
	}
	return fmt.Errorf("pinning: unknown mode %v", t.mode)
}

func (t *Trust) verifyTOFU(pin Pin, leaf *x509.Certificate) error {
	e, found, err := t.store.Lookup(t.host)
	if err != nil {
		return fmt.Errorf("checking %s against the known hosts: %w", t.host, err)
	}
	if found {
		if r, revoked := e.RevokedPin(pin); revoked {
			re := e.revokedError(t.store.Path(), r)
			re.Leaf = leaf
			return re
		}
		if len(e.Pins) > 0 {
			if !e.Set().Contains(pin) {
				ke := e.keyError(t.store.Path(), pin)
				ke.Leaf = leaf
				return ke
			}
			return t.checkValidity(t.host, pin, leaf)
		}
		// Only revoked marks: the host was forgotten; first use again.
	}
	// First use. Check the dates first, so that a certificate refused
	// anyway is not put to the user.
	if err := t.checkValidity(t.host, pin, leaf); err != nil {
		return err
	}
	switch t.policy {
	case TOFUOff:
		return &UnknownHostError{Host: t.host, Got: pin, Path: t.store.Path()}
	case TOFUPrompt:
		return t.ask(pin, leaf)
	}
	return nil
}

// ask puts an unknown host's key to the prompt, once per key: prompts are
// serialized, so that concurrent handshakes to a new host ask once.
func (t *Trust) ask(pin Pin, leaf *x509.Certificate) error {
	t.promptMu.Lock()
	defer t.promptMu.Unlock()
	if t.isApproved(pin) {
		return nil
	}
	ok, err := t.prompt(t.host, pin, leaf)
	if err != nil {
		return fmt.Errorf("asking whether to trust %s: %w", t.host, err)
	}
	if !ok {
		return &UnknownHostError{Host: t.host, Got: pin, Path: t.store.Path(), Declined: true}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.approved == nil {
		t.approved = map[Pin]bool{}
	}
	t.approved[pin] = true
	return nil
}

func (t *Trust) isApproved(pin Pin) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.approved[pin]
}

// mayAdd reports whether Record may add an unknown host with pin: always
// with [TOFUAuto], with [TOFUPrompt] only if the prompt approved it.
func (t *Trust) mayAdd(pin Pin) bool {
	switch t.policy {
	case TOFUAuto:
		return true
	case TOFUPrompt:
		return t.isApproved(pin)
	}
	return false
}

// Record records, after a completed handshake made with [Trust.Config],
// what it proved, and reports what changed: in [ModeTOFU], a host seen for the first time is added
// with the key it presented as its current pin; a known key gets its
// last-seen time; a backup key becomes the current one (the server has
// rolled over), the former current key staying on as a backup until the
// server's announcement drops it (see [Trust.RecordAnnounced]) or the host
// is forgotten. In other modes Record does nothing and returns the zero
// [Recorded] and nil, so a client can call it unconditionally.
//
// Call it with the state of the connection (tls.Conn.ConnectionState) once
// Handshake has returned nil. A state whose handshake has not completed is
// refused with [ErrHandshakeIncomplete]. The store is checked again under
// its lock: if another process recorded a different key for the host in
// the meantime, Record fails with [*KeyError] and changes nothing.
//
// A [*KeyError], [*UnknownHostError] or [*LineError] means the host is not
// trusted after all: close the connection. Any other error is a problem
// with the store's file (permissions, a full disk, the lock timing out):
// the handshake's trust decision stands, but nothing was recorded.
func (t *Trust) Record(cs tls.ConnectionState) (Recorded, error) {
	if t.mode != ModeTOFU {
		return Recorded{}, nil
	}
	pin, err := t.completedPin(cs)
	if err != nil {
		return Recorded{}, err
	}
	rec, err := t.store.recordHandshake(t.host, pin, t.time(), t.mayAdd(pin))
	if err != nil {
		return Recorded{}, fmt.Errorf("recording %s: %w", t.host, err)
	}
	return rec, nil
}

// RecordAnnounced records what [Trust.Record] does, then the keys the
// server announced about itself inside the verified session (in the Space
// Captain protocol, the reply to KEYS): current must be the pin of the key
// the server presented, and next are the keys it will roll over to. In
// [ModeTOFU] the host's entry becomes: current, then each next pin as a
// backup. Pins learned earlier (on first use or from an announcement) that
// the server no longer announces are dropped, as OpenSSH's UpdateHostKeys
// drops host keys the server stops offering and as an HPKP header (RFC 7469)
// replaces the pins noted before: once the server, authenticated by its new
// key, no longer lists the old one, it is retired. Pins a person added
// ([Store.Add]) are kept. In other modes RecordAnnounced does nothing and
// returns the zero [Recorded].
//
// A protocol that cannot announce keys (or a server that does not know how)
// calls only Record. An announcement whose current pin is not the
// presented key, or with more than [MaxAnnouncedPins] next pins, fails with
// an error wrapping [ErrBadAnnouncement], and nothing is recorded.
func (t *Trust) RecordAnnounced(cs tls.ConnectionState, current Pin, next []Pin) (Recorded, error) {
	return t.RecordAnnouncement(cs, Announcement{Current: current, Next: next})
}

// Announcement is what a server announced about its keys inside a verified
// session (in the Space Captain protocol, the reply to KEYS).
type Announcement struct {
	// Current is the pin of the key the server says it uses: it must be
	// the key it presented.
	Current Pin
	// Next are the keys it will roll over to; at most [MaxAnnouncedPins].
	Next []Pin
	// Revoked are keys its operator has revoked; at most [MaxRevokedPins].
	Revoked []Pin
}

// RecordAnnouncement records what [Trust.RecordAnnounced] does with a's
// current and next pins, and before them the revocations a may make. A key
// may never revoke its own successor: "revoked P" is honoured only when P
// is already on file for the host, P is not the key just verified, and the
// verified key is P's successor (recorded while P was current, as P's
// announced next key or a backup added then, or added by a person); see
// [PinRecord.After]. Any other revoked pin is ignored and listed in
// [Recorded.Ignored], for the caller to log, except one not on file for
// the host, which has nothing to revoke. A pin honoured leaves the
// host's trusted pins and is marked revoked: from then on a server
// presenting it fails with [*RevokedKeyError], and no announcement makes it
// trusted again. In other modes it does nothing and returns the zero
// [Recorded].
func (t *Trust) RecordAnnouncement(cs tls.ConnectionState, a Announcement) (Recorded, error) {
	if t.mode != ModeTOFU {
		return Recorded{}, nil
	}
	pin, err := t.completedPin(cs)
	if err != nil {
		return Recorded{}, err
	}
	if !a.Current.Equal(pin) {
		return Recorded{}, fmt.Errorf("recording the keys %s announced: it announced %v as its current key but presented %v: %w", t.host, a.Current, pin, ErrBadAnnouncement)
	}
	if len(a.Next) > MaxAnnouncedPins {
		return Recorded{}, fmt.Errorf("recording the keys %s announced: %d next keys, more than %d: %w", t.host, len(a.Next), MaxAnnouncedPins, ErrBadAnnouncement)
	}
	if len(a.Revoked) > MaxRevokedPins {
		return Recorded{}, fmt.Errorf("recording the keys %s announced: %d revoked keys, more than %d: %w", t.host, len(a.Revoked), MaxRevokedPins, ErrBadAnnouncement)
	}
	for _, n := range append(append([]Pin(nil), a.Next...), a.Revoked...) {
		if n.IsZero() {
			return Recorded{}, fmt.Errorf("recording the keys %s announced: a zero pin: %w", t.host, ErrBadAnnouncement)
		}
	}
	rec, err := t.store.recordAnnounced(t.host, pin, a.Next, a.Revoked, t.time(), t.mayAdd(pin))
	if err != nil {
		return Recorded{}, fmt.Errorf("recording the keys %s announced: %w", t.host, err)
	}
	return rec, nil
}

// IgnoredRevocation is a revoked pin an announcement carried that
// [Trust.RecordAnnouncement] did not honour, and why.
type IgnoredRevocation struct {
	Pin    Pin
	Reason string
}

// Recorded says what [Trust.Record] or [Trust.RecordAnnounced] changed in
// the store, so that a client can tell the user ("recorded the key of
// HOST", "HOST moved to its next key"). The zero value means there was
// nothing to tell: the key was already the host's current one, and at most
// its last-seen time was updated.
type Recorded struct {
	// FirstUse is true when the host was not in the store and now is,
	// trusted with the key it presented.
	FirstUse bool
	// Promoted is true when the key presented was a backup and is now the
	// current one: the server has rolled over to its next key.
	Promoted bool
	// Added are announced pins newly recorded as backups.
	Added []Pin
	// Dropped are learned pins removed because the server no longer
	// announces them: retired keys. Pins revoked are not listed here.
	Dropped []Pin
	// Revoked are pins the server's announcement revoked: marked revoked
	// for the host from now on.
	Revoked []Pin
	// Ignored are revoked pins the announcement carried that were not
	// honoured, with why; a client should log them.
	Ignored []IgnoredRevocation
}

// completedPin returns the pin of the leaf of a completed handshake.
func (t *Trust) completedPin(cs tls.ConnectionState) (Pin, error) {
	if !cs.HandshakeComplete {
		return Pin{}, ErrHandshakeIncomplete
	}
	if len(cs.PeerCertificates) == 0 {
		return Pin{}, ErrNoPeerCertificate
	}
	return PinOf(cs.PeerCertificates[0]), nil
}

// checkValidity checks the leaf's dates: nil if valid; otherwise a
// [*ValidityError], returned with StrictExpiry and reported to Warn
// without.
func (t *Trust) checkValidity(host string, pin Pin, leaf *x509.Certificate) error {
	now := t.time()
	if !now.Before(leaf.NotBefore) && !now.After(leaf.NotAfter) {
		return nil
	}
	err := &ValidityError{Host: host, Pin: pin, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Now: now}
	if t.strictExpiry {
		return err
	}
	t.warn(err)
	return nil
}

func (t *Trust) pinError(host string, got Pin, leaf *x509.Certificate) *KeyError {
	want := make([]PinRecord, t.pins.Len())
	for i, p := range t.pins.pins {
		want[i] = PinRecord{Pin: p, Current: i == 0}
	}
	return &KeyError{Host: host, Want: want, Got: got, Leaf: leaf}
}

// hostName names the server in messages.
func (t *Trust) hostName(cs tls.ConnectionState) string {
	switch {
	case t.host != "":
		return t.host
	case t.serverName != "":
		return t.serverName
	case cs.ServerName != "":
		return cs.ServerName
	}
	return "the server"
}

func (t *Trust) time() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

func (t *Trust) warn(err error) {
	if t.warnFunc != nil {
		t.warnFunc(err)
		return
	}
	slog.Default().Warn("pinning: trusting the server despite a problem", "err", err)
}
