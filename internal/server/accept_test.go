package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// errTooManyFiles stands in for EMFILE: a temporary accept error.
type errTooManyFiles struct{}

func (errTooManyFiles) Error() string   { return "accept: too many open files (simulated)" }
func (errTooManyFiles) Temporary() bool { return true }
func (errTooManyFiles) Timeout() bool   { return false }

// flakyListener fails its first Accept calls with err.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	err   error
	calls []time.Time
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: l.err}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// countingHandler counts log records by message.
type countingHandler struct {
	slog.Handler
	mu     sync.Mutex
	counts map[string]int
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.counts[r.Message]++
	h.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func TestAcceptBackoff(t *testing.T) {
	const fails = 5
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &flakyListener{Listener: inner, fails: fails, err: errTooManyFiles{}}
			logs := &countingHandler{Handler: testLogger(t).Handler(), counts: map[string]int{}}
			s, err := New(Options{Engine: engine, Logger: slog.New(logs)})
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- s.Serve(context.Background(), ln) }()

			c, err := net.Dial("tcp", inner.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if f := roundTrip(t, c, proto.Echo, []byte("after the storm")); string(f.Body) != "after the storm" {
				t.Fatalf("got %q", f.Body)
			}
			if err := s.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := <-served; !errors.Is(err, ErrServerClosed) {
				t.Fatalf("Serve: got %v, want ErrServerClosed", err)
			}

			ln.mu.Lock()
			defer ln.mu.Unlock()
			want := acceptBackoffMin
			for i := 1; i <= fails; i++ {
				if gap := ln.calls[i].Sub(ln.calls[i-1]); gap < want-time.Millisecond {
					t.Errorf("pause after failure %d: got %v, want at least %v", i, gap, want)
				}
				want *= 2
			}
			logs.mu.Lock()
			defer logs.mu.Unlock()
			if got := logs.counts["accept failed; pausing"]; got != 1 {
				t.Errorf("got %d accept-failure log lines for %d failures in under a second, want 1 (rate limited)", got, fails)
			}
		})
	}
}

func TestAcceptPermanentError(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("listener broke")
	ln := &flakyListener{Listener: inner, fails: 1, err: boom}
	s, err := New(Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), ln); !errors.Is(err, boom) {
		t.Fatalf("Serve: got %v, want it to return the permanent error", err)
	}
}

func TestLogLimiter(t *testing.T) {
	l := logLimiter{every: time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at             time.Duration
		wantOK         bool
		wantSuppressed int
	}{
		{0, true, 0},
		{100 * time.Millisecond, false, 0},
		{900 * time.Millisecond, false, 0},
		{time.Second, true, 2},
		{1500 * time.Millisecond, false, 0},
		{3 * time.Second, true, 1},
	}
	for _, s := range steps {
		ok, suppressed := l.allow(t0.Add(s.at))
		if ok != s.wantOK || suppressed != s.wantSuppressed {
			t.Errorf("at %v: got (%v, %d), want (%v, %d)", s.at, ok, suppressed, s.wantOK, s.wantSuppressed)
		}
	}
}
