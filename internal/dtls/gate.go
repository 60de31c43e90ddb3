package dtls

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/limits"
)

// The gate is the server's front end on one UDP socket. It reads every
// datagram itself and hands each to its session's pion/dtls connection,
// which the server drives in pion's detached mode (DetachedConn: the
// caller moves the datagrams). Routing is the gate's: by connection ID
// for records that carry one (RFC 9146), by address for the rest.
//
// pion keeps state for every address that sends a ClientHello, and its
// cookie is random and kept with that state: a stateless cookie front
// end cannot hand a client over to it (docs/SECURITY.md, "DTLS: spoofed
// handshakes", has the experiment). So the gate bounds that state:
//
//   - A ClientHello from an address the gate does not know starts a
//     half-open handshake, unless its source already has
//     SourceMaxHalfOpen of them (then it is dropped, unanswered); past
//     MaxHalfOpen in all, the oldest half-open is dropped to make room.
//   - The gate reads the cookie pion sends back (HelloVerifyRequest) and,
//     when the second ClientHello carries it, the address is proved: only
//     then is the source counted against MaxSessions and the per-source
//     limits, and pion gets to sign anything (GetCertificate runs after
//     the cookie). A ClientHello with a wrong cookie is dropped, so that an
//     off-path spoofer cannot end a real player's handshake with one.
//   - A half-open whose cookie does not come back within CookieTimeout is
//     dropped, and a proved handshake that has not finished within
//     HandshakeTimeout is closed.
//   - No ClientHello shorter than the cookie reply is answered: the server
//     never sends more than it received from an unproved address.
//
// Any other datagram from an unknown address, and any record with a
// connection ID the gate did not give out, is dropped, as pion's own
// listener would.
//
// The gate reads on a few goroutines (readers), and a datagram of a known
// session is handled on the goroutine that read it: no hand-off between
// reading and answering. A session is not a goroutine: its datagrams are
// handled one at a time by whichever reader has it (session.go). A first
// ClientHello is not: making a pion connection for it is the costly part
// of a flood of spoofed ones, so it goes through a bounded queue
// (helloBacklog) to a few workers, and one that finds the queue full is
// dropped (its client sends it again after a second, RFC 6347 section
// 4.2.4). A flood then costs the readers almost nothing, and the sessions
// that exist keep being served while the workers create half-opens.
// pion's own listener bounded its accept queue in the same way.
type gate struct {
	pc  net.PacketConn
	udp *net.UDPConn // pc, when it is one: reads and writes that allocate nothing
	s   *Server

	readers sync.WaitGroup
	workers sync.WaitGroup
	hello   chan firstHello // first ClientHellos for the workers
	readErr chan error      // the first read error that was not the socket's close
	stopped chan struct{}   // closed by close

	mu          sync.Mutex
	peers       map[netip.AddrPort]*session
	cids        map[[ConnectionIDLength]byte]*session // proved sessions' connection IDs
	halfOpen    sessionList                           // unproved, oldest first
	handshaking sessionList                           // proved, handshake not done, oldest first
	live        sessionList                           // handshake done
	bySource    map[netip.Addr]int                    // half-opens per source
	polling     *time.Timer                           // runs poll while there are handshakes
	sweeping    *time.Timer                           // runs sweep while there are live sessions
	closed      bool
}

type peerState uint8

const (
	peerNew    peerState = iota // a ClientHello let through
	peerCookie                  // pion sent it a cookie
	peerProved                  // it returned the cookie: a session
	peerDead                    // dropped or ended; its datagrams are dropped
)

// maxDatagramRead is the read buffer of each reader: the largest UDP
// payload, so that an oversize datagram is seen whole (and its size told).
const maxDatagramRead = 64 << 10

// helloBacklog bounds the first ClientHellos waiting for a worker to make
// their half-open handshake, as pion's listener bounds its accept queue
// (and with its size).
const helloBacklog = 128

// firstHello is a first ClientHello, copied, for the session it began.
type firstHello struct {
	ss   *session
	buf  *[]byte
	n    int
	from netip.AddrPort
}

func newGate(s *Server, pc net.PacketConn) *gate {
	g := &gate{pc: pc, s: s, readErr: make(chan error, 1), stopped: make(chan struct{}), hello: make(chan firstHello, helloBacklog),
		peers: make(map[netip.AddrPort]*session), cids: make(map[[ConnectionIDLength]byte]*session),
		bySource: make(map[netip.Addr]int)}
	g.udp, _ = pc.(*net.UDPConn)
	return g
}

// start runs n readers and w workers.
func (g *gate) start(n, w int) {
	g.readers.Add(n)
	for range n {
		go g.readLoop()
	}
	g.workers.Add(w)
	for range w {
		go g.helloLoop()
	}
}

// stopReaders waits for the readers to return once the socket is closed,
// then lets the workers finish the queue and return.
func (g *gate) stopReaders() {
	g.readers.Wait()
	close(g.hello)
	g.workers.Wait()
}

// helloLoop makes the half-open handshakes of first ClientHellos.
func (g *gate) helloLoop() {
	defer g.workers.Done()
	for h := range g.hello {
		h.ss.submit((*h.buf)[:h.n], h.from)
		g.s.inPool.Put(h.buf)
	}
}

func (g *gate) readLoop() {
	defer g.readers.Done()
	buf := make([]byte, maxDatagramRead)
	for {
		n, from, err := g.read(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				select {
				case g.readErr <- err:
				default:
				}
			}
			return
		}
		g.dispatch(buf[:n], from)
	}
}

func (g *gate) read(buf []byte) (int, netip.AddrPort, error) {
	if g.udp != nil {
		n, from, err := g.udp.ReadFromUDPAddrPort(buf)
		return n, unmapped(from), err
	}
	for {
		n, addr, err := g.pc.ReadFrom(buf)
		if err != nil {
			return 0, netip.AddrPort{}, err
		}
		if ua, ok := addr.(*net.UDPAddr); ok {
			return n, unmapped(ua.AddrPort()), nil
		}
	}
}

// write sends one datagram.
func (g *gate) write(b []byte, to netip.AddrPort) error {
	if g.udp != nil {
		_, err := g.udp.WriteToUDPAddrPort(b, to)
		return err
	}
	_, err := g.pc.WriteTo(b, net.UDPAddrFromAddrPort(to))
	return err
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// dispatch routes datagram d from addr to its session and has it handled.
func (g *gate) dispatch(d []byte, from netip.AddrPort) {
	ss, dropped, isNew := g.route(d, from)
	if dropped != nil {
		dropped.requestClose("")
	}
	if ss == nil {
		return
	}
	if isNew {
		bp := g.s.inPool.Get().(*[]byte)
		select {
		case g.hello <- firstHello{ss: ss, buf: bp, n: copy(*bp, d), from: from}:
		default: // route saw room, but other readers took it first
			g.s.inPool.Put(bp)
			g.mu.Lock()
			g.dropLocked(ss, RefusedHalfOpen)
			g.mu.Unlock()
			ss.requestClose("")
		}
		return
	}
	if len(d) > g.s.recvSize {
		// Larger than any record the server answers: a session's client
		// hears why; pion never sees it.
		ss.requestOversize(len(d))
		return
	}
	ss.submit(d, from)
}

// route returns the session datagram d from addr is for, or nil to drop
// it; isNew when d, a first ClientHello, began it; and dropped: a session
// the gate dropped (a half-open that made room, a source refused when it
// proved its address), for the caller to close outside the lock.
func (g *gate) route(d []byte, addr netip.AddrPort) (ss, dropped *session, isNew bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if id, ok := recordConnectionID(d); ok {
		ss = g.cids[id]
		if ss == nil || ss.state != peerProved {
			return nil, nil, false
		}
		return ss, nil, false
	}
	if ss = g.peers[addr]; ss != nil {
		switch ss.state {
		case peerDead:
			return nil, nil, false
		case peerCookie:
			if cookie, ok := clientHelloCookie(d); ok && len(cookie) > 0 {
				if !bytes.Equal(cookie, ss.cookie) {
					return nil, nil, false
				}
				if !g.proveLocked(ss) {
					return nil, ss, false
				}
			}
		}
		return ss, nil, false
	}
	cookie, ok := clientHelloCookie(d)
	if !ok || len(cookie) > 0 || len(d) < helloVerifyRequestSize || len(d) > g.s.recvSize || g.closed {
		// Not a first ClientHello: pion would make no connection for it
		// either (a second one from an address it does not know would
		// wait for ever for a first).
		return nil, nil, false
	}
	if g.s.proved.Load() >= int64(g.s.opts.MaxSessions) {
		g.s.refuse(RefusedMaxSessions, addr)
		return nil, nil, false
	}
	src, _ := limits.Key(addr.Addr()) // a UDP address is an IP address
	if g.bySource[src] >= g.s.opts.SourceMaxHalfOpen || len(g.hello) >= cap(g.hello) {
		g.s.refuse(RefusedHalfOpen, addr)
		return nil, nil, false
	}
	ss = newSession(g, addr, src)
	if !g.s.trackSession(ss) {
		g.s.refuse(RefusedShutdown, addr)
		return nil, nil, false
	}
	if g.halfOpen.n >= g.s.opts.MaxHalfOpen {
		dropped = g.halfOpen.head
		g.dropLocked(dropped, RefusedHalfOpen)
	}
	g.peers[addr] = ss
	g.halfOpen.push(ss)
	g.bySource[src]++
	g.pollLocked()
	return ss, dropped, true
}

// noteCookie records the cookie pion sent ss.
func (g *gate) noteCookie(ss *session, cookie []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ss.state == peerNew || ss.state == peerCookie {
		ss.state = peerCookie
		ss.cookie = append(ss.cookie[:0], cookie...)
	}
}

// proveLocked makes ss a session: its address is proved. It applies the
// session limits and reports whether its ClientHello goes on to pion; if
// not, ss is dead, to be closed by the caller outside the lock.
func (g *gate) proveLocked(ss *session) bool {
	g.unlinkLocked(ss)
	ss.cookie = nil
	reason := ""
	if g.s.proved.Load() >= int64(g.s.opts.MaxSessions) {
		reason = RefusedMaxSessions
	} else if g.s.sources != nil {
		reason = g.s.admitSource(ss.src)
		ss.counted = reason == ""
	}
	if g.closed {
		reason = RefusedShutdown
	}
	if reason != "" {
		ss.state = peerDead
		g.s.refuse(reason, ss.addr)
		return false
	}
	ss.state = peerProved
	ss.started = time.Now()
	g.handshaking.push(ss)
	g.pollLocked()
	g.s.proved.Add(1)
	g.s.events.ConnAccepted()
	return true
}

// newConnectionID gives ss a connection ID no other session has, for pion
// to send its client (pion's generator calls it during the handshake).
func (g *gate) newConnectionID(ss *session) []byte {
	var id [ConnectionIDLength]byte
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		_, _ = rand.Read(id[:])
		if g.cids[id] == nil {
			break
		}
	}
	if ss.state == peerProved && !ss.hasCID {
		ss.cid, ss.hasCID = id, true
		g.cids[id] = ss
	}
	return id[:]
}

// dropLocked drops the half-open ss for reason; its caller closes it.
func (g *gate) dropLocked(ss *session, reason string) {
	g.unlinkLocked(ss)
	ss.state = peerDead
	g.s.refuse(reason, ss.addr)
}

// unlinkLocked takes ss off the half-open or handshaking list it is on.
func (g *gate) unlinkLocked(ss *session) {
	switch {
	case ss.list == &g.halfOpen:
		g.halfOpen.remove(ss)
		if g.bySource[ss.src]--; g.bySource[ss.src] <= 0 {
			delete(g.bySource, ss.src)
		}
	case ss.list != nil:
		ss.list.remove(ss)
	}
}

// established moves ss from the handshaking list to the live one: its
// handshake is done, and the idle sweep watches it.
func (g *gate) established(ss *session) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ss.list != &g.handshaking {
		return
	}
	g.handshaking.remove(ss)
	g.live.push(ss)
	if g.sweeping == nil && !g.closed {
		g.sweeping = time.AfterFunc(g.sweepEvery(), g.sweep)
	}
}

// sweepEvery is how often the idle sweep runs: a session is closed
// between IdleTimeout and IdleTimeout plus this after its client's last
// record. One sweep of every session (an atomic load each) replaces a
// timer per session.
func (g *gate) sweepEvery() time.Duration {
	return max(10*time.Millisecond, g.s.opts.IdleTimeout/16)
}

// sweep closes the live sessions whose client has sent nothing for
// IdleTimeout.
func (g *gate) sweep() {
	idle := time.Now().Add(-g.s.opts.IdleTimeout).UnixNano()
	var closeNow []*session
	g.mu.Lock()
	for ss := g.live.head; ss != nil; ss = ss.next {
		if ss.seen.Load() <= idle {
			closeNow = append(closeNow, ss)
		}
	}
	if g.closed || g.live.n == 0 {
		g.sweeping = nil
	} else {
		g.sweeping.Reset(g.sweepEvery())
	}
	g.mu.Unlock()
	for _, ss := range closeNow {
		ss.requestClose(CloseIdleTimeout)
	}
}

// moved follows a session whose client pion has moved to a new address
// (a NAT rebinding, after a return routability check).
func (g *gate) moved(ss *session, to netip.AddrPort) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ss.state != peerProved {
		return
	}
	if g.peers[ss.addr] == ss {
		delete(g.peers, ss.addr)
	}
	if g.peers[to] == nil {
		g.peers[to] = ss
	}
	ss.addr = to
}

// release forgets ss once it has ended, and reports whether it was a
// proved session (one ConnAccepted reported).
func (g *gate) release(ss *session) (proved bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.peers[ss.addr] == ss {
		delete(g.peers, ss.addr)
	}
	if ss.hasCID && g.cids[ss.cid] == ss {
		delete(g.cids, ss.cid)
	}
	g.unlinkLocked(ss)
	if ss.state == peerProved {
		proved = true
		g.s.proved.Add(-1)
	}
	if ss.counted {
		g.s.sources.Release(ss.src)
		ss.counted = false
	}
	ss.state = peerDead
	return proved
}

// pollEvery is how often, at most, poll runs while there are handshakes:
// the resolution of the cookie and handshake timeouts, and the most a
// retransmission pion's timers make waits to be sent.
func (g *gate) pollEvery() time.Duration {
	o := &g.s.opts
	return max(time.Millisecond, min(100*time.Millisecond, o.CookieTimeout/4, o.HandshakeTimeout/4))
}

// pollLocked makes sure poll runs while there are handshakes.
func (g *gate) pollLocked() {
	if g.polling == nil && !g.closed {
		g.polling = time.AfterFunc(g.pollEvery(), g.poll)
	}
}

// poll drops the half-opens whose cookie did not come back in time,
// closes the handshakes that ran out of time, and has the sessions whose
// pion connection made datagrams on its own (a retransmission on a timer)
// send them: in detached mode pion signals those, and nothing else reads
// the signal until the client's next datagram.
func (g *gate) poll() {
	now := time.Now()
	var closeNow, drain []*session
	var timedOut []*session
	g.mu.Lock()
	for ss := g.halfOpen.head; ss != nil && now.Sub(ss.created) >= g.s.opts.CookieTimeout; ss = g.halfOpen.head {
		g.dropLocked(ss, RefusedCookieTimeout)
		closeNow = append(closeNow, ss)
	}
	for ss := g.handshaking.head; ss != nil; ss = ss.next {
		if now.Sub(ss.started) >= g.s.opts.HandshakeTimeout {
			timedOut = append(timedOut, ss)
		} else if ss.eventsPending() {
			drain = append(drain, ss)
		}
	}
	if g.closed || g.halfOpen.n+g.handshaking.n == 0 {
		g.polling = nil
	} else {
		g.polling.Reset(g.pollEvery())
	}
	g.mu.Unlock()
	for _, ss := range closeNow {
		ss.requestClose("")
	}
	for _, ss := range timedOut {
		ss.requestClose(CloseHandshakeTimeout)
	}
	for _, ss := range drain {
		ss.requestDrain()
	}
}

// close stops new handshakes and drops every half-open one.
func (g *gate) close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	close(g.stopped)
	if g.polling != nil {
		g.polling.Stop()
		g.polling = nil
	}
	if g.sweeping != nil {
		g.sweeping.Stop()
		g.sweeping = nil
	}
	var dropped []*session
	for g.halfOpen.head != nil {
		ss := g.halfOpen.head
		g.unlinkLocked(ss)
		ss.state = peerDead
		dropped = append(dropped, ss)
	}
	g.mu.Unlock()
	for _, ss := range dropped {
		ss.requestClose("")
	}
}

// counts returns the half-open handshakes and the addresses known (tests).
func (g *gate) counts() (halfOpen, peers int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.halfOpen.n, len(g.peers)
}

// sessionList is a doubly linked list of sessions, oldest first.
type sessionList struct {
	head, tail *session
	n          int
}

func (l *sessionList) push(ss *session) {
	ss.prev, ss.next, ss.list = l.tail, nil, l
	if l.tail != nil {
		l.tail.next = ss
	} else {
		l.head = ss
	}
	l.tail = ss
	l.n++
}

func (l *sessionList) remove(ss *session) {
	if ss.prev != nil {
		ss.prev.next = ss.next
	} else {
		l.head = ss.next
	}
	if ss.next != nil {
		ss.next.prev = ss.prev
	} else {
		l.tail = ss.prev
	}
	ss.prev, ss.next, ss.list = nil, nil, nil
	l.n--
}

// isProved reports whether ss returned its cookie (and has not ended).
func (g *gate) isProved(ss *session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return ss.state == peerProved
}
