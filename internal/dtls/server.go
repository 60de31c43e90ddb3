package dtls

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/crypto/ciphersuite"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/spacecaptain/spacecaptain/internal/limits"
	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// CipherSuites are the suites the server offers, in its order of
// preference: ECDHE with AEAD ciphers only (AES-GCM and
// ChaCha20-Poly1305), for ECDSA and RSA keys. pion/dtls's default list
// also has CBC and CCM suites.
var CipherSuites = []ciphersuite.ID{
	ciphersuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	ciphersuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	ciphersuite.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	ciphersuite.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	ciphersuite.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	ciphersuite.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Server serves the Space Captain protocol over DTLS 1.2. Make one with
// [New]; the zero value is not usable. Its methods are safe for concurrent
// use. A Server can Serve several sockets at once and is done after
// Shutdown.
type Server struct {
	opts     Options
	log      *slog.Logger
	events   Events
	timed    bool // events were given: time every message
	env      proto.Env
	pionOpts []piondtls.ServerOption
	sources  *limits.Table // per proved source; nil when both per-source limits are off
	readSize int           // the largest record answered
	recvSize int           // the largest datagram pion is handed
	inPool   sync.Pool     // datagrams queued for a busy session
	outPool  sync.Pool     // reply buffers, held only while answering
	proved   atomic.Int64  // sessions counted against MaxSessions

	refusedLog logLimiter

	stopping atomic.Bool
	mu       sync.Mutex
	gates    map[*gate]struct{}
	sessions map[*session]struct{}
	wg       sync.WaitGroup // sessions; Add only under mu while !stopping
}

// New checks opts and returns a Server ready to Serve. It starts nothing.
// It returns an error naming the first field that is out of range.
func New(opts Options) (*Server, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, fmt.Errorf("configuring the DTLS server: %w", err)
	}
	s := &Server{
		opts:     o,
		log:      o.Logger,
		events:   o.Events,
		timed:    opts.Events != nil,
		env:      proto.Env{Now: o.Now, Keys: o.Keys},
		gates:    make(map[*gate]struct{}),
		sessions: make(map[*session]struct{}),
	}
	s.sources = limits.New(limits.Options{MaxConns: o.SourceMaxSessions, Rate: o.SourceHandshakeRate, Bound: o.MaxSessions + limits.Spare})
	s.refusedLog.every = time.Second
	// A record carries one request batch: at most MaxDatagram bytes of
	// frames, or one frame alone when it is larger (DESIGN: a frame is
	// never split across records).
	s.readSize = max(o.MaxDatagram, proto.HeaderSize+o.MaxMessage)
	// pion's record reader holds one buffer of this size per session,
	// for ever: the largest record the server answers and its overhead,
	// not pion's default of 8 KiB. A larger datagram is caught by the
	// gate, which answers it with an ERROR.
	s.recvSize = s.readSize + recordOverhead
	s.inPool.New = func() any { b := make([]byte, s.recvSize); return &b }
	outSize := o.MaxDatagram + proto.HeaderSize + max(o.MaxMessage, maxErrorReply)
	s.outPool.New = func() any { b := make([]byte, 0, outSize); return &b }

	s.pionOpts = []piondtls.ServerOption{
		piondtls.WithMinVersion(protocol.Version1_2),
		piondtls.WithMaxVersion(protocol.Version1_2),
		piondtls.WithCipherSuites(CipherSuites...),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		piondtls.WithLoggerFactory(newPionLogs(s.log)),
		piondtls.WithReceiveBufferSize(s.recvSize),
	}
	// The certificate callback and connection IDs (with
	// CIDPathMigrationRRC) are added per session (session.begin): the
	// callback notes the server name the client asked for, and the gate
	// gives each session its ID, to route its records by.
	return s, nil
}

// getCertificate answers pion's certificate callback with the Options'
// (crypto/tls's signature).
func (s *Server) getCertificate(chi *piondtls.ClientHelloInfo) (*tls.Certificate, error) {
	suites := make([]uint16, len(chi.CipherSuites))
	for i, id := range chi.CipherSuites {
		suites[i] = uint16(id)
	}
	return s.opts.GetCertificate(&tls.ClientHelloInfo{ServerName: chi.ServerName, CipherSuites: suites,
		SupportedVersions: []uint16{tls.VersionTLS12}})
}

const maxErrorReply = 256

// recordOverhead bounds what a DTLS 1.2 record adds to its plaintext with
// an AEAD suite: the 13-byte header, a connection ID (8 bytes from this
// server), the 8-byte explicit nonce and the 16-byte tag, with room to
// spare.
const recordOverhead = 64

// readers is how many goroutines read one socket. A datagram is handled
// on the goroutine that read it, which waits while pion's goroutines
// work on it (a handshake flight takes a fraction of a millisecond of
// CPU): a few per CPU keep the CPUs busy.
func readers() int {
	return max(8, 4*runtime.GOMAXPROCS(0))
}

// Serve answers DTLS handshakes and requests on pc, a UDP socket, until
// Shutdown is called or ctx is done. After Shutdown it returns
// [ErrServerClosed]; when ctx is done it stops at once — as Shutdown with
// an expired context: every session is closed hard — and returns
// ctx.Err(). pc is closed once every session on it has ended. If reading
// pc fails, Serve closes the sessions on it and returns the error.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	g := newGate(s, pc)
	if !s.trackGate(g) {
		pc.Close()
		return ErrServerClosed
	}
	stop := context.AfterFunc(ctx, func() { s.forceClose() })
	defer stop()
	s.log.InfoContext(ctx, "listening", "addr", pc.LocalAddr().String(), "transport", "dtls",
		"max_sessions", s.opts.MaxSessions, "max_message", s.opts.MaxMessage, "max_datagram", s.opts.MaxDatagram,
		"idle_timeout", s.opts.IdleTimeout, "connection_ids", !s.opts.DisableConnectionIDs)
	g.start(readers(), runtime.GOMAXPROCS(0))
	select {
	case <-g.stopped:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return ErrServerClosed
	case err := <-g.readErr:
		s.failGate(g)
		return fmt.Errorf("reading DTLS datagrams on %s: %w", pc.LocalAddr(), err)
	}
}

// Shutdown stops the server gracefully: it stops answering new
// handshakes, drops half-open ones, and ends every session with
// close_notify once the request it is answering (if any) has its reply.
// It returns nil when every session has ended; if ctx ends first, the
// rest are closed hard and it returns ctx.Err(). Serve returns
// [ErrServerClosed] as soon as Shutdown begins.
func (s *Server) Shutdown(ctx context.Context) error {
	n := s.beginStop()
	s.log.InfoContext(ctx, "shutting down", "transport", "dtls", "sessions", n)
	for _, ss := range s.sessionList() {
		ss.requestClose(CloseShutdown)
	}

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.closeSockets()
		s.log.InfoContext(ctx, "shutdown complete", "transport", "dtls")
		return nil
	case <-ctx.Done():
		left := s.forceClose()
		s.log.WarnContext(ctx, "shutdown timed out; closed sessions hard", "transport", "dtls", "sessions", left, "err", ctx.Err())
		return ctx.Err()
	}
}

// Sessions returns how many sessions the server holds, half-open
// handshakes included.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) sessionList() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		all = append(all, ss)
	}
	return all
}

// beginStop marks the server stopping, stops every gate, and returns how
// many sessions it holds.
func (s *Server) beginStop() int {
	s.mu.Lock()
	s.stopping.Store(true)
	gates := make([]*gate, 0, len(s.gates))
	for g := range s.gates {
		gates = append(gates, g)
	}
	n := len(s.sessions)
	s.mu.Unlock()
	for _, g := range gates {
		g.close()
	}
	return n
}

// forceClose stops the server and closes every session at once (after
// the datagram it is handling, if any); it returns how many there were.
// The sockets close once they have all ended.
func (s *Server) forceClose() int {
	s.beginStop()
	all := s.sessionList()
	for _, ss := range all {
		ss.forced.Store(true)
		ss.requestClose(CloseForced)
	}
	go func() { s.wg.Wait(); s.closeSockets() }()
	return len(all)
}

// failGate ends the sessions of a gate whose socket failed.
func (s *Server) failGate(g *gate) {
	g.close()
	for _, ss := range s.sessionList() {
		if ss.g == g {
			ss.requestClose(CloseReadError)
		}
	}
}

// closeSockets closes the UDP sockets once no session needs them, and
// waits for their readers and workers to return.
func (s *Server) closeSockets() {
	s.mu.Lock()
	gates := make([]*gate, 0, len(s.gates))
	for g := range s.gates {
		gates = append(gates, g)
		delete(s.gates, g)
	}
	s.mu.Unlock()
	for _, g := range gates {
		g.pc.Close()
		g.stopReaders()
	}
}

func (s *Server) trackGate(g *gate) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return false
	}
	s.gates[g] = struct{}{}
	return true
}

// trackSession registers ss, unless the server is stopping.
func (s *Server) trackSession(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return false
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	return true
}

// untrackSession forgets a session that has ended.
func (s *Server) untrackSession(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
	s.wg.Done()
}

// admitSource counts a new session of the proved source k against the
// per-source limits, or returns the reason to refuse it. The limits apply
// only once a source has returned its cookie: before that its address is
// not proved, and counting it would let a spoofer spend a real player's
// budget. The table (internal/limits) is the TCP server's too.
func (s *Server) admitSource(k netip.Addr) string {
	switch s.sources.Admit(k, time.Now()) {
	case limits.Admitted:
		return ""
	case limits.TooManyConns:
		return RefusedSourceSessions
	default:
		return RefusedSourceRate
	}
}

// refuse reports a source turned away, logging at most once a second.
func (s *Server) refuse(reason string, addr netip.AddrPort) {
	s.events.ConnRefused(reason)
	if n := s.refusedLog.allow(); n > 0 {
		s.log.Debug("refused a DTLS client", "reason", reason, "remote_addr", addr.String(), "refused_since_last_log", n)
	}
}

// logLimiter lets a log line through at most once per every, and counts
// what it held back.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	last  time.Time
	held  int
}

// allow returns 0 to hold a line back, or the lines since the last one let
// through, this one included.
func (l *logLimiter) allow() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held++
	now := time.Now()
	if now.Sub(l.last) < l.every {
		return 0
	}
	n := l.held
	l.last, l.held = now, 0
	return n
}
