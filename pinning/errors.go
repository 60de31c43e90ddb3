package pinning

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// Errors about the files this package reads (the known hosts store, pin
// files); test for them with [errors.Is]. The error names the fix.
var (
	// ErrNotRegularFile means a path names a FIFO, a device, a socket or a
	// directory; nothing is read from it.
	ErrNotRegularFile = trustfile.ErrNotRegular
	// ErrFileTooLarge means a file is larger than its kind may be (16 MiB
	// for the known hosts store, 1 MiB for a pin file).
	ErrFileTooLarge = trustfile.ErrTooLarge
	// ErrFileOwner means the known hosts store, or its directory, is owned
	// by a user other than this one or root.
	ErrFileOwner = trustfile.ErrOwner
	// ErrFileWritable means the known hosts store, or its directory, is
	// writable by group or others.
	ErrFileWritable = trustfile.ErrWritable
)

// ErrNoPeerCertificate means the server presented no certificate, so there is
// no key to check.
var ErrNoPeerCertificate = errors.New("pinning: the server presented no certificate")

// ErrInsecure is wrapped by the warning [ModeInsecure] reports for every
// connection it lets through unchecked.
var ErrInsecure = errors.New("pinning: insecure mode: the server's identity was not checked")

// ErrHandshakeIncomplete is returned by [Trust.Record] and
// [Trust.RecordAnnounced] for a connection state whose handshake has not
// completed: until it has, the server has not proved it holds the key, so
// nothing may be recorded.
var ErrHandshakeIncomplete = errors.New("pinning: the TLS handshake has not completed; nothing recorded")

// ErrBadAnnouncement is wrapped by [Trust.RecordAnnounced] when the pins a
// server announced do not fit the key it presented.
var ErrBadAnnouncement = errors.New("pinning: the server's announced pins do not fit its key; nothing recorded")

// ErrPinRevoked is wrapped by [Store.Add] for a pin revoked for the host:
// a revoked pin is never trusted again until its mark is removed
// ([Store.Unrevoke]).
var ErrPinRevoked = errors.New("pinning: the pin is revoked for this host")

// KeyError reports a server whose key is not one the client trusts: a host
// in the known-hosts store that presented a different key (the OpenSSH
// "REMOTE HOST IDENTIFICATION HAS CHANGED" case), or a server whose key is
// not in the configured pins. Use [errors.As] to get it from a handshake
// error. It is never followed by a silent re-trust: nothing is recorded.
type KeyError struct {
	// Host is the server as "host:port".
	Host string
	// Want are the pins the client trusts for Host: those on file, or
	// those configured in [ModePin] and [ModeCAPin], current first.
	Want []PinRecord
	// Got is the pin of the key the server presented (its leaf's key).
	Got Pin
	// Path and Line locate Host's entry in the known-hosts store; both are
	// zero when the pins were configured rather than stored.
	Path string
	Line int
	// Leaf is the certificate the server presented, when known.
	Leaf *x509.Certificate
}

// WantsCertificateFingerprint reports whether one of the pins in Want is
// the SHA-256 fingerprint of the presented certificate (what openssl x509
// -fingerprint -sha256 prints) rather than of its key: a pin given by
// mistake, not a changed key.
func (e *KeyError) WantsCertificateFingerprint() bool {
	for _, w := range e.Want {
		if e.Leaf != nil && w.Pin.IsFingerprintOf(e.Leaf) {
			return true
		}
	}
	return false
}

// Error returns a one-line description naming the host, the pins and
// where they are on file.
func (e *KeyError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("host key for %s has changed: the server presented %v, but %s:%d trusts %s; if the key was replaced on purpose, forget the host and connect again",
			e.Host, e.Got, e.Path, e.Line, describePins(e.Want))
	}
	return fmt.Sprintf("%s presented key %v, which is not among the pins given (%s)", e.Host, e.Got, describePins(e.Want))
}

func describePins(pins []PinRecord) string {
	if len(pins) == 0 {
		return "no pins"
	}
	parts := make([]string, len(pins))
	for i, p := range pins {
		parts[i] = fmt.Sprintf("%v (%s)", p.Pin, p.role())
	}
	return strings.Join(parts, ", ")
}

// ValidityError reports a certificate used outside its validity period. In
// [ModePin] and [ModeTOFU] a trusted key with an expired (or not yet valid)
// certificate is a warning by default and this error with
// [TrustOptions.StrictExpiry]. The key is still the trusted one: the fix is
// for the server to renew the certificate on the same key.
type ValidityError struct {
	// Host is the server as "host:port".
	Host string
	// Pin is the pin of the certificate's key.
	Pin Pin
	// NotBefore and NotAfter are the certificate's validity period.
	NotBefore, NotAfter time.Time
	// Now is the time it was checked against.
	Now time.Time
}

// Error says how far outside its validity period the certificate is, and
// what to do about it.
func (e *ValidityError) Error() string {
	if e.Now.Before(e.NotBefore) {
		return fmt.Sprintf("the certificate of %s (key %v) is not valid until %s, %s from now: check the clocks of client and server",
			e.Host, e.Pin, e.NotBefore.UTC().Format(time.RFC3339), e.NotBefore.Sub(e.Now).Round(time.Second))
	}
	return fmt.Sprintf("the certificate of %s (key %v) expired at %s, %s ago: the key is still trusted; the server should renew the certificate on the same key",
		e.Host, e.Pin, e.NotAfter.UTC().Format(time.RFC3339), e.Now.Sub(e.NotAfter).Round(time.Second))
}

// UnknownHostError reports a server that is not in the known-hosts store
// when it may not be trusted on first use: [TOFUOff], or a [TOFUPrompt]
// that was declined. Nothing was recorded.
type UnknownHostError struct {
	// Host is the server as "host:port".
	Host string
	// Got is the pin of the key the server presented.
	Got Pin
	// Path is the known-hosts file.
	Path string
	// Declined is true when the prompt was asked and said no.
	Declined bool
}

// Error names the host, the pin it presented and the known hosts file.
func (e *UnknownHostError) Error() string {
	if e.Declined {
		return fmt.Sprintf("not trusting %s (key %v): declined; nothing was recorded", e.Host, e.Got)
	}
	return fmt.Sprintf("%s is not in the known hosts file %s and trust on first use is off; it presented key %v",
		e.Host, e.Path, e.Got)
}

// LineError reports a line of the known-hosts file that cannot be used: it
// does not parse, or it repeats a host. Its host fails closed: lookups and
// handshakes for it fail with this error, they never treat it as unknown.
type LineError struct {
	// Path is the known-hosts file.
	Path string
	// Line is the line number, from 1.
	Line int
	// Host is the host ("host:port") the line is for, if its first field
	// can be read; empty otherwise.
	Host string
	// Err says what is wrong.
	Err error
}

// Error names the file, the line and what is wrong with it.
func (e *LineError) Error() string {
	if e.Host != "" {
		return fmt.Sprintf("known hosts file %s, line %d: %v: %s is not trusted until the line is fixed or the host forgotten",
			e.Path, e.Line, e.Err, e.Host)
	}
	return fmt.Sprintf("known hosts file %s, line %d: %v", e.Path, e.Line, e.Err)
}

// Unwrap returns Err.
func (e *LineError) Unwrap() error { return e.Err }

// RevokedKeyError reports a server that presented a key revoked for it:
// by the server's operator (announced through KEYS inside a session with
// the key's successor, and recorded in the known hosts file), by a person
// on this machine (recorded with [Store.Revoke]), or in the configuration
// ([TrustOptions.Revoked]). Whoever presents it may hold a stolen key.
// Nothing was recorded.
type RevokedKeyError struct {
	// Host is the server as "host:port".
	Host string
	// Pin is the revoked key's pin, the one the server presented.
	Pin Pin
	// Since is when this client learned of the revocation; zero if
	// unknown or configured.
	Since time.Time
	// Origin is who revoked it: [OriginAnnounced] for the server's
	// operator, [OriginAdded] for a person on this machine, empty for a
	// configured revoked pin.
	Origin Origin
	// Path and Line locate the mark in the known hosts file; both are zero
	// for a configured revoked pin.
	Path string
	Line int
	// Leaf is the certificate the server presented, when known.
	Leaf *x509.Certificate
}

// RevokedBy says who revoked the key, for people: "by the server's
// operator", "by a person on this machine", or "in the configuration".
func (e *RevokedKeyError) RevokedBy() string {
	switch {
	case e.Path == "":
		return "in the configuration (a revoked pin given)"
	case e.Origin == OriginAnnounced:
		return "by the server's operator"
	case e.Origin == OriginAdded:
		return "by a person on this machine"
	}
	return "in the known hosts file"
}

// Error returns a one-line description naming the host, the revoked pin,
// who revoked it and when this client learned it.
func (e *RevokedKeyError) Error() string {
	s := fmt.Sprintf("%s presented the key %v, which was revoked %s", e.Host, e.Pin, e.RevokedBy())
	if !e.Since.IsZero() {
		s += fmt.Sprintf("; this client learned it at %s", e.Since.UTC().Format(time.RFC3339))
	}
	if e.Path != "" {
		s += fmt.Sprintf(" (%s:%d)", e.Path, e.Line)
	}
	return s + ": refusing it"
}
