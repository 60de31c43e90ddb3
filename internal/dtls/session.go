package dtls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v4"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// session is one client: its half-open handshake, then its requests,
// driven through a pion/dtls DetachedConn. It is not a goroutine. Work for
// it — a datagram, a signal that pion has datagrams of its own to send, a
// request to close — is done by the goroutine that brings it (a reader of
// the gate, a timer, Shutdown), one piece at a time: a goroutine that
// finds the session busy queues its work for the busy one, which does it
// before it lets go (submit, run). pion keeps two goroutines per
// connection (its handshake state machine and its record reader); the
// session adds none, and no buffer while idle.
type session struct {
	g    *gate
	srv  *Server
	src  netip.Addr
	dc   atomic.Pointer[piondtls.DetachedConn] // set on the first datagram
	seen atomic.Int64                          // when the client last sent a record, in UnixNano

	// Guarded by the gate's mu.
	addr       netip.AddrPort // the client's, as routed
	state      peerState
	cookie     []byte // pion's, while half-open
	counted    bool   // admitted by the per-source limits
	hasCID     bool
	cid        [ConnectionIDLength]byte
	created    time.Time // the first ClientHello
	started    time.Time // the ClientHello that returned the cookie
	list       *sessionList
	prev, next *session

	// The work queue.
	mu       sync.Mutex
	busy     bool // a goroutine is running the session
	queue    []queued
	drainReq bool   // pion has datagrams of its own
	oversize int    // a datagram too large was read, of this size
	closeReq bool   // close the session …
	closeWhy string // … for this reason ("" for a half-open)

	// Owned by the goroutine running the session.
	remote      netip.AddrPort // where pion sends, as far as the session knows
	established bool
	ended       bool
	reason      string // why the server closed it; "" when the client did
	serverName  string // asked for in the ClientHello (set by pion's certificate callback)
	suite       uint16 // the cipher suite of the ServerHello sent
	forced      atomic.Bool
}

// queued is a datagram that came while its session was busy.
type queued struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

// maxQueued bounds the datagrams a busy session holds for later; past it
// they are dropped, as a full socket buffer would drop them.
const maxQueued = 16

func newSession(g *gate, addr netip.AddrPort, src netip.Addr) *session {
	return &session{g: g, srv: g.s, src: src, addr: addr, remote: addr, created: time.Now()}
}

// submit has datagram d from from handled: at once on this goroutine when
// the session is free, else by the goroutine that has it (d is copied).
func (ss *session) submit(d []byte, from netip.AddrPort) {
	ss.mu.Lock()
	if ss.busy {
		if len(ss.queue) < maxQueued {
			bp := ss.srv.inPool.Get().(*[]byte)
			ss.queue = append(ss.queue, queued{buf: bp, n: copy(*bp, d), from: from})
		}
		ss.mu.Unlock()
		return
	}
	ss.busy = true
	ss.mu.Unlock()
	ss.handle(d, from)
	ss.run()
}

// requestDrain has the datagrams pion made on its own sent.
func (ss *session) requestDrain() {
	ss.request(func() { ss.drainReq = true })
}

// requestOversize has a datagram of n bytes, too large to hand pion,
// answered with an ERROR.
func (ss *session) requestOversize(n int) {
	ss.request(func() { ss.oversize = n })
}

// requestClose closes the session for reason: with close_notify once its
// handshake is done, after the work it is doing. A half-open is closed
// with reason "". The first reason given stands.
func (ss *session) requestClose(reason string) {
	ss.request(func() {
		if !ss.closeReq {
			ss.closeReq, ss.closeWhy = true, reason
		}
	})
}

// request notes work under the queue's lock, and runs the session if it
// is free.
func (ss *session) request(note func()) {
	ss.mu.Lock()
	note()
	if ss.busy {
		ss.mu.Unlock()
		return
	}
	ss.busy = true
	ss.mu.Unlock()
	ss.run()
}

// run does the session's queued work until there is none, then lets the
// session go. Its caller has set busy.
func (ss *session) run() {
	for {
		ss.mu.Lock()
		var q queued
		var drain, closeReq bool
		var oversize int
		var why string
		switch {
		case len(ss.queue) > 0:
			q = ss.queue[0]
			ss.queue[0] = queued{}
			ss.queue = ss.queue[1:]
			if len(ss.queue) == 0 {
				ss.queue = nil
			}
		case ss.oversize > 0:
			oversize, ss.oversize = ss.oversize, 0
		case ss.drainReq:
			drain, ss.drainReq = true, false
		case ss.closeReq && !ss.ended:
			closeReq, why = true, ss.closeWhy
		default:
			ss.busy = false
			ss.mu.Unlock()
			return
		}
		ss.mu.Unlock()
		switch {
		case q.buf != nil:
			ss.handle((*q.buf)[:q.n], q.from)
			ss.srv.inPool.Put(q.buf)
		case oversize > 0:
			ss.tooLarge(oversize)
		case drain:
			ss.drain()
		case closeReq:
			ss.close(why)
		}
	}
}

// eventsPending reports whether pion has signalled events nobody has
// taken yet. Safe to call from any goroutine.
func (ss *session) eventsPending() bool {
	dc := ss.dc.Load()
	return dc != nil && len(dc.EventReady()) > 0
}

// begin makes the session's pion connection, on its first datagram.
func (ss *session) begin() (*piondtls.DetachedConn, bool) {
	s := ss.srv
	opts := append(s.pionOpts[:len(s.pionOpts):len(s.pionOpts)],
		piondtls.WithGetCertificate(func(chi *piondtls.ClientHelloInfo) (*tls.Certificate, error) {
			// pion calls it while this session's goroutine waits in
			// HandleDatagram.
			ss.serverName = chi.ServerName
			return s.getCertificate(chi)
		}))
	if !s.opts.DisableConnectionIDs {
		opts = append(opts,
			piondtls.WithConnectionID(func() []byte { return ss.g.newConnectionID(ss) }, piondtls.CIDPathMigrationRRC))
	}
	dc, err := piondtls.DetachedServer(net.UDPAddrFromAddrPort(ss.remote), opts...)
	if err == nil {
		ss.dc.Store(dc)
		// The handshake's time limits are the gate's (poll): pion's
		// handshake runs until it ends or the session closes it.
		err = dc.Start(context.Background())
		ss.drain()
	}
	if err != nil {
		s.log.Warn("starting a DTLS connection failed", "remote_addr", ss.remote.String(), "err", err)
		ss.finish("")
		return nil, false
	}
	return dc, !ss.ended
}

// handle hands datagram d from from to pion and does what it makes.
func (ss *session) handle(d []byte, from netip.AddrPort) {
	if ss.ended {
		return
	}
	dc := ss.dc.Load()
	if dc == nil {
		var ok bool
		if dc, ok = ss.begin(); !ok {
			return
		}
	}
	var addr net.Addr // nil: pion's current address for the client
	if from != ss.remote {
		addr = net.UDPAddrFromAddrPort(from)
	}
	// An error here is the connection's end, which pion also reports as
	// an event; drain takes it from there.
	_ = dc.HandleDatagram(d, addr)
	ss.drain()
}

// drain does what pion has made: sends its datagrams, answers the
// requests it decrypted, and notes the handshake's end and the
// connection's.
func (ss *session) drain() {
	dc := ss.dc.Load()
	if dc == nil {
		return
	}
	for !ss.ended {
		ev := dc.NextEvent()
		switch ev.Kind {
		case piondtls.DetachedNoEvent:
			return
		case piondtls.DetachedWriteDatagrams:
			ss.send(ev)
		case piondtls.DetachedApplicationData:
			if ss.established {
				ss.seen.Store(time.Now().UnixNano())
				ss.answer(ev.Data)
			}
		case piondtls.DetachedHandshakeDone:
			ss.onEstablished()
		case piondtls.DetachedClosed:
			ss.onClosed(ev.Err)
		}
	}
}

// send writes the datagrams of ev. Before the handshake is done it notes
// the cookie of a HelloVerifyRequest for the gate.
func (ss *session) send(ev piondtls.DetachedEvent) {
	if ss.reason != "" && !ss.established {
		return // closing a handshake: nothing it made still matters
	}
	to := ss.remote
	if ua, ok := ev.Addr.(*net.UDPAddr); ok {
		to = unmapped(ua.AddrPort())
	}
	for _, b := range ev.Datagrams {
		if !ss.established {
			if cookie, ok := helloVerifyCookie(b); ok {
				ss.g.noteCookie(ss, cookie)
			} else if suite, ok := serverHelloSuite(b); ok {
				ss.suite = suite
			}
		}
		_ = ss.g.write(b, to)
	}
}

// write sends b, a batch of replies, in one record. pion sends it to the
// client's current address: a client that pion has followed to a new one
// (RFC 9146 connection IDs, after a return routability check) is followed
// by the gate too.
func (ss *session) write(b []byte) {
	dc := ss.dc.Load()
	if _, err := dc.Write(b); err != nil {
		ss.srv.log.Debug("DTLS write failed", "remote_addr", ss.remote.String(), "err", err)
	}
	// The events that follow a Write are its datagrams: after the
	// handshake pion makes none on its own, and this goroutine has
	// taken every earlier one.
	for {
		ev := dc.NextEvent()
		switch ev.Kind {
		case piondtls.DetachedNoEvent:
			return
		case piondtls.DetachedWriteDatagrams:
			if ua, ok := ev.Addr.(*net.UDPAddr); ok {
				if to := unmapped(ua.AddrPort()); to != ss.remote {
					ss.remote = to
					ss.g.moved(ss, to)
				}
			}
			ss.send(ev)
		case piondtls.DetachedClosed:
			ss.onClosed(ev.Err)
			return
		}
	}
}

func (ss *session) onEstablished() {
	s := ss.srv
	ss.established = true
	now := time.Now()
	ss.seen.Store(now.UnixNano())
	ss.g.established(ss) // from now on the gate's idle sweep watches it
	state := ss.tlsState(true)
	s.events.Handshake(state, now.Sub(ss.created), nil)
	s.log.Debug("DTLS session started", "remote_addr", ss.remote.String(), "cipher_suite", tls.CipherSuiteName(state.CipherSuite), "server_name", state.ServerName)
}

// errHandshakeCut is the handshake error a session closed by the server
// before its handshake was done reports: a timeout, or a shutdown.
var errHandshakeCut = errors.New("the server closed the session before its handshake was done")

// onClosed ends the session pion has closed, with err.
func (ss *session) onClosed(err error) {
	s := ss.srv
	reason := ss.reason
	if !ss.established {
		if ss.g.isProved(ss) {
			if reason == CloseHandshakeTimeout {
				err = fmt.Errorf("%w: %w", errHandshakeCut, context.DeadlineExceeded)
			} else if reason != "" {
				err = fmt.Errorf("%w: %w", errHandshakeCut, context.Canceled)
			}
			s.events.Handshake(ss.tlsState(false), time.Since(ss.created), err)
			if reason == "" {
				reason = CloseHandshakeError
				if r := HandshakeResult(err); r == ResultTimeout || r == ResultClientClosed {
					reason = CloseHandshakeTimeout
				}
			}
			s.log.Debug("DTLS handshake failed", "remote_addr", ss.remote.String(), "result", HandshakeResult(err), "err", err)
		} else if err != nil && !errors.Is(err, piondtls.ErrConnClosed) {
			// A half-open handshake pion gave up on before the cookie came back.
			s.log.Debug("DTLS handshake ended before the client returned its cookie", "remote_addr", ss.remote.String(), "err", err)
		}
	} else if reason == "" {
		reason = CloseReadError
		if errors.Is(err, piondtls.ErrConnClosed) || errors.Is(err, io.EOF) {
			reason = CloseEOF
		} else {
			s.log.Debug("DTLS session failed", "remote_addr", ss.remote.String(), "err", err)
		}
	}
	ss.finish(reason)
}

// close closes the session for reason: pion sends close_notify once the
// handshake is done, and reports the end (onClosed).
func (ss *session) close(reason string) {
	if ss.ended {
		return
	}
	ss.reason = reason
	dc := ss.dc.Load()
	if dc == nil {
		ss.finish(reason)
		return
	}
	_ = dc.Close()
	ss.drain()
	if !ss.ended {
		ss.onClosed(piondtls.ErrConnClosed)
	}
}

// finish forgets the session for reason.
func (ss *session) finish(reason string) {
	if ss.ended {
		return
	}
	s := ss.srv
	ss.ended = true
	if dc := ss.dc.Load(); dc != nil {
		_ = dc.Close() // ends pion's goroutines; a no-op once closed
	}
	if ss.g.release(ss) {
		if ss.forced.Load() {
			reason = CloseForced
		}
		s.events.ConnClosed(reason)
		if ss.established {
			s.log.Debug("DTLS session closed", "remote_addr", ss.remote.String(), "reason", reason)
		}
	}
	ss.mu.Lock()
	for _, q := range ss.queue {
		s.inPool.Put(q.buf)
	}
	ss.queue = nil
	ss.mu.Unlock()
	s.untrackSession(ss)
}

// tlsState is what crypto/tls would report for this session. It is made
// from what the session saw go by (pion's ConnectionState copies the
// whole connection state: a cost on every handshake).
func (ss *session) tlsState(complete bool) tls.ConnectionState {
	return tls.ConnectionState{Version: tls.VersionTLS12, HandshakeComplete: complete,
		CipherSuite: ss.suite, ServerName: ss.serverName}
}

// tooLarge answers a datagram of n bytes that the gate kept from pion as
// larger than any record the server answers.
func (ss *session) tooLarge(n int) {
	if ss.ended || !ss.established {
		return
	}
	ss.srv.events.ProtocolError(proto.KindTooLarge)
	ss.write(proto.AppendError(nil, "datagram of "+itoa(n)+" bytes, over "+itoa(ss.srv.recvSize)+
		": send at most one frame, or a batch of frames, per record"))
}

// answer replies to the frames of one record. A record must hold whole
// frames: whatever breaks that (a length over MaxMessage, a frame cut
// short) gets an ERROR reply after the replies to the frames before it,
// and the next record is read afresh — UDP has no stream whose framing
// could be lost. Replies go out in datagrams of at most MaxDatagram
// bytes, split at frame boundaries; a reply larger than that goes alone.
func (ss *session) answer(d []byte) {
	s := ss.srv
	var start time.Time
	if s.timed {
		start = time.Now()
	}
	if len(d) > s.readSize {
		s.events.ProtocolError(proto.KindTooLarge)
		ss.write(proto.AppendError(nil, "record over "+itoa(s.readSize)+" bytes: send at most one frame, or a batch of frames, per record"))
		return
	}
	bp := s.outPool.Get().(*[]byte)
	out := (*bp)[:0]
	defer func() { *bp = out[:0]; s.outPool.Put(bp) }()
	emit := func(prev int) {
		// Send what came before the reply just appended when the reply
		// would take the datagram over the cap.
		if len(out) > s.opts.MaxDatagram && prev > 0 {
			ss.write(out[:prev])
			out = out[:copy(out, out[prev:])]
		}
	}
	for len(d) > 0 && !ss.ended {
		prev := len(out)
		f, n, perr := proto.Parse(d, s.opts.MaxMessage)
		if perr == nil && n == 0 {
			perr = &proto.ProtocolError{Kind: proto.KindTruncated,
				Err: errorf("the record ends %d bytes into a frame: a frame must not be split across records", len(d))}
		}
		if perr != nil {
			var pe *proto.ProtocolError
			kind := proto.KindTruncated
			if errors.As(perr, &pe) {
				kind = pe.Kind
			}
			s.events.ProtocolError(kind)
			out = proto.AppendError(out, perr.Error())
			emit(prev)
			break
		}
		d = d[n:]
		if !f.Type.IsRequest() {
			s.events.ProtocolError(proto.KindUnknownType)
			out = proto.AppendUnknownType(out, f.Type)
			emit(prev)
			continue
		}
		out = proto.AppendReply(out, f, s.env)
		if s.timed {
			s.events.Message(f.Type, time.Since(start), n, len(out)-prev)
		}
		emit(prev)
	}
	if len(out) > 0 && !ss.ended {
		ss.write(out)
	}
}
