package pki

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// CheckPair reports whether key is the private key of cert. A mismatch is
// [ErrKeyMismatch], with both keys' pins in the message so the operator can
// see which key the certificate wants.
func CheckPair(cert *x509.Certificate, key crypto.Signer) error {
	if samePublicKey(cert.PublicKey, key.Public()) {
		return nil
	}
	keyPin := "?"
	if der, err := x509.MarshalPKIXPublicKey(key.Public()); err == nil {
		keyPin = spkiPin(der)
	}
	return fmt.Errorf("%w (certificate key %s, private key %s)", ErrKeyMismatch, spkiPin(cert.RawSubjectPublicKeyInfo), keyPin)
}

// spkiPin formats a pin for error messages; package pinning owns pins, but
// pki may not import it.
func spkiPin(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
}

// CheckValidity reports whether cert is valid at now with at least
// minRemaining left. It returns [*NotYetValidError], [*ExpiredError] or
// [*ExpiresSoonError] (minRemaining > 0 only), else nil.
func CheckValidity(cert *x509.Certificate, now time.Time, minRemaining time.Duration) error {
	switch {
	case now.Before(cert.NotBefore):
		return &NotYetValidError{NotBefore: cert.NotBefore, Now: now}
	case now.After(cert.NotAfter):
		return &ExpiredError{NotAfter: cert.NotAfter, Now: now}
	case minRemaining > 0 && cert.NotAfter.Sub(now) < minRemaining:
		return &ExpiresSoonError{NotAfter: cert.NotAfter, Remaining: cert.NotAfter.Sub(now), Minimum: minRemaining}
	}
	return nil
}

// LoadOptions controls [LoadPair]. The zero value loads an unencrypted key,
// accepts any key file mode, and requires the certificate to be valid now.
type LoadOptions struct {
	// Key passes the passphrase source and the file-mode check to
	// [ReadKeyFile]. Set Key.RequirePrivateFile when loading to serve.
	Key KeyOptions

	// Now returns the current time. Nil means time.Now.
	Now func() time.Time

	// MinRemaining, when positive, fails a certificate with less time left
	// than this with [*ExpiresSoonError]. Default 0: valid now is enough.
	MinRemaining time.Duration

	// AllowInvalidTime skips the validity-period check (for inspecting
	// expired certificates). Default false.
	AllowInvalidTime bool

	// NoRecover skips [Recover], for read-only directories. Default false:
	// an interrupted rotation in the certificate's directory is completed
	// or undone first, through Recover and the directory's lock as a
	// rotation would, so that the pair loaded is never half old, half new.
	NoRecover bool
}

// Pair is a certificate chain and its private key, checked to belong
// together.
type Pair struct {
	CertPath, KeyPath string
	// Chain is the certificate file's content, leaf first.
	Chain []*x509.Certificate
	Key   *Key
}

// Leaf returns the first certificate of the chain.
func (p *Pair) Leaf() *x509.Certificate { return p.Chain[0] }

// TLSCertificate returns the pair for [tls.Config.Certificates] or a
// GetCertificate callback, with Leaf set so crypto/tls does not re-parse.
func (p *Pair) TLSCertificate() *tls.Certificate {
	c := &tls.Certificate{PrivateKey: p.Key.Signer, Leaf: p.Chain[0]}
	for _, x := range p.Chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// LoadPair reads a certificate (chain) file and its key file and checks
// them: the key belongs to the leaf ([ErrKeyMismatch]), the leaf is valid
// now ([*ExpiredError], [*NotYetValidError], [*ExpiresSoonError], with Path
// set), RSA keys are at most [MaxRSABits]. Errors name the file and the
// likely mistake, such as swapped paths. A chain too long to serve is
// [ErrChainTooLong]. Unless opts.NoRecover is set, it first runs [Recover]
// on the certificate's directory. A key in a PKCS#11 token
// (opts.Key.Tokens) must also sign a challenge that verifies with the
// certificate ([ProveKey]).
func LoadPair(certPath, keyPath string, opts LoadOptions) (*Pair, error) {
	if !opts.NoRecover {
		if err := Recover(context.Background(), filepath.Dir(certPath)); err != nil {
			return nil, err
		}
	}
	certPEM, _, err := readFile(certPath, trustfile.Certificate)
	if err != nil {
		return nil, fmt.Errorf("reading certificate %q: %w", certPath, err)
	}
	// The certificate is parsed before the key is read: swapped paths are
	// then reported as swapped, not as a key file with the wrong mode.
	if _, err := ParseCertificatesPEM(certPEM); err != nil {
		return nil, fmt.Errorf("reading certificate %q: %w", certPath, err)
	}
	keyPath = opts.Key.Tokens.TakePIN(keyPath)
	keyPEM, _, err := readKeyRef(keyPath, keyKind(trustfile.PrivateKey, opts.Key.RequirePrivateFile))
	if err != nil {
		return nil, fmt.Errorf("reading key %q: %w", keyPath, err)
	}
	return parsePair(certPEM, keyPEM, certPath, keyPath, opts)
}

func parsePair(certPEM, keyPEM []byte, certPath, keyPath string, opts LoadOptions) (*Pair, error) {
	chain, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("reading certificate %q: %w", certPath, err)
	}
	if err := checkChain(chain); err != nil {
		return nil, fmt.Errorf("reading certificate %q: %w", certPath, err)
	}
	key, err := parseKeyData(keyPEM, opts.Key)
	if err != nil {
		return nil, fmt.Errorf("reading key %q: %w", keyPath, err)
	}
	if err := CheckPair(chain[0], key.Signer); err != nil {
		return nil, fmt.Errorf("key %q does not match certificate %q: %w", keyPath, certPath, err)
	}
	if err := proveTokenKey(chain[0], key); err != nil {
		return nil, fmt.Errorf("key %q and certificate %q: %w", keyPath, certPath, err)
	}
	if !opts.AllowInvalidTime {
		now := time.Now()
		if opts.Now != nil {
			now = opts.Now()
		}
		if err := CheckValidity(chain[0], now, opts.MinRemaining); err != nil {
			setPath(err, certPath)
			return nil, err
		}
	}
	return &Pair{CertPath: certPath, KeyPath: keyPath, Chain: chain, Key: key}, nil
}

func setPath(err error, path string) {
	switch e := err.(type) {
	case *ExpiredError:
		e.Path = path
	case *NotYetValidError:
		e.Path = path
	case *ExpiresSoonError:
		e.Path = path
	}
}
