package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// Tests of the epoll engine's own machinery: its transport's rules, the
// loop's hand-off, idle connections without goroutines or buffers, and
// the output queue. The behaviour it shares with the goroutine engine is
// tested with every engine elsewhere.

func (e *testEnv) epoll(t testing.TB) *epollEngine {
	t.Helper()
	ee, ok := e.srv.eng.(*epollEngine)
	if !ok {
		t.Fatalf("engine %T, want the epoll engine", e.srv.eng)
	}
	return ee
}

// loopConns returns the connections in the loop.
func (ee *epollEngine) loopConns() []*conn {
	ee.mu.Lock()
	defer ee.mu.Unlock()
	var cs []*conn
	for _, c := range ee.table {
		if c != nil {
			cs = append(cs, c)
		}
	}
	return cs
}

// inspect runs f on c as if it were a worker serving c, so that f may read
// the fields c's owner keeps: it claims c from the idle state, which
// orders f after c's last run and before its next. It reports false if c
// was not idle.
func (ee *epollEngine) inspect(c *conn, f func()) bool {
	lc := &c.loop
	if !lc.sched.CompareAndSwap(schedIdle, schedRunning) {
		return false
	}
	f()
	if !lc.sched.CompareAndSwap(schedRunning, schedIdle) {
		ee.run(c, ee.s.now()) // woken meanwhile: serve it, as its worker would have
	}
	return true
}

// TestEpollIdleConnsHoldNothing: connections that have been served and
// wait for their next request have no goroutine and no buffer of the
// server's: they are in the loop's table with an empty queue and no
// partial frame, and the goroutines are the loop's and its workers' alone.
func TestEpollIdleConnsHoldNothing(t *testing.T) {
	n := 300
	if raceEnabled {
		n = 60
	}
	for _, m := range []mode{modeTLS13, modePlaintext} {
		t.Run(m.name, func(t *testing.T) {
			e := start(t, engineEpoll, m, Options{})
			first := e.dial()
			roundTrip(t, first, proto.Echo, []byte("start the loop"))
			ee := e.epoll(t)
			idle := func(want int) string {
				cs := ee.loopConns()
				if len(cs) != want {
					return fmt.Sprintf("%d connections in the loop, want %d", len(cs), want)
				}
				for _, c := range cs {
					if s := c.loop.sched.Load(); s != schedIdle {
						return fmt.Sprintf("a connection in scheduling state %d, want idle", s)
					}
				}
				return ""
			}
			waitUntil(t, 10*time.Second, func() string { return idle(1) })
			base := runtime.NumGoroutine()

			conns := make([]net.Conn, n)
			for i := range conns {
				conns[i] = e.dial()
				body := bytes.Repeat([]byte{'i'}, 1+i%4000)
				if f := roundTrip(t, conns[i], proto.Echo, body); !bytes.Equal(f.Body, body) {
					t.Fatalf("connection %d: got a %d-byte reply, want the ECHO of %d bytes", i, len(f.Body), len(body))
				}
			}
			waitUntil(t, 10*time.Second, func() string {
				if why := idle(n + 1); why != "" {
					return why
				}
				// Handshake goroutines end once they have served their
				// connection's first run.
				if g := runtime.NumGoroutine(); g > base+n/10 {
					return fmt.Sprintf("%d goroutines with %d idle connections, %d with one: want no goroutine per connection", g, n+1, base)
				}
				return ""
			})
			for _, c := range ee.loopConns() {
				var held, queued bool
				if !ee.inspect(c, func() { held, queued = c.in != nil, c.loop.t.q != nil }) {
					t.Fatal("a connection woke up with no request sent")
				}
				if held || queued {
					t.Fatalf("an idle connection holds an input buffer (%v) or queued output (%v)", held, queued)
				}
			}
			for i, c := range conns {
				if f := roundTrip(t, c, proto.Reverse, []byte("ab")); string(f.Body) != "ba" {
					t.Fatalf("connection %d after idling: got %q", i, f.Body)
				}
			}
		})
	}
}

// TestEpollBackpressure: a client that pipelines far more than the
// socket buffers hold and reads only later gets every reply, in order.
// The server stops reading while its output is queued, resumes on
// EPOLLOUT, and the queue is gone once the connection is idle again.
func TestEpollBackpressure(t *testing.T) {
	const frames = 4000 // 16 MB of replies: more than loopback buffers hold
	for _, m := range []mode{modeTLS13, modePlaintext} {
		t.Run(m.name, func(t *testing.T) {
			e := start(t, engineEpoll, m, Options{})
			ee := e.epoll(t)
			c := e.dial()
			body := make([]byte, proto.DefaultMaxBody)
			var batch []byte
			for i := range frames {
				body[0], body[1] = byte(i), byte(i>>8)
				batch = proto.AppendFrame(batch, proto.Echo, body)
			}
			wrote := make(chan error, 1)
			go func() {
				_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
				_, err := c.Write(batch)
				wrote <- err
			}()
			waitUntil(t, 20*time.Second, func() string {
				if ee.queued.Load() == 0 {
					return "the server never found the socket full"
				}
				return ""
			})
			for i := range frames {
				f := receive(t, c)
				if len(f.Body) != len(body) || f.Body[0] != byte(i) || f.Body[1] != byte(i>>8) {
					t.Fatalf("reply %d: got a %d-byte reply starting % x, want reply %d", i, len(f.Body), f.Body[:min(2, len(f.Body))], i)
				}
			}
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
			waitUntil(t, 10*time.Second, func() string {
				for _, c := range ee.loopConns() {
					queued := true
					if !ee.inspect(c, func() { queued = c.loop.t.q != nil }) || queued {
						return "the connection has not gone idle with an empty queue"
					}
				}
				return ""
			})
		})
	}
}

// TestEpollReadDataWithWouldBlock: tls.Conn.Read returns data together
// with the transport's would-block when its look-ahead for a close_notify
// finds only part of the next record (crypto/tls conn.go, Conn.Read). That
// is data to answer at once, not an error and not a reason to wait.
func TestEpollReadDataWithWouldBlock(t *testing.T) {
	e, pool := startTLS13NoTickets(t, engineEpoll, Options{IdleTimeout: time.Minute})
	c := dialTLS13Raw(t, e, pool)
	out := c.client.seal(recordApplication, proto.AppendFrame(nil, proto.Echo, []byte("then a partial alert")))
	out = append(out, 21, 3, 3) // the start of an alert record's header
	if _, err := c.raw.Write(out); err != nil {
		t.Fatal(err)
	}
	_ = c.raw.SetReadDeadline(time.Now().Add(5 * time.Second)) // well before the idle timeout
	typ, content := c.server.open(c.br)
	f, _, err := proto.Parse(content, proto.DefaultMaxBody)
	if typ != recordApplication || err != nil || string(f.Body) != "then a partial alert" {
		t.Fatalf("got a record of type %d with %q, want the ECHO reply", typ, content)
	}
}

// TestEpollWrappedConnsServed: connections a listener wraps (not a
// *net.TCPConn: a PROXY protocol reader may hold bytes the socket no
// longer has) are served on their own goroutine, the goroutine engine's
// way, and never enter the loop.
func TestEpollWrappedConnsServed(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	s, err := New(Options{Engine: engineEpoll, Events: rec, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), wrappingListener{inner}) }()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if f := roundTrip(t, c, proto.Reverse, []byte("wrapped")); string(f.Body) != "depparw" {
		t.Fatalf("got %q", f.Body)
	}
	if n := len(s.eng.(*epollEngine).loopConns()); n != 0 {
		t.Errorf("%d connections in the loop, want the wrapped one served outside it", n)
	}
	c.Close()
	rec.waitClosed(t, CloseEOF, 1, 5*time.Second)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

type wrappingListener struct{ net.Listener }

type wrappedConn struct{ net.Conn }

func (l wrappingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrappedConn{c}, nil
}

// TestEpollEngineEnds: the loop and the workers end once the server has
// stopped and its last connection is gone.
func TestEpollEngineEnds(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, forced := range []bool{false, true} {
		s, err := New(Options{Engine: engineEpoll, Logger: testLogger(t)})
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
		roundTrip(t, c, proto.Echo, []byte("x"))
		if forced {
			cancel() // as Serve's context ends: every connection closed hard
			<-served
		} else {
			if err := s.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			<-served
		}
		expectClosed(t, c)
		c.Close()
		cancel()
	}
}

// loopTransport returns a transport in loop mode on the server end of a
// loopback TCP connection, outside any engine's loop, and the client end.
func loopTransport(t *testing.T) (*transport, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	tcp := sc.(*net.TCPConn)
	fd, err := dupSocket(tcp)
	if err != nil {
		t.Fatal(err)
	}
	tcp.Close()
	s, err := New(Options{Logger: testLogger(t), WriteTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tr := &transport{eng: newEpollEngine(s), tcp: tcp, fd: fd, epfd: -1, loop: true}
	t.Cleanup(func() { closeFD(tr) })
	return tr, client
}

func closeFD(tr *transport) {
	if tr.fd >= 0 {
		_ = unix.Close(tr.fd)
		tr.fd = -1
	}
}

func TestTransportRead(t *testing.T) {
	tr, client := loopTransport(t)
	buf := make([]byte, 64)
	n, err := tr.Read(buf)
	// Temporary is what crypto/tls asks of a read error (conn.go,
	// readRecordOrCCS) before it keeps its state across it.
	tmp, isTmp := err.(interface{ Temporary() bool })
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !isTmp || !tmp.Temporary() || ne.Timeout() {
		t.Fatalf("empty socket: got (%d, %v), want (0, a temporary net.Error that is no timeout)", n, err)
	}
	if _, err := client.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	// Edge-triggered epoll would announce the bytes; without a loop, wait
	// for them.
	waitUntil(t, 5*time.Second, func() string {
		tr.drained = false
		n, err = tr.Read(buf)
		if n == 0 && err == errWouldBlock {
			return "the bytes never came"
		}
		return ""
	})
	if n != 3 || err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("got (%d, %v, %q), want (3, nil, abc): data comes without an error", n, err, buf[:n])
	}
	if n, err := tr.Read(buf); n != 0 || err != errWouldBlock {
		t.Fatalf("after a short read: got (%d, %v), want would-block without asking the socket", n, err)
	}
	client.Close()
	tr.hup = true // as EPOLLRDHUP sets it
	waitUntil(t, 5*time.Second, func() string {
		n, err = tr.Read(buf)
		if err == errWouldBlock {
			return "the end of stream never came"
		}
		return ""
	})
	if n != 0 || err != io.EOF {
		t.Fatalf("after the peer closed: got (%d, %v), want (0, EOF)", n, err)
	}
}

func TestTransportWriteQueues(t *testing.T) {
	tr, client := loopTransport(t)
	if err := tr.SetWriteDeadline(time.Now().Add(-time.Hour)); err != nil {
		t.Fatalf("SetWriteDeadline: %v, want nil (a no-op in the loop)", err)
	}
	// Fill the socket and the queue up to its bound: every write is taken
	// at once, without blocking and without an error.
	var sent bytes.Buffer
	chunk := make([]byte, 8<<10)
	for tr.q == nil || len(tr.q)+len(chunk) <= tr.eng.qBound {
		if _, err := rand.Read(chunk); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		n, err := tr.Write(chunk)
		if n != len(chunk) || err != nil {
			t.Fatalf("write with %d bytes queued: got (%d, %v), want all taken", len(tr.q), n, err)
		}
		if took := time.Since(began); took > time.Second {
			t.Fatalf("a write took %v: it must never block", took)
		}
		sent.Write(chunk)
		chunk[0]++ // the transport must have copied what it queued
		if sent.Len() > 64<<20 {
			t.Fatal("64 MB written and nothing queued")
		}
	}
	if tr.writeBy.Load() == 0 {
		t.Error("output queued without a write deadline")
	}
	n, err := tr.Write(chunk)
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write past the bound: got (%d, %v), want (0, a timeout)", n, err)
	}

	// The client reads; flushing on EPOLLOUT is modelled by flushing until
	// the queue is empty. The bytes arrive complete and in order.
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(client, int64(sent.Len())))
		got <- b
	}()
	waitUntil(t, 10*time.Second, func() string {
		if err := tr.flush(); err != nil {
			return err.Error()
		}
		if tr.q != nil {
			return fmt.Sprintf("%d bytes still queued", len(tr.q)-tr.qoff)
		}
		return ""
	})
	if tr.writeBy.Load() != 0 {
		t.Error("write deadline still set with the queue empty")
	}
	if b := <-got; !bytes.Equal(b, sent.Bytes()) {
		t.Fatalf("the client got %d bytes differing from the %d written", len(b), sent.Len())
	}
}

// TestEpollHandOffRace hands connections to the loop while the server
// shuts down, under the race detector's eye: the loop, the workers, the
// hand-off and forceClose touch a connection from different goroutines.
func TestEpollHandOffRace(t *testing.T) {
	for round := range 5 {
		rec := newRecorder()
		s, err := New(Options{Engine: engineEpoll, Events: rec, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.Serve(context.Background(), ln) }()
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = c.Write(proto.AppendFrame(nil, proto.Echo, []byte{byte(i)}))
				_, _ = receiveErr(c)
			})
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(round)*time.Millisecond)
		_ = s.Shutdown(ctx)
		cancel()
		wg.Wait()
		rec.waitFor(t, "every connection closed", 10*time.Second, func() bool { return rec.active == 0 })
	}
}

// TestEpollMemoryPolicy: freed memory is returned once a burst of
// hand-offs has ended, at most once per period, and never when the
// policy is off.
func TestEpollMemoryPolicy(t *testing.T) {
	t0 := time.Unix(1000, 0)
	steps := []struct {
		name     string
		handoffs int64
		at       time.Duration
		want     int64 // releases so far
	}{
		{"nothing yet", 0, 0, 0},
		{"a burst begins", 600, 100 * time.Millisecond, 0},
		{"it goes on", 1200, 500 * time.Millisecond, 0},
		{"quiet, not for long", 1200, 1200 * time.Millisecond, 0},
		{"quiet for a second", 1200, 1500 * time.Millisecond, 1},
		{"a second burst", 2500, 3 * time.Second, 1},
		{"over, but too soon after the last release", 2500, 5 * time.Second, 1},
		{"over, and the period passed", 2500, 12 * time.Second, 2},
		{"no new burst", 2500, 30 * time.Second, 2},
		{"a burst too small", 2600, 31 * time.Second, 2},
		{"still too small", 2600, 50 * time.Second, 2},
	}
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("off=%v", off), func(t *testing.T) {
			s, err := New(Options{Logger: testLogger(t), KeepFreedMemory: off})
			if err != nil {
				t.Fatal(err)
			}
			ee := newEpollEngine(s)
			for _, st := range steps {
				ee.handoffs.Store(st.handoffs)
				ee.checkMemory(t0.Add(st.at))
				waitUntil(t, 10*time.Second, func() string {
					if ee.releasing.Load() {
						return st.name + ": the release is still running"
					}
					return ""
				})
				want := st.want
				if off {
					want = 0
				}
				if got := ee.releases.Load(); got != want {
					t.Fatalf("%s: got %d releases, want %d", st.name, got, want)
				}
			}
		})
	}
}

// TestEpollSlowCallbackDoesNotStall: a connection whose request blocks in
// a slow Keys callback — served by the leader itself, as a lone ready
// connection is — does not hold up the others: the watchdog makes another
// worker lead.
func TestEpollSlowCallbackDoesNotStall(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	e := start(t, engineEpoll, modeTLS13, Options{Keys: func() []byte {
		entered <- struct{}{}
		<-release
		return []byte("slow")
	}})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	others := make([]net.Conn, 3)
	for i := range others {
		others[i] = e.dial()
		roundTrip(t, others[i], proto.Echo, []byte("warm"))
	}
	// In the loop first, so that its KEYS comes to the leader as a lone
	// ready connection, which the leader serves itself.
	slow := e.dial()
	roundTrip(t, slow, proto.Echo, []byte("warm"))
	send(t, slow, proto.Keys, nil)
	<-entered
	began := time.Now()
	for round := range 20 {
		for i, c := range others {
			body := fmt.Appendf(nil, "round %d conn %d", round, i)
			if f := roundTrip(t, c, proto.Echo, body); !bytes.Equal(f.Body, body) {
				t.Fatalf("got %q, want %q", f.Body, body)
			}
		}
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("60 round trips took %v while one callback was stuck, want them unaffected", took)
	}
	releaseOnce.Do(func() { close(release) })
	if f := receive(t, slow); f.Type != proto.Keys || string(f.Body) != "slow" {
		t.Fatalf("slow request: got (%v, %q)", f.Type, f.Body)
	}
}
