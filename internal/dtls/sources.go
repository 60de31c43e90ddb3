package dtls

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// Per-source limits, applied when a source returns its cookie: before
// that its address is not proved, and counting it would let a spoofer
// spend a real player's budget. A source is an IPv4 address or an IPv6
// /64 (an IPv6 host may use any address of its /64), as over TCP; the TCP
// server's table (internal/server, limits.go) is the model.

// sourceKey returns the source ip counts against: itself for IPv4, its /64
// for IPv6.
func sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// sourceString is how logs name a source: the address, or the /64.
func sourceString(k netip.Addr) string {
	if k.Is6() {
		return netip.PrefixFrom(k, 64).String()
	}
	return k.String()
}

// sourceSweepEvery is how often, at most, admit drops entries that hold
// nothing.
const sourceSweepEvery = time.Second

// sourceLimits counts, per proved source, its sessions and a token bucket
// of its handshakes. Entries exist only for sources that returned a
// cookie — addresses that answer — and only while they hold a session or
// a bucket that is not full, so the table stays small. Safe for concurrent
// use.
type sourceLimits struct {
	maxSessions int     // 0: no limit
	rate        float64 // handshakes per second; 0: no limit
	burst       float64

	mu        sync.Mutex
	table     map[netip.Addr]*sourceEntry
	lastSweep time.Time
}

type sourceEntry struct {
	sessions int
	tokens   float64
	at       time.Time
}

func newSourceLimits(o Options) *sourceLimits {
	l := &sourceLimits{table: make(map[netip.Addr]*sourceEntry)}
	if o.SourceMaxSessions > 0 {
		l.maxSessions = o.SourceMaxSessions
	}
	if o.SourceHandshakeRate > 0 {
		l.rate = o.SourceHandshakeRate
		l.burst = max(1, math.Ceil(2*o.SourceHandshakeRate))
	}
	return l
}

// admit counts a new session of source k at now, or returns the reason to
// refuse it. An admitted session must be released once.
func (l *sourceLimits) admit(k netip.Addr, now time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sourceSweepEvery {
		l.sweepLocked(now)
	}
	e := l.table[k]
	if e == nil {
		e = &sourceEntry{tokens: l.burst, at: now}
		l.table[k] = e
	}
	if l.maxSessions > 0 && e.sessions >= l.maxSessions {
		return RefusedSourceSessions
	}
	if l.rate > 0 {
		e.tokens = min(l.burst, e.tokens+l.rate*max(now.Sub(e.at).Seconds(), 0))
		e.at = now
		if e.tokens < 1 {
			return RefusedSourceRate
		}
		e.tokens--
	}
	e.sessions++
	return ""
}

// release uncounts a session admit counted.
func (l *sourceLimits) release(k netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.table[k]; e != nil && e.sessions > 0 {
		e.sessions--
	}
}

func (l *sourceLimits) sweepLocked(now time.Time) {
	l.lastSweep = now
	for k, e := range l.table {
		full := l.rate == 0 || e.tokens+l.rate*max(now.Sub(e.at).Seconds(), 0) >= l.burst
		if e.sessions == 0 && full {
			delete(l.table, k)
		}
	}
}
