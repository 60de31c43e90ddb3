package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// Keys in PKCS#11 tokens.
//
// Wherever this package takes a key path it also takes a key kept in a
// PKCS#11 token (an HSM, a smart card, a YubiKey, SoftHSM2), named by a
// pkcs11: URI in the RFC 7512 form go.step.sm/crypto/kms/pkcs11 takes:
//
//	pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=sc;id=%02;object=sc-server?pin-source=/etc/sc/pin
//
// or by a file holding such a URI on its one line (a ".uri" file, such as
// server.uri beside server.crt), which is read under the rules of a key
// file. The private key never leaves the token: signatures are made by
// it, through go.step.sm/crypto/kms/pkcs11 (cgo; a build without cgo
// fails such keys with [ErrNoPKCS11]). Keys are opened through a [Tokens],
// which holds the open modules and sessions and is given in
// [KeyOptions.Tokens], [RotateOptions.Tokens] and the like.

// KeyURIExt is the extension of a file that names a token key by its URI:
// [InitLayout] writes ca.uri, server.uri and server.next.uri where a
// layout on disk has ca.key, server.key and server.next.key.
const KeyURIExt = ".uri"

// File names of the default layout when its keys are in a token
// ([InitOptions.Token]).
const (
	caKeyURIFile     = "ca.uri"
	serverKeyURIFile = "server.uri"
	nextKeyURIFile   = "server.next.uri"
)

// The objects [InitLayout] makes in a token: each key gets a fixed label
// (CKA_LABEL, the URI's object) and id (CKA_ID, the URI's id; the kms
// needs both to make a key). A fresh next key made by a rollover
// ([RotateOptions.PromoteNext]) is labelled sc-server-next-2,
// sc-server-next-3 and so on, with a random 8-byte id.
const (
	TokenObjectCA     = "sc-ca"
	TokenObjectServer = "sc-server"
	TokenObjectNext   = "sc-server-next"

	TokenIDCA     = 0x01
	TokenIDServer = 0x02
	TokenIDNext   = 0x03
)

// DefaultSignFailureLogInterval is how often at most a [Tokens] logs that
// a token key failed to sign.
const DefaultSignFailureLogInterval = 10 * time.Second

// IsKeyURI reports whether s is a pkcs11: URI rather than a file name.
func IsKeyURI(s string) bool {
	return len(s) >= len("pkcs11:") && strings.EqualFold(s[:len("pkcs11:")], "pkcs11:")
}

// pinValueAttr finds the value of a pin-value attribute.
var pinValueAttr = regexp.MustCompile(`(?i)(pin-value=)[^;?&#]*`)

// RedactKeyURI returns s with the value of any pin-value attribute
// replaced by REDACTED, for logs, errors and listings; other strings are
// returned as they are. A PIN in a URI is visible to anyone who can list
// processes (ps) or read the logs: give it with pin-source=FILE, or to the
// program by a file or an environment variable, instead.
func RedactKeyURI(s string) string {
	if !IsKeyURI(s) {
		return s
	}
	return pinValueAttr.ReplaceAllString(s, "${1}REDACTED")
}

// HasPINValue reports whether s is a pkcs11: URI that carries its PIN in
// a pin-value attribute, which callers should warn about.
func HasPINValue(s string) bool {
	return IsKeyURI(s) && pinValueAttr.MatchString(s)
}

// keyURI is a parsed pkcs11: URI.
type keyURI struct {
	redacted string // as given, pin-value redacted: for errors and logs

	module, token, serial, slot string
	maxSessions                 string
	id                          []byte
	object                      string
	pinValue, pinSource         string
	hasPINValue                 bool
}

// parseKeyURI parses a pkcs11: URI: path attributes separated by ";",
// query attributes by "&", values percent-encoded (RFC 7512). An id is
// read as go.step.sm/crypto/kms/pkcs11 reads it: hex digits (with an
// optional 0x and colons) are hex, anything else is the bytes themselves.
func parseKeyURI(s string) (*keyURI, error) {
	k := &keyURI{redacted: RedactKeyURI(s)}
	bad := func(format string, args ...any) error {
		return &TokenError{URI: k.redacted, Err: ErrKeyURI, Detail: fmt.Sprintf(format, args...)}
	}
	if !IsKeyURI(s) {
		return nil, bad("not a pkcs11: URI")
	}
	rest := s[len("pkcs11:"):]
	path, query, _ := strings.Cut(rest, "?")
	seen := map[string]bool{}
	set := func(attr string, inQuery bool) error {
		name, value, ok := strings.Cut(attr, "=")
		if attr == "" {
			return nil
		}
		if !ok {
			return bad("attribute %q has no value", name)
		}
		var err error
		if inQuery {
			value, err = url.QueryUnescape(value)
		} else {
			value, err = url.PathUnescape(value)
		}
		if err != nil {
			return bad("attribute %s: bad percent-encoding", name)
		}
		name = strings.ToLower(name)
		if seen[name] {
			return bad("attribute %s given twice", name)
		}
		seen[name] = true
		switch name {
		case "module-path":
			k.module = value
		case "token":
			k.token = value
		case "serial":
			k.serial = value
		case "slot-id":
			k.slot = value
		case "max-sessions":
			k.maxSessions = value
		case "id":
			k.id = decodeID(value)
		case "object":
			k.object = value
		case "pin-value":
			k.pinValue, k.hasPINValue = value, true
		case "pin-source":
			k.pinSource = value
		case "pin-prompt":
			return bad("pin-prompt is not supported: give the PIN with pin-source=FILE, or to the program by a file or an environment variable")
		case "type", "module-name", "library-manufacturer", "library-description", "library-version",
			"manufacturer", "model", "slot-manufacturer", "slot-description":
			return bad("attribute %s is not supported: name the module with module-path and the token with token, serial or slot-id", name)
		default:
			return bad("unknown attribute %q", name)
		}
		return nil
	}
	for _, a := range strings.Split(path, ";") {
		if err := set(a, false); err != nil {
			return nil, err
		}
	}
	if query != "" {
		for _, a := range strings.Split(query, "&") {
			if err := set(a, true); err != nil {
				return nil, err
			}
		}
	}
	n := 0
	for _, v := range []string{k.token, k.serial, k.slot} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, bad("no token: name it with token=LABEL, serial=SERIAL or slot-id=N")
	case n > 1:
		return nil, bad("token, serial and slot-id each name a token: give one of them")
	case k.hasPINValue && k.pinSource != "":
		return nil, bad("both pin-value and pin-source: give one")
	}
	return k, nil
}

// decodeID reads an id as the kms does (uri.GetEncoded): hex when it is
// hex, else the bytes as they are.
func decodeID(v string) []byte {
	hx := strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X")
	hx = strings.ReplaceAll(hx, ":", "")
	if len(hx)%2 != 0 {
		hx = "0" + hx
	}
	if b, err := hex.DecodeString(hx); err == nil && hx != "" {
		return b
	}
	return []byte(v)
}

// tokenID identifies the token a URI names, for sharing one open module
// session among its keys.
func (k *keyURI) tokenID() string {
	return strings.Join([]string{k.module, k.token, k.serial, k.slot, k.maxSessions}, "\x00")
}

// hasObject reports whether the URI names a key (id or object), not only
// a token.
func (k *keyURI) hasObject() bool { return len(k.id) > 0 || k.object != "" }

// forKMS is the URI as go.step.sm/crypto/kms/pkcs11 gets it: without any
// PIN (the kms gets the PIN as an option, read here), the id in hex.
func (k *keyURI) forKMS() string {
	var attrs []string
	add := func(name, v string) {
		if v != "" {
			attrs = append(attrs, name+"="+url.QueryEscape(v))
		}
	}
	add("module-path", k.module)
	add("token", k.token)
	add("serial", k.serial)
	add("slot-id", k.slot)
	add("max-sessions", k.maxSessions)
	if len(k.id) > 0 {
		attrs = append(attrs, "id="+hex.EncodeToString(k.id))
	}
	add("object", k.object)
	return "pkcs11:" + strings.Join(attrs, ";")
}

// String is the URI in a canonical form for .uri files: the token, then
// the key, then pin-source; never a PIN value.
func (k *keyURI) String() string {
	var attrs []string
	add := func(name, v string) {
		if v != "" {
			attrs = append(attrs, name+"="+escapeURIValue(v))
		}
	}
	add("module-path", k.module)
	add("token", k.token)
	add("serial", k.serial)
	add("slot-id", k.slot)
	add("max-sessions", k.maxSessions)
	if len(k.id) > 0 {
		var b strings.Builder
		for _, c := range k.id {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		attrs = append(attrs, "id="+b.String())
	}
	add("object", k.object)
	s := "pkcs11:" + strings.Join(attrs, ";")
	if k.pinSource != "" {
		s += "?pin-source=" + escapeURIValue(k.pinSource)
	}
	return s
}

// escapeURIValue percent-encodes what RFC 7512 does not allow in a value,
// keeping a path readable.
func escapeURIValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~/:@!$'()*+,", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// withObject returns a copy of k naming the key object with id.
func (k *keyURI) withObject(object string, id []byte) *keyURI {
	c := *k
	c.object, c.id = object, id
	c.redacted = RedactKeyURI(c.String())
	return &c
}

// describe names the key and its token for people.
func (k *keyURI) describe() string {
	var what []string
	if k.object != "" {
		what = append(what, fmt.Sprintf("%q", k.object))
	}
	if len(k.id) > 0 {
		what = append(what, "id "+hex.EncodeToString(k.id))
	}
	return fmt.Sprintf("key %s in %s", strings.Join(what, ", "), k.describeToken())
}

// describeToken names the token and its module for people.
func (k *keyURI) describeToken() string {
	var tok string
	switch {
	case k.token != "":
		tok = fmt.Sprintf("token %q", k.token)
	case k.serial != "":
		tok = fmt.Sprintf("the token with serial %s", k.serial)
	default:
		tok = fmt.Sprintf("the token in slot %s", k.slot)
	}
	return tok + " of " + k.moduleName()
}

// moduleName names the module for people.
func (k *keyURI) moduleName() string {
	if k.module == "" {
		return "the default PKCS#11 module (p11-kit-proxy)"
	}
	return fmt.Sprintf("PKCS#11 module %s", k.module)
}

// ReadPINFile reads a token PIN from the first line of a file, through
// the hardened reader: a regular file of at most 64 KiB, private to its
// owner (mode 0600, or 0640 owned by root), owned by the process's user or
// root and in no directory others may write. Unlike the kms's own
// pin-source, a file that is missing or cannot be read is an error, never
// an empty PIN.
func ReadPINFile(path string) ([]byte, error) {
	data, _, err := trustfile.Read(path, trustfile.TokenPIN)
	if err != nil {
		return nil, fmt.Errorf("reading token PIN file %q: %w", path, err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	line = bytes.TrimRight(line, " \t\r")
	if len(line) == 0 {
		return nil, fmt.Errorf("reading token PIN file %q: %w: the first line is empty", path, ErrTokenPIN)
	}
	return line, nil
}

// TokenOptions configures a [Tokens]. The zero value opens tokens whose
// key URIs give their PIN by pin-source (or pin-value), and logs to
// slog.Default().
type TokenOptions struct {
	// PIN returns the user PIN of a token whose key URI gives none, such
	// as one read from a file named on the command line or from an
	// environment variable. It is called at most once per token, when the
	// token is first opened. Nil means such tokens fail with
	// [ErrTokenPIN].
	PIN func() ([]byte, error)

	// PINFrom says where PIN gets the PIN ("--token-pin-file /etc/pin",
	// "$SC_TOKEN_PIN"), for the error that says it was wrong. Default
	// "the PIN given".
	PINFrom string

	// Logger receives signatures a token key failed to make (Error, at
	// most once per SignFailureLogInterval, with the count since the last
	// line) and the first one it makes again (Info). Nil means
	// slog.Default().
	Logger *slog.Logger

	// SignFailureLogInterval is the least time between two log lines
	// about failed signatures. Default
	// [DefaultSignFailureLogInterval].
	SignFailureLogInterval time.Duration

	// Now returns the current time, for the log's rate limit. Nil means
	// time.Now.
	Now func() time.Time
}

// Tokens opens keys kept in PKCS#11 tokens and keeps each token it opened
// open (its module loaded, a session logged in) until [Tokens.Close], so
// that the signers it returned keep working. A key that fails to sign at
// run time (the token was removed, the module failed) returns an error
// wrapping [ErrKeyUnavailable] from Sign, and is logged at a limited rate;
// a TLS server then fails those handshakes and keeps running.
//
// A Tokens is safe for concurrent use. Make one with [NewTokens]; the zero
// value is not usable.
type Tokens struct {
	opts TokenOptions
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex // guards open, uriPINs and closed
	open    map[string]tokenBackend
	uriPINs map[string][]byte // pin-values taken out of URIs, by token
	closed  bool

	failing    atomic.Bool
	failMu     sync.Mutex // guards the fields below
	lastLog    time.Time
	unreported int
}

// NewTokens returns a Tokens with nothing open yet; it opens each token
// when a key in it is first asked for.
func NewTokens(opts TokenOptions) *Tokens {
	if opts.SignFailureLogInterval <= 0 {
		opts.SignFailureLogInterval = DefaultSignFailureLogInterval
	}
	if opts.PINFrom == "" {
		opts.PINFrom = "the PIN given"
	}
	t := &Tokens{opts: opts, log: opts.Logger, now: opts.Now, open: map[string]tokenBackend{}, uriPINs: map[string][]byte{}}
	if t.log == nil {
		t.log = slog.Default()
	}
	if t.now == nil {
		t.now = time.Now
	}
	return t
}

// Close closes every token it opened; signers it returned fail from then
// on. It returns the first error.
func (t *Tokens) Close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	var first error
	for id, b := range t.open {
		if err := b.close(); err != nil && first == nil {
			first = err
		}
		delete(t.open, id)
	}
	return first
}

// backend returns the open token k names, opening it (and logging in)
// the first time.
func (t *Tokens) backend(k *keyURI) (tokenBackend, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !pkcs11Supported {
		return nil, &TokenError{URI: k.redacted, Err: ErrNoPKCS11}
	}
	if t.closed {
		return nil, &TokenError{URI: k.redacted, Err: ErrKeyUnavailable, Detail: "the tokens were closed"}
	}
	if b, ok := t.open[k.tokenID()]; ok {
		return b, nil
	}
	if err := checkModule(k); err != nil {
		return nil, err
	}
	pin, from, err := t.pin(k)
	if err != nil {
		return nil, err
	}
	b, err := openBackend(k, string(pin), from)
	if err != nil {
		return nil, err
	}
	t.open[k.tokenID()] = b
	return b, nil
}

// TakePIN moves the pin-value of a key URI into t and returns the URI
// without it (in canonical form), so that nothing downstream (errors,
// logs, files) holds the PIN; t then logs in to that token with it. Every
// function of this package that takes a key path calls it first; a
// program calls it too before it prints or logs a key path it was given.
// Other paths are returned as they are. On a nil Tokens, which cannot
// open the key anyway, the PIN is redacted.
func (t *Tokens) TakePIN(path string) string {
	if !HasPINValue(path) {
		return path
	}
	if t == nil {
		// Nothing can open it anyway; keep the PIN out of the error.
		return RedactKeyURI(path)
	}
	k, err := parseKeyURI(path)
	if err != nil {
		// Opening it will fail with the same error, PIN redacted.
		return RedactKeyURI(path)
	}
	t.mu.Lock()
	t.uriPINs[k.tokenID()] = []byte(k.pinValue)
	t.mu.Unlock()
	k.pinValue, k.hasPINValue = "", false
	return k.String()
}

// pin finds the PIN of k's token: pin-source, else pin-value, else the
// Tokens' PIN source. t.mu is held.
func (t *Tokens) pin(k *keyURI) (pin []byte, from string, err error) {
	if taken, ok := t.uriPINs[k.tokenID()]; ok && k.pinSource == "" && !k.hasPINValue {
		k.pinValue, k.hasPINValue = string(taken), true
	}
	switch {
	case k.pinSource != "":
		path := k.pinSource
		if u, err := url.Parse(path); err == nil && u.Scheme == "file" {
			path = u.Path
			if path == "" {
				path = u.Opaque
			}
		}
		pin, err := ReadPINFile(path)
		if err != nil {
			return nil, "", &TokenError{URI: k.redacted, Err: ErrTokenPIN, Detail: "pin-source: " + err.Error()}
		}
		return pin, "the file " + path + " (pin-source in the key URI)", nil
	case k.hasPINValue:
		if k.pinValue == "" {
			return nil, "", &TokenError{URI: k.redacted, Err: ErrTokenPIN, Detail: "pin-value is empty"}
		}
		return []byte(k.pinValue), "pin-value in the key URI", nil
	case t.opts.PIN != nil:
		pin, err := t.opts.PIN()
		if err != nil {
			return nil, "", &TokenError{URI: k.redacted, Err: ErrTokenPIN, Detail: "reading the PIN from " + t.opts.PINFrom + ": " + err.Error()}
		}
		if len(pin) == 0 {
			return nil, "", &TokenError{URI: k.redacted, Err: ErrTokenPIN, Detail: t.opts.PINFrom + " is empty"}
		}
		return pin, t.opts.PINFrom, nil
	}
	return nil, "", &TokenError{URI: k.redacted, Err: ErrTokenPIN,
		Detail: fmt.Sprintf("no PIN for %s: the key URI has no pin-source and none was given otherwise", k.describeToken())}
}

// checkModule refuses a module file that is missing, or that another
// user could have written: loading it runs its code in this process.
// A bare library name (no slash) is left to the dynamic loader's search.
func checkModule(k *keyURI) error {
	if k.module == "" || !strings.ContainsRune(k.module, '/') {
		return nil
	}
	if _, err := trustfile.Stat(k.module, trustfile.PKCS11Module); err != nil {
		detail := err.Error()
		if errors.Is(err, fs.ErrNotExist) {
			detail = fmt.Sprintf("%s does not exist (module-path in the key URI)", k.module)
		}
		return &TokenError{URI: k.redacted, Err: ErrTokenModule, Detail: detail, cause: err}
	}
	return nil
}

// signer opens the key a URI names.
func (t *Tokens) signer(uri string) (crypto.Signer, *keyURI, error) {
	k, err := parseKeyURI(uri)
	if err != nil {
		return nil, nil, err
	}
	if !k.hasObject() {
		return nil, nil, &TokenError{URI: k.redacted, Err: ErrKeyURI, Detail: "the URI names a token but no key in it: add object=LABEL and/or id=ID"}
	}
	b, err := t.backend(k)
	if err != nil {
		return nil, nil, err
	}
	s, err := b.signer(k)
	if err != nil {
		return nil, nil, err
	}
	return &tokenSigner{Signer: s, t: t, uri: k.redacted}, k, nil
}

// CreateKey makes a key of type kt in the token a pkcs11: URI names, as
// the URI's object (CKA_LABEL) and id (CKA_ID), which are both required;
// the private key is made sensitive and not extractable, so it never
// leaves the token. Its Key.URI is the URI in canonical form, without any
// PIN (pin-source is kept), as a .uri file would hold it. P-256, P-384 and
// RSA 2048 to 4096 keys can be made; Ed25519 cannot ([ErrUnsupportedKey]).
// A token that already holds a key with that label is
// [ErrTokenKeyExists].
func (t *Tokens) CreateKey(uri string, kt KeyType) (*Key, error) {
	k, err := parseKeyURI(t.TakePIN(uri))
	if err != nil {
		return nil, err
	}
	s, err := t.create(k, kt)
	if err != nil {
		return nil, err
	}
	return &Key{Signer: s, Format: formatToken, URI: k.String()}, nil
}

// DeleteKey deletes the key a pkcs11: URI names from its token: for
// undoing a [Tokens.CreateKey] whose certificate could not be made. A key
// clients pin cannot be brought back; nothing in this package deletes one
// by itself.
func (t *Tokens) DeleteKey(uri string) error {
	k, err := parseKeyURI(t.TakePIN(uri))
	if err != nil {
		return err
	}
	return t.remove(k)
}

// create makes a key of type kt in the token, as the object and id k
// names, and returns it. An existing object of that label (whatever its
// id) is [ErrTokenKeyExists]: nothing in a token is ever replaced.
func (t *Tokens) create(k *keyURI, kt KeyType) (crypto.Signer, error) {
	if k.object == "" || len(k.id) == 0 {
		return nil, &TokenError{URI: k.redacted, Err: ErrKeyURI, Detail: "making a key in a token needs both object=LABEL and id=ID in the URI"}
	}
	switch kt {
	case "", KeyECDSAP256, KeyECDSAP384, KeyRSA2048, KeyRSA3072, KeyRSA4096:
	case KeyEd25519:
		return nil, &TokenError{URI: k.redacted, Err: ErrUnsupportedKey, Detail: "Ed25519 keys cannot be made in a PKCS#11 token by this toolkit (its backend makes ECDSA P-256, P-384 and RSA 2048 to 4096 keys): choose --key-type ecdsa-p256"}
	default:
		return nil, &TokenError{URI: k.redacted, Err: ErrUnsupportedKey, Detail: fmt.Sprintf("key type %q", kt)}
	}
	b, err := t.backend(k)
	if err != nil {
		return nil, err
	}
	// The kms looks for an existing key by id and label together; a
	// label alone in use would make two keys answer to one name.
	if b.exists(k.withObject(k.object, nil)) {
		return nil, &TokenError{URI: k.redacted, Err: ErrTokenKeyExists,
			Detail: fmt.Sprintf("%s already holds a key labelled %q; keys in a token are never replaced", k.describeToken(), k.object)}
	}
	s, err := b.create(k, kt)
	if err != nil {
		return nil, err
	}
	return &tokenSigner{Signer: s, t: t, uri: k.redacted}, nil
}

// remove deletes a key this package made, to undo a change that failed
// before it was committed. Errors are returned, not logged.
func (t *Tokens) remove(k *keyURI) error {
	b, err := t.backend(k)
	if err != nil {
		return err
	}
	return b.remove(k)
}

// tokenBackend is one open token: go.step.sm/crypto/kms/pkcs11 in a cgo
// build (kms_pkcs11.go), nothing without cgo (kms_nopkcs11.go).
type tokenBackend interface {
	signer(k *keyURI) (crypto.Signer, error)
	exists(k *keyURI) bool
	create(k *keyURI, kt KeyType) (crypto.Signer, error)
	remove(k *keyURI) error
	close() error
}

// tokenSigner is a key in a token. It reports failed signatures to its
// Tokens, which logs them at a limited rate, and wraps them in
// [ErrKeyUnavailable].
type tokenSigner struct {
	crypto.Signer
	t   *Tokens
	uri string // redacted
}

// Sign signs with the key in the token.
func (s *tokenSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := s.Signer.Sign(r, digest, opts)
	if err != nil {
		err = &TokenError{URI: s.uri, Err: ErrKeyUnavailable, Detail: "the token did not sign: " + err.Error(), cause: err}
		s.t.signFailed(s.uri, err)
		return nil, err
	}
	if s.t.failing.Load() {
		s.t.signRecovered(s.uri)
	}
	return sig, nil
}

// signFailed logs a failed signature, at most once per interval, with the
// number of failures since the last line.
func (t *Tokens) signFailed(uri string, err error) {
	t.failing.Store(true)
	t.failMu.Lock()
	t.unreported++
	now := t.now()
	if !t.lastLog.IsZero() && now.Sub(t.lastLog) < t.opts.SignFailureLogInterval {
		t.failMu.Unlock()
		return
	}
	n := t.unreported
	t.lastLog, t.unreported = now, 0
	t.failMu.Unlock()
	t.log.Error("token key unavailable: signing failed; TLS handshakes with this key fail until the token answers again",
		"key", uri, "err", err, "failures", n, "log_interval", t.opts.SignFailureLogInterval)
}

// signRecovered logs the first signature made after failures.
func (t *Tokens) signRecovered(uri string) {
	if !t.failing.CompareAndSwap(true, false) {
		return
	}
	t.failMu.Lock()
	n := t.unreported
	t.unreported = 0
	t.failMu.Unlock()
	t.log.Info("token key signing again", "key", uri, "unlogged_failures", n)
}

// ProveKey signs a random challenge with key and verifies the signature
// with the certificate's public key: proof that the key, wherever it is
// kept, is the certificate's, beyond comparing public keys (a token
// reports its public key from an object of its own). A signature that
// does not verify is [ErrKeyMismatch]; one the key could not make is the
// signer's error ([ErrKeyUnavailable] for a token key).
func ProveKey(cert *x509.Certificate, key crypto.Signer) error {
	challenge := make([]byte, 32)
	if _, err := rand.Read(challenge); err != nil {
		return err
	}
	digest := sha256.Sum256(challenge)
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return fmt.Errorf("signing a challenge: %w", err)
		}
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			return fmt.Errorf("%w: a signature by the key does not verify with the certificate's public key", ErrKeyMismatch)
		}
	case *rsa.PublicKey:
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		sig, err := key.Sign(rand.Reader, digest[:], opts)
		if err != nil {
			return fmt.Errorf("signing a challenge: %w", err)
		}
		if rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, opts) != nil {
			return fmt.Errorf("%w: a signature by the key does not verify with the certificate's public key", ErrKeyMismatch)
		}
	case ed25519.PublicKey:
		sig, err := key.Sign(rand.Reader, challenge, crypto.Hash(0))
		if err != nil {
			return fmt.Errorf("signing a challenge: %w", err)
		}
		if !ed25519.Verify(pub, challenge, sig) {
			return fmt.Errorf("%w: a signature by the key does not verify with the certificate's public key", ErrKeyMismatch)
		}
	default:
		return fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
	}
	return nil
}

// isKeyRef reports whether path names a token key directly (a URI) rather
// than a file.
func isKeyRef(path string) bool { return IsKeyURI(path) }

// keyURIData reports whether the content of a key file is a key URI (a
// .uri file) and returns it.
func keyURIData(data []byte) (string, bool) {
	s := strings.TrimSpace(string(data))
	if !IsKeyURI(s) || strings.ContainsAny(s, "\r\n") {
		return "", false
	}
	return s, true
}

// readKeyRef reads a key reference: the key file at path (which may hold
// a key URI), or, when path is itself a pkcs11: URI, the URI. fi is nil
// for a URI.
func readKeyRef(path string, k trustfile.Kind) ([]byte, fs.FileInfo, error) {
	if isKeyRef(path) {
		return []byte(path), nil, nil
	}
	return readKey(path, k)
}

// parseKeyData parses a key file's content: a PEM key, or a key URI
// opened through opts.Tokens.
func parseKeyData(data []byte, opts KeyOptions) (*Key, error) {
	uri, ok := keyURIData(data)
	if !ok {
		return ParseKeyPEM(data, opts)
	}
	if opts.Tokens == nil {
		return nil, &TokenError{URI: RedactKeyURI(uri), Err: ErrKeyUnavailable, Detail: "the key is in a PKCS#11 token and no Tokens were given to open it (KeyOptions.Tokens)"}
	}
	s, k, err := opts.Tokens.signer(uri)
	if err != nil {
		return nil, err
	}
	if err := checkServingKey(s); err != nil {
		return nil, err
	}
	return &Key{Signer: s, Format: formatToken, URI: k.redacted}, nil
}

// keyRefExists reports whether a key reference exists: a URI always
// does (whether the token holds the key is learnt by opening it).
func keyRefExists(path string) bool {
	if isKeyRef(path) {
		return true
	}
	_, err := os.Stat(path)
	return err == nil
}

// ResolveKeyPath returns the key reference to use for path: path itself
// when it is a URI or exists, else, for a missing NAME.key, NAME.uri when
// that exists (the layout [InitLayout] makes with its keys in a token),
// else path. Callers that default a key path from a certificate
// ([SiblingKeyPath]) or a layout ([DefaultLayout]) resolve it with this.
func ResolveKeyPath(path string) string {
	if path == "" || isKeyRef(path) || filepath.Ext(path) != ".key" {
		return path
	}
	if _, err := os.Lstat(path); err == nil {
		return path
	}
	alt := strings.TrimSuffix(path, ".key") + KeyURIExt
	if _, err := os.Lstat(alt); err == nil {
		return alt
	}
	return path
}

// tokenKeys makes the keys of a layout in a token and can remove them
// again when the change that needed them fails.
type tokenKeys struct {
	tokens  *Tokens
	base    *keyURI
	created []*keyURI
}

func newTokenKeys(tokens *Tokens, uri string) (*tokenKeys, error) {
	if tokens == nil {
		return nil, &TokenError{URI: RedactKeyURI(uri), Err: ErrKeyUnavailable, Detail: "no Tokens were given to open the token"}
	}
	k, err := parseKeyURI(uri)
	if err != nil {
		return nil, err
	}
	if k.hasObject() {
		return nil, &TokenError{URI: k.redacted, Err: ErrKeyURI, Detail: "the URI names a key (object or id): give the token alone, the keys get fixed names in it"}
	}
	return &tokenKeys{tokens: tokens, base: k}, nil
}

// make creates one key as object and id; data is the content of its .uri
// file.
func (tk *tokenKeys) make(object string, id []byte, kt KeyType) (crypto.Signer, []byte, error) {
	k := tk.base.withObject(object, id)
	s, err := tk.tokens.create(k, kt)
	if err != nil {
		return nil, nil, err
	}
	tk.created = append(tk.created, k)
	return s, []byte(k.String() + "\n"), nil
}

// rollback removes the keys made, after a failure; what cannot be removed
// is left (an unused key in a token harms nobody).
func (tk *tokenKeys) rollback() {
	if tk == nil {
		return
	}
	for _, k := range tk.created {
		_ = tk.tokens.remove(k)
	}
	tk.created = nil
}

// maxNextLabelTries bounds the search for a free label for a fresh next
// key.
const maxNextLabelTries = 100

// nextTokenKey makes a fresh next key in the token of the next key being
// promoted, labelled after it (sc-server-next becomes sc-server-next-2,
// that one sc-server-next-3) with a random 8-byte id. A label left in
// use by an interrupted rollover is skipped.
func nextTokenKey(tokens *Tokens, nextURI string, kt KeyType) (*tokenKeys, crypto.Signer, []byte, error) {
	k, err := parseKeyURI(nextURI)
	if err != nil {
		return nil, nil, nil, err
	}
	tk := &tokenKeys{tokens: tokens, base: k}
	label := k.object
	if label == "" {
		label = TokenObjectNext
	}
	for range maxNextLabelTries {
		label = nextLabel(label)
		id := make([]byte, 8)
		if _, err := rand.Read(id); err != nil {
			return nil, nil, nil, err
		}
		s, data, err := tk.make(label, id, kt)
		if errors.Is(err, ErrTokenKeyExists) {
			continue
		}
		if err != nil {
			return nil, nil, nil, err
		}
		return tk, s, data, nil
	}
	return nil, nil, nil, &TokenError{URI: k.redacted, Err: ErrTokenKeyExists, Detail: fmt.Sprintf("no free label after %s", label)}
}

// labelNumber splits "NAME-N" into NAME and N.
var labelNumber = regexp.MustCompile(`^(.*)-([0-9]+)$`)

// nextLabel numbers labels: "sc-server-next" → "sc-server-next-2",
// "sc-server-next-2" → "sc-server-next-3".
func nextLabel(label string) string {
	if m := labelNumber.FindStringSubmatch(label); m != nil {
		var n int
		fmt.Sscanf(m[2], "%d", &n)
		return fmt.Sprintf("%s-%d", m[1], n+1)
	}
	return label + "-2"
}

// proveTokenKey proves a token key with a signature ([ProveKey]); keys
// read from files need no proof beyond the comparison of public keys.
func proveTokenKey(cert *x509.Certificate, key *Key) error {
	if key.Format != formatToken {
		return nil
	}
	return ProveKey(cert, key.Signer)
}
