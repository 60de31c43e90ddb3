package pki

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names of the client CA (docs/TRUST.md, "Client identity").
const (
	ClientCACertFile = "client-ca.crt"
	ClientCAKeyFile  = "client-ca.key"
)

// ClientCAOptions describes a new client CA. The zero value makes an ECDSA
// P-256 CA valid 10 years in [defaultDir].
type ClientCAOptions struct {
	// Dir is the directory, created (0755) if missing. Default [defaultDir].
	Dir string
	// KeyType is the CA key's type. Default [KeyECDSAP256].
	KeyType KeyType
	// CommonName is the CA's subject. Default "Space Captain client CA
	// (HOST)".
	CommonName string
	// Validity is the CA's lifetime. Default [DefaultCAValidity].
	Validity time.Duration
	// KeyPassphrase, when set, encrypts client-ca.key. Default none.
	KeyPassphrase []byte
	// Overwrite replaces existing files. Default false: when either file
	// exists nothing is written and the error matches [fs.ErrExist].
	Overwrite bool
	// Now and Rand as in [CertOptions].
	Now  func() time.Time
	Rand io.Reader
}

// ClientCAResult describes a client CA made by [InitClientCA].
type ClientCAResult struct {
	// CertPath and KeyPath are client-ca.crt and client-ca.key.
	CertPath, KeyPath string
	CA                *x509.Certificate
}

// InitClientCA makes a CA for players' certificates, apart from the CA
// that issues server certificates: every self-renewing server holds that
// one's key, so a compromised server could mint players with it. The
// server needs only client-ca.crt (sc-server --client-ca); client-ca.key
// signs client certificates (sc-cert create --client) and may stay
// offline. Both files appear together or neither does.
func InitClientCA(ctx context.Context, opts ClientCAOptions) (*ClientCAResult, error) {
	dir := opts.Dir
	if dir == "" {
		dir = defaultDir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating certificate directory: %w", err)
	}
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	res := &ClientCAResult{CertPath: filepath.Join(dir, ClientCACertFile), KeyPath: filepath.Join(dir, ClientCAKeyFile)}
	if !opts.Overwrite {
		var existing []string
		for _, f := range []string{res.CertPath, res.KeyPath} {
			if _, err := os.Lstat(f); err == nil {
				existing = append(existing, f)
			}
		}
		if len(existing) > 0 {
			return nil, fmt.Errorf("making the client CA in %q: refusing to replace %s: %w", dir, strings.Join(existing, ", "), fs.ErrExist)
		}
	}
	key, err := GenerateKey(opts.KeyType)
	if err != nil {
		return nil, err
	}
	cn := opts.CommonName
	if cn == "" {
		cn = "Space Captain client CA"
		if h := hostname(); h != "" {
			cn += " (" + h + ")"
		}
	}
	res.CA, err = CreateCertificate(key.Public(), CertOptions{IsCA: true, CommonName: cn, Validity: opts.Validity, IssuerKey: key, Now: opts.Now, Rand: opts.Rand})
	if err != nil {
		return nil, fmt.Errorf("creating the client CA: %w", err)
	}
	keyPEM, err := EncodeKeyPEM(key, opts.KeyPassphrase)
	if err != nil {
		return nil, err
	}
	changes := []change{
		{path: res.KeyPath, data: keyPEM, perm: keyFileMode, mustNotExist: !opts.Overwrite},
		{path: res.CertPath, data: EncodeCertificatesPEM(res.CA), perm: certFileMode, mustNotExist: !opts.Overwrite},
	}
	if err := commit(dir, changes, nil); err != nil {
		return nil, fmt.Errorf("making the client CA in %q: %w", dir, err)
	}
	return res, nil
}
