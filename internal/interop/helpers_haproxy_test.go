//go:build linux

package interop

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
)

// Helpers of the HAProxy scale-out test: HAProxy in front of real
// sc-server processes, on loopback addresses of their own.

// The loopback addresses of the scale-out test (all of 127.0.0.0/8 is
// local on Linux): clients dial from clientIP to HAProxy's frontend on
// frontIP, and HAProxy connects to the servers (on 127.0.0.1) from
// balancerIP, so a server can tell the client's address from the
// balancer's.
const (
	frontIP    = "127.0.0.2"
	clientIP   = "127.0.0.3"
	balancerIP = "127.0.0.1"
)

// haBackend is one sc-server behind HAProxy.
type haBackend struct {
	name string
	srv  *scServer
}

// haConfig returns an HAProxy configuration: TCP mode, its frontend on
// the listener it inherits as descriptor 3 (so no port is picked and then
// raced for), round robin over backends, each health-checked with
// GET /readyz on its --metrics-listen address every 100 ms (one failure
// takes it out, one success puts it back), connections to them made from
// balancerIP, with the PROXY protocol v2 header when proxyV2. A connection
// that cannot be made is retried on another server (redispatch), so a
// server that has stopped listening costs no client its connection.
func haConfig(t *testing.T, backends []haBackend, proxyV2 bool) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `global
	maxconn 2000

defaults
	mode tcp
	timeout connect 2s
	timeout client 60s
	timeout server 60s
	timeout check 2s
	retries 3
	option redispatch 1

frontend game
	bind fd@3
	default_backend servers

backend servers
	balance roundrobin
	source %s
	option httpchk GET /readyz
	http-check expect status 200
	default-server inter 100ms fall 1 rise 1
`, balancerIP)
	for _, be := range backends {
		_, mport := splitPort(t, be.srv.MetricsAddr)
		fmt.Fprintf(&b, "\tserver %s %s check port %s", be.name, be.srv.Addr, mport)
		if proxyV2 {
			b.WriteString(" send-proxy-v2")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// haProxy is a running HAProxy.
type haProxy struct {
	// Addr is its frontend's address.
	Addr string

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  bytes.Buffer // standard output and error: its warnings (servers going down and up)
}

// Output returns what HAProxy has printed so far.
func (h *haProxy) Output() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.out.String()
}

// startHAProxy checks cfg (haproxy -c) and runs HAProxy in the foreground
// with it (-db), its frontend listening on frontIP; the test's end stops
// it. It returns at once: the frontend listens before HAProxy starts, and
// connections wait in its queue until HAProxy takes them.
func startHAProxy(t *testing.T, haproxy, cfg string) *haProxy {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	mustWriteFile(t, path, []byte(cfg), 0o644)
	ln, err := net.Listen("tcp", frontIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // HAProxy has its own copy
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	check := exec.Command(haproxy, "-c", "-f", path)
	check.ExtraFiles = []*os.File{f} // descriptor 3, which bind checks
	if out, err := childproc.CombinedOutput(check); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, cfg)
	}
	h := &haProxy{Addr: ln.Addr().String(), done: make(chan struct{})}
	h.cmd = exec.Command(haproxy, "-db", "-f", path)
	h.cmd.Dir = dir
	h.cmd.ExtraFiles = []*os.File{f} // descriptor 3
	h.cmd.Stdout = &lockedWriter{mu: &h.mu, w: &h.out}
	h.cmd.Stderr = &lockedWriter{mu: &h.mu, w: &h.out}
	if err := childproc.Start(h.cmd); err != nil {
		t.Fatal(err)
	}
	go func() {
		h.cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() {
		h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			h.cmd.Process.Kill()
			<-h.done
			t.Errorf("haproxy did not stop within 10s of SIGTERM:\n%s", h.Output())
		}
	})
	return h
}

// waitOutput waits until HAProxy has printed s, or fails the test after
// timeout. Polled: HAProxy's health checks run on their own clock.
func (h *haProxy) waitOutput(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(h.Output(), s) {
		select {
		case <-h.done:
			t.Fatalf("haproxy exited:\n%s", h.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not print %q within %v:\n%s", s, timeout, h.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialVia makes a TLS connection to addr (HAProxy's frontend) from
// clientIP, trusting pool, with cfg's other settings (nil: TLS 1.3 or 1.2,
// as Go chooses), and checks that it is served with an ECHO (which also
// reads a TLS 1.3 session ticket).
func dialVia(addr string, pool *x509.CertPool, cfg *tls.Config) (*tls.Conn, error) {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.RootCAs, cfg.ServerName = pool, "localhost"
	d := &net.Dialer{Timeout: 20 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("dialing %s from %s: %w", addr, clientIP, err)
	}
	if err := echoOver(c, "through the balancer"); err != nil {
		c.Close()
		return nil, fmt.Errorf("ECHO through the balancer: %w", err)
	}
	return c, nil
}

// mustDialVia is dialVia failing the test on an error.
func mustDialVia(t *testing.T, addr string, pool *x509.CertPool, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := dialVia(addr, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fleet is the sc-servers behind one HAProxy.
type fleet struct {
	backends []haBackend
}

// counters scrapes each server's /metrics for the family name (summed
// over the series matching match); a server that has exited counts 0.
func (f *fleet) counters(t *testing.T, name string, match ...string) []float64 {
	t.Helper()
	out := make([]float64, len(f.backends))
	for i, be := range f.backends {
		select {
		case <-be.srv.done:
			continue
		default:
		}
		out[i] = scrapeMetrics(t, be.srv.MetricsAddr).sum(name, match...)
	}
	return out
}

// servedBy runs do, which makes exactly one connection through the
// balancer, and returns the index of the server that accepted it, read
// from the servers' accepted-connections counters before and after; the
// test makes no other connection meanwhile.
func (f *fleet) servedBy(t *testing.T, do func()) int {
	t.Helper()
	const accepted = "spacecaptain_connections_accepted_total"
	before := f.counters(t, accepted)
	do()
	after := f.counters(t, accepted)
	who := -1
	for i := range before {
		switch d := after[i] - before[i]; {
		case d == 1 && who < 0:
			who = i
		case d != 0:
			t.Fatalf("one connection through the balancer: servers accepted %v before and %v after, want exactly one new connection on one server", before, after)
		}
	}
	if who < 0 {
		t.Fatalf("one connection through the balancer: no server accepted it (%v before and after)", before)
	}
	return who
}
