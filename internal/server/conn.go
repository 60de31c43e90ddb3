package server

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// engine drives accepted connections. Engines differ in how they wait for
// input; what a connection does with its input — answer, account, close —
// is the Server's (answer, finish), so every engine behaves the same.
type engine interface {
	// serve is called on a new goroutine for c, just accepted, counted
	// and tracked. The engine owns c from then on: it runs the handshake
	// under HandshakeTimeout (crypto/tls handshakes need a goroutine),
	// serves requests through s.answer, and calls s.finish(c, …) exactly
	// once, from whichever goroutine sees the end. serve may return
	// before that (an event loop that parks c).
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

// conn is one accepted connection.
type conn struct {
	srv    *Server
	nc     net.Conn  // as accepted
	tc     *tls.Conn // nil in plaintext
	rw     net.Conn  // tc, or the socket in plaintext
	sock   net.Conn  // the socket, closed hard by finish: nc, or the epoll engine's transport
	state  atomic.Int32
	forced atomic.Bool // closed hard by forceClose

	// source is what c counts against in the per-source limits, when
	// sourced (the owner's once served).
	source  netip.Addr
	sourced bool

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

	readBy  time.Time // the read deadline last set
	writeBy time.Time // the write deadline last set
	werr    error     // the first write to the socket that failed (sockConn)
	gsock   sockConn  // the socket as the goroutine engine serves it

	// hdr is all an idle connection of the goroutine engine reads into:
	// one header's worth, so that it holds no buffer of the server's own
	// while it waits.
	hdr [proto.HeaderSize]byte

	// loop is the epoll engine's state for c (empty on other platforms).
	loop loopConn
}

// answer decodes every complete frame at the front of in and appends the
// replies to out, stopping early once out reaches flushAt. It returns out,
// how many bytes of in it used and, when framing is lost, the
// *proto.ProtocolError (whose ERROR reply is already in out). Every engine
// calls it, once per batch: what one read brought.
func (s *Server) answer(out, in []byte) (_ []byte, used int, err error) {
	if s.timed {
		return s.answerTimed(out, in)
	}
	for len(out) < s.flushAt {
		f, n, err := proto.Parse(in[used:], s.opts.MaxMessage)
		if err != nil {
			s.events.ProtocolError(kindOf(err))
			return proto.AppendError(out, err.Error()), used, err
		}
		if n == 0 {
			break
		}
		used += n
		if !f.Type.IsRequest() {
			s.events.ProtocolError(proto.KindUnknownType)
			out = proto.AppendUnknownType(out, f.Type)
			continue
		}
		out = proto.AppendReply(out, f, s.env)
	}
	return out, used, nil
}

// timeEvery is how many requests of a batch share one clock read when
// Events are set. A clock read (time.Now, ~25 ns here) per request was a
// quarter of the CPU of a pipelining client's connection, more than
// building the replies; once per timeEvery requests it is noise.
const timeEvery = 16

// answered is a request answered and not yet reported to Events.Message.
type answered struct {
	t       proto.Type
	in, out int32
}

// answerTimed is answer when Events are set. What Events.Message gets as
// took is the request's latency inside the server: from the moment the
// server began answering the batch that held it (just after the read that
// brought its last byte) to the moment its reply was built — read once per
// timeEvery requests, so a request is reported as done up to timeEvery-1
// requests' work late. For a client that waits for each reply, that is the
// time to build its reply; for a pipelining one, it includes the requests
// ahead of it in the same batch, as the client sees them. Network time,
// time in socket buffers and the write of the replies are not included.
func (s *Server) answerTimed(out, in []byte) (_ []byte, used int, err error) {
	var (
		start time.Time
		pend  [timeEvery]answered
		np    int
	)
	for len(out) < s.flushAt {
		f, n, err := proto.Parse(in[used:], s.opts.MaxMessage)
		if err != nil {
			s.reportAnswered(start, pend[:np])
			s.events.ProtocolError(kindOf(err))
			return proto.AppendError(out, err.Error()), used, err
		}
		if n == 0 {
			break
		}
		used += n
		if !f.Type.IsRequest() {
			s.events.ProtocolError(proto.KindUnknownType)
			out = proto.AppendUnknownType(out, f.Type)
			continue
		}
		if start.IsZero() {
			// Only once there is a request: a read that brought part of
			// one costs no clock read.
			start = time.Now()
		}
		before := len(out)
		out = proto.AppendReply(out, f, s.env)
		pend[np] = answered{f.Type, int32(n), int32(len(out) - before)}
		if np++; np == len(pend) {
			s.reportAnswered(start, pend[:np])
			np = 0
		}
	}
	s.reportAnswered(start, pend[:np])
	return out, used, nil
}

// reportAnswered reports the requests in p, answered since start, to
// Events.Message.
func (s *Server) reportAnswered(start time.Time, p []answered) {
	if len(p) == 0 {
		return
	}
	took := time.Since(start)
	for _, a := range p {
		s.events.Message(a.t, took, int(a.in), int(a.out))
	}
}

// frameRest returns how many bytes the frame begun at the front of b
// still lacks: the rest of its header, then the rest of its body. A
// draining server reads only that much, so that it answers every request
// begun and no new one. b's header, once whole, has passed Parse's length
// check.
func frameRest(b []byte) int {
	if len(b) < proto.HeaderSize {
		return proto.HeaderSize - len(b)
	}
	return proto.HeaderSize + int(binary.LittleEndian.Uint32(b[4:])) - len(b)
}

// errTruncated ends a connection whose stream stopped inside a frame.
func errTruncated() error {
	return &proto.ProtocolError{Kind: proto.KindTruncated, Err: fmt.Errorf("stream ended inside a frame: %w", io.ErrUnexpectedEOF)}
}

func kindOf(err error) string {
	var pe *proto.ProtocolError
	if errors.As(err, &pe) {
		return pe.Kind
	}
	return "other"
}

// finish closes c for reason, accounts for it and logs it. Reasons that
// leave the TLS session sound close with close_notify (tls.Conn.Close,
// whose alert write crypto/tls bounds at 5 s); the others close the socket.
func (s *Server) finish(c *conn, reason string, err error) {
	if c.forced.Load() {
		reason = CloseForced
	}
	switch reason {
	case CloseEOF, CloseIdleTimeout, CloseProtocolError, CloseShutdown:
		c.rw.Close()
	default:
		c.sock.Close()
	}
	s.active.Add(-1)
	s.releaseSource(c)
	s.events.ConnClosed(reason)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		attrs := append(c.addrAttrs(), slog.String("reason", reason))
		if err != nil {
			attrs = append(attrs, slog.Any("err", err))
		}
		s.log.LogAttrs(context.Background(), slog.LevelDebug, "connection closed", attrs...)
	}
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
	return attrs
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
			return CloseProtocolError, errTruncated()
		}
		return CloseEOF, nil
	}
	return CloseReadError, err
}

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

// extendRead moves the read deadline to IdleTimeout from now, lazily: only
// when the one set is more than IdleTimeout/16 old, because setting a
// deadline costs a timer update and a ping-pong client would pay it on
// every message.
//
// On TLS it also puts the write deadline at WriteTimeout past the read
// deadline. crypto/tls writes from inside Read — the answer to a
// KeyUpdate that asks for one (RFC 8446, section 4.6.3; crypto/tls
// conn.go, handleKeyUpdate), alerts — so a read must run under a write
// deadline too, or a client that asks for key updates and never reads
// would block that write, and hold its connection, for ever. Tied to the
// read deadline, the write deadline never passes while a read may still
// succeed: every write from inside Read gets at least WriteTimeout (a
// write deadline that passed while the connection was idle would make
// crypto/tls fail the write, and keep the failure: handleKeyUpdate
// stores it in c.out.err).
func (c *conn) extendRead() {
	s := c.srv
	idle := s.opts.IdleTimeout
	now := time.Now()
	if c.readBy.Sub(now) <= idle-idle/16 {
		c.readBy = now.Add(idle)
		_ = c.nc.SetReadDeadline(c.readBy)
	}
	if c.tc != nil {
		if by := c.readBy.Add(s.opts.WriteTimeout); !by.Equal(c.writeBy) {
			c.writeBy = by
			_ = c.nc.SetWriteDeadline(by)
		}
	}
}

// write writes b under WriteTimeout. The next extendRead puts the write
// deadline back behind the read deadline.
func (c *conn) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	c.writeBy = time.Now().Add(c.srv.opts.WriteTimeout)
	_ = c.nc.SetWriteDeadline(c.writeBy)
	_, err := c.rw.Write(b)
	return err
}

// sockConn is the net.Conn under crypto/tls (or, in plaintext, the
// connection itself) when a connection is served on its own goroutine: the
// accepted connection, remembering the first write to it that failed.
// crypto/tls writes from inside Read — the answer to a KeyUpdate — and
// keeps a failure of that write to itself: handleKeyUpdate stores it for
// the next Write and returns without moving to the client's next key, so
// the Read fails later, on its deadline or on the client's next record
// ("bad record MAC"), with an error that no longer says the client was
// not reading. Only c's owner uses it.
type sockConn struct {
	net.Conn
	c *conn
}

// Write implements net.Conn.
func (w *sockConn) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	if err != nil && w.c.werr == nil {
		w.c.werr = err
	}
	return n, err
}
