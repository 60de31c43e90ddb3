package pinning

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	filewatch "github.com/spacecaptain/spacecaptain/internal/watch"
)

// ClientAuth says whether a server asks its clients for a certificate.
type ClientAuth int

// The client authentication modes.
const (
	// ClientAuthOff asks for no certificate: every client is anonymous.
	ClientAuthOff ClientAuth = iota
	// ClientAuthOptional asks for one and admits clients without one as
	// anonymous; a client that presents one must be admitted by it.
	ClientAuthOptional
	// ClientAuthRequire refuses clients without an admitted certificate.
	ClientAuthRequire
)

var clientAuthNames = [...]string{"off", "optional", "require"}

func (m ClientAuth) String() string {
	if m < 0 || int(m) >= len(clientAuthNames) {
		return fmt.Sprintf("ClientAuth(%d)", int(m))
	}
	return clientAuthNames[m]
}

// ParseClientAuth parses "off", "optional" or "require".
func ParseClientAuth(s string) (ClientAuth, error) {
	for i, n := range clientAuthNames {
		if s == n {
			return ClientAuth(i), nil
		}
	}
	return 0, fmt.Errorf("client auth %q: want off, optional or require", s)
}

// The reasons a client is refused, [ClientError.Reason]. They are also
// the values of sc-server's handshake counter's result label.
const (
	// RefusedNoClientCert: [ClientAuthRequire] and the client presented
	// no certificate.
	RefusedNoClientCert = "no_client_cert"
	// RefusedUnknownClient: the key is not in the allow list and its
	// certificate was not issued by the client CA.
	RefusedUnknownClient = "unknown_client"
	// RefusedClientRevoked: the key, or the certificate's serial number,
	// is in the revoke list.
	RefusedClientRevoked = "client_revoked"
	// RefusedClientCertExpired: a certificate issued by the client CA is
	// expired or not yet valid.
	RefusedClientCertExpired = "client_cert_expired"
	// RefusedBadClientChain: a certificate that chains to the client CA
	// but is not usable for client authentication (no clientAuth extended
	// key usage, as a server certificate) or whose chain is otherwise
	// bad.
	RefusedBadClientChain = "bad_client_chain"
)

// ClientRefusalReasons returns every reason a client is refused, in a
// fixed order: the bounded set of label values a metric may use.
func ClientRefusalReasons() []string {
	return []string{RefusedNoClientCert, RefusedUnknownClient, RefusedClientRevoked, RefusedClientCertExpired, RefusedBadClientChain}
}

// ClientError is a client refused by [ClientVerifier.VerifyConnection].
type ClientError struct {
	// Reason is one of the Refused… constants.
	Reason string
	// Pin is the pin of the key presented, zero when none was.
	Pin Pin
	// Err is the chain verification error, when there is one.
	Err error
}

func (e *ClientError) Error() string {
	var s string
	switch e.Reason {
	case RefusedNoClientCert:
		s = "client presented no certificate and client authentication is required"
	case RefusedUnknownClient:
		s = fmt.Sprintf("client key %v is not in the allow list and its certificate is not from the client CA", e.Pin)
	case RefusedClientRevoked:
		s = fmt.Sprintf("client key %v is revoked", e.Pin)
	case RefusedClientCertExpired:
		s = fmt.Sprintf("client certificate of key %v is expired or not yet valid", e.Pin)
	default:
		s = fmt.Sprintf("client certificate of key %v does not chain to the client CA as a client certificate", e.Pin)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ClientError) Unwrap() error { return e.Err }

// RefusalReason returns e.Reason: metrics find it through this method
// without importing this package.
func (e *ClientError) RefusalReason() string { return e.Reason }

// ClientIdentity is who a client proved to be: its key's pin and a name,
// from the allow list or the certificate's subject, made safe with
// [SafeClientName]. The zero value is an anonymous client.
type ClientIdentity struct {
	Pin  Pin
	Name string
}

// IsZero reports whether id is anonymous.
func (id ClientIdentity) IsZero() bool { return id.Pin.IsZero() }

// ClientVerifierOptions configures [NewClientVerifier].
type ClientVerifierOptions struct {
	// Mode is the client authentication mode. The zero value is
	// ClientAuthOff, with which NewClientVerifier refuses to be made:
	// there is nothing to verify.
	Mode ClientAuth
	// CAFile holds the client CA certificates (PEM): a client certificate
	// that chains to one, with the clientAuth extended key usage, is
	// admitted. Default "": none. It must not be the CA that issues
	// server certificates (see docs/TRUST.md).
	CAFile string
	// AllowFile is the allow list ([ParseAllowList]). Default "": none.
	AllowFile string
	// RevokedFile is the revoke list ([ParseRevokeList]); revocation wins
	// over the CA and the allow list. Default "": none.
	RevokedFile string
	// Debounce and CheckInterval are the watcher's quiet time after a file
	// event and the period of its check. Zero means 100 ms and one
	// minute; a negative CheckInterval turns the periodic check off.
	Debounce, CheckInterval time.Duration
	// OnLoad, when set, is called after every load of a file, the first
	// included, from the goroutine that loaded it.
	OnLoad func(ClientListEvent)
	// OnChange, when set, is called after a reload (not the first load)
	// put new lists in force, with the lists that changed (ListAllow,
	// ListRevoked, ListCA): a server closes the live sessions of newly
	// revoked clients from here ([ClientVerifier.Revoked]).
	OnChange func(lists []string)
	// Logger receives reload logs. Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock certificate validity is checked against. Nil means
	// time.Now.
	Now func() time.Time
}

// ClientListEvent reports one load of one of a verifier's files.
type ClientListEvent struct {
	// List is "allow", "revoked" or "ca"; Path is the file.
	List, Path string
	// Entries is the size of the list in force after the load (pins,
	// entries or CA certificates).
	Entries int
	// Changed says whether a new list is in force; Err is why a changed
	// file was refused (the previous list stays).
	Changed bool
	Err     error
	// Trigger is what caused the load: "initial", "file-event",
	// "periodic", "reload", ...
	Trigger string
}

// The lists of a verifier.
const (
	ListAllow   = "allow"
	ListRevoked = "revoked"
	ListCA      = "ca"
)

// clientState is what a handshake checks against; never modified once
// published.
type clientState struct {
	allow    *AllowList
	revoked  *RevokeList
	ca       *x509.CertPool
	caCerts  []*x509.Certificate
	hashes   [3][sha256.Size]byte
	caLoaded bool
}

// ClientVerifier admits or refuses a server's TLS clients by the key and
// certificate they present: by the allow list, by the client CA, and
// never when the revoke list names them. It follows its files as the
// certificate source does (the directory is watched; see [Run]) and
// [ClientVerifier.Reload] re-reads them at once; a file that fails to
// parse leaves its previous list in force. Its methods are safe for
// concurrent use, and VerifyConnection is safe for use as a tls.Config
// callback.
type ClientVerifier struct {
	opts  ClientVerifierOptions
	log   *slog.Logger
	now   func() time.Time
	state atomic.Pointer[clientState]
	mu    sync.Mutex // serializes loads
}

// NewClientVerifier loads the files of opts and returns the verifier. It
// fails when a file cannot be read or parsed, when no file is given in
// [ClientAuthRequire] (nothing could be admitted), and for ClientAuthOff.
// It starts no goroutine: call Run to follow the files.
func NewClientVerifier(opts ClientVerifierOptions) (*ClientVerifier, error) {
	switch opts.Mode {
	case ClientAuthOptional, ClientAuthRequire:
	default:
		return nil, fmt.Errorf("client verifier with client auth %v: nothing to verify", opts.Mode)
	}
	if opts.CAFile == "" && opts.AllowFile == "" {
		return nil, errors.New("client authentication needs a client CA file or an allow list, or both: with neither, no client could be admitted")
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = time.Minute
	}
	v := &ClientVerifier{opts: opts, log: opts.Logger, now: opts.Now}
	if v.log == nil {
		v.log = slog.Default()
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.state.Store(&clientState{})
	if err := v.load(string(filewatch.Initial), true); err != nil {
		return nil, err
	}
	return v, nil
}

// Mode returns the client authentication mode.
func (v *ClientVerifier) Mode() ClientAuth { return v.opts.Mode }

// CACertificates returns the client CA certificates in force.
func (v *ClientVerifier) CACertificates() []*x509.Certificate { return v.state.Load().caCerts }

// Sizes returns the number of entries of the allow and revoke lists in
// force.
func (v *ClientVerifier) Sizes() (allow, revoked int) {
	st := v.state.Load()
	return st.allow.Len(), st.revoked.Len()
}

// Reload re-reads the files now (SIGHUP). Each file that changed and
// parses replaces its list; one that fails keeps its previous list, and
// its error is returned (all of them, joined) and logged.
func (v *ClientVerifier) Reload() error { return v.load(string(filewatch.Reload), false) }

// Run follows the files until ctx ends: a file event in one of their
// directories (after a debounce; a Kubernetes "..data" swap included), a
// periodic check, and a re-established watch each reload them. It returns
// nil when ctx ends.
func (v *ClientVerifier) Run(ctx context.Context) error {
	var files []string
	for _, f := range []string{v.opts.CAFile, v.opts.AllowFile, v.opts.RevokedFile} {
		if f != "" {
			files = append(files, f)
		}
	}
	opts := filewatch.Options{Files: files, Debounce: v.opts.Debounce, Interval: v.opts.CheckInterval, Logger: v.log, What: "client lists"}
	return filewatch.Run(ctx, opts, func(ctx context.Context, t filewatch.Trigger) bool {
		return v.load(string(t), false) != nil && t == filewatch.FileEvent
	})
}

// load reads the files; initial makes any failure fatal.
func (v *ClientVerifier) load(trigger string, initial bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	old := v.state.Load()
	next := *old
	var errs []error
	var changed []string
	for i, f := range []struct {
		list, path string
		kind       trustfile.Kind
	}{
		{ListCA, v.opts.CAFile, trustfile.CACertificate},
		{ListAllow, v.opts.AllowFile, trustfile.AllowList},
		{ListRevoked, v.opts.RevokedFile, trustfile.RevokeList},
	} {
		if f.path == "" {
			continue
		}
		ev := ClientListEvent{List: f.list, Path: f.path, Trigger: trigger}
		began := time.Now()
		data, _, err := trustfile.Read(f.path, f.kind)
		var sum [sha256.Size]byte
		if err == nil {
			sum = sha256.Sum256(data)
			if !initial && sum == old.hashes[i] {
				ev.Entries = next.size(f.list)
				v.report(ev)
				continue
			}
			err = next.parse(f.list, data, v.now())
		}
		if err != nil {
			var le *ListError
			if errors.As(err, &le) {
				le.Path = f.path
			} else {
				err = fmt.Errorf("reading the client %s file %q: %w", listWord(f.list), f.path, err)
			}
			errs = append(errs, err)
			ev.Err, ev.Entries = err, old.size(f.list)
			if !initial {
				v.log.Warn("client list not reloaded; the previous one stays in force", "list", f.list, "path", f.path, "trigger", trigger, "err", err)
			}
			v.report(ev)
			continue
		}
		next.hashes[i] = sum
		changed = append(changed, f.list)
		ev.Changed, ev.Entries = true, next.size(f.list)
		if !initial {
			v.log.Info("client list reloaded", "list", f.list, "path", f.path, "entries", ev.Entries, "trigger", trigger, "took", time.Since(began).Round(time.Millisecond))
		}
		v.report(ev)
	}
	if initial && len(errs) > 0 {
		return errors.Join(errs...)
	}
	v.state.Store(&next)
	if !initial && len(changed) > 0 && v.opts.OnChange != nil {
		v.opts.OnChange(changed)
	}
	return errors.Join(errs...)
}

func (v *ClientVerifier) report(ev ClientListEvent) {
	if v.opts.OnLoad != nil {
		v.opts.OnLoad(ev)
	}
}

func listWord(list string) string {
	switch list {
	case ListAllow:
		return "allow list"
	case ListRevoked:
		return "revoke list"
	}
	return "CA"
}

func (st *clientState) size(list string) int {
	switch list {
	case ListAllow:
		return st.allow.Len()
	case ListRevoked:
		return st.revoked.Len()
	}
	return len(st.caCerts)
}

// parse replaces one list of st with data parsed.
func (st *clientState) parse(list string, data []byte, now time.Time) error {
	switch list {
	case ListAllow:
		l, err := ParseAllowList(data)
		if err != nil {
			return err
		}
		st.allow = l
	case ListRevoked:
		l, err := ParseRevokeList(data)
		if err != nil {
			return err
		}
		st.revoked = l
	case ListCA:
		certs, err := parseCACerts(data)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		for _, c := range certs {
			pool.AddCert(c)
		}
		st.ca, st.caCerts = pool, certs
	}
	return nil
}

// parseCACerts parses PEM CA certificates; every one must be a CA.
func parseCACerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate %d: %w", len(certs)+1, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("certificate %d (%s) is not a CA certificate: give the client CA (sc-cert init --client-ca makes client-ca.crt)", len(certs)+1, c.Subject)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, errors.New("the file is empty: want PEM CA certificates")
		}
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

// VerifyConnection admits or refuses the client of a server-side
// connection; it returns nil or a [*ClientError]. Set it as the server's
// tls.Config.VerifyConnection, with ClientAuth set to
// tls.RequestClientCert: crypto/tls then asks for any certificate and
// checks nothing itself, and calls this on resumed sessions too, so a
// revoked client cannot resume a session from before its revocation.
//
// The order: no certificate is anonymous (refused under
// [ClientAuthRequire]); a revoked key is refused; a key in the allow list
// is admitted (a pin names a key: the certificate around it is not
// checked); a certificate that chains to the client CA with the clientAuth
// extended key usage, valid now and whose serial is not revoked, is
// admitted; anything else is refused.
func (v *ClientVerifier) VerifyConnection(cs tls.ConnectionState) error {
	_, err := v.check(v.state.Load(), cs.PeerCertificates)
	return err
}

// Identify returns who the client of cs is, for a connection that
// VerifyConnection admitted: the zero identity for an anonymous client.
func (v *ClientVerifier) Identify(cs tls.ConnectionState) ClientIdentity {
	if len(cs.PeerCertificates) == 0 {
		return ClientIdentity{}
	}
	leaf := cs.PeerCertificates[0]
	id := ClientIdentity{Pin: PinOf(leaf)}
	if e, ok := v.state.Load().allow.Lookup(id.Pin); ok && e.Name != "" {
		id.Name = e.Name
		return id
	}
	id.Name = SafeClientName(leaf.Subject.CommonName)
	return id
}

// Revoked reports whether the client of cs is revoked by the revoke list
// in force: the live sessions of which a server closes after a reload.
func (v *ClientVerifier) Revoked(cs tls.ConnectionState) bool {
	st := v.state.Load()
	if len(cs.PeerCertificates) == 0 || st.revoked.Len() == 0 {
		return false
	}
	leaf := cs.PeerCertificates[0]
	if st.revoked.HasPin(PinOf(leaf)) {
		return true
	}
	if !st.revoked.mayHaveSerial(leaf.SerialNumber) {
		return false
	}
	_, err := v.check(st, cs.PeerCertificates)
	var ce *ClientError
	return errors.As(err, &ce) && ce.Reason == RefusedClientRevoked
}

func (v *ClientVerifier) check(st *clientState, certs []*x509.Certificate) (ClientIdentity, error) {
	if len(certs) == 0 {
		if v.opts.Mode == ClientAuthRequire {
			return ClientIdentity{}, &ClientError{Reason: RefusedNoClientCert}
		}
		return ClientIdentity{}, nil
	}
	leaf := certs[0]
	pin := PinOf(leaf)
	if st.revoked.HasPin(pin) {
		return ClientIdentity{}, &ClientError{Reason: RefusedClientRevoked, Pin: pin}
	}
	if e, ok := st.allow.Lookup(pin); ok {
		return ClientIdentity{Pin: pin, Name: e.Name}, nil
	}
	if st.ca == nil {
		return ClientIdentity{}, &ClientError{Reason: RefusedUnknownClient, Pin: pin}
	}
	opts := x509.VerifyOptions{
		Roots:       st.ca,
		CurrentTime: v.now(),
		// crypto/x509 checks for serverAuth when KeyUsages is empty: a
		// client certificate must say clientAuth, so that a server's
		// certificate and key are never a player's identity.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(certs) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		switch {
		case errors.As(err, &unknown):
			return ClientIdentity{}, &ClientError{Reason: RefusedUnknownClient, Pin: pin}
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
			return ClientIdentity{}, &ClientError{Reason: RefusedClientCertExpired, Pin: pin, Err: err}
		}
		return ClientIdentity{}, &ClientError{Reason: RefusedBadClientChain, Pin: pin, Err: err}
	}
	for _, chain := range chains {
		if st.revoked.HasSerial(pinOfIssuer(chain), leaf.SerialNumber) {
			return ClientIdentity{}, &ClientError{Reason: RefusedClientRevoked, Pin: pin}
		}
	}
	return ClientIdentity{Pin: pin, Name: SafeClientName(leaf.Subject.CommonName)}, nil
}
