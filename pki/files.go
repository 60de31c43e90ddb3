package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// Limits on a certificate chain served or checked: a chain of a leaf, an
// intermediate or two and a root is a few kilobytes; anything near these
// limits is a mistake (a CA bundle given as the certificate) that would
// make every handshake send it.
const (
	maxChainCertificates = 8
	maxChainBytes        = 64 << 10
)

// readFile reads path as a file of kind k through the one hardened reader
// every file the toolkit trusts goes through (non-blocking open, regular
// files only, a size cap per kind, and the owner and mode checks k asks
// for).
func readFile(path string, k trustfile.Kind) ([]byte, fs.FileInfo, error) {
	return trustfile.Read(path, k)
}

// keyKind is the kind of key file, with the owner and mode checks only
// when the key is to be trusted ([KeyOptions.RequirePrivateFile]).
func keyKind(k trustfile.Kind, strict bool) trustfile.Kind {
	if strict {
		return k
	}
	return k.Without(trustfile.CheckPrivate | trustfile.CheckOwner)
}

// readKey reads a key file of kind k. A file refused for its mode or owner
// that holds a certificate rather than a key is reported as what it is —
// the certificate and key paths swapped — rather than as a key others may
// have read.
func readKey(path string, k trustfile.Kind) ([]byte, fs.FileInfo, error) {
	data, fi, err := readFile(path, k)
	if err == nil || !(errors.Is(err, ErrKeyFilePermissions) || errors.Is(err, ErrFileOwner) || errors.Is(err, ErrFileWritable)) {
		return data, fi, err
	}
	if raw, _, rerr := readFile(path, keyKind(k, false)); rerr == nil {
		if _, perr := ParseKeyPEM(raw, KeyOptions{}); errors.Is(perr, ErrNoKey) {
			return nil, nil, perr
		}
	}
	return nil, nil, err
}

// checkChain refuses a chain to serve that is longer than
// maxChainCertificates or larger than maxChainBytes in DER, with
// [ErrChainTooLong].
func checkChain(chain []*x509.Certificate) error {
	n := 0
	for _, c := range chain {
		n += len(c.Raw)
	}
	switch {
	case len(chain) > maxChainCertificates:
		return fmt.Errorf("%w: %d certificates, at most %d (is it a CA bundle rather than the server's chain?)", ErrChainTooLong, len(chain), maxChainCertificates)
	case n > maxChainBytes:
		return fmt.Errorf("%w: %d bytes of certificates, at most %d", ErrChainTooLong, n, maxChainBytes)
	}
	return nil
}

// SiblingKeyPath returns the key file that goes with a certificate file
// when none is named: the same name with the extension .key, so that
// certs/server.crt goes with certs/server.key and game.crt with game.key.
func SiblingKeyPath(certPath string) string {
	ext := filepath.Ext(certPath)
	if ext == ".key" {
		return certPath + ".key"
	}
	return certPath[:len(certPath)-len(ext)] + ".key"
}
