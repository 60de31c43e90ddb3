package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/limits"
	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Server serves the Space Captain protocol. Make one with [New]; the zero
// value is not usable. Its methods are safe for concurrent use. A Server
// can Serve several listeners at once and is done after Shutdown.
type Server struct {
	opts      Options
	tlsConfig *tls.Config // the caller's, as given, or nil for plaintext
	log       *slog.Logger
	events    Events
	timed     bool // events were given: measure per-message time
	env       proto.Env
	eng       engine

	// Buffers for connections that have work; idle ones hold none.
	inPool, outPool sync.Pool
	inSize          int // read buffer: a whole frame, and a TLS record
	flushAt         int // write the replies gathered once they reach this

	// epoch is the zero of the server's clock (now): deadlines and
	// request times are monotonic nanoseconds since New.
	epoch time.Time

	active   atomic.Int64 // connections counted against MaxConns
	testIdle func(*conn)  // tests: called on c's owner as c starts to wait idle

	stopping   atomic.Bool   // Shutdown or Serve's ctx has begun the end
	forcing    atomic.Bool   // forceClose has begun: connections end as forced
	stopped    chan struct{} // closed with stopping, wakes waits
	stopOnce   sync.Once
	refusedLog logLimiter
	limitLog   logLimiter
	proxyLog   logLimiter
	acceptLog  logLimiter
	limits     *limits.Table // nil when both per-source limits are off

	mu        sync.Mutex
	listeners map[*listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup // tracked connections; Add only under mu while !stopping
}

type listener struct{ net.Listener }

// New checks opts and returns a Server ready to Serve. It starts nothing.
// It returns an error naming the first field that is out of range.
//
// The server uses opts.TLSConfig as given, without a copy, and never
// changes it; see [Options.TLSConfig] for what the caller sets on it.
func New(opts Options) (*Server, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, fmt.Errorf("configuring server: %w", err)
	}
	s := &Server{
		opts:      o,
		log:       o.Logger,
		events:    o.Events,
		timed:     o.Events != nil,
		env:       proto.Env{Now: o.Now, Keys: o.Keys},
		epoch:     time.Now(),
		stopped:   make(chan struct{}),
		listeners: make(map[*listener]struct{}),
		conns:     make(map[*conn]struct{}),
	}
	if s.events == nil {
		s.events = NopEvents{}
	}
	s.tlsConfig = o.TLSConfig
	// One TLS record carries at most 16 KiB of plaintext (RFC 8446,
	// section 5.1): a read buffer that size takes a whole record, and one
	// that holds a whole frame is always able to finish the frame.
	s.inSize = max(maxRecord, proto.HeaderSize+o.MaxMessage)
	s.flushAt = maxRecord
	outSize := s.flushAt + proto.HeaderSize + max(o.MaxMessage, maxErrorReply)
	s.inPool.New = func() any { b := make([]byte, s.inSize); return &b }
	s.outPool.New = func() any { b := make([]byte, 0, outSize); return &b }
	s.refusedLog.every = time.Second
	s.limitLog.every = time.Second
	s.proxyLog.every = time.Second
	s.limits = newAddrLimits(o)
	s.acceptLog.every = time.Second
	s.eng = newEngine(s, o.Engine)
	return s, nil
}

const (
	maxRecord     = 16 << 10
	maxErrorReply = 256
)

// now reads the server's clock: monotonic nanoseconds since New. It is
// what deadlines and request times are kept in, because it reads the
// monotonic clock alone; time.Now reads the wall clock too, which costs
// more than twice as much where the clock is virtualised
// (docs/BENCHMARKS.md), and the hot path reads the clock per batch.
func (s *Server) now() int64 { return int64(time.Since(s.epoch)) }

// at turns a reading of now into a time.Time, for a net.Conn deadline.
func (s *Server) at(ns int64) time.Time { return s.epoch.Add(time.Duration(ns)) }

// Serve accepts connections on ln and serves them until Shutdown is called
// or ctx is done; it closes ln before it returns.
//
// After Shutdown, Serve returns [ErrServerClosed]. When ctx is done, the
// server stops at once — as Shutdown with an expired context: every
// connection is closed hard — and Serve returns ctx.Err(); use Shutdown for
// a graceful stop. On a permanent accept error Serve returns it, leaving
// the connections it already has to run. Temporary accept errors, such as
// running out of file descriptors (EMFILE, ENFILE), are retried after a
// pause from 5 ms doubling to 1 s, logged at most once a second.
//
// Serve never reads from a connection on its own goroutine, so a listener
// wrapper may read a header lazily in Read or RemoteAddr; the server reads
// PROXY protocol headers itself, on each connection's goroutine, from
// [Options.ProxyProtocolFrom].
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	l := &listener{ln}
	if !s.trackListener(l) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.untrackListener(l)
	stop := context.AfterFunc(ctx, func() { s.forceClose() })
	defer stop()

	attrs := []any{"addr", ln.Addr().String(), "tls", s.tlsConfig != nil,
		"engine", s.opts.Engine, "max_conns", s.opts.MaxConns, "max_message", s.opts.MaxMessage,
		"source_max_conns", max(s.opts.SourceMaxConns, 0), "source_handshake_rate", max(s.opts.SourceHandshakeRate, 0)}
	if len(s.opts.ProxyProtocolFrom) > 0 {
		attrs = append(attrs, "proxy_protocol_from", fmt.Sprint(s.opts.ProxyProtocolFrom))
	}
	s.log.InfoContext(ctx, "listening", attrs...)
	err := s.acceptLoop(ctx, ln)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Shutdown stops the server gracefully: it closes the listeners, closes
// idle connections (with close_notify on TLS), lets connections with work
// finish — every request already read is answered and its reply written —
// and closes them once they go idle. It returns nil when all connections
// are closed. If ctx ends first, the connections still open are closed hard
// and Shutdown returns ctx.Err(). Serve returns [ErrServerClosed] as soon as
// Shutdown begins. Handshakes in progress are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	n := s.beginStop()
	s.log.InfoContext(ctx, "shutting down", "connections", n)
	s.eng.drain()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.log.InfoContext(ctx, "shutdown complete")
		return nil
	case <-ctx.Done():
		left := s.forceClose()
		s.log.WarnContext(ctx, "shutdown timed out; closed connections hard", "connections", left, "err", ctx.Err())
		return ctx.Err()
	}
}

// beginStop marks the server stopping, closes its listeners and returns how
// many connections it holds.
func (s *Server) beginStop() int {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopping.Store(true)
		close(s.stopped)
		s.mu.Unlock()
		s.eng.stop()
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		l.Close()
	}
	return len(s.conns)
}

// forceClose stops the server and closes every connection hard; it returns
// how many there were.
func (s *Server) forceClose() int {
	// Before stopping is set: a connection that sees stopping and ends
	// itself gracefully before the loop below reaches it still ends as
	// forced, as every connection open now does.
	s.forcing.Store(true)
	s.beginStop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.forced.Store(true)
		s.eng.abort(c)
	}
	return len(s.conns)
}

// CloseClients closes, hard, every established TLS connection whose
// connection state match reports true for — a revoked client's live
// sessions — and returns how many it closed. Each is logged at info
// level, with its client's identity, and ends with reason CloseRevoked.
// match is called outside the server's lock, once per connection whose
// handshake is done; connections still in their handshake are left to
// their VerifyConnection.
func (s *Server) CloseClients(match func(tls.ConnectionState) bool) int {
	s.mu.Lock()
	var est []*conn
	for c := range s.conns {
		if c.established.Load() {
			est = append(est, c)
		}
	}
	s.mu.Unlock()
	n := 0
	for _, c := range est {
		if !match(c.tc.ConnectionState()) {
			continue
		}
		s.mu.Lock()
		if _, ok := s.conns[c]; ok && !c.forced.Load() {
			c.revoked.Store(true)
			c.forced.Store(true)
			s.eng.abort(c)
			n++
			s.log.LogAttrs(context.Background(), slog.LevelInfo, "closing the connection of a revoked client", c.addrAttrs()...)
		}
		s.mu.Unlock()
	}
	return n
}

func (s *Server) trackListener(l *listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return false
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) untrackListener(l *listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.listeners, l)
	l.Close()
}

// trackConn registers c, unless the server is stopping.
func (s *Server) trackConn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrackConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}
