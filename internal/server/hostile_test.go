package server

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
	"go.uber.org/goleak"
)

// Issue 7, hostile input and faults: clients that fragment, half-close,
// reset, oversize, renegotiate, flood key updates and drop handshakes, on
// every engine. Each test ends by checking that a new client is still
// served; the ones that make many connections also check that the
// server's goroutines and descriptors come back to where they were
// (leakBaseline). The real binary's side of this (/proc/PID/fd, threads,
// openssl's renegotiation and key updates) is in
// internal/interop/hostile_linux_test.go.

// scaled returns n, or underRace under the race detector, which makes a
// TLS handshake about 15 times slower.
func scaled(n, underRace int) int {
	if raceEnabled {
		return underRace
	}
	return n
}

// waitUntil calls cond every few milliseconds until it returns "" or the
// timeout passes, and then fails with its last answer. For waits on
// goroutines and descriptors, which send no event.
func waitUntil(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leakBaseline is what the process held while the server was warm and
// had no connection: its goroutines and, where the platform can count
// them, its open descriptors (-1 elsewhere). Both are process-wide, so
// tests that take one must not run in parallel.
type leakBaseline struct {
	goroutines goleak.Option
	fds        int
}

// baseline serves a client (which starts an engine's machinery, such as
// the epoll engine's loop and workers), waits until the server has no
// connection left and records what the process holds.
func (e *testEnv) baseline() leakBaseline {
	e.t.Helper()
	e.assertHealthy()
	e.rec.waitFor(e.t, "no connection open", 10*time.Second, func() bool { return e.rec.active == 0 })
	return leakBaseline{goroutines: goleak.IgnoreCurrent(), fds: openFDs(e.t)}
}

// expectNoLeaks waits until every connection the server accepted is
// closed (Events) and the process's
// descriptors and goroutines are back to b.
func (e *testEnv) expectNoLeaks(b leakBaseline) {
	e.t.Helper()
	e.rec.waitFor(e.t, "every connection closed", 30*time.Second, func() bool { return e.rec.active == 0 })
	waitUntil(e.t, 30*time.Second, func() string {
		if n := e.srv.active.Load(); n != 0 {
			return fmt.Sprintf("the server counts %d connections, want 0", n)
		}
		if b.fds >= 0 {
			if n := openFDs(e.t); n > b.fds {
				return fmt.Sprintf("%d open descriptors, %d before", n, b.fds)
			}
		}
		if err := goleak.Find(b.goroutines); err != nil {
			return "goroutines left: " + err.Error()
		}
		return ""
	})
}

// closedSince returns how many connections closed for each reason since
// before (a copy of rec.closed), leaving out reasons that did not occur.
func (r *recorder) closedSince(before map[string]int) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := map[string]int{}
	for k, v := range r.closed {
		if n := v - before[k]; n != 0 {
			d[k] = n
		}
	}
	return d
}

func (r *recorder) closedCopy() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.closed)
}

// hostileBatch is a pipelined batch of requests of every kind, and the
// checks of their replies, in order.
func hostileBatch() (req []byte, check []func(proto.Frame) string) {
	expect := func(typ proto.Type, body string) func(proto.Frame) string {
		return func(f proto.Frame) string {
			if f.Type != typ || string(f.Body) != body {
				return fmt.Sprintf("got (%v, %d bytes %.40q), want (%v, %d bytes %.40q)", f.Type, len(f.Body), f.Body, typ, len(body), body)
			}
			return ""
		}
	}
	add := func(typ proto.Type, body string, c func(proto.Frame) string) {
		req = proto.AppendFrame(req, typ, []byte(body))
		check = append(check, c)
	}
	add(proto.Echo, "", expect(proto.Echo, ""))
	add(proto.Echo, "a", expect(proto.Echo, "a"))
	add(proto.Reverse, "héllo wörld", expect(proto.Reverse, "dlröw olléh"))
	add(proto.Reverse, "nul\x00", expect(proto.Reverse, "lun\x00"))
	add(proto.Time, "", func(f proto.Frame) string {
		if _, err := time.Parse("2006-01-02T15:04:05Z", string(f.Body)); f.Type != proto.Time || err != nil {
			return fmt.Sprintf("got (%v, %q), want a TIME reply (%v)", f.Type, f.Body, err)
		}
		return ""
	})
	add(9, "?", expect(proto.Error, "unknown message type 9"))
	big := strings.Repeat("0123456789abcdef", proto.DefaultMaxBody/16)
	add(proto.Echo, big, expect(proto.Echo, big))
	add(proto.Echo, "last", expect(proto.Echo, "last"))
	return req, check
}

// checkReplies reads one reply per check from c.
func checkReplies(t testing.TB, c net.Conn, check []func(proto.Frame) string) {
	t.Helper()
	for i, ck := range check {
		f, err := receiveErr(c)
		if err != nil {
			t.Fatalf("reply %d of %d: %v", i+1, len(check), err)
		}
		if why := ck(f); why != "" {
			t.Fatalf("reply %d: %s", i+1, why)
		}
	}
}

// countingConn counts the writes made to it.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestFragmentedOneBytePerRecord: a pipelined batch sent one byte per TLS
// record (crypto/tls sends one record per Write), or one byte per TCP
// write in plaintext, gets every reply, in order.
func TestFragmentedOneBytePerRecord(t *testing.T) {
	req, check := hostileBatch()
	forEach(t, allModes, func(t *testing.T, engine string, m mode) {
		e := start(t, engine, m, Options{})
		cc := &countingConn{Conn: e.dialRaw()}
		if err := cc.Conn.(*net.TCPConn).SetNoDelay(true); err != nil {
			t.Fatal(err)
		}
		var c net.Conn = cc
		if m.tls {
			tc := tls.Client(cc, e.clientTLS)
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			c = tc
		}
		before := cc.writes.Load()
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for i := range req {
			if _, err := c.Write(req[i : i+1]); err != nil {
				t.Fatalf("writing byte %d: %v", i, err)
			}
		}
		if n := cc.writes.Load() - before; n != int64(len(req)) {
			t.Fatalf("%d bytes went out in %d writes (records), want one each", len(req), n)
		}
		checkReplies(t, c, check)
		e.rec.waitFor(t, "every request counted", 5*time.Second, func() bool {
			return e.rec.protoErrs[proto.KindUnknownType] == 1 && e.rec.messages[proto.Echo] == 4
		})
		e.assertHealthy()
	})
}

// TestFrameSplitAtEveryOffset: a frame cut at every offset of its header
// and of its body, the two pieces sent apart, is answered; alone, and
// behind a whole frame in the same read. Each piece is one TCP write with
// TCP_NODELAY in plaintext, one TLS record in TLS, so the offsets are
// exact.
func TestFrameSplitAtEveryOffset(t *testing.T) {
	// The pause lets the server read the first piece on its own: that it
	// has is what the test is about, and nothing signals it (in the
	// "behind a whole frame" case the first frame's reply does).
	const pause = 5 * time.Millisecond
	frame := proto.AppendFrame(nil, proto.Reverse, []byte("split me anywhere"))
	lead := proto.AppendFrame(nil, proto.Echo, []byte("whole"))
	forEach(t, allModes, func(t *testing.T, engine string, m mode) {
		e := start(t, engine, m, Options{})
		c := e.dial()
		if !m.tls {
			if err := c.(*net.TCPConn).SetNoDelay(true); err != nil {
				t.Fatal(err)
			}
		}
		write := func(b []byte) {
			t.Helper()
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		expectReply := func(k int, typ proto.Type, body string) {
			t.Helper()
			if f := receive(t, c); f.Type != typ || string(f.Body) != body {
				t.Fatalf("split at %d: got (%v, %q), want (%v, %q)", k, f.Type, f.Body, typ, body)
			}
		}
		for k := 1; k < len(frame); k++ {
			write(frame[:k])
			time.Sleep(pause)
			write(frame[k:])
			expectReply(k, proto.Reverse, "erehwyna em tilps")

			write(append(slices.Clone(lead), frame[:k]...))
			expectReply(k, proto.Echo, "whole") // the server has read the first piece
			write(frame[k:])
			expectReply(k, proto.Reverse, "erehwyna em tilps")
		}
		e.assertHealthy()
	})
}

// TestHalfClosePipelinedBatch: a client that pipelines more requests than
// the socket buffers hold and then shuts its write side (in TLS,
// CloseWrite sends close_notify) gets every reply, in order, and then an
// orderly close (close_notify in TLS). TestHalfClose covers two requests.
func TestHalfClosePipelinedBatch(t *testing.T) {
	n := scaled(1500, 200)
	body := make([]byte, proto.DefaultMaxBody)
	var batch []byte
	for i := range n {
		binary.LittleEndian.PutUint32(body, uint32(i))
		batch = proto.AppendFrame(batch, proto.Echo, body)
	}
	forEach(t, allModes, func(t *testing.T, engine string, m mode) {
		e := start(t, engine, m, Options{})
		c, rc := e.dialRecorded()
		wrote := make(chan error, 1)
		go func() {
			_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
			if _, err := c.Write(batch); err != nil {
				wrote <- err
				return
			}
			if tc, ok := c.(*tls.Conn); ok {
				wrote <- tc.CloseWrite()
			} else {
				wrote <- rc.Conn.(*net.TCPConn).CloseWrite()
			}
		}()
		for i := range n {
			f, err := receiveErr(c)
			if err != nil {
				t.Fatalf("reply %d of %d: %v", i, n, err)
			}
			if len(f.Body) != len(body) || binary.LittleEndian.Uint32(f.Body) != uint32(i) {
				t.Fatalf("reply %d: got a %d-byte ECHO of request %d", i, len(f.Body), binary.LittleEndian.Uint32(f.Body))
			}
		}
		if err := <-wrote; err != nil {
			t.Fatalf("writing the batch and shutting the write side: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if k, err := c.Read(make([]byte, 1)); k != 0 || err != io.EOF {
			t.Fatalf("after the last reply: got (%d, %v), want (0, EOF)", k, err)
		}
		expectCloseNotify(t, m, rc)
		e.rec.waitClosed(t, CloseEOF, 1, 10*time.Second)
		e.rec.waitFor(t, "every request counted", 5*time.Second, func() bool { return e.rec.messages[proto.Echo] == n })
		e.assertHealthy()
	})
}

// helloFor captures the ClientHello record a crypto/tls client with
// maxVersion sends.
func helloFor(t testing.TB, maxVersion uint16) []byte {
	t.Helper()
	cc := &captureConn{}
	_ = tls.Client(cc, &tls.Config{ServerName: "localhost", MaxVersion: maxVersion}).Handshake()
	b := cc.buf.Bytes()
	if len(b) < 100 || b[0] != recordHandshake || b[5] != 1 {
		t.Fatalf("captured %d bytes, want a ClientHello record", len(b))
	}
	return b
}

// reset closes c with an RST instead of a FIN (SO_LINGER 0).
func reset(t testing.TB, c net.Conn) {
	t.Helper()
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		t.Fatalf("%T is no TCP connection", c)
	}
	if err := tcp.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	tcp.Close()
}

// TestResetMidStream: clients that reset their connection (RST) at every
// stage — before a byte, mid-ClientHello, waiting for their Finished,
// mid-header, mid-body, with replies unread — are each closed once, for
// the reason a reset gives, and leave no goroutine and no descriptor
// behind.
func TestResetMidStream(t *testing.T) {
	per := scaled(8, 3)
	hello13, hello12 := helloFor(t, tls.VersionTLS13), helloFor(t, tls.VersionTLS12)
	big := make([]byte, proto.DefaultMaxBody)
	var unread []byte
	for range 64 {
		unread = proto.AppendFrame(unread, proto.Echo, big)
	}
	lead := proto.AppendFrame(nil, proto.Echo, []byte("lead"))
	type point struct {
		name    string
		tlsOnly bool
		allowed []string // the close reasons it may give; nil: a failed handshake in TLS, a read error in plaintext
		// do runs one connection to the point of the reset and returns
		// the socket to reset.
		do func(t *testing.T, e *testEnv) net.Conn
	}
	streamErr := []string{CloseReadError}
	points := []point{
		{"before a byte", false, nil, func(t *testing.T, e *testEnv) net.Conn {
			return e.dialRaw()
		}},
		{"mid-ClientHello", true, []string{CloseHandshakeError}, func(t *testing.T, e *testEnv) net.Conn {
			c := e.dialRaw()
			hello := hello13
			if e.mode.version == tls.VersionTLS12 {
				hello = hello12
			}
			if _, err := c.Write(hello[:len(hello)/2]); err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"waiting for the client's Finished", true, []string{CloseHandshakeError}, func(t *testing.T, e *testEnv) net.Conn {
			c := e.dialRaw()
			hello := hello13
			if e.mode.version == tls.VersionTLS12 {
				hello = hello12
			}
			if _, err := c.Write(hello); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
				t.Fatalf("reading the server's hello: %v", err)
			}
			return c
		}},
		{"mid-header", false, streamErr, func(t *testing.T, e *testEnv) net.Conn {
			raw, c := e.dialBoth()
			send := append(slices.Clone(lead), header(proto.Echo, 10)[:3]...)
			if _, err := c.Write(send); err != nil {
				t.Fatal(err)
			}
			receive(t, c) // the lead's reply: the server holds the partial header
			return raw
		}},
		{"mid-body", false, streamErr, func(t *testing.T, e *testEnv) net.Conn {
			raw, c := e.dialBoth()
			send := append(slices.Clone(lead), header(proto.Echo, 10)...)
			send = append(send, "half"...)
			if _, err := c.Write(send); err != nil {
				t.Fatal(err)
			}
			receive(t, c)
			return raw
		}},
		{"replies unread", false, []string{CloseReadError, CloseWriteError}, func(t *testing.T, e *testEnv) net.Conn {
			raw, c := e.dialBoth()
			if err := raw.(*net.TCPConn).SetReadBuffer(4096); err != nil {
				t.Fatal(err)
			}
			// The server may stop reading before the client is done
			// writing: a write that times out is as good as one that
			// finishes.
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write(unread)
			return raw
		}},
	}
	for _, engine := range testEngines() {
		for _, m := range allModes {
			t.Run(engine+"/"+m.name, func(t *testing.T) {
				e := start(t, engine, m, Options{})
				base := e.baseline()
				for _, p := range points {
					if p.tlsOnly && !m.tls {
						continue
					}
					before := e.rec.closedCopy()
					e.rec.mu.Lock()
					accepted := e.rec.accepted
					e.rec.mu.Unlock()
					for range per {
						reset(t, p.do(t, e))
					}
					e.rec.waitFor(t, p.name+": every connection accepted and closed", 20*time.Second, func() bool {
						return e.rec.accepted == accepted+per && e.rec.active == 0
					})
					allowed := p.allowed
					if allowed == nil {
						allowed = []string{CloseReadError}
						if m.tls {
							allowed = []string{CloseHandshakeError}
						}
					}
					got := e.rec.closedSince(before)
					total := 0
					for reason, k := range got {
						total += k
						if !slices.Contains(allowed, reason) {
							t.Errorf("%s: %d closed for %s, want only %v (all: %v)", p.name, k, reason, allowed, got)
						}
					}
					if total != per {
						t.Errorf("%s: %d closes (%v) for %d connections", p.name, total, got, per)
					}
				}
				e.expectNoLeaks(base)
				e.assertHealthy()
			})
		}
	}
}

// dialBoth opens a connection in the env's mode and returns its socket
// and the connection to talk over.
func (e *testEnv) dialBoth() (raw, c net.Conn) {
	e.t.Helper()
	raw = e.dialRaw()
	if e.clientTLS == nil {
		return raw, raw
	}
	tc := tls.Client(raw, e.clientTLS)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		e.t.Fatalf("handshake: %v", err)
	}
	return raw, tc
}

// rechunkConn cuts the plaintext handshake records a TLS client writes
// (those before its ChangeCipherSpec) into records of at most size bytes.
// The handshake messages, and so the transcript, are the same: only
// their framing in records changes (RFC 8446, section 5.1, and RFC 5246,
// section 6.2.1, allow a handshake message across many records).
type rechunkConn struct {
	net.Conn
	size    int
	done    bool
	records int
}

func (c *rechunkConn) Write(p []byte) (int, error) {
	if c.done {
		return c.Conn.Write(p)
	}
	var out []byte
	for b := p; len(b) > 0; {
		if len(b) < 5 || len(b) < 5+int(binary.BigEndian.Uint16(b[3:5])) {
			return 0, errors.New("rechunkConn: a record split across writes")
		}
		n := int(binary.BigEndian.Uint16(b[3:5]))
		typ, payload := b[0], b[5:5+n]
		if typ != recordHandshake || c.done {
			out = append(out, b[:5+n]...)
			c.done = c.done || typ == 20 // ChangeCipherSpec: what follows is encrypted
		} else {
			for len(payload) > 0 {
				k := min(c.size, len(payload))
				out = append(out, typ, b[1], b[2], byte(k>>8), byte(k))
				out = append(out, payload[:k]...)
				payload = payload[k:]
				c.records++
			}
		}
		b = b[5+n:]
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// bigALPN is an ALPN list of about 50 KB: the largest ClientHello a
// crypto/tls client makes (the extension and the message have 16- and
// 24-bit lengths, and crypto/tls servers take handshake messages up to 64
// KiB, crypto/tls common.go maxHandshake). Real ClientHellos are under 2 KB.
func bigALPN() []string {
	protos := make([]string, 200)
	for i := range protos {
		protos[i] = fmt.Sprintf("p%03d-", i) + strings.Repeat("x", 245)
	}
	return protos
}

// TestOversizedClientHello: a ClientHello of 50 KB (over four records, or
// cut into 800 records of 64 bytes) is served; a handshake message or a
// record announced larger than crypto/tls takes is refused with an alert
// from its header alone, allocating nothing of the size announced.
func TestOversizedClientHello(t *testing.T) {
	refusals := []struct {
		name  string
		data  []byte
		alert byte // the alert the server must send, 0 for any
	}{
		// A ClientHello announcing 16 MiB (the 24-bit maximum).
		{"ClientHello of 16 MiB announced", append([]byte{22, 3, 1, 0, 104, 1, 0xff, 0xff, 0xff}, make([]byte, 100)...), 80},
		// A ClientHello of 70,000 bytes, sent whole in records of 16 KiB.
		{"ClientHello of 70,000 bytes sent", func() []byte {
			msg := make([]byte, 70000)
			binary.BigEndian.PutUint32(msg, 1<<24|(70000-4)) // type 1, 24-bit length
			var out []byte
			for len(msg) > 0 {
				k := min(16384, len(msg))
				out = append(out, 22, 3, 1, byte(k>>8), byte(k))
				out = append(out, msg[:k]...)
				msg = msg[k:]
			}
			return out
		}(), 0},
		// A record over 2^14 + 2048 bytes (RFC 5246, section 6.2.3).
		{"record of 18 KiB announced", append([]byte{22, 3, 1, 0x48, 0x01}, make([]byte, 100)...), 22},
	}
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			for _, m := range []mode{modeTLS12, modeTLS13} {
				t.Run(m.name, func(t *testing.T) {
					e := start(t, engine, m, Options{})
					for _, records := range []int{0, 64} {
						var conn net.Conn = e.dialRaw()
						rcc := &rechunkConn{Conn: conn, size: records}
						if records > 0 {
							conn = rcc
						}
						cfg := e.clientTLS.Clone()
						cfg.NextProtos = bigALPN()
						tc := tls.Client(conn, cfg)
						_ = tc.SetDeadline(time.Now().Add(20 * time.Second))
						var before, after runtime.MemStats
						runtime.ReadMemStats(&before)
						if err := tc.Handshake(); err != nil {
							t.Fatalf("handshake with a 50 KB ClientHello (records of %d bytes): %v", records, err)
						}
						runtime.ReadMemStats(&after)
						if f := roundTrip(t, tc, proto.Echo, []byte("big hello")); string(f.Body) != "big hello" {
							t.Fatalf("got %q", f.Body)
						}
						how := "in the records crypto/tls makes"
						if records > 0 {
							how = fmt.Sprintf("in %d records of %d bytes", rcc.records, records)
						}
						t.Logf("a ClientHello with a 50 KB ALPN list, %s, is served; client and server allocated %d KiB in all",
							how, (after.TotalAlloc-before.TotalAlloc)>>10)
						if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
							t.Errorf("the handshake allocated %d MiB, want it bounded by the hello's size", grew>>20)
						}
						tc.Close()
					}
					for _, r := range refusals {
						hsErrs := e.rec.closedCopy()[CloseHandshakeError]
						c := e.dialRaw()
						var before, after runtime.MemStats
						runtime.ReadMemStats(&before)
						_ = c.SetDeadline(time.Now().Add(10 * time.Second))
						wrote := make(chan struct{})
						go func() { // the server may stop reading: a reset is fine
							defer close(wrote)
							_, _ = c.Write(r.data)
						}()
						got, err := io.ReadAll(c)
						c.Close()
						<-wrote
						if isTimeout(err) {
							t.Fatalf("%s: still open after 10 s, want it refused", r.name)
						}
						if r.alert != 0 && (len(got) != 7 || got[0] != 21 || got[5] != 2 || got[6] != r.alert) {
							t.Errorf("%s: got % x, want a fatal alert %d", r.name, got, r.alert)
						}
						e.rec.waitClosed(t, CloseHandshakeError, hsErrs+1, 10*time.Second)
						runtime.ReadMemStats(&after)
						if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
							t.Errorf("%s: the server allocated %d KiB, want well under 1 MiB", r.name, grew>>10)
						}
					}
					e.assertHealthy()
				})
			}
		})
	}
}

// prf12 is the TLS 1.2 PRF with SHA-256 (RFC 5246, section 5).
func prf12(secret []byte, label string, seed []byte, n int) []byte {
	seed = append([]byte(label), seed...)
	var out []byte
	a := seed
	for len(out) < n {
		h := hmac.New(sha256.New, secret)
		h.Write(a)
		a = h.Sum(nil)
		h = hmac.New(sha256.New, secret)
		h.Write(a)
		h.Write(seed)
		out = h.Sum(out)
	}
	return out[:n]
}

// tls12Layer protects one direction of a TLS 1.2 connection with
// AES-128-GCM (RFC 5288): a 4-byte salt from the key block, an explicit
// 8-byte nonce per record (here the sequence number, as crypto/tls does),
// and the sequence number, type, version and length as additional data.
type tls12Layer struct {
	aead cipher.AEAD
	salt []byte
	seq  uint64
}

func newTLS12Layer(t testing.TB, key, salt []byte) *tls12Layer {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	// Sequence number 0 was the Finished message's.
	return &tls12Layer{aead: aead, salt: salt, seq: 1}
}

func (l *tls12Layer) additional(typ byte, n int) []byte {
	ad := binary.BigEndian.AppendUint64(nil, l.seq)
	return append(ad, typ, 3, 3, byte(n>>8), byte(n))
}

func (l *tls12Layer) seal(typ byte, content []byte) []byte {
	explicit := binary.BigEndian.AppendUint64(nil, l.seq)
	rec := append([]byte{typ, 3, 3, 0, 0}, explicit...)
	rec = l.aead.Seal(rec, append(slices.Clone(l.salt), explicit...), content, l.additional(typ, len(content)))
	binary.BigEndian.PutUint16(rec[3:5], uint16(len(rec)-5))
	l.seq++
	return rec
}

// open reads and opens one record.
func (l *tls12Layer) open(br *bufio.Reader) (typ byte, content []byte, err error) {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return 0, nil, err
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, nil, err
	}
	if len(body) < 8+16 {
		return 0, nil, fmt.Errorf("a %d-byte record is too short for AES-GCM", len(body))
	}
	nonce := append(slices.Clone(l.salt), body[:8]...)
	content, err = l.aead.Open(nil, nonce, body[8:], l.additional(hdr[0], len(body)-8-16))
	l.seq++
	return hdr[0], content, err
}

// helloTap keeps what a TLS client writes and reads during its handshake.
type helloTap struct {
	net.Conn
	wrote, read bytes.Buffer
}

func (h *helloTap) Write(p []byte) (int, error) { h.wrote.Write(p); return h.Conn.Write(p) }
func (h *helloTap) Read(p []byte) (int, error) {
	n, err := h.Conn.Read(p)
	h.read.Write(p[:n])
	return n, err
}

// helloRandom returns the random of the hello at the front of b: record
// header (5), handshake header (4), version (2), then 32 bytes.
func helloRandom(t testing.TB, b []byte, msgType byte) []byte {
	t.Helper()
	if len(b) < 43 || b[0] != recordHandshake || b[5] != msgType {
		t.Fatalf("no hello of type %d at the front of % x", msgType, b[:min(len(b), 16)])
	}
	return b[11:43]
}

// tls12Raw is a TLS 1.2 connection whose handshake crypto/tls made and
// whose records the test then reads and writes itself.
type tls12Raw struct {
	raw            net.Conn
	br             *bufio.Reader
	client, server *tls12Layer
}

// dialTLS12Raw dials e with TLS 1.2 and ECDHE-ECDSA-AES128-GCM-SHA256 and
// hands the connection over to the test: the keys come from the master
// secret the client logs and the hellos' randoms (RFC 5246, section 6.3).
func dialTLS12Raw(t testing.TB, e *testEnv, pool *x509.CertPool) *tls12Raw {
	t.Helper()
	raw := e.dialRaw()
	tap := &helloTap{Conn: raw}
	kl := &keyLog{}
	tc := tls.Client(tap, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, KeyLogWriter: kl})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if st := tc.ConnectionState(); st.Version != tls.VersionTLS12 || st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
		t.Fatalf("negotiated %s with %s, want TLS 1.2 with AES-128-GCM", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	}
	seed := append(slices.Clone(helloRandom(t, tap.read.Bytes(), 2)), helloRandom(t, tap.wrote.Bytes(), 1)...)
	kb := prf12(kl.secret(t, "CLIENT_RANDOM"), "key expansion", seed, 2*16+2*4)
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	return &tls12Raw{
		raw:    raw,
		br:     bufio.NewReader(raw),
		client: newTLS12Layer(t, kb[0:16], kb[32:36]),
		server: newTLS12Layer(t, kb[16:32], kb[36:40]),
	}
}

// TestTLS12RenegotiationRefused: a TLS 1.2 client that starts a
// renegotiation mid-connection — a second ClientHello, or a HelloRequest
// (which only a server may send) — after a request gets that request's
// reply, then an alert, then the end of the connection; the server goes
// on serving others. crypto/tls servers never renegotiate (conn.go,
// handleRenegotiation). openssl's own attempt, against the real binary,
// is in internal/interop.
func TestTLS12RenegotiationRefused(t *testing.T) {
	hello := helloFor(t, tls.VersionTLS12)[5:] // the message, without its record header
	attempts := []struct {
		name  string
		msg   []byte
		level byte
		alert byte
	}{
		{"second ClientHello", hello, 2, 10},         // fatal unexpected_message
		{"HelloRequest", []byte{0, 0, 0, 0}, 1, 100}, // warning no_renegotiation
	}
	for _, engine := range testEngines() {
		for _, a := range attempts {
			t.Run(engine+"/"+a.name, func(t *testing.T) {
				e, pool := startTLS13NoTickets(t, engine, Options{})
				c := dialTLS12Raw(t, e, pool)
				if typ, content := roundTrip12(t, c, proto.AppendFrame(nil, proto.Echo, []byte("before"))); typ != recordApplication || !bytes.Contains(content, []byte("before")) {
					t.Fatalf("first request: got a record of type %d with %q", typ, content)
				}
				out := c.client.seal(recordApplication, proto.AppendFrame(nil, proto.Reverse, []byte("then")))
				out = append(out, c.client.seal(recordHandshake, a.msg)...)
				if _, err := c.raw.Write(out); err != nil {
					t.Fatal(err)
				}
				typ, content, err := c.server.open(c.br)
				if err != nil || typ != recordApplication || string(content) != string(proto.AppendFrame(nil, proto.Reverse, []byte("neht"))) {
					t.Fatalf("got a record of type %d with %q (%v), want the reply to the request before the %s", typ, content, err, a.name)
				}
				typ, content, err = c.server.open(c.br)
				if err != nil || typ != 21 || !bytes.Equal(content, []byte{a.level, a.alert}) {
					t.Fatalf("got a record of type %d with % x (%v), want the alert (%d, %d)", typ, content, err, a.level, a.alert)
				}
				if _, _, err := c.server.open(c.br); err != io.EOF {
					t.Fatalf("after the alert: got %v, want EOF", err)
				}
				e.rec.waitClosed(t, CloseReadError, 1, 10*time.Second)
				e.assertHealthy()
			})
		}
	}
}

// roundTrip12 writes content as one application data record and reads
// one record back.
func roundTrip12(t testing.TB, c *tls12Raw, content []byte) (byte, []byte) {
	t.Helper()
	if _, err := c.raw.Write(c.client.seal(recordApplication, content)); err != nil {
		t.Fatal(err)
	}
	typ, got, err := c.server.open(c.br)
	if err != nil {
		t.Fatalf("reading a record: %v", err)
	}
	return typ, got
}

// keyUpdateMsg is a KeyUpdate handshake message (RFC 8446, section 4.6.3).
func keyUpdateMsg(requested bool) []byte {
	if requested {
		return []byte{handshakeKeyUpdate, 0, 0, 1, 1}
	}
	return []byte{handshakeKeyUpdate, 0, 0, 1, 0}
}

// heapSampler samples the live heap — what the last garbage collection
// found reachable (runtime/metrics /gc/heap/live:bytes), unlike
// MemStats.HeapAlloc, which also counts what was allocated since, a lot
// while a flood is on — until stopped, and reports the peak growth over
// the live heap when it started.
type heapSampler struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func sampleHeap() *heapSampler {
	h := &heapSampler{base: liveHeap(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
			if live := liveHeap(); live > h.peak.Load() {
				h.peak.Store(live)
			}
		}
	}()
	return h
}

// growth stops the sampler and returns the peak growth in bytes.
func (h *heapSampler) growth() int64 {
	close(h.stop)
	<-h.done
	return max(int64(h.peak.Load())-int64(h.base), 0)
}

// TestKeyUpdateFlood (TLS 1.3): thousands of KeyUpdates from the client,
// up to 16 in a row between requests, some asking for the server's own
// update, all pipelined: every reply comes back correct under the right
// keys, each asked-for update is answered before the reply that follows
// it, and the heap stays bounded. A 17th update in a row is refused, as
// crypto/tls refuses more than 16 records that do not advance the
// connection (conn.go, maxUselessRecords): an alert, then the end.
func TestKeyUpdateFlood(t *testing.T) {
	rounds := scaled(600, 240)
	inRound := func(r int) int { return 1 + r%16 }
	requested := func(r, i int) bool { return (r+i)%5 == 0 }
	for _, engine := range testEngines() {
		t.Run(engine+"/interleaved", func(t *testing.T) {
			e, pool := startTLS13NoTickets(t, engine, Options{})
			c := dialTLS13Raw(t, e, pool)
			_ = c.raw.SetDeadline(time.Now().Add(2 * time.Minute))
			heap := sampleHeap()
			// The client layer is the writer's from here on.
			wrote := make(chan error, 1)
			go func() {
				for r := range rounds {
					var out []byte
					for i := range inRound(r) {
						out = append(out, c.client.seal(recordHandshake, keyUpdateMsg(requested(r, i)))...)
						c.client.update()
					}
					out = append(out, c.client.seal(recordApplication, proto.AppendFrame(nil, proto.Echo, fmt.Appendf(nil, "round %d", r)))...)
					if _, err := c.raw.Write(out); err != nil {
						wrote <- err
						return
					}
				}
				wrote <- nil
			}()
			updates := 0
			for r := range rounds {
				for i := range inRound(r) {
					updates++
					if !requested(r, i) {
						continue
					}
					typ, content := c.server.open(c.br)
					if typ != recordHandshake || !bytes.Equal(content, keyUpdateMsg(false)) {
						t.Fatalf("round %d: got a record of type %d with % x, want the server's KeyUpdate", r, typ, content)
					}
					c.server.update()
				}
				typ, content := c.server.open(c.br)
				want := proto.AppendFrame(nil, proto.Echo, fmt.Appendf(nil, "round %d", r))
				if typ != recordApplication || !bytes.Equal(content, want) {
					t.Fatalf("round %d: got a record of type %d with %q, want the ECHO reply", r, typ, content)
				}
			}
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
			grew := heap.growth()
			t.Logf("%d KeyUpdates in %d rounds; heap growth at most %d KiB", updates, rounds, grew>>10)
			if grew > 8<<20 {
				t.Errorf("heap grew by %d KiB during the flood, want under 8 MiB", grew>>10)
			}
			e.rec.waitFor(t, "every request counted", 5*time.Second, func() bool { return e.rec.messages[proto.Echo] == rounds })
			e.assertHealthy()
		})
		t.Run(engine+"/17 in a row", func(t *testing.T) {
			e, pool := startTLS13NoTickets(t, engine, Options{})
			c := dialTLS13Raw(t, e, pool)
			var out []byte
			for range 17 {
				out = append(out, c.client.seal(recordHandshake, keyUpdateMsg(false))...)
				c.client.update()
			}
			out = append(out, c.client.seal(recordApplication, proto.AppendFrame(nil, proto.Echo, []byte("too late")))...)
			if _, err := c.raw.Write(out); err != nil {
				t.Fatal(err)
			}
			if typ, content := c.server.open(c.br); typ != 21 || !bytes.Equal(content, []byte{2, 10}) {
				t.Fatalf("got a record of type %d with % x, want a fatal unexpected_message alert", typ, content)
			}
			drainClosed(t, c.raw)
			e.rec.waitClosed(t, CloseReadError, 1, 10*time.Second)
			e.assertHealthy()
		})
	}
}

// TestKeyUpdateRequestedNeverRead (TLS 1.3): a client that keeps asking
// for key updates — 16 at a time, each time with one more byte of a
// request, so that crypto/tls goes on reading and no reply is due — and
// never reads is cut for write_timeout, and the server's heap stays
// bounded. crypto/tls writes its answers from inside Read (conn.go,
// handleKeyUpdate), so they are writes the server must bound like its
// replies. The epoll engine cuts the connection WriteTimeout after its
// output queue began to wait; the goroutine engine bounds every write,
// those from inside Read included, by WriteTimeout (sockConn). The request
// is fed a byte a round for longer than the default idle timeout of a
// test: the idle timeout is set far beyond the wait, so that the frame's
// deadline (a frame must be whole within IdleTimeout of its first byte)
// does not cut the connection first.
//
// The sockets are sized so that the server's side fills after a few
// thousand answers and stays full: a small send buffer on the server,
// and a receive buffer on the client fixed at 16 KiB (SO_RCVBUF turns its
// autotuning off). Left to autotune, a receive buffer that is never read
// still takes a trickle of the server's tiny records for minutes, as the
// kernel collapses them; at 4 KiB, loopback TCP drops the ACKs riding on
// the server's segments and both sides stall in reads instead.
func TestKeyUpdateRequestedNeverRead(t *testing.T) {
	const writeTimeout, idleTimeout = 500 * time.Millisecond, time.Minute
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			tcert := testutil.MustCert(t, testutil.CertOptions{})
			cert, pool := tcert.TLS, tcert.Pool
			cfg := serverTLS(cert)
			cfg.SessionTicketsDisabled = true
			e := startWrapped(t, engine, modeTLS13, Options{TLSConfig: cfg, WriteTimeout: writeTimeout, IdleTimeout: idleTimeout},
				func(ln net.Listener) net.Listener { return sndbufListener{Listener: ln, size: 4096} })
			e.clientTLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
			c := dialTLS13Raw(t, e, pool)
			_ = c.raw.SetDeadline(time.Time{})
			if err := c.raw.(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
				t.Fatal(err)
			}
			heap := sampleHeap()
			wrote := make(chan int, 1)
			go func() {
				frame := proto.AppendFrame(nil, proto.Echo, make([]byte, proto.DefaultMaxBody))
				for i := 0; ; i++ {
					var out []byte
					for range 16 {
						out = append(out, c.client.seal(recordHandshake, keyUpdateMsg(true))...)
						c.client.update()
					}
					out = append(out, c.client.seal(recordApplication, frame[i%len(frame):i%len(frame)+1])...)
					if _, err := c.raw.Write(out); err != nil {
						wrote <- i // cut, or closed below
						return
					}
				}
			}()
			began := time.Now()
			e.rec.waitFor(t, "the connection cut", 20*time.Second, func() bool { return e.rec.active == 0 })
			took := time.Since(began)
			c.raw.Close()
			rounds := <-wrote
			grew := heap.growth()
			closed := e.rec.closedCopy()
			t.Logf("cut after %v and %d rounds of 16 updates (closed: %v); live heap growth at most %d KiB", took, rounds, closed, grew>>10)
			if closed[CloseWriteTimeout] != 1 {
				t.Errorf("closed: %v, want 1 for %s", closed, CloseWriteTimeout)
			}
			if grew > 8<<20 {
				t.Errorf("live heap grew by %d KiB, want under 8 MiB", grew>>10)
			}
			e.assertHealthy()
		})
	}
}

// sndbufListener gives the connections it accepts a send buffer of size
// bytes (the kernel doubles it, socket(7)); they stay *net.TCPConn, so
// every engine serves them as it serves any.
type sndbufListener struct {
	net.Listener
	size int
}

func (l sndbufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		err = c.(*net.TCPConn).SetWriteBuffer(l.size)
	}
	return c, err
}

// TestDroppedMidHandshake: 1,000 connections (400 under the race
// detector) opened and dropped mid-handshake — half a ClientHello then a
// FIN or an RST, a whole one then a FIN at once, or once the server has
// answered it, before the client's Finished — each end as a failed
// handshake; then the server's goroutines and descriptors are back where
// they were and a normal client is served.
func TestDroppedMidHandshake(t *testing.T) {
	n := scaled(1000, 400)
	const workers = 16
	hellos := [][]byte{helloFor(t, tls.VersionTLS13), helloFor(t, tls.VersionTLS12)}
	drop := func(addr string, i int) error {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		hello := hellos[(i/4)%2]
		switch i % 4 {
		case 0: // half a ClientHello, then a FIN
			_, err = c.Write(hello[:len(hello)/2])
		case 1: // a whole one, then a FIN at once
			_, err = c.Write(hello)
		case 2: // a whole one, the server's answer, then a FIN
			if _, err = c.Write(hello); err == nil {
				_, err = io.ReadFull(c, make([]byte, 5))
			}
		case 3: // half a ClientHello, then an RST
			if _, err = c.Write(hello[:len(hello)/3]); err == nil {
				err = c.(*net.TCPConn).SetLinger(0)
			}
		}
		return err
	}
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			e := start(t, engine, modeTLS13, Options{})
			base := e.baseline()
			e.rec.mu.Lock()
			hsErrors := e.rec.hsErrors
			e.rec.mu.Unlock()
			began := time.Now()
			next := make(chan int)
			errs := make(chan error, workers)
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for i := range next {
						if err := drop(e.addr, i); err != nil {
							errs <- fmt.Errorf("connection %d: %w", i, err)
							return
						}
					}
				})
			}
			var failed error
			for i := 0; i < n && failed == nil; i++ {
				select {
				case next <- i:
				case failed = <-errs:
				}
			}
			close(next)
			wg.Wait()
			if failed == nil && len(errs) > 0 {
				failed = <-errs
			}
			if failed != nil {
				t.Fatal(failed)
			}
			e.rec.waitFor(t, "every dropped connection closed", 60*time.Second, func() bool {
				return e.rec.active == 0 && e.rec.hsErrors == hsErrors+n
			})
			t.Logf("%d connections dropped mid-handshake in %v", n, time.Since(began).Round(time.Millisecond))
			closed := e.rec.closedCopy()
			if closed[CloseHandshakeError] != n {
				t.Errorf("closed: %v, want %d for %s", closed, n, CloseHandshakeError)
			}
			e.expectNoLeaks(base)
			e.assertHealthy()
		})
	}
}
