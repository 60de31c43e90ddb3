package dtls

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v4"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// session is one client: its half-open handshake, then its requests. One
// goroutine runs it (run); pion/dtls adds two of its own (a handshake
// state machine and a reader) for the life of the connection.
type session struct {
	srv  *Server
	conn *piondtls.Conn
	g    *gate
	peer *peer

	forced atomic.Bool // closed hard by forceClose

	mu       sync.Mutex
	cancel   context.CancelFunc // ends the handshake; nil before it starts
	aborted  bool               // abort came before the handshake started
	stopping bool               // Shutdown asked for a graceful end
}

// abort ends the session's handshake at once (a dropped half-open, a
// refused source, a forced shutdown); a session past its handshake is not
// affected.
func (ss *session) abort() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.aborted = true
	if ss.cancel != nil {
		ss.cancel()
	}
}

// stop asks the session to end gracefully: a read in progress returns at
// once, and the session closes with close_notify.
func (ss *session) stop() {
	ss.mu.Lock()
	ss.stopping = true
	if ss.cancel != nil {
		ss.cancel()
	} else {
		ss.aborted = true
	}
	ss.mu.Unlock()
	_ = ss.conn.SetReadDeadline(time.Unix(1, 0))
}

// startHandshake returns the handshake's context, or false when the
// session was aborted before it began.
func (ss *session) startHandshake() (context.Context, context.CancelFunc, bool) {
	o := &ss.srv.opts
	ctx, cancel := context.WithTimeout(context.Background(), o.CookieTimeout+o.HandshakeTimeout)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.aborted {
		cancel()
		return nil, nil, false
	}
	ss.cancel = cancel
	return ctx, cancel, true
}

func (ss *session) run() {
	s := ss.srv
	reason := ""
	defer func() { s.endSession(ss, reason) }()
	defer ss.conn.Close() // sends close_notify on an established session

	ctx, cancel, ok := ss.startHandshake()
	if !ok {
		return
	}
	start := time.Now()
	err := ss.conn.HandshakeContext(ctx)
	cancel()
	took := time.Since(start)
	proved := ss.g.isProved(ss.peer)
	if !proved {
		// A half-open handshake: dropped (its reason already reported),
		// or one pion gave up on before the cookie came back.
		if err != nil {
			s.log.Debug("DTLS handshake ended before the client returned its cookie", "remote_addr", ss.peer.addr.String(), "err", err)
		}
		return
	}
	state := ss.tlsState(err == nil)
	s.events.Handshake(state, took, err)
	if err != nil {
		reason = CloseHandshakeError
		if r := HandshakeResult(err); r == ResultTimeout || r == ResultClientClosed {
			reason = CloseHandshakeTimeout
		}
		s.log.Debug("DTLS handshake failed", "remote_addr", ss.peer.addr.String(), "result", HandshakeResult(err), "err", err)
		return
	}
	s.log.Debug("DTLS session started", "remote_addr", ss.peer.addr.String(), "cipher_suite", tls.CipherSuiteName(state.CipherSuite), "server_name", state.ServerName)
	reason = ss.serve()
	s.log.Debug("DTLS session closed", "remote_addr", ss.conn.RemoteAddr().String(), "reason", reason)
}

// tlsState is what crypto/tls would report for this session.
func (ss *session) tlsState(complete bool) tls.ConnectionState {
	cs := tls.ConnectionState{Version: tls.VersionTLS12, HandshakeComplete: complete}
	if st, ok := ss.conn.ConnectionState(); ok {
		cs.CipherSuite = uint16(st.CipherSuiteID)
		cs.ServerName = st.ServerName
	}
	return cs
}

// tooLarge answers a datagram of n bytes that the gate kept from pion as
// larger than any record the server answers. It runs on the gate's
// goroutine; pion's Write is safe for concurrent use.
func (ss *session) tooLarge(n int) {
	ss.srv.events.ProtocolError(proto.KindTooLarge)
	_, _ = ss.conn.Write(proto.AppendError(nil, "datagram of "+itoa(n)+" bytes, over "+itoa(ss.srv.recvSize)+
		": send at most one frame, or a batch of frames, per record"))
}

// errBufferTooSmall is the text of pion/dtls's error for a record larger
// than the buffer given to Read (the record is dropped; the connection
// goes on). pion does not export the value; TestOversizeRecord checks the
// text still matches.
const errBufferTooSmall = "buffer is too small"

// serve answers requests until the session ends, and returns why.
func (ss *session) serve() string {
	s := ss.srv
	buf := make([]byte, s.readSize)
	for {
		ss.mu.Lock()
		if ss.stopping {
			ss.mu.Unlock()
			return CloseShutdown
		}
		_ = ss.conn.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		ss.mu.Unlock()
		n, err := ss.conn.Read(buf)
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded):
			ss.mu.Lock()
			stopping := ss.stopping
			ss.mu.Unlock()
			if stopping {
				return CloseShutdown
			}
			return CloseIdleTimeout
		case errors.Is(err, io.EOF), errors.Is(err, piondtls.ErrConnClosed):
			return CloseEOF
		case strings.Contains(err.Error(), errBufferTooSmall):
			s.events.ProtocolError(proto.KindTooLarge)
			reply := proto.AppendError(nil, "record over "+itoa(s.readSize)+" bytes: send at most one frame, or a batch of frames, per record")
			if _, err := ss.conn.Write(reply); err != nil {
				return CloseWriteError
			}
			continue
		default:
			s.log.Debug("DTLS read failed", "remote_addr", ss.conn.RemoteAddr().String(), "err", err)
			return CloseReadError
		}
		if err := ss.answer(buf[:n]); err != nil {
			return CloseWriteError
		}
	}
}

// answer replies to the frames of one record. A record must hold whole
// frames: whatever breaks that (a length over MaxMessage, a frame cut
// short) gets an ERROR reply after the replies to the frames before it,
// and the next record is read afresh — UDP has no stream whose framing
// could be lost. Replies go out in datagrams of at most MaxDatagram
// bytes, split at frame boundaries; a reply larger than that goes alone.
func (ss *session) answer(d []byte) error {
	s := ss.srv
	var start time.Time
	if s.timed {
		start = time.Now()
	}
	bp := s.outPool.Get().(*[]byte)
	out := (*bp)[:0]
	defer func() { *bp = out[:0]; s.outPool.Put(bp) }()
	var err error
	emit := func(prev int) {
		// Send what came before the reply just appended when the reply
		// would take the datagram over the cap.
		if len(out) > s.opts.MaxDatagram && prev > 0 && err == nil {
			_, err = ss.conn.Write(out[:prev])
			out = out[:copy(out, out[prev:])]
		}
	}
	for len(d) > 0 {
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
	if err == nil && len(out) > 0 {
		_, err = ss.conn.Write(out)
	}
	return err
}
