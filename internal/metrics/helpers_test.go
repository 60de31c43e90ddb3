package metrics

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func mustNew(t testing.TB, opts Options) *Metrics {
	t.Helper()
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
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
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// watched passes every event to the Metrics and tallies the ones that end
// a connection's story, so that a test can wait for the server to have
// reported something before it scrapes.
type watched struct {
	*Metrics
	mu         sync.Mutex
	accepted   int
	closed     int
	refused    int
	handshakes int
	changed    chan struct{}
}

func newWatched(m *Metrics) *watched { return &watched{Metrics: m, changed: make(chan struct{}, 1)} }

func (w *watched) update(f func()) {
	w.mu.Lock()
	f()
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *watched) ConnAccepted() {
	w.Metrics.ConnAccepted()
	w.update(func() { w.accepted++ })
}

func (w *watched) ConnClosed(reason string) {
	w.Metrics.ConnClosed(reason)
	w.update(func() { w.closed++ })
}

func (w *watched) ConnRefused(reason string) {
	w.Metrics.ConnRefused(reason)
	w.update(func() { w.refused++ })
}

func (w *watched) Handshake(state tls.ConnectionState, took time.Duration, err error) {
	w.Metrics.Handshake(state, took, err)
	w.update(func() { w.handshakes++ })
}

// waitFor waits until cond, called with the tallies locked, holds.
func (w *watched) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-w.changed:
		case <-deadline.C:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("timed out waiting for %s; accepted=%d closed=%d refused=%d handshakes=%d",
				what, w.accepted, w.closed, w.refused, w.handshakes)
		}
	}
}

// waitClosed waits until n connections in all have been closed.
func (w *watched) waitClosed(t testing.TB, n int) {
	t.Helper()
	w.waitFor(t, fmt.Sprintf("%d connections closed", n), func() bool { return w.closed >= n })
}

// startHTTP serves s on 127.0.0.1:0 until the test ends and returns its
// base URL.
func startHTTP(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// httpClient returns a client whose idle connections are closed when the
// test ends.
func httpClient(t testing.TB) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get fetches url and returns the status and body.
func get(t testing.TB, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// scraped is a parsed /metrics exposition.
type scraped map[string]*dto.MetricFamily

// scrape fetches and parses baseURL/metrics.
func scrape(t testing.TB, c *http.Client, baseURL string) scraped {
	t.Helper()
	status, body := get(t, c, http.MethodGet, baseURL+PathMetrics)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200; body:\n%s", PathMetrics, status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the exposition: %v\n%s", err, body)
	}
	return fams
}

// labels is a label set, written "k=v,k=v" in expectations.
type labels map[string]string

func labelsOf(m *dto.Metric) labels {
	l := labels{}
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

func (l labels) String() string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

// series returns every series of the counter or gauge family name as
// "k=v,…" → value, and whether the family is there at all.
func (s scraped) series(name string) (map[string]float64, bool) {
	f, ok := s[name]
	if !ok {
		return nil, false
	}
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		var v float64
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			v = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v = m.GetGauge().GetValue()
		default:
			v = m.GetUntyped().GetValue()
		}
		out[labelsOf(m).String()] = v
	}
	return out, true
}

// histogram returns the count and sum of the histogram series of name
// with exactly the labels l.
func (s scraped) histogram(t testing.TB, name string, l labels) (count uint64, sum float64) {
	t.Helper()
	f, ok := s[name]
	if !ok {
		t.Fatalf("no metric %s in the exposition", name)
	}
	if f.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("%s is a %v, want a histogram", name, f.GetType())
	}
	for _, m := range f.GetMetric() {
		if labelsOf(m).String() == l.String() {
			h := m.GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no series %s{%s}", name, l)
	return 0, 0
}

// assertSeries checks that the family name has exactly the series in
// want (label set "k=v,…" → value) and is of type typ.
func (s scraped) assertSeries(t testing.TB, name string, typ dto.MetricType, want map[string]float64) {
	t.Helper()
	got, ok := s.series(name)
	if !ok {
		t.Errorf("no metric %s in the exposition", name)
		return
	}
	if gt := s[name].GetType(); gt != typ {
		t.Errorf("%s is a %v, want a %v", name, gt, typ)
	}
	if !maps.Equal(got, want) {
		t.Errorf("%s:\n got %s\nwant %s", name, fmtSeries(got), fmtSeries(want))
	}
}

func fmtSeries(m map[string]float64) string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "{%s}=%v ", k, m[k])
	}
	return b.String()
}

// frameSize is the size on the wire of a frame with a body of n bytes.
func frameSize(n int) int { return proto.HeaderSize + n }

// allCloseReasons are the reasons package server defines, each of which
// the metrics show from the start.
var allCloseReasons = []string{server.CloseEOF, server.CloseHandshakeError, server.CloseHandshakeTimeout,
	server.CloseIdleTimeout, server.CloseWriteTimeout, server.CloseProtocolError, server.CloseReadError,
	server.CloseWriteError, server.CloseShutdown, server.CloseForced, server.CloseRevoked}
