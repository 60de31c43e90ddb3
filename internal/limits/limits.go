package limits

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// Per-source limits (issue 7, handshake-CPU exhaustion). A full TLS or
// DTLS handshake costs the server far more CPU than it costs the client
// (docs/BENCHMARKS.md has the figures: an RSA-4096 handshake costs over
// ten P-256 ones), so one host opening connections as fast as it can
// would take every core from everyone else. A server keeps, per source, a
// count of its open connections and a token bucket of new connections,
// and refuses a connection past either before any handshake work.
//
// A source — the key of the limits — is an IPv4 address, or an IPv6 /64.
// An IPv6 host is normally given a whole /64 (RFC 4291 section 2.5.1
// fixes 64-bit interface identifiers; SLAAC and privacy addresses, RFC
// 8981, let a host use any of them at will), so keying IPv6 by the full
// address would give one host 2^64 fresh buckets. IPv4-mapped IPv6
// addresses count as the IPv4 address they carry.

// Defaults both servers give their per-source options: generous enough
// for a few hundred players behind one NAT address, low enough that one
// address cannot hold a tenth of a server's default 10,000 connections or
// take more than a fraction of a core in handshakes, even RSA-4096 ones.
const (
	DefaultMaxConns = 1000
	DefaultRate     = 50.0
)

// Spare is how many entries a table should hold beyond one per
// connection its server can hold: room for sources with no connection
// whose buckets are still refilling.
const Spare = 16384

// sweepEvery is how often, at most, Admit looks through the whole table
// for entries to drop.
const sweepEvery = time.Second

// Key returns the source ip counts against: itself for IPv4 (an
// IPv4-mapped address is its IPv4 address), its /64 for IPv6, with any
// zone dropped. It returns false for an invalid address.
func Key(ip netip.Addr) (netip.Addr, bool) {
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

// KeyString is how logs name a key (as "source"): the address, or the
// /64.
func KeyString(k netip.Addr) string {
	if k.Is6() {
		return netip.PrefixFrom(k, 64).String()
	}
	return k.String()
}

// Verdict is what [Table.Admit] decides.
type Verdict uint8

const (
	// Admitted: the connection is counted; release it once.
	Admitted Verdict = iota
	// TooManyConns: the source holds MaxConns connections (no token is
	// spent).
	TooManyConns
	// TooFast: the source's bucket is empty.
	TooFast
)

// Options configures a [Table].
type Options struct {
	// MaxConns bounds the connections of one source; zero or less means
	// no limit.
	MaxConns int
	// Rate bounds the new connections per second of one source, as a
	// token bucket of two seconds' worth (at least one); zero or less
	// means no limit.
	Rate float64
	// Bound is the most entries the table holds: the server's most
	// connections plus [Spare]. Zero means Spare alone.
	Bound int
}

// Table is the table of sources. An entry exists while its source has
// connections or a bucket that is not full; sweeps drop the others. The
// table holds at most Bound entries: at the bound, a new source first
// makes Admit sweep, then evicts entries with no connection, chosen at
// random (Go's map order) — their sources start again with a full
// bucket. Entries with connections are never evicted: a server holds
// fewer connections than the bound, so a source's count is always right.
// So an attacker with more sources than the table's spare room can get a
// full bucket per source back sooner than the rate allows; the server's
// connection limit still bounds what it holds.
//
// Make one with [New]. It is safe for concurrent use.
type Table struct {
	maxConns int     // 0: no limit
	rate     float64 // 0: no limit
	burst    float64 // the bucket's size
	bound    int

	mu        sync.Mutex
	table     map[netip.Addr]*entry
	lastSweep time.Time
}

type entry struct {
	conns  int
	tokens float64   // as of at
	at     time.Time // when tokens was brought up to date
}

// New returns the table for o, or nil when both limits are off.
func New(o Options) *Table {
	t := &Table{bound: o.Bound}
	if t.bound <= 0 {
		t.bound = Spare
	}
	if o.MaxConns > 0 {
		t.maxConns = o.MaxConns
	}
	if o.Rate > 0 {
		t.rate = o.Rate
		t.burst = max(1, math.Ceil(2*o.Rate))
	}
	if t.maxConns == 0 && t.rate == 0 {
		return nil
	}
	t.table = make(map[netip.Addr]*entry)
	return t
}

// MaxConns returns the connection limit per source (0: none).
func (t *Table) MaxConns() int { return t.maxConns }

// Rate returns the new connections per second allowed a source (0:
// no limit) and the size of its bucket.
func (t *Table) Rate() (rate, burst float64) { return t.rate, t.burst }

// Admit counts a new connection from source k at now, or says which limit
// refuses it. An admitted connection must be released once.
func (t *Table) Admit(k netip.Addr, now time.Time) Verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.lastSweep) >= sweepEvery {
		t.sweepLocked(now)
	}
	e := t.table[k]
	if e == nil {
		if len(t.table) >= t.bound {
			t.sweepLocked(now)
			t.evictLocked()
		}
		e = &entry{tokens: t.burst, at: now}
		t.table[k] = e
	}
	if t.maxConns > 0 && e.conns >= t.maxConns {
		return TooManyConns
	}
	if t.rate > 0 {
		e.tokens = t.tokensAt(e, now)
		e.at = now
		if e.tokens < 1 {
			return TooFast
		}
		e.tokens--
	}
	e.conns++
	return Admitted
}

// Release uncounts a connection Admit counted.
func (t *Table) Release(k netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.table[k]; e != nil && e.conns > 0 {
		e.conns--
	}
}

// Conns returns how many connections source k holds.
func (t *Table) Conns(k netip.Addr) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.table[k]; e != nil {
		return e.conns
	}
	return 0
}

// Len returns how many sources the table holds.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.table)
}

// Sweep drops the entries that hold nothing at now: no connection and a
// full bucket. Admit sweeps by itself at most once a second.
func (t *Table) Sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(now)
}

// tokensAt is e's bucket at now (a clock that went back adds nothing).
func (t *Table) tokensAt(e *entry, now time.Time) float64 {
	return min(t.burst, e.tokens+t.rate*max(now.Sub(e.at).Seconds(), 0))
}

func (t *Table) sweepLocked(now time.Time) {
	t.lastSweep = now
	for k, e := range t.table {
		if e.conns == 0 && (t.rate == 0 || t.tokensAt(e, now) >= t.burst) {
			delete(t.table, k)
		}
	}
}

// evictLocked makes room for one entry, dropping entries with no
// connection, at random, until the table is under its bound.
func (t *Table) evictLocked() {
	for k, e := range t.table {
		if len(t.table) < t.bound {
			return
		}
		if e.conns == 0 {
			delete(t.table, k)
		}
	}
}
