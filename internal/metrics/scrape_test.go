package metrics

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
	"github.com/spacecaptain/spacecaptain/pki"
)

// trafficMode is how the test's clients talk to the server.
type trafficMode struct {
	name    string
	version uint16 // 0: plaintext
}

var trafficModes = []trafficMode{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}, {"plaintext", 0}}

// TestScrapeAfterTraffic runs a real server with a Metrics as its Events,
// drives known traffic at it, scrapes /metrics over HTTP and checks every
// metric against what the traffic must have produced, for every engine and
// every mode (issue 8: "every metric above is asserted in a test that
// scrapes /metrics after known traffic").
func TestScrapeAfterTraffic(t *testing.T) {
	for _, eng := range server.Engines() {
		for _, mode := range trafficModes {
			t.Run(eng+"/"+mode.name, func(t *testing.T) { testScrapeAfterTraffic(t, eng, mode) })
		}
	}
}

// want is what the test expects the metrics to show, tallied as it drives
// traffic.
type want struct {
	accepted   int
	closed     map[string]float64 // by reason
	refused    map[string]float64
	protoErrs  map[string]float64
	handshakes map[string]float64 // by "resumed=…,result=…,tls_version=…"
	requests   map[string]float64 // by type label
	bytesIn    map[string]float64
	bytesOut   map[string]float64
}

func (w *want) request(typ string, in, out int) {
	w.requests[typ]++
	w.bytesIn[typ] += float64(in)
	w.bytesOut[typ] += float64(out)
}

func (w *want) handshake(result, version string, resumed bool) {
	w.handshakes[labels{"result": result, "tls_version": version, "resumed": strconv.FormatBool(resumed)}.String()]++
}

func testScrapeAfterTraffic(t *testing.T, engine string, mode trafficMode) {
	const (
		maxMessage       = 4096
		handshakeTimeout = time.Second // the silent client waits this long
		echoes           = 5
	)
	ctx := context.Background()
	isTLS := mode.version != 0
	ver := versionNames[versionIndex(mode.version)]
	now := time.Now()
	cert := testutil.MustCert(t, testutil.CertOptions{Serial: 0x1234abcd, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour)})
	keysBody := proto.AppendKeys(nil, cert.Pin, nil)

	m := mustNew(t, Options{MaxConns: 1})
	ev := newWatched(m)
	if isTLS {
		// As the CLI does from the certificate source's reload hook.
		m.CertLoaded(cert.Leaf, cert.Pin)
		m.CertReloaded(ReloadChanged, now.Add(-2*time.Minute))
		m.CertReloaded(ReloadFailed, now.Add(-time.Minute))
	}

	opts := server.Options{
		Engine:           engine,
		MaxConns:         1, // so that a second connection is refused
		MaxMessage:       maxMessage,
		HandshakeTimeout: handshakeTimeout,
		IdleTimeout:      30 * time.Second,
		WriteTimeout:     10 * time.Second,
		Keys:             func() []byte { return keysBody },
		Logger:           testLogger(t),
		Events:           ev,
	}
	var base *tls.Config // trusts the server; no session cache
	if isTLS {
		opts.TLSConfig = &tls.Config{
			MinVersion:                  tls.VersionTLS12,
			GetCertificate:              func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert.TLS, nil },
			DynamicRecordSizingDisabled: true,
		}
		base = &tls.Config{RootCAs: cert.Pool, MinVersion: mode.version, MaxVersion: mode.version}
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	addr := ln.Addr().String()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, ln) }()
	shutdown := func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("server Shutdown: %v", err)
		}
		if err := <-serveErr; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("server Serve returned %v, want ErrServerClosed", err)
		}
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			shutdown()
		}
	})

	hs, err := NewServer(ServerOptions{Metrics: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	url := startHTTP(t, hs)
	hc := httpClient(t)

	w := &want{
		closed:     map[string]float64{},
		refused:    map[string]float64{server.RefusedMaxConns: 0, server.RefusedShutdown: 0, server.RefusedSourceConns: 0, server.RefusedSourceRate: 0, server.RefusedProxyHeader: 0},
		protoErrs:  map[string]float64{proto.KindTooLarge: 0, proto.KindTruncated: 0, proto.KindUnknownType: 0},
		handshakes: map[string]float64{},
		requests:   map[string]float64{},
		bytesIn:    map[string]float64{},
		bytesOut:   map[string]float64{},
	}
	for _, r := range allCloseReasons {
		w.closed[r] = 0
	}
	for _, v := range []string{"1.2", "1.3"} {
		for _, resumed := range []bool{false, true} {
			w.handshakes[labels{"result": HandshakeOK, "tls_version": v, "resumed": strconv.FormatBool(resumed)}.String()] = 0
		}
	}
	for _, typ := range []string{TypeEcho, TypeReverse, TypeTime, TypeKeys} {
		w.requests[typ], w.bytesIn[typ], w.bytesOut[typ] = 0, 0, 0
	}
	closed := 0 // connections closed so far, to wait for

	dial := func(cfg *tls.Config, maxMessage int) *client.Conn {
		t.Helper()
		c, err := client.Dial(ctx, addr, client.Options{TLSConfig: cfg, MaxMessage: maxMessage})
		if err != nil {
			t.Fatalf("dialing %s: %v", addr, err)
		}
		return c
	}
	do := func(c *client.Conn, typ proto.Type, body []byte) []byte {
		t.Helper()
		reply, err := c.Do(ctx, typ, body)
		if err != nil {
			t.Fatalf("%v request: %v", typ, err)
		}
		return reply
	}

	// A: a full handshake (with a session cache, for B's resumption),
	// every request type, and an unknown one; closed by the client.
	var resume *tls.Config
	if isTLS {
		resume = base.Clone()
		resume.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	}
	a := dial(resume, 0)
	w.accepted++
	if isTLS {
		w.handshake(HandshakeOK, ver, false)
	}
	body := []byte("hello, captain")
	for range echoes {
		do(a, proto.Echo, body)
		w.request(TypeEcho, frameSize(len(body)), frameSize(len(body)))
	}
	do(a, proto.Reverse, []byte("abc"))
	w.request(TypeReverse, frameSize(3), frameSize(3))
	do(a, proto.Time, nil)
	w.request(TypeTime, frameSize(0), frameSize(len(proto.TimeLayout)))
	do(a, proto.Keys, nil)
	w.request(TypeKeys, frameSize(0), frameSize(len(keysBody)))
	var se *client.ServerError
	if _, err := a.Do(ctx, proto.Type(7), []byte("??")); !errors.As(err, &se) {
		t.Fatalf("unknown type 7: got %v, want a *client.ServerError", err)
	}
	w.protoErrs[proto.KindUnknownType]++
	do(a, proto.Echo, body) // the connection goes on
	w.request(TypeEcho, frameSize(len(body)), frameSize(len(body)))

	// While A holds the only slot: one connection open, and the next
	// one refused at max conns.
	if got, _ := scrape(t, hc, url).series(NameConnectionsOpen); got[""] != 1 {
		t.Errorf("%s with one client connected = %v, want 1", NameConnectionsOpen, got[""])
	}
	refused, err := client.Dial(ctx, addr, client.Options{TLSConfig: base})
	switch {
	case err == nil && isTLS:
		refused.Close()
		t.Fatalf("a TLS connection past max conns completed its handshake")
	case err == nil:
		// Plaintext: the server says why in an ERROR, then closes.
		if f, err := refused.Receive(); err != nil || f.Type != proto.Error || !bytes.Contains(f.Body, []byte(server.RefusedMaxConns)) {
			t.Errorf("a plaintext connection past max conns got (%v, %q, %v), want an ERROR naming %s", f.Type, f.Body, err, server.RefusedMaxConns)
		}
		refused.Close()
	}
	w.refused[server.RefusedMaxConns]++
	ev.waitFor(t, "a connection refused", func() bool { return ev.refused == 1 })

	a.Close()
	w.closed[server.CloseEOF]++
	closed++
	ev.waitClosed(t, closed)

	// B: a resumed handshake.
	if isTLS {
		b := dial(resume, 0)
		if st, _ := b.ConnectionState(); !st.DidResume {
			t.Fatalf("the second connection with a session cache did not resume")
		}
		w.accepted++
		w.handshake(HandshakeOK, ver, true)
		do(b, proto.Echo, body)
		w.request(TypeEcho, frameSize(len(body)), frameSize(len(body)))
		b.Close()
		w.closed[server.CloseEOF]++
		closed++
		ev.waitClosed(t, closed)
	}

	// C: a length over the maximum: an ERROR reply, then the server
	// closes (framing is lost). The header alone is enough for the server
	// to refuse it; a body would race the server's close.
	c := rawDial(t, addr, base)
	w.accepted++
	if isTLS {
		w.handshake(HandshakeOK, ver, false)
	}
	var hdr [proto.HeaderSize]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(proto.Echo))
	binary.LittleEndian.PutUint32(hdr[4:], maxMessage+1)
	if _, err := c.Write(hdr[:]); err != nil {
		t.Fatalf("writing an oversize header: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if f, err := proto.NewDecoder(c, 0).Next(); err != nil || f.Type != proto.Error {
		t.Fatalf("oversize frame: got (%v, %v), want an ERROR reply", f.Type, err)
	}
	c.Close()
	w.protoErrs[proto.KindTooLarge]++
	w.closed[server.CloseProtocolError]++
	closed++
	ev.waitClosed(t, closed)

	// D: a frame cut short by the end of the stream.
	d := rawDial(t, addr, base)
	w.accepted++
	if isTLS {
		w.handshake(HandshakeOK, ver, false)
	}
	partial := proto.AppendFrame(nil, proto.Echo, []byte("0123456789"))[:proto.HeaderSize+3]
	if _, err := d.Write(partial); err != nil {
		t.Fatalf("writing a partial frame: %v", err)
	}
	if err := d.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("closing the write side: %v", err)
	}
	w.protoErrs[proto.KindTruncated]++
	w.closed[server.CloseProtocolError]++
	closed++
	ev.waitClosed(t, closed)
	d.Close()

	// E: failed handshakes, each its own kind.
	if isTLS {
		// Not TLS: a plaintext client on the TLS port.
		e1 := rawDial(t, addr, nil)
		if _, err := e1.Write(proto.AppendFrame(nil, proto.Echo, body)); err != nil {
			t.Fatalf("writing plaintext to the TLS port: %v", err)
		}
		w.accepted++
		w.handshake(HandshakeNotTLS, "unknown", false)
		w.closed[server.CloseHandshakeError]++
		closed++
		ev.waitClosed(t, closed)
		e1.Close()

		// A client that does not trust the certificate aborts with an
		// alert, after the version is chosen.
		untrusting := &tls.Config{RootCAs: testutil.MustCert(t, testutil.CertOptions{Serial: 99, NotBefore: now, NotAfter: now.Add(time.Hour)}).Pool, MinVersion: mode.version, MaxVersion: mode.version}
		if c, err := client.Dial(ctx, addr, client.Options{TLSConfig: untrusting}); err == nil {
			c.Close()
			t.Fatalf("a client that does not trust the certificate completed its handshake")
		}
		w.accepted++
		w.handshake(HandshakeClientAlert, ver, false)
		w.closed[server.CloseHandshakeError]++
		closed++
		ev.waitClosed(t, closed)

		// A client that connects and hangs up, as TCP health checks do.
		rawDial(t, addr, nil).Close()
		w.accepted++
		w.handshake(HandshakeClientClosed, "unknown", false)
		w.closed[server.CloseHandshakeError]++
		closed++
		ev.waitClosed(t, closed)

		// A client that says nothing: cut at the handshake timeout.
		e4 := rawDial(t, addr, nil)
		w.accepted++
		w.handshake(HandshakeTimeout, "unknown", false)
		w.closed[server.CloseHandshakeTimeout]++
		closed++
		ev.waitClosed(t, closed)
		e4.Close()
	}

	// F: an idle client when the server shuts down.
	f := dial(base, 0)
	w.accepted++
	if isTLS {
		w.handshake(HandshakeOK, ver, false)
	}
	do(f, proto.Echo, body)
	w.request(TypeEcho, frameSize(len(body)), frameSize(len(body)))
	stopped = true
	shutdown()
	f.Close()
	w.closed[server.CloseShutdown]++
	closed++
	ev.waitClosed(t, closed)

	s := scrape(t, hc, url)

	s.assertSeries(t, NameConnectionsOpen, dto.MetricType_GAUGE, map[string]float64{"": 0})
	s.assertSeries(t, NameConnectionsMax, dto.MetricType_GAUGE, map[string]float64{"": 1})
	s.assertSeries(t, NameConnectionsAccepted, dto.MetricType_COUNTER, map[string]float64{"": float64(w.accepted)})
	s.assertSeries(t, NameConnectionsRefused, dto.MetricType_COUNTER, byLabel("reason", w.refused))
	s.assertSeries(t, NameConnectionsClosed, dto.MetricType_COUNTER, byLabel("reason", w.closed))
	s.assertSeries(t, NameProtocolErrors, dto.MetricType_COUNTER, byLabel("kind", w.protoErrs))

	s.assertSeries(t, NameHandshakes, dto.MetricType_COUNTER, w.handshakes)
	for _, resumed := range []bool{false, true} {
		var ok float64
		for _, v := range []string{"1.2", "1.3"} {
			ok += w.handshakes[labels{"result": HandshakeOK, "tls_version": v, "resumed": strconv.FormatBool(resumed)}.String()]
		}
		count, sum := s.histogram(t, NameHandshakeDuration, labels{"resumed": strconv.FormatBool(resumed)})
		if float64(count) != ok {
			t.Errorf("%s{resumed=%v} count = %d, want %v (the successful handshakes)", NameHandshakeDuration, resumed, count, ok)
		}
		if (count > 0) != (sum > 0) || sum > float64(count)*handshakeTimeout.Seconds() {
			t.Errorf("%s{resumed=%v} sum = %v s for %d handshakes, want above 0 and at most the timeout each", NameHandshakeDuration, resumed, sum, count)
		}
	}

	s.assertSeries(t, NameRequests, dto.MetricType_COUNTER, byLabel("type", w.requests))
	s.assertSeries(t, NameRequestBytes, dto.MetricType_COUNTER, byLabel("type", w.bytesIn))
	s.assertSeries(t, NameReplyBytes, dto.MetricType_COUNTER, byLabel("type", w.bytesOut))
	for typ, n := range w.requests {
		count, sum := s.histogram(t, NameRequestDuration, labels{"type": typ})
		if float64(count) != n {
			t.Errorf("%s{type=%s} count = %d, want %v", NameRequestDuration, typ, count, n)
		}
		if sum < 0 || sum > n {
			t.Errorf("%s{type=%s} sum = %v s for %v requests, want between 0 and a second each", NameRequestDuration, typ, sum, n)
		}
	}

	if isTLS {
		s.assertSeries(t, NameCertNotAfter, dto.MetricType_GAUGE, map[string]float64{"": float64(cert.Leaf.NotAfter.Unix())})
		s.assertSeries(t, NameCertNotBefore, dto.MetricType_GAUGE, map[string]float64{"": float64(cert.Leaf.NotBefore.Unix())})
		s.assertSeries(t, NameCertInfo, dto.MetricType_GAUGE, map[string]float64{
			labels{"serial": pki.SerialHex(cert.Leaf.SerialNumber), "pin": cert.Pin}.String(): 1,
		})
		s.assertSeries(t, NameCertReloads, dto.MetricType_COUNTER, map[string]float64{
			"result=changed": 1, "result=unchanged": 0, "result=failed": 1,
		})
		s.assertSeries(t, NameCertLastReloadSuccess, dto.MetricType_GAUGE, map[string]float64{
			"": unixSeconds(now.Add(-2 * time.Minute)),
		})
	} else {
		// Plaintext: no certificate, so no certificate metrics, not even
		// a zero expiry that would look expired.
		for _, name := range []string{NameCertNotAfter, NameCertNotBefore, NameCertInfo, NameCertLastReloadSuccess} {
			if _, ok := s[name]; ok {
				t.Errorf("plaintext server exposes %s", name)
			}
		}
	}

	// The Go runtime and process collectors are there (process metrics
	// only where client_golang can read them).
	if _, ok := s["go_goroutines"]; !ok {
		t.Errorf("no go_goroutines in the exposition")
	}
	if runtime.GOOS == "linux" {
		if _, ok := s["process_open_fds"]; !ok {
			t.Errorf("no process_open_fds in the exposition")
		}
	}
}

// byLabel turns value-by-label-value into series keyed "name=value".
func byLabel(name string, m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for v, n := range m {
		out[labels{name: v}.String()] = n
	}
	return out
}

// rawDial opens a connection that the test writes to directly: TLS with
// the handshake done when cfg is not nil, else TCP.
func rawDial(t *testing.T, addr string, cfg *tls.Config) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	if cfg == nil {
		return nc
	}
	cfg = cfg.Clone()
	cfg.ServerName = "127.0.0.1"
	tc := tls.Client(nc, cfg)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc
}
