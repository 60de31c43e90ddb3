package servercmd

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Bad DTLS flags are usage errors naming the flag.
func TestDTLSFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"with plaintext", []string{"--plaintext", "--dtls"}, "--plaintext"},
		{"listen with plaintext", []string{"--plaintext", "--dtls-listen", "127.0.0.1:0"}, "--plaintext"},
		{"listen without port", []string{"--dtls-listen", "localhost"}, "--dtls-listen"},
		{"idle timeout zero", []string{"--dtls", "--dtls-idle-timeout", "0s"}, "--dtls-idle-timeout"},
		{"max sessions zero", []string{"--dtls", "--dtls-max-sessions", "0"}, "--dtls-max-sessions"},
		{"a DTLS flag without DTLS", []string{"--dtls-max-sessions", "5"}, "add --dtls"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			chdir(t, dir)
			cmd := NewRootCmd(Env{})
			cmd.SetArgs(append([]string{"--listen", "127.0.0.1:0"}, tt.args...))
			var out, errOut strings.Builder
			cmd.SetOut(&out)
			cmd.SetErr(&errOut)
			if code := cli.Main(context.Background(), cmd); code != cli.ExitUsage {
				t.Errorf("exit code %d, want %d\n%s", code, cli.ExitUsage, errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("stderr does not name %q:\n%s", tt.want, errOut.String())
			}
			if _, err := os.Stat(filepath.Join(dir, "certs")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a usage error created %s/certs", dir)
			}
		})
	}
}

// sc-server --dtls serves the same certificate over DTLS as over TLS,
// verified by pin with pinning's VerifyPeer; a reload reaches the next DTLS
// handshake; the metrics carry transport="dtls"; SIGTERM stops both.
func TestServesDTLS(t *testing.T) {
	l := mustInit(t)
	dtlsAddr := make(chan net.Addr, 1)
	r := startServer(t, Env{DTLSListening: func(a net.Addr) { dtlsAddr <- a }},
		append(layoutArgs(l), "--dtls-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-format", "json")...)
	addr := (<-dtlsAddr).String()
	if !strings.Contains(r.stderr.String(), `"dtls_addr":"`+addr+`"`) {
		t.Errorf("the serving log line does not name the DTLS address %s:\n%s", addr, r.stderr)
	}
	leaf, err := pki.ReadCertificateFile(l.ServerCert)
	if err != nil {
		t.Fatal(err)
	}
	pin := pinning.PinOf(leaf)
	dial := func() *client.Conn {
		t.Helper()
		tr, err := pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModePin, Pins: mustPins(t, pin), Host: addr})
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(context.Background(), addr, client.Options{Timeout: 10 * time.Second, DTLS: &client.DTLSOptions{Verify: tr.VerifyPeer}})
		if err != nil {
			t.Fatalf("dialing DTLS %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := c.Do(ctx, proto.Echo, []byte("over UDP")); err != nil || string(got) != "over UDP" {
		t.Fatalf("ECHO: %q, %v", got, err)
	}
	cur, next, err := c.Keys(ctx)
	if err != nil || cur != pin.String() || len(next) != 1 {
		t.Errorf("KEYS over DTLS: %q %q %v, want the served pin %v and the next one", cur, next, err, pin)
	}
	cs, _ := c.ConnectionState()
	serial := leaf.SerialNumber

	// A keep-key renewal, then a reload: the next DTLS handshake sees it.
	if _, err := pki.Rotate(context.Background(), pki.RotateOptions{CertPath: l.ServerCert, KeyPath: l.ServerKey}); err != nil {
		t.Fatal(err)
	}
	r.requestReload()
	c2 := dial()
	cs2, _ := c2.ConnectionState()
	if cs2.PeerCertificates[0].SerialNumber.Cmp(serial) == 0 || cs.PeerCertificates[0].SerialNumber.Cmp(serial) != 0 {
		t.Errorf("after the reload the DTLS handshake still presents serial %v", serial)
	}
	if got, err := c.Do(ctx, proto.Echo, []byte("old session")); err != nil || string(got) != "old session" {
		t.Errorf("the session from before the reload: %q, %v", got, err)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d, want 0\n%s", code, r.stderr)
	}
	if !strings.Contains(r.stderr.String(), `"msg":"shutdown complete","transport":"dtls"`) {
		t.Errorf("no DTLS shutdown in the log:\n%s", r.stderr)
	}
}

func mustPins(t *testing.T, pins ...pinning.Pin) pinning.Set {
	t.Helper()
	s, err := pinning.NewSet(pins[0], pins[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
