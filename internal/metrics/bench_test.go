package metrics

import (
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
)

// The Events methods are on the server's hot path: Message once per
// request, the others once per connection. Run with
//
//	go test -run '^$' -bench . -benchmem ./internal/metrics/

func BenchmarkMessage(b *testing.B) {
	m := mustNew(b, Options{OmitRuntime: true})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Message(proto.Echo, time.Duration(i&1023)*time.Nanosecond, 72, 72)
	}
}

// BenchmarkMessageParallel is Message from every core at once, as a busy
// server calls it: the counters' cache lines are shared.
func BenchmarkMessageParallel(b *testing.B) {
	m := mustNew(b, Options{OmitRuntime: true})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Message(proto.Echo, 800*time.Nanosecond, 72, 72)
		}
	})
}

func BenchmarkHandshake(b *testing.B) {
	tests := []struct {
		name  string
		state tls.ConnectionState
		err   error
	}{
		{"ok", tls.ConnectionState{Version: tls.VersionTLS13, DidResume: true}, nil},
		{"client_closed", tls.ConnectionState{}, io.EOF},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			m := mustNew(b, Options{OmitRuntime: true})
			b.ReportAllocs()
			for b.Loop() {
				m.Handshake(tt.state, time.Millisecond, tt.err)
			}
		})
	}
}

// BenchmarkConnection is the per-connection bookkeeping: accepted, then
// closed.
func BenchmarkConnection(b *testing.B) {
	m := mustNew(b, Options{OmitRuntime: true})
	b.ReportAllocs()
	for b.Loop() {
		m.ConnAccepted()
		m.ConnClosed(server.CloseEOF)
	}
}

func BenchmarkProtocolError(b *testing.B) {
	m := mustNew(b, Options{OmitRuntime: true})
	b.ReportAllocs()
	for b.Loop() {
		m.ProtocolError(proto.KindUnknownType)
	}
}

// BenchmarkScrape is one /metrics gather with the runtime collectors, to
// size the scrape interval against the server's CPU.
func BenchmarkScrape(b *testing.B) {
	m := mustNew(b, Options{MaxConns: 10000})
	m.Message(proto.Echo, time.Microsecond, 72, 72)
	m.Handshake(tls.ConnectionState{Version: tls.VersionTLS13}, time.Millisecond, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Registry().Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
