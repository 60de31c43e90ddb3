package server

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// transport is the net.Conn under a connection's tls.Conn (or, in
// plaintext, the connection itself) in the epoll engine.
//
// Until the hand-off it passes everything to the connection's blocking
// socket (sockConn, over the accepted *net.TCPConn), so that the TLS
// handshake runs as in the goroutine engine: blocking, on Go's netpoller,
// under the handshake deadline. A would-block must never reach Handshake:
// crypto/tls makes every handshake error sticky (crypto/tls conn.go,
// Conn.handshakeContext stores c.handshakeErr). A connection that cannot
// be handed off is served through it the goroutine engine's way.
//
// After the hand-off (loop set) it is non-blocking on its own descriptor,
// and its rules are the ones crypto/tls needs (each names the crypto/tls
// code it comes from, Go 1.27):
//
//   - Read returns (n > 0, nil) when it got bytes and errWouldBlock, a
//     temporary net.Error, only when it got none. crypto/tls keeps its read
//     state across a temporary error (conn.go, readRecordOrCCS does not
//     call setErrorLocked for one) but passes any error up even when the
//     record it was waiting for is complete (readFromUntil returns the
//     error of the read that completed it), so data with an error would
//     stall a record that has fully arrived.
//   - Write never blocks and never fails below its bound: what the socket
//     does not take is copied (crypto/tls reuses the buffer it passes,
//     writeRecordLocked's outBufPool) into a FIFO queue that the engine
//     flushes when epoll reports EPOLLOUT. A failed write is fatal to
//     crypto/tls (Conn.Write calls c.out.setErrorLocked), so a full socket
//     must never surface as an error. crypto/tls also writes from inside
//     Read — the answer to a KeyUpdate (handleKeyUpdate), alerts
//     (sendAlertLocked) — so Write takes no lock that the engine holds
//     around Read; one goroutine at a time serves a connection, which is
//     what makes the queue safe without one.
//   - The deadline methods do nothing: the engine keeps the idle and write
//     deadlines itself. tls.Conn.Close sets write deadlines around its
//     close_notify (closeNotify); here that alert is best effort, written if
//     the socket takes it.
//
// A transport is owned by the goroutine serving its connection; only mu's
// fields are touched by others (abort).
type transport struct {
	c   *conn
	eng *epollEngine
	pre *sockConn    // the blocking socket, until the hand-off
	tcp *net.TCPConn // as accepted; closed at the hand-off, kept for its addresses

	// mu orders abort's shutdown(2) against the owner's close(2), so that
	// a shutdown never reaches a descriptor number reused by another
	// connection.
	mu   sync.Mutex
	fd   int    // the loop's descriptor, a dup of the accepted one; -1 before the hand-off and after Close
	loop bool   // handed off to the loop: non-blocking on fd
	gen  uint32 // this connection's epoll events carry it, to tell them from an earlier connection's on the same fd
	epfd int    // the loop's epoll descriptor once registered, else -1

	// drained: a read got less than it asked for, so the socket was empty
	// and, epoll being edge-triggered, an event will come with more. The
	// next Read says would-block without a system call (nginx does the
	// same, ngx_unix_recv). hup: the peer shut down its side or the socket
	// failed (EPOLLRDHUP, EPOLLHUP, EPOLLERR): from then on every Read
	// asks the socket, which has its end of stream or error to give.
	drained, hup bool
	// outArmed: registered for EPOLLOUT too (see armOut).
	outArmed bool

	q    []byte // bytes the socket has not taken yet, in order; nil when none
	qoff int    // q[qoff:] is still to be written

	readBy  atomic.Int64 // Server.now: the deadline of the wait for a request, or of the frame begun (the sweeper reads it)
	writeBy atomic.Int64 // Server.now: the write deadline while q holds bytes; 0 when empty
}

// errWouldBlock is what a handed-off transport's Read returns when the
// socket has nothing: a temporary net.Error, which crypto/tls passes up
// from tls.Conn.Read unchanged and without spoiling its state.
var errWouldBlock net.Error = wouldBlockError{}

type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "read would block" }
func (wouldBlockError) Timeout() bool   { return false }
func (wouldBlockError) Temporary() bool { return true }

// queueFullError: the peer left more unsent than the output bound. A
// timeout, as a write that outlived its deadline is: either way the peer
// is not taking its replies.
type queueFullError struct{ bound int }

func (e queueFullError) Error() string {
	return fmt.Sprintf("unsent output passed its %d-byte bound: the peer is not reading", e.bound)
}
func (queueFullError) Timeout() bool   { return true }
func (queueFullError) Temporary() bool { return false }

func (t *transport) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: t.tcp.LocalAddr(), Addr: t.tcp.RemoteAddr(), Err: err}
}

// timeout is the error of a deadline the sweeper found passed, worded
// as the runtime words its own ("read tcp A->B: i/o timeout").
func (t *transport) timeout(op string) error { return t.opError(op, os.ErrDeadlineExceeded) }

// Read implements net.Conn.
func (t *transport) Read(p []byte) (int, error) {
	if !t.loop {
		return t.pre.Read(p)
	}
	if t.fd < 0 {
		return 0, net.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if t.drained && !t.hup {
		return 0, errWouldBlock
	}
	for {
		n, err := unix.Read(t.fd, p)
		switch {
		case n > 0:
			t.drained = n < len(p)
			return n, nil
		case err == nil:
			return 0, io.EOF
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			t.drained = true
			return 0, errWouldBlock
		}
		return 0, t.opError("read", os.NewSyscallError("read", err))
	}
}

// Write implements net.Conn; see the type's doc for its rules. Like
// sockConn, it remembers the first write that failed in the connection's
// werr, for a write from inside Read that crypto/tls keeps to itself.
func (t *transport) Write(p []byte) (int, error) {
	if !t.loop {
		return t.pre.Write(p)
	}
	n, err := t.write(p)
	if err != nil && t.c != nil && t.c.werr == nil { // tests make transports without a conn
		t.c.werr = err
	}
	return n, err
}

func (t *transport) write(p []byte) (int, error) {
	if t.fd < 0 {
		return 0, net.ErrClosed
	}
	if t.q != nil {
		// Behind bytes the socket has not taken: keep the order. The
		// EPOLLOUT that comes when it has room flushes them.
		return t.enqueue(p, 0)
	}
	n := 0
	for n < len(p) {
		m, err := unix.Write(t.fd, p[n:])
		switch {
		case err == nil:
			n += m
			continue
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return t.enqueue(p, n)
		}
		return n, t.opError("write", os.NewSyscallError("write", err))
	}
	return n, nil
}

// enqueue copies p[n:] to the queue, unless that passes the bound, and
// says p was written.
func (t *transport) enqueue(p []byte, n int) (int, error) {
	rest := p[n:]
	if len(t.q)-t.qoff+len(rest) > t.eng.qBound {
		return n, t.opError("write", queueFullError{t.eng.qBound})
	}
	if t.q == nil {
		if err := t.armOut(); err != nil {
			return n, err
		}
		t.q = t.eng.getQueue(len(rest))
		t.qoff = 0
		t.writeBy.Store(t.eng.s.now() + int64(t.eng.s.opts.WriteTimeout))
		t.eng.queued.Add(1)
	} else if t.qoff > 0 && cap(t.q)-len(t.q) < len(rest) {
		t.q = t.q[:copy(t.q, t.q[t.qoff:])]
		t.qoff = 0
	}
	t.q = append(t.q, rest...)
	return len(p), nil
}

// armOut adds EPOLLOUT to the connection's registration, the first time a
// write finds the socket full, and leaves it there: edge-triggered, it
// reports only the moments the socket gains room after that. A change of
// registration reports the socket's state then (epoll_ctl(2)), so room
// made between the failed write and this call is not missed.
func (t *transport) armOut() error {
	if t.outArmed || t.epfd < 0 {
		return nil // not registered yet: registration comes with a run that flushes
	}
	ev := unix.EpollEvent{Events: epollOut, Fd: int32(t.fd), Pad: int32(t.gen)}
	if err := unix.EpollCtl(t.epfd, unix.EPOLL_CTL_MOD, t.fd, &ev); err != nil {
		return t.opError("write", os.NewSyscallError("epoll_ctl", err))
	}
	t.outArmed = true
	return nil
}

// flush writes what the queue holds until the socket is full; it drops
// the queue's buffer once it is empty.
func (t *transport) flush() error {
	for t.qoff < len(t.q) {
		m, err := unix.Write(t.fd, t.q[t.qoff:])
		switch {
		case err == nil:
			t.qoff += m
			continue
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return nil
		}
		return t.opError("write", os.NewSyscallError("write", err))
	}
	t.dropQueue()
	return nil
}

func (t *transport) dropQueue() {
	if t.q != nil {
		t.eng.putQueue(t.q)
		t.q, t.qoff = nil, 0
		t.writeBy.Store(0)
	}
}

// Close implements net.Conn. After the hand-off it is called only by the
// connection's owner (from Server.finish): it writes what it can of the
// queue, takes the connection out of the loop and closes the descriptor.
func (t *transport) Close() error {
	if !t.loop {
		return t.pre.Close()
	}
	if t.fd < 0 {
		return net.ErrClosed
	}
	if t.q != nil {
		_ = t.flush()
		t.dropQueue()
	}
	t.eng.release(t.c)
	return nil
}

// inLoop reports whether the connection has been handed off to the loop;
// it is safe to call from any goroutine.
func (t *transport) inLoop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.loop
}

// LocalAddr implements net.Conn.
func (t *transport) LocalAddr() net.Addr { return t.tcp.LocalAddr() }

// RemoteAddr implements net.Conn.
func (t *transport) RemoteAddr() net.Addr { return t.tcp.RemoteAddr() }

// SetDeadline implements net.Conn; after the hand-off it does nothing.
func (t *transport) SetDeadline(d time.Time) error {
	if !t.loop {
		return t.pre.SetDeadline(d)
	}
	return nil
}

// SetReadDeadline implements net.Conn; after the hand-off it does nothing.
func (t *transport) SetReadDeadline(d time.Time) error {
	if !t.loop {
		return t.pre.SetReadDeadline(d)
	}
	return nil
}

// SetWriteDeadline implements net.Conn; after the hand-off it does
// nothing.
func (t *transport) SetWriteDeadline(d time.Time) error {
	if !t.loop {
		return t.pre.SetWriteDeadline(d)
	}
	return nil
}
