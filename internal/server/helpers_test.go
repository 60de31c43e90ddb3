package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testEngines is every engine the shared tests run against.
func testEngines() []string { return Engines() }

// mode is how a test client talks to the server.
type mode struct {
	name    string
	tls     bool
	version uint16
}

var (
	modeTLS12     = mode{"TLS1.2", true, tls.VersionTLS12}
	modeTLS13     = mode{"TLS1.3", true, tls.VersionTLS13}
	modePlaintext = mode{"plaintext", false, 0}
	allModes      = []mode{modeTLS12, modeTLS13, modePlaintext}
)

// forEach runs f once per engine and mode, as subtests.
func forEach(t *testing.T, modes []mode, f func(t *testing.T, engine string, m mode)) {
	t.Helper()
	for _, eng := range testEngines() {
		for _, m := range modes {
			t.Run(eng+"/"+m.name, func(t *testing.T) { f(t, eng, m) })
		}
	}
}

func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:                  tls.VersionTLS12,
		GetCertificate:              func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
		DynamicRecordSizingDisabled: true,
	}
}

// recorder is an Events that counts, and signals every change.
type recorder struct {
	mu         sync.Mutex
	accepted   int
	active     int
	peak       int
	refused    map[string]int
	closed     map[string]int
	handshakes int
	hsErrors   int
	messages   map[proto.Type]int
	protoErrs  map[string]int
	changed    chan struct{}
}

func newRecorder() *recorder {
	return &recorder{
		refused:   map[string]int{},
		closed:    map[string]int{},
		messages:  map[proto.Type]int{},
		protoErrs: map[string]int{},
		changed:   make(chan struct{}, 1),
	}
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

func (r *recorder) ConnAccepted() {
	r.update(func() { r.accepted++; r.active++; r.peak = max(r.peak, r.active) })
}
func (r *recorder) ConnRefused(reason string) { r.update(func() { r.refused[reason]++ }) }
func (r *recorder) ConnClosed(reason string) {
	r.update(func() { r.closed[reason]++; r.active-- })
}
func (r *recorder) Handshake(_ tls.ConnectionState, _ time.Duration, err error) {
	r.update(func() {
		r.handshakes++
		if err != nil {
			r.hsErrors++
		}
	})
}
func (r *recorder) Message(t proto.Type, _ time.Duration, _, _ int) {
	r.update(func() { r.messages[t]++ })
}
func (r *recorder) ProtocolError(kind string) { r.update(func() { r.protoErrs[kind]++ }) }

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
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("timed out after %v waiting for %s; events: accepted=%d active=%d refused=%v closed=%v handshakes=%d (errors %d) messages=%v protocol errors=%v",
				timeout, what, r.accepted, r.active, r.refused, r.closed, r.handshakes, r.hsErrors, r.messages, r.protoErrs)
		}
	}
}

func (r *recorder) waitClosed(t testing.TB, reason string, n int, timeout time.Duration) {
	t.Helper()
	r.waitFor(t, "a connection closed for "+reason, timeout, func() bool { return r.closed[reason] >= n })
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

// testEnv is a running server and how to reach it.
type testEnv struct {
	t         testing.TB
	srv       *Server
	addr      string
	rec       *recorder
	mode      mode
	clientTLS *tls.Config // nil in plaintext
	serveErr  chan error
	serveOnce sync.Once
	served    error
}

// serveResult waits for Serve to return and gives its error.
func (e *testEnv) serveResult() error {
	e.serveOnce.Do(func() { e.served = <-e.serveErr })
	return e.served
}

// start runs a server for engine and m with opts (whose zero timeouts are
// made generous for tests, and zero per-source limits off) and shuts it
// down when the test ends. setup functions run before Serve.
func start(t testing.TB, engine string, m mode, opts Options, setup ...func(*Server)) *testEnv {
	t.Helper()
	return startWrapped(t, engine, m, opts, nil, setup...)
}

// startWrapped is start serving on wrap(a loopback listener), or on the
// listener itself when wrap is nil.
func startWrapped(t testing.TB, engine string, m mode, opts Options, wrap func(net.Listener) net.Listener, setup ...func(*Server)) *testEnv {
	t.Helper()
	e := &testEnv{t: t, rec: newRecorder(), mode: m, serveErr: make(chan error, 1)}
	opts.Engine = engine
	if opts.Events == nil {
		opts.Events = e.rec
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	for _, d := range []*time.Duration{&opts.HandshakeTimeout, &opts.IdleTimeout, &opts.WriteTimeout} {
		if *d == 0 {
			*d = 10 * time.Second
		}
	}
	offSourceLimits(&opts)
	if m.tls && opts.TLSConfig == nil {
		tcert := testutil.MustCert(t, testutil.CertOptions{})
		cert, pool := tcert.TLS, tcert.Pool
		opts.TLSConfig = serverTLS(cert)
		e.clientTLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: m.version, MaxVersion: m.version}
	}
	// What the process holds before this server exists. The package's
	// tests run one at a time (no t.Parallel) so that this process-wide
	// count is this server's.
	before := leakBaseline{goroutines: goleak.IgnoreCurrent(), fds: openFDs(t)}
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range setup {
		f(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	e.srv, e.addr = srv, ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	go func() { e.serveErr <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := e.serveResult(); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		// Every test's leak check: once the server has shut down (and the
		// test's own connections, closed by cleanups registered after
		// this one, are gone), its goroutines and descriptors are too.
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

// offSourceLimits turns off the per-source limits the test leaves at zero:
// every test client comes from 127.0.0.1, and many tests open
// connections faster than the default rate.
func offSourceLimits(o *Options) {
	if o.SourceMaxConns == 0 {
		o.SourceMaxConns = -1
	}
	if o.SourceHandshakeRate == 0 {
		o.SourceHandshakeRate = -1
	}
}

// dialRaw opens a TCP connection to the server.
func (e *testEnv) dialRaw() net.Conn {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		e.t.Fatalf("dialing %s: %v", e.addr, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// dial opens a connection in the env's mode, the handshake done.
func (e *testEnv) dial() net.Conn {
	e.t.Helper()
	c := e.dialRaw()
	if e.clientTLS == nil {
		return c
	}
	tc := tls.Client(c, e.clientTLS)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		e.t.Fatalf("handshake: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc
}

// send writes one frame.
func send(t testing.TB, c net.Conn, typ proto.Type, body []byte) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(proto.AppendFrame(nil, typ, body)); err != nil {
		t.Fatalf("writing %v frame: %v", typ, err)
	}
}

// receive reads one frame, copying its body.
func receive(t testing.TB, c net.Conn) proto.Frame {
	t.Helper()
	f, err := receiveErr(c)
	if err != nil {
		t.Fatalf("reading reply: %v", err)
	}
	return f
}

func receiveErr(c net.Conn) (proto.Frame, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [proto.HeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return proto.Frame{}, err
	}
	body := make([]byte, binary.LittleEndian.Uint32(hdr[4:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return proto.Frame{}, err
	}
	return proto.Frame{Type: proto.Type(binary.LittleEndian.Uint32(hdr[:])), Body: body}, nil
}

// roundTrip sends one request and returns its reply.
func roundTrip(t testing.TB, c net.Conn, typ proto.Type, body []byte) proto.Frame {
	t.Helper()
	send(t, c, typ, body)
	return receive(t, c)
}

// expectClosed reads from c until the server closes it, failing if a frame
// or anything but an orderly end arrives first.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var buf [64]byte
	n, err := c.Read(buf[:])
	if n > 0 {
		t.Fatalf("got %d more bytes (% x), want the connection closed", n, buf[:n])
	}
	if isTimeout(err) {
		t.Fatalf("connection still open after 10 s, want it closed")
	}
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
