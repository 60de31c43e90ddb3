package server

import (
	"crypto/tls"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Issue 7, handshake-CPU exhaustion: per-source limits on concurrent
// connections and on the handshake rate.

func TestLimitKeyOf(t *testing.T) {
	if _, ok := limitKeyOf(&net.UnixAddr{Name: "/run/sc.sock", Net: "unix"}); ok {
		t.Error("limitKeyOf a unix address: got a source, want none (not limited)")
	}
	if got, ok := limitKeyOf(&net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 4242}); !ok || got != netip.MustParseAddr("2001:db8::") {
		t.Errorf("limitKeyOf a TCP address: got %v, %v; want 2001:db8::, true", got, ok)
	}
}

func TestAddrLimitsOptions(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.limits == nil {
		t.Fatal("defaults: got no table")
	}
	if rate, burst := s.limits.Rate(); s.limits.MaxConns() != DefaultSourceMaxConns || rate != DefaultSourceHandshakeRate || burst != 100 {
		t.Errorf("defaults: got max conns %d, rate %v, burst %v; want %d, %v, 100", s.limits.MaxConns(), rate, burst, DefaultSourceMaxConns, DefaultSourceHandshakeRate)
	}
	s, err = New(Options{SourceMaxConns: -1, SourceHandshakeRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	if s.limits != nil {
		t.Errorf("both limits off: got a table %+v, want none", s.limits)
	}
	s, err = New(Options{SourceMaxConns: -1, SourceHandshakeRate: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	if _, burst := s.limits.Rate(); s.limits.MaxConns() != 0 || burst != 1 {
		t.Errorf("conns off, rate 0.2: got max conns %d, burst %v; want 0 and 1", s.limits.MaxConns(), burst)
	}
	if _, err := New(Options{SourceHandshakeRate: math.Inf(1)}); err == nil {
		t.Error("an infinite rate: got no error")
	}
}

// needLocal skips the test where the local address from cannot be used:
// Linux routes all of 127.0.0.0/8 to the loopback device, other systems
// configure 127.0.0.1 alone.
func needLocal(t testing.TB, from string) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(from, "0"))
	if err != nil {
		t.Skipf("cannot use %s here: %v", from, err)
	}
	ln.Close()
}

// handshakeFrom dials addr from the local address from and completes a
// TLS handshake.
func handshakeFrom(addr, from string, cfg *tls.Config) (*tls.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// TestSourceHandshakeFlood: one address (127.0.0.2) opening TLS
// connections as fast as eight goroutines can is held to its rate —
// refused, counted, logged at most once a second — while another
// (127.0.0.1) still completes every handshake it starts during the flood
// (the default rate would hold it back too: the test sets one of its own).
// When the flood is over and its connections are closed, its entry goes.
func TestSourceHandshakeFlood(t *testing.T) {
	const rate, burst = 20, 40
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			needLocal(t, "127.0.0.2")
			logs := &countingHandler{Handler: testLogger(t).Handler(), counts: map[string]int{}}
			e := start(t, engine, modeTLS13, Options{SourceHandshakeRate: rate, SourceMaxConns: -1, Logger: slog.New(logs)})
			cfg := e.clientTLS.Clone()
			cfg.CurvePreferences = []tls.CurveID{tls.X25519} // cheaper, on both ends of this one process

			began := time.Now()
			stop := make(chan struct{})
			var flooded, floodOK atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						c, err := handshakeFrom(e.addr, "127.0.0.2", cfg)
						flooded.Add(1)
						if err == nil {
							floodOK.Add(1)
							c.Close()
						}
					}
				})
			}
			e.rec.waitFor(t, "the flood refused", 30*time.Second, func() bool { return e.rec.refused[RefusedSourceRate] >= 2*burst })

			// A well-behaved client: a handshake every 50 ms, for about
			// 600 ms of the flood (its own bucket allows 40 at once).
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for i := range 12 {
				<-tick.C
				c, err := handshakeFrom(e.addr, "127.0.0.1", cfg)
				if err != nil {
					t.Fatalf("handshake %d from 127.0.0.1 during the flood: %v", i, err)
				}
				if f := roundTrip(t, c, proto.Echo, []byte("still served")); string(f.Body) != "still served" {
					t.Fatalf("ECHO from 127.0.0.1 during the flood: got %q", f.Body)
				}
				c.Close()
			}
			close(stop)
			wg.Wait()
			took := time.Since(began)

			e.rec.mu.Lock()
			refused := e.rec.refused[RefusedSourceRate]
			e.rec.mu.Unlock()
			ok := floodOK.Load()
			t.Logf("%v: 127.0.0.2 tried %d handshakes, %d completed, %d refused", took.Round(time.Millisecond), flooded.Load(), ok, refused)
			if most := int64(burst + rate*took.Seconds() + 1); ok > most {
				t.Errorf("127.0.0.2 completed %d handshakes in %v, want at most %d (burst %d + %d a second)", ok, took, most, burst, rate)
			}
			logs.mu.Lock()
			logged := logs.counts["refusing connections: per-source limit"]
			logs.mu.Unlock()
			if most := int(took.Seconds()) + 1; logged < 1 || logged > most {
				t.Errorf("refusals logged %d times in %v, want 1 to %d (once a second at most)", logged, took, most)
			}

			e.rec.waitFor(t, "every connection closed", 30*time.Second, func() bool { return e.rec.active == 0 })
			e.srv.limits.Sweep(time.Now().Add(time.Minute))
			if n := e.srv.limits.Len(); n != 0 {
				t.Errorf("a minute after the flood: %d sources in the table, want 0", n)
			}
		})
	}
}

// TestSourceMaxConns: a source holding SourceMaxConns connections has the
// next one refused before its handshake, while another source is
// admitted; once one of its connections closes it is admitted again.
func TestSourceMaxConns(t *testing.T) {
	const most = 3
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			needLocal(t, "127.0.0.2")
			e := start(t, engine, modeTLS13, Options{SourceMaxConns: most, SourceHandshakeRate: -1})
			var held []*tls.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for i := range most {
				c, err := handshakeFrom(e.addr, "127.0.0.2", e.clientTLS)
				if err != nil {
					t.Fatalf("connection %d from 127.0.0.2: %v", i+1, err)
				}
				held = append(held, c)
			}
			if c, err := handshakeFrom(e.addr, "127.0.0.2", e.clientTLS); err == nil {
				c.Close()
				t.Fatalf("connection %d from 127.0.0.2: handshake done, want it refused", most+1)
			}
			e.rec.waitFor(t, "one refusal", 10*time.Second, func() bool {
				return e.rec.refused[RefusedSourceConns] == 1 && e.rec.handshakes == most
			})
			e.rec.mu.Lock()
			accepted := e.rec.accepted
			e.rec.mu.Unlock()
			if accepted != most {
				t.Errorf("connections accepted: got %d, want %d (the refused one is not)", accepted, most)
			}

			e.assertHealthy() // from 127.0.0.1

			held[0].Close()
			held = held[1:]
			e.rec.waitFor(t, "the closed connection counted", 10*time.Second, func() bool { return e.rec.closed[CloseEOF] >= 2 })
			c, err := handshakeFrom(e.addr, "127.0.0.2", e.clientTLS)
			if err != nil {
				t.Fatalf("after one closed, a connection from 127.0.0.2: %v", err)
			}
			held = append(held, c)
			if f := roundTrip(t, c, proto.Echo, []byte("back")); string(f.Body) != "back" {
				t.Fatalf("got %q", f.Body)
			}

			for _, c := range held {
				c.Close()
			}
			held = nil
			e.rec.waitFor(t, "every connection closed", 10*time.Second, func() bool { return e.rec.active == 0 })
			e.srv.limits.Sweep(time.Now())
			if n := e.srv.limits.Len(); n != 0 {
				t.Errorf("with no connection left: %d sources in the table, want 0", n)
			}
		})
	}
}
