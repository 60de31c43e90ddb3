//go:build linux

package interop

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Issue 8, "Scale-out": HAProxy in TCP mode (round robin, health checks on
// /readyz) in front of two real sc-server processes on loopback — one on
// each engine — that share one certificate directory (sc-cert init) and
// one ticket-key file (sc-cert ticket-keys), and trust the balancer's
// PROXY protocol v2 headers (--proxy-protocol-from). It shows, in order:
//
//   - clients are spread over both servers;
//   - each server sees the client's own address (127.0.0.3), not the
//     balancer's (127.0.0.1);
//   - a session made on one server resumes on the other, in TLS 1.2 and 1.3;
//   - one sc-cert rotate of the shared directory is served by both within
//     1 s;
//   - stopping one server with SIGTERM while every client has a pipelined
//     batch in flight loses no reply: the stopped server answers its
//     clients' batches, closes with close_notify and exits 0, the other's
//     clients go on, and every new connection goes to the other — at once
//     (HAProxy redispatches a connection the stopped server refuses) and
//     after HAProxy's health check has taken it out.
//
// Which server served a connection is read from their /metrics counters
// (the test makes one connection at a time there).
func TestHAProxyScaleOut(t *testing.T) {
	haproxy := needTool(t, "haproxy")
	dir := t.TempDir()
	run(t, dir, bin(t, "sc-cert"), "init", "--dir", "certs")
	run(t, dir, bin(t, "sc-cert"), "ticket-keys", "tickets")
	args := []string{"--metrics-listen", "127.0.0.1:0", "--log-level", "debug", "--ticket-keys", "tickets",
		"--shutdown-timeout", "30s", "--proxy-protocol-from", balancerIP + "/32"}
	f := &fleet{}
	for i, engine := range []string{"epoll", "goroutine"} {
		srv := startSCServer(t, dir, append([]string{"--engine", engine}, args...)...)
		f.backends = append(f.backends, haBackend{name: fmt.Sprintf("sc%d-%s", i, engine), srv: srv})
	}
	ha := startHAProxy(t, haproxy, haConfig(t, f.backends, true))
	pool := caPool(t, dir)

	var spread []*tls.Conn
	t.Run("spread", func(t *testing.T) {
		spread = testSpread(t, f, ha, pool)
	})
	t.Run("client address", func(t *testing.T) {
		if len(spread) == 0 {
			t.Skip("skipping: no connections from the spread step")
		}
		testClientAddress(t, f, spread)
	})
	for _, c := range spread {
		c.Close()
	}
	t.Run("resumption across servers", func(t *testing.T) {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tls.VersionName(v), func(t *testing.T) { testResumeAcross(t, f, ha, pool, v) })
		}
	})
	t.Run("rotation", func(t *testing.T) { testRotateFleet(t, f, ha, pool, dir) })
	t.Run("graceful stop", func(t *testing.T) { testStopOne(t, f, ha, pool) })
	for _, be := range f.backends {
		expectNoPanic(t, be.srv)
		if n := countLog(be.srv, `"level":"ERROR"`); n > 0 {
			t.Errorf("%s logged %d errors:\n%s", be.name, n, tail(be.srv.Log(), 20))
		}
	}
}

// testSpread opens 20 connections through the balancer at once, holds
// them, and checks that both servers hold some; it returns them.
func testSpread(t *testing.T, f *fleet, ha *haProxy, pool *x509.CertPool) []*tls.Conn {
	const n = 20
	var (
		mu    sync.Mutex
		conns []*tls.Conn
		errs  []error
		wg    sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			c, err := dialVia(ha.Addr, pool, nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			conns = append(conns, c)
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		for _, c := range conns {
			c.Close()
		}
		t.Fatalf("%d of %d connections through the balancer failed, the first: %v\n%s", len(errs), n, errs[0], ha.Output())
	}
	open := f.counters(t, "spacecaptain_connections_open")
	t.Logf("%d connections through the balancer: the servers hold %v", n, open)
	// Round robin gives each server half; a quarter each is the bound.
	if open[0]+open[1] != n || open[0] < n/4 || open[1] < n/4 {
		t.Errorf("%d connections held through the balancer: the servers hold %v, want them spread over both", n, open)
	}
	return conns
}

// handshakeLine is the part of a "handshake done" log line the test reads.
type handshakeLine struct {
	Msg        string `json:"msg"`
	RemoteAddr string `json:"remote_addr"`
	ProxyAddr  string `json:"proxy_addr"`
}

// handshakes returns srv's "handshake done" log lines.
func handshakes(t *testing.T, srv *scServer) []handshakeLine {
	t.Helper()
	var out []handshakeLine
	for _, line := range strings.Split(srv.Log(), "\n") {
		if !strings.Contains(line, `"msg":"handshake done"`) {
			continue
		}
		var l handshakeLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

// testClientAddress checks that each connection's own address (clientIP
// and its port) is the remote address of one handshake on one server, and
// that no server saw a handshake from anywhere else: the balancer's
// address, when logged, is proxy_addr.
func testClientAddress(t *testing.T, f *fleet, conns []*tls.Conn) {
	seen := map[string][]string{} // remote_addr → the servers that logged it
	for _, be := range f.backends {
		lines := handshakes(t, be.srv)
		if len(lines) == 0 {
			t.Errorf("%s logged no handshake", be.name)
		}
		for _, l := range lines {
			seen[l.RemoteAddr] = append(seen[l.RemoteAddr], be.name)
			if !strings.HasPrefix(l.RemoteAddr, clientIP+":") {
				t.Errorf("%s logged a handshake with remote_addr %q, want the client's address %s:…", be.name, l.RemoteAddr, clientIP)
			}
			if l.ProxyAddr != "" && !strings.HasPrefix(l.ProxyAddr, balancerIP+":") {
				t.Errorf("%s logged a handshake with proxy_addr %q, want the balancer's address %s:…", be.name, l.ProxyAddr, balancerIP)
			}
		}
	}
	withProxy := 0
	for _, be := range f.backends {
		withProxy += countLog(be.srv, `"msg":"handshake done"`, `"proxy_addr":"`+balancerIP+`:`)
	}
	t.Logf("%d handshakes logged with the client's address as remote_addr, %d of them with the balancer's as proxy_addr", len(conns), withProxy)
	for _, c := range conns {
		addr := c.LocalAddr().String()
		if got := seen[addr]; len(got) != 1 {
			t.Errorf("the connection from %s: handshakes logged with that remote_addr by %v, want one server", addr, got)
		}
	}
}

// testResumeAcross makes a session on one server through the balancer and
// offers its first ticket on the next connections: each resumes, on both
// servers (the shared ticket keys), which their resumed-handshake counters
// confirm.
func testResumeAcross(t *testing.T, f *fleet, ha *haProxy, pool *x509.CertPool, v uint16) {
	cache := &firstTicketCache{}
	dial := func() tls.ConnectionState {
		t.Helper()
		c := mustDialVia(t, ha.Addr, pool, &tls.Config{MinVersion: v, MaxVersion: v, ClientSessionCache: cache})
		defer c.Close()
		return c.ConnectionState()
	}
	const resumedHS = "spacecaptain_tls_handshakes_total"
	before := f.counters(t, resumedHS, "result=ok", "resumed=true")
	var cs tls.ConnectionState
	first := f.servedBy(t, func() { cs = dial() })
	if cs.DidResume {
		t.Fatal("the first connection resumed a session")
	}
	want := make([]float64, len(f.backends))
	served := map[int]bool{}
	// Round robin sends the next connection to the other server; a few
	// more make the test independent of that.
	for i := 0; i < 4 && len(served) < len(f.backends); i++ {
		who := f.servedBy(t, func() { cs = dial() })
		if !cs.DidResume {
			t.Fatalf("connection %d (to %s) with the ticket from %s did not resume", i+2, f.backends[who].name, f.backends[first].name)
		}
		want[who]++
		served[who] = true
	}
	if len(served) < len(f.backends) {
		t.Fatalf("the ticket from %s resumed on %v only, want both servers", f.backends[first].name, served)
	}
	after := f.counters(t, resumedHS, "result=ok", "resumed=true")
	for i := range after {
		if got := after[i] - before[i]; got != want[i] {
			t.Errorf("%s counted %v resumed handshakes, want %v", f.backends[i].name, got, want[i])
		}
	}
}

// testRotateFleet runs one sc-cert rotate --promote-next on the shared
// certificate directory: each server logs the reload of the new
// certificate within 1 s of the rotation's end, and new connections
// through the balancer get it from both (its serial, and the new key's
// pin).
func testRotateFleet(t *testing.T, f *fleet, ha *haProxy, pool *x509.CertPool, dir string) {
	certFile := filepath.Join(dir, "certs", "server.crt")
	oldSerial, wantPin := servedSerial(t, dir), f.backends[0].srv.NextPin
	began := time.Now()
	run(t, dir, bin(t, "sc-cert"), "rotate", "--cert", certFile, "--promote-next")
	done := time.Now()
	newSerial := servedSerial(t, dir)
	reloaded := []string{`"msg":"certificate reloaded"`, `"serial":"` + newSerial + `"`}
	seen := map[int]time.Duration{} // server → when a handshake first presented it
	deadline := done.Add(10 * time.Second)
	for dials := 0; len(seen) < len(f.backends); dials++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d connections in 10s, only %v presented serial %s", dials, seen, newSerial)
		}
		var (
			leaf *x509.Certificate
			at   time.Duration
		)
		who := f.servedBy(t, func() {
			c := mustDialVia(t, ha.Addr, pool, nil)
			at = time.Since(done)
			leaf = c.ConnectionState().PeerCertificates[0]
			c.Close()
		})
		switch serial := pki.SerialHex(leaf.SerialNumber); serial {
		case oldSerial:
			// A handshake before the server reloaded, or one that
			// raced its log line.
		case newSerial:
			if pin := pinning.PinOf(leaf).String(); pin != wantPin {
				t.Fatalf("%s presents serial %s with pin %s, want the promoted next key's %s", f.backends[who].name, serial, pin, wantPin)
			}
			if _, ok := seen[who]; !ok {
				seen[who] = at
			}
		default:
			t.Fatalf("%s presents serial %s, want %s or %s", f.backends[who].name, serial, oldSerial, newSerial)
		}
		// A pace, well under the servers' default per-source handshake
		// rate (50/s with a burst of 100): every connection here comes
		// from one client address.
		time.Sleep(20 * time.Millisecond)
	}
	// When each server swapped the certificate in is the time of its log
	// line, not of a client's poll, which a busy machine slows down.
	for i, be := range f.backends {
		line := lastLine(be.srv, reloaded[1])
		if countLog(be.srv, reloaded...) != 1 {
			t.Errorf("%s did not log one reload of serial %s:\n%s", be.name, newSerial, reloadLines(be.srv))
			continue
		}
		took := logTime(t, line).Sub(done)
		t.Logf("%s reloaded %v after sc-cert rotate ended (which took %v); a handshake through the balancer presented it %v after",
			be.name, took.Round(time.Millisecond), done.Sub(began).Round(time.Millisecond), seen[i].Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("%s reloaded the new certificate %v after sc-cert rotate ended, want within 1s:\n%s", be.name, took, reloadLines(be.srv))
		}
	}
}

// reloadLines returns srv's log lines about reloads, for messages.
func reloadLines(srv *scServer) string {
	var out []string
	for _, line := range strings.Split(srv.Log(), "\n") {
		if strings.Contains(line, "reload") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// testStopOne stops the first server with SIGTERM while each of 20
// connections through the balancer (half on each server) has requests in
// flight — a pipelined batch whose replies it has begun to receive, and
// a last request half sent — and checks that every request gets its
// reply; see TestHAProxyScaleOut.
func testStopOne(t *testing.T, f *fleet, ha *haProxy, pool *x509.CertPool) {
	const (
		n     = 20
		batch = 100 // ECHOs of 64 bytes, then one more sent in two halves: 7,272 bytes, one TLS record
		more  = 5   // new connections while the server drains, and after it stopped
	)
	victim, survivor := 0, 1
	vname, sname := f.backends[victim].name, f.backends[survivor].name
	vsrv := f.backends[victim].srv
	type client struct {
		i  int
		c  *tls.Conn
		d  *proto.Decoder // one per connection: it reads ahead
		on int
	}
	var clients []*client
	// One at a time, so the counters say where each went.
	for i := range n {
		cl := &client{i: i}
		cl.on = f.servedBy(t, func() {
			// One record for the whole batch (no dynamic record sizing):
			// the server reads it at once, so the first reply shows that
			// the server has read every request of the batch.
			cl.c = mustDialVia(t, ha.Addr, pool, &tls.Config{DynamicRecordSizingDisabled: true})
		})
		defer cl.c.Close()
		cl.d = proto.NewDecoder(cl.c, 0)
		clients = append(clients, cl)
	}
	body := func(cl *client, round, k int) string {
		return fmt.Sprintf("%-64s", fmt.Sprintf("client %d round %d request %d", cl.i, round, k))
	}
	// frames returns requests from up to (not including) to of a round.
	frames := func(cl *client, round, from, to int) []byte {
		var b []byte
		for k := from; k < to; k++ {
			b = proto.AppendFrame(b, proto.Echo, []byte(body(cl, round, k)))
		}
		return b
	}
	write := func(cl *client, b []byte) error {
		_ = cl.c.SetDeadline(time.Now().Add(30 * time.Second))
		_, err := cl.c.Write(b)
		return err
	}
	// receive reads the replies from up to (not including) to of a round,
	// in order.
	receive := func(cl *client, round, from, to int) error {
		for k := from; k < to; k++ {
			fr, err := cl.d.Next()
			if err != nil {
				return fmt.Errorf("client %d (on %s), round %d: reply %d of %d: %w", cl.i, f.backends[cl.on].name, round, k+1, to, err)
			}
			if want := body(cl, round, k); fr.Type != proto.Echo || string(fr.Body) != want {
				return fmt.Errorf("client %d, round %d: reply %d is (%v, %q), want the ECHO of %q", cl.i, round, k+1, fr.Type, fr.Body, want)
			}
		}
		return nil
	}
	onVictim := 0
	half := len(frames(clients[0], 0, batch, batch+1)) / 2
	for _, cl := range clients {
		b := frames(cl, 0, 0, batch+1)
		if err := write(cl, b[:len(b)-half]); err != nil {
			t.Fatal(err)
		}
		if cl.on == victim {
			onVictim++
		}
	}
	if onVictim == 0 || onVictim == n {
		t.Fatalf("%d of %d connections on %s: want some on each server", onVictim, n, vname)
	}
	for _, cl := range clients {
		if err := receive(cl, 0, 0, 1); err != nil {
			t.Fatal(err)
		}
	}

	// Requests in flight everywhere: SIGTERM.
	stopped := time.Now()
	if err := vsrv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, vsrv, 0, 10*time.Second, `"msg":"shutting down"`)
	if got := lastLine(vsrv, `"msg":"shutting down"`); !strings.Contains(got, fmt.Sprintf(`"connections":%d`, onVictim)) {
		t.Errorf("%s began its drain with %q, want %d connections", vname, got, onVictim)
	}
	// The half-sent requests hold the drain open: the server is not
	// ready, the balancer's health check takes it out, and new
	// connections go to the other server.
	if status, body := httpGet(t, "http://"+vsrv.MetricsAddr+"/readyz"); status != 503 {
		t.Errorf("%s's /readyz while it drains: %d %q, want 503", vname, status, body)
	}
	ha.waitOutput(t, "Server servers/"+vname+" is DOWN", 10*time.Second)
	newConns := func(when string) {
		t.Helper()
		for range more {
			if who := f.servedBy(t, func() { mustDialVia(t, ha.Addr, pool, nil).Close() }); who != survivor {
				t.Fatalf("a new connection %s went to %s", when, f.backends[who].name)
			}
		}
	}
	newConns("while the stopped server drains")
	select {
	case <-vsrv.done:
		t.Fatalf("%s exited with requests half read:\n%s", vname, tail(vsrv.Log(), 20))
	default:
	}

	// The rest of each last request; every reply comes.
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Go(func() {
			b := frames(cl, 0, 0, batch+1)
			if err := write(cl, b[len(b)-half:]); err != nil {
				errs <- fmt.Errorf("client %d (on %s): sending the rest of its last request: %w", cl.i, f.backends[cl.on].name, err)
				return
			}
			if err := receive(cl, 0, 1, batch+1); err != nil {
				errs <- err
				return
			}
			if cl.on == victim {
				// Then the end, passed on by the balancer.
				if _, err := cl.d.Next(); !errors.Is(err, io.EOF) {
					errs <- fmt.Errorf("client %d on the stopped server, after its %d replies: got %v, want io.EOF", cl.i, batch+1, err)
				}
				return
			}
			// The other server's clients go on.
			if err := write(cl, frames(cl, 1, 0, batch)); err != nil {
				errs <- fmt.Errorf("client %d on %s, after the other server stopped: %w", cl.i, sname, err)
				return
			}
			errs <- receive(cl, 1, 0, batch)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := vsrv.Wait(t, 30*time.Second); err != nil {
		t.Errorf("%s after SIGTERM: %v, want exit 0\n%s", vname, err, tail(vsrv.Log(), 20))
	}
	if countLog(vsrv, `"msg":"shutdown complete"`) != 1 {
		t.Errorf("%s did not log a complete drain:\n%s", vname, tail(vsrv.Log(), 20))
	}
	t.Logf("%s exited %v after SIGTERM, having answered all %d requests of each of its %d connections; %s's %d went on",
		vname, time.Since(stopped).Round(time.Millisecond), batch+1, onVictim, sname, n-onVictim)
	newConns("after the stopped server exited")
}
