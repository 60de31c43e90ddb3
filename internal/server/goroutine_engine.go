package server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"time"
)

// goroutineEngine is the portable engine: a goroutine per connection,
// blocked in Read on Go's netpoller (epoll on Linux, kqueue on macOS, IOCP
// on Windows), crypto/tls on top.
type goroutineEngine struct{ s *Server }

func (e goroutineEngine) serve(c *conn) {
	if !e.s.admitProxied(c) {
		return
	}
	reason, err := c.run()
	e.s.finish(c, reason, err)
}

func (e goroutineEngine) abort(c *conn) { c.nc.Close() }

func (e goroutineEngine) stop() {}

func (e goroutineEngine) drain() {
	s := e.s
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for c := range s.conns {
		// The connection's goroutine checks s.stopping after it sets its
		// own deadline, and s.stopping was set before this: either it sees
		// the flag or its Read sees this deadline.
		if st := c.state.Load(); st == stateIdle || st == stateHandshake {
			_ = c.nc.SetReadDeadline(now)
		}
	}
}

// run serves c until it ends and says why.
func (c *conn) run() (reason string, err error) {
	c.gsock = sockConn{Conn: c.nc, c: c}
	if reason, err := c.start(&c.gsock); reason != "" {
		return reason, err
	}
	return c.serveBatches()
}

// start sets c up to talk over sock (c.nc, or a transport wrapping it) and
// runs the TLS handshake, if any; it returns a reason when c must end.
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

// serveBatches serves c on its own goroutine until it ends.
func (c *conn) serveBatches() (reason string, err error) {
	for {
		if reason, err := c.serveBatch(); reason != "" {
			return reason, err
		}
	}
}

// handshake runs the TLS handshake under HandshakeTimeout. crypto/tls has
// no timeout of its own: without the deadline a silent client would hold
// the connection and its goroutine forever.
func (c *conn) handshake() (reason string, err error) {
	s := c.srv
	start := time.Now()
	by := c.hsBy // from accept, when a PROXY protocol header came first
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

// serveBatch waits, holding no buffer, for the next request, then takes
// buffers from the pools and serves until everything read is answered and
// written; it returns a reason when the connection must end.
//
// Replies are gathered and written once per read — all the complete frames
// in one TLS record, or in what one plaintext read returned — so pipelined
// requests cost one record and one system call per batch, not per request.
// Gathered replies are written before every blocking read, so a client
// that waits for them before it sends more is never stalled.
func (c *conn) serveBatch() (reason string, err error) {
	s := c.srv
	c.state.Store(stateIdle)
	c.extendRead()
	if s.stopping.Load() {
		return CloseShutdown, nil
	}
	if s.testIdle != nil {
		s.testIdle()
	}
	n, rerr := c.rw.Read(c.hdr[:])
	if n == 0 {
		return c.readFailed(rerr, false)
	}
	if rerr != nil && isTimeout(rerr) {
		rerr = nil // data came; the next read will time out again if due
	}
	c.state.Store(stateActive)
	s.buffersOut.Add(1)
	inp, outp := s.inPool.Get().(*[]byte), s.outPool.Get().(*[]byte)
	w := copy(*inp, c.hdr[:n])
	reason, err = c.serveBuffered(*inp, (*outp)[:0], w, rerr)
	s.inPool.Put(inp)
	s.outPool.Put(outp)
	s.buffersOut.Add(-1)
	return reason, err
}

// serveBuffered serves from in, which holds w bytes read so far (and rerr,
// the error of the read that brought them), gathering replies in out, until
// all that was read is answered and written.
func (c *conn) serveBuffered(in, out []byte, w int, rerr error) (reason string, err error) {
	s := c.srv
	r := 0
	for {
		for {
			var used int
			var perr error
			out, used, perr = s.answer(out, in[r:w])
			r += used
			if perr != nil {
				// Framing is lost: send what we have, the ERROR
				// included, and close.
				if werr := c.write(out); werr != nil {
					return c.writeFailed(werr)
				}
				return CloseProtocolError, perr
			}
			if len(out) < s.flushAt {
				break
			}
			if werr := c.write(out); werr != nil {
				return c.writeFailed(werr)
			}
			out = out[:0]
		}
		if werr := c.write(out); werr != nil {
			return c.writeFailed(werr)
		}
		out = out[:0]
		if rerr != nil {
			return c.readFailed(rerr, r < w)
		}
		if r == w {
			return "", nil // drained: back to idle, buffers back to the pools
		}
		// A frame has begun: keep it at the front and read the rest, under
		// the idle deadline (a stalled body is cut there). The buffer holds
		// a whole frame, so there is room.
		if r > 0 {
			w = copy(in, in[r:w])
			r = 0
		}
		c.extendRead()
		room := in[w:]
		if s.stopping.Load() {
			room = room[:frameRest(in[:w])] // finish this request, begin no other
		}
		var n int
		n, rerr = c.rw.Read(room)
		w += n
		if n > 0 && isTimeout(rerr) {
			rerr = nil
		}
	}
}
