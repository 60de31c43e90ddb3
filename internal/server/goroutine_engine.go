package server

import (
	"net"
	"time"
)

// goroutineEngine is the portable engine: a goroutine per connection,
// blocked in Read on Go's netpoller (epoll on Linux, kqueue on macOS, IOCP
// on Windows), crypto/tls on top.
type goroutineEngine struct{ s *Server }

func (goroutineEngine) socket(c *conn) net.Conn { return c.blockingSocket() }

func (e goroutineEngine) serve(c *conn) {
	reason, err := c.serveBlocking()
	e.s.finish(c, reason, err)
}

func (goroutineEngine) abort(c *conn) { c.nc.Close() }

func (goroutineEngine) stop() {}

func (e goroutineEngine) drain() { e.s.drainBlocked(nil) }

// drainBlocked wakes the connections that wait in a blocking read — for
// their next request, or in their handshake — with a read deadline of now,
// so that they close; busy ones close once they go idle. skip, when not
// nil, leaves out the connections another engine waits for otherwise.
func (s *Server) drainBlocked(skip func(*conn) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for c := range s.conns {
		// The connection's goroutine checks s.stopping after it sets its
		// own deadline, and s.stopping was set before this: either it sees
		// the flag or its Read sees this deadline.
		if st := c.state.Load(); (st == stateIdle || st == stateHandshake) && (skip == nil || !skip(c)) {
			_ = c.nc.SetReadDeadline(now)
		}
	}
}

// blockingSocket returns c's socket for serving it on its goroutine.
func (c *conn) blockingSocket() *sockConn {
	c.gsock = sockConn{Conn: c.nc, c: c}
	return &c.gsock
}

// firstRead is how much a connection served on a goroutine reads while it
// waits: a short request's worth (an ECHO or REVERSE of up to 120 bytes, a
// TIME, a KEYS), into a buffer of its own, so that a short request is
// answered with one read and no buffer from the pools, and a waiting
// connection holds none of them.
const firstRead = 128

// serveBlocking serves c, its handshake done, on this goroutine until it
// ends, and says why. It waits for each request in a blocking Read into
// c.first, then runs batch steps — taking an input buffer from the pool
// when a frame is not whole in what it read, and reading more — until
// everything read is answered and written.
//
// Deadlines are kept per batch, not per message, and lazily (extendRead,
// sockConn): a ping-pong client costs a timer update once per
// IdleTimeout/16 and once per WriteTimeout/16, not one or two per message.
func (c *conn) serveBlocking() (reason string, err error) {
	s := c.srv
	c.gsock.live = true
	c.first = make([]byte, firstRead)
	for {
		c.state.Store(stateIdle)
		c.extendRead()
		if s.stopping.Load() {
			return CloseShutdown, nil
		}
		if s.testIdle != nil {
			s.testIdle(c)
		}
		n, rerr := c.rw.Read(c.first)
		if n == 0 {
			return c.readFailed(rerr, false)
		}
		c.state.Store(stateActive)
		c.inLen = n
		for {
			if isTimeout(rerr) {
				rerr = nil // data came; the next read times out again if due
			}
			began, reason, err := c.step()
			if reason != "" {
				return reason, err
			}
			if rerr != nil {
				return c.readFailed(rerr, c.inLen > 0)
			}
			if c.inLen == 0 {
				break // all answered: back to idle, the buffer back to the pool
			}
			if began {
				// The frame's deadline, from its first byte: IdleTimeout,
				// never extended by the reads that bring the rest.
				c.extendRead()
			}
			n, rerr = c.rw.Read(c.room())
			c.inLen += n
			if n == 0 {
				return c.readFailed(rerr, true)
			}
		}
		c.releaseInput()
	}
}

// extendRead moves the read deadline to IdleTimeout from now, lazily: only
// when the one set is more than IdleTimeout/16 old, because setting a
// deadline costs a timer update and a ping-pong client would pay it on
// every message. So a connection may be cut up to IdleTimeout/16 early.
func (c *conn) extendRead() {
	s := c.srv
	idle := int64(s.opts.IdleTimeout)
	if now := s.now(); c.readBy-now <= idle-idle/16 {
		c.readBy = now + idle
		_ = c.nc.SetReadDeadline(s.at(c.readBy))
	}
}

// sockConn is the net.Conn under crypto/tls (or, in plaintext, the
// connection itself) while a connection is served on a goroutine: the
// accepted connection, keeping its write deadline and remembering the
// first write that failed. The goroutine engine serves every connection
// through one; the epoll engine, a connection until it is handed off, and
// one it cannot hand off for good. Only c's owner uses it.
//
// Once live (after the handshake, which runs under a deadline of its own)
// every write is bounded by WriteTimeout, lazily: a write moves the
// deadline to WriteTimeout from now only when the one set is more than
// WriteTimeout/16 old, so a write may be cut up to WriteTimeout/16 early.
// That bounds crypto/tls's own writes too, which it makes from inside Read
// — the answer to a KeyUpdate that asks for one (RFC 8446, section 4.6.3;
// crypto/tls conn.go, handleKeyUpdate), alerts: a client that asks for key
// updates and never reads is cut WriteTimeout after the socket fills. And
// a deadline that passed while the connection was idle never fails a
// write, which crypto/tls would keep failing (handleKeyUpdate stores the
// error in c.out.err). An explicit write deadline — tls.Conn.Close sets
// its own around close_notify — takes over from it.
//
// crypto/tls keeps the failure of a write from inside Read to itself:
// handleKeyUpdate stores it for the next Write and returns without moving
// to the client's next key, so the Read fails later, on its deadline or
// on the client's next record ("bad record MAC"), with an error that no
// longer says the client was not reading. So the first failed write is
// kept in c.werr, where readFailed finds it.
type sockConn struct {
	net.Conn
	c    *conn
	live bool // keep the write deadline
}

// Write implements net.Conn.
func (w *sockConn) Write(p []byte) (int, error) {
	if w.live {
		c := w.c
		s := c.srv
		wt := int64(s.opts.WriteTimeout)
		if now := s.now(); c.writeBy-now <= wt-wt/16 {
			c.writeBy = now + wt
			_ = w.Conn.SetWriteDeadline(s.at(c.writeBy))
		}
	}
	n, err := w.Conn.Write(p)
	if err != nil && w.c.werr == nil {
		w.c.werr = err
	}
	return n, err
}

// SetDeadline implements net.Conn; the deadline replaces the one Write
// keeps.
func (w *sockConn) SetDeadline(t time.Time) error {
	w.live = false
	return w.Conn.SetDeadline(t)
}

// SetWriteDeadline implements net.Conn; the deadline replaces the one
// Write keeps.
func (w *sockConn) SetWriteDeadline(t time.Time) error {
	w.live = false
	return w.Conn.SetWriteDeadline(t)
}
