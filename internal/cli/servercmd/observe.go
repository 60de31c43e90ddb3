package servercmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/metrics"
)

// metricsShutdownTimeout bounds the wait for scrapes and probes in progress
// when the server stops: they take milliseconds, and the drain of the game
// port, which comes first, already had --shutdown-timeout.
const metricsShutdownTimeout = 2 * time.Second

// observer is the metrics side of sc-server (--metrics-listen): the
// Metrics the server core and the certificate source report to, and the
// HTTP listener that serves them with /healthz and /readyz.
type observer struct {
	m    *metrics.Metrics
	ms   *metrics.Server
	addr net.Addr
	log  *slog.Logger

	// listening is the "listening" readiness check: true from the moment
	// the game listener is bound and Serve started until the graceful
	// stop begins.
	listening atomic.Bool

	done     chan struct{} // closed when Serve has returned
	stopOnce sync.Once
}

// startObserver makes the Metrics, binds --metrics-listen and serves it
// right away, before the certificates are loaded and the game port is
// bound, so that /healthz answers from the start and /readyz says "not
// ready" until the server accepts connections. A metrics listener that
// fails later is logged at Error; the game server keeps serving.
func startObserver(ctx context.Context, log *slog.Logger, env *Env, o *options, now func() time.Time) (*observer, error) {
	m, err := metrics.New(metrics.Options{MaxConns: o.srv.MaxConns, Now: now, DTLS: o.dtls.enabled, DTLSMaxSessions: o.dtls.maxSessions})
	if err != nil {
		return nil, err
	}
	ob := &observer{m: m, log: log, done: make(chan struct{})}
	ready := []metrics.Check{{Name: "listening", Func: func() error {
		if !ob.listening.Load() {
			return errNotListening
		}
		return nil
	}}}
	if !o.plaintext {
		ready = append(ready, metrics.Check{Name: "certificate", Func: m.CheckCertificate})
	}
	ob.ms, err = metrics.NewServer(metrics.ServerOptions{Metrics: m, Ready: ready, Logger: log})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.metricsListen)
	if err != nil {
		return nil, cli.WithHint(fmt.Errorf("listening for metrics on %s: %w", o.metricsListen, err),
			"is another process using the port? choose another with --metrics-listen, e.g. --metrics-listen 127.0.0.1:9243")
	}
	ob.addr = ln.Addr()
	go func() {
		defer close(ob.done)
		// Serve's context is never cancelled: stop() shuts it down
		// gracefully, last, so that the drain shows in /metrics and
		// /readyz.
		err := ob.ms.Serve(context.WithoutCancel(ctx), ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.ErrorContext(ctx, "metrics listener stopped: no metrics and no health checks until a restart; the game server keeps serving",
				"metrics_addr", ob.addr.String(), "err", err)
		}
	}()
	if env.MetricsListening != nil {
		env.MetricsListening(ob.addr)
	}
	return ob, nil
}

// setListening sets the "listening" readiness check.
func (ob *observer) setListening(v bool) {
	if ob != nil {
		ob.listening.Store(v)
	}
}

// metrics returns the Metrics, nil without --metrics-listen.
func (ob *observer) metrics() *metrics.Metrics {
	if ob == nil {
		return nil
	}
	return ob.m
}

// stop shuts the listener down, waiting a little for scrapes in progress,
// and returns once it is closed. It may be called more than once.
func (ob *observer) stop() {
	if ob == nil {
		return
	}
	ob.stopOnce.Do(func() {
		ob.listening.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownTimeout)
		defer cancel()
		if err := ob.ms.Shutdown(ctx); err != nil {
			ob.log.Warn("metrics listener: scrapes still in progress were cut", "metrics_addr", ob.addr.String(), "err", err)
		}
		<-ob.done
	})
}
