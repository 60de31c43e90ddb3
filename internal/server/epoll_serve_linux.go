package server

import (
	"time"

	"golang.org/x/sys/unix"
)

// serveReady is one run of a worker on c: flush what is queued, then read
// and answer until the socket and crypto/tls have nothing more, write the
// replies, and park c — or end it. Every run drains until would-block,
// because epoll is edge-triggered and crypto/tls may hold data the socket
// no longer shows.
func (e *epollEngine) serveReady(c *conn) {
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
			if time.Now().UnixNano() < t.writeBy.Load() {
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

	got, endNow, reason, err := e.readAndAnswer(c)
	switch {
	case endNow:
		e.end(c, reason, err)
		return
	case reason != "":
		e.endAfterFlush(c, reason, err)
		return
	}
	s := e.s
	now := time.Now()
	if got || flushed || first {
		t.readBy.Store(now.Add(s.opts.IdleTimeout).UnixNano())
	} else if t.q == nil && now.UnixNano() >= t.readBy.Load() {
		// Nothing came, and nothing since the idle deadline: the sweep
		// woke c to end it.
		reason, err := c.readFailed(t.timeout("read"), lc.held != nil)
		e.endAfterFlush(c, reason, err)
		return
	}
	if t.q != nil || lc.held != nil {
		return // waiting for EPOLLOUT, or for the rest of a frame
	}
	if s.stopping.Load() {
		e.end(c, CloseShutdown, nil)
		return
	}
	if s.testIdle != nil && (got || flushed || first) {
		s.testIdle()
	}
}

// readAndAnswer reads from c until would-block, answering every complete
// frame and writing the replies to each read at once (more often if they
// pass flushAt), then keeps a partial frame's buffer in c.loop.held. It stops
// reading early while output is queued: the peer is not taking replies, so
// its requests stay in the socket (TCP flow control pushes back on it)
// rather than in our memory. It returns whether anything was read and,
// when c must end, why, and whether at once (a write failed) or once its
// queued output is written.
func (e *epollEngine) readAndAnswer(c *conn) (got, endNow bool, reason string, err error) {
	s := e.s
	lc := &c.loop
	t := &lc.t
	inp, w := lc.held, lc.heldLen
	if inp == nil {
		inp = s.inPool.Get().(*[]byte)
		s.buffersOut.Add(1)
	}
	lc.held, lc.heldLen = nil, 0
	outp := s.outPool.Get().(*[]byte)
	in, out := *inp, (*outp)[:0]
	r := 0
	var rerr, perr, werr error
	for {
		room := in[w:]
		if s.stopping.Load() {
			// A draining server answers every request begun and no new
			// one, as the goroutine engine does, or a client that keeps
			// sending would keep its connection open.
			if w == 0 {
				break
			}
			if room = room[:frameRest(in[:w])]; len(room) == 0 {
				break // cannot happen: a whole frame would have been answered
			}
		}
		n, err := c.rw.Read(room)
		w += n
		got = got || n > 0
		// tls.Conn.Read may return data together with errWouldBlock: its
		// look-ahead for a close_notify after the data found only part
		// of the next record (crypto/tls conn.go, Conn.Read).
		wouldBlock := err == errWouldBlock
		if !wouldBlock {
			rerr = err
		}
		for {
			var used int
			out, used, perr = s.answer(out, in[r:w])
			r += used
			if perr != nil || len(out) < s.flushAt {
				break
			}
			if _, werr = c.rw.Write(out); werr != nil {
				break
			}
			out = out[:0]
		}
		// The replies to what this read brought go out now, before the
		// next read, as the goroutine engine writes them: one TLS record
		// and one system call per batch a client pipelines. (Holding them
		// across reads saves little and changes the pattern TCP sees: with
		// a peer that does not read, it left connections stalled with the
		// ACKs of their data lost, dropped with the segments they rode on.)
		if werr == nil && perr == nil && len(out) > 0 {
			_, werr = c.rw.Write(out)
			out = out[:0]
		}
		if r == w {
			r, w = 0, 0
		} else if r > 0 {
			w = copy(in, in[r:w])
			r = 0
		}
		if werr != nil || perr != nil || rerr != nil || wouldBlock || t.q != nil {
			break
		}
	}
	if werr == nil && len(out) > 0 {
		_, werr = c.rw.Write(out) // the ERROR that ends a lost framing
	}
	*outp = out[:0]
	s.outPool.Put(outp)

	partial := w > 0
	if werr == nil && perr == nil && rerr == nil && partial {
		lc.held, lc.heldLen = inp, w
	} else {
		s.inPool.Put(inp)
		s.buffersOut.Add(-1)
	}
	switch {
	case werr != nil:
		reason, err = c.writeFailed(werr)
		return got, true, reason, err
	case perr != nil:
		// Framing is lost: the ERROR is in what was written; close.
		return got, false, CloseProtocolError, perr
	case rerr != nil:
		reason, err = c.readFailed(rerr, partial)
		return got, false, reason, err
	}
	return got, false, "", nil
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
	s := e.s
	lc := &c.loop
	lc.sched.Store(schedDone)
	if lc.held != nil {
		s.inPool.Put(lc.held)
		lc.held = nil
		s.buffersOut.Add(-1)
	}
	s.finish(c, reason, err)
}
