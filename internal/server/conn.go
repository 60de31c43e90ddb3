package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// A connection's life is the same on every engine, and it is written here
// once: accept (accept.go) starts serveConn on a goroutine of its own, which
// admits the connection (admitProxied, for a trusted balancer's), runs the
// handshake (start) and hands the connection to its engine. The engine
// waits for input in its own way and runs the connection's batch steps
// (step, batch.go) until the connection ends, then calls finish. The
// engine files hold only how they wait: goroutine_engine.go, a goroutine
// blocked in Read; epoll_*_linux.go, an epoll readiness loop.

// engine drives accepted connections. Engines differ only in how they
// wait for input; what a connection does with its input — answer, account,
// close — is the conn's (step, finish), so every engine behaves the same.
type engine interface {
	// socket returns what c's TLS session (or, in plaintext, c itself)
	// talks over: c.nc, wrapped so that the engine keeps its deadlines and
	// sees its write errors. It is called once, on c's goroutine, before
	// the handshake, which runs blocking over it on every engine
	// (crypto/tls handshakes need a goroutine, and a handshake error is
	// sticky).
	socket(c *conn) net.Conn
	// serve serves c, its handshake done, until it ends: it waits for
	// input, runs c's batch steps, and calls s.finish(c, …) exactly once,
	// from whichever goroutine sees the end. It is called on c's
	// goroutine and may return before the end (an event loop that parks
	// c).
	serve(c *conn)
	// drain is called once by Shutdown, after the server is marked
	// stopping: it closes idle connections gracefully and lets the others
	// go idle first.
	drain()
	// abort closes c hard, from any goroutine (forceClose, with s.mu
	// held and c.forced set): whatever c's owner is doing with it fails
	// or ends soon, and the owner then calls s.finish, which reports
	// CloseForced. It must not block.
	abort(c *conn)
	// stop is called once when the server begins to stop (Shutdown, or
	// the end of Serve's context), after it is marked stopping. An engine
	// with goroutines of its own ends them once its connections are gone.
	stop()
}

const engineGoroutine = "goroutine"

// Connection states, for Shutdown: idle and handshaking connections are
// woken to close; active ones finish their batch first.
const (
	stateHandshake int32 = iota
	stateIdle
	stateActive
)

// conn is one accepted connection. Its fields are its owner's — the one
// goroutine serving it at a time — except where noted.
type conn struct {
	srv    *Server
	nc     net.Conn  // as accepted
	tc     *tls.Conn // nil in plaintext
	rw     net.Conn  // tc, or the socket in plaintext
	sock   net.Conn  // the engine's socket (engine.socket), closed hard by finish
	state  atomic.Int32
	forced atomic.Bool // closed hard by forceClose
	// revoked: closed hard by CloseClients (forced is set too).
	revoked atomic.Bool
	// established is set once the TLS handshake has succeeded, after
	// idEnv: from then on tc and idEnv may be read by others.
	established atomic.Bool

	// idEnv is the reply environment with the client's identity, for a
	// client that presented a certificate (Options.Identify); nil for an
	// anonymous one, which uses srv.env. Set before the handshake is
	// reported done, never changed after.
	idEnv *proto.Env

	// limitKey is what c counts against in the per-address limits, when
	// limited (limits.go).
	limitKey netip.Addr
	limited  bool

	// proxied: c comes from a trusted balancer and is admitted only once
	// its PROXY protocol header is read (admitProxied). remote is the
	// client's address from that header, and proxyAddr the balancer's
	// (the socket's remote address); both nil when no header gave one.
	// hsBy, when set, is the deadline of the header and the handshake
	// together.
	proxied   bool
	remote    net.Addr
	proxyAddr net.Addr
	hsBy      time.Time

	werr error // the first write to the socket that failed (sockConn, transport)

	// The batch step's input (batch.go): a buffer from Server.inPool while
	// c has work (on the goroutine engine, a frame not whole in first),
	// nil while it waits; inLen bytes read and not yet answered (in it,
	// or, before it is taken, in first); kept, how many of them the last
	// step left (a frame begun).
	in    *[]byte
	inLen int
	kept  int

	// The goroutine engine's state (goroutine_engine.go): the socket
	// crypto/tls talks over, the deadlines last set (Server.now), and what
	// a waiting connection reads into (firstRead bytes of its own).
	gsock   sockConn
	readBy  int64
	writeBy int64
	first   []byte

	// loop is the epoll engine's state for c (empty on other platforms).
	loop loopConn
}

// serveConn is c's life from accept on, on a goroutine of its own: admit
// it, run its handshake, then let its engine serve it.
func (s *Server) serveConn(c *conn) {
	if !s.admitProxied(c) {
		return
	}
	if reason, err := c.start(s.eng.socket(c)); reason != "" {
		s.finish(c, reason, err)
		return
	}
	s.eng.serve(c)
}

// start sets c up to talk over sock and runs the TLS handshake, if any; it
// returns a reason when c must end.
func (c *conn) start(sock net.Conn) (reason string, err error) {
	s := c.srv
	// Replies are small: they must not wait for the peer's ACK (Nagle, RFC
	// 896). Go sets TCP_NODELAY on every TCP connection it accepts
	// (net.newTCPConn); set it on what a listener wrapper returns, in case
	// it made the connection some other way.
	if _, ok := c.nc.(*net.TCPConn); !ok {
		if nd, ok := c.nc.(interface{ SetNoDelay(bool) error }); ok {
			_ = nd.SetNoDelay(true)
		}
	}
	c.sock, c.rw = sock, sock
	if s.tlsConfig != nil {
		c.tc = tls.Server(sock, s.tlsConfig)
		c.rw = c.tc
		return c.handshake()
	}
	return "", nil
}

// handshake runs the TLS handshake under HandshakeTimeout. crypto/tls has
// no timeout of its own: without the deadline a silent client would hold
// the connection and its goroutine forever.
func (c *conn) handshake() (reason string, err error) {
	s := c.srv
	start := time.Now()
	by := c.hsBy // from admitProxied, when a PROXY protocol header came first
	if by.IsZero() {
		by = start.Add(s.opts.HandshakeTimeout)
	}
	_ = c.nc.SetDeadline(by)
	if s.stopping.Load() {
		return CloseShutdown, nil
	}
	err = c.tc.Handshake()
	state := c.tc.ConnectionState()
	s.events.Handshake(state, time.Since(start), err)
	if err != nil {
		switch {
		case c.forced.Load():
			return CloseForced, nil
		case s.stopping.Load():
			return CloseShutdown, nil
		case isTimeout(err):
			return CloseHandshakeTimeout, err
		}
		return CloseHandshakeError, err
	}
	_ = c.nc.SetDeadline(time.Time{})
	if s.opts.Identify != nil {
		if id := s.opts.Identify(state); id.Pin != "" {
			env := s.env
			env.ClientPin, env.ClientName = id.Pin, id.Name
			c.idEnv = &env
		}
	}
	c.established.Store(true)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.LogAttrs(context.Background(), slog.LevelDebug, "handshake done", append(c.addrAttrs(),
			slog.String("tls_version", tls.VersionName(state.Version)),
			slog.String("cipher_suite", tls.CipherSuiteName(state.CipherSuite)),
			slog.String("server_name", state.ServerName),
			slog.Bool("resumed", state.DidResume),
			slog.Duration("took", time.Since(start)))...)
	}
	return "", nil
}

// finish closes c for reason, accounts for it and logs it; it is the end
// of every connection that was admitted, on every engine, called once by
// c's owner. Reasons that leave the TLS session sound close with
// close_notify (tls.Conn.Close, whose alert write crypto/tls bounds at 5
// s); the others close the socket.
func (s *Server) finish(c *conn, reason string, err error) {
	switch {
	case c.revoked.Load():
		reason = CloseRevoked
	case c.forced.Load() || s.forcing.Load():
		reason = CloseForced
	}
	switch reason {
	case CloseEOF, CloseIdleTimeout, CloseProtocolError, CloseShutdown:
		c.rw.Close()
	default:
		c.sock.Close()
	}
	c.releaseInput()
	s.active.Add(-1)
	s.releaseLimit(c)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		attrs := append(c.addrAttrs(), slog.String("reason", reason))
		if err != nil {
			attrs = append(attrs, slog.Any("err", err))
			if r := refusalReason(err); r != "" {
				attrs = append(attrs, slog.String("client_refused", r))
			}
		}
		s.log.LogAttrs(context.Background(), slog.LevelDebug, "connection closed", attrs...)
	}
	// After the log line: whoever counts the close (metrics, a test
	// waiting for it) finds the line already written.
	s.events.ConnClosed(reason)
	s.untrackConn(c)
}

// remoteAddr is the client's address: from the PROXY protocol header
// when one gave it, else the socket's.
func (c *conn) remoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.nc.RemoteAddr()
}

// addrAttrs are the log attributes that say who c is: remote_addr, the
// client, and proxy_addr, the balancer that sent a PROXY protocol header
// for it.
func (c *conn) addrAttrs() []slog.Attr {
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs, slog.String("remote_addr", c.remoteAddr().String()))
	if c.proxyAddr != nil {
		attrs = append(attrs, slog.String("proxy_addr", c.proxyAddr.String()))
	}
	if c.idEnv != nil {
		attrs = append(attrs, slog.String("client_pin", c.idEnv.ClientPin))
		if c.idEnv.ClientName != "" {
			attrs = append(attrs, slog.String("client_name", c.idEnv.ClientName))
		}
	}
	return attrs
}

// env is the environment c's replies are built in: the server's, with
// c's client identity for KEYS.
func (c *conn) env() *proto.Env {
	if c.idEnv != nil {
		return c.idEnv
	}
	return &c.srv.env
}

// refusalReason returns the reason a TLS config's VerifyConnection gave
// for refusing a client, when its error says one (package pinning's
// ClientError has a RefusalReason method), else "".
func refusalReason(err error) string {
	var r interface{ RefusalReason() string }
	if errors.As(err, &r) {
		return r.RefusalReason()
	}
	return ""
}

// readFailed names the reason a read that returned no data ends c. partial
// says whether a request had begun.
func (c *conn) readFailed(err error, partial bool) (string, error) {
	s := c.srv
	if c.forced.Load() {
		return CloseForced, nil
	}
	if c.werr != nil {
		// The read failed behind a write from inside it that the client
		// never took: a client that does not read.
		return c.writeFailed(c.werr)
	}
	switch {
	case isTimeout(err):
		if s.stopping.Load() && !partial {
			return CloseShutdown, nil
		}
		return CloseIdleTimeout, err
	case errors.Is(err, io.EOF):
		if partial {
			s.events.ProtocolError(proto.KindTruncated)
			return CloseProtocolError, proto.Truncated(c.inLen)
		}
		return CloseEOF, nil
	}
	return CloseReadError, err
}

// writeFailed names the reason a failed write ends c.
func (c *conn) writeFailed(err error) (string, error) {
	switch {
	case c.forced.Load():
		return CloseForced, nil
	case isTimeout(err):
		return CloseWriteTimeout, err
	}
	return CloseWriteError, err
}

func isTimeout(err error) bool {
	if err == nil {
		return false // and errors.As would allocate
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
