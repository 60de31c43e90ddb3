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
	// certs/server.crt, game.key for game.crt), or .uri when only that
	// exists ([ResolveKeyPath]). Every key path may be a pkcs11: URI or a
	// file holding one, opened through Tokens.
	KeyPath string

	// NextKeyPath is the pre-generated next key. Default:
	// [NextKeyPath](KeyPath), e.g. server.next.key (server.next.uri for
	// server.uri); none when KeyPath is a URI.
	NextKeyPath string

	// IssuerCertPath and IssuerKeyPath name the CA that signs. Default:
	// ca.crt and ca.key (or ca.uri) beside CertPath when the certificate
	// is CA-issued; a self-signed certificate is re-signed by its own key.
	// Naming an issuer for a self-signed certificate makes the new one
	// CA-issued.
	IssuerCertPath, IssuerKeyPath string

	// Tokens opens keys kept in PKCS#11 tokens. Nil means key URIs fail
	// with [ErrKeyUnavailable].
	Tokens *Tokens

	// Validity and NotAfter set the new lifetime; see [CertOptions].
	// Default: the same length as the current certificate's.
	Validity time.Duration
	NotAfter time.Time

	// PromoteNext makes the next key current (server.key gets the content
	// of server.next.key, byte for byte) and puts a fresh key of the same
	// type in server.next.key, encrypted with the same passphrase if the
	// old next key was. A next key in a token (server.next.uri) is
	// promoted the same way, its URI file becoming server.uri, and the
	// fresh key is made in the same token ([nextTokenKey] names it); the
	// old key stays in the token until an operator deletes it. Promoting
	// needs key files, not bare URIs: the files record which key is
	// current. Default false: the key, and so every pin, stays.
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
// Errors: an [*fs.PathError] matching [fs.ErrNotExist] whose Path is the
// missing certificate or key; [ErrKeyMismatch] when the current pair is
// inconsistent; an [*IssuerError] when the CA that should sign is missing
// ([ErrIssuerKeyMissing]: a server should then warn before expiry instead
// of renewing) or did not issue the certificate ([ErrNotIssuer]);
// [ErrKeyFilePermissions], [ErrFileOwner] or [ErrFileWritable] when the
// key, the next key being promoted or the CA key may have been read or
// planted by others (the rule of [KeyOptions.RequirePrivateFile]); an
// error wrapping [ErrIncomplete] when the change could not be finished
// past its commit point; and the errors of [ReadKeyFile] and
// [CreateCertificate]. ctx bounds the wait for the lock.
func Rotate(ctx context.Context, opts RotateOptions) (*RotateResult, error) {
	opts.setDefaults()
	// Missing files are said plainly, before the lock, whose file could
	// not even be made in a directory that does not exist.
	for _, f := range []struct{ what, path string }{{"certificate", opts.CertPath}, {"key", opts.KeyPath}} {
		if !keyRefExists(f.path) {
			return nil, &fs.PathError{Op: "reading " + f.what, Path: f.path, Err: fs.ErrNotExist}
		}
	}
	if opts.PromoteNext && (isKeyRef(opts.KeyPath) || isKeyRef(opts.NextKeyPath) || opts.NextKeyPath == "") {
		return nil, fmt.Errorf("promoting the next key of %q: %w: the key or the next key is a bare URI, and promoting rewrites the files that say which key is current (key files, or .uri files naming keys in a token)", opts.CertPath, ErrKeyURI)
	}
	dir := filepath.Dir(opts.CertPath)
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := recoverLocked(dir); err != nil {
		return nil, err
	}

	r := &rotation{opts: opts, dir: dir, keyPass: cachePassphrase(opts.KeyPassphrase)}
	// A fresh next key made in a token is removed again unless the change
	// is installed.
	defer func() { r.made.rollback() }()
	if err := r.readCertificate(); err != nil {
		return nil, err
	}
	if opts.OnlyIf != nil && !opts.OnlyIf(r.res.Old) {
		r.res.Skipped = true
		return r.res, nil
	}
	for _, step := range []func() error{r.readKey, r.findSigner, r.chooseKey, r.issue} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return r.install()
}

// setDefaults fills in the paths the zero value stands for, and takes any
// PIN out of key URIs (into Tokens) before they can be printed.
func (o *RotateOptions) setDefaults() {
	if o.CertPath == "" {
		o.CertPath = DefaultLayout("").ServerCert
	}
	if o.KeyPath == "" {
		o.KeyPath = ResolveKeyPath(SiblingKeyPath(o.CertPath))
	}
	o.KeyPath = o.Tokens.TakePIN(o.KeyPath)
	o.NextKeyPath = o.Tokens.TakePIN(o.NextKeyPath)
	o.IssuerKeyPath = o.Tokens.TakePIN(o.IssuerKeyPath)
	if o.NextKeyPath == "" && !isKeyRef(o.KeyPath) {
		o.NextKeyPath = NextKeyPath(o.KeyPath)
	}
}

// rotation is one run of [Rotate] with the directory's lock held, step by
// step: read the certificate, read its key, find who signs, choose the key
// the new certificate is for, issue it, install every file in one change.
type rotation struct {
	opts    RotateOptions
	dir     string
	keyPass func() ([]byte, error)
	res     *RotateResult

	certData   []byte              // the certificate file as read
	chain      []*x509.Certificate // its content, leaf first
	key        crypto.Signer       // the current key
	selfSigned bool                // re-signed by its own key, not a CA
	signer     crypto.Signer       // the key that signs the new certificate
	newKey     crypto.Signer       // the key the new certificate is for
	changes    []change            // the files to install, in order
	made       *tokenKeys          // a fresh next key made in a token, until installed
}

// readCertificate reads the certificate (chain) to re-issue.
func (r *rotation) readCertificate() error {
	data, _, err := readFile(r.opts.CertPath, trustfile.Certificate)
	if err != nil {
		return fmt.Errorf("reading certificate %q: %w", r.opts.CertPath, err)
	}
	chain, err := ParseCertificatesPEM(data)
	if err != nil {
		return fmt.Errorf("reading certificate %q: %w", r.opts.CertPath, err)
	}
	r.certData, r.chain = data, chain
	r.res = &RotateResult{Old: chain[0]}
	return nil
}

// readKey reads the current key and checks that it is the certificate's.
// A key others may read is refused, as the server refuses to serve it:
// re-issuing for a key that may have leaked would certify it again.
func (r *rotation) readKey() error {
	key, err := ReadKeyFile(r.opts.KeyPath, KeyOptions{Passphrase: r.keyPass, RequirePrivateFile: true, Tokens: r.opts.Tokens})
	if err != nil {
		return err
	}
	if err := CheckPair(r.res.Old, key.Signer); err != nil {
		return fmt.Errorf("key %q does not match certificate %q: %w", r.opts.KeyPath, r.opts.CertPath, err)
	}
	r.key = key.Signer
	return nil
}

// findSigner decides who signs: the certificate's own key when it is
// self-signed and no CA is named, else its CA, checked to be the issuer.
func (r *rotation) findSigner() error {
	o := r.opts
	r.selfSigned = IsSelfSigned(r.res.Old) && o.IssuerCertPath == "" && o.IssuerKeyPath == ""
	if r.selfSigned {
		r.signer = r.key
		return nil
	}
	issuer, key, err := loadIssuer(r.res.Old, r.dir, o)
	if err != nil {
		return err
	}
	r.res.Issuer, r.signer = issuer, key
	return nil
}

// chooseKey decides which key the new certificate is for: the current one,
// or with PromoteNext the next one, whose place a fresh key of the same
// type takes (encrypted with the same passphrase if the next key was; made
// in the same token if the next key is in one). Either way it learns the
// next key's public half for the result.
func (r *rotation) chooseKey() error {
	r.newKey = r.key
	if !r.opts.PromoteNext {
		// Report the next pin without asking for a passphrase it may need.
		if r.opts.NextKeyPath == "" {
			return nil
		}
		if next, _, err := readKeyRef(r.opts.NextKeyPath, trustfile.NextKey); err == nil {
			if k, err := parseKeyData(next, KeyOptions{Tokens: r.opts.Tokens}); err == nil {
				r.res.NextKey = k.Signer.Public()
			}
		}
		return nil
	}
	nextPath := r.opts.NextKeyPath
	nextData, _, err := readKeyRef(nextPath, trustfile.NextKey)
	if err != nil {
		return fmt.Errorf("promoting next key: reading %q: %w", nextPath, err)
	}
	next, err := parseKeyData(nextData, KeyOptions{Passphrase: r.keyPass, Tokens: r.opts.Tokens})
	if err != nil {
		return fmt.Errorf("promoting next key: reading %q: %w", nextPath, err)
	}
	kt, err := KeyTypeOf(next.Signer.Public())
	if err != nil {
		return fmt.Errorf("promoting next key %q: %w", nextPath, err)
	}
	var fresh crypto.Signer
	var freshData []byte
	if uri, inToken := keyURIData(nextData); inToken {
		// The fresh next key goes where the next key is.
		r.made, fresh, freshData, err = nextTokenKey(r.opts.Tokens, uri, kt)
		if err != nil {
			return fmt.Errorf("promoting next key %q: making a fresh next key: %w", nextPath, err)
		}
	} else {
		if fresh, err = GenerateKey(kt); err != nil {
			return err
		}
		var pass []byte
		if next.Encrypted {
			if pass, err = r.keyPass(); err != nil {
				return err
			}
		}
		if freshData, err = EncodeKeyPEM(fresh, pass); err != nil {
			return err
		}
	}
	r.newKey = next.Signer
	if r.selfSigned {
		r.signer = r.newKey
	}
	r.res.Promoted, r.res.NextKey = true, fresh.Public()
	// The key file gets the next key's bytes as they are: its encryption
	// and format stay what the operator made (a .uri file stays one).
	r.changes = append(r.changes,
		change{path: r.opts.KeyPath, data: nextData, perm: keyFileMode},
		change{path: nextPath, data: freshData, perm: keyFileMode})
	return nil
}

// issue makes the new certificate: the old one's subject, names and
// lifetime (unless the options set another), a new serial, for newKey.
// It is installed after the keys: with PromoteNext, a reader that skips
// Recover sees the old pair until the key arrives and the new pair once
// the certificate does (a mismatch in between, which a pair check
// refuses, never a wrong pair that passes). In the self-signed layout
// the ca.crt that is the certificate's copy follows it.
func (r *rotation) issue() error {
	old, o := r.res.Old, r.opts
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	co := CertOptions{
		RawSubject:  old.RawSubject,
		CommonName:  old.Subject.CommonName,
		DNSNames:    old.DNSNames,
		IPAddresses: old.IPAddresses,
		IsCA:        old.IsCA,
		Validity:    o.Validity,
		NotAfter:    o.NotAfter,
		Issuer:      r.res.Issuer,
		IssuerKey:   r.signer,
		Now:         func() time.Time { return now },
		Rand:        o.Rand,
	}
	if co.Validity <= 0 && co.NotAfter.IsZero() {
		co.NotBefore = now.Add(-backdate)
		co.NotAfter = co.NotBefore.Add(old.NotAfter.Sub(old.NotBefore))
	}
	var err error
	if r.res.New, err = CreateCertificate(r.newKey.Public(), co); err != nil {
		return fmt.Errorf("re-issuing %q: %w", o.CertPath, err)
	}
	chain := append([]*x509.Certificate{r.res.New}, r.chain[1:]...)
	if r.selfSigned {
		chain = chain[:1]
	}
	data := EncodeCertificatesPEM(chain...)
	r.changes = append(r.changes, change{path: o.CertPath, data: data, perm: certFileMode})
	if r.selfSigned {
		if caCopy := filepath.Join(r.dir, CACertFile); caCopy != o.CertPath && isCopyOf(caCopy, r.certData, old) {
			r.res.CACopy = caCopy
			r.changes = append(r.changes, change{path: caCopy, data: data, perm: certFileMode})
		}
	}
	return nil
}

// install writes every change as one crash-safe transaction.
func (r *rotation) install() (*RotateResult, error) {
	if err := commit(r.dir, r.changes, r.opts.hook); err != nil {
		return nil, fmt.Errorf("rotating %q: %w", r.opts.CertPath, err)
	}
	r.made = nil // installed: the fresh key is in use
	for _, c := range r.changes {
		r.res.Written = append(r.res.Written, c.path)
	}
	return r.res, nil
}

// loadIssuer finds and checks the CA that signs the renewed certificate.
// What keeps it from signing is an [*IssuerError].
func loadIssuer(old *x509.Certificate, dir string, opts RotateOptions) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := opts.IssuerCertPath, opts.IssuerKeyPath
	named := certPath != ""
	if certPath == "" {
		certPath = filepath.Join(dir, CACertFile)
	}
	if keyPath == "" {
		keyPath = ResolveKeyPath(filepath.Join(filepath.Dir(certPath), CAKeyFile))
	}
	issuerErr := func(missing string, err error) error {
		return &IssuerError{CertPath: opts.CertPath, IssuerCertPath: certPath, IssuerKeyPath: keyPath, Missing: missing, Err: err}
	}
	issuers, err := readCertificatesFile(certPath, trustfile.CACertificate)
	if err != nil {
		if !named && errors.Is(err, fs.ErrNotExist) {
			return nil, nil, issuerErr(certPath, ErrIssuerKeyMissing)
		}
		return nil, nil, fmt.Errorf("reading issuer: %w", err)
	}
	issuer := issuers[0]
	if err := old.CheckSignatureFrom(issuer); err != nil {
		return nil, nil, issuerErr("", fmt.Errorf("%v: %w", err, ErrNotIssuer))
	}
	if !keyRefExists(keyPath) {
		return nil, nil, issuerErr(keyPath, ErrIssuerKeyMissing)
	}
	k, err := readKeyFile(keyPath, trustfile.CAKey, KeyOptions{Passphrase: opts.IssuerKeyPassphrase, RequirePrivateFile: true, Tokens: opts.Tokens})
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
