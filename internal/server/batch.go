package server

import (
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// The batch step, every engine's: after a read into a connection's input,
// answer every whole frame there, write the replies — all of them in one
// write (one TLS record where they fit), or one per flushAt bytes of them —
// and keep the start of a frame not yet whole for the next read. So
// pipelined requests cost one record and one system call per batch, not
// per request, and a client that waits for its replies before it sends
// more is never stalled: they are written before the next read.
//
// The input buffer is taken from the server's pool when a connection has
// work — on the goroutine engine, only when a frame is not whole in the
// few bytes it first read — and given back when everything read is
// answered, so that a connection that waits for its next request holds
// no pooled buffer.

// input returns what c has read and not yet answered: the front of its
// input buffer, or, before it needs one, of what it first read into
// (c.first, the goroutine engine's).
func (c *conn) input() []byte {
	if c.in != nil {
		return (*c.in)[:c.inLen]
	}
	return c.first[:c.inLen]
}

// keep moves rest, the start of a frame not yet whole, to the front of
// c's input buffer, taking one if c has none yet.
func (c *conn) keep(rest []byte) {
	switch {
	case len(rest) == 0:
	case c.in == nil:
		c.takeInput()
		copy(*c.in, rest)
	case &(*c.in)[0] != &rest[0]:
		copy(*c.in, rest)
	}
	c.inLen, c.kept = len(rest), len(rest)
}

// takeInput gives c an input buffer unless it holds one.
func (c *conn) takeInput() {
	if c.in == nil {
		c.in = c.srv.inPool.Get().(*[]byte)
	}
}

// releaseInput gives c's input buffer back, and with it anything unread.
func (c *conn) releaseInput() {
	if c.in != nil {
		c.srv.inPool.Put(c.in)
		c.in, c.inLen, c.kept = nil, 0, 0
	}
}

// room is where c's next read goes: the free end of its input. A stopping
// server reads only the rest of a frame begun, so that it answers every
// request begun and no other; room is empty when none is.
func (c *conn) room() []byte {
	in := *c.in
	switch {
	case !c.srv.stopping.Load():
		return in[c.inLen:]
	case c.inLen == 0:
		return nil
	}
	return in[c.inLen : c.inLen+proto.Need(in[:c.inLen])]
}

// step answers what c's input holds and writes the replies, then moves what
// is left — the start of a frame not yet whole — to the front. began
// reports that what is left began with the last read, so that its frame's
// deadline starts now (a frame must be whole within IdleTimeout of its
// first byte, however slowly it comes). reason is set when c must end: a
// write failed, or framing is lost (CloseProtocolError, its ERROR reply
// written first).
func (c *conn) step() (began bool, reason string, err error) {
	if c.inLen == c.kept {
		return false, "", nil // the read brought nothing
	}
	s := c.srv
	in := c.input()
	if _, n, err := proto.Parse(in, s.opts.MaxMessage); n == 0 && err == nil {
		// Not one whole frame yet: nothing to answer or write.
		began = c.kept == 0
		c.keep(in)
		return began, "", nil
	}
	outp := s.outPool.Get().(*[]byte)
	out := (*outp)[:0]
	r := 0
	var perr, werr error
	for {
		var used int
		out, used, perr = s.answer(out, in[r:], c.env())
		r += used
		if perr != nil || len(out) < s.flushAt {
			break
		}
		if _, werr = c.rw.Write(out); werr != nil {
			break
		}
		out = out[:0]
	}
	if werr == nil && len(out) > 0 {
		_, werr = c.rw.Write(out) // and, when framing is lost, the ERROR
	}
	*outp = out[:0]
	s.outPool.Put(outp)
	switch {
	case werr != nil:
		reason, err = c.writeFailed(werr)
		return false, reason, err
	case perr != nil:
		return false, CloseProtocolError, perr
	}
	// Between steps there is one read: what is left began with it if a
	// frame ended in it, or if the last step left nothing.
	left := in[r:]
	began = len(left) > 0 && (r > 0 || c.kept == 0)
	c.keep(left)
	return began, "", nil
}

// answer decodes every complete frame at the front of in and appends the
// replies to out, stopping early once out reaches flushAt. It returns out,
// how many bytes of in it used and, when framing is lost, the
// *proto.ProtocolError (whose ERROR reply is already in out).
func (s *Server) answer(out, in []byte, env *proto.Env) (_ []byte, used int, err error) {
	var tm timing
	for len(out) < s.flushAt {
		f, n, err := proto.Parse(in[used:], s.opts.MaxMessage)
		if err != nil {
			tm.report(s)
			s.events.ProtocolError(proto.KindOf(err))
			return proto.AppendError(out, err.Error()), used, err
		}
		if n == 0 {
			break
		}
		used += n
		if !f.Type.IsRequest() {
			s.events.ProtocolError(proto.KindUnknownType)
			out = proto.AppendUnknownType(out, f.Type)
			continue
		}
		if s.timed {
			tm.begin(s)
		}
		before := len(out)
		out = proto.AppendReply(out, f, *env)
		if s.timed {
			tm.add(s, f.Type, n, len(out)-before)
		}
	}
	tm.report(s)
	return out, used, nil
}

// timeEvery is how many requests of a batch share one clock read when
// Events are set: read per request, the clock cost a pipelining client's
// connection more than building its replies (docs/BENCHMARKS.md).
const timeEvery = 16

// timing is what answer keeps, with Events set, of the requests it has
// answered and not yet reported to Events.Message.
//
// What Events.Message gets as took is the request's latency inside the
// server: from the moment the server began answering the batch that held
// it (just after the read that brought its last byte) to the moment its
// reply was built — read once per timeEvery requests, so a request is
// reported as done up to timeEvery-1 requests' work late. For a client
// that waits for each reply, that is the time to build its reply; for a
// pipelining one, it includes the requests ahead of it in the same batch,
// as the client sees them. Network time, time in socket buffers and the
// write of the replies are not included.
type timing struct {
	start   int64 // Server.now, read at the batch's first request
	started bool
	pend    [timeEvery]answered
	np      int
}

// answered is a request answered and not yet reported.
type answered struct {
	t       proto.Type
	in, out int32
}

// begin reads the clock at the batch's first request: a read that brought
// only part of one costs no clock read.
func (tm *timing) begin(s *Server) {
	if !tm.started {
		tm.start, tm.started = s.now(), true
	}
}

// add notes a request of type t answered, its frame in bytes and its
// reply out, and reports every timeEvery of them.
func (tm *timing) add(s *Server, t proto.Type, in, out int) {
	tm.pend[tm.np] = answered{t, int32(in), int32(out)}
	if tm.np++; tm.np == len(tm.pend) {
		tm.report(s)
	}
}

// report reports the requests noted since the last report to
// Events.Message.
func (tm *timing) report(s *Server) {
	if tm.np == 0 {
		return
	}
	took := time.Duration(s.now() - tm.start)
	for _, a := range tm.pend[:tm.np] {
		s.events.Message(a.t, took, int(a.in), int(a.out))
	}
	tm.np = 0
}
