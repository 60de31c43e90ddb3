package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/client"
)

// ScalePoint is one point of a scaling run ([ModeScale]): the server with
// Conns connections open, each sending an ECHO every Options.Interval.
type ScalePoint struct {
	// Conns is the point: the connections asked for.
	Conns int `json:"conns"`
	// Held is the number of connections open when the point was measured
	// (Conns, unless some failed to open or were lost).
	Held int `json:"held"`
	// Opened counts the connections this point added, and OpenSeconds is
	// how long opening them took (Options.DialConcurrency at a time).
	Opened      int     `json:"opened"`
	OpenSeconds float64 `json:"open_s"`
	// Handshake is the latency of opening this point's connections: dial,
	// TLS handshake and one ECHO, while the connections already open kept
	// sending theirs.
	Handshake Latency `json:"handshake"`
	// Echo is the latency of the ECHOs of every open connection over the
	// measured Duration, after Options.Settle.
	Echo Latency `json:"echo"`
	// Seconds is the measured phase; EchoesPerSecond is Echo.Count over it.
	Seconds         float64 `json:"elapsed_s"`
	EchoesPerSecond float64 `json:"echoes_per_s"`
	// Errors counts the failures of this point: connections that did not
	// open, ECHOs that failed (their connection is closed and not
	// replaced).
	Errors int64 `json:"errors"`
	// Server is what /proc said about the server at this point
	// (Options.PID), nil without it.
	Server *ScaleServer `json:"server_process,omitempty"`
}

// ScaleServer is the server's resource use at one [ScalePoint].
type ScaleServer struct {
	// CPUPerSecond is the server's CPU time over the measured phase per
	// second of it: 1 is one core busy.
	CPUPerSecond float64 `json:"cpu_per_s"`
	// EchoesPerCPUSecond is the ECHOs answered per second of the server's
	// CPU time over the measured phase.
	EchoesPerCPUSecond float64 `json:"echoes_per_cpu_s"`
	// RSS is the server's resident memory at the end of the measured
	// phase, and RSSPerConn (RSS − Report.Server.RSSBefore) / Held, in
	// bytes.
	RSS        int64   `json:"rss_bytes"`
	RSSPerConn float64 `json:"rss_per_conn_bytes"`
	// FDs is the server's open file descriptors then.
	FDs int `json:"fds"`
}

// scaleWindow collects the latencies and failures of one phase of a
// scaling run.
type scaleWindow struct {
	shards []shard
	errs   atomic.Int64
}

func newScaleWindow(n int) *scaleWindow {
	w := &scaleWindow{shards: make([]shard, n)}
	for i := range w.shards {
		w.shards[i].h = newHistogram()
	}
	return w
}

func (w *scaleWindow) record(i int, d time.Duration) {
	s := &w.shards[i%len(w.shards)]
	s.mu.Lock()
	s.h.record(d)
	s.mu.Unlock()
}

// merged returns the window's latencies in one histogram. An ECHO that
// ends after the window closed may still be recorded into it meanwhile:
// the shards are locked, and such a late one is counted or not.
func (w *scaleWindow) merged() *histogram {
	h := newHistogram()
	for i := range w.shards {
		s := &w.shards[i]
		s.mu.Lock()
		h.merge(s.h)
		s.mu.Unlock()
	}
	return h
}

// goldenFraction spreads connection i's first ECHO over the interval: the
// fractional parts of i×φ are evenly spread for any number of connections,
// so that the server sees a steady rate rather than one burst a second.
func goldenFraction(i int) float64 {
	const phi = 0.6180339887498949
	f := float64(i) * phi
	return f - float64(int64(f))
}

// scale runs the scale mode: for each point it opens connections up to the
// point, lets the server settle, and measures for Duration while every
// connection sends an ECHO each Interval.
func (r *run) scale(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var loops sync.WaitGroup
	var connsMu sync.Mutex
	var conns []*client.Conn
	defer func() {
		cancel()
		loops.Wait()
		connsMu.Lock()
		defer connsMu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	var alive atomic.Int64
	var measuring atomic.Pointer[scaleWindow]
	total := newHistogram()
	var cpu time.Duration

	loop := func(i int, c *client.Conn) {
		offset := time.Duration(goldenFraction(i) * float64(r.o.Interval))
		if !sleep(ctx, offset) {
			return
		}
		t := time.NewTicker(r.o.Interval)
		defer t.Stop()
		for {
			_ = c.SetDeadline(time.Now().Add(r.o.Timeout))
			stop := interruptOnDone(ctx, c)
			t0 := time.Now()
			err := r.exchange(c, 1)
			d := time.Since(t0)
			stop()
			w := measuring.Load()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				alive.Add(-1)
				r.fail(fmt.Errorf("connection %d: %w", i, err))
				if w != nil {
					w.errs.Add(1)
				}
				return // closed with the others at the end
			}
			if w != nil {
				w.record(i, d)
				r.b.ops.Add(1)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}

	for pi, point := range r.o.Points {
		r.b.phase.Store(fmt.Sprintf("opening %d", point))
		pt := ScalePoint{Conns: point}
		opening := newScaleWindow(min(64, point))
		began := time.Now()
		var next atomic.Int64
		todo := point - len(conns)
		var wg sync.WaitGroup
		for range min(r.o.DialConcurrency, todo) {
			wg.Go(func() {
				for {
					k := int(next.Add(1) - 1)
					if k >= todo || ctx.Err() != nil {
						return
					}
					t0 := time.Now()
					c, err := r.dial(ctx)
					if err == nil {
						_ = c.SetDeadline(t0.Add(r.o.Timeout))
						err = r.exchange(c, 1)
						if err != nil {
							c.Close()
						}
					}
					if err != nil {
						if ctx.Err() == nil {
							r.fail(err)
							opening.errs.Add(1)
						}
						continue
					}
					opening.record(k, time.Since(t0))
					alive.Add(1)
					connsMu.Lock()
					i := len(conns)
					conns = append(conns, c)
					connsMu.Unlock()
					loops.Go(func() { loop(i, c) })
				}
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pt.OpenSeconds = time.Since(began).Seconds()
		pt.Opened = int(opening.merged().n)
		pt.Handshake = latencyOf(opening.merged(), "open")
		if alive.Load() == 0 {
			return fmt.Errorf("%w: none of %d connections to %s opened: %s", ErrNoConnection, point, r.o.Addr, r.errSamples[0])
		}

		r.b.phase.Store(fmt.Sprintf("settling %d", point))
		if !sleep(ctx, r.o.Settle) {
			return ctx.Err()
		}
		var from, to samples
		if err := r.sample(&from); err != nil {
			return err
		}
		if pi == 0 {
			r.cpuFrom = from
			r.began = time.Now()
			r.b.start.Store(r.began.UnixNano())
		}
		r.b.phase.Store(fmt.Sprintf("measuring %d", point))
		w := newScaleWindow(min(64, point))
		measuring.Store(w)
		t0 := time.Now()
		if !sleep(ctx, r.o.Duration) {
			return ctx.Err()
		}
		measuring.Store(nil)
		elapsed := time.Since(t0)
		if err := r.sample(&to); err != nil {
			return err
		}
		h := w.merged()
		total.merge(h)
		pt.Seconds = elapsed.Seconds()
		pt.Echo = latencyOf(h, "echo")
		pt.EchoesPerSecond = float64(h.n) / elapsed.Seconds()
		pt.Held = int(alive.Load())
		pt.Errors = opening.errs.Load() + w.errs.Load()
		if r.o.PID > 0 {
			c := to.server.CPU - from.server.CPU
			cpu += c
			s := &ScaleServer{
				CPUPerSecond: c.Seconds() / elapsed.Seconds(),
				RSS:          to.server.RSS,
				FDs:          to.server.FDs,
			}
			if c > 0 {
				s.EchoesPerCPUSecond = float64(h.n) / c.Seconds()
			}
			if pt.Held > 0 {
				s.RSSPerConn = float64(to.server.RSS-r.before.server.RSS) / float64(pt.Held)
			}
			pt.Server = s
		}
		r.report.Points = append(r.report.Points, pt)
		r.b.pointsDone.Add(1)
		r.after = to
		r.ended = time.Now()
	}
	r.report.Held = int(alive.Load())
	r.scaleTotal, r.scaleCPU = total, cpu
	return nil
}

// latencyOf summarizes h in microseconds.
func latencyOf(h *histogram, of string) Latency {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return Latency{
		Of:    of,
		Count: h.n,
		P50:   us(h.quantile(0.50)),
		P99:   us(h.quantile(0.99)),
		P999:  us(h.quantile(0.999)),
		Max:   us(h.max),
		Mean:  us(h.mean()),
	}
}
