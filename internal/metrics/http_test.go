package metrics

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/testutil"
)

// syncBuffer is a bytes.Buffer safe for the HTTP server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// take returns what was written since the last take.
func (b *syncBuffer) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.b.String()
	b.b.Reset()
	return s
}

// TestReadiness walks /readyz and /healthz through a server's life, as
// sc-server wires them: "listening" from the bound listener to the start
// of shutdown, "certificate" from the Metrics.
func TestReadiness(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	m := mustNew(t, Options{OmitRuntime: true, Now: func() time.Time { return *clock.Load() }})
	cert := testutil.MustCert(t, testutil.CertOptions{Serial: 0x42, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour)})

	var listening atomic.Bool
	var logs syncBuffer
	hs, err := NewServer(ServerOptions{
		Metrics: m,
		Ready: []Check{
			{Name: "listening", Func: func() error {
				if !listening.Load() {
					return errors.New("not listening")
				}
				return nil
			}},
			{Name: "certificate", Func: m.CheckCertificate},
		},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	url := startHTTP(t, hs)
	hc := httpClient(t)

	steps := []struct {
		name   string
		do     func()
		status int
		body   string
		log    string // a readiness change logged by this probe; "" for none
	}{
		{
			name:   "starting: neither listening nor a certificate",
			do:     func() {},
			status: http.StatusServiceUnavailable,
			body:   "listening: not listening\ncertificate: no certificate loaded\n",
			log:    `level=WARN msg="not ready" failed="listening: not listening; certificate: no certificate loaded"`,
		},
		{
			name:   "certificate loaded, not yet listening",
			do:     func() { m.CertLoaded(cert.Leaf, cert.Pin) },
			status: http.StatusServiceUnavailable,
			body:   "listening: not listening\ncertificate: ok\n",
		},
		{
			name:   "listening",
			do:     func() { listening.Store(true) },
			status: http.StatusOK,
			body:   "listening: ok\ncertificate: ok\n",
			log:    `level=INFO msg=ready`,
		},
		{
			name:   "probed again: nothing new to log",
			do:     func() {},
			status: http.StatusOK,
			body:   "listening: ok\ncertificate: ok\n",
		},
		{
			// An approaching expiry is for alerts, not readiness: a fleet
			// sharing a certificate must not leave its load balancer at once.
			name:   "expires in an hour: still ready",
			do:     func() { t := cert.Leaf.NotAfter.Add(-time.Hour); clock.Store(&t) },
			status: http.StatusOK,
			body:   "listening: ok\ncertificate: ok\n",
		},
		{
			name:   "expired",
			do:     func() { t := cert.Leaf.NotAfter.Add(time.Second); clock.Store(&t) },
			status: http.StatusServiceUnavailable,
			body:   "listening: ok\ncertificate: certificate serial 42 expired at 2030-02-01T03:04:05Z: renew it on the same key with sc-cert rotate\n",
			log:    `level=WARN msg="not ready" failed="certificate: certificate serial 42 expired`,
		},
		{
			name: "renewed",
			do: func() {
				m.CertLoaded(testutil.MustCert(t, testutil.CertOptions{Serial: 0x43, NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour)}).Leaf, "sha256//x")
				clock.Store(&now)
			},
			status: http.StatusOK,
			body:   "listening: ok\ncertificate: ok\n",
			log:    `level=INFO msg=ready`,
		},
		{
			name:   "shutting down: the listener is closed first",
			do:     func() { listening.Store(false) },
			status: http.StatusServiceUnavailable,
			body:   "listening: not listening\ncertificate: ok\n",
			log:    `level=WARN msg="not ready" failed="listening: not listening"`,
		},
	}
	logs.take() // "serving metrics and health checks"
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			status, body := get(t, hc, http.MethodGet, url+PathReadyz)
			if status != st.status || body != st.body {
				t.Errorf("GET %s: got %d %q, want %d %q", PathReadyz, status, body, st.status, st.body)
			}
			gotLog := logs.take()
			switch {
			case st.log == "" && gotLog != "":
				t.Errorf("logged %q, want nothing", gotLog)
			case st.log != "" && !strings.Contains(gotLog, st.log):
				t.Errorf("logged %q, want it to contain %q", gotLog, st.log)
			}
			// Whatever readiness says, the process is alive.
			if status, body := get(t, hc, http.MethodGet, url+PathHealthz); status != http.StatusOK || body != "ok\n" {
				t.Errorf("GET %s: got %d %q, want 200 \"ok\\n\"", PathHealthz, status, body)
			}
		})
	}
}

// TestHTTPRoutes checks methods, unknown paths, the content types, and a
// /readyz without checks.
func TestHTTPRoutes(t *testing.T) {
	m := mustNew(t, Options{})
	hs, err := NewServer(ServerOptions{Metrics: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	url := startHTTP(t, hs)
	hc := httpClient(t)
	tests := []struct {
		method, path string
		status       int
		contentType  string // prefix; "" to skip
	}{
		{http.MethodGet, PathMetrics, http.StatusOK, "text/plain; version=0.0.4"},
		{http.MethodHead, PathMetrics, http.StatusOK, ""},
		{http.MethodGet, PathHealthz, http.StatusOK, "text/plain; charset=utf-8"},
		{http.MethodHead, PathHealthz, http.StatusOK, ""},
		{http.MethodGet, PathReadyz, http.StatusOK, "text/plain; charset=utf-8"},
		{http.MethodPost, PathMetrics, http.StatusMethodNotAllowed, ""},
		{http.MethodPut, PathReadyz, http.StatusMethodNotAllowed, ""},
		{http.MethodGet, "/", http.StatusNotFound, ""},
		{http.MethodGet, "/debug/pprof/", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, url+tt.path, nil)
			if err != nil {
				t.Fatalf("building request: %v", err)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("got status %d, want %d", resp.StatusCode, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); tt.contentType != "" && !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("got Content-Type %q, want %q…", ct, tt.contentType)
			}
		})
	}
	if _, body := get(t, hc, http.MethodGet, url+PathReadyz); body != "ok\n" {
		t.Errorf("GET %s without checks: got body %q, want \"ok\\n\"", PathReadyz, body)
	}
}

func TestNewServerValidates(t *testing.T) {
	m := mustNew(t, Options{OmitRuntime: true})
	ok := func() error { return nil }
	tests := []struct {
		name string
		opts ServerOptions
		want string
	}{
		{"no metrics", ServerOptions{}, "no Metrics given"},
		{"unnamed check", ServerOptions{Metrics: m, Ready: []Check{{Func: ok}}}, "readiness check 0 has no name"},
		{"check without func", ServerOptions{Metrics: m, Ready: []Check{{Name: "listening"}}}, `readiness check "listening" has no func`},
		{"duplicate", ServerOptions{Metrics: m, Ready: []Check{{"a", ok}, {"a", ok}}}, `readiness check "a" given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewServer(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewServer: got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestServeEndsWithContext checks that Serve stops hard and returns
// ctx.Err() when its context ends, closing the listener.
func TestServeEndsWithContext(t *testing.T) {
	hs, err := NewServer(ServerOptions{Metrics: mustNew(t, Options{OmitRuntime: true}), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ctx, ln) }()
	hc := httpClient(t)
	if status, _ := get(t, hc, http.MethodGet, "http://"+ln.Addr().String()+PathHealthz); status != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", PathHealthz, status)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Serve did not return within 10 s of its context ending")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("the listener still accepts after Serve returned")
	}
}

// TestShutdownBeforeServe checks that a Server shut down before Serve
// refuses to serve, as http.Server does.
func TestShutdownBeforeServe(t *testing.T) {
	hs, err := NewServer(ServerOptions{Metrics: mustNew(t, Options{OmitRuntime: true}), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := hs.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	defer ln.Close()
	if err := hs.Serve(context.Background(), ln); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v, want http.ErrServerClosed", err)
	}
}
