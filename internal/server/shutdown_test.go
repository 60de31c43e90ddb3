package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// recordingConn keeps every byte read from the server.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	got bytes.Buffer
}

func (r *recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.got.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

// lastRecord splits what the server sent into TLS records (RFC 8446,
// section 5.1: type, version, 16-bit length) and returns the last one's
// type and length.
func (r *recordingConn) lastRecord(t testing.TB) (typ byte, length int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.got.Bytes()
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("stream ends in a partial record header: % x", b)
		}
		typ, length = b[0], int(binary.BigEndian.Uint16(b[3:5]))
		if len(b) < 5+length {
			t.Fatalf("stream ends inside a %d-byte record", length)
		}
		b = b[5+length:]
	}
	return typ, length
}

// expectCloseNotify checks that the last record the server sent is a
// close_notify alert. In TLS 1.2 alerts travel in records of type alert
// (21); in TLS 1.3 every record after the handshake has the outer type
// application_data (23), and an encrypted close_notify is 19 bytes: the
// 2-byte alert, its inner content type and a 16-byte AEAD tag.
func expectCloseNotify(t testing.TB, m mode, rc *recordingConn) {
	t.Helper()
	if !m.tls {
		return
	}
	typ, length := rc.lastRecord(t)
	switch m.version {
	case tls.VersionTLS12:
		if typ != 21 {
			t.Errorf("last record: got type %d, want an alert (21)", typ)
		}
	case tls.VersionTLS13:
		if typ != 23 || length != 19 {
			t.Errorf("last record: got type %d of %d bytes, want an encrypted alert (23, 19 bytes)", typ, length)
		}
	}
}

func (e *testEnv) dialRecorded() (net.Conn, *recordingConn) {
	e.t.Helper()
	rc := &recordingConn{Conn: e.dialRaw()}
	if e.clientTLS == nil {
		return rc, rc
	}
	tc := tls.Client(rc, e.clientTLS)
	if err := tc.Handshake(); err != nil {
		e.t.Fatalf("handshake: %v", err)
	}
	return tc, rc
}

func TestShutdownGraceful(t *testing.T) {
	forEach(t, allModes, func(t *testing.T, engine string, m mode) {
		keys := proto.AppendKeys(nil, "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", nil)
		entered, release := make(chan struct{}, 1), make(chan struct{})
		e := start(t, engine, m, Options{Keys: func() []byte {
			entered <- struct{}{}
			<-release
			return keys
		}})
		var releaseOnce sync.Once
		t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // runs before the Shutdown of start
		idle, idleRec := e.dialRecorded()
		roundTrip(t, idle, proto.Echo, []byte("idle now"))
		busy, busyRec := e.dialRecorded()
		send(t, busy, proto.Echo, []byte("before"))
		send(t, busy, proto.Keys, nil)
		<-entered // a request in flight

		shutdown := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			shutdown <- e.srv.Shutdown(ctx)
		}()
		if err := e.serveResult(); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve: got %v, want ErrServerClosed once Shutdown begins", err)
		}
		if c, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
			c.Close()
			t.Error("dial after Shutdown began: got a connection, want the listener closed")
		}

		// The idle connection is closed at once, with close_notify.
		expectClosed(t, idle)
		expectCloseNotify(t, m, idleRec)

		releaseOnce.Do(func() { close(release) })
		if f := receive(t, busy); string(f.Body) != "before" {
			t.Fatalf("got %q, want the reply before the KEYS", f.Body)
		}
		if f := receive(t, busy); f.Type != proto.Keys || !bytes.Equal(f.Body, keys) {
			t.Fatalf("in-flight KEYS: got (%v, %q), want its reply", f.Type, f.Body)
		}
		expectClosed(t, busy)
		expectCloseNotify(t, m, busyRec)
		if err := <-shutdown; err != nil {
			t.Fatalf("Shutdown: got %v, want nil", err)
		}
		e.rec.waitClosed(t, CloseShutdown, 2, time.Second)
	})
}

func TestShutdownForced(t *testing.T) {
	forEach(t, []mode{modeTLS13, modePlaintext}, func(t *testing.T, engine string, m mode) {
		entered, release := make(chan struct{}, 1), make(chan struct{})
		e := start(t, engine, m, Options{Keys: func() []byte {
			entered <- struct{}{}
			<-release
			return []byte("late")
		}})
		var releaseOnce sync.Once
		t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
		busy := e.dial()
		send(t, busy, proto.Keys, nil)
		<-entered
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: got %v, want context.DeadlineExceeded", err)
		}
		_ = busy.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := io.Copy(io.Discard, busy); n != 0 || isTimeout(err) {
			t.Fatalf("got %d bytes and %v, want the connection closed hard without a reply", n, err)
		}
		releaseOnce.Do(func() { close(release) })
		e.rec.waitClosed(t, CloseForced, 1, 5*time.Second)
	})
}

// TestServeContext: when Serve's context ends, the server stops at once.
func TestServeContext(t *testing.T) {
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			rec := newRecorder()
			s, err := New(Options{Engine: engine, Events: rec, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- s.Serve(ctx, ln) }()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			roundTrip(t, c, proto.Echo, []byte("x"))
			cancel()
			if err := <-served; !errors.Is(err, context.Canceled) {
				t.Fatalf("Serve: got %v, want context.Canceled", err)
			}
			expectClosed(t, c)
			rec.waitClosed(t, CloseForced, 1, 5*time.Second)
		})
	}
}
