package metrics

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spacecaptain/spacecaptain/internal/dtls"
	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// The DTLS server's series share the TCP series' names with
// transport="dtls"; the TCP series keep exactly the labels they had, so
// that what reads them (alerts, dashboards, tests) reads the same.
func TestDTLSSeries(t *testing.T) {
	m := mustNew(t, Options{MaxConns: 10, DTLS: true, DTLSMaxSessions: 20, OmitRuntime: true})
	d := m.DTLS()
	m.ConnAccepted()
	m.Message(proto.Echo, time.Microsecond, 13, 13)
	d.ConnAccepted()
	d.ConnAccepted()
	d.ConnClosed(dtls.CloseIdleTimeout)
	d.ConnRefused(dtls.RefusedHalfOpen)
	d.ConnRefused(dtls.RefusedCookieTimeout)
	d.Handshake(tls.ConnectionState{}, 2*time.Millisecond, nil)
	d.Handshake(tls.ConnectionState{}, time.Second, context.DeadlineExceeded)
	d.Message(proto.Echo, time.Microsecond, 13, 13)
	d.Message(proto.Echo, time.Microsecond, 13, 13)
	d.ProtocolError(proto.KindTruncated)

	s := gather(t, m)
	s.assertSeries(t, NameConnectionsAccepted, dto.MetricType_COUNTER, map[string]float64{"": 1, "transport=dtls": 2})
	s.assertSeries(t, NameConnectionsOpen, dto.MetricType_GAUGE, map[string]float64{"": 1, "transport=dtls": 1})
	s.assertSeries(t, NameConnectionsMax, dto.MetricType_GAUGE, map[string]float64{"": 10, "transport=dtls": 20})
	got, _ := s.series(NameConnectionsRefused)
	if got["reason=half_open,transport=dtls"] != 1 || got["reason=cookie_timeout,transport=dtls"] != 1 || got["reason=max_conns"] != 0 {
		t.Errorf("%s: %s", NameConnectionsRefused, fmtSeries(got))
	}
	got, _ = s.series(NameConnectionsClosed)
	if got["reason=idle_timeout,transport=dtls"] != 1 || got["reason=idle_timeout"] != 0 {
		t.Errorf("%s: %s", NameConnectionsClosed, fmtSeries(got))
	}
	got, _ = s.series(NameHandshakes)
	if got["result=ok,resumed=false,tls_version=1.2,transport=dtls"] != 1 || got["result=timeout,resumed=false,tls_version=1.2,transport=dtls"] != 1 {
		t.Errorf("%s: %s", NameHandshakes, fmtSeries(got))
	}
	got, _ = s.series(NameRequests)
	if got["type=echo"] != 1 || got["transport=dtls,type=echo"] != 2 {
		t.Errorf("%s: %s", NameRequests, fmtSeries(got))
	}
	if c, _ := s.histogram(t, NameHandshakeDuration, labels{"resumed": "false", "transport": "dtls"}); c != 1 {
		t.Errorf("DTLS handshake durations: %d, want 1 (the failed one left out)", c)
	}
	if c, _ := s.histogram(t, NameRequestDuration, labels{"type": "echo", "transport": "dtls"}); c != 2 {
		t.Errorf("DTLS request durations: %d, want 2", c)
	}
	got, _ = s.series(NameProtocolErrors)
	if got["kind=truncated,transport=dtls"] != 1 {
		t.Errorf("%s: %s", NameProtocolErrors, fmtSeries(got))
	}

	// The lint passes, and the exposition parses, with both transports.
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(fams).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	hs, err := NewServer(ServerOptions{Metrics: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	status, body := get(t, httpClient(t), http.MethodGet, startHTTP(t, hs)+PathMetrics)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	if _, err := parser.TextToMetricFamilies(strings.NewReader(body)); err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	if !strings.Contains(body, `spacecaptain_connections_open{transport="dtls"} 1`) || !strings.Contains(body, "\nspacecaptain_connections_open 1\n") {
		t.Errorf("the exposition lacks the open gauges of both transports:\n%s", body)
	}
}

func TestNoDTLSSeriesWithoutDTLS(t *testing.T) {
	m := mustNew(t, Options{OmitRuntime: true})
	if m.DTLS() != nil {
		t.Fatal("DTLS events without Options.DTLS")
	}
	for name, f := range gather(t, m) {
		for _, s := range f.GetMetric() {
			if _, ok := labelsOf(s)[LabelTransport]; ok {
				t.Errorf("%s has a transport label without DTLS", name)
			}
		}
	}
}
