//go:build unix

package interop

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Issue 8, Observability, with the real sc-server and --metrics-listen:
// /healthz and /readyz answer 200 while it serves; /metrics counts known
// traffic (requests by type, bytes, protocol errors, handshakes by version,
// connections) and follows the certificate through a rotation on the same
// key and a key rollover (not-after, the info metric's serial and pin,
// reloads by result, the last reload's time); during a graceful stop held
// open by a half-sent request, /readyz answers 503 while /healthz and
// /metrics still answer; the server then exits 0 with the metrics
// listener closed. The same on every engine.
func TestMetricsWithRealServer(t *testing.T) {
	for _, engine := range server.Engines() {
		t.Run(engine, func(t *testing.T) { testMetricsWithRealServer(t, engine) })
	}
}

func testMetricsWithRealServer(t *testing.T, engine string) {
	dir := t.TempDir()
	srv := startSCServer(t, dir, "--metrics-listen", "127.0.0.1:0", "--shutdown-timeout", "30s", "--engine", engine)
	l := pki.DefaultLayout(filepath.Join(dir, "certs"))
	base := "http://" + srv.MetricsAddr
	if status, body := httpGet(t, base+"/healthz"); status != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", status, body)
	}
	if status, body := httpGet(t, base+"/readyz"); status != http.StatusOK || body != "listening: ok\ncertificate: ok\n" {
		t.Errorf("/readyz while serving: %d %q", status, body)
	}

	ca, err := pki.ReadCertificateFile(l.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	dial := func(v uint16) *client.Conn {
		t.Helper()
		c, err := client.Dial(context.Background(), srv.Addr, client.Options{TLSConfig: &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	do := func(c *client.Conn, typ proto.Type, body string) {
		t.Helper()
		if _, err := c.Do(context.Background(), typ, []byte(body)); err != nil {
			t.Fatalf("%v %q: %v", typ, body, err)
		}
	}
	// Known traffic: on TLS 1.3, 5 ECHOs of 5 bytes, a REVERSE, a TIME, a
	// KEYS and a request of an unknown type; on TLS 1.2, one ECHO.
	c13 := dial(tls.VersionTLS13)
	for range 5 {
		do(c13, proto.Echo, "hello")
	}
	do(c13, proto.Reverse, "abc")
	do(c13, proto.Time, "")
	if _, _, err := c13.Keys(context.Background()); err != nil {
		t.Fatal(err)
	}
	var se *client.ServerError
	if _, err := c13.Do(context.Background(), proto.Type(7), []byte("?")); !errors.As(err, &se) {
		t.Fatalf("unknown type: got %v, want an ERROR reply", err)
	}
	c12 := dial(tls.VersionTLS12)
	do(c12, proto.Echo, "hello")

	leaf, pin := servedLeafPin(t, l)
	m := scrapeMetrics(t, srv.MetricsAddr)
	for _, w := range []struct {
		key  string
		want float64
	}{
		{"spacecaptain_requests_total{type=echo}", 6},
		{"spacecaptain_requests_total{type=reverse}", 1},
		{"spacecaptain_requests_total{type=time}", 1},
		{"spacecaptain_requests_total{type=keys}", 1},
		{"spacecaptain_request_bytes_total{type=echo}", 6 * (proto.HeaderSize + 5)},
		{"spacecaptain_reply_bytes_total{type=echo}", 6 * (proto.HeaderSize + 5)},
		{"spacecaptain_request_duration_seconds_count{type=echo}", 6},
		{"spacecaptain_protocol_errors_total{kind=unknown_type}", 1},
		{"spacecaptain_tls_handshakes_total{result=ok,resumed=false,tls_version=1.3}", 1},
		{"spacecaptain_tls_handshakes_total{result=ok,resumed=false,tls_version=1.2}", 1},
		{"spacecaptain_tls_handshake_duration_seconds_count{resumed=false}", 2},
		{"spacecaptain_connections_accepted_total", 2},
		{"spacecaptain_connections_open", 2},
		{"spacecaptain_connections_max", 10000},
		{"spacecaptain_cert_info{pin=" + pin + ",serial=" + pki.SerialHex(leaf.SerialNumber) + "}", 1},
		{"spacecaptain_cert_not_after_timestamp_seconds", float64(leaf.NotAfter.Unix())},
		{"spacecaptain_cert_not_before_timestamp_seconds", float64(leaf.NotBefore.Unix())},
		{"spacecaptain_cert_reloads_total{result=changed}", 1},
		{"spacecaptain_cert_reloads_total{result=failed}", 0},
	} {
		if got, ok := m[w.key]; !ok || got != w.want {
			t.Errorf("%s: got %v (present %v), want %v", w.key, got, ok, w.want)
		}
	}
	if m["process_open_fds"] == 0 {
		t.Error("no process_open_fds: the process metrics are missing")
	}

	// A rotation on the same key, then a key rollover: the info metric
	// moves (one series), not-after follows, reloads count, and the last
	// reload is recent.
	for _, step := range []struct {
		name string
		args []string
	}{
		{"same key", []string{"rotate"}},
		{"key rollover", []string{"rotate", "--promote-next"}},
	} {
		t.Run(step.name, func(t *testing.T) {
			before := scrapeMetrics(t, srv.MetricsAddr)
			changed := before.sum("spacecaptain_cert_reloads_total", "result=changed")
			start := time.Now()
			run(t, dir, bin(t, "sc-cert"), step.args...)
			disk, err := pki.ReadCertificateFile(l.ServerCert)
			if err != nil {
				t.Fatal(err)
			}
			waitServed(t, srv, l.CACert, pki.SerialHex(disk.SerialNumber), 10*time.Second)
			m := scrapeMetrics(t, srv.MetricsAddr)
			info := "spacecaptain_cert_info{pin=" + pinning.PinOf(disk).String() + ",serial=" + pki.SerialHex(disk.SerialNumber) + "}"
			if m[info] != 1 || m.sum("spacecaptain_cert_info") != 1 {
				t.Errorf("want only %s = 1:\n%s", info, m.series("spacecaptain_cert_info"))
			}
			if got := m["spacecaptain_cert_not_after_timestamp_seconds"]; got != float64(disk.NotAfter.Unix()) {
				t.Errorf("not after: got %v, want %d", got, disk.NotAfter.Unix())
			}
			if got := m.sum("spacecaptain_cert_reloads_total", "result=changed"); got != changed+1 {
				t.Errorf("changed reloads: got %v, want %v", got, changed+1)
			}
			if got := m["spacecaptain_cert_last_reload_success_timestamp_seconds"]; got < float64(start.Unix()) {
				t.Errorf("last reload at %v, before the rotation at %d", got, start.Unix())
			}
		})
	}

	// A graceful stop held open by a request whose body is half sent:
	// not ready from the moment the stop begins, while alive and scraped.
	busy, err := tls.Dial("tcp", srv.Addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_ = busy.SetDeadline(time.Now().Add(60 * time.Second))
	frame := func(typ proto.Type, n int) []byte {
		hdr := make([]byte, proto.HeaderSize)
		binary.LittleEndian.PutUint32(hdr[0:], uint32(typ))
		binary.LittleEndian.PutUint32(hdr[4:], uint32(n))
		return hdr
	}
	// One write, so one TLS record: a whole ECHO, then the first half of
	// another. The first reply proves the server has read the record, so
	// it holds the half request when the stop comes.
	first := append(frame(proto.Echo, 1), 'a')
	if _, err := busy.Write(append(append(first, frame(proto.Echo, 10)...), "hello"...)); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, len(first))
	if _, err := io.ReadFull(busy, reply); err != nil || string(reply) != string(first) {
		t.Fatalf("the first reply: %q, %v", reply, err)
	}
	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, srv, 0, 10*time.Second, `"msg":"shutting down"`)
	if status, body := httpGet(t, base+"/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(body, "listening: not accepting connections") {
		t.Errorf("/readyz while draining: %d %q, want 503 naming the listener", status, body)
	}
	if status, _ := httpGet(t, base+"/healthz"); status != http.StatusOK {
		t.Errorf("/healthz while draining: %d, want 200", status)
	}
	if got := scrapeMetrics(t, srv.MetricsAddr)["spacecaptain_connections_open"]; got < 1 {
		t.Errorf("connections open while draining: %v, want the busy one", got)
	}
	if _, err := busy.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	reply = make([]byte, proto.HeaderSize+10)
	if _, err := io.ReadFull(busy, reply); err != nil || string(reply) != string(append(frame(proto.Echo, 10), "helloworld"...)) {
		t.Fatalf("the held request's reply: %q, %v", reply, err)
	}
	if n, err := busy.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("after the reply: %d bytes, %v; want io.EOF (close_notify)", n, err)
	}
	if err := srv.Wait(t, 30*time.Second); err != nil {
		t.Errorf("sc-server after SIGTERM: %v, want exit 0\n%s", err, srv.Log())
	}
	if _, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/healthz"); err == nil {
		t.Error("the metrics listener still answers after the server exited")
	}
}

// servedLeafPin returns the certificate on disk and its pin.
func servedLeafPin(t *testing.T, l pki.Layout) (*x509.Certificate, string) {
	t.Helper()
	c, err := pki.ReadCertificateFile(l.ServerCert)
	if err != nil {
		t.Fatal(err)
	}
	return c, pinning.PinOf(c).String()
}
