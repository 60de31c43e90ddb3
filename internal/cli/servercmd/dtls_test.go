package servercmd

import (
	"context"
	"errors"
	"fmt"
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

// udpTakenPort returns a TCP listener on a loopback port whose UDP twin
// the returned socket holds, as another program's UDP socket may hold the
// port the system picks for TCP. The test's end closes both.
func udpTakenPort(t *testing.T) (net.Listener, net.PacketConn) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close() // TCP has that port taken: try another
			continue
		}
		t.Cleanup(func() { ln.Close(); pc.Close() })
		return ln, pc
	}
	t.Fatal("found no loopback port free on TCP whose UDP twin could be held")
	return nil, nil
}

// With --listen's port 0 and --dtls, a port the system picks for TCP but
// another program holds on UDP is passed over for one free on both, and
// DTLS serves on TCP's port: tests and load runs that listen on port 0
// beside other programs never fail with "address already in use".
func TestDTLSPortZeroSkipsTakenUDPPort(t *testing.T) {
	l := mustInit(t)
	taken, held := udpTakenPort(t)
	calls := 0
	env := Env{listenTCP: func(network, address string) (net.Listener, error) {
		calls++
		if calls == 1 {
			return taken, nil // what the system might pick: its UDP twin is held
		}
		return net.Listen(network, address)
	}}
	dtlsAddr := make(chan net.Addr, 1)
	env.DTLSListening = func(a net.Addr) { dtlsAddr <- a }
	r := startServer(t, env, append(layoutArgs(l), "--dtls")...)
	udp := (<-dtlsAddr).(*net.UDPAddr)
	_, tcpPort, _ := net.SplitHostPort(r.addr)
	if fmt.Sprint(udp.Port) != tcpPort {
		t.Errorf("DTLS serves on UDP %v and TLS on TCP %s: want one port for both", udp, r.addr)
	}
	if udp.Port == held.LocalAddr().(*net.UDPAddr).Port {
		t.Errorf("DTLS got the UDP port another socket holds (%v)", held.LocalAddr())
	}
	if calls != 2 {
		t.Errorf("the TCP port was bound %d times, want 2 (the taken pair, then a free one)", calls)
	}
	if _, err := taken.Accept(); err == nil {
		t.Error("the TCP listener of the pair given up is still open")
	}

	// One HOST:PORT for both: DTLS answers at the TCP address.
	leaf, err := pki.ReadCertificateFile(l.ServerCert)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModePin, Pins: mustPins(t, pinning.PinOf(leaf)), Host: r.addr})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(context.Background(), r.addr, client.Options{Timeout: 10 * time.Second, DTLS: &client.DTLSOptions{Verify: tr.VerifyPeer}})
	if err != nil {
		t.Fatalf("dialing DTLS at the TCP address %s: %v", r.addr, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := c.Do(ctx, proto.Echo, []byte("one port")); err != nil || string(got) != "one port" {
		t.Errorf("ECHO over DTLS: %q, %v", got, err)
	}
}

// A UDP port that is taken is a clear error naming the address and
// --dtls-listen, and the TCP port is released: a port given (as the
// default :4242 is) is never swapped for another, and port 0 gives up
// after a bounded number of pairs.
func TestDTLSUDPPortTaken(t *testing.T) {
	for _, tt := range []struct {
		name string
		args func(port string) []string
		// always makes every TCP port the system picks one whose UDP
		// twin is taken.
		always bool
		want   string
	}{
		{"a port given", func(p string) []string { return []string{"--listen", "127.0.0.1:" + p, "--dtls"} }, false,
			"is another program using the UDP port? choose another with --dtls-listen"},
		{"--dtls-listen given", func(p string) []string {
			return []string{"--listen", "127.0.0.1:0", "--dtls-listen", "127.0.0.1:" + p}
		}, false, "is another program using the UDP port? choose another with --dtls-listen"},
		{"port 0, every pair taken", func(string) []string { return []string{"--listen", "127.0.0.1:0", "--dtls"} }, true,
			fmt.Sprintf("the %d ports the system picked for TCP were all taken on UDP", pairTries)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := mustInit(t)
			taken, held := udpTakenPort(t)
			_, port, _ := net.SplitHostPort(taken.Addr().String())
			taken.Close() // free on TCP, taken on UDP
			var env Env
			var opened []net.Listener
			if tt.always {
				env.listenTCP = func(string, string) (net.Listener, error) {
					ln, _ := udpTakenPort(t)
					opened = append(opened, ln)
					return ln, nil
				}
			}
			cmd := NewRootCmd(env)
			cmd.SetArgs(append(tt.args(port), layoutArgs(l)...))
			var out, errOut strings.Builder
			cmd.SetOut(&out)
			cmd.SetErr(&errOut)
			if code := cli.Main(context.Background(), cmd); code != cli.ExitFailure {
				t.Fatalf("exit code %d, want %d\n%s", code, cli.ExitFailure, errOut.String())
			}
			msg := errOut.String()
			if !tt.always && !strings.Contains(msg, "listening on UDP "+held.LocalAddr().String()+" for DTLS") {
				t.Errorf("the error does not name UDP %v:\n%s", held.LocalAddr(), msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("the error does not say %q:\n%s", tt.want, msg)
			}
			if tt.always && len(opened) != pairTries {
				t.Errorf("%d pairs tried, want %d", len(opened), pairTries)
			}
			if !tt.always {
				// The TCP side was released: the port binds again.
				ln, err := net.Listen("tcp", "127.0.0.1:"+port)
				if err != nil {
					t.Errorf("TCP port %s still taken after the failed start: %v", port, err)
				} else {
					ln.Close()
				}
			}
			for _, ln := range opened {
				if _, err := ln.Accept(); err == nil {
					t.Errorf("a TCP listener given up (%v) is still open", ln.Addr())
				}
			}
		})
	}
}
