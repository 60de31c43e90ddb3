package server

import (
	"context"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Per-address limits, which Options and the logs call per-source (issue
// 7, handshake-CPU exhaustion). A full TLS handshake costs the server far
// more CPU than it costs the client (docs/BENCHMARKS.md has the figures:
// an RSA-4096 handshake costs over ten P-256 ones), so one host opening
// connections as fast as it can would take every core from everyone
// else. The server keeps, per client address, a count of its open
// connections and a token bucket of new connections, and refuses a
// connection past either before any handshake work: accept, look up,
// close.
//
// A client address — the key of the limits — is an IPv4 address, or an
// IPv6 /64. An IPv6 host is normally
// given a whole /64 (RFC 4291 section 2.5.1 fixes 64-bit interface
// identifiers; SLAAC and privacy addresses, RFC 8981, let a host use any
// of them at will), so keying IPv6 by the full address would give one
// host 2^64 fresh buckets. IPv4-mapped IPv6 addresses count as the IPv4
// address they carry.

// limitKeyOf returns the key a remote address counts against, and false
// when it is not an IP address (a listener wrapper's own kind of address):
// such connections are not limited per address.
func limitKeyOf(a net.Addr) (netip.Addr, bool) {
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
	return limitKey(ap.Addr())
}

// limitKey returns the key ip counts against: itself for IPv4, its /64
// for IPv6.
func limitKey(ip netip.Addr) (netip.Addr, bool) {
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

// limitKeyString is how logs name a key (as "source"): the address, or
// the /64.
func limitKeyString(k netip.Addr) string {
	if k.Is6() {
		return netip.PrefixFrom(k, 64).String()
	}
	return k.String()
}

// limitTableSpare is how many entries the table holds beyond one per
// connection the server can hold (MaxConns): room for addresses with no
// connection whose buckets are still refilling.
const limitTableSpare = 16384

// limitSweepEvery is how often, at most, admit looks through the whole
// table for entries to drop.
const limitSweepEvery = time.Second

// addrLimits is the table of client addresses. An entry exists while its
// address has connections or a bucket that is not full; sweeps drop the
// others. The table holds at most bound entries: at the bound, a new
// address first makes admit sweep, then evicts entries with no
// connection, chosen at random (Go's map order) — their addresses start
// again with a full bucket. Entries with connections are never evicted:
// there are at most MaxConns of them, fewer than the bound, so an
// address's count is always right. So an attacker with more addresses
// than the table's spare room can get a full bucket per address back
// sooner than the rate allows; MaxConns still bounds what it holds.
//
// It is safe for concurrent use: admit runs on the accept loops (and, for
// PROXY protocol connections, on the connections' goroutines), release on
// the connections' goroutines.
type addrLimits struct {
	maxConns int     // per address; 0: no limit
	rate     float64 // new connections per second per address; 0: no limit
	burst    float64 // the bucket's size
	bound    int     // most entries

	mu        sync.Mutex
	table     map[netip.Addr]*addrEntry
	lastSweep time.Time
}

type addrEntry struct {
	conns  int
	tokens float64   // as of at
	at     time.Time // when tokens was brought up to date
}

// newAddrLimits returns the table for resolved options, or nil when both
// limits are off.
func newAddrLimits(o Options) *addrLimits {
	l := &addrLimits{bound: o.MaxConns + limitTableSpare}
	if o.SourceMaxConns > 0 {
		l.maxConns = o.SourceMaxConns
	}
	if o.SourceHandshakeRate > 0 {
		l.rate = o.SourceHandshakeRate
		l.burst = burstOf(o.SourceHandshakeRate)
	}
	if l.maxConns == 0 && l.rate == 0 {
		return nil
	}
	l.table = make(map[netip.Addr]*addrEntry)
	return l
}

// burstOf is the bucket size for a rate: two seconds' worth, at least
// one.
func burstOf(rate float64) float64 { return max(1, math.Ceil(2*rate)) }

// admit counts a new connection from address k at now, or returns the
// reason to refuse it: RefusedSourceConns when the address holds maxConns
// connections (no token is spent then), RefusedSourceRate when its bucket
// is empty. An admitted connection must be released once.
func (l *addrLimits) admit(k netip.Addr, now time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= limitSweepEvery {
		l.sweepLocked(now)
	}
	e := l.table[k]
	if e == nil {
		if len(l.table) >= l.bound {
			l.sweepLocked(now)
			l.evictLocked()
		}
		e = &addrEntry{tokens: l.burst, at: now}
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
func (l *addrLimits) release(k netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.table[k]; e != nil && e.conns > 0 {
		e.conns--
	}
}

// tokensAt is e's bucket at now (a clock that went back adds nothing).
func (l *addrLimits) tokensAt(e *addrEntry, now time.Time) float64 {
	return min(l.burst, e.tokens+l.rate*max(now.Sub(e.at).Seconds(), 0))
}

// sweepLocked drops the entries that hold nothing: no connection and a
// full bucket.
func (l *addrLimits) sweepLocked(now time.Time) {
	l.lastSweep = now
	for k, e := range l.table {
		if e.conns == 0 && (l.rate == 0 || l.tokensAt(e, now) >= l.burst) {
			delete(l.table, k)
		}
	}
}

// evictLocked makes room for one entry, dropping entries with no
// connection, at random, until the table is under its bound.
func (l *addrLimits) evictLocked() {
	for k, e := range l.table {
		if len(l.table) < l.bound {
			return
		}
		if e.conns == 0 {
			delete(l.table, k)
		}
	}
}

// size returns how many addresses the table holds (tests).
func (l *addrLimits) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.table)
}

// sweep drops what a sweep at now would (tests).
func (l *addrLimits) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
}

// limitAddr counts c against the limits of its client's address, or
// returns the reason to refuse it, which it logs at
// most once a second for all addresses together.
func (s *Server) limitAddr(ctx context.Context, c *conn) string {
	if s.limits == nil {
		return ""
	}
	k, ok := limitKeyOf(c.remoteAddr())
	if !ok {
		return ""
	}
	reason := s.limits.admit(k, time.Now())
	if reason == "" {
		c.limitKey, c.limited = k, true
		return ""
	}
	if ok, suppressed := s.limitLog.allow(time.Now()); ok {
		limit := slog.Int("source_max_conns", s.opts.SourceMaxConns)
		if reason == RefusedSourceRate {
			limit = slog.Float64("source_handshake_rate", s.opts.SourceHandshakeRate)
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "refusing connections: per-source limit",
			slog.String("source", limitKeyString(k)), slog.String("reason", reason), limit, slog.Int("suppressed", suppressed))
	}
	return reason
}

// releaseLimit uncounts c from its address's limits, once.
func (s *Server) releaseLimit(c *conn) {
	if c.limited {
		c.limited = false
		s.limits.release(c.limitKey)
	}
}
