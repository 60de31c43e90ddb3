package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Accept backoff: the pause after a temporary accept error starts here and
// doubles up to the maximum, like net/http's Server.Serve. Running out of
// file descriptors is the common case: accepting again at once would spin,
// and the pause lets connections close and free some.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

func (s *Server) acceptLoop(ctx context.Context, ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.stopping.Load() {
				return ErrServerClosed
			}
			if !isTemporary(err) {
				return fmt.Errorf("accepting connections on %s: %w", ln.Addr(), err)
			}
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			if ok, suppressed := s.acceptLog.allow(time.Now()); ok {
				s.log.WarnContext(ctx, "accept failed; pausing", "addr", ln.Addr().String(),
					"err", err, "pause", delay, "suppressed", suppressed)
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.stopped:
				t.Stop()
			}
			continue
		}
		delay = 0
		s.accept(ctx, nc)
	}
}

// isTemporary reports whether an accept error may go away by itself: the
// platform's temporary errors (EMFILE, ENFILE, ECONNABORTED, …) and
// timeouts. net.Error's Temporary is deprecated because it is ill-defined
// for most operations, but for accept it is what net/http still relies on.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// accept admits nc or refuses it. It runs on the accept loop, so it must
// not block: nothing here reads from the connection.
func (s *Server) accept(ctx context.Context, nc net.Conn) {
	if s.active.Add(1) > int64(s.opts.MaxConns) {
		s.active.Add(-1)
		s.refuse(ctx, nc, RefusedMaxConns)
		return
	}
	c := &conn{srv: s, nc: nc, sock: nc}
	if s.trustedProxy(nc.RemoteAddr()) {
		// From a balancer: who the client is, and so whether its source
		// admits it, comes with the PROXY protocol header, which is read
		// on the connection's goroutine (admitProxied), as is
		// ConnAccepted.
		c.proxied = true
		if !s.trackConn(c) {
			s.active.Add(-1)
			s.refuse(ctx, nc, RefusedShutdown)
			return
		}
		go s.serveConn(c)
		return
	}
	if reason := s.limitAddr(ctx, c); reason != "" {
		s.active.Add(-1)
		s.refuse(ctx, nc, reason)
		return
	}
	if !s.trackConn(c) {
		s.active.Add(-1)
		s.releaseLimit(c)
		s.refuse(ctx, nc, RefusedShutdown)
		return
	}
	s.events.ConnAccepted()
	go s.serveConn(c)
}

// refuse closes nc at once. A plaintext client gets an ERROR frame first;
// a TLS client cannot be told anything without paying for a handshake,
// which is what the limit protects against.
func (s *Server) refuse(ctx context.Context, nc net.Conn, reason string) {
	if s.tlsConfig == nil {
		// The socket is new and its send buffer empty: this write does not
		// block; the deadline is a guard.
		_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
		_, _ = nc.Write(proto.AppendError(nil, "server busy: "+reason))
	}
	nc.Close()
	s.events.ConnRefused(reason)
	if reason == RefusedMaxConns {
		if ok, suppressed := s.refusedLog.allow(time.Now()); ok {
			s.log.LogAttrs(ctx, slog.LevelWarn, "refusing connections: at max_conns",
				slog.Int("max_conns", s.opts.MaxConns), slog.Int("suppressed", suppressed))
		}
	}
}

// logLimiter lets a message through at most once per period and counts the
// ones it held back.
type logLimiter struct {
	every      time.Duration
	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether to log now and how many messages were suppressed
// since the last one that was.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	l.next = now.Add(l.every)
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
