package dtls

import (
	"sync"
	"testing"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// BenchmarkHandshake measures full DTLS handshakes (with the cookie
// exchange) and one ECHO each, client and server in one process, 8 at a
// time. docs/BENCHMARKS.md has the per-server-CPU-second figure from
// separate processes (sc-client bench handshake --udp).
func BenchmarkHandshake(b *testing.B) {
	e := start(b, Options{})
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for range b.N {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := e.dialOn(listenLoopback(b))
			if err != nil {
				b.Error(err)
				return
			}
			roundTrip(b, c, proto.Echo, []byte("x"))
			c.Close()
		})
	}
	wg.Wait()
}

// BenchmarkEcho measures ECHO round trips on one session.
func BenchmarkEcho(b *testing.B) {
	e := start(b, Options{})
	c := e.dial()
	req := proto.AppendFrame(nil, proto.Echo, make([]byte, 64))
	buf := make([]byte, 2048)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
