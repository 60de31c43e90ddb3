package server

import (
	"golang.org/x/sys/unix"
)

// serveReady is one run of a worker on c, begun at now (Server.now): flush
// what is queued, then read and run batch steps until the socket and
// crypto/tls have nothing more, and park c — or end it. Every run drains
// until would-block, because epoll is edge-triggered and crypto/tls may
// hold data the socket no longer shows.
//
// Deadlines are reckoned from the run's beginning, which the worker read
// anyway: close to when the bytes that woke c came, since a run is short
// (the watchdog replaces a leader whose run is not).
func (e *epollEngine) serveReady(c *conn, now int64) {
	s := e.s
	lc := &c.loop
	t := &lc.t
	if ev := lc.events.Swap(0); ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		t.hup = true
	}
	t.drained = false
	first := !lc.started
	lc.started = true

	flushed := false
	if t.q != nil {
		err := t.flush()
		if err == nil && t.q != nil {
			// Still full: wait for the next EPOLLOUT, unless the write
			// deadline has passed.
			if now < t.writeBy.Load() {
				return
			}
			err = t.timeout("write")
		}
		if err != nil {
			reason, err := c.writeFailed(err)
			e.end(c, reason, err)
			return
		}
		flushed = true
	}
	if lc.endReason != "" {
		e.end(c, lc.endReason, lc.endErr)
		return
	}

	got, began, endNow, reason, err := e.readAndAnswer(c)
	switch {
	case endNow:
		e.end(c, reason, err)
		return
	case reason != "":
		e.endAfterFlush(c, reason, err)
		return
	}
	partial := c.inLen > 0
	switch {
	case partial && began, !partial && (got || flushed || first):
		// A frame began: it must be whole within IdleTimeout. Or nothing
		// is pending: the wait for the next request begins.
		t.readBy.Store(now + int64(s.opts.IdleTimeout))
	case t.q == nil && now >= t.readBy.Load():
		// Nothing new since the deadline (of the wait, or of the frame
		// begun): the sweep woke c to end it.
		reason, err := c.readFailed(t.timeout("read"), partial)
		e.endAfterFlush(c, reason, err)
		return
	}
	if !partial {
		c.releaseInput()
	}
	if t.q != nil || partial {
		return // waiting for EPOLLOUT, or for the rest of a frame
	}
	if s.stopping.Load() {
		e.end(c, CloseShutdown, nil)
		return
	}
	if s.testIdle != nil && (got || flushed || first) {
		s.testIdle(c)
	}
}

// readAndAnswer reads from c until would-block, running a batch step
// after each read, and keeps a frame begun in c's input for the next run.
// It stops reading early while output is queued: the peer is not taking
// replies, so its requests stay in the socket (TCP flow control pushes
// back on it) rather than in our memory, and a peer that stops reading is
// cut when its write deadline passes or, should crypto/tls's own writes
// from inside Read pile up, when the queue passes its bound
// (transport.enqueue). It returns whether anything was
// read, whether a frame not yet whole began in this run, and, when c must
// end, why, and whether at once (a write failed: nothing more can be
// sent) or once its queued output is written.
func (e *epollEngine) readAndAnswer(c *conn) (got, began, endNow bool, reason string, err error) {
	t := &c.loop.t
	c.takeInput()
	for {
		room := c.room()
		if len(room) == 0 {
			return got, began, false, "", nil // stopping, and no frame begun: read no new request
		}
		n, rerr := c.rw.Read(room)
		c.inLen += n
		got = got || n > 0
		// tls.Conn.Read may return data together with errWouldBlock: its
		// look-ahead for a close_notify after the data found only part
		// of the next record (crypto/tls conn.go, Conn.Read).
		wouldBlock := rerr == errWouldBlock
		b, reason, err := c.step()
		if reason != "" {
			// A write failed, or framing is lost (and its ERROR is in
			// what was written).
			return got, began, reason != CloseProtocolError, reason, err
		}
		began = began || b
		if rerr != nil && !wouldBlock {
			reason, err = c.readFailed(rerr, c.inLen > 0)
			return got, began, false, reason, err
		}
		if wouldBlock || t.q != nil {
			return got, began, false, "", nil
		}
	}
}

// endAfterFlush ends c for reason once its queued output is written (or
// its write deadline passes), as the goroutine engine writes its last
// replies before it closes.
func (e *epollEngine) endAfterFlush(c *conn, reason string, err error) {
	lc := &c.loop
	if lc.t.q != nil {
		lc.endReason, lc.endErr = reason, err
		return
	}
	e.end(c, reason, err)
}

// end finishes c on its owner.
func (e *epollEngine) end(c *conn, reason string, err error) {
	c.loop.sched.Store(schedDone)
	e.s.finish(c, reason, err)
}
