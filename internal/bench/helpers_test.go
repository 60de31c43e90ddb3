package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
)

// testServer is an in-process server on 127.0.0.1:0.
type testServer struct {
	addr      string
	clientTLS *tls.Config // nil for plaintext
}

// mustServe starts a server, TLS unless plaintext, stopped when the test
// ends.
func mustServe(t testing.TB, plaintext bool) *testServer {
	t.Helper()
	opts := server.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ts := &testServer{}
	if !plaintext {
		tcert := testutil.MustCert(t, testutil.CertOptions{})
		cert, pool := tcert.TLS, tcert.Pool
		opts.TLSConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
		}
		// X25519 alone keeps handshakes cheap for the race detector;
		// the default hybrid group is measured by scripts/bench.sh.
		ts.clientTLS = &tls.Config{RootCAs: pool, CurvePreferences: []tls.CurveID{tls.X25519}}
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	ts.addr = ln.Addr().String()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutting the server down: %v", err)
		}
		if err := <-errc; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

func mustNew(t testing.TB, opts Options) *Bench {
	t.Helper()
	b, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

func mustRun(t testing.TB, b *Bench) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := b.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}
