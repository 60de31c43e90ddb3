package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"
	"github.com/pion/logging"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Defaults of [DTLSOptions].
const (
	// DefaultRetry is how long Do first waits for a reply over DTLS before
	// it sends the request again; each further wait doubles, up to
	// MaxRetry. The server keeps no reply state: a lost request or reply
	// costs one wait.
	DefaultRetry = 250 * time.Millisecond
	// MaxRetry caps the wait between two sends of one request.
	MaxRetry = 2 * time.Second
	// DefaultHandshakeAttempt bounds one DTLS handshake attempt. An RFC
	// 6347 client resends its second ClientHello for ever once it has
	// one, but a server under a flood of spoofed handshakes may have
	// dropped the half-open handshake it belonged to: after this long
	// without completing, Dial starts over with a new ClientHello from a
	// new port, until Options.Timeout.
	DefaultHandshakeAttempt = 2 * time.Second
	// DefaultMaxDatagram is the largest datagram payload Flush packs
	// requests into, the server's default: 1,200 bytes of frames stay
	// under IPv6's minimum MTU with the record's overhead.
	DefaultMaxDatagram = 1200
)

// DTLSOptions makes [Dial] speak DTLS 1.2 over UDP instead of TLS over
// TCP. Verify is required; every other zero field means its default.
type DTLSOptions struct {
	// Verify decides whether to trust the server from the certificates
	// it presented, DER, leaf first: pinning.Trust.VerifyPeer. It is the
	// whole check — pion/dtls's own chain verification is off — and it
	// runs on every handshake. Required.
	Verify func(rawCerts [][]byte) error

	// ServerName is sent as SNI. Empty sends none.
	ServerName string

	// Retry is the first wait for a reply before Do sends a request
	// again. Zero means DefaultRetry.
	Retry time.Duration

	// HandshakeAttempt bounds one handshake attempt; see
	// DefaultHandshakeAttempt. Zero means that.
	HandshakeAttempt time.Duration

	// MaxDatagram is the largest datagram payload Flush packs requests
	// into, split at frame boundaries (a frame larger than it goes
	// alone). Zero means DefaultMaxDatagram.
	MaxDatagram int

	// DisableConnectionIDs stops the client from offering to send
	// connection IDs (RFC 9146). By default it does, with return
	// routability checks (RFC 9853), so that the session survives the
	// client's address changing (a NAT rebinding).
	DisableConnectionIDs bool

	// ListenPacket opens the client's UDP socket, once per handshake
	// attempt. Nil means a new socket on any port (tests move a client to
	// another port with a socket of their own).
	ListenPacket func() (net.PacketConn, error)
}

// dtlsConn is the DTLS side of a Conn.
type dtlsConn struct {
	c           *piondtls.Conn
	retry       time.Duration
	maxDatagram int
	certs       []*x509.Certificate // parsed on demand
	certsOnce   sync.Once
}

// dialDTLS completes a DTLS handshake with addr, starting over after each
// attempt that runs out of time, until ctx ends.
func dialDTLS(ctx context.Context, addr string, o *DTLSOptions) (*dtlsConn, error) {
	if o.Verify == nil {
		return nil, errors.New("DTLS without a Verify function would trust any server")
	}
	raddr, err := resolveUDP(ctx, addr)
	if err != nil {
		return nil, err
	}
	attempt := o.HandshakeAttempt
	if attempt <= 0 {
		attempt = DefaultHandshakeAttempt
	}
	listen := o.ListenPacket
	if listen == nil {
		listen = func() (net.PacketConn, error) { return net.ListenUDP("udp", nil) }
	}
	opts := []piondtls.ClientOption{
		piondtls.WithInsecureSkipVerify(true), // Verify is the check
		piondtls.WithVerifyConnection(func(s *piondtls.State) error { return o.Verify(s.PeerCertificates) }),
		piondtls.WithMinVersion(protocol.Version1_2),
		piondtls.WithMaxVersion(protocol.Version1_2),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		piondtls.WithLoggerFactory(quietLogs{}),
	}
	if o.ServerName != "" {
		opts = append(opts, piondtls.WithServerName(o.ServerName))
	}
	if !o.DisableConnectionIDs {
		opts = append(opts, piondtls.WithConnectionID(piondtls.OnlySendCIDGenerator(), piondtls.CIDPathMigrationRRC))
	}
	for {
		pc, err := listen()
		if err != nil {
			return nil, fmt.Errorf("opening a UDP socket: %w", err)
		}
		c, err := piondtls.Client(pc, raddr, opts...)
		if err != nil {
			pc.Close()
			return nil, fmt.Errorf("configuring DTLS: %w", err)
		}
		actx, cancel := context.WithTimeout(ctx, attempt)
		err = c.HandshakeContext(actx)
		timedOut := actx.Err() != nil
		cancel()
		if err == nil {
			d := &dtlsConn{c: c, retry: o.Retry, maxDatagram: o.MaxDatagram}
			if d.retry <= 0 {
				d.retry = DefaultRetry
			}
			if d.maxDatagram <= 0 {
				d.maxDatagram = DefaultMaxDatagram
			}
			return d, nil
		}
		c.Close()
		pc.Close()
		if !timedOut || ctx.Err() != nil {
			if ctx.Err() != nil && timedOut {
				return nil, fmt.Errorf("DTLS handshake with %s: %w", addr, ctx.Err())
			}
			return nil, fmt.Errorf("DTLS handshake with %s: %w", addr, err)
		}
	}
}

func resolveUDP(ctx context.Context, addr string) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ap, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	p, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, err
	}
	if len(ap) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	return &net.UDPAddr{IP: ap[0].Unmap().AsSlice(), Port: p}, nil
}

// state is what crypto/tls would report: Version tls.VersionTLS12 (DTLS
// 1.2 is TLS 1.2 over datagrams), the suite's IANA number, the
// certificates, HandshakeComplete.
func (d *dtlsConn) state() tls.ConnectionState {
	cs := tls.ConnectionState{Version: tls.VersionTLS12, HandshakeComplete: true}
	st, ok := d.c.ConnectionState()
	if !ok {
		return cs
	}
	cs.CipherSuite = uint16(st.CipherSuiteID)
	cs.ServerName = st.ServerName
	d.certsOnce.Do(func() {
		for _, der := range st.PeerCertificates {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				// Verify parsed them already; a certificate that does
				// not parse now is not one it accepted.
				d.certs = nil
				return
			}
			d.certs = append(d.certs, c)
		}
	})
	cs.PeerCertificates = d.certs
	return cs
}

// writeBatches writes b, whole frames, in datagrams of at most
// maxDatagram bytes split at frame boundaries; a frame larger than that
// goes alone.
func (d *dtlsConn) writeBatches(b []byte) error {
	for len(b) > 0 {
		end := 0
		for end < len(b) {
			_, n, err := proto.Parse(b[end:], 1<<30)
			if err != nil || n == 0 {
				end = len(b) // not whole frames: send the rest as it is
				break
			}
			if end > 0 && end+n > d.maxDatagram {
				break
			}
			end += n
		}
		if _, err := d.c.Write(b[:end]); err != nil {
			return err
		}
		b = b[end:]
	}
	return nil
}

// quietLogs drops pion/dtls's logs: a client reports what matters through
// its errors.
type quietLogs struct{}

func (quietLogs) NewLogger(string) logging.LeveledLogger { return quietLogger{} }

type quietLogger struct{}

func (quietLogger) Trace(string)          {}
func (quietLogger) Tracef(string, ...any) {}
func (quietLogger) Debug(string)          {}
func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Info(string)           {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warn(string)           {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Error(string)          {}
func (quietLogger) Errorf(string, ...any) {}

// FetchDTLSCertificates connects to addr over DTLS and returns the
// certificates the server presented, leaf first, and the session's state
// (as [Conn.ConnectionState] reports it), without trusting it:
// nothing is verified (sc-cert fingerprint and inspect --udp, and the
// first-use prompt). The session is closed before it returns. timeout
// bounds the whole exchange (zero means DefaultTimeout).
func FetchDTLSCertificates(ctx context.Context, addr, serverName string, timeout time.Duration) ([]*x509.Certificate, tls.ConnectionState, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu  sync.Mutex
		raw [][]byte
	)
	d, err := dialDTLS(ctx, addr, &DTLSOptions{ServerName: serverName, Verify: func(certs [][]byte) error {
		mu.Lock()
		defer mu.Unlock()
		raw = certs
		return nil
	}})
	if err != nil {
		return nil, tls.ConnectionState{}, fmt.Errorf("fetching certificates from %s over DTLS: %w", addr, err)
	}
	defer d.c.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(raw) == 0 {
		return nil, tls.ConnectionState{}, fmt.Errorf("fetching certificates from %s over DTLS: the server presented none", addr)
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, tls.ConnectionState{}, fmt.Errorf("fetching certificates from %s over DTLS: certificate %d: %w", addr, i+1, err)
		}
	}
	cs := d.state()
	cs.PeerCertificates = certs
	return certs, cs, nil
}
