package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// RotateOptions describes a re-issue of a certificate in place. The zero
// value renews certs/server.crt on its current key for the same lifetime
// as before, signed by certs/ca.crt + certs/ca.key when it was CA-issued or
// by its own key when self-signed.
type RotateOptions struct {
	// CertPath is the certificate (chain) file to re-issue. Default
	// certs/server.crt.
	CertPath string

	// KeyPath is its key. Default: [SiblingKeyPath](CertPath), the
	// certificate's name with the extension .key (certs/server.key for
	// certs/server.crt, game.key for game.crt).
	KeyPath string

	// NextKeyPath is the pre-generated next key. Default:
	// [NextKeyPath](KeyPath), e.g. server.next.key.
	NextKeyPath string

	// IssuerCertPath and IssuerKeyPath name the CA that signs. Default:
	// ca.crt and ca.key beside CertPath when the certificate is CA-issued;
	// a self-signed certificate is re-signed by its own key. Naming an
	// issuer for a self-signed certificate makes the new one CA-issued.
	IssuerCertPath, IssuerKeyPath string

	// Validity and NotAfter set the new lifetime; see [CertOptions].
	// Default: the same length as the current certificate's.
	Validity time.Duration
	NotAfter time.Time

	// PromoteNext makes the next key current (server.key gets the content
	// of server.next.key, byte for byte) and puts a fresh key of the same
	// type in server.next.key, encrypted with the same passphrase if the
	// old next key was. Default false: the key, and so every pin, stays.
	PromoteNext bool

	// KeyPassphrase is the passphrase source of encrypted server and next
	// keys; IssuerKeyPassphrase that of the CA key. See [KeyOptions].
	KeyPassphrase       func() ([]byte, error)
	IssuerKeyPassphrase func() ([]byte, error)

	// OnlyIf, when set, is called with the current certificate after the
	// lock is taken; returning false skips the rotation (the result has
	// Skipped set). Instances sharing a directory use it to renew only if
	// nobody renewed since they looked.
	OnlyIf func(current *x509.Certificate) bool

	// Now and Rand as in [CertOptions]. Nil means the real sources.
	Now  func() time.Time
	Rand io.Reader

	hook stepHook
}

// RotateResult describes what [Rotate] did.
type RotateResult struct {
	// Old and New are the leaf certificates before and after.
	Old, New *x509.Certificate
	// Issuer is the CA that signed New, nil when self-signed.
	Issuer *x509.Certificate
	// Promoted is set when the next key became current.
	Promoted bool
	// NextKey is the public half of the next key after the rotation, nil
	// when there is no next key file.
	NextKey crypto.PublicKey
	// CACopy is the ca.crt rewritten as a copy of a self-signed New, or "".
	CACopy string
	// Written lists the files replaced, in the order they were installed.
	Written []string
	// Skipped is set when OnlyIf declined; nothing was written.
	Skipped bool
}

// Rotate re-issues a certificate in place, keeping its subject and SANs,
// with a new serial. All files it touches (the certificate, and with
// PromoteNext the key and next key, and in the self-signed layout ca.crt)
// change in one crash-safe step (see [Recover]) under the directory's lock
// file, so concurrent rotations by several processes serialise. The key is
// kept unless PromoteNext, so pins stay valid.
//
// Errors: [ErrKeyMismatch] when the current pair is inconsistent,
// [ErrNotIssuer] when the named or default CA did not issue the
// certificate, [ErrIssuerKeyMissing] when its key is not there (a server
// should then warn before expiry instead of renewing),
// [ErrKeyFilePermissions], [ErrFileOwner] or [ErrFileWritable] when the
// key, the next key being promoted or the CA key may have been read or
// planted by others (the rule of [KeyOptions.RequirePrivateFile]), an error
// matching [fs.ErrNotExist] that says "no certificate at" or "no key at"
// when a file is missing, and the errors of [ReadKeyFile] and
// [CreateCertificate]. ctx bounds the wait for the lock.
func Rotate(ctx context.Context, opts RotateOptions) (*RotateResult, error) {
	if opts.CertPath == "" {
		opts.CertPath = filepath.Join(DefaultDir, ServerCertFile)
	}
	dir := filepath.Dir(opts.CertPath)
	if opts.KeyPath == "" {
		opts.KeyPath = SiblingKeyPath(opts.CertPath)
	}
	if opts.NextKeyPath == "" {
		opts.NextKeyPath = NextKeyPath(opts.KeyPath)
	}
	keyPass := cachePassphrase(opts.KeyPassphrase)
	// Missing files are said plainly, before the lock, whose file could
	// not even be made in a directory that does not exist.
	for _, f := range []struct{ what, path string }{{"certificate", opts.CertPath}, {"key", opts.KeyPath}} {
		if _, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no %s at %q: %w", f.what, f.path, fs.ErrNotExist)
		}
	}

	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := recoverLocked(dir); err != nil {
		return nil, err
	}

	certData, _, err := readFile(opts.CertPath, trustfile.Certificate)
	if err != nil {
		return nil, fmt.Errorf("reading certificate %q: %w", opts.CertPath, err)
	}
	chain, err := ParseCertificatesPEM(certData)
	if err != nil {
		return nil, fmt.Errorf("reading certificate %q: %w", opts.CertPath, err)
	}
	old := chain[0]
	res := &RotateResult{Old: old}
	if opts.OnlyIf != nil && !opts.OnlyIf(old) {
		res.Skipped = true
		return res, nil
	}
	// Keys others may read are refused, as the server refuses to serve
	// them: re-issuing for a key that may have leaked, or signing with a
	// CA key that may have, would certify it again.
	key, err := ReadKeyFile(opts.KeyPath, KeyOptions{Passphrase: keyPass, RequirePrivateFile: true})
	if err != nil {
		return nil, err
	}
	if err := CheckPair(old, key.Signer); err != nil {
		return nil, fmt.Errorf("key %q does not match certificate %q: %w", opts.KeyPath, opts.CertPath, err)
	}

	// Who signs.
	selfSigned := IsSelfSigned(old) && opts.IssuerCertPath == "" && opts.IssuerKeyPath == ""
	var issuerKey crypto.Signer
	if selfSigned {
		issuerKey = key.Signer
	} else {
		res.Issuer, issuerKey, err = loadIssuer(old, dir, opts)
		if err != nil {
			return nil, err
		}
	}

	// Which key the new certificate is for.
	var changes []change
	newKey := key.Signer
	if opts.PromoteNext {
		nextData, _, err := readKey(opts.NextKeyPath, trustfile.NextKey)
		if err != nil {
			return nil, fmt.Errorf("promoting next key: reading %q: %w", opts.NextKeyPath, err)
		}
		next, err := ParseKeyPEM(nextData, KeyOptions{Passphrase: keyPass})
		if err != nil {
			return nil, fmt.Errorf("promoting next key: reading %q: %w", opts.NextKeyPath, err)
		}
		kt, err := KeyTypeOf(next.Signer.Public())
		if err != nil {
			return nil, fmt.Errorf("promoting next key %q: %w", opts.NextKeyPath, err)
		}
		fresh, err := GenerateKey(kt)
		if err != nil {
			return nil, err
		}
		var pass []byte
		if next.Encrypted {
			if pass, err = keyPass(); err != nil {
				return nil, err
			}
		}
		freshData, err := EncodeKeyPEM(fresh, pass)
		if err != nil {
			return nil, err
		}
		newKey = next.Signer
		if selfSigned {
			issuerKey = newKey
		}
		res.Promoted = true
		res.NextKey = fresh.Public()
		changes = append(changes,
			change{path: opts.KeyPath, data: nextData, perm: KeyFileMode},
			change{path: opts.NextKeyPath, data: freshData, perm: KeyFileMode})
	} else if next, _, err := readFile(opts.NextKeyPath, trustfile.NextKey); err == nil {
		// Report the next pin without asking for a passphrase it may need.
		if k, err := ParseKeyPEM(next, KeyOptions{}); err == nil {
			res.NextKey = k.Signer.Public()
		}
	}

	// The new certificate.
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	co := CertOptions{
		RawSubject:  old.RawSubject,
		CommonName:  old.Subject.CommonName,
		DNSNames:    old.DNSNames,
		IPAddresses: old.IPAddresses,
		IsCA:        old.IsCA,
		Validity:    opts.Validity,
		NotAfter:    opts.NotAfter,
		Issuer:      res.Issuer,
		IssuerKey:   issuerKey,
		Now:         func() time.Time { return now },
		Rand:        opts.Rand,
	}
	if co.Validity <= 0 && co.NotAfter.IsZero() {
		co.NotBefore = now.Add(-Backdate)
		co.NotAfter = co.NotBefore.Add(old.NotAfter.Sub(old.NotBefore))
	}
	res.New, err = CreateCertificate(newKey.Public(), co)
	if err != nil {
		return nil, fmt.Errorf("re-issuing %q: %w", opts.CertPath, err)
	}
	newChain := append([]*x509.Certificate{res.New}, chain[1:]...)
	if selfSigned {
		newChain = newChain[:1]
	}
	certChange := change{path: opts.CertPath, data: EncodeCertificatesPEM(newChain...), perm: CertFileMode}
	// Install the certificate after the keys: with PromoteNext, a reader
	// that skips Recover sees the old pair until the key arrives and the
	// new pair once the certificate does (a mismatch in between, which a
	// pair check refuses, never a wrong pair that passes).
	changes = append(changes, certChange)
	if selfSigned {
		if caCopy := filepath.Join(dir, CACertFile); caCopy != opts.CertPath && isCopyOf(caCopy, certData, old) {
			res.CACopy = caCopy
			changes = append(changes, change{path: caCopy, data: certChange.data, perm: CertFileMode})
		}
	}
	if err := commit(dir, changes, opts.hook); err != nil {
		return nil, fmt.Errorf("rotating %q: %w", opts.CertPath, err)
	}
	for _, c := range changes {
		res.Written = append(res.Written, c.path)
	}
	return res, nil
}

// loadIssuer finds and checks the CA that signs the renewed certificate.
func loadIssuer(old *x509.Certificate, dir string, opts RotateOptions) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := opts.IssuerCertPath, opts.IssuerKeyPath
	named := certPath != ""
	if certPath == "" {
		certPath = filepath.Join(dir, CACertFile)
	}
	if keyPath == "" {
		keyPath = filepath.Join(filepath.Dir(certPath), CAKeyFile)
	}
	issuers, err := readCertificatesFile(certPath, trustfile.CACertificate)
	if err != nil {
		if !named && errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%q is CA-issued but there is no %q beside it: name its CA with --issuer-cert and --issuer-key: %w", opts.CertPath, certPath, ErrIssuerKeyMissing)
		}
		return nil, nil, fmt.Errorf("reading issuer: %w", err)
	}
	issuer := issuers[0]
	if err := old.CheckSignatureFrom(issuer); err != nil {
		return nil, nil, fmt.Errorf("%q was not issued by %q (%v): %w; name its CA with --issuer-cert and --issuer-key", opts.CertPath, certPath, err, ErrNotIssuer)
	}
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("renewing %q needs the CA key %q: %w (keep the CA key offline and name it with --issuer-key when renewing)", opts.CertPath, keyPath, ErrIssuerKeyMissing)
	}
	k, err := readKeyFile(keyPath, trustfile.CAKey, KeyOptions{Passphrase: opts.IssuerKeyPassphrase, RequirePrivateFile: true})
	if err != nil {
		return nil, nil, fmt.Errorf("reading issuer key: %w", err)
	}
	if err := CheckPair(issuer, k.Signer); err != nil {
		return nil, nil, fmt.Errorf("CA key %q does not match CA certificate %q: %w", keyPath, certPath, err)
	}
	return issuer, k.Signer, nil
}

// isCopyOf reports whether path is the self-signed layout's copy of the
// certificate: the same bytes, or a self-signed certificate on the same
// key (a copy left by an earlier re-issue).
func isCopyOf(path string, certData []byte, old *x509.Certificate) bool {
	data, _, err := readFile(path, trustfile.Certificate)
	if err != nil {
		return false
	}
	if bytes.Equal(data, certData) {
		return true
	}
	certs, err := ParseCertificatesPEM(data)
	return err == nil && len(certs) == 1 && IsSelfSigned(certs[0]) &&
		bytes.Equal(certs[0].RawSubjectPublicKeyInfo, old.RawSubjectPublicKeyInfo)
}

// cachePassphrase makes a passphrase source ask at most once, so that one
// rotation that reads two keys prompts once.
func cachePassphrase(f func() ([]byte, error)) func() ([]byte, error) {
	if f == nil {
		return nil
	}
	var once sync.Once
	var pass []byte
	var err error
	return func() ([]byte, error) {
		once.Do(func() { pass, err = f() })
		return pass, err
	}
}
