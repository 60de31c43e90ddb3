package metrics

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
	"github.com/spacecaptain/spacecaptain/pki"
)

// gather returns m's metrics as a scraper would see them, without HTTP.
func gather(t testing.TB, m *Metrics) scraped {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	s := scraped{}
	for _, f := range fams {
		s[f.GetName()] = f
	}
	return s
}

func TestHandshakeResult(t *testing.T) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"success", nil, HandshakeOK},
		{"deadline", timeout, HandshakeTimeout},
		{"deadline wrapped", fmt.Errorf("handshake: %w", timeout), HandshakeTimeout},
		{"alert from the client", &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, HandshakeClientAlert},
		{"alert we sent", &net.OpError{Op: "local error", Err: errors.New("tls: handshake failure")}, HandshakeError},
		{"plaintext on the TLS port", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, HandshakeNotTLS},
		{"hang-up", io.EOF, HandshakeClientClosed},
		{"hang-up mid-record", io.ErrUnexpectedEOF, HandshakeClientClosed},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, HandshakeClientClosed},
		{"no common version", errors.New("tls: client offered only unsupported versions: [301]"), HandshakeError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resultNames[handshakeResult(tt.err)]; got != tt.want {
				t.Errorf("handshakeResult(%v) = %s, want %s", tt.err, got, tt.want)
			}
		})
	}
}

// TestEvents calls every Events method directly and checks the gathered
// metrics, labels included.
func TestEvents(t *testing.T) {
	m := mustNew(t, Options{OmitRuntime: true})
	m.ConnAccepted()
	m.ConnAccepted()
	m.ConnAccepted()
	m.ConnClosed(server.CloseEOF)
	m.ConnClosed("a_reason_added_later")
	m.ConnRefused(server.RefusedMaxConns)
	m.ConnRefused(server.RefusedMaxConns)
	m.ConnRefused(server.RefusedShutdown)
	m.ProtocolError(proto.KindUnknownType)
	m.ProtocolError("other")
	m.Handshake(tls.ConnectionState{Version: tls.VersionTLS13}, 2*time.Millisecond, nil)
	m.Handshake(tls.ConnectionState{Version: tls.VersionTLS13, DidResume: true}, time.Millisecond, nil)
	m.Handshake(tls.ConnectionState{Version: tls.VersionTLS12}, 3*time.Millisecond, nil)
	m.Handshake(tls.ConnectionState{Version: tls.VersionTLS10}, time.Millisecond, nil)
	m.Handshake(tls.ConnectionState{}, time.Second, io.EOF)
	m.Message(proto.Echo, 2*time.Microsecond, 20, 20)
	m.Message(proto.Echo, 3*time.Microsecond, 10, 10)
	m.Message(proto.Reverse, 5*time.Microsecond, 11, 11)
	m.Message(proto.Type(9), time.Microsecond, 8, 30) // a type added to proto later

	s := gather(t, m)
	s.assertSeries(t, NameConnectionsOpen, dto.MetricType_GAUGE, map[string]float64{"": 1})
	s.assertSeries(t, NameConnectionsAccepted, dto.MetricType_COUNTER, map[string]float64{"": 3})
	wantClosed := map[string]float64{"a_reason_added_later": 1}
	for _, r := range allCloseReasons {
		wantClosed[r] = 0
	}
	wantClosed[server.CloseEOF] = 1
	s.assertSeries(t, NameConnectionsClosed, dto.MetricType_COUNTER, byLabel("reason", wantClosed))
	s.assertSeries(t, NameConnectionsRefused, dto.MetricType_COUNTER, byLabel("reason", map[string]float64{
		server.RefusedMaxConns: 2, server.RefusedShutdown: 1, server.RefusedSourceConns: 0, server.RefusedSourceRate: 0, server.RefusedProxyHeader: 0,
	}))
	s.assertSeries(t, NameProtocolErrors, dto.MetricType_COUNTER, byLabel("kind", map[string]float64{
		proto.KindUnknownType: 1, proto.KindTooLarge: 0, proto.KindTruncated: 0, "other": 1,
	}))
	s.assertSeries(t, NameHandshakes, dto.MetricType_COUNTER, map[string]float64{
		"result=ok,resumed=false,tls_version=1.3":                1,
		"result=ok,resumed=true,tls_version=1.3":                 1,
		"result=ok,resumed=false,tls_version=1.2":                1,
		"result=ok,resumed=true,tls_version=1.2":                 0,
		"result=ok,resumed=false,tls_version=1.0":                1,
		"result=client_closed,resumed=false,tls_version=unknown": 1,
	})
	if count, sum := s.histogram(t, NameHandshakeDuration, labels{"resumed": "false"}); count != 3 || !near(sum, 0.006) {
		t.Errorf("%s{resumed=false}: got count %d sum %v, want 3 and 0.006 (the failed one left out)", NameHandshakeDuration, count, sum)
	}
	if count, sum := s.histogram(t, NameHandshakeDuration, labels{"resumed": "true"}); count != 1 || !near(sum, 0.001) {
		t.Errorf("%s{resumed=true}: got count %d sum %v, want 1 and 0.001", NameHandshakeDuration, count, sum)
	}
	s.assertSeries(t, NameRequests, dto.MetricType_COUNTER, map[string]float64{
		"type=echo": 2, "type=reverse": 1, "type=time": 0, "type=keys": 0, "type=type_9": 1,
	})
	s.assertSeries(t, NameRequestBytes, dto.MetricType_COUNTER, map[string]float64{
		"type=echo": 30, "type=reverse": 11, "type=time": 0, "type=keys": 0, "type=type_9": 8,
	})
	s.assertSeries(t, NameReplyBytes, dto.MetricType_COUNTER, map[string]float64{
		"type=echo": 30, "type=reverse": 11, "type=time": 0, "type=keys": 0, "type=type_9": 30,
	})
	if count, sum := s.histogram(t, NameRequestDuration, labels{"type": "echo"}); count != 2 || !near(sum, 5e-6) {
		t.Errorf("%s{type=echo}: got count %d sum %v, want 2 and 5e-06", NameRequestDuration, count, sum)
	}
	// No certificate loaded: no certificate gauges at all.
	for _, name := range []string{NameCertNotAfter, NameCertNotBefore, NameCertInfo, NameCertLastReloadSuccess} {
		if _, ok := s[name]; ok {
			t.Errorf("%s exposed before any certificate was loaded", name)
		}
	}
	if _, ok := s[NameConnectionsMax]; ok {
		t.Errorf("%s exposed without Options.MaxConns", NameConnectionsMax)
	}
	if _, ok := s["go_goroutines"]; ok {
		t.Errorf("go_goroutines exposed with OmitRuntime")
	}
}

func near(got, want float64) bool { return got > want*0.999 && got < want*1.001 }

// TestMetricsLint runs client_golang's linter (the rules of promtool
// check metrics) over every metric: names, units, suffixes, help.
func TestMetricsLint(t *testing.T) {
	m := mustNew(t, Options{MaxConns: 10, OmitRuntime: true})
	cert := testutil.MustCert(t, testutil.CertOptions{Serial: 7, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
	m.CertLoaded(cert.Leaf, cert.Pin)
	m.CertReloaded(ReloadChanged, time.Now())
	m.Handshake(tls.ConnectionState{Version: tls.VersionTLS13}, time.Millisecond, nil)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	problems, err := promlint.NewWithMetricFamilies(fams).Lint()
	if err != nil {
		t.Fatalf("Lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	for _, f := range gather(t, m) {
		if !strings.HasPrefix(f.GetName(), "spacecaptain_") {
			t.Errorf("metric %s lacks the spacecaptain_ prefix", f.GetName())
		}
	}
}

func TestNewRejectsNegativeMaxConns(t *testing.T) {
	if _, err := New(Options{MaxConns: -1}); err == nil {
		t.Fatalf("New(MaxConns: -1) = nil error, want one")
	}
}

// TestTwoMetricsApart checks that two Metrics in one process have
// registries of their own.
func TestTwoMetricsApart(t *testing.T) {
	a, b := mustNew(t, Options{}), mustNew(t, Options{})
	a.ConnAccepted()
	gather(t, a).assertSeries(t, NameConnectionsAccepted, dto.MetricType_COUNTER, map[string]float64{"": 1})
	gather(t, b).assertSeries(t, NameConnectionsAccepted, dto.MetricType_COUNTER, map[string]float64{"": 0})
}

func TestCertMetrics(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := now
	m := mustNew(t, Options{OmitRuntime: true, Now: func() time.Time { return clock }})
	first := testutil.MustCert(t, testutil.CertOptions{Serial: 0x0102, NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(30 * 24 * time.Hour)})
	second := testutil.MustCert(t, testutil.CertOptions{Serial: 0xabcdef, NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour)})
	forever := testutil.MustCert(t, testutil.CertOptions{Serial: 3, NotBefore: now, NotAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)})

	info := func(c testutil.Cert) map[string]float64 {
		return map[string]float64{labels{"serial": pki.SerialHex(c.Leaf.SerialNumber), "pin": c.Pin}.String(): 1}
	}
	steps := []struct {
		name        string
		do          func()
		info        map[string]float64 // nil: no certificate metrics
		notAfter    time.Time
		reloads     map[string]float64
		lastSuccess time.Time // zero: not exposed
	}{
		{
			name:    "nothing loaded",
			do:      func() {},
			reloads: map[string]float64{"result=changed": 0, "result=unchanged": 0, "result=failed": 0},
		},
		{
			name:        "first certificate",
			do:          func() { m.CertLoaded(first.Leaf, first.Pin); m.CertReloaded(ReloadChanged, now) },
			info:        info(first),
			notAfter:    first.Leaf.NotAfter,
			reloads:     map[string]float64{"result=changed": 1, "result=unchanged": 0, "result=failed": 0},
			lastSuccess: now,
		},
		{
			name:        "the same again, unchanged",
			do:          func() { m.CertLoaded(first.Leaf, first.Pin); m.CertReloaded(ReloadUnchanged, now.Add(time.Minute)) },
			info:        info(first),
			notAfter:    first.Leaf.NotAfter,
			reloads:     map[string]float64{"result=changed": 1, "result=unchanged": 1, "result=failed": 0},
			lastSuccess: now.Add(time.Minute),
		},
		{
			name:        "a refused reload keeps the old certificate and the last success",
			do:          func() { m.CertReloaded(ReloadFailed, now.Add(2*time.Minute)) },
			info:        info(first),
			notAfter:    first.Leaf.NotAfter,
			reloads:     map[string]float64{"result=changed": 1, "result=unchanged": 1, "result=failed": 1},
			lastSuccess: now.Add(time.Minute),
		},
		{
			name:        "rotated: the old info series is gone",
			do:          func() { m.CertLoaded(second.Leaf, second.Pin); m.CertReloaded(ReloadChanged, now.Add(3*time.Minute)) },
			info:        info(second),
			notAfter:    second.Leaf.NotAfter,
			reloads:     map[string]float64{"result=changed": 2, "result=unchanged": 1, "result=failed": 1},
			lastSuccess: now.Add(3 * time.Minute),
		},
		{
			name:        "an expiry past 2262 (RFC 5280's 99991231235959Z)",
			do:          func() { m.CertLoaded(forever.Leaf, forever.Pin) },
			info:        info(forever),
			notAfter:    forever.Leaf.NotAfter,
			reloads:     map[string]float64{"result=changed": 2, "result=unchanged": 1, "result=failed": 1},
			lastSuccess: now.Add(3 * time.Minute),
		},
		{
			name:        "cleared",
			do:          func() { m.CertLoaded(nil, "") },
			reloads:     map[string]float64{"result=changed": 2, "result=unchanged": 1, "result=failed": 1},
			lastSuccess: now.Add(3 * time.Minute),
		},
	}
	// The steps build on each other: one subtest each, in order.
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			s := gather(t, m)
			if st.info == nil {
				for _, name := range []string{NameCertNotAfter, NameCertNotBefore, NameCertInfo} {
					if _, ok := s[name]; ok {
						t.Errorf("%s exposed without a certificate", name)
					}
				}
			} else {
				s.assertSeries(t, NameCertInfo, dto.MetricType_GAUGE, st.info)
				s.assertSeries(t, NameCertNotAfter, dto.MetricType_GAUGE, map[string]float64{"": float64(st.notAfter.Unix())})
			}
			s.assertSeries(t, NameCertReloads, dto.MetricType_COUNTER, st.reloads)
			if st.lastSuccess.IsZero() {
				if _, ok := s[NameCertLastReloadSuccess]; ok {
					t.Errorf("%s exposed before any successful reload", NameCertLastReloadSuccess)
				}
			} else {
				s.assertSeries(t, NameCertLastReloadSuccess, dto.MetricType_GAUGE, map[string]float64{"": float64(st.lastSuccess.Unix())})
			}
		})
	}
}

func TestCheckCertificate(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	cert := testutil.MustCert(t, testutil.CertOptions{Serial: 0x42, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	tests := []struct {
		name    string
		load    bool
		now     time.Time
		wantErr string // "" for usable
	}{
		{"nothing loaded", false, now, ErrNoCertificate.Error()},
		{"valid", true, now, ""},
		{"expires in a minute: still usable", true, cert.Leaf.NotAfter.Add(-time.Minute), ""},
		{"expired", true, cert.Leaf.NotAfter.Add(time.Second), "certificate serial 42 expired at 2030-01-03T03:04:05Z"},
		{"not yet valid", true, cert.Leaf.NotBefore.Add(-time.Second), "certificate serial 42 is not valid before 2030-01-02T02:04:05Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustNew(t, Options{OmitRuntime: true, Now: func() time.Time { return tt.now }})
			if tt.load {
				m.CertLoaded(cert.Leaf, cert.Pin)
			}
			err := m.CheckCertificate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckCertificate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Errorf("CheckCertificate() = %v, want an error starting %q", err, tt.wantErr)
			}
		})
	}
	m := mustNew(t, Options{OmitRuntime: true})
	if err := m.CheckCertificate(); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("CheckCertificate() before a load = %v, want ErrNoCertificate", err)
	}
}

// failingSigner is a key whose token stopped answering.
type failingSigner struct{ crypto.Signer }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("token key unavailable: CKR_DEVICE_REMOVED")
}

// A server key that fails to sign is counted as key_unavailable, on the
// error the real crypto/tls returns, TLS 1.2 and 1.3 (issue 17): the text
// handshakeResult goes by is crypto/tls's, and this catches a change.
func TestHandshakeResultSignFailure(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: failingSigner{key}}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			defer s.Close()
			srv := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: v, MaxVersion: v})
			cli := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
			go func() { _ = cli.Handshake(); c.Close() }()
			err := srv.Handshake()
			if err == nil {
				t.Fatal("the handshake succeeded with a key that cannot sign")
			}
			if got := resultNames[handshakeResult(err)]; got != HandshakeKeyUnavailable {
				t.Fatalf("handshakeResult(%v) = %s, want %s", err, got, HandshakeKeyUnavailable)
			}
		})
	}
}
