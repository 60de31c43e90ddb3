package certcmd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/dtls"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// fingerprint and inspect --udp fetch a DTLS server's certificate without
// trusting it.
func TestInspectDTLSServer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	l := pki.DefaultLayout(dir)
	pair, err := pki.LoadPair(l.ServerCert, l.ServerKey, pki.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantPin := pinning.PinOf(pair.Leaf()).String()
	srv, err := dtls.New(dtls.Options{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair.TLSCertificate(), nil },
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), pc) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}()
	addr := pc.LocalAddr().String()
	stdout, stderr, code := run(t, Env{}, "fingerprint", "--udp", addr)
	if code != 0 || strings.TrimSpace(stdout) != wantPin {
		t.Errorf("fingerprint --udp: got %q (exit %d, %s), want %s", stdout, code, stderr, wantPin)
	}
	stdout, stderr, code = run(t, Env{}, "inspect", "--udp", "--json", addr)
	if code != 0 {
		t.Fatalf("inspect --udp: exit %d: %s", code, stderr)
	}
	var got inspectJSON
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if got.TLS == nil || got.TLS.Version != "DTLS 1.2" || !strings.Contains(got.TLS.CipherSuite, "ECDHE") || got.TLS.Verified || len(got.Certificates) != 1 || got.Certificates[0].Pin != wantPin {
		t.Errorf("inspect --udp: got %+v", got)
	}
	// Nothing on the port: a clear error, within --timeout.
	dead, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	_, stderr, code = run(t, Env{}, "fingerprint", "--udp", "--timeout", "500ms", deadAddr)
	if code != 1 || !strings.Contains(stderr, "is a DTLS server") {
		t.Errorf("nothing listening: exit %d, %q", code, stderr)
	}
}
