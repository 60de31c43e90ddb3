package certcmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// target is what inspect and fingerprint look at: a certificate file, a
// key file, or a server's chain.
type target struct {
	name  string
	certs []*x509.Certificate // leaf first; nil for a key
	key   *pki.Key
	state *tls.ConnectionState // set for HOST:PORT
	dtls  bool                 // fetched over DTLS (--udp)
	// handshakeErr is set for a server whose handshake failed after it
	// presented its certificates: it did not prove it holds the key (a
	// failed CertificateVerify), or it wanted a client certificate.
	handshakeErr error
}

type targetOptions struct {
	serverName string
	timeout    time.Duration
	pass       *cli.Passphrase
	udp        bool        // HOST:PORT is a DTLS server (udp.go)
	tokens     *pki.Tokens // opens keys in PKCS#11 tokens
}

// loadTarget reads arg as a file when one exists by that name, else as
// HOST:PORT and fetches the server's chain without trusting it.
func loadTarget(ctx context.Context, arg string, o targetOptions) (*target, error) {
	if pki.IsKeyURI(arg) {
		return loadKey(arg, o)
	}
	if _, err := os.Stat(arg); err == nil {
		return loadFile(arg, o)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	host, port, err := net.SplitHostPort(arg)
	if _, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || host == "" {
		return nil, cli.WithHint(fmt.Errorf("reading %q: %w", arg, fs.ErrNotExist),
			"give a certificate or key FILE, or a server as HOST:PORT (e.g. localhost:4242)")
	}
	if o.udp {
		return fetchDTLS(ctx, arg, o)
	}
	certs, state, err := pinning.FetchChain(ctx, arg, pinning.FetchOptions{ServerName: o.serverName, Timeout: o.timeout})
	if err != nil && len(certs) == 0 {
		return nil, cli.WithHint(fmt.Errorf("fetching the certificate of %s: %w", arg, err),
			fmt.Sprintf("is a TLS server listening on %s? (no file named %q exists, so it was read as HOST:PORT)", arg, arg))
	}
	return &target{name: arg, certs: certs, state: &state, handshakeErr: err}, nil
}

func loadFile(path string, o targetOptions) (*target, error) {
	// Looking is not trusting: no owner or mode checks, but still only a
	// regular file of a sane size.
	data, _, err := trustfile.Read(path, trustfile.PrivateKey.Without(trustfile.CheckPrivate|trustfile.CheckOwner))
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", path, err)
	}
	// A file with a private key block is a key file, one holding a key URI
	// names a key in a token; anything else is read as certificates, whose
	// parser explains what it found instead.
	if cli.IsTokenRef(path) || pki.IsKeyURI(string(bytes.TrimSpace(data))) {
		return loadKey(path, o)
	}
	if !bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		certs, err := pki.ReadCertificatesFile(path)
		if err != nil {
			return nil, err
		}
		return &target{name: path, certs: certs}, nil
	}
	return loadKey(path, o)
}

// loadKey reads a private key: a key file, a key URI, or a file holding
// one (the key is then opened in its token).
func loadKey(ref string, o targetOptions) (*target, error) {
	key, err := pki.ReadKeyFile(ref, pki.KeyOptions{Passphrase: o.pass.Source(ref), Tokens: o.tokens})
	if err != nil {
		return nil, cli.TokenHint(keyHint(err, "", ref))
	}
	return &target{name: display(ref), key: key}, nil
}

// keyHint adds what to do to key errors: the passphrase flags, or for a
// key others could read, the emergency replacement, naming the certificate
// and key in question (certPath "" means the certificate beside keyPath).
func keyHint(err error, certPath, keyPath string) error {
	switch {
	case errors.Is(err, pki.ErrIncorrectPassphrase):
		return cli.WithHint(err, "check --password-file or $"+cli.PassphraseEnv)
	case errors.Is(err, pki.ErrKeyFilePermissions):
		if certPath == "" {
			certPath = strings.TrimSuffix(keyPath, filepath.Ext(keyPath)) + ".crt"
		}
		return cli.WithHint(err, fmt.Sprintf("a key others could read may have leaked: docs/ROTATION.md, emergency replacement (a server key: sc-cert rotate --promote-next --cert %s --key %s; the CA key: sc-cert init --force)", certPath, keyPath))
	}
	return err
}
