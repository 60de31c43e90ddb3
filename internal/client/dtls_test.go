package client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/dtls"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
)

// startDTLS runs a real DTLS server on 127.0.0.1 and returns its address
// and the certificate it presents.
func startDTLS(t *testing.T) (string, tls.Certificate) {
	t.Helper()
	cert := testutil.MustCert(t, testutil.CertOptions{}).TLS
	srv, err := dtls.New(dtls.Options{
		GetCertificate:    func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
		Keys:              func() []byte { return proto.AppendKeys(nil, pinOf("current"), []string{pinOf("next")}) },
		Logger:            discardLogger(),
		SourceMaxSessions: -1, SourceHandshakeRate: -1,
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
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-done
	})
	return pc.LocalAddr().String(), cert
}

// verifyLeaf accepts exactly cert, as a pin would.
func verifyLeaf(cert tls.Certificate) func([][]byte) error {
	return func(raw [][]byte) error {
		if len(raw) == 0 || !bytes.Equal(raw[0], cert.Certificate[0]) {
			return errors.New("not the pinned certificate")
		}
		return nil
	}
}

func TestDTLSDo(t *testing.T) {
	addr, cert := startDTLS(t)
	c, err := client.Dial(context.Background(), addr, client.Options{DTLS: &client.DTLSOptions{Verify: verifyLeaf(cert)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if got, err := c.Do(ctx, proto.Echo, []byte("hello")); err != nil || string(got) != "hello" {
		t.Errorf("ECHO: %q, %v", got, err)
	}
	if got, err := c.Do(ctx, proto.Reverse, []byte("abc")); err != nil || string(got) != "cba" {
		t.Errorf("REVERSE: %q, %v", got, err)
	}
	cur, next, err := c.Keys(ctx)
	if err != nil || cur != pinOf("current") || len(next) != 1 || next[0] != pinOf("next") {
		t.Errorf("KEYS: %q %q %v", cur, next, err)
	}
	var se *client.ServerError
	if _, err := c.Do(ctx, 9, nil); !errors.As(err, &se) {
		t.Errorf("unknown type: %v, want a ServerError", err)
	}
	cs, ok := c.ConnectionState()
	if !ok || !cs.HandshakeComplete || len(cs.PeerCertificates) != 1 || !bytes.Equal(cs.PeerCertificates[0].Raw, cert.Certificate[0]) {
		t.Errorf("connection state %+v", cs)
	}
	// Pipelined: 100 ECHOs sent at once, packed into datagrams at frame
	// boundaries, answered in order.
	for i := range 100 {
		if err := c.Send(proto.Echo, bytes.Repeat([]byte{byte(i)}, 40)); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range 100 {
		f, err := c.Receive()
		if err != nil || f.Type != proto.Echo || !bytes.Equal(f.Body, bytes.Repeat([]byte{byte(i)}, 40)) {
			t.Fatalf("pipelined reply %d: %v %v", i, f, err)
		}
	}
}

func TestDTLSRefusesUntrustedServer(t *testing.T) {
	addr, _ := startDTLS(t)
	other := testutil.MustCert(t, testutil.CertOptions{}).TLS
	_, err := client.Dial(context.Background(), addr, client.Options{Timeout: 5 * time.Second, DTLS: &client.DTLSOptions{Verify: verifyLeaf(other)}})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("not the pinned certificate")) {
		t.Fatalf("got %v, want the Verify function's refusal", err)
	}
}

// lossyRelay forwards datagrams between a client and a server, dropping
// the client's first n records of application data.
type lossyRelay struct {
	front   *net.UDPConn
	dropped atomic.Int32
	wg      sync.WaitGroup
}

func startLossyRelay(t *testing.T, server string, drop int32) *lossyRelay {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := net.ResolveUDPAddr("udp", server)
	back, err := net.DialUDP("udp", nil, sa)
	if err != nil {
		t.Fatal(err)
	}
	r := &lossyRelay{front: front}
	var mu sync.Mutex
	var clientAddr net.Addr
	r.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			to := clientAddr
			mu.Unlock()
			_, _ = front.WriteTo(buf[:n], to)
		}
	})
	r.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			clientAddr = from
			mu.Unlock()
			// 23: application data; 25: a record with a connection ID.
			if (buf[0] == 23 || buf[0] == 25) && r.dropped.Load() < drop {
				r.dropped.Add(1)
				continue
			}
			_, _ = back.Write(buf[:n])
		}
	})
	t.Cleanup(func() { front.Close(); back.Close(); r.wg.Wait() })
	return r
}

// Do sends a request again when its reply does not come: the server keeps
// no reply state, and UDP loses datagrams.
func TestDTLSRetriesOnLoss(t *testing.T) {
	addr, cert := startDTLS(t)
	relay := startLossyRelay(t, addr, 2)
	c, err := client.Dial(context.Background(), relay.front.LocalAddr().String(), client.Options{
		DTLS: &client.DTLSOptions{Verify: verifyLeaf(cert), Retry: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := c.Do(ctx, proto.Echo, []byte("lost twice")); err != nil || string(got) != "lost twice" {
		t.Fatalf("ECHO through a lossy path: %q, %v", got, err)
	}
	if n := relay.dropped.Load(); n != 2 {
		t.Errorf("the relay dropped %d requests, want 2", n)
	}
	// A server that never answers: Do gives up at the context's end.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	relay.dropped.Store(-1 << 30)
	if _, err := c.Do(ctx2, proto.Echo, []byte("never")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the context's deadline", err)
	}
}

// rebindConn is a UDP socket that can move to a new local port, as a
// player's NAT rebinding moves it.
type rebindConn struct {
	mu   sync.Mutex
	cur  *net.UDPConn
	rdl  time.Time
	gone bool
}

func (r *rebindConn) conn() *net.UDPConn { r.mu.Lock(); defer r.mu.Unlock(); return r.cur }

func (r *rebindConn) rebind(t *testing.T) {
	nc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	oc := r.cur
	r.cur = nc
	_ = nc.SetReadDeadline(r.rdl)
	r.mu.Unlock()
	oc.Close()
}

func (r *rebindConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c := r.conn()
		n, a, err := c.ReadFrom(b)
		if err != nil && errors.Is(err, net.ErrClosed) {
			r.mu.Lock()
			again := r.cur != c && !r.gone
			r.mu.Unlock()
			if again {
				continue
			}
		}
		return n, a, err
	}
}
func (r *rebindConn) WriteTo(b []byte, a net.Addr) (int, error) { return r.conn().WriteTo(b, a) }
func (r *rebindConn) LocalAddr() net.Addr                       { return r.conn().LocalAddr() }
func (r *rebindConn) SetDeadline(t time.Time) error             { _ = r.SetReadDeadline(t); return nil }
func (r *rebindConn) SetReadDeadline(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rdl = t
	return r.cur.SetReadDeadline(t)
}
func (r *rebindConn) SetWriteDeadline(time.Time) error { return nil }
func (r *rebindConn) Close() error {
	r.mu.Lock()
	r.gone = true
	r.mu.Unlock()
	return r.conn().Close()
}

// The client keeps its session when its address changes mid-session (a
// NAT rebinding): its records carry the server's connection ID, the
// server checks the new address and answers there.
func TestDTLSSurvivesRebinding(t *testing.T) {
	addr, cert := startDTLS(t)
	var rc *rebindConn
	c, err := client.Dial(context.Background(), addr, client.Options{DTLS: &client.DTLSOptions{
		Verify: verifyLeaf(cert), Retry: 50 * time.Millisecond,
		ListenPacket: func() (net.PacketConn, error) {
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			rc = &rebindConn{cur: pc}
			return rc, err
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := c.Do(ctx, proto.Echo, []byte("before")); err != nil || string(got) != "before" {
		t.Fatalf("before the move: %q, %v", got, err)
	}
	before := rc.LocalAddr().String()
	rc.rebind(t)
	if got, err := c.Do(ctx, proto.Echo, []byte("after")); err != nil || string(got) != "after" {
		t.Fatalf("after moving from %s to %s: %q, %v", before, rc.LocalAddr(), got, err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
