package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The HTTP paths the [Server] answers. Any other path is a 404, any
// method other than GET and HEAD a 405.
const (
	// PathMetrics is the Prometheus exposition of the Metrics' registry.
	PathMetrics = "/metrics"
	// PathHealthz answers 200 while the process is alive: a liveness
	// probe. It checks nothing else, so that a slow dependency never gets
	// a healthy process restarted.
	PathHealthz = "/healthz"
	// PathReadyz answers 200 when every [Check] passes and 503 otherwise,
	// with one line per check in the body: a readiness probe, and the
	// health check of a TCP load balancer in front of several servers.
	PathReadyz = "/readyz"
)

// Limits of the metrics listener. It is meant for a scraper and probes,
// not for the public: requests are small and few.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 30 * time.Second
	httpIdleTimeout       = 2 * time.Minute
	httpMaxHeaderBytes    = 8 << 10
	// A scrape gathers every metric; more than a few at once is a
	// misconfigured scraper (or worse), and the server's CPU is for
	// players. The excess get 503.
	maxScrapesInFlight = 4
)

// Check is one condition of readiness.
type Check struct {
	// Name names the condition in /readyz's body and in logs, e.g.
	// "listening" or "certificate".
	Name string
	// Func returns nil when the condition holds, or why it does not. It is
	// called on every /readyz request, concurrently, so it must be cheap
	// and safe for concurrent use; [Metrics.CheckCertificate] is one.
	Func func() error
}

// ServerOptions configures [NewServer].
type ServerOptions struct {
	// Metrics is whose registry /metrics serves. Required.
	Metrics *Metrics

	// Ready are the conditions /readyz checks, in order. sc-server gives
	// "listening" (true from the moment its listener is bound until
	// shutdown begins, so that a draining server leaves its load balancer
	// first) and, with TLS, "certificate" ([Metrics.CheckCertificate]).
	// Empty means /readyz is always 200, like /healthz. Names must be
	// unique and non-empty.
	Ready []Check

	// Logger receives readiness changes (Info when ready, Warn when not,
	// as seen by the probes) and the HTTP server's own errors (Warn). Nil
	// means slog.Default().
	Logger *slog.Logger
}

// Server serves /metrics, /healthz and /readyz on a listener of its own,
// apart from the game port, so that scrapes and probes never compete with
// players for connection slots and are never exposed where players are.
// Make one with [NewServer]; the zero value is not usable. Its methods are
// safe for concurrent use.
type Server struct {
	handler http.Handler
	srv     *http.Server
	ready   []Check
	log     *slog.Logger
	// lastReady is the readiness the last /readyz saw: -1 before any,
	// then 0 or 1. A change is logged.
	lastReady atomic.Int32
}

// NewServer checks opts and returns a Server ready to Serve. It starts
// nothing.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Metrics == nil {
		return nil, errors.New("configuring the metrics listener: no Metrics given")
	}
	seen := make(map[string]bool, len(opts.Ready))
	for i, c := range opts.Ready {
		switch {
		case c.Name == "":
			return nil, fmt.Errorf("configuring the metrics listener: readiness check %d has no name", i)
		case c.Func == nil:
			return nil, fmt.Errorf("configuring the metrics listener: readiness check %q has no func", c.Name)
		case seen[c.Name]:
			return nil, fmt.Errorf("configuring the metrics listener: readiness check %q given twice", c.Name)
		}
		seen[c.Name] = true
	}
	s := &Server{ready: opts.Ready, log: opts.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.lastReady.Store(-1)

	mux := http.NewServeMux()
	// "GET /path" also matches HEAD; other methods get 405.
	mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(opts.Metrics.Registry(), promhttp.HandlerOpts{
		ErrorLog:            promLogger{s.log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapesInFlight,
	}))
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET "+PathReadyz, s.serveReadyz)
	s.handler = mux
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Handler returns the handler of the three paths, for a caller that
// serves them on an HTTP server of its own.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves HTTP on ln until Shutdown is called or ctx is done; it
// closes ln before it returns. After Shutdown it returns
// [http.ErrServerClosed]; when ctx ends it closes every connection at once
// and returns ctx.Err(); otherwise the accept error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { s.srv.Close() })
	defer stop()
	s.log.InfoContext(ctx, "serving metrics and health checks", "addr", ln.Addr().String(),
		"paths", PathMetrics+" "+PathHealthz+" "+PathReadyz)
	err := s.srv.Serve(ln)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Shutdown stops Serve gracefully: it closes the listeners and waits for
// requests in progress, until ctx ends (then it returns ctx.Err()). Stop
// the game server first and this last, so that /metrics shows the drain
// and /readyz says "not ready" while it lasts.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// serveReadyz runs every check and answers 200 when all pass, else 503,
// with a line per check.
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	var failed []string
	for _, c := range s.ready {
		if err := c.Func(); err != nil {
			fmt.Fprintf(&b, "%s: %v\n", c.Name, err)
			failed = append(failed, c.Name+": "+err.Error())
			continue
		}
		fmt.Fprintf(&b, "%s: ok\n", c.Name)
	}
	ready := int32(1)
	status := http.StatusOK
	if len(failed) > 0 {
		ready, status = 0, http.StatusServiceUnavailable
	}
	if old := s.lastReady.Swap(ready); old != ready {
		if ready == 1 {
			s.log.InfoContext(r.Context(), "ready")
		} else {
			s.log.WarnContext(r.Context(), "not ready", "failed", strings.Join(failed, "; "))
		}
	}
	if b.Len() == 0 {
		b.WriteString("ok\n")
	}
	writeText(w, status, b.String())
}

func writeText(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// promLogger passes promhttp's errors (a metric that failed to gather, a
// scrape that could not be written) to slog.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Warn("serving metrics", "err", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
