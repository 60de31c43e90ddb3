package servercmd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// certSource is where the server's certificate and the body of its KEYS
// reply come from. The server reaches it only through GetCertificate (with
// tls.Config.Certificates left empty, so that clients dialing an IP, which
// send no SNI, see a reloaded certificate too) and Keys.
//
// It is the seam for pki's hot-reloading certificate source (issue 5):
// until that lands, [pairSource] loads the files at start and again on
// SIGHUP. All methods are safe for concurrent use; GetCertificate and Keys
// are called from every handshake and KEYS request.
type certSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Keys returns the KEYS reply body: the current pin, then the next
	// key's pin when there is a next key. The slice is never modified.
	Keys() []byte
	// Reload reads the files again and swaps them in; on failure the old
	// pair stays and the error says why.
	Reload() error
	// Info describes the pair being served, for logs.
	Info() certInfo
}

// certInfo describes the served certificate for logs.
type certInfo struct {
	Serial   string
	NotAfter time.Time
	Pin      pinning.Pin
	NextPin  pinning.Pin // zero without a next key
	// NextErr says why the next key could not be read (it is then not
	// announced); nil when it was read or does not exist.
	NextErr error
}

// pairSource is a certSource over a certificate and key file, and the next
// key file beside them, loaded with pki.LoadPair. It does not watch the
// files: Reload (on SIGHUP) reads them again.
type pairSource struct {
	certPath, keyPath, nextKeyPath string
	keyOpts                        pki.KeyOptions
	now                            func() time.Time

	mu  sync.Mutex // serializes Reload
	cur atomic.Pointer[loadedPair]
}

type loadedPair struct {
	cert *tls.Certificate
	keys []byte
	info certInfo
}

// newPairSource loads the pair once and returns the source; an error means
// there is nothing to serve.
func newPairSource(certPath, keyPath, nextKeyPath string, keyOpts pki.KeyOptions, now func() time.Time) (*pairSource, error) {
	s := &pairSource{certPath: certPath, keyPath: keyPath, nextKeyPath: nextKeyPath, keyOpts: keyOpts, now: now}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate returns the current pair; safe for use as a tls.Config
// callback.
func (s *pairSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load().cert, nil
}

// Keys returns the prepared KEYS body.
func (s *pairSource) Keys() []byte { return s.cur.Load().keys }

// Info describes the current pair.
func (s *pairSource) Info() certInfo { return s.cur.Load().info }

// Reload loads the certificate, its key and the next key, checks that
// they belong together and are valid now, and swaps them in. On any
// failure the pair being served stays.
func (s *pairSource) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	keyOpts := s.keyOpts
	// A key readable by others is refused, as OpenSSH refuses such
	// identity files: it may have leaked.
	keyOpts.RequirePrivateFile = true
	pair, err := pki.LoadPair(s.certPath, s.keyPath, pki.LoadOptions{Key: keyOpts, Now: s.now})
	if err != nil {
		return err
	}
	leaf := pair.Leaf()
	info := certInfo{Serial: pki.SerialHex(leaf.SerialNumber), NotAfter: leaf.NotAfter, Pin: pinning.PinOf(leaf)}
	var next []string
	if s.nextKeyPath != "" {
		info.NextPin, info.NextErr = readNextPin(s.nextKeyPath, keyOpts, leaf)
		if !info.NextPin.IsZero() {
			next = append(next, info.NextPin.String())
		}
	}
	s.cur.Store(&loadedPair{
		cert: pair.TLSCertificate(),
		keys: proto.AppendKeys(nil, info.Pin.String(), next),
		info: info,
	})
	return nil
}

// readNextPin returns the pin of the next key; a missing file is no next
// key, and no error.
func readNextPin(path string, opts pki.KeyOptions, leaf *x509.Certificate) (pinning.Pin, error) {
	k, err := pki.ReadKeyFile(path, opts)
	if errors.Is(err, fs.ErrNotExist) {
		return pinning.Pin{}, nil
	}
	if err != nil {
		return pinning.Pin{}, fmt.Errorf("reading the next key: %w", err)
	}
	pin, err := pinning.PinOfPublicKey(k.Signer.Public())
	if err != nil {
		return pinning.Pin{}, fmt.Errorf("reading the next key %s: %w", path, err)
	}
	if pin.Equal(pinning.PinOf(leaf)) {
		// Announcing the current key as the next one would be harmless but
		// says the rollover was botched (the next key was copied, not made).
		return pinning.Pin{}, fmt.Errorf("the next key %s is the current key: make a fresh one with sc-cert rotate --promote-next", path)
	}
	return pin, nil
}
