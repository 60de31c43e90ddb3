package server

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Per-source limits (issue 7, handshake-CPU exhaustion). A full TLS
// handshake costs the server far more CPU than it costs the client — about
// 6 ms of a core with an RSA-4096 key, 0.4 ms with P-256 — so one host
// opening connections as fast as it can would take every core from
// everyone else. The server keeps, per source, a count of its open
// connections and a token bucket of new connections, and refuses a
// connection past either before any handshake work: accept, look up,
// close.
//
// A source is an IPv4 address, or an IPv6 /64. An IPv6 host is normally
// given a whole /64 (RFC 4291 section 2.5.1 fixes 64-bit interface
// identifiers; SLAAC and privacy addresses, RFC 8981, let a host use any
// of them at will), so keying IPv6 by the full address would give one
// host 2^64 fresh buckets. IPv4-mapped IPv6 addresses count as the IPv4
// address they carry.

// sourceOf returns the source a remote address counts against, and false
// when it is not an IP address (a listener wrapper's own kind of address):
// such connections are not limited per source.
func sourceOf(a net.Addr) (netip.Addr, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case nil:
		return netip.Addr{}, false
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.Addr{}, false
		}
	}
	return sourceKey(ap.Addr())
}

// sourceKey returns the source ip counts against: itself for IPv4, its /64
// for IPv6.
func sourceKey(ip netip.Addr) (netip.Addr, bool) {
	ip = ip.Unmap().WithZone("")
	switch {
	case ip.Is4():
		return ip, true
	case ip.Is6():
		p, _ := ip.Prefix(64)
		return p.Addr(), true
	}
	return netip.Addr{}, false
}

// sourceString is how logs name a source: the address, or the /64.
func sourceString(k netip.Addr) string {
	if k.Is6() {
		return netip.PrefixFrom(k, 64).String()
	}
	return k.String()
}

// sourceTableSpare is how many entries the table holds beyond one per
// connection the server can hold (MaxConns): room for sources with no
// connection whose buckets are still refilling.
const sourceTableSpare = 16384

// sourceSweepEvery is how often, at most, admit looks through the whole
// table for entries to drop.
const sourceSweepEvery = time.Second

// sourceLimits is the table of sources. An entry exists while its source
// has connections or a bucket that is not full; sweeps drop the others.
// The table holds at most bound entries: at the bound, a new source first
// makes admit sweep, then evicts entries with no connection, chosen at
// random (Go's map order) — their sources start again with a full bucket.
// Entries with connections are never evicted: there are at most MaxConns
// of them, fewer than the bound, so a source's count is always right. So
// an attacker with more addresses than the table's spare room can get a
// full bucket per address back sooner than the rate allows; MaxConns
// still bounds what it holds.
//
// It is safe for concurrent use: admit runs on the accept loops (and, for
// PROXY protocol connections, on the connections' goroutines), release on
// the connections' goroutines.
type sourceLimits struct {
	maxConns int     // per source; 0: no limit
	rate     float64 // new connections per second per source; 0: no limit
	burst    float64 // the bucket's size
	bound    int     // most entries

	mu        sync.Mutex
	table     map[netip.Addr]*sourceEntry
	lastSweep time.Time
}

type sourceEntry struct {
	conns  int
	tokens float64   // as of at
	at     time.Time // when tokens was brought up to date
}

// newSourceLimits returns the table for resolved options, or nil when both
// limits are off.
func newSourceLimits(o Options) *sourceLimits {
	l := &sourceLimits{bound: o.MaxConns + sourceTableSpare}
	if o.SourceMaxConns > 0 {
		l.maxConns = o.SourceMaxConns
	}
	if o.SourceHandshakeRate > 0 {
		l.rate = o.SourceHandshakeRate
		l.burst = sourceBurst(o.SourceHandshakeRate)
	}
	if l.maxConns == 0 && l.rate == 0 {
		return nil
	}
	l.table = make(map[netip.Addr]*sourceEntry)
	return l
}

// sourceBurst is the bucket size for a rate: two seconds' worth, at least
// one.
func sourceBurst(rate float64) float64 { return max(1, math.Ceil(2*rate)) }

// admit counts a new connection from source k at now, or returns the
// reason to refuse it: RefusedSourceConns when the source holds maxConns
// connections (no token is spent then), RefusedSourceRate when its bucket
// is empty. An admitted connection must be released once.
func (l *sourceLimits) admit(k netip.Addr, now time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sourceSweepEvery {
		l.sweepLocked(now)
	}
	e := l.table[k]
	if e == nil {
		if len(l.table) >= l.bound {
			l.sweepLocked(now)
			l.evictLocked()
		}
		e = &sourceEntry{tokens: l.burst, at: now}
		l.table[k] = e
	}
	if l.maxConns > 0 && e.conns >= l.maxConns {
		return RefusedSourceConns
	}
	if l.rate > 0 {
		e.tokens = l.tokensAt(e, now)
		e.at = now
		if e.tokens < 1 {
			return RefusedSourceRate
		}
		e.tokens--
	}
	e.conns++
	return ""
}

// release uncounts a connection admit counted.
func (l *sourceLimits) release(k netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.table[k]; e != nil && e.conns > 0 {
		e.conns--
	}
}

// tokensAt is e's bucket at now (a clock that went back adds nothing).
func (l *sourceLimits) tokensAt(e *sourceEntry, now time.Time) float64 {
	return min(l.burst, e.tokens+l.rate*max(now.Sub(e.at).Seconds(), 0))
}

// sweepLocked drops the entries that hold nothing: no connection and a
// full bucket.
func (l *sourceLimits) sweepLocked(now time.Time) {
	l.lastSweep = now
	for k, e := range l.table {
		if e.conns == 0 && (l.rate == 0 || l.tokensAt(e, now) >= l.burst) {
			delete(l.table, k)
		}
	}
}

// evictLocked makes room for one entry, dropping entries with no
// connection, at random, until the table is under its bound.
func (l *sourceLimits) evictLocked() {
	for k, e := range l.table {
		if len(l.table) < l.bound {
			return
		}
		if e.conns == 0 {
			delete(l.table, k)
		}
	}
}

// size returns how many sources the table holds (tests).
func (l *sourceLimits) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.table)
}

// sweep drops what a sweep at now would (tests).
func (l *sourceLimits) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
}
