package metrics

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
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

// BenchmarkServerEcho is the whole cost on a real server: pipelined ECHO
// requests of 64 bytes, 64 to a batch, over loopback TLS 1.3, with no
// Events (the server then skips timing each message), with NopEvents (it
// times each message: the cost of the clock) and with a Metrics. Each op
// is one request.
func BenchmarkServerEcho(b *testing.B) {
	for _, eng := range server.Engines() {
		for _, events := range []string{"none", "nop", "metrics"} {
			b.Run(eng+"/events="+events, func(b *testing.B) { benchmarkServerEcho(b, eng, events) })
		}
	}
}

func benchmarkServerEcho(b *testing.B, engine string, events string) {
	const batch = 64
	now := time.Now()
	cert := testutil.MustCert(b, testutil.CertOptions{Serial: 1, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	opts := server.Options{
		Engine: engine,
		TLSConfig: &tls.Config{
			GetCertificate:              func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert.TLS, nil },
			DynamicRecordSizingDisabled: true,
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	switch events {
	case "nop":
		opts.Events = server.NopEvents{}
	case "metrics":
		opts.Events = mustNew(b, Options{})
	}
	srv, err := server.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background(), ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-errc
	}()
	c, err := client.Dial(context.Background(), ln.Addr().String(), client.Options{
		TLSConfig: &tls.Config{RootCAs: cert.Pool, MinVersion: tls.VersionTLS13},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	body := make([]byte, 64)
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(batch, b.N-sent)
		for range n {
			if err := c.Send(proto.Echo, body); err != nil {
				b.Fatal(err)
			}
		}
		for range n {
			if _, err := c.Receive(); err != nil {
				b.Fatal(err)
			}
		}
		sent += n
	}
}
