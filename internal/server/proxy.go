package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
)

// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): a
// TCP load balancer that forwards a client's connection first sends a
// header with the client's address, so that logs, per-source limits and
// metrics see the client rather than the balancer. The server honours it
// only from Options.ProxyProtocolFrom, and there requires it: anyone who
// can send a header can claim any address.
//
// The header is read on the connection's own goroutine, never on the
// accept loop (one slow balancer connection must not hold up the others),
// under the handshake deadline, and exactly: no byte past the header is
// read, so the TLS ClientHello behind it stays in the socket for crypto/tls
// — and, on the epoll engine, the socket is still a plain *net.TCPConn
// with nothing buffered above it. (go-proxyproto's Listener would wrap
// the connection in a buffered reader, which the epoll engine cannot take
// over.) go-proxyproto parses and checks the header once its bytes are
// read.

// Limits of a PROXY protocol header.
const (
	// proxyV1Min is the shortest v1 header, "PROXY UNKNOWN\r\n"; every v2
	// header is longer (16 bytes before its address block).
	proxyV1Min = 15
	// proxyV1Max is the longest v1 header the specification allows
	// (section 2.1: "PROXY UNKNOWN ffff:…:ffff ffff:…:ffff 65535
	// 65535\r\n").
	proxyV1Max = 107
	// proxyV2Fixed is v2's fixed part: the signature, version and command,
	// family and protocol, and the length of what follows.
	proxyV2Fixed = 16
	// proxyV2MaxLen bounds what follows it: addresses (at most 216 bytes,
	// for AF_UNIX) and TLVs. Balancers send far less; go-proxyproto
	// refuses more than this too (its MaxV2HeaderSize).
	proxyV2MaxLen = 4096
)

// The shortest v1 headers for TCP over IPv4 and IPv6, once their protocol
// is known: "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n" and
// "PROXY TCP6 :: :: 0 0\r\n".
const (
	proxyV1MinTCP4 = 32
	proxyV1MinTCP6 = 22
)

// proxyV2Sig is the v2 signature (section 2.2).
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// errProxyHeader wraps every way a header can be wrong, for tests and
// callers that tell them from network errors.
var errProxyHeader = errors.New("bad PROXY protocol header")

// readProxyHeader reads one PROXY protocol header from r, version 1 or 2,
// taking exactly its bytes, and returns them. Version 1 is a text line of
// unknown length, so it is read in steps that cannot pass its end: its
// shortest possible rest, then two bytes at a time (the line still lacks
// its CRLF) or one after a CR. A TCP4 header of usual length takes about
// ten reads, from the socket's buffer; version 2 takes three.
func readProxyHeader(r io.Reader) ([]byte, error) {
	b := make([]byte, 0, 64)
	more := func(n int) error {
		at := len(b)
		b = append(b, make([]byte, n)...)
		_, err := io.ReadFull(r, b[at:])
		return err
	}
	if err := more(proxyV1Min); err != nil {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(b, []byte("PROXY ")):
		switch {
		case bytes.HasPrefix(b, []byte("PROXY TCP4 ")):
			if err := more(proxyV1MinTCP4 - len(b)); err != nil {
				return nil, err
			}
		case bytes.HasPrefix(b, []byte("PROXY TCP6 ")):
			if err := more(proxyV1MinTCP6 - len(b)); err != nil {
				return nil, err
			}
		}
		for {
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				if i != len(b)-1 || b[i-1] != '\r' {
					return nil, fmt.Errorf("%w: version 1 line does not end in CRLF", errProxyHeader)
				}
				return b, nil
			}
			if len(b) >= proxyV1Max {
				return nil, fmt.Errorf("%w: version 1 line longer than %d bytes", errProxyHeader, proxyV1Max)
			}
			n := 2
			if b[len(b)-1] == '\r' {
				n = 1
			}
			if err := more(min(n, proxyV1Max-len(b))); err != nil {
				return nil, err
			}
		}
	case bytes.HasPrefix(b, proxyV2Sig):
		if err := more(proxyV2Fixed - len(b)); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint16(b[14:16]))
		if n > proxyV2MaxLen {
			return nil, fmt.Errorf("%w: version 2 header announces %d bytes, more than %d", errProxyHeader, n, proxyV2MaxLen)
		}
		if err := more(n); err != nil {
			return nil, err
		}
		return b, nil
	}
	hint := ""
	if b[0] == 0x16 {
		hint = " (a TLS ClientHello: the balancer does not send the PROXY protocol; HAProxy needs send-proxy-v2 on its server lines)"
	}
	return nil, fmt.Errorf("%w: the connection began with % x, neither \"PROXY \" (version 1) nor the version 2 signature%s", errProxyHeader, b[:8], hint)
}

// parseProxyHeader checks a header readProxyHeader read, with
// go-proxyproto, and returns it. Every byte must belong to the header.
func parseProxyHeader(b []byte) (*proxyproto.Header, error) {
	br := bufio.NewReaderSize(bytes.NewReader(b), max(len(b), 16))
	h, err := proxyproto.Read(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errProxyHeader, err)
	}
	if br.Buffered() != 0 {
		return nil, fmt.Errorf("%w: %d bytes past its end", errProxyHeader, br.Buffered())
	}
	return h, nil
}

// proxyClient returns the client's address a header gives, or nil when
// the connection's own address is to be used: a v2 LOCAL command (the
// balancer's own connection, such as a health check) or a v1 UNKNOWN
// (section 2.1: "the receiver must ignore anything presented before the
// CRLF is found"; go-proxyproto reports it as LOCAL). A header for
// anything but TCP over IP (UDP, AF_UNIX) is refused: a game connection is
// TCP, so the balancer is misconfigured.
func proxyClient(h *proxyproto.Header) (net.Addr, error) {
	if h.Command.IsLocal() {
		return nil, nil
	}
	src, _, ok := h.TCPAddrs()
	if !ok || src == nil {
		return nil, fmt.Errorf("%w: it is for a %v connection, not TCP over IPv4 or IPv6", errProxyHeader, h.TransportProtocol)
	}
	return src, nil
}

// trustedProxy reports whether a connection from addr must begin with a
// PROXY protocol header.
func (s *Server) trustedProxy(addr net.Addr) bool {
	if len(s.opts.ProxyProtocolFrom) == 0 {
		return false
	}
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return false
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range s.opts.ProxyProtocolFrom {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// admitProxied finishes accepting a connection from a trusted balancer,
// on its own goroutine (serveConn calls it first): it reads the
// PROXY protocol header under the handshake deadline, takes the client's
// address from it and applies the per-source limits to that address. It
// reports whether c goes on; if not, c is closed, untracked and reported
// to Events.ConnRefused, never to ConnAccepted or ConnClosed.
func (s *Server) admitProxied(c *conn) bool {
	if !c.proxied {
		return true
	}
	c.hsBy = time.Now().Add(s.opts.HandshakeTimeout)
	_ = c.nc.SetReadDeadline(c.hsBy)
	if s.stopping.Load() {
		s.refuseProxied(c, RefusedShutdown, nil)
		return false
	}
	h, err := readProxyHeader(c.nc)
	var client net.Addr
	if err == nil {
		if h, perr := parseProxyHeader(h); perr != nil {
			err = perr
		} else {
			client, err = proxyClient(h)
		}
	}
	if err != nil {
		switch {
		case c.forced.Load() || s.stopping.Load():
			s.refuseProxied(c, RefusedShutdown, nil)
		default:
			if isTimeout(err) {
				err = fmt.Errorf("no whole PROXY protocol header within the handshake timeout (%v): %w", s.opts.HandshakeTimeout, err)
			} else if !errors.Is(err, errProxyHeader) {
				err = fmt.Errorf("reading the PROXY protocol header: %w", err)
			}
			s.refuseProxied(c, RefusedProxyHeader, err)
		}
		return false
	}
	if client != nil {
		c.remote, c.proxyAddr = client, c.nc.RemoteAddr()
	}
	if reason := s.limitAddr(context.Background(), c); reason != "" {
		s.refuseProxied(c, reason, nil)
		return false
	}
	c.proxied = false
	s.events.ConnAccepted()
	return true
}

// refuseProxied closes c, which admitProxied refused, and accounts for it
// as accept does for the connections it refuses.
func (s *Server) refuseProxied(c *conn, reason string, err error) {
	c.nc.Close()
	s.active.Add(-1)
	// Logged before it is counted, so that whoever waits for the count
	// finds the log line (and the limiter's choice) made.
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		// Closed before a byte: a plain TCP health check on this port,
		// most likely. Counted, not worth a warning.
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.LogAttrs(context.Background(), slog.LevelDebug, "connection from a trusted balancer closed before a PROXY protocol header",
				slog.String("proxy_addr", c.nc.RemoteAddr().String()))
		}
	default:
		if ok, suppressed := s.proxyLog.allow(time.Now()); ok {
			s.log.LogAttrs(context.Background(), slog.LevelWarn, "refusing a connection from a trusted balancer: bad PROXY protocol header",
				slog.String("proxy_addr", c.nc.RemoteAddr().String()), slog.Any("err", err), slog.Int("suppressed", suppressed))
		}
	}
	s.events.ConnRefused(reason)
	s.untrackConn(c)
}
