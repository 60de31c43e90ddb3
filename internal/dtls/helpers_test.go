package dtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"
	"go.uber.org/goleak"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperAddrEnv) != "" {
		os.Exit(helperClients()) // a client process of TestIdleSessionCost
	}
	goleak.VerifyTestMain(m)
}

// recorder is an Events that counts, and signals every change.
type recorder struct {
	mu         sync.Mutex
	accepted   int
	active     int
	refused    map[string]int
	closed     map[string]int
	handshakes map[string]int // by HandshakeResult
	messages   map[proto.Type]int
	protoErrs  map[string]int
	changed    chan struct{}
}

func newRecorder() *recorder {
	return &recorder{refused: map[string]int{}, closed: map[string]int{}, handshakes: map[string]int{},
		messages: map[proto.Type]int{}, protoErrs: map[string]int{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) update(f func()) {
	r.mu.Lock()
	f()
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) ConnAccepted()             { r.update(func() { r.accepted++; r.active++ }) }
func (r *recorder) ConnRefused(reason string) { r.update(func() { r.refused[reason]++ }) }
func (r *recorder) ConnClosed(reason string)  { r.update(func() { r.closed[reason]++; r.active-- }) }
func (r *recorder) Handshake(_ tls.ConnectionState, _ time.Duration, err error) {
	r.update(func() { r.handshakes[HandshakeResult(err)]++ })
}
func (r *recorder) Message(t proto.Type, _ time.Duration, _, _ int) {
	r.update(func() { r.messages[t]++ })
}
func (r *recorder) ProtocolError(kind string) { r.update(func() { r.protoErrs[kind]++ }) }

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("accepted=%d active=%d refused=%v closed=%v handshakes=%v messages=%v protocol errors=%v",
		r.accepted, r.active, r.refused, r.closed, r.handshakes, r.messages, r.protoErrs)
}

// waitFor waits until cond, called under the recorder's lock, holds.
func (r *recorder) waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; events: %v", timeout, what, r)
		}
	}
}

// testWriter sends slog output to t.Log until the test ends.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	level := slog.LevelInfo
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// openFDs counts the process's open descriptors, or -1 where it cannot.
func openFDs(t testing.TB) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return -1
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open descriptors: %v", err)
	}
	return len(ents) - 1 // the directory's own
}

// waitUntil polls cond until it returns "" or timeout passes, then fails
// with its last answer.
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

// testEnv is a running server and how to reach it.
type testEnv struct {
	t        testing.TB
	srv      *Server
	addr     *net.UDPAddr
	rec      *recorder
	cert     tls.Certificate
	pool     *x509.CertPool
	serveErr chan error
	g        *gate
}

// start runs a server with opts (the certificate, the recorder and the
// test's logger filled in when zero; the per-source limits off unless
// set) and shuts it down when the test ends, checking that no goroutine
// and no descriptor outlives it. The package's tests run one at a time
// (no t.Parallel): both counts are process-wide.
func start(t testing.TB, opts Options) *testEnv {
	t.Helper()
	e := &testEnv{t: t, rec: newRecorder(), serveErr: make(chan error, 1)}
	tcert := testutil.MustCert(t, testutil.CertOptions{Serial: 1})
	e.cert, e.pool = tcert.TLS, tcert.Pool
	if opts.GetCertificate == nil {
		cert := e.cert
		opts.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	if opts.Events == nil {
		opts.Events = e.rec
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.SourceMaxSessions == 0 {
		opts.SourceMaxSessions = -1
	}
	if opts.SourceHandshakeRate == 0 {
		opts.SourceHandshakeRate = -1
	}
	if opts.SourceMaxHalfOpen == 0 {
		opts.SourceMaxHalfOpen = 1 << 20 // every test client is 127.0.0.1
	}
	before := struct {
		goroutines goleak.Option
		fds        int
	}{goleak.IgnoreCurrent(), openFDs(t)}
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	e.srv, e.addr = srv, pc.LocalAddr().(*net.UDPAddr)
	go func() { e.serveErr <- srv.Serve(context.Background(), pc) }()
	waitUntil(t, 5*time.Second, func() string {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for g := range srv.gates {
			e.g = g
			return ""
		}
		return "the server has not started serving"
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-e.serveErr; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		// Every test's leak check: once the server has shut down (and the
		// test's clients, closed by cleanups registered after this one,
		// are gone), its goroutines and descriptors are gone too.
		waitUntil(t, 10*time.Second, func() string {
			if before.fds >= 0 {
				if n := openFDs(t); n > before.fds {
					return fmt.Sprintf("after shutdown: %d open descriptors, %d before the server", n, before.fds)
				}
			}
			if err := goleak.Find(before.goroutines); err != nil {
				return "after shutdown, goroutines left: " + err.Error()
			}
			return ""
		})
	})
	return e
}

// clientOptions are a pion client's options as our client sets them:
// DTLS 1.2, the extended master secret, connection IDs it sends (it asks
// for none) with return routability checks, and the server verified
// against the test's certificate.
func (e *testEnv) clientOptions(extra ...piondtls.ClientOption) []piondtls.ClientOption {
	opts := []piondtls.ClientOption{
		piondtls.WithRootCAs(e.pool),
		piondtls.WithServerName("localhost"),
		piondtls.WithMaxVersion(protocol.Version1_2),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		piondtls.WithConnectionID(piondtls.OnlySendCIDGenerator(), piondtls.CIDPathMigrationRRC),
		piondtls.WithLoggerFactory(newPionLogs(testLogger(e.t))),
	}
	return append(opts, extra...)
}

// dialOn runs a client handshake over pc, closed when the test ends.
func (e *testEnv) dialOn(pc net.PacketConn, extra ...piondtls.ClientOption) (*piondtls.Conn, error) {
	e.t.Helper()
	c, err := piondtls.Client(pc, e.addr, e.clientOptions(extra...)...)
	if err != nil {
		pc.Close()
		return nil, err
	}
	e.t.Cleanup(func() { c.Close(); pc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c, c.HandshakeContext(ctx)
}

// dial opens a session, its handshake done.
func (e *testEnv) dial(extra ...piondtls.ClientOption) *piondtls.Conn {
	e.t.Helper()
	c, err := e.dialOn(listenLoopback(e.t), extra...)
	if err != nil {
		e.t.Fatalf("handshake: %v", err)
	}
	return c
}

// dialRetry opens a session as sc-client does: a handshake that gets no
// answer for 2 s starts over with a new ClientHello, since an RFC 6347
// client retransmits its second ClientHello for ever once the server has
// dropped the half-open handshake it belonged to.
func (e *testEnv) dialRetry() *piondtls.Conn {
	e.t.Helper()
	var err error
	for range 5 {
		pc := listenLoopback(e.t)
		var c *piondtls.Conn
		c, err = piondtls.Client(pc, e.addr, e.clientOptions()...)
		if err != nil {
			pc.Close()
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = c.HandshakeContext(ctx)
		cancel()
		if err == nil {
			e.t.Cleanup(func() { c.Close(); pc.Close() })
			return c
		}
		c.Close()
		pc.Close()
	}
	e.t.Fatalf("handshake, five tries: %v", err)
	return nil
}

func listenLoopback(t testing.TB) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	return pc
}

// exchange writes one record and returns the replies, one record each,
// that arrive until none has for quiet.
func exchange(t testing.TB, c net.Conn, record []byte, want int) [][]byte {
	t.Helper()
	if _, err := c.Write(record); err != nil {
		t.Fatalf("writing: %v", err)
	}
	var got [][]byte
	buf := make([]byte, 1<<16)
	for len(got) < want {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading reply %d of %d: %v", len(got)+1, want, err)
		}
		got = append(got, bytes.Clone(buf[:n]))
	}
	return got
}

// frames parses a record of whole frames.
func frames(t testing.TB, rec []byte) []proto.Frame {
	t.Helper()
	var fs []proto.Frame
	for len(rec) > 0 {
		f, n, err := proto.Parse(rec, 1<<20)
		if err != nil || n == 0 {
			t.Fatalf("reply record does not hold whole frames (%v): % x", err, rec)
		}
		fs = append(fs, proto.Frame{Type: f.Type, Body: bytes.Clone(f.Body)})
		rec = rec[n:]
	}
	return fs
}

// roundTrip sends one request and returns its one reply.
func roundTrip(t testing.TB, c net.Conn, typ proto.Type, body []byte) proto.Frame {
	t.Helper()
	fs := frames(t, exchange(t, c, proto.AppendFrame(nil, typ, body), 1)[0])
	if len(fs) != 1 {
		t.Fatalf("got %d frames in the reply, want 1", len(fs))
	}
	return fs[0]
}

// assertHealthy checks that a new client is served.
func (e *testEnv) assertHealthy() {
	e.t.Helper()
	c := e.dial()
	defer c.Close()
	if f := roundTrip(e.t, c, proto.Echo, []byte("still there?")); f.Type != proto.Echo || string(f.Body) != "still there?" {
		e.t.Fatalf("server unhealthy: got (%v, %q) to an ECHO", f.Type, f.Body)
	}
}
