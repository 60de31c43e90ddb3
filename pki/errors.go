package pki

import (
	"errors"
	"fmt"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/atomicfile"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// Sentinel errors. Functions wrap them with the file name and a diagnosis;
// test for them with [errors.Is].
var (
	// ErrNoCertificate means a file meant to hold certificates holds none.
	ErrNoCertificate = errors.New("no certificate found")

	// ErrNoKey means a file meant to hold a private key holds none.
	ErrNoKey = errors.New("no private key found")

	// ErrMalformedPEM means PEM data is truncated, carries a block of the
	// wrong kind, or has text after its last block.
	ErrMalformedPEM = errors.New("malformed PEM")

	// ErrPassphraseRequired means a key is encrypted and no passphrase
	// source was given.
	ErrPassphraseRequired = errors.New("the key is encrypted and no passphrase was given")

	// ErrIncorrectPassphrase means an encrypted key did not decrypt with the
	// passphrase given.
	ErrIncorrectPassphrase = errors.New("incorrect passphrase")

	// ErrKeyTooLarge means an RSA key is larger than [MaxRSABits]. Such keys
	// make every handshake cost seconds of CPU, a denial of service waiting
	// to happen, and crypto/tls refuses them too.
	ErrKeyTooLarge = errors.New("RSA key too large")

	// ErrUnsupportedKey means a key is of a type or size this package does
	// not serve with.
	ErrUnsupportedKey = errors.New("unsupported key")

	// ErrKeyMismatch means a private key does not belong to a certificate.
	ErrKeyMismatch = errors.New("the key belongs to another certificate")

	// ErrKeyFilePermissions means a key file loaded for serving may be
	// read or written by group or others ([KeyOptions.RequirePrivateFile]).
	ErrKeyFilePermissions = trustfile.ErrAccess

	// ErrFileOwner means a file that decides trust (a key, a ticket-key
	// file), or a directory on its path, is owned by a user other than the
	// process's or root: that user could have put it there.
	ErrFileOwner = trustfile.ErrOwner

	// ErrFileWritable means a file that decides trust, or a directory on
	// its path, is writable by group or others (a sticky directory owned
	// by root, such as a Kubernetes secret volume, is fine).
	ErrFileWritable = trustfile.ErrWritable

	// ErrNotRegularFile means a path names a FIFO, a device, a socket or a
	// directory where a file was expected. Nothing is read from it.
	ErrNotRegularFile = trustfile.ErrNotRegular

	// ErrFileTooLarge means a file is larger than its kind may be (1 MiB
	// for certificates and keys); it is refused before it is read.
	ErrFileTooLarge = trustfile.ErrTooLarge

	// ErrExists means a file this package was asked to create is there
	// already, and nothing was written: [WriteKeyFile] and
	// [WriteCertificatesFile] without [WriteOptions.Overwrite], and
	// [InitLayout] without [InitOptions.Overwrite]. It also matches
	// [fs.ErrExist].
	ErrExists = atomicfile.ErrExists

	// ErrChainTooLong means a certificate chain to serve has more than 8
	// certificates or 64 KiB of them. A leaf, an intermediate or two and a
	// root make a few kilobytes; a longer chain is a mistake (a CA bundle
	// given as the certificate) that every handshake would send.
	ErrChainTooLong = errors.New("certificate chain too long")

	// ErrNotIssuer means a certificate named as issuer did not sign the
	// certificate being renewed, or its key does not match it.
	ErrNotIssuer = errors.New("not the issuer of the certificate")

	// ErrIssuerKeyMissing means a certificate cannot be renewed because the
	// issuing CA's private key is not available. A server without the key
	// should warn before expiry instead of renewing.
	ErrIssuerKeyMissing = errors.New("the issuer's private key is not available")

	// ErrRecoveryFailed means an interrupted multi-file change could be
	// neither completed nor undone; the journal is left in place for an
	// operator to inspect.
	ErrRecoveryFailed = errors.New("cannot recover an interrupted certificate change")

	// ErrIncomplete means a multi-file change ([Rotate], [InitLayout])
	// passed its commit point but could not put every file in place: the
	// directory holds a mix of old and new files until [Recover], which
	// every later change and load runs first, completes it.
	ErrIncomplete = errors.New("the change is committed but not every file is in place yet")
)

// IssuerError reports why the CA that should sign a re-issued certificate
// ([Rotate], [Renewer]) cannot: it is not there ([ErrIssuerKeyMissing]:
// Missing names the CA certificate or key that is not) or it did not issue
// the certificate ([ErrNotIssuer]). Test for those with [errors.Is]; the
// paths say which files were looked at, so that a caller can ask for the
// right ones (sc-cert's --issuer-cert and --issuer-key).
type IssuerError struct {
	// CertPath is the certificate being re-issued.
	CertPath string
	// IssuerCertPath and IssuerKeyPath are the CA's certificate and key
	// looked at: those named in the options, else ca.crt and ca.key
	// beside CertPath.
	IssuerCertPath, IssuerKeyPath string
	// Missing is IssuerCertPath or IssuerKeyPath when that file does not
	// exist, else "".
	Missing string
	// Err is ErrIssuerKeyMissing when a file is missing, else
	// ErrNotIssuer wrapped with why the signature check failed.
	Err error
}

// Error names the certificate, the CA files and what keeps the CA from
// signing.
func (e *IssuerError) Error() string {
	switch {
	case e.Missing == "":
		return fmt.Sprintf("%q was not issued by %q: %v", e.CertPath, e.IssuerCertPath, e.Err)
	case e.Missing == e.IssuerCertPath:
		return fmt.Sprintf("%q is CA-issued, and there is no CA certificate %q to re-issue it with", e.CertPath, e.Missing)
	}
	return fmt.Sprintf("re-issuing %q needs the CA key %q, which is not there", e.CertPath, e.Missing)
}

// Unwrap returns Err.
func (e *IssuerError) Unwrap() error { return e.Err }

// ExpiredError is returned when a certificate's NotAfter has passed.
type ExpiredError struct {
	Path     string // the certificate file, if known
	NotAfter time.Time
	Now      time.Time
}

// Error says when the certificate expired and how long ago.
func (e *ExpiredError) Error() string {
	return fmt.Sprintf("%scertificate expired at %s (%s ago)", pathPrefix(e.Path),
		e.NotAfter.UTC().Format(time.RFC3339), roundDuration(e.Now.Sub(e.NotAfter)))
}

// NotYetValidError is returned when a certificate's NotBefore is in the
// future, which usually means a wrong clock on this machine or the issuer's.
type NotYetValidError struct {
	Path      string // the certificate file, if known
	NotBefore time.Time
	Now       time.Time
}

// Error says from when the certificate is valid, and to check the clocks.
func (e *NotYetValidError) Error() string {
	return fmt.Sprintf("%scertificate is not valid until %s (in %s): check the clock of this machine and of the issuer",
		pathPrefix(e.Path), e.NotBefore.UTC().Format(time.RFC3339), roundDuration(e.NotBefore.Sub(e.Now)))
}

// ExpiresSoonError is returned by [CheckValidity] when a certificate is
// valid now but has less than the required time left.
type ExpiresSoonError struct {
	Path      string // the certificate file, if known
	NotAfter  time.Time
	Remaining time.Duration
	Minimum   time.Duration
}

// Error says when the certificate expires and how much time it lacks.
func (e *ExpiresSoonError) Error() string {
	return fmt.Sprintf("%scertificate expires at %s, in %s, less than the %s required",
		pathPrefix(e.Path), e.NotAfter.UTC().Format(time.RFC3339), roundDuration(e.Remaining), roundDuration(e.Minimum))
}

func pathPrefix(path string) string {
	if path == "" {
		return ""
	}
	return fmt.Sprintf("%q: ", path)
}

// roundDuration formats a duration for people: days and hours, to the
// nearest hour, when long ("90d0h"), else rounded to the second.
func roundDuration(d time.Duration) string {
	if d < 0 {
		return "-" + roundDuration(-d)
	}
	if d >= 24*time.Hour {
		d = d.Round(time.Hour)
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	}
	return d.Round(time.Second).String()
}

// Errors of keys kept in PKCS#11 tokens. Each comes wrapped in a
// [*TokenError] that names the token, the key and the attribute of its URI
// to fix; test for them with [errors.Is].
var (
	// ErrNoPKCS11 means this program was built without PKCS#11 support
	// (without cgo, as cross-compiled and static builds are), so a key
	// URI cannot be opened.
	ErrNoPKCS11 = errors.New("this build has no PKCS#11 support (built without cgo)")

	// ErrKeyURI means a pkcs11: URI is malformed or lacks what the task
	// needs (a token; an object and id to make a key).
	ErrKeyURI = errors.New("invalid key URI")

	// ErrTokenModule means the PKCS#11 module (module-path) is missing,
	// cannot be loaded, or failed to start.
	ErrTokenModule = errors.New("PKCS#11 module unusable")

	// ErrTokenNotFound means the module has no token matching the URI's
	// token, serial or slot-id.
	ErrTokenNotFound = errors.New("PKCS#11 token not found")

	// ErrTokenPIN means the token's PIN is missing, incorrect or locked.
	ErrTokenPIN = errors.New("token PIN")

	// ErrTokenKeyNotFound means the token has no key matching the URI's
	// object and id.
	ErrTokenKeyNotFound = errors.New("key not found in the token")

	// ErrTokenKeyExists means a key was to be made in a token that
	// already holds one under that name; keys in a token are never
	// replaced.
	ErrTokenKeyExists = errors.New("key already in the token")

	// ErrKeyUnavailable means a token key could not be used: the token
	// stopped answering, was removed, or failed to sign.
	ErrKeyUnavailable = errors.New("token key unavailable")
)

// TokenError is a key in a PKCS#11 token that could not be opened, made
// or used. Its message names the token and key, not the URI: the caller's
// wrapping names the key path or URI it was given.
type TokenError struct {
	// URI is the key URI, with any pin-value redacted.
	URI string
	// Err is one of the token sentinel errors above, or
	// [ErrUnsupportedKey].
	Err error
	// Detail says what went wrong, naming the module, token or key and,
	// where it is the likely fix, the URI attribute to change.
	Detail string

	cause error // the kms's own error, when there is one
}

func (e *TokenError) Error() string {
	msg := e.Err.Error()
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap returns the sentinel error, and the underlying error when there
// is one.
func (e *TokenError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.Err, e.cause}
	}
	return []error{e.Err}
}
