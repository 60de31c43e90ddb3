package dtls

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// captureClientHello returns the first datagram a pion client (configured
// as ours) sends: a first ClientHello, without a cookie.
func captureClientHello(t testing.TB) []byte {
	t.Helper()
	sink := listenLoopback(t)
	defer sink.Close()
	pc := listenLoopback(t)
	c, err := piondtls.Client(pc, sink.LocalAddr(),
		piondtls.WithInsecureSkipVerify(true),
		piondtls.WithMaxVersion(protocol.Version1_2),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		piondtls.WithConnectionID(piondtls.OnlySendCIDGenerator(), piondtls.CIDPathMigrationRRC))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.HandshakeContext(ctx) }()
	buf := make([]byte, 2048)
	_ = sink.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := sink.ReadFrom(buf)
	cancel()
	<-done
	c.Close()
	if err != nil {
		t.Fatalf("capturing a ClientHello: %v", err)
	}
	if cookie, ok := clientHelloCookie(buf[:n]); !ok || len(cookie) != 0 {
		t.Fatalf("captured datagram is not a first ClientHello: % x", buf[:n])
	}
	return bytes.Clone(buf[:n])
}

// withCookie returns the second ClientHello for ch, a first one: the same
// with cookie in its cookie field, message_seq 1 and record sequence 1.
func withCookie(t testing.TB, ch, cookie []byte) []byte {
	t.Helper()
	body, ok := handshakeBody(ch, handshakeClientHello)
	if !ok {
		t.Fatal("not a ClientHello")
	}
	p := 2 + 32
	p += 1 + int(body[p]) // session_id; body[p] is now the cookie length (0)
	nb := append(append(append([]byte{}, body[:p]...), byte(len(cookie))), cookie...)
	nb = append(nb, body[p+1:]...)
	out := make([]byte, recordHeaderSize+handshakeHeaderSize, recordHeaderSize+handshakeHeaderSize+len(nb))
	copy(out, ch[:recordHeaderSize+handshakeHeaderSize])
	out[10] = 1 // record sequence number
	binary.BigEndian.PutUint16(out[11:], uint16(handshakeHeaderSize+len(nb)))
	h := out[recordHeaderSize:]
	put24 := func(b []byte, v int) { b[0], b[1], b[2] = byte(v>>16), byte(v>>8), byte(v) }
	put24(h[1:], len(nb))
	binary.BigEndian.PutUint16(h[4:], 1) // message_seq
	put24(h[9:], len(nb))
	return append(out, nb...)
}

// readHVR reads the HelloVerifyRequest the server sends pc.
func readDatagram(t testing.TB, pc *net.UDPConn) []byte {
	t.Helper()
	buf := make([]byte, 65536)
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("reading the server's reply: %v", err)
	}
	return bytes.Clone(buf[:n])
}

// The cookie reply is smaller than the ClientHello it answers, and a
// ClientHello too short to be one is not answered: the server never
// sends more to an unproved address than it received from it.
func TestNoAmplification(t *testing.T) {
	e := start(t, Options{})
	ch := captureClientHello(t)
	pc := listenLoopback(t)
	defer pc.Close()
	for _, short := range [][]byte{ch[:40], ch[:helloVerifyRequestSize-1], {22, 0xfe, 0xfd}} {
		if _, err := pc.WriteTo(short, e.addr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pc.WriteTo(ch, e.addr); err != nil {
		t.Fatal(err)
	}
	hvr := readDatagram(t, pc)
	cookie, ok := helloVerifyCookie(hvr)
	if !ok || len(cookie) == 0 {
		t.Fatalf("reply is not a HelloVerifyRequest with a cookie: % x", hvr)
	}
	if len(hvr) > len(ch) {
		t.Errorf("HelloVerifyRequest of %d bytes answers a ClientHello of %d: amplification", len(hvr), len(ch))
	}
	if len(hvr) != helloVerifyRequestSize {
		t.Errorf("HelloVerifyRequest of %d bytes, want %d (helloVerifyRequestSize)", len(hvr), helloVerifyRequestSize)
	}
	if h, p := e.g.counts(); h != 1 || p != 1 {
		t.Errorf("the gate holds %d half-open handshakes for %d addresses, want 1 and 1: the short datagrams must not count", h, p)
	}
}

// A source that never returns its cookie (a spoofed address) is dropped
// at the cookie timeout and counted as refused, never as accepted. A
// wrong cookie is dropped without ending the handshake; the right one
// proves the address.
func TestCookieExchange(t *testing.T) {
	e := start(t, Options{CookieTimeout: 300 * time.Millisecond})
	ch := captureClientHello(t)

	silent := listenLoopback(t)
	defer silent.Close()
	if _, err := silent.WriteTo(ch, e.addr); err != nil {
		t.Fatal(err)
	}
	readDatagram(t, silent)
	e.rec.waitFor(t, "the half-open expired", 10*time.Second, func() bool { return e.rec.refused[RefusedCookieTimeout] == 1 })
	waitUntil(t, 5*time.Second, func() string {
		if h, p := e.g.counts(); h != 0 || p != 0 || e.srv.Sessions() != 0 {
			return "the expired half-open is still held"
		}
		return ""
	})

	pc := listenLoopback(t)
	defer pc.Close()
	if _, err := pc.WriteTo(ch, e.addr); err != nil {
		t.Fatal(err)
	}
	cookie, _ := helloVerifyCookie(readDatagram(t, pc))
	wrong := bytes.Clone(cookie)
	wrong[0] ^= 0xff
	if _, err := pc.WriteTo(withCookie(t, ch, wrong), e.addr); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo(withCookie(t, ch, cookie), e.addr); err != nil {
		t.Fatal(err)
	}
	// The next datagram is the ServerHello flight, not an alert for the
	// wrong cookie.
	d := readDatagram(t, pc)
	if _, ok := handshakeBody(d, 2); !ok {
		t.Fatalf("after a wrong then the right cookie: got % x, want a ServerHello", d[:min(len(d), 32)])
	}
	e.rec.waitFor(t, "the address proved", 5*time.Second, func() bool { return e.rec.accepted == 1 })
	if e.rec.refused[RefusedCookieTimeout] != 1 {
		t.Errorf("refused %v", e.rec.refused)
	}
}

// Garbage, truncated records and records of every content type from
// addresses the server does not know make no state; the server stays
// healthy.
func TestGarbage(t *testing.T) {
	e := start(t, Options{})
	ch := captureClientHello(t)
	var garbage [][]byte
	for _, n := range []int{0, 1, 12, 13, 25, 100, 1500} {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		garbage = append(garbage, b)
	}
	for ct := byte(20); ct <= 26; ct++ {
		r := bytes.Clone(ch)
		r[0] = ct
		garbage = append(garbage, r)
	}
	for cut := 1; cut < len(ch); cut += 7 {
		garbage = append(garbage, ch[:cut])
	}
	r := bytes.Clone(ch)
	r[3] = 1 // epoch 1: not a first ClientHello
	garbage = append(garbage, r)
	for range 3 {
		pc := listenLoopback(t)
		for _, g := range garbage {
			if _, err := pc.WriteTo(g, e.addr); err != nil {
				t.Fatal(err)
			}
		}
		pc.Close()
	}
	e.assertHealthy()
	e.rec.waitFor(t, "the healthy client gone", 5*time.Second, func() bool { return e.rec.active == 0 })
	// Garbage cut from a real ClientHello may still parse as one: it may
	// have started half-open handshakes, which expire like any other.
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	if e.rec.accepted != 1 {
		t.Errorf("%d sessions accepted, want only the healthy client's", e.rec.accepted)
	}
}

// A record replayed by an attacker is dropped (DTLS's replay window): it
// gets no second reply, and the session goes on.
func TestReplayedRecord(t *testing.T) {
	e := start(t, Options{})
	rec := &recordingConn{UDPConn: listenLoopback(t)}
	c, err := e.dialOn(rec)
	if err != nil {
		t.Fatal(err)
	}
	if f := roundTrip(t, c, proto.Echo, []byte("once")); string(f.Body) != "once" {
		t.Fatalf("got %q", f.Body)
	}
	last := rec.last()
	for range 3 {
		if _, err := rec.UDPConn.WriteTo(last, e.addr); err != nil {
			t.Fatal(err)
		}
	}
	if f := roundTrip(t, c, proto.Echo, []byte("twice")); string(f.Body) != "twice" {
		t.Fatalf("after replaying a record: got %q, want the reply to the new request (a replay was answered)", f.Body)
	}
	e.rec.waitFor(t, "two messages", 5*time.Second, func() bool { return e.rec.messages[proto.Echo] == 2 })
}

// recordingConn keeps the last datagram written through it.
type recordingConn struct {
	*net.UDPConn
	mu  sync.Mutex
	buf []byte
}

func (r *recordingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	r.mu.Lock()
	r.buf = bytes.Clone(p)
	r.mu.Unlock()
	return r.UDPConn.WriteTo(p, addr)
}

func (r *recordingConn) last() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf
}

// A flood of ClientHellos from sources that never return the cookie holds
// at most MaxHalfOpen half-open handshakes (the oldest are dropped to make
// room) and a bounded number of goroutines, and a real client still
// connects during it: its cookie comes back long before the flood has
// pushed MaxHalfOpen newer half-opens in front of it. (A client whose
// half-open was pushed out starts its handshake over, as ours does; see
// dialRetry.) Past the flood, everything it left expires.
func TestClientHelloFlood(t *testing.T) {
	const (
		maxHalfOpen = 512
		rate        = 4000 // ClientHellos a second: a half-open lives 128 ms
	)
	e := start(t, Options{MaxHalfOpen: maxHalfOpen, CookieTimeout: time.Second})
	ch := captureClientHello(t)
	e.assertHealthy()
	e.rec.waitFor(t, "the first client gone", 5*time.Second, func() bool { return e.rec.active == 0 })
	baseline := runtime.NumGoroutine()

	stop := make(chan struct{})
	var stopOnce sync.Once
	stopFlood := func() { stopOnce.Do(func() { close(stop) }) }
	defer stopFlood() // also when the test fails during the flood
	var sent, peakHalfOpen, peakGoroutines int
	var mu sync.Mutex
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		tick := time.NewTicker(time.Second / rate * 16)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for range 16 {
				// A fresh source each time, which never answers: a
				// spoofed address, as far as the server can tell.
				pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					continue
				}
				_, _ = pc.WriteTo(ch, e.addr)
				pc.Close()
			}
			h, _ := e.g.counts()
			mu.Lock()
			sent += 16
			peakHalfOpen = max(peakHalfOpen, h)
			peakGoroutines = max(peakGoroutines, runtime.NumGoroutine())
			mu.Unlock()
		}
	}()
	// Let the flood fill the half-open table, then connect for real.
	e.rec.waitFor(t, "the flood to overflow the half-open table", 30*time.Second, func() bool { return e.rec.refused[RefusedHalfOpen] > maxHalfOpen })
	for i := range 5 {
		c := e.dialRetry()
		if f := echoRetry(t, c, []byte("during the flood")); string(f.Body) != "during the flood" {
			t.Fatalf("client %d during the flood: got %q", i, f.Body)
		}
		c.Close()
	}
	stopFlood()
	<-flooded
	mu.Lock()
	t.Logf("flood: %d ClientHellos from fresh sources; peak %d half-open (max %d), peak %d goroutines (%d before); %v", sent, peakHalfOpen, maxHalfOpen, peakGoroutines, baseline, e.rec)
	if peakHalfOpen > maxHalfOpen {
		t.Errorf("peak of %d half-open handshakes, over MaxHalfOpen %d", peakHalfOpen, maxHalfOpen)
	}
	// Each half-open holds three goroutines (TestHalfOpenCost), and those
	// dropped to make room take a moment to end.
	if limit := baseline + 6*maxHalfOpen; peakGoroutines > limit {
		t.Errorf("peak of %d goroutines during the flood, over %d", peakGoroutines, limit)
	}
	mu.Unlock()
	waitUntil(t, 10*time.Second, func() string {
		if h, p := e.g.counts(); h != 0 || p != 0 || e.srv.Sessions() != 0 {
			return fmt.Sprintf("the flood's half-open handshakes are still held: %d half-open, %d addresses, %d sessions", h, p, e.srv.Sessions())
		}
		return ""
	})
}

// What a half-open handshake costs the server: heap and goroutines, for
// docs/SECURITY.md. The bound is generous; the log has the figure.
func TestHalfOpenCost(t *testing.T) {
	n := 1000
	if raceEnabled {
		n = 200
	}
	e := start(t, Options{MaxHalfOpen: 2 * n, CookieTimeout: time.Minute})
	ch := captureClientHello(t)
	e.assertHealthy()
	e.rec.waitFor(t, "the first client gone", 5*time.Second, func() bool { return e.rec.active == 0 })
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	g0, h0 := runtime.NumGoroutine(), heap()
	// In bursts of 100: pion's accept queue holds 128 new addresses, and
	// a burst past it is dropped (a real client sends its ClientHello
	// again after a second).
	buf := make([]byte, 2048)
	for b := 0; b < n; b += 100 {
		pcs := make([]*net.UDPConn, min(100, n-b))
		for i := range pcs {
			pcs[i] = listenLoopback(t)
			defer pcs[i].Close()
			if _, err := pcs[i].WriteTo(ch, e.addr); err != nil {
				t.Fatal(err)
			}
		}
		for i, pc := range pcs {
			_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
			m, _, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("source %d got no cookie: %v", b+i, err)
			}
			if _, ok := helloVerifyCookie(buf[:m]); !ok {
				t.Fatalf("source %d: got % x, want a cookie", b+i, buf[:m])
			}
		}
	}
	per := (float64(heap()) - float64(h0)) / float64(n)
	goroutines := float64(runtime.NumGoroutine()-g0) / float64(n)
	t.Logf("%d half-open handshakes: %.0f bytes of heap and stacks and %.1f goroutines each", n, per, goroutines)
	if goroutines > 3.05 {
		t.Errorf("%.1f goroutines per half-open handshake, want at most 3 (pion's)", goroutines)
	}
	if per > 64<<10 {
		t.Errorf("a half-open handshake costs %.0f bytes, over 64 KiB", per)
	}
}

// One source holds at most SourceMaxHalfOpen half-open handshakes; more
// ClientHellos from it are dropped unanswered.
func TestSourceMaxHalfOpen(t *testing.T) {
	e := start(t, Options{SourceMaxHalfOpen: 4})
	ch := captureClientHello(t)
	var pcs []*net.UDPConn
	for range 10 {
		pc := listenLoopback(t)
		defer pc.Close()
		pcs = append(pcs, pc)
		if _, err := pc.WriteTo(ch, e.addr); err != nil {
			t.Fatal(err)
		}
	}
	e.rec.waitFor(t, "six refused", 10*time.Second, func() bool { return e.rec.refused[RefusedHalfOpen] == 6 })
	if h, _ := e.g.counts(); h != 4 {
		t.Errorf("%d half-open handshakes from one source, want 4", h)
	}
}

// MaxSessions and the per-source limits count a client only once it has
// returned its cookie; past them its handshake goes no further.
func TestSessionLimits(t *testing.T) {
	for _, tt := range []struct {
		name   string
		opts   Options
		reason string
	}{
		{"max sessions", Options{MaxSessions: 2}, RefusedMaxSessions},
		{"source max sessions", Options{SourceMaxSessions: 2}, RefusedSourceSessions},
		{"source rate", Options{SourceHandshakeRate: 1}, RefusedSourceRate}, // a burst of 2
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, tt.opts)
			e.dial()
			e.dial()
			ctx := func() piondtls.ClientOption { return piondtls.WithFlightInterval(100 * time.Millisecond) }
			pc := listenLoopback(t)
			c, err := piondtls.Client(pc, e.addr, e.clientOptions(ctx())...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			hctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := c.HandshakeContext(hctx); err == nil {
				t.Fatal("a third handshake succeeded past the limit")
			}
			e.rec.waitFor(t, "the third refused", 5*time.Second, func() bool { return e.rec.refused[tt.reason] >= 1 && e.rec.accepted == 2 })
		})
	}
}

// Shutdown ends every session with close_notify: each client reads EOF.
func TestShutdownSendsCloseNotify(t *testing.T) {
	n := 1000
	if raceEnabled {
		n = 100
	}
	e := start(t, Options{})
	conns := make([]*piondtls.Conn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range conns {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			// A handshake whose half-open was dropped (its cookie came
			// back after CookieTimeout on a loaded machine) starts over,
			// as sc-client's does.
			var err error
			for range 3 {
				var c *piondtls.Conn
				if c, err = e.dialOn(listenLoopback(t)); err == nil {
					conns[i] = c
					return
				}
			}
			t.Errorf("handshake %d: %v", i, err)
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	e.rec.waitFor(t, "every session accepted", 30*time.Second, func() bool { return e.rec.active == n })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 64)); !errors.Is(err, io.EOF) {
			t.Fatalf("client %d: read %v after the shutdown, want EOF (close_notify)", i, err)
		}
	}
	if e.rec.closed[CloseShutdown] != n {
		t.Errorf("closed %v, want %d for shutdown", e.rec.closed, n)
	}
}

// In detached mode the server sends what pion's timers make: a client
// whose reply to the ServerHello flight is lost gets that flight again
// (RFC 6347, section 4.2.4) without asking, and a handshake that does not
// finish within HandshakeTimeout is closed and counted as timed out. The
// client here is raw datagrams that never retransmit.
func TestServerRetransmitsAndTimesOut(t *testing.T) {
	e := start(t, Options{HandshakeTimeout: 2500 * time.Millisecond})
	ch := captureClientHello(t)
	pc := listenLoopback(t)
	defer pc.Close()
	if _, err := pc.WriteTo(ch, e.addr); err != nil {
		t.Fatal(err)
	}
	cookie, ok := helloVerifyCookie(readDatagram(t, pc))
	if !ok {
		t.Fatal("no HelloVerifyRequest")
	}
	if _, err := pc.WriteTo(withCookie(t, ch, cookie), e.addr); err != nil {
		t.Fatal(err)
	}
	first := readDatagram(t, pc)
	sent := time.Now()
	if _, ok := serverHelloSuite(first); !ok {
		t.Fatalf("got % x, want the ServerHello flight", first[:min(len(first), 32)])
	}
	_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("the ServerHello flight did not come again within 2s (pion retransmits after 1s): %v", err)
	}
	if _, ok := serverHelloSuite(buf[:n]); !ok {
		t.Fatalf("got % x, want the ServerHello flight again", buf[:min(n, 32)])
	}
	t.Logf("the ServerHello flight came again after %v", time.Since(sent).Round(time.Millisecond))
	e.rec.waitFor(t, "the handshake timed out", 10*time.Second, func() bool {
		return e.rec.closed[CloseHandshakeTimeout] == 1 && e.rec.handshakes[ResultTimeout] == 1
	})
	if d := time.Since(sent); d < 2*time.Second {
		t.Errorf("closed %v after the ServerHello, before the 2.5s handshake timeout", d)
	}
	waitUntil(t, 5*time.Second, func() string {
		if h, p := e.g.counts(); h != 0 || p != 0 || e.srv.Sessions() != 0 {
			return "the timed-out handshake is still held"
		}
		return ""
	})
}

// echoRetry does an ECHO as sc-client does over UDP: the request goes
// again after a second without a reply, up to ten times. During a flood
// the kernel may drop a player's datagram with the flood's before the
// server reads it; the protocol leaves retrying to the client.
func echoRetry(t *testing.T, c net.Conn, body []byte) proto.Frame {
	t.Helper()
	req := proto.AppendFrame(nil, proto.Echo, body)
	buf := make([]byte, 1<<16)
	var err error
	for range 10 {
		if _, err = c.Write(req); err != nil {
			t.Fatalf("writing: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		var n int
		if n, err = c.Read(buf); err == nil {
			fs := frames(t, buf[:n])
			if len(fs) != 1 {
				t.Fatalf("got %d frames in the reply, want 1", len(fs))
			}
			return fs[0]
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("reading the ECHO reply: %v", err)
		}
	}
	t.Fatalf("no reply to an ECHO sent 10 times, a second apart: %v", err)
	return proto.Frame{}
}
