package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// DefaultTimeout bounds dialing and the TLS handshake unless
// Options.Timeout says otherwise.
const DefaultTimeout = 10 * time.Second

// Options configures [Dial]. The zero value dials plaintext with the
// defaults.
type Options struct {
	// TLSConfig is the TLS configuration, including how the server is
	// verified (RootCAs, or VerifyConnection for pins); nil dials
	// plaintext. When its ServerName is empty, the host part of the
	// address is used, as crypto/tls's Dialer does (for an IP address that
	// means IP SANs are checked and no SNI is sent). It is not modified.
	TLSConfig *tls.Config

	// Timeout bounds dialing plus the TLS handshake. Zero means
	// DefaultTimeout (10 s). The context given to Dial can end it sooner.
	Timeout time.Duration

	// MaxMessage is the largest body sent or accepted in a reply, in bytes.
	// Zero means proto.DefaultMaxBody (4096), the server's default.
	MaxMessage int

	// Dialer dials the TCP connection. Nil means the zero net.Dialer.
	Dialer *net.Dialer

	// DTLS, when set, makes Dial speak DTLS 1.2 over UDP, with its
	// options; TLSConfig and Dialer must then be nil. Do sends a request
	// again when its reply does not come (UDP loses datagrams), and
	// Flush packs requests into datagrams at frame boundaries.
	DTLS *DTLSOptions
}

// Conn is a connection to a Space Captain server. It is not safe for
// concurrent use: one goroutine sends and receives. A pipelining client may
// use one goroutine for Send and Flush and another for [Conn.ReadReply],
// never two for either: Receive and Do flush, so they belong to the
// sending goroutine.
type Conn struct {
	nc         net.Conn  // the TLS, TCP or DTLS connection
	tc         *tls.Conn // nil in plaintext and DTLS
	dc         *dtlsConn // nil but in DTLS
	dec        *proto.Decoder
	out        []byte // requests buffered by Send
	maxMessage int
	// keysClient is the "client" line of the last KEYS reply (Keys).
	keysClient string
}

// Dial connects to addr ("host:port") and, with opts.TLSConfig, completes
// the TLS handshake — so that a certificate the config rejects fails here,
// with crypto/tls's error (e.g. *tls.CertificateVerificationError, or the
// error of VerifyConnection) wrapped.
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	if opts.Timeout < 0 || opts.MaxMessage < 0 {
		return nil, fmt.Errorf("dialing %s: negative timeout or max message in client options", addr)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxMessage == 0 {
		opts.MaxMessage = proto.DefaultMaxBody
	}
	d := &net.Dialer{}
	if opts.Dialer != nil {
		d = opts.Dialer
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	c := &Conn{maxMessage: opts.MaxMessage}
	var err error
	if opts.DTLS != nil {
		if opts.TLSConfig != nil || opts.Dialer != nil {
			return nil, fmt.Errorf("dialing %s: DTLS options with a TLS config or a TCP dialer", addr)
		}
		if c.dc, err = dialDTLS(ctx, addr, opts.DTLS); err != nil {
			return nil, err
		}
		c.nc = c.dc.c
		c.dec = proto.NewDecoder(c.nc, opts.MaxMessage)
		return c, nil
	}
	if opts.TLSConfig == nil {
		c.nc, err = d.DialContext(ctx, "tcp", addr)
	} else {
		c.nc, err = (&tls.Dialer{NetDialer: d, Config: opts.TLSConfig}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.tc = c.nc.(*tls.Conn)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	c.dec = proto.NewDecoder(c.nc, opts.MaxMessage)
	return c, nil
}

// Do sends one request and returns its reply's body. Any requests buffered
// by Send go first, and their replies must have been received: Do expects
// the next reply to be its own. An ERROR reply is returned as a
// [*ServerError] (the connection goes on); a reply of another type, or a
// malformed one, as a [*proto.ProtocolError]. ctx bounds the whole
// exchange; when it ends first, Do returns an error that wraps ctx.Err(),
// and the connection is left mid-exchange: close it.
func (c *Conn) Do(ctx context.Context, t proto.Type, body []byte) ([]byte, error) {
	if c.dc != nil {
		return c.doDatagram(ctx, t, body)
	}
	if err := c.Send(t, body); err != nil {
		return nil, err
	}
	deadline, hasDeadline := ctx.Deadline()
	if hasDeadline {
		_ = c.nc.SetDeadline(deadline)
		defer c.nc.SetDeadline(time.Time{})
	}
	// Cancellation interrupts blocked I/O through a deadline in the past.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	f, err := c.Receive()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for the %v reply from %s: %w", t, c.nc.RemoteAddr(), ctx.Err())
		}
		if hasDeadline && !time.Now().Before(deadline) && isTimeout(err) {
			// The socket's deadline can fire a moment before the
			// context's timer.
			return nil, fmt.Errorf("waiting for the %v reply from %s: %w", t, c.nc.RemoteAddr(), context.DeadlineExceeded)
		}
		return nil, err
	}
	switch f.Type {
	case t:
		return bytes.Clone(f.Body), nil
	case proto.Error:
		return nil, &ServerError{Type: t, Reason: string(f.Body)}
	}
	return nil, &proto.ProtocolError{Kind: proto.KindUnexpectedReply,
		Err: fmt.Errorf("got a %v reply to a %v request", f.Type, t)}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// doDatagram is Do over DTLS: it sends the request again, after
// DTLSOptions.Retry and then twice as long each time (at most MaxRetry),
// until a reply of its type (or an ERROR) comes or ctx ends. A reply of
// another type is a late answer to an earlier request, and is skipped.
func (c *Conn) doDatagram(ctx context.Context, t proto.Type, body []byte) ([]byte, error) {
	if len(body) > c.maxMessage {
		return nil, fmt.Errorf("%w: %v body of %d bytes, maximum %d", ErrBodyTooLarge, t, len(body), c.maxMessage)
	}
	if err := c.Flush(); err != nil {
		return nil, err
	}
	req := proto.AppendFrame(nil, t, body)
	deadline, hasDeadline := ctx.Deadline()
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer c.nc.SetDeadline(time.Time{})
	wait := c.dc.retry
	for {
		if err := c.dc.writeBatches(req); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("sending the %v request to %s: %w", t, c.nc.RemoteAddr(), ctx.Err())
			}
			return nil, fmt.Errorf("sending to %s: %w", c.nc.RemoteAddr(), err)
		}
		until := time.Now().Add(wait)
		if hasDeadline && deadline.Before(until) {
			until = deadline
		}
		_ = c.nc.SetReadDeadline(until)
		for {
			f, err := c.dec.Next()
			if err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("waiting for the %v reply from %s: %w", t, c.nc.RemoteAddr(), ctx.Err())
				}
				if isTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
					if hasDeadline && !time.Now().Before(deadline) {
						return nil, fmt.Errorf("waiting for the %v reply from %s: %w", t, c.nc.RemoteAddr(), context.DeadlineExceeded)
					}
					break // send again
				}
				return nil, err
			}
			switch f.Type {
			case t:
				return bytes.Clone(f.Body), nil
			case proto.Error:
				return nil, &ServerError{Type: t, Reason: string(f.Body)}
			}
		}
		wait = min(2*wait, MaxRetry)
	}
}

// Send buffers one request; Flush (or Receive, or Do) writes everything
// buffered in one write — one TLS record where it fits. A body over
// Options.MaxMessage is refused with [ErrBodyTooLarge] and nothing is
// buffered.
func (c *Conn) Send(t proto.Type, body []byte) error {
	if len(body) > c.maxMessage {
		return fmt.Errorf("%w: %v body of %d bytes, maximum %d", ErrBodyTooLarge, t, len(body), c.maxMessage)
	}
	c.out = proto.AppendFrame(c.out, t, body)
	return nil
}

// Flush writes the requests buffered by Send.
func (c *Conn) Flush() error {
	if len(c.out) == 0 {
		return nil
	}
	var err error
	if c.dc != nil {
		err = c.dc.writeBatches(c.out)
	} else {
		_, err = c.nc.Write(c.out)
	}
	c.out = c.out[:0]
	if err != nil {
		return fmt.Errorf("sending to %s: %w", c.nc.RemoteAddr(), err)
	}
	return nil
}

// Receive flushes any buffered requests and returns the next reply, as it
// came: an ERROR reply is a frame of type proto.Error, not an error. The
// frame's Body is valid until the next Receive or Do; copy it to keep it.
// Errors: io.EOF when the server closed the connection between replies, a
// [*proto.ProtocolError] for a malformed or over-long reply (kinds
// truncated and too_large), or the network's error.
func (c *Conn) Receive() (proto.Frame, error) {
	if err := c.Flush(); err != nil {
		return proto.Frame{}, err
	}
	return c.dec.Next()
}

// ReadReply returns the next reply as [Conn.Receive] does, but flushes
// nothing: it is for a goroutine that reads replies while another one
// sends and flushes requests (Receive would touch the send buffer the
// other goroutine is filling).
func (c *Conn) ReadReply() (proto.Frame, error) {
	return c.dec.Next()
}

// Keys asks the server for its key pins (KEYS) and parses the reply: the
// current pin and any next ones, in the "sha256//…" form. The reply
// travels inside the TLS session, so it is as trustworthy as the
// verification the caller's tls.Config did.
func (c *Conn) Keys(ctx context.Context) (current string, next []string, err error) {
	body, err := c.Do(ctx, proto.Keys, nil)
	if err != nil {
		return "", nil, err
	}
	c.keysClient = proto.KeysClient(body)
	return proto.ParseKeys(body)
}

// KeysClient returns who the server took this client for, from the last
// KEYS reply: "PIN" or "PIN NAME" for a client that presented a
// certificate, "" for an anonymous one or before Keys.
func (c *Conn) KeysClient() string { return c.keysClient }

// KeySet asks the server for its key pins (KEYS) as [Conn.Keys] does and
// returns the whole reply: the current, next and revoked pins.
func (c *Conn) KeySet(ctx context.Context) (proto.KeySet, error) {
	body, err := c.Do(ctx, proto.Keys, nil)
	if err != nil {
		return proto.KeySet{}, err
	}
	c.keysClient = proto.KeysClient(body)
	return proto.ParseKeySet(body)
}

// SetDeadline sets the read and write deadline for Send/Flush/Receive, as
// net.Conn's. Do sets and clears its own from its context.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// ConnectionState returns the TLS state, and false on a plaintext
// connection. Over DTLS it is what crypto/tls would report for the
// session: Version tls.VersionTLS12, the suite, the server's
// certificates, HandshakeComplete; the trust-on-first-use store records
// from it as from a TLS connection's.
func (c *Conn) ConnectionState() (tls.ConnectionState, bool) {
	if c.dc != nil {
		return c.dc.state(), true
	}
	if c.tc == nil {
		return tls.ConnectionState{}, false
	}
	return c.tc.ConnectionState(), true
}

// RemoteAddr returns the server's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Close closes the connection; on TLS it first sends close_notify.
func (c *Conn) Close() error { return c.nc.Close() }
