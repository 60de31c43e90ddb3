package server

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// TestManyConnections holds 5,000 TLS connections at once, the original
// server's design number, each doing an ECHO. It needs about 10,000 file
// descriptors in this one process (client and server ends). Under -race it
// holds 1,000.
func TestManyConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("holds 5,000 TLS connections; skipped in -short mode")
	}
	n, bound := 5000, time.Minute // generous: 2 shared cores
	if raceEnabled {
		// Under the race detector 5,000 handshakes take over a minute on
		// two cores; the full number is checked in runs without -race.
		n = 1000
	}
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			e := start(t, engine, modeTLS13, Options{IdleTimeout: 5 * time.Minute})
			cfg := e.clientTLS.Clone()
			// X25519 alone: the default hybrid post-quantum group costs
			// more CPU per handshake, on both ends of this one process.
			cfg.CurvePreferences = []tls.CurveID{tls.X25519}

			began := time.Now()
			conns := make([]net.Conn, n)
			errs := make(chan error, n)
			sem := make(chan struct{}, 64) // within the listen backlog
			var wg sync.WaitGroup
			for i := range n {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					c, err := echoOnce(e.addr, cfg, i)
					conns[i] = c
					if err != nil {
						errs <- fmt.Errorf("connection %d: %w", i, err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			defer func() {
				for _, c := range conns {
					if c != nil {
						c.Close()
					}
				}
			}()
			for err := range errs {
				t.Fatal(err)
			}
			e.rec.waitFor(t, fmt.Sprintf("%d connections at once", n), 10*time.Second, func() bool { return e.rec.peak >= n })
			took := time.Since(began)
			t.Logf("%d TLS 1.3 connections opened, each answered an ECHO, all held at once, in %v", n, took.Round(time.Millisecond))
			if took > bound {
				t.Errorf("took %v, want under %v", took, bound)
			}
			if e.rec.hsErrors != 0 {
				t.Errorf("got %d failed handshakes, want 0", e.rec.hsErrors)
			}
		})
	}
}

func echoOnce(addr string, cfg *tls.Config, i int) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	body := fmt.Appendf(nil, "connection %d", i)
	if _, err := c.Write(proto.AppendFrame(nil, proto.Echo, body)); err != nil {
		return c, err
	}
	f, err := receiveErr(c)
	if err != nil {
		return c, err
	}
	if f.Type != proto.Echo || !bytes.Equal(f.Body, body) {
		return c, fmt.Errorf("got (%v, %q), want the ECHO of %q", f.Type, f.Body, body)
	}
	return c, nil
}
