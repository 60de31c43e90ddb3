package pki

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// defaultDir is the certificate directory sc-cert init and sc-server use
// when none is given, relative to the working directory.
const defaultDir = "certs"

// File names of the default layout (docs/TRUST.md, "Certificate layouts").
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	NextKeyFile    = "server.next.key"
)

// Layout names the files of a certificate directory.
type Layout struct {
	Dir string
	// CACert is the file CA-file clients trust: the local CA, or in the
	// self-signed layout a copy of ServerCert.
	CACert string
	// CAKey is the local CA's key; absent in the self-signed layout.
	CAKey      string
	ServerCert string
	ServerKey  string
	// NextKey is the pre-generated key the next key rollover will promote;
	// its pin is published ahead of time (RFC 7583).
	NextKey string
}

// DefaultLayout returns the file names of the default layout in dir. An
// empty dir means "certs", relative to the working directory: the
// directory sc-cert init and sc-server use when none is given.
func DefaultLayout(dir string) Layout {
	if dir == "" {
		dir = defaultDir
	}
	return Layout{
		Dir:        dir,
		CACert:     filepath.Join(dir, CACertFile),
		CAKey:      filepath.Join(dir, CAKeyFile),
		ServerCert: filepath.Join(dir, ServerCertFile),
		ServerKey:  filepath.Join(dir, ServerKeyFile),
		NextKey:    filepath.Join(dir, NextKeyFile),
	}
}

// tokenLayout is l with its keys in a token: the .uri files that name
// them where the key files would be.
func (l Layout) tokenLayout() Layout {
	l.CAKey = filepath.Join(l.Dir, caKeyURIFile)
	l.ServerKey = filepath.Join(l.Dir, serverKeyURIFile)
	l.NextKey = filepath.Join(l.Dir, nextKeyURIFile)
	return l
}

// NextKeyPath returns where the next key of keyPath lives: "server.key"
// becomes "server.next.key", "foo.pem" becomes "foo.next.pem".
func NextKeyPath(keyPath string) string {
	ext := filepath.Ext(keyPath)
	if ext == "" {
		return keyPath + ".next"
	}
	return strings.TrimSuffix(keyPath, ext) + ".next" + ext
}

// InitOptions describes a new certificate directory. The zero value makes
// the default layout in "certs": an ECDSA P-256 local CA valid 10 years
// that issues a server certificate valid 90 days for localhost, 127.0.0.1,
// ::1 and the host name, with unencrypted keys.
type InitOptions struct {
	// Dir is the directory, created (0755) if missing. Default "certs".
	Dir string

	// SelfSigned makes the seed's plain layout instead: a self-signed
	// server.crt, ca.crt a copy of it, and no ca.key. Every re-issue then
	// invalidates the copy CA-file clients hold. Default false.
	SelfSigned bool

	// KeyType is the type of the server key and the next key. Default
	// [KeyECDSAP256].
	KeyType KeyType

	// CAKeyType is the type of the CA key. Default: KeyType.
	CAKeyType KeyType

	// CommonName, DNSNames and IPAddresses describe the server certificate;
	// see [CertOptions] for their defaults.
	CommonName  string
	DNSNames    []string
	IPAddresses []net.IP

	// Validity and NotAfter set the server certificate's lifetime; see
	// [CertOptions]. Default 90 days.
	Validity time.Duration
	NotAfter time.Time

	// CAValidity is the CA's lifetime. Default 10 years.
	CAValidity time.Duration

	// KeyPassphrase, when set, encrypts server.key and server.next.key
	// (PKCS#8, PBES2). A server then needs it at every start. Default none.
	KeyPassphrase []byte

	// CAKeyPassphrase, when set, encrypts ca.key. A server cannot then
	// renew its certificate by itself. Default none.
	CAKeyPassphrase []byte

	// Token, when set, is a pkcs11: URI naming a PKCS#11 token (its
	// module-path; token, serial or slot-id; and pin-source if the PIN
	// comes from a file) but no key in it. The keys are then made in the
	// token and never exist anywhere else: the CA key as [TokenObjectCA]
	// with id [TokenIDCA], the server key as [TokenObjectServer]
	// ([TokenIDServer]) and the next key as [TokenObjectNext]
	// ([TokenIDNext]), and the layout gets ca.uri, server.uri and
	// server.next.uri naming them where it would have key files. A token
	// that already holds a key under one of these labels is refused with
	// [ErrTokenKeyExists], Overwrite or not: keys in a token are never
	// replaced. The key passphrases do not apply. Needs Tokens. Default
	// "": keys in files.
	Token string

	// Tokens opens the token named by Token.
	Tokens *Tokens

	// Overwrite replaces existing files. Default false: if any of the
	// layout's files exists, nothing is written and the error matches
	// [ErrExists].
	Overwrite bool

	// Now and Rand as in [CertOptions]. Nil means the real sources.
	Now  func() time.Time
	Rand io.Reader

	hook stepHook
}

// InitResult describes a directory made by [InitLayout].
type InitResult struct {
	Layout     Layout
	SelfSigned bool
	// CA is the certificate in ca.crt: the local CA, or the self-signed
	// server certificate.
	CA *x509.Certificate
	// Server is the certificate in server.crt.
	Server *x509.Certificate
	// NextKey is the public half of server.next.key; pin it ahead of time.
	NextKey crypto.PublicKey
	// RemovedCAKey is the CA key a self-signed re-initialisation removed
	// (with Overwrite), or "" when there was none.
	RemovedCAKey string
	// Removed lists the key files of the other kind an Overwrite removed:
	// the key files of a layout re-made with its keys in a token, or the
	// .uri files of one re-made with key files. Left in place they would
	// shadow, or be taken for, the new keys.
	Removed []string
}

// InitLayout makes the default certificate layout in one crash-safe step:
// all files appear together or none does (see [Recover]). sc-cert init and
// sc-server's first run call it. Existing files are refused unless
// opts.Overwrite; the error names them and matches [ErrExists].
func InitLayout(ctx context.Context, opts InitOptions) (*InitResult, error) {
	l := DefaultLayout(opts.Dir)
	fileLayout := l
	var tk *tokenKeys
	if opts.Token != "" {
		var err error
		opts.Token = opts.Tokens.TakePIN(opts.Token)
		if tk, err = newTokenKeys(opts.Tokens, opts.Token); err != nil {
			return nil, fmt.Errorf("initialising %q: %w", l.Dir, err)
		}
		l = l.tokenLayout()
	}
	// Keys made in the token are removed again if the layout is not
	// committed.
	defer func() { tk.rollback() }()
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating certificate directory: %w", err)
	}
	unlock, err := lockDir(ctx, l.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := recoverLocked(l.Dir); err != nil {
		return nil, err
	}

	files := []string{l.CACert, l.ServerCert, l.ServerKey, l.NextKey}
	// The other kind's key files: present, they would shadow the new keys
	// or be taken for them (ResolveKeyPath prefers a .key that exists).
	other := fileLayout.tokenLayout()
	if opts.Token != "" {
		other = fileLayout
	}
	stale := []string{other.ServerKey, other.NextKey}
	if !opts.SelfSigned {
		files = append(files, l.CAKey)
		stale = append(stale, other.CAKey)
	}
	if !opts.Overwrite {
		files = append(files, stale...)
		var existing []string
		for _, f := range files {
			if _, err := os.Lstat(f); err == nil {
				existing = append(existing, f)
			}
		}
		if len(existing) > 0 {
			return nil, fmt.Errorf("initialising %q: refusing to replace %s: %w", l.Dir, strings.Join(existing, ", "), ErrExists)
		}
	}

	// newKey makes a key and the content of its file: PEM, or the URI of
	// a key made in the token.
	newKey := func(kt KeyType, pass []byte, object string, id byte) (crypto.Signer, []byte, error) {
		if tk != nil {
			s, data, err := tk.make(object, []byte{id}, kt)
			if err != nil {
				return nil, nil, fmt.Errorf("initialising %q: %w", l.Dir, err)
			}
			return s, data, nil
		}
		k, err := GenerateKey(kt)
		if err != nil {
			return nil, nil, err
		}
		data, err := EncodeKeyPEM(k, pass)
		if err != nil {
			return nil, nil, err
		}
		return k, data, nil
	}
	serverKey, serverData, err := newKey(opts.KeyType, opts.KeyPassphrase, TokenObjectServer, TokenIDServer)
	if err != nil {
		return nil, err
	}
	nextKey, nextData, err := newKey(opts.KeyType, opts.KeyPassphrase, TokenObjectNext, TokenIDNext)
	if err != nil {
		return nil, err
	}
	leafOpts := CertOptions{
		CommonName:  opts.CommonName,
		DNSNames:    opts.DNSNames,
		IPAddresses: opts.IPAddresses,
		Validity:    opts.Validity,
		NotAfter:    opts.NotAfter,
		Now:         opts.Now,
		Rand:        opts.Rand,
		IssuerKey:   serverKey,
	}
	res := &InitResult{Layout: l, SelfSigned: opts.SelfSigned, NextKey: nextKey.Public()}
	var changes []change
	var caKey crypto.Signer
	var caData []byte
	if !opts.SelfSigned {
		caType := opts.CAKeyType
		if caType == "" {
			caType = opts.KeyType
		}
		if caKey, caData, err = newKey(caType, opts.CAKeyPassphrase, TokenObjectCA, TokenIDCA); err != nil {
			return nil, err
		}
		res.CA, err = CreateCertificate(caKey.Public(), CertOptions{
			IsCA: true, Validity: opts.CAValidity, IssuerKey: caKey, Now: opts.Now, Rand: opts.Rand,
		})
		if err != nil {
			return nil, fmt.Errorf("creating CA: %w", err)
		}
		leafOpts.Issuer, leafOpts.IssuerKey = res.CA, caKey
	}
	if res.Server, err = CreateCertificate(serverKey.Public(), leafOpts); err != nil {
		return nil, err
	}
	if opts.SelfSigned {
		res.CA = res.Server
	}

	add := func(path string, data []byte, perm fs.FileMode) {
		changes = append(changes, change{path: path, data: data, perm: perm, mustNotExist: !opts.Overwrite})
	}
	if caKey != nil {
		add(l.CAKey, caData, keyFileMode)
	}
	add(l.CACert, EncodeCertificatesPEM(res.CA), certFileMode)
	add(l.ServerKey, serverData, keyFileMode)
	add(l.NextKey, nextData, keyFileMode)
	add(l.ServerCert, EncodeCertificatesPEM(res.Server), certFileMode)

	if err := commit(l.Dir, changes, opts.hook); err != nil {
		return nil, fmt.Errorf("initialising %q: %w", l.Dir, err)
	}
	tk = nil // committed: the keys in the token are in use
	if opts.Overwrite {
		for _, f := range stale {
			switch err := os.Remove(f); {
			case err == nil:
				res.Removed = append(res.Removed, f)
			case !errors.Is(err, fs.ErrNotExist):
				return res, fmt.Errorf("initialising %q: the new layout is in place but the old key file %q could not be removed (remove it by hand): %w", l.Dir, f, err)
			}
		}
	}
	if opts.SelfSigned && opts.Overwrite {
		// A CA key left from an earlier CA layout would sign nothing in
		// this one, yet renewal would still find it beside the certificate
		// and an operator would still have to guard it: it goes.
		for _, caKey := range []string{l.CAKey, other.CAKey} {
			switch err := os.Remove(caKey); {
			case err == nil:
				res.RemovedCAKey = caKey
			case !errors.Is(err, fs.ErrNotExist):
				return res, fmt.Errorf("initialising %q: the new self-signed layout is in place but the old CA key %q could not be removed (remove it by hand): %w", l.Dir, caKey, err)
			}
		}
	}
	return res, nil
}
