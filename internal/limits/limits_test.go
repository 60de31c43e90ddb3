package limits

import (
	"net/netip"
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"IPv4", "192.0.2.1", "192.0.2.1"},
		{"IPv4-mapped IPv6 counts as IPv4", "::ffff:192.0.2.1", "192.0.2.1"},
		{"IPv6 by /64", "2001:db8::1", "2001:db8::"},
		{"same /64, other host bits", "2001:db8::ffff:abcd:1", "2001:db8::"},
		{"next /64", "2001:db8:0:1::1", "2001:db8:0:1::"},
		{"zone dropped", "fe80::1%eth0", "fe80::"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Key(netip.MustParseAddr(tt.in))
			if !ok || got != netip.MustParseAddr(tt.want) {
				t.Errorf("Key(%s): got %v, %v; want %s, true", tt.in, got, ok, tt.want)
			}
		})
	}
	if _, ok := Key(netip.Addr{}); ok {
		t.Error("Key of the zero Addr: got a source, want none")
	}
	if got := KeyString(netip.MustParseAddr("2001:db8::")); got != "2001:db8::/64" {
		t.Errorf("KeyString of an IPv6 source: got %q, want 2001:db8::/64", got)
	}
	if got := KeyString(netip.MustParseAddr("192.0.2.1")); got != "192.0.2.1" {
		t.Errorf("KeyString of an IPv4 source: got %q, want 192.0.2.1", got)
	}
}

func TestNew(t *testing.T) {
	if l := New(Options{}); l != nil {
		t.Errorf("both limits off: got a table %+v, want none", l)
	}
	l := New(Options{MaxConns: DefaultMaxConns, Rate: DefaultRate})
	if rate, burst := l.Rate(); l.MaxConns() != DefaultMaxConns || rate != DefaultRate || burst != 100 || l.bound != Spare {
		t.Errorf("defaults: got max conns %d, rate %v, burst %v, bound %d; want %d, %v, 100, %d", l.MaxConns(), rate, burst, l.bound, DefaultMaxConns, DefaultRate, Spare)
	}
	l = New(Options{Rate: 0.2})
	if rate, burst := l.Rate(); l.MaxConns() != 0 || rate != 0.2 || burst != 1 {
		t.Errorf("conns off, rate 0.2: got max conns %d, rate %v, burst %v; want 0, 0.2 and 1", l.MaxConns(), rate, burst)
	}
}

func TestTable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	newTable := func() *Table {
		return New(Options{MaxConns: 3, Rate: 10, Bound: 100 + Spare})
	}
	admit := func(t *testing.T, l *Table, k netip.Addr, at time.Time, want Verdict) {
		t.Helper()
		if got := l.Admit(k, at); got != want {
			t.Fatalf("Admit %v at +%v: got %d, want %d", k, at.Sub(t0), got, want)
		}
	}

	t.Run("concurrent connections", func(t *testing.T) {
		l := newTable()
		for range 3 {
			admit(t, l, a, t0, Admitted)
		}
		admit(t, l, a, t0, TooManyConns)
		admit(t, l, b, t0, Admitted) // another source is not affected
		l.Release(a)
		admit(t, l, a, t0, Admitted)
		// The refusal spent no token: 20 - 4 admitted.
		if got := l.table[a].tokens; got != 16 {
			t.Errorf("tokens after 4 admitted and 1 refused: got %v, want 16", got)
		}
	})
	t.Run("rate", func(t *testing.T) {
		l := newTable()
		for range 20 { // the burst: two seconds' worth
			admit(t, l, a, t0, Admitted)
			l.Release(a)
		}
		admit(t, l, a, t0, TooFast)
		admit(t, l, a, t0.Add(50*time.Millisecond), TooFast)
		admit(t, l, a, t0.Add(100*time.Millisecond), Admitted) // one token a tenth of a second
		l.Release(a)
		admit(t, l, a, t0.Add(100*time.Millisecond), TooFast)
		admit(t, l, b, t0, Admitted)
	})
	t.Run("a clock that goes back adds nothing", func(t *testing.T) {
		l := newTable()
		for range 20 {
			admit(t, l, a, t0, Admitted)
			l.Release(a)
		}
		admit(t, l, a, t0.Add(-time.Hour), TooFast)
	})
	t.Run("entries expire", func(t *testing.T) {
		l := newTable()
		admit(t, l, a, t0, Admitted)
		admit(t, l, b, t0, Admitted)
		l.Release(b)
		l.Sweep(t0.Add(50 * time.Millisecond))
		if got := l.Len(); got != 2 {
			t.Fatalf("50 ms later: got %d entries, want 2 (a holds a connection, b's bucket is refilling)", got)
		}
		l.Sweep(t0.Add(100 * time.Millisecond))
		if got := l.Len(); got != 1 {
			t.Fatalf("b's bucket full: got %d entries, want 1 (a holds a connection)", got)
		}
		l.Release(a)
		l.Sweep(t0.Add(time.Hour))
		if got := l.Len(); got != 0 {
			t.Fatalf("nothing held: got %d entries, want 0", got)
		}
		// Admit sweeps by itself, at most once a second.
		admit(t, l, a, t0.Add(time.Hour), Admitted)
		l.Release(a)
		admit(t, l, b, t0.Add(time.Hour+3*time.Second), Admitted)
		if got := l.Len(); got != 1 {
			t.Fatalf("after Admit swept: got %d entries, want 1", got)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		l := New(Options{MaxConns: 3, Rate: 10, Bound: 8})
		held := netip.MustParseAddr("198.51.100.1")
		admit(t, l, held, t0, Admitted)
		for i := range 100 {
			k := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
			admit(t, l, k, t0, Admitted)
			l.Release(k) // no connection, a bucket that is not full
			if got := l.Len(); got > 8 {
				t.Fatalf("after %d sources: %d entries, want at most 8", i+2, got)
			}
		}
		if got := l.Conns(held); got != 1 {
			t.Fatalf("the source holding a connection: got %d connections, want it kept with 1", got)
		}
	})
}
