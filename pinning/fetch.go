package pinning

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"time"
)

// DefaultFetchTimeout bounds a [FetchChain] whose options give no timeout:
// dial and handshake together. crypto/tls has no handshake timeout of its own,
// so a silent server would otherwise hold the caller forever.
const DefaultFetchTimeout = 10 * time.Second

// FetchOptions configures [FetchChain]. The zero value dials with
// [DefaultFetchTimeout], offers TLS 1.2 and 1.3 and sends the address's host
// name as SNI.
type FetchOptions struct {
	// ServerName is sent as SNI. Empty means the host part of the address;
	// crypto/tls sends no SNI for an IP address (RFC 6066, section 3).
	ServerName string

	// Timeout bounds the dial and the handshake together. Zero means
	// [DefaultFetchTimeout]; the context's deadline, if earlier, wins.
	Timeout time.Duration

	// MinVersion and MaxVersion bound the TLS versions offered. Zero means
	// TLS 1.2 and TLS 1.3.
	MinVersion, MaxVersion uint16

	// NextProtos lists the ALPN protocols to offer. Nil offers none.
	NextProtos []string

	// NetDialer dials the TCP connection. Nil is equivalent to the
	// net.Dialer zero value.
	NetDialer *net.Dialer
}

// FetchChain connects to addr ("host:port") over TLS and returns the
// certificate chain the server presented, leaf first, and the connection
// state, without trusting the server: nothing is verified, so nothing in the
// result is authenticated. It is for looking at a server (sc-cert inspect and
// fingerprint), never for deciding to trust one; use [NewTrust] for that.
//
// FetchChain closes the connection before it returns. If the handshake fails
// after the server presented its certificates (for example because the
// server demands a client certificate), FetchChain returns that chain and the
// state seen when it arrived (HandshakeComplete false) together with the
// error; otherwise the chain is nil on error.
func FetchChain(ctx context.Context, addr string, opts FetchOptions) ([]*x509.Certificate, tls.ConnectionState, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var (
		mu   sync.Mutex
		seen *tls.ConnectionState
	)
	record := func(cs tls.ConnectionState) error {
		mu.Lock()
		defer mu.Unlock()
		seen = &cs
		return nil
	}
	cfg := clientConfig(nil, ModeInsecure, record)
	cfg.ServerName = opts.ServerName
	cfg.MinVersion = opts.MinVersion
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	cfg.MaxVersion = opts.MaxVersion
	if cfg.MaxVersion == 0 {
		cfg.MaxVersion = tls.VersionTLS13
	}
	cfg.NextProtos = opts.NextProtos

	d := &tls.Dialer{NetDialer: opts.NetDialer, Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		if seen != nil {
			return seen.PeerCertificates, *seen, fmt.Errorf("fetching certificates from %s: the server presented %d certificate(s), then the handshake failed: %w", addr, len(seen.PeerCertificates), err)
		}
		return nil, tls.ConnectionState{}, fmt.Errorf("fetching certificates from %s: %w", addr, err)
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	if len(state.PeerCertificates) == 0 {
		// crypto/tls refuses a server Certificate message without
		// certificates, so this is a defensive check only.
		return nil, state, fmt.Errorf("fetching certificates from %s: %w", addr, ErrNoPeerCertificate)
	}
	return state.PeerCertificates, state, nil
}
