package dtls

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"time"
)

// The gate is the server's front end: a net.PacketConn wrapped around the
// UDP socket, between it and pion/dtls's listener, which reads every
// datagram through it. pion's listener keeps state for every address that
// sends a ClientHello (a connection, a packet buffer and, once its
// handshake runs, goroutines), and pion's cookie is random and kept with
// that state: a stateless cookie front end cannot hand a client over to it
// (docs/SECURITY.md, "DTLS: spoofed handshakes", has the experiment). So
// the gate bounds that state instead:
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
//     dropped.
//   - No ClientHello shorter than the cookie reply is answered: the server
//     never sends more than it received from an unproved address.
//
// Datagrams from known addresses, and records carrying a connection ID
// (pion routes those by the ID, and drops unknown ones), pass unchanged;
// any other datagram from an unknown address is dropped, as pion would.
type gate struct {
	net.PacketConn // the UDP socket
	s              *Server
	buf            []byte // ReadFrom's, for a datagram larger than pion's buffer

	mu       sync.Mutex
	peers    map[netip.AddrPort]*peer
	halfOpen peerList // unproved peers, oldest first
	bySource map[netip.Addr]int
	closed   bool
}

// peer is an address the gate let a ClientHello through from: a half-open
// handshake until it returns its cookie, then a session. It is removed
// when its session ends (or, if pion never made a connection for it, when
// its cookie timer fires).
type peer struct {
	addr    netip.AddrPort
	src     netip.Addr
	created time.Time

	// Guarded by the gate's mu.
	state      peerState
	cookie     []byte
	sess       *session // set when the server accepts pion's connection
	counted    bool     // admitted by the per-source limits
	timer      *time.Timer
	prev, next *peer // in halfOpen
}

type peerState uint8

const (
	peerNew    peerState = iota // a ClientHello let through
	peerCookie                  // pion sent it a cookie
	peerProved                  // it returned the cookie: a session
	peerDead                    // dropped; its connection is closed on sight
)

func newGate(s *Server, pc net.PacketConn) *gate {
	return &gate{PacketConn: pc, s: s, peers: make(map[netip.AddrPort]*peer), bySource: make(map[netip.Addr]int),
		buf: make([]byte, 64<<10)}
}

// ReadFrom returns the next datagram the gate lets through. pion's
// listener, its only caller, reads one datagram at a time.
func (g *gate) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := g.PacketConn.ReadFrom(g.buf)
		if err != nil {
			return 0, addr, err
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		if n > len(b) {
			// Larger than any record the server answers: pion would get
			// it cut short and drop it. A session's client hears why.
			g.oversize(ua.AddrPort(), n)
			continue
		}
		if g.admit(g.buf[:n], ua.AddrPort()) {
			return copy(b, g.buf[:n]), addr, nil
		}
	}
}

// oversize answers a datagram of n bytes, too large for any record the
// server answers, from a session's address with an ERROR; from anywhere
// else it is dropped.
func (g *gate) oversize(addr netip.AddrPort, n int) {
	g.mu.Lock()
	p := g.peers[unmapped(addr)]
	var ss *session
	if p != nil && p.state == peerProved {
		ss = p.sess
	}
	g.mu.Unlock()
	if ss != nil {
		ss.tooLarge(n)
	}
}

// WriteTo sends a datagram, noting the cookie of a HelloVerifyRequest.
func (g *gate) WriteTo(p []byte, addr net.Addr) (int, error) {
	if len(p) > recordHeaderSize && p[0] == contentHandshake && p[recordHeaderSize] == handshakeHelloVerifyRequest {
		if cookie, ok := helloVerifyCookie(p); ok {
			if ua, ok := addr.(*net.UDPAddr); ok {
				g.noteCookie(ua.AddrPort(), cookie)
			}
		}
	}
	return g.PacketConn.WriteTo(p, addr)
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// admit decides whether pion sees datagram d from addr.
func (g *gate) admit(d []byte, addr netip.AddrPort) bool {
	addr = unmapped(addr)
	g.mu.Lock()
	p := g.peers[addr]
	if p != nil {
		pass := true
		if p.state == peerCookie {
			if cookie, ok := clientHelloCookie(d); ok && len(cookie) > 0 {
				if !bytes.Equal(cookie, p.cookie) {
					pass = false
				} else {
					pass = g.proveLocked(p)
				}
			}
		}
		g.mu.Unlock()
		return pass
	}
	defer g.mu.Unlock()
	if len(d) > 0 && d[0] == contentCID {
		return true
	}
	cookie, ok := clientHelloCookie(d)
	if !ok || len(cookie) > 0 || len(d) < helloVerifyRequestSize || g.closed {
		// Not a first ClientHello: pion would make no connection for it
		// either (a second one from an address it does not know would
		// wait for ever for a first).
		return false
	}
	if g.s.proved.Load() >= int64(g.s.opts.MaxSessions) {
		g.s.refuse(RefusedMaxSessions, addr)
		return false
	}
	src := sourceKey(addr.Addr())
	if g.bySource[src] >= g.s.opts.SourceMaxHalfOpen {
		g.s.refuse(RefusedHalfOpen, addr)
		return false
	}
	if g.halfOpen.n >= g.s.opts.MaxHalfOpen {
		g.dropLocked(g.halfOpen.head, RefusedHalfOpen)
	}
	p = &peer{addr: addr, src: src, created: time.Now()}
	g.peers[addr] = p
	g.halfOpen.push(p)
	g.bySource[src]++
	p.timer = time.AfterFunc(g.s.opts.CookieTimeout, func() { g.expire(p) })
	return true
}

// noteCookie records the cookie pion sent to addr.
func (g *gate) noteCookie(addr netip.AddrPort, cookie []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.peers[unmapped(addr)]; p != nil && (p.state == peerNew || p.state == peerCookie) {
		p.state = peerCookie
		p.cookie = append(p.cookie[:0], cookie...)
	}
}

// proveLocked makes p a session: its address is proved. It applies the
// session limits and reports whether its ClientHello goes on to pion.
func (g *gate) proveLocked(p *peer) bool {
	g.unlinkLocked(p)
	p.timer.Stop()
	reason := ""
	if g.s.proved.Load() >= int64(g.s.opts.MaxSessions) {
		reason = RefusedMaxSessions
	} else if g.s.sources != nil {
		reason = g.s.sources.admit(p.src, time.Now())
		p.counted = reason == ""
	}
	if g.closed {
		reason = RefusedShutdown
	}
	if reason != "" {
		p.state = peerDead
		g.s.refuse(reason, p.addr)
		if p.sess != nil {
			p.sess.abort()
		}
		return false
	}
	p.state = peerProved
	g.s.proved.Add(1)
	g.s.events.ConnAccepted()
	return true
}

// dropLocked drops the half-open p for reason.
func (g *gate) dropLocked(p *peer, reason string) {
	g.unlinkLocked(p)
	p.timer.Stop()
	p.state = peerDead
	g.s.refuse(reason, p.addr)
	if p.sess != nil {
		p.sess.abort()
	} else {
		// pion may never have made a connection for it (its accept queue
		// was full): nothing will release it.
		delete(g.peers, p.addr)
	}
}

// unlinkLocked takes p off the half-open list, if it is on it.
func (g *gate) unlinkLocked(p *peer) {
	if p.state == peerNew || p.state == peerCookie {
		g.halfOpen.remove(p)
		if g.bySource[p.src]--; g.bySource[p.src] <= 0 {
			delete(g.bySource, p.src)
		}
	}
}

// expire drops p if it has not returned its cookie by now.
func (g *gate) expire(p *peer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p.state == peerNew || p.state == peerCookie {
		g.dropLocked(p, RefusedCookieTimeout)
	}
}

// attach binds the session of pion's connection for addr to its peer and
// returns the peer, or nil when the connection must be closed at once: its
// peer was dropped meanwhile.
func (g *gate) attach(addr netip.AddrPort, s *session) *peer {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.peers[unmapped(addr)]
	if p == nil || p.sess != nil {
		return nil
	}
	if p.state == peerDead {
		delete(g.peers, p.addr)
		return nil
	}
	p.sess = s
	return p
}

// release forgets p once its session has ended, and reports whether it was
// a proved session (one ConnAccepted reported).
func (g *gate) release(p *peer) (proved bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.peers[p.addr] == p {
		delete(g.peers, p.addr)
	}
	switch p.state {
	case peerNew, peerCookie:
		g.unlinkLocked(p)
		p.timer.Stop()
	case peerProved:
		proved = true
		g.s.proved.Add(-1)
	}
	if p.counted {
		g.s.sources.release(p.src)
		p.counted = false
	}
	p.state = peerDead
	return proved
}

// isProved reports whether p returned its cookie.
func (g *gate) isProved(p *peer) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return p.state == peerProved
}

// close stops new handshakes and drops every half-open one.
func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for g.halfOpen.head != nil {
		p := g.halfOpen.head
		g.unlinkLocked(p)
		p.timer.Stop()
		p.state = peerDead
		if p.sess != nil {
			p.sess.abort()
		} else {
			delete(g.peers, p.addr)
		}
	}
}

// counts returns the half-open handshakes and the addresses known (tests).
func (g *gate) counts() (halfOpen, peers int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.halfOpen.n, len(g.peers)
}

// peerList is a doubly linked list of peers, oldest first.
type peerList struct {
	head, tail *peer
	n          int
}

func (l *peerList) push(p *peer) {
	p.prev, p.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = p
	} else {
		l.head = p
	}
	l.tail = p
	l.n++
}

func (l *peerList) remove(p *peer) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		l.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		l.tail = p.prev
	}
	p.prev, p.next = nil, nil
	l.n--
}
